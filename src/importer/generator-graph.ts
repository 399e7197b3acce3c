// generator.onnx from a NASA-patched UNet and a VAE decoder (docs/contracts.md): one graph, so the latent stays on
// the device between the two and the only output is uint8 pixels.
//
//   noise, encoder_hidden_states, negative_encoder_hidden_states, nasa_scale
//     -> UNet at the fixed timestep (a constant of the UNet's own timestep dtype and shape)
//     -> x0 of the one-step formula ("latents") -> / scaling_factor -> VAE decoder
//     -> clamp(-1, 1) -> (x + 1) * 127.5 -> Round -> Cast uint8 -> Transpose NHWC -> image [B, H, W, 3]
//
// The two graphs are merged with their names prefixed (unet/, vae_decoder/); initializers come along as they are, so
// tensors in external data files stay external (their locations are the caller's to arrange, see external-data.ts).
import { packageInfo } from '../config/paths.js';
import { attribute, elementTypeName, floatTensor, formatDims, int64Tensor, makeNode, makeTensor, tensorTypeOf, tensorValueInfo, type TensorType } from '../onnx/onnx-builders.js';
import { renameGraph } from '../onnx/onnx-graph.js';
import { DataType, graphOf, int64ToNumber, type GraphProto, type ModelProto, type NodeProto, type OperatorSetIdProto, type TensorProto, type ValueInfoProto } from '../onnx/onnx-proto.js';
import { NEGATIVE_INPUT, SCALE_INPUT } from './nasa-rewrite.js';
import type { OneStepSchedule } from './one-step-schedule.js';

/** The optimum UNet's input names. */
export const UNET_INPUTS = { sample: 'sample', timestep: 'timestep', states: 'encoder_hidden_states' } as const;
/** The x0 latent inside generator.onnx, before the division by the VAE scaling factor. */
export const LATENTS_VALUE = 'latents';
export const IMAGE_OUTPUT = 'image';
const NOISE_INPUT = 'noise';

export interface GeneratorParts {
  /** A NASA-patched optimum UNet: sample, timestep, encoder_hidden_states, negative_encoder_hidden_states, nasa_scale. */
  unet: ModelProto;
  /** latent_sample (unscaled) -> sample (about [-1, 1]). */
  vaeDecoder: ModelProto;
  schedule: OneStepSchedule;
  scalingFactor: number;
}

/** Which names of a graph keep their name in the merged graph; every other name gets the prefix. Refuses a graph
 * whose names would collide once prefixed. */
function prefixNames(graph: GraphProto, prefix: string, kept: ReadonlyMap<string, string>): void {
  const seen = new Map<string, string>();
  renameGraph(graph, (name) => {
    const renamed = kept.get(name) ?? `${prefix}/${name.startsWith('/') ? name.slice(1) : name}`;
    const earlier = seen.get(renamed);
    if (earlier !== undefined && earlier !== name) throw new Error(`${prefix}: names ${earlier} and ${name} both become ${renamed}`);
    seen.set(renamed, name);
    return renamed;
  });
}

function requireInput(graph: GraphProto, name: string, what: string): ValueInfoProto {
  const info = graph.input?.find((input) => input.name === name);
  if (info === undefined) throw new Error(`${what} has no input ${name}; its inputs: ${(graph.input ?? []).map((input) => input.name).join(', ')}`);
  return info;
}

function requireFloatTensor(info: ValueInfoProto, what: string): TensorType {
  const type = tensorTypeOf(info);
  if (type === undefined || type.elemType !== DataType.FLOAT) {
    throw new Error(`${what} ${info.name} must be float32 (fp16 graphs are not supported: export in fp32), it is ${type === undefined ? 'untyped' : elementTypeName(type.elemType)}`);
  }
  return type;
}

function singleOutput(graph: GraphProto, what: string): ValueInfoProto {
  if ((graph.output ?? []).length !== 1) throw new Error(`${what} must have one output, it has ${(graph.output ?? []).map((output) => output.name).join(', ')}`);
  return graph.output![0]!;
}

const TIMESTEP_TYPES: readonly number[] = [DataType.INT64, DataType.INT32, DataType.FLOAT, DataType.DOUBLE];

/**
 * The nodes and initializers that give the UNet's timestep input the value `timestep` in whatever form it declares:
 * a scalar, a vector of a fixed size, a vector along the batch axis (expanded to the batch of `noise`), or a vector
 * of its own axis (one element, broadcast by the UNet).
 */
