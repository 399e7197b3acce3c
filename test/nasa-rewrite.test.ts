// The NASA graph rewrite on hand-built transformer graphs (test/helpers/attention-graphs.ts): every way an exporter
// writes attention (classic MatMul -> Mul -> Softmax -> MatMul, the same with heads folded into the batch and
// baddbmm, torch 2's SDPA with scaled operands, onnxruntime's MultiHeadAttention with separate or packed K/V), with and without a DiT-style caption projection shared by the
// cross-attentions, and a self-attention between them that must be left alone. Each patched graph runs under
// onnxruntime with mixed per-sample scales and is checked against a float64 NASA reference and against the classic
// form; scale 0 must give the plain graph's output. Then the graphs the rewrite must refuse.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { DEFAULT_SESSION_SETTINGS, closeSession, openSession, runSession, type PlainTensor } from '../src/engine/onnx-runtime.js';
import { nasaRewrite, type NasaRewriteOptions } from '../src/importer/nasa-rewrite.js';
import { writeModel } from '../src/onnx/external-data.js';
import { isTopologicallySorted } from '../src/onnx/onnx-graph.js';
import { decodeModel, encodeModel, graphOf, type ModelProto } from '../src/onnx/onnx-proto.js';
import { buildAttentionGraph, referenceOutput, SIZES, testInput, unpackKvForCpu, type AttentionForm, type AttentionGraphOptions } from './helpers/attention-graphs.js';
import { maxAbsDifference } from './helpers/trainer-export.js';

const BATCH = 3;
const TOKENS = 5;
const CONTEXT_TOKENS = 3;
const SCALES = [0, 0.5, 1];
const hidden = testInput(1, BATCH, TOKENS, SIZES.channels);
const context = testInput(2, BATCH, CONTEXT_TOKENS, SIZES.context);
const negative = testInput(3, BATCH, CONTEXT_TOKENS, SIZES.context);

async function temporaryDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'snoopi-nasa-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const copyOf = (model: ModelProto) => decodeModel(encodeModel(model));

async function run(t: TestContext, dir: string, name: string, model: ModelProto, feeds: Record<string, PlainTensor>): Promise<Float32Array> {
  const path = join(dir, `${name}.onnx`);
  await writeModel(model, path);
  const opened = await openSession(path, name, DEFAULT_SESSION_SETTINGS);
  t.after(() => closeSession(opened));
  const outputs = Object.values(await runSession(opened, feeds));
  assert.equal(outputs.length, 1);
  return outputs[0]!.data as Float32Array;
}

const plainFeeds = (): Record<string, PlainTensor> => ({
  hidden_states: { type: 'float32', data: hidden.flat, dims: [BATCH, TOKENS, SIZES.channels] },
  encoder_hidden_states: { type: 'float32', data: context.flat, dims: [BATCH, CONTEXT_TOKENS, SIZES.context] },
});

const nasaFeeds = (scales: number[]): Record<string, PlainTensor> => ({
  ...plainFeeds(),
  negative_encoder_hidden_states: { type: 'float32', data: negative.flat, dims: [BATCH, CONTEXT_TOKENS, SIZES.context] },
  nasa_scale: { type: 'float32', data: Float32Array.from(scales), dims: [BATCH] },
});

function reference(options: AttentionGraphOptions, scales: number[]): Float32Array {
  return Float32Array.from(
    Array.from({ length: BATCH }, (_, b) => referenceOutput(options, hidden.nested[b]!, context.nested[b]!, negative.nested[b]!, scales[b]!).flat()).flat(),
  );
}

/** The graph of `form`, patched (and, for packed KV, unpacked afterwards so that the CPU provider runs it). */
function patched(options: AttentionGraphOptions, rewrite: NasaRewriteOptions = { expect: 2 }) {
  const model = buildAttentionGraph(options);
  const result = nasaRewrite(model, rewrite);
  if (options.form === 'mha') unpackKvForCpu(model);
  return { model, result };
}

function plain(options: AttentionGraphOptions): ModelProto {
  const model = buildAttentionGraph(options);
  if (options.form === 'mha') unpackKvForCpu(model);
  return model;
}

const FORMS: { form: AttentionForm; pattern: string }[] = [
  { form: 'classic', pattern: 'matmul-softmax' },
  { form: 'batched-heads', pattern: 'matmul-softmax' },
  { form: 'scaled-operands', pattern: 'scaled-operands' },
  { form: 'mha', pattern: 'MultiHeadAttention' },
  { form: 'mha-separate', pattern: 'MultiHeadAttention' },
];

