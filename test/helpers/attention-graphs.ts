// Small transformer graphs built with the ONNX toolkit, one per way an exporter writes attention, all with the same
// weights, plus a float64 reference of what they compute (with NASA). The NASA rewrite tests run them through
// onnxruntime: the rewrite must give every form the same result, and that result must be the reference's.
import { attribute, floatTensor, int64Tensor, makeNode, MICROSOFT_DOMAIN, tensorValueInfo } from '../../src/onnx/onnx-builders.js';
import { GraphEditor } from '../../src/onnx/onnx-graph.js';
import { DataType, graphOf, type ModelProto, type NodeProto, type TensorProto } from '../../src/onnx/onnx-proto.js';

/** classic: MatMul(Q, K^T) -> Mul(scale) -> Softmax -> MatMul(V); batched-heads: the same with the heads folded
 * into the batch and baddbmm's extra term (diffusers' AttnProcessor under torch 1.x); scaled-operands: torch 2's
 * SDPA export, Q and K^T each times sqrt(scale) computed from Q's shape; mha: com.microsoft MultiHeadAttention with
 * packed KV ([B, L, heads, 2, d]); mha-separate: MultiHeadAttention with key and value inputs. */
export type AttentionForm = 'classic' | 'batched-heads' | 'scaled-operands' | 'mha' | 'mha-separate';

/** cross: keys and values from the conditioning; self: from the hidden states; mixed: keys from the conditioning,
 * values from the hidden states (needs tokens === contextTokens). */
export type LayerKind = 'cross' | 'self' | 'mixed';

export interface AttentionGraphOptions {
  form: AttentionForm;
  layers: LayerKind[];
  /** A DiT-style caption projection of the conditioning, shared by every cross-attention's K and V. */
  captionProjection?: boolean;
  batch?: number;
  tokens?: number;
  contextTokens?: number;
}

export const SIZES = { channels: 8, context: 6, heads: 2, headDim: 4 } as const;

/** Deterministic weights in [-0.5, 0.5). */
function weights(seed: number, count: number): number[] {
  let state = seed * 2654435761 + 1;
  return Array.from({ length: count }, () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32 - 0.5;
  });
}

interface LayerWeights {
  q: number[];
  k: number[];
  v: number[];
  out: number[];
  bias: number[];
}

const INNER = SIZES.heads * SIZES.headDim;

function layerWeights(index: number, kind: LayerKind): LayerWeights {
  const kvRows = kind === 'self' ? SIZES.channels : SIZES.context;
  return {
    q: weights(100 * index + 1, SIZES.channels * INNER),
    k: weights(100 * index + 2, kvRows * INNER),
    v: weights(100 * index + 3, (kind === 'cross' ? SIZES.context : SIZES.channels) * INNER),
    out: weights(100 * index + 4, INNER * SIZES.channels),
    bias: weights(100 * index + 5, SIZES.channels),
  };
}

const projectionWeights = () => ({ w: weights(900, SIZES.context * SIZES.context), b: weights(901, SIZES.context) });