function timestepFeed(info: ValueInfoProto, timestep: number, batchDim: string | number | undefined, name: string): { nodes: NodeProto[]; initializers: TensorProto[] } {
  const type = tensorTypeOf(info);
  if (type === undefined || !TIMESTEP_TYPES.includes(type.elemType) || type.dims.length > 1) {
    throw new Error(`the UNet's timestep must be a scalar or a vector of int64, int32, float32 or float64; it is ${type === undefined ? 'untyped' : `${elementTypeName(type.elemType)} ${formatDims(type.dims)}`}`);
  }
  if (type.dims.length === 0) return { nodes: [], initializers: [makeTensor(name, type.elemType, [], [timestep])] };
  const [size] = type.dims;
  if (typeof size === 'number') return { nodes: [], initializers: [makeTensor(name, type.elemType, [size], Array(size).fill(timestep))] };
  if (size === undefined || size !== batchDim) return { nodes: [], initializers: [makeTensor(name, type.elemType, [1], [timestep])] };
  const one = makeTensor(`${name}/one`, type.elemType, [1], [timestep]);
  const first = int64Tensor(`${name}/batch_axis`, [1], [0]);
  return {
    initializers: [one, first],
    nodes: [
      makeNode('Shape', [NOISE_INPUT], [`${name}/noise_shape`], `${name}/Shape`),
      makeNode('Gather', [`${name}/noise_shape`, first.name!], [`${name}/batch`], `${name}/Gather`, [attribute.int('axis', 0)]),
      makeNode('Expand', [one.name!, `${name}/batch`], [name], `${name}/Expand`),
    ],
  };
}

/** The x0 formula on the UNet's prediction; its output is LATENTS_VALUE. */
function x0Nodes(schedule: OneStepSchedule, prediction: string): { nodes: NodeProto[]; initializers: TensorProto[] } {
  const a = Math.sqrt(schedule.alphaBar);
  const s = Math.sqrt(1 - schedule.alphaBar);
  const constant = (name: string, value: number) => floatTensor(`x0/${name}`, [], [value]);
  switch (schedule.parameterization) {
    case 'eps':
      return {
        initializers: [constant('sqrt_one_minus_alpha_bar', s), constant('sqrt_alpha_bar', a)],
        nodes: [
          makeNode('Mul', [prediction, 'x0/sqrt_one_minus_alpha_bar'], ['x0/scaled_eps'], 'x0/Mul'),
          makeNode('Sub', [NOISE_INPUT, 'x0/scaled_eps'], ['x0/difference'], 'x0/Sub'),
          makeNode('Div', ['x0/difference', 'x0/sqrt_alpha_bar'], [LATENTS_VALUE], 'x0/Div'),
        ],
      };
    case 'v':
      return {
        initializers: [constant('sqrt_alpha_bar', a), constant('sqrt_one_minus_alpha_bar', s)],
        nodes: [
          makeNode('Mul', [NOISE_INPUT, 'x0/sqrt_alpha_bar'], ['x0/scaled_noise'], 'x0/Mul'),
          makeNode('Mul', [prediction, 'x0/sqrt_one_minus_alpha_bar'], ['x0/scaled_v'], 'x0/Mul_1'),
          makeNode('Sub', ['x0/scaled_noise', 'x0/scaled_v'], [LATENTS_VALUE], 'x0/Sub'),
        ],
      };
    case 'x0':
      return { initializers: [], nodes: [makeNode('Identity', [prediction], [LATENTS_VALUE], 'x0/Identity')] };
  }
}

/** Opset imports of both graphs; a domain imported by both must have the same version (operators change between
 * versions, so one graph's nodes cannot simply move to the other's). */
function mergedOpsets(first: ModelProto, second: ModelProto): OperatorSetIdProto[] {
  const versions = new Map<string, number>();
  for (const opset of [...(first.opset_import ?? []), ...(second.opset_import ?? [])]) {
    const domain = opset.domain === 'ai.onnx' ? '' : (opset.domain ?? '');
    const version = int64ToNumber(opset.version);
    const earlier = versions.get(domain);
    if (earlier !== undefined && earlier !== version) {
      throw new Error(`the UNet and the VAE decoder import ${domain || 'ai.onnx'} at versions ${earlier} and ${version}; export both at one opset`);
    }
    versions.set(domain, version);
  }
  return [...versions].map(([domain, version]) => ({ domain, version }));
}

