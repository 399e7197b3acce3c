// NASA (Negative-Away Steer Attention, docs/design/method.md) added to a denoiser graph. Every text cross-attention
// gets a negative branch through its own projections: Z = Z+ - nasa_scale[b] * Z-, right before its output
// projection, with Z- = softmax(Q K-^T s) V- and K-, V- computed from a new graph input
// negative_encoder_hidden_states (same type as the conditioning input); nasa_scale is a new float32 [B] input.
//
// A cross-attention is an attention whose keys and values are computed from the conditioning input alone. Attentions
// are found at their Softmax (MatMul(Q, K^T) -> optional Mul/Div/Add/Cast -> Softmax -> MatMul(., V); this covers the
// classic export with the scale after the score MatMul and torch 2's SDPA export with Q and K^T each scaled before
// it) or at a fused com.microsoft MultiHeadAttention / ONNX Attention node (key and value inputs, or packed KV in the
// key input). Which graph inputs a value comes from is tracked through the data only (shapes do not count), so:
//  - the K/V cone (every node from the conditioning input to K and V) is cloned onto the negative input, shared
//    pre-projections included (a DiT's caption projection is cloned once, back to the graph input, for all layers);
//  - the score -> softmax -> AV chain and the head-merging Transpose/Reshape are cloned, reading the same Q;
//  - values computed from shapes are shared, so the negative input must have the conditioning input's shape.
// A graph where no cross-attention is found, where the count differs from the expected one, or where keys and values
// mix the conditioning input with other data is refused. At nasa_scale 0 the output is the plain graph's.
import { DataType, graphOf, type ModelProto, type NodeProto } from '../onnx/onnx-proto.js';
import { GraphEditor, isShapeOperator } from '../onnx/onnx-graph.js';
import { MICROSOFT_DOMAIN, attribute, elementTypeName, int64Tensor, makeNode, tensorTypeOf, tensorValueInfo } from '../onnx/onnx-builders.js';

export const NEGATIVE_INPUT = 'negative_encoder_hidden_states';
export const SCALE_INPUT = 'nasa_scale';
export const DEFAULT_SOURCE = 'encoder_hidden_states';

export type AttentionPattern = 'matmul-softmax' | 'scaled-operands' | 'MultiHeadAttention' | 'Attention';

export interface PatchedAttention {
  /** Where the attention was found: its Softmax or fused attention node. */
  anchor: string;
  pattern: AttentionPattern;
  /** The output projection that now reads Z+ - nasa_scale * Z-. */
  projection: string;
}

export interface NasaRewriteOptions {
  /** The conditioning input (default encoder_hidden_states). */
  source?: string;
  /** How many cross-attention layers the model has; any other count refuses the graph. */
  expect?: number;
}

export interface NasaRewriteResult {
  source: string;
  attentions: PatchedAttention[];
  /** Nodes the rewrite added: cloned cones and branches, and the combinations. */
  addedNodes: number;
}

/** A graph the rewrite refuses, with the reason. */
export class NasaRewriteError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NasaRewriteError';
  }
}

interface CrossAttention {
  anchor: NodeProto;
  pattern: AttentionPattern;
  keys: string;
  /** Undefined for packed KV (the values travel in the key input). */
  values: string | undefined;
  /** Z+: the attention's output, before its heads are merged. */
  output: string;
}

const LAYOUT_OPERATORS = new Set(['Transpose', 'Reshape', 'Squeeze', 'Unsqueeze', 'Flatten', 'Identity']);
/** Between the score MatMul and the Softmax: the scale, a constant mask, a cast. */
const SCORE_OPERATORS = new Set(['Mul', 'Div', 'Add', 'Sub', 'Cast', 'Identity']);
/** Between the Softmax and the AV MatMul. */
const PROBABILITY_OPERATORS = new Set(['Cast', 'Dropout', 'Identity']);

const isDefaultDomain = (node: NodeProto) => (node.domain ?? '') === '' || node.domain === 'ai.onnx';