export function buildAttentionGraph(options: AttentionGraphOptions): ModelProto {
  const nodes: NodeProto[] = [];
  const initializers: TensorProto[] = [];
  const { heads, headDim } = SIZES;
  const scale = 1 / Math.sqrt(headDim);
  const fused = options.form === 'mha' || options.form === 'mha-separate';
  if (options.form === 'mha') initializers.push(int64Tensor('packed_kv_shape', [5], [0, 0, heads, 2, headDim]));
  if (!fused) initializers.push(int64Tensor('heads_shape', [4], [0, 0, heads, headDim]), int64Tensor('merged_shape', [3], [0, 0, INNER]));
  if (options.form === 'classic' || options.form === 'batched-heads') initializers.push(floatTensor('scale', [], [scale]));
  if (options.form === 'batched-heads') {
    initializers.push(floatTensor('zero', [], [0]), int64Tensor('minus_one', [1], [-1]), int64Tensor('heads', [1], [heads]), int64Tensor('head_dim', [1], [headDim]));
    for (const axis of [0, 1, 2, 3]) initializers.push(int64Tensor(`axis${axis}`, [1], [axis]));
  }
  if (options.form === 'scaled-operands') initializers.push(int64Tensor('last_axis', [], [-1]), floatTensor('one', [], [1]));
  let context = 'encoder_hidden_states';
  if (options.captionProjection) {
    const { w, b } = projectionWeights();
    initializers.push(floatTensor('caption/w', [SIZES.context, SIZES.context], w), floatTensor('caption/b', [SIZES.context], b));
    nodes.push(
      makeNode('MatMul', [context, 'caption/w'], ['caption/matmul'], 'caption_projection/MatMul'),
      makeNode('Add', ['caption/matmul', 'caption/b'], ['caption/out'], 'caption_projection/Add'),
    );
    context = 'caption/out';
  }
  let hidden = 'hidden_states';
  options.layers.forEach((kind, index) => {
    const p = `layer${index}`;
    const w = layerWeights(index, kind);
    const kvSource = kind === 'self' ? hidden : context;
    const valueSource = kind === 'cross' ? context : hidden;
    const kvWidth = kind === 'self' ? SIZES.channels : SIZES.context;
    const valueWidth = kind === 'cross' ? SIZES.context : SIZES.channels;
    initializers.push(
      floatTensor(`${p}/wq`, [SIZES.channels, INNER], w.q),
      floatTensor(`${p}/wo`, [INNER, SIZES.channels], w.out),
      floatTensor(`${p}/bo`, [SIZES.channels], w.bias),
    );
    const node = (op: string, inputs: string[], name: string, attributes = [] as NodeProto['attribute'], domain = '') => {
      nodes.push(makeNode(op, inputs, [`${p}/${name}`], `${p}/${name}/${op}`, attributes, domain));
      return `${p}/${name}`;
    };
    const q = node('MatMul', [hidden, `${p}/wq`], 'q');
    let merged: string;
    if (fused) {
      if (options.form === 'mha' && kind !== 'mixed') {
        // Packed KV: columns ordered (head, k|v, d), so a [B, L, heads, 2, d] reshape splits heads, then k and v.
        const packed: number[] = [];
        for (let row = 0; row < kvWidth; row++) {
          for (let head = 0; head < heads; head++) {
            for (const matrix of [w.k, w.v]) for (let j = 0; j < headDim; j++) packed.push(matrix[row * INNER + head * headDim + j]!);
          }
        }
        initializers.push(floatTensor(`${p}/wkv`, [kvWidth, 2 * INNER], packed));
        const kv = node('Reshape', [node('MatMul', [kvSource, `${p}/wkv`], 'kv'), 'packed_kv_shape'], 'kv_packed');
        merged = node('MultiHeadAttention', [q, kv], 'attention', [attribute.int('num_heads', heads)], MICROSOFT_DOMAIN);
      } else {
        initializers.push(floatTensor(`${p}/wk`, [kvWidth, INNER], w.k), floatTensor(`${p}/wv`, [valueWidth, INNER], w.v));
        const k = node('MatMul', [kvSource, `${p}/wk`], 'k');
        const v = node('MatMul', [valueSource, `${p}/wv`], 'v');
        merged = node('MultiHeadAttention', [q, k, v], 'attention', [attribute.int('num_heads', heads)], MICROSOFT_DOMAIN);
      }
    } else if (options.form === 'batched-heads') {
      // diffusers' AttnProcessor as torch 1.x exports it: heads folded into the batch (head_to_batch_dim), scores by
      // baddbmm (scale * Q K^T + 0 * an empty tensor shaped from Q and K), bmm with V, batch_to_head_dim.
      initializers.push(floatTensor(`${p}/wk`, [kvWidth, INNER], w.k), floatTensor(`${p}/wv`, [valueWidth, INNER], w.v));
      const slice = (value: string, start: string, end: string, name: string) => node('Slice', [node('Shape', [value], `${name}_shape`), start, end], name);
      const toBatch = (value: string, name: string) => {
        const split = node('Transpose', [node('Reshape', [value, 'heads_shape'], `${name}_heads`)], `${name}_t`, [attribute.ints('perm', [0, 2, 1, 3])]);
        const shape = node('Concat', ['minus_one', slice(split, 'axis2', 'axis3', `${name}_tokens`), 'head_dim'], `${name}_batched_shape`, [attribute.int('axis', 0)]);
        return node('Reshape', [split, shape], `${name}_batched`);
      };
      const qb = toBatch(q, 'q');
      const kb = toBatch(node('MatMul', [kvSource, `${p}/wk`], 'k'), 'k');
      const vb = toBatch(node('MatMul', [valueSource, `${p}/wv`], 'v'), 'v');
      const emptyShape = node('Concat', [slice(qb, 'axis0', 'axis2', 'qb_dims'), slice(kb, 'axis1', 'axis2', 'kb_tokens')], 'empty_shape', [attribute.int('axis', 0)]);
      const empty = node('ConstantOfShape', [emptyShape], 'empty', [attribute.tensor('value', floatTensor('value', [1], [0]))]);
      const product = node('Mul', [node('MatMul', [qb, node('Transpose', [kb], 'k_bt', [attribute.ints('perm', [0, 2, 1])])], 'scores'), 'scale'], 'scaled_scores');
      const scores = node('Add', [product, node('Mul', [empty, 'zero'], 'beta_input')], 'baddbmm');
      const zb = node('MatMul', [node('Softmax', [scores], 'probabilities', [attribute.int('axis', -1)]), vb], 'z');
      const headsShape = node('Concat', ['minus_one', 'heads', slice(zb, 'axis1', 'axis2', 'z_tokens'), 'head_dim'], 'z_heads_shape', [attribute.int('axis', 0)]);
      const z = node('Reshape', [zb, headsShape], 'z_heads');
      merged = node('Reshape', [node('Transpose', [z], 'z_t', [attribute.ints('perm', [0, 2, 1, 3])]), 'merged_shape'], 'merged');
    } else {
      initializers.push(floatTensor(`${p}/wk`, [kvWidth, INNER], w.k), floatTensor(`${p}/wv`, [valueWidth, INNER], w.v));
      const split = (value: string, name: string, perm: number[]) =>
        node('Transpose', [node('Reshape', [value, 'heads_shape'], `${name}_heads`)], `${name}_t`, [attribute.ints('perm', perm)]);
      let qh = split(q, 'q', [0, 2, 1, 3]);
      let kt = split(node('MatMul', [kvSource, `${p}/wk`], 'k'), 'k', [0, 2, 3, 1]);
      const vh = split(node('MatMul', [valueSource, `${p}/wv`], 'v'), 'v', [0, 2, 1, 3]);
      let scores: string;
      if (options.form === 'scaled-operands') {
        // As torch 2 exports scaled_dot_product_attention: the scale from the query's last dim, sqrt'ed onto both.
        const last = node('Gather', [node('Shape', [qh], 'q_shape'), 'last_axis'], 'q_last', [attribute.int('axis', 0)]);
        const width = node('Cast', [last], 'q_width', [attribute.int('to', DataType.FLOAT)]);
        const root = node('Sqrt', [node('Div', ['one', node('Sqrt', [width], 'sqrt_width')], 'sdpa_scale')], 'sqrt_scale');
        qh = node('Mul', [qh, root], 'q_scaled');
        kt = node('Mul', [kt, root], 'k_scaled');
        scores = node('MatMul', [qh, kt], 'scores');
      } else {
        scores = node('Mul', [node('MatMul', [qh, kt], 'scores'), 'scale'], 'scaled_scores');
      }
      const probabilities = node('Softmax', [scores], 'probabilities', [attribute.int('axis', -1)]);
      const z = node('MatMul', [probabilities, vh], 'z');
      merged = node('Reshape', [node('Transpose', [z], 'z_t', [attribute.ints('perm', [0, 2, 1, 3])]), 'merged_shape'], 'merged');
    }
    const projected = node('Add', [node('MatMul', [merged, `${p}/wo`], 'to_out'), `${p}/bo`], 'to_out_bias');
    hidden = node('Add', [hidden, projected], 'residual');
  });
  const batch = 'batch';
  return {
    ir_version: 8,
    opset_import: [{ domain: '', version: 17 }, { domain: MICROSOFT_DOMAIN, version: 1 }],
    producer_name: 'snoopi-serve tests',
    graph: {
      name: `attention-${options.form}`,
      node: nodes,
      initializer: initializers,
      input: [
        tensorValueInfo('hidden_states', DataType.FLOAT, [batch, options.tokens ?? 5, SIZES.channels]),
        tensorValueInfo('encoder_hidden_states', DataType.FLOAT, [batch, options.contextTokens ?? 3, SIZES.context]),
      ],
      output: [tensorValueInfo(hidden, DataType.FLOAT, [batch, options.tokens ?? 5, SIZES.channels])],
    },
  };
}