/** Fuses the parts into generator.onnx's model (the parts' graphs are consumed). */
export function buildGenerator(parts: GeneratorParts): ModelProto {
  const unet = graphOf(parts.unet);
  const vae = graphOf(parts.vaeDecoder);
  const sample = requireInput(unet, UNET_INPUTS.sample, 'the UNet');
  const sampleType = requireFloatTensor(sample, 'the UNet input');
  const timestep = requireInput(unet, UNET_INPUTS.timestep, 'the UNet');
  for (const name of [UNET_INPUTS.states, NEGATIVE_INPUT, SCALE_INPUT]) requireFloatTensor(requireInput(unet, name, 'the NASA-patched UNet'), 'the UNet input');
  const unexpected = (unet.input ?? []).filter((input) => ![UNET_INPUTS.sample, UNET_INPUTS.timestep, UNET_INPUTS.states, NEGATIVE_INPUT, SCALE_INPUT].includes(input.name as never));
  const initializerNames = new Set((unet.initializer ?? []).map((tensor) => tensor.name));
  if (unexpected.some((input) => !initializerNames.has(input.name))) {
    throw new Error(`the UNet has inputs the generator cannot feed: ${unexpected.map((input) => input.name).join(', ')}`);
  }
  const prediction = requireFloatTensor(singleOutput(unet, 'the UNet'), 'the UNet output');
  if (vae.input?.length !== 1) throw new Error(`the VAE decoder must have one input, it has ${(vae.input ?? []).map((input) => input.name).join(', ')}`);
  requireFloatTensor(vae.input[0]!, 'the VAE decoder input');
  const decoded = requireFloatTensor(singleOutput(vae, 'the VAE decoder'), 'the VAE decoder output');
  if (prediction.dims.length !== 4 || decoded.dims.length !== 4) throw new Error('the UNet and the VAE decoder must output NCHW tensors');

  const timestepName = 'unet/timestep';
  prefixNames(unet, 'unet', new Map([
    [UNET_INPUTS.sample, NOISE_INPUT],
    [UNET_INPUTS.timestep, timestepName],
    ...[UNET_INPUTS.states, NEGATIVE_INPUT, SCALE_INPUT].map((name): [string, string] => [name, name]),
  ]));
  const unetOutput = unet.output![0]!.name!;
  prefixNames(vae, 'vae_decoder', new Map());
  const vaeInput = vae.input[0]!.name!;
  const vaeOutput = vae.output![0]!.name!;

  const feed = timestepFeed(timestep, parts.schedule.timestep, sampleType.dims[0], timestepName);
  const x0 = x0Nodes(parts.schedule, unetOutput);
  const post = [
    makeNode('Div', [LATENTS_VALUE, 'generator/scaling_factor'], [vaeInput], 'generator/Unscale'),
    makeNode('Clip', [vaeOutput, 'generator/minus_one', 'generator/one'], ['generator/clamped'], 'generator/Clip'),
    makeNode('Add', ['generator/clamped', 'generator/one'], ['generator/shifted'], 'generator/Add'),
    makeNode('Mul', ['generator/shifted', 'generator/half_range'], ['generator/scaled'], 'generator/Mul'),
    makeNode('Round', ['generator/scaled'], ['generator/rounded'], 'generator/Round'),
    makeNode('Cast', ['generator/rounded'], ['generator/pixels'], 'generator/Cast', [attribute.int('to', DataType.UINT8)]),
    makeNode('Transpose', ['generator/pixels'], [IMAGE_OUTPUT], 'generator/Transpose', [attribute.ints('perm', [0, 2, 3, 1])]),
  ];
  const postInitializers = [
    floatTensor('generator/scaling_factor', [], [parts.scalingFactor]),
    floatTensor('generator/minus_one', [], [-1]),
    floatTensor('generator/one', [], [1]),
    floatTensor('generator/half_range', [], [127.5]),
  ];

  const inputs = [NOISE_INPUT, UNET_INPUTS.states, NEGATIVE_INPUT, SCALE_INPUT].map((name) => unet.input!.find((input) => input.name === name)!);
  const batch = sampleType.dims[0] ?? 'batch_size';
  const [, , height, width] = decoded.dims;
  const graph: GraphProto = {
    name: 'snoopi_generator',
    node: [...feed.nodes, ...unet.node!, ...x0.nodes, post[0]!, ...vae.node!, ...post.slice(1)],
    initializer: [
      ...feed.initializers,
      ...(unet.initializer ?? []).filter((tensor) => tensor.name !== timestepName),
      ...x0.initializers,
      ...(vae.initializer ?? []),
      ...postInitializers,
    ],
    input: inputs,
    output: [tensorValueInfo(IMAGE_OUTPUT, DataType.UINT8, [batch, height ?? 'height', width ?? 'width', 3])],
    value_info: [...(unet.value_info ?? []), ...(vae.value_info ?? [])],
  };
  if ((unet.sparse_initializer ?? []).length + (vae.sparse_initializer ?? []).length > 0) throw new Error('sparse initializers are not supported');
  if ((parts.unet.functions ?? []).length + (parts.vaeDecoder.functions ?? []).length > 0) throw new Error('models with local functions are not supported');
  return {
    ir_version: Math.max(int64ToNumber(parts.unet.ir_version), int64ToNumber(parts.vaeDecoder.ir_version)),
    opset_import: mergedOpsets(parts.unet, parts.vaeDecoder),
    producer_name: 'snoopi-serve',
    producer_version: packageInfo.version,
    graph,
  };
}