/** Adds NASA to every cross-attention of `model`'s graph (in place). Throws NasaRewriteError for refused graphs. */
export function nasaRewrite(model: ModelProto, options: NasaRewriteOptions = {}): NasaRewriteResult {
  const source = options.source ?? DEFAULT_SOURCE;
  const editor = new GraphEditor(graphOf(model));
  const sourceInfo = editor.graphInput(source);
  if (sourceInfo === undefined || !editor.isRuntimeInput(source)) {
    throw new NasaRewriteError(`the graph has no input ${source}; its inputs: ${editor.runtimeInputNames().join(', ')}`);
  }
  const sourceType = tensorTypeOf(sourceInfo);
  if (sourceType === undefined || sourceType.elemType !== DataType.FLOAT) {
    throw new NasaRewriteError(`input ${source} must be a float32 tensor, it is ${sourceType === undefined ? 'not a tensor with a shape' : elementTypeName(sourceType.elemType)}`);
  }
  for (const name of [NEGATIVE_INPUT, SCALE_INPUT]) {
    if (editor.hasName(name)) throw new NasaRewriteError(`the graph already has a value named ${name}: is it patched already?`);
  }

  const dependencies = editor.dataDependencies();
  const sourceBit = dependencies.get(source)!;
  const dependsOn = (value: string) => dependencies.get(value) ?? 0n;
  const attentions = findCrossAttentions(editor, dependsOn, sourceBit, source);
  if (attentions.length === 0) {
    throw new NasaRewriteError(`no cross-attention found: no attention computes its keys and values from ${source} alone`);
  }
  if (options.expect !== undefined && attentions.length !== options.expect) {
    throw new NasaRewriteError(
      `found ${attentions.length} cross-attention layers, expected ${options.expect}: ` +
        `${attentions.map((attention) => attention.anchor.name).join(', ')}`,
    );
  }
  const projections = attentions.map((attention) => outputProjection(editor, attention, dependsOn));
  const projectionInputs = new Set(projections.map(({ input }) => input));
  if (projectionInputs.size !== projections.length) throw new NasaRewriteError('two attentions share one output projection');

  const nodesBefore = editor.graph.node!.length;
  editor.addInput({ name: NEGATIVE_INPUT, type: sourceInfo.type! });
  const batch = sourceType.dims[0] ?? 'batch_size';
  editor.addInput(tensorValueInfo(SCALE_INPUT, DataType.FLOAT, [batch]));
  const minusOne = editor.uniqueName('nasa/minus_one');
  const one = editor.uniqueName('nasa/one');
  editor.addInitializer(int64Tensor(minusOne, [1], [-1]));
  editor.addInitializer(int64Tensor(one, [1], [1]));

  // Values of the negative branches, by the positive value they mirror. Cone clones are shared by all layers.
  const negative = new Map<string, string>([[source, NEGATIVE_INPUT]]);
  const cloneCone = (value: string): string => {
    const known = negative.get(value);
    if (known !== undefined) return known;
    if (dependsOn(value) === 0n) return value;
    const node = editor.producer(value);
    if (node === undefined || dependsOn(value) !== sourceBit) throw new Error(`internal error: ${value} is not in the cone of ${source}`);
    const clone = editor.cloneNode(node, (node.input ?? []).map((input) => (input === '' ? '' : cloneCone(input))), '/negative');
    node.output!.forEach((output, index) => negative.set(output, clone.output![index]!));
    return negative.get(value)!;
  };

  const patched = attentions.map((attention, index): PatchedAttention => {
    const { input: merged, projection } = projections[index]!;
    const branchInputs = [attention.keys, ...(attention.values !== undefined ? [attention.values] : [])];
    for (const value of branchInputs) cloneCone(value);
    for (const node of branchBetween(editor, branchInputs, merged)) {
      const inputs = (node.input ?? []).map((input) => negative.get(input) ?? input);
      const clone = editor.cloneNode(node, inputs, '/negative');
      node.output!.forEach((output, outputIndex) => negative.set(output, clone.output![outputIndex]!));
    }
    const mergedNegative = negative.get(merged)!;
    // nasa_scale [B] -> [B, 1, ..., 1] with the rank of Z, which holds the batch on its first axis.
    const name = (suffix: string) => editor.uniqueName(`${projection.name || merged}/nasa/${suffix}`);
    const after = editor.producer(mergedNegative)!;
    const add = (node: NodeProto) => editor.addNode(node, after).output![0]!;
    const shape = add(makeNode('Shape', [merged], [name('shape')], name('Shape')));
    const rank = add(makeNode('Shape', [shape], [name('rank')], name('Rank')));
    const ones = add(makeNode('ConstantOfShape', [add(makeNode('Sub', [rank, one], [name('rank_minus_one')], name('Sub')))], [name('ones')], name('ConstantOfShape'), [
      attribute.tensor('value', int64Tensor('value', [1], [1])),
    ]));
    const target = add(makeNode('Concat', [minusOne, ones], [name('scale_shape')], name('Concat'), [attribute.int('axis', 0)]));
    const scale = add(makeNode('Reshape', [SCALE_INPUT, target], [name('scale')], name('Reshape')));
    const scaled = add(makeNode('Mul', [scale, mergedNegative], [name('scaled_negative')], name('Mul')));
    const combined = add(makeNode('Sub', [merged, scaled], [name('output')], name('Sub')));
    editor.replaceInput(projection, merged, combined);
    return { anchor: attention.anchor.name ?? '', pattern: attention.pattern, projection: projection.name ?? '' };
  });
  editor.finish();
  return { source, attentions: patched, addedNodes: editor.graph.node!.length - nodesBefore };
}