// The float64 reference: the same layers on plain arrays, rows of one batch element at a time.
type Matrix = number[][];

const matmul = (a: Matrix, w: number[], columns: number): Matrix =>
  a.map((row) => Array.from({ length: columns }, (_, j) => row.reduce((sum, value, i) => sum + value * w[i * columns + j]!, 0)));

function attend(q: Matrix, k: Matrix, v: Matrix): Matrix {
  const { heads, headDim } = SIZES;
  return q.map((queryRow) => {
    const out = Array<number>(INNER).fill(0);
    for (let head = 0; head < heads; head++) {
      const slice = (row: number[]) => row.slice(head * headDim, (head + 1) * headDim);
      const scores = k.map((keyRow) => slice(keyRow).reduce((sum, value, j) => sum + value * slice(queryRow)[j]!, 0) / Math.sqrt(headDim));
      const top = Math.max(...scores);
      const exps = scores.map((score) => Math.exp(score - top));
      const total = exps.reduce((sum, value) => sum + value, 0);
      exps.forEach((weight, index) => {
        for (let j = 0; j < headDim; j++) out[head * headDim + j]! += (weight / total) * v[index]![head * headDim + j]!;
      });
    }
    return out;
  });
}

/** What the graph computes for one batch element with NASA at `scale` (hidden [T, C], context and negative [L, D]). */
export function referenceOutput(options: AttentionGraphOptions, hidden: Matrix, context: Matrix, negative: Matrix, scale: number): Matrix {
  const project = (states: Matrix) => {
    if (!options.captionProjection) return states;
    const { w, b } = projectionWeights();
    return matmul(states, w, SIZES.context).map((row) => row.map((value, j) => value + b[j]!));
  };
  const [positiveContext, negativeContext] = [project(context), project(negative)];
  let x = hidden;
  options.layers.forEach((kind, index) => {
    const w = layerWeights(index, kind);
    const q = matmul(x, w.q, INNER);
    let z: Matrix;
    if (kind === 'self') {
      z = attend(q, matmul(x, w.k, INNER), matmul(x, w.v, INNER));
    } else {
      const positive = attend(q, matmul(positiveContext, w.k, INNER), matmul(positiveContext, w.v, INNER));
      const negativeZ = attend(q, matmul(negativeContext, w.k, INNER), matmul(negativeContext, w.v, INNER));
      z = positive.map((row, r) => row.map((value, j) => value - scale * negativeZ[r]![j]!));
    }
    const out = matmul(z, w.out, SIZES.channels);
    x = x.map((row, r) => row.map((value, j) => value + out[r]![j]! + w.bias[j]!));
  });
  return x;
}

