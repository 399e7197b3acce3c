// The ONNX toolkit (src/onnx/): byte-identical read -> write of trainer-exported models with the vendored schema,
// tensors in external data files kept external (never read, placed next to a written model), and the graph editor's
// names, clones, dependencies, pruning and topological sort.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { DEFAULT_SESSION_SETTINGS, closeSession, openSession, runSession, type PlainTensor } from '../src/engine/onnx-runtime.js';
import { externalDataFiles, externalizeInitializers, inlineTensorBytes, locateExternalData, writeModel } from '../src/onnx/external-data.js';
import { int64Tensor, makeNode, tensorValueInfo } from '../src/onnx/onnx-builders.js';
import { GraphEditor, isTopologicallySorted, pruneUnused } from '../src/onnx/onnx-graph.js';
import { DataType, encodeModel, graphOf, readModel, type ModelProto } from '../src/onnx/onnx-proto.js';
import type { ModelManifest } from '../src/registry/model-manifest.js';
import { testInput } from './helpers/attention-graphs.js';
import { maxAbsDifference } from './helpers/trainer-export.js';
import { TEST_MODEL_DIR, testManifest } from './helpers/test-model.js';

async function temporaryDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'snoopi-onnx-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test('reading and writing a trainer-exported model gives the same bytes', async () => {
  for (const file of ['generator.onnx', 'text_encoder.onnx']) {
    const bytes = await readFile(join(TEST_MODEL_DIR, file));
    const written = encodeModel(await readModel(join(TEST_MODEL_DIR, file)));
    assert.equal(Buffer.compare(Buffer.from(written), bytes), 0, `${file}: ${written.length} bytes written, ${bytes.length} read`);
  }
});

async function runGenerator(t: TestContext, path: string, manifest: ModelManifest): Promise<Uint8Array> {
  const opened = await openSession(path, path, DEFAULT_SESSION_SETTINGS);
  t.after(() => closeSession(opened));
  const { channels, height, width } = manifest.latent;
  const { max_length: length, hidden_size: hiddenSize } = manifest.text;
  const feeds: Record<string, PlainTensor> = {
    noise: { type: 'float32', data: testInput(1, 2, channels, height * width).flat, dims: [2, channels, height, width] },
    encoder_hidden_states: { type: 'float32', data: testInput(2, 2, length, hiddenSize).flat, dims: [2, length, hiddenSize] },
    negative_encoder_hidden_states: { type: 'float32', data: testInput(3, 2, length, hiddenSize).flat, dims: [2, length, hiddenSize] },
    nasa_scale: { type: 'float32', data: Float32Array.from([0, 1]), dims: [2] },
  };
  return (await runSession(opened, feeds)).image!.data as Uint8Array;
}

test('tensors in external data files stay there: round trip, writing elsewhere links the files, same pixels', async (t) => {
  const dir = await temporaryDir(t);
  const manifest = await testManifest();
  const model = await readModel(join(TEST_MODEL_DIR, 'generator.onnx'));
  const inline = inlineTensorBytes(model);
  await mkdir(join(dir, 'a'));
  const moved = await externalizeInitializers(model, join(dir, 'a'), 'weights/generator.bin', 1024);
  assert.ok(moved > 0.9 * inline, `${moved} of ${inline} bytes moved`);
  assert.equal(inlineTensorBytes(model), inline - moved);
  await writeModel(model, join(dir, 'a', 'generator.onnx'), new Map([['weights/generator.bin', join(dir, 'a', 'weights', 'generator.bin')]]));

  // Read back: the references are there, the data is not read, and writing gives the same bytes.
  const external = await readModel(join(dir, 'a', 'generator.onnx'));
  assert.deepEqual([...externalDataFiles(external).keys()], ['weights/generator.bin']);
  assert.equal(Buffer.compare(Buffer.from(encodeModel(external)), await readFile(join(dir, 'a', 'generator.onnx'))), 0);
  const sources = await locateExternalData(external, join(dir, 'a'));
  assert.deepEqual([...sources], [['weights/generator.bin', join(dir, 'a', 'weights', 'generator.bin')]]);

  // Written into another folder: the data file is linked beside it (same inode), and the graph runs the same.
  const written = await writeModel(external, join(dir, 'b', 'generator.onnx'), sources);
  assert.deepEqual(written, ['generator.onnx', 'weights/generator.bin']);
  const [original, linked] = await Promise.all([stat(join(dir, 'a', 'weights', 'generator.bin')), stat(join(dir, 'b', 'weights', 'generator.bin'))]);
  assert.equal(linked.ino, original.ino);
  const expected = await runGenerator(t, join(TEST_MODEL_DIR, 'generator.onnx'), manifest);
  assert.equal(maxAbsDifference(await runGenerator(t, join(dir, 'b', 'generator.onnx'), manifest), expected), 0);

  await rm(join(dir, 'a', 'weights', 'generator.bin'));
  await assert.rejects(locateExternalData(external, join(dir, 'a')), { message: `external data file ${join(dir, 'a', 'weights', 'generator.bin')} is missing` });
});