function findCrossAttentions(editor: GraphEditor, dependsOn: (value: string) => bigint, sourceBit: bigint, source: string): CrossAttention[] {
  const found: CrossAttention[] = [];
  for (const node of editor.graph.node!) {
    const candidate =
      node.op_type === 'Softmax' && isDefaultDomain(node)
        ? softmaxAttention(editor, node, dependsOn)
        : (node.op_type === 'MultiHeadAttention' && node.domain === MICROSOFT_DOMAIN) || (node.op_type === 'Attention' && isDefaultDomain(node))
          ? fusedAttention(node)
          : undefined;
    if (candidate === undefined) continue;
    const { queries, keys, values } = candidate;
    const pure = (value: string) => dependsOn(value) === sourceBit;
    // Keys or values that read the conditioning input together with other data that the queries do not share:
    // an attention over a mix (e.g. text and image tokens), where NASA's negative branch is undefined.
    const mixes = (value: string) => (dependsOn(value) & sourceBit) !== 0n && !pure(value) && dependsOn(value) !== dependsOn(queries);
    const valuesPure = values === undefined ? pure(keys) : pure(values);
    if (mixes(keys) || (values !== undefined && mixes(values)) || pure(keys) !== valuesPure) {
      throw new NasaRewriteError(
        `attention at ${node.name}: its keys and values do not both come from ${source} alone ` +
          `(keys ${describe(editor, keys, dependsOn)}, values ${describe(editor, values ?? keys, dependsOn)}); refusing an ambiguous graph`,
      );
    }
    if (!pure(keys) || pure(queries)) continue;
    found.push({ anchor: node, pattern: candidate.pattern, keys, values, output: candidate.output });
  }
  return found;
}

function describe(editor: GraphEditor, value: string, dependsOn: (value: string) => bigint): string {
  const inputs = editor.runtimeInputNames().filter((_, bit) => (dependsOn(value) & (1n << BigInt(bit))) !== 0n);
  return inputs.length === 0 ? 'from constants' : `from ${inputs.join(' + ')}`;
}

interface Candidate {
  pattern: AttentionPattern;
  queries: string;
  keys: string;
  values: string | undefined;
  output: string;
}