/** Deterministic inputs in [-1, 1) as [batch][rows][columns] and as the flat Float32Array a feed needs. */
export function testInput(seed: number, batch: number, rows: number, columns: number): { nested: Matrix[]; flat: Float32Array } {
  const flat = Float32Array.from(weights(seed, batch * rows * columns), (value) => 2 * value);
  const nested = Array.from({ length: batch }, (_, b) =>
    Array.from({ length: rows }, (_, r) => Array.from(flat.subarray((b * rows + r) * columns, (b * rows + r + 1) * columns))),
  );
  return { nested, flat };
}

/**
 * onnxruntime's CPU MultiHeadAttention has no packed KV ("Packed KV not implemented for CPU"; the CUDA kernel has).
 * For the CPU tests, each packed key [B, L, heads, 2, d] is split into the separate key and value [B, L, heads * d]
 * the packed layout stands for, after the NASA rewrite ran on the packed form. Returns how many nodes were unpacked.
 */
export function unpackKvForCpu(model: ModelProto): number {
  const editor = new GraphEditor(graphOf(model));
  editor.addInitializer(int64Tensor('unpacked_kv_shape', [3], [0, 0, INNER]));
  const packed = editor.graph.node!.filter((node) => node.op_type === 'MultiHeadAttention' && (node.input![2] ?? '') === '');
  for (const node of packed) {
    const [query, kv, , ...rest] = node.input!;
    const name = (suffix: string) => editor.uniqueName(`${node.name}/unpacked_${suffix}`);
    const [k, v] = [name('k'), name('v')];
    const split = editor.addNode(makeNode('Split', [kv!], [k, v], name('Split'), [attribute.int('axis', 3)]), node);
    const reshape = (value: string) => editor.addNode(makeNode('Reshape', [value, 'unpacked_kv_shape'], [name(`${value}_3d`)], name('Reshape')), split).output![0]!;
    editor.setInputs(node, [query!, reshape(k), reshape(v), ...rest]);
  }
  editor.finish();
  return packed.length;
}
