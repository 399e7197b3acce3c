// Small constructors for the ONNX messages that graph rewrites add: nodes, attributes, constant tensors and value
// infos, plus readers for the attributes and tensor types rewrites look at.
import {
  AttributeType,
  DataType,
  int64ToNumber,
  type AttributeProto,
  type NodeProto,
  type TensorProto,
  type ValueInfoProto,
} from './onnx-proto.js';

export const MICROSOFT_DOMAIN = 'com.microsoft';

export function makeNode(opType: string, inputs: string[], outputs: string[], name: string, attributes: AttributeProto[] = [], domain = ''): NodeProto {
  const node: NodeProto = { input: inputs, output: outputs, name, op_type: opType, attribute: attributes };
  if (domain !== '') node.domain = domain;
  return node;
}

export const attribute = {
  int: (name: string, value: number): AttributeProto => ({ name, type: AttributeType.INT, i: value }),
  ints: (name: string, values: number[]): AttributeProto => ({ name, type: AttributeType.INTS, ints: values }),
  float: (name: string, value: number): AttributeProto => ({ name, type: AttributeType.FLOAT, f: value }),
  tensor: (name: string, value: TensorProto): AttributeProto => ({ name, type: AttributeType.TENSOR, t: value }),
};

export function findAttribute(node: NodeProto, name: string): AttributeProto | undefined {
  return node.attribute?.find((candidate) => candidate.name === name);
}

export function intAttribute(node: NodeProto, name: string, fallback: number): number {
  const found = findAttribute(node, name);
  return found?.i === undefined ? fallback : int64ToNumber(found.i);
}

/** Element types a constant can be made of, with the bytes of one element. */
const ELEMENT_WRITERS: Record<number, { bytes: number; write(view: DataView, offset: number, value: number): void }> = {
  [DataType.FLOAT]: { bytes: 4, write: (view, offset, value) => view.setFloat32(offset, value, true) },
  [DataType.DOUBLE]: { bytes: 8, write: (view, offset, value) => view.setFloat64(offset, value, true) },
  [DataType.INT32]: { bytes: 4, write: (view, offset, value) => view.setInt32(offset, value, true) },
  [DataType.INT64]: { bytes: 8, write: (view, offset, value) => view.setBigInt64(offset, BigInt(value), true) },
  [DataType.UINT8]: { bytes: 1, write: (view, offset, value) => view.setUint8(offset, value) },
};

export function elementTypeName(dataType: number): string {
  const entry = Object.entries(DataType).find(([, value]) => value === dataType);
  return entry === undefined ? `element type ${dataType}` : entry[0].toLowerCase();
}

/** A constant tensor (little-endian raw_data) of `dataType`, which must be float, double, int32, int64 or uint8. */
export function makeTensor(name: string, dataType: number, dims: number[], values: readonly number[]): TensorProto {
  const writer = ELEMENT_WRITERS[dataType];
  if (writer === undefined) throw new Error(`cannot make a constant of ${elementTypeName(dataType)}`);
  const count = dims.reduce((product, size) => product * size, 1);
  if (values.length !== count) throw new Error(`tensor ${name}: ${values.length} values for dims [${dims.join(',')}]`);
  const bytes = new Uint8Array(count * writer.bytes);
  const view = new DataView(bytes.buffer);
  values.forEach((value, index) => writer.write(view, index * writer.bytes, value));
  return { name, dims, data_type: dataType, raw_data: bytes };
}

export const floatTensor = (name: string, dims: number[], values: readonly number[]) => makeTensor(name, DataType.FLOAT, dims, values);
export const int64Tensor = (name: string, dims: number[], values: readonly number[]) => makeTensor(name, DataType.INT64, dims, values);

export type Dim = number | string;

export function tensorValueInfo(name: string, elemType: number, dims: readonly Dim[]): ValueInfoProto {
  return {
    name,
    type: {
      tensor_type: {
        elem_type: elemType,
        shape: { dim: dims.map((dim) => (typeof dim === 'number' ? { dim_value: dim } : { dim_param: dim })) },
      },
    },
  };
}

export interface TensorType {
  elemType: number;
  /** Fixed sizes as numbers, symbolic ones as their names, unknown ones as undefined. */
  dims: (Dim | undefined)[];
}

/** The tensor type a value info declares; undefined for non-tensors and tensors without a shape. */
export function tensorTypeOf(info: ValueInfoProto): TensorType | undefined {
  const tensor = info.type?.tensor_type;
  if (tensor?.elem_type === undefined || tensor.shape === undefined) return undefined;
  return {
    elemType: tensor.elem_type,
    dims: (tensor.shape.dim ?? []).map((dim) =>
      dim.dim_value !== undefined ? int64ToNumber(dim.dim_value) : dim.dim_param !== undefined && dim.dim_param !== '' ? dim.dim_param : undefined,
    ),
  };
}

export const formatDims = (dims: readonly (Dim | undefined)[]): string => `[${dims.map((dim) => dim ?? '?').join(',')}]`;