for (const captionProjection of [false, true]) {
  const variant = captionProjection ? 'with a shared caption projection' : 'reading encoder_hidden_states directly';
  test(`every attention form, ${variant}: NASA matches the float64 reference and the classic form; scale 0 is the plain graph`, async (t) => {
    const dir = await temporaryDir(t);
    const layers = ['cross', 'self', 'cross'] as const;
    const expected = reference({ form: 'classic', layers: [...layers], captionProjection }, SCALES);
    const classic = await run(t, dir, 'classic', patched({ form: 'classic', layers: [...layers], captionProjection }).model, nasaFeeds(SCALES));
    for (const { form, pattern } of FORMS) {
      const options: AttentionGraphOptions = { form, layers: [...layers], captionProjection };
      const { model, result } = patched(options);
      assert.deepEqual(result.attentions.map((attention) => [attention.anchor, attention.pattern, attention.projection]), [
        [form.startsWith('mha') ? 'layer0/attention/MultiHeadAttention' : 'layer0/probabilities/Softmax', pattern, 'layer0/to_out/MatMul'],
        [form.startsWith('mha') ? 'layer2/attention/MultiHeadAttention' : 'layer2/probabilities/Softmax', pattern, 'layer2/to_out/MatMul'],
      ]);
      assert.ok(isTopologicallySorted(graphOf(model)), `${form}: sorted`);
      // A shared pre-projection is cloned once, back to the graph input, for both layers.
      const clonedProjection = graphOf(model).node!.filter((node) => node.name!.startsWith('caption_projection/') && node.name!.endsWith('/negative'));
      assert.equal(clonedProjection.length, captionProjection ? 2 : 0, `${form}: cloned caption projection nodes`);

      const output = await run(t, dir, `${form}-nasa`, model, nasaFeeds(SCALES));
      const fromReference = maxAbsDifference(output, expected);
      const fromClassic = maxAbsDifference(output, classic);
      const atZero = maxAbsDifference(await run(t, dir, `${form}-nasa-zero`, model, nasaFeeds([0, 0, 0])), await run(t, dir, `${form}-plain`, plain(options), plainFeeds()));
      t.diagnostic(`${form}: max |NASA - float64 reference| = ${fromReference.toExponential(2)}, |NASA - classic form| = ${fromClassic.toExponential(2)}, ` +
        `scale 0 |patched - plain| = ${atZero.toExponential(2)}, ${result.addedNodes} nodes added`);
      assert.ok(fromReference <= 1e-5, `${form}: ${fromReference} from the reference`);
      assert.ok(fromClassic <= 1e-5, `${form}: ${fromClassic} from the classic form`);
      assert.ok(atZero <= 1e-6, `${form}: ${atZero} at scale 0`);
    }
    // The scales are per sample: row 0 (scale 0) is the plain output, rows 1 and 2 are not.
    const plainOutput = reference({ form: 'classic', layers: [...layers], captionProjection }, [0, 0, 0]);
    const rowSize = TOKENS * SIZES.channels;
    const row = (values: Float32Array, index: number) => values.subarray(index * rowSize, (index + 1) * rowSize);
    assert.ok(maxAbsDifference(row(classic, 0), row(plainOutput, 0)) <= 1e-5);
    for (const index of [1, 2]) assert.ok(maxAbsDifference(row(classic, index), row(plainOutput, index)) > 1e-3, `row ${index} is steered`);
  });
}

test('the rewrite adds float32 inputs of the conditioning input\'s shape and keeps the graph\'s other parts', () => {
  const model = buildAttentionGraph({ form: 'classic', layers: ['cross', 'cross'] });
  const before = copyOf(model);
  nasaRewrite(model, {});
  const inputs = graphOf(model).input!.map((input) => ({
    name: input.name,
    elem: input.type!.tensor_type!.elem_type,
    dims: input.type!.tensor_type!.shape!.dim!.map((dim) => dim.dim_param ?? Number(dim.dim_value)),
  }));
  assert.deepEqual(inputs, [
    { name: 'hidden_states', elem: 1, dims: ['batch', 5, SIZES.channels] },
    { name: 'encoder_hidden_states', elem: 1, dims: ['batch', 3, SIZES.context] },
    { name: 'negative_encoder_hidden_states', elem: 1, dims: ['batch', 3, SIZES.context] },
    { name: 'nasa_scale', elem: 1, dims: ['batch'] },
  ]);
  assert.deepEqual(graphOf(model).output!.map((output) => output.name), ['layer1/residual']);
  const originalNames = new Set(graphOf(before).node!.map((node) => node.name));
  assert.deepEqual(graphOf(model).node!.filter((node) => originalNames.has(node.name)).map((node) => node.name), graphOf(before).node!.map((node) => node.name));
});

test('graphs the rewrite refuses, with the reason', () => {
  const refuse = (options: AttentionGraphOptions, rewrite: NasaRewriteOptions, message: RegExp) =>
    assert.throws(() => nasaRewrite(buildAttentionGraph(options), rewrite), (error: Error) => error.name === 'NasaRewriteError' && message.test(error.message));
  refuse({ form: 'classic', layers: ['self', 'self'] }, {}, /^no cross-attention found: no attention computes its keys and values from encoder_hidden_states alone$/);
  refuse({ form: 'classic', layers: ['cross', 'self', 'cross'] }, { expect: 3 }, /^found 2 cross-attention layers, expected 3: layer0\/probabilities\/Softmax, layer2\/probabilities\/Softmax$/);
  refuse(
    { form: 'classic', layers: ['cross', 'mixed'], tokens: 3, contextTokens: 3 },
    {},
    /^attention at layer1\/probabilities\/Softmax: its keys and values do not both come from encoder_hidden_states alone \(keys from encoder_hidden_states, values from hidden_states \+ encoder_hidden_states\); refusing an ambiguous graph$/,
  );
  refuse({ form: 'mha-separate', layers: ['mixed'], tokens: 3, contextTokens: 3 }, {}, /^attention at layer0\/attention\/MultiHeadAttention: its keys and values do not both come from/);
  refuse({ form: 'classic', layers: ['cross'] }, { source: 'text_embeddings' }, /^the graph has no input text_embeddings; its inputs: hidden_states, encoder_hidden_states$/);
  const twice = buildAttentionGraph({ form: 'classic', layers: ['cross'] });
  nasaRewrite(twice);
  assert.throws(() => nasaRewrite(twice), /the graph already has a value named negative_encoder_hidden_states: is it patched already\?/);
});