/** x -> Relu -> a -> Neg -> b; Shape(a) -> s; Reshape(b, s) -> y; a dead Exp. */
function smallModel(): ModelProto {
  return {
    ir_version: 8,
    opset_import: [{ domain: '', version: 17 }],
    graph: {
      name: 'small',
      node: [
        makeNode('Relu', ['x'], ['a'], 'relu'),
        makeNode('Neg', ['a'], ['b'], 'neg'),
        makeNode('Shape', ['a'], ['s'], 'shape'),
        makeNode('Reshape', ['b', 's'], ['y'], 'reshape'),
        makeNode('Exp', ['x'], ['unused'], 'exp'),
      ],
      initializer: [int64Tensor('unused_constant', [1], [1])],
      input: [tensorValueInfo('x', DataType.FLOAT, ['n', 4])],
      output: [tensorValueInfo('y', DataType.FLOAT, ['n', 4])],
    },
  };
}

test('the graph editor: dependencies through data only, fresh names, clones, and a stable topological sort', () => {
  const model = smallModel();
  const graph = graphOf(model);
  graph.node!.reverse();
  assert.equal(isTopologicallySorted(graph), false);
  const editor = new GraphEditor(graph);
  assert.equal(editor.producer('b')?.name, 'neg');
  assert.deepEqual(editor.consumers('a').map((node) => node.name).sort(), ['neg', 'shape']);
  editor.finish();
  assert.deepEqual(graph.node!.map((node) => node.name), ['exp', 'relu', 'shape', 'neg', 'reshape']);

  const dependencies = new GraphEditor(graph).dataDependencies();
  assert.deepEqual(Object.fromEntries(['x', 'a', 's', 'y', 'unused_constant'].map((name) => [name, dependencies.get(name)])), {
    x: 1n, a: 1n, s: 0n, y: 1n, unused_constant: 0n,
  });

  const sorted = new GraphEditor(graph);
  const neg = sorted.producer('b')!;
  const clone = sorted.cloneNode(neg, ['x'], '/copy');
  assert.deepEqual({ name: clone.name, input: clone.input, output: clone.output }, { name: 'neg/copy', input: ['x'], output: ['b/copy'] });
  assert.equal(sorted.cloneNode(neg, ['x'], '/copy').output![0], 'b/copy_1');
  assert.equal(sorted.uniqueName('y'), 'y_1');
  sorted.addInput(tensorValueInfo('z', DataType.FLOAT, ['n', 4]));
  assert.throws(() => sorted.addInput(tensorValueInfo('z', DataType.FLOAT, [])), /cannot add input z: the graph already defines that name/);
  const add = sorted.addNode(makeNode('Add', ['b/copy', 'z'], ['sum'], 'add'));
  sorted.replaceInput(graph.node!.find((node) => node.name === 'reshape')!, 'b', 'sum');
  sorted.finish();
  assert.ok(isTopologicallySorted(graph));
  assert.deepEqual(graph.node!.map((node) => node.name), ['exp', 'relu', 'shape', 'neg', 'neg/copy', 'neg/copy_1', 'add', 'reshape']);
  assert.equal(graph.node!.includes(add), true);

  assert.equal(pruneUnused(graph), 3);
  assert.deepEqual(graph.node!.map((node) => node.name), ['relu', 'shape', 'neg/copy', 'add', 'reshape']);
  assert.deepEqual(graph.initializer, []);
});