/** softmax(MatMul(Q, K^T) [* s | / s | + mask]) -> MatMul(., V); undefined when the Softmax is not such an attention. */
function softmaxAttention(editor: GraphEditor, softmax: NodeProto, dependsOn: (value: string) => bigint): Candidate | undefined {
  let scores = softmax.input![0]!;
  let producer = editor.producer(scores);
  while (producer !== undefined && SCORE_OPERATORS.has(producer.op_type ?? '') && isDefaultDomain(producer)) {
    const data = (producer.input ?? []).filter((input) => input !== '' && dependsOn(input) !== 0n);
    if (data.length !== 1) return undefined;
    scores = data[0]!;
    producer = editor.producer(scores);
  }
  if (producer?.op_type !== 'MatMul') return undefined;
  const [queries, keys] = producer.input as [string, string];

  let probabilities = softmax.output![0]!;
  for (;;) {
    const users = editor.consumers(probabilities).filter((user) => !isShapeOperator(user));
    if (users.length !== 1) return undefined;
    const user = users[0]!;
    if (user.op_type === 'MatMul' && user.input![0] === probabilities) {
      const queryScale = editor.producer(queries);
      const scaledOperands = queryScale !== undefined && ['Mul', 'Div'].includes(queryScale.op_type ?? '') && queryScale.input!.some((input) => dependsOn(input) === 0n);
      return { pattern: scaledOperands ? 'scaled-operands' : 'matmul-softmax', queries, keys, values: user.input![1]!, output: user.output![0]! };
    }
    if (!PROBABILITY_OPERATORS.has(user.op_type ?? '')) return undefined;
    probabilities = user.output![0]!;
  }
}

/** com.microsoft MultiHeadAttention (query, key, value, ...) or ONNX Attention (Q, K, V, ...). Packed QKV (no key
 * input) is a self-attention and gives undefined. */
function fusedAttention(node: NodeProto): Candidate | undefined {
  const [queries, keys, values] = node.input ?? [];
  if (queries === undefined || keys === undefined || keys === '') return undefined;
  const pattern: AttentionPattern = node.op_type === 'MultiHeadAttention' ? 'MultiHeadAttention' : 'Attention';
  return { pattern, queries, keys, values: values === undefined || values === '' ? undefined : values, output: node.output![0]! };
}

/**
 * From Z+ through head-merging layout operators (Transpose, Reshape, ...) to the MatMul with a constant weight that
 * projects it: NASA combines the branches at that MatMul's input, where the batch is the first axis.
 */
function outputProjection(editor: GraphEditor, attention: CrossAttention, dependsOn: (value: string) => bigint): { input: string; projection: NodeProto } {
  let value = attention.output;
  for (;;) {
    const users = editor.consumers(value).filter((user) => !isShapeOperator(user));
    const user = users.length === 1 ? users[0]! : undefined;
    if (user !== undefined && LAYOUT_OPERATORS.has(user.op_type ?? '') && isDefaultDomain(user) && user.input![0] === value) {
      value = user.output![0]!;
      continue;
    }
    if (user !== undefined && user.op_type === 'MatMul' && user.input![0] === value && dependsOn(user.input![1]!) === 0n) {
      return { input: value, projection: user };
    }
    const reads = users.map((each) => `${each.op_type} ${each.name}`).join(', ') || 'nothing';
    throw new NasaRewriteError(`attention at ${attention.anchor.name}: no output projection (MatMul with a constant weight) after it; ${value} goes to ${reads}`);
  }
}

/** The nodes on data paths from `starts` to `end` (shape computations excluded), in graph order. */
function branchBetween(editor: GraphEditor, starts: string[], end: string): NodeProto[] {
  const forward = new Set<NodeProto>();
  const stack = [...starts];
  for (let value = stack.pop(); value !== undefined; value = stack.pop()) {
    if (value === end) continue;
    for (const user of editor.consumers(value)) {
      if (isShapeOperator(user) || forward.has(user)) continue;
      forward.add(user);
      stack.push(...(user.output ?? []).filter((output) => output !== ''));
    }
  }
  const onPath = new Set<NodeProto>();
  const pending = [end];
  for (let value = pending.pop(); value !== undefined; value = pending.pop()) {
    const node = editor.producer(value);
    if (node === undefined || !forward.has(node) || onPath.has(node)) continue;
    onPath.add(node);
    pending.push(...(node.input ?? []));
  }
  return editor.graph.node!.filter((node) => onPath.has(node));
}

