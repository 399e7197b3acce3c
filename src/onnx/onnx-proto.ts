// ONNX models as protobuf messages: the vendored schema (onnx.proto beside this file's source), decoding, encoding,
// reading and writing model files. Messages keep ONNX's own snake_case field names. Decoding keeps every field the
// file set, and only those (proto2 presence), so encoding an unchanged model gives back the same bytes.
//
// Tensors stored in external data files stay there: a model file holds only their location, offset and length, and
// nothing here reads those files (external-data.ts places them next to a written model).
import { readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import protobuf from 'protobufjs';
import { repoRoot } from '../config/paths.js';

/** protobufjs decodes int64 fields as Long objects (exact); new messages may use plain numbers. */
export interface LongValue {
  low: number;
  high: number;
  unsigned: boolean;
  toNumber(): number;
}
export type Int64 = number | LongValue;

export interface StringStringEntryProto {
  key?: string;
  value?: string;
}

export interface OperatorSetIdProto {
  domain?: string;
  version?: Int64;
}

export interface DimensionProto {
  dim_value?: Int64;
  dim_param?: string;
  denotation?: string;
}

export interface TensorShapeProto {
  dim?: DimensionProto[];
}

export interface TypeProto {
  tensor_type?: { elem_type?: number; shape?: TensorShapeProto };
  sequence_type?: { elem_type?: TypeProto };
  map_type?: { key_type?: number; value_type?: TypeProto };
  optional_type?: { elem_type?: TypeProto };
  sparse_tensor_type?: { elem_type?: number; shape?: TensorShapeProto };
  denotation?: string;
}

export interface ValueInfoProto {
  name?: string;
  type?: TypeProto;
  doc_string?: string;
  metadata_props?: StringStringEntryProto[];
}

export interface TensorProto {
  dims?: Int64[];
  data_type?: number;
  segment?: { begin?: Int64; end?: Int64 };
  float_data?: number[];
  int32_data?: number[];
  string_data?: Uint8Array[];
  int64_data?: Int64[];
  name?: string;
  doc_string?: string;
  raw_data?: Uint8Array;
  external_data?: StringStringEntryProto[];
  data_location?: number;
  double_data?: number[];
  uint64_data?: Int64[];
  metadata_props?: StringStringEntryProto[];
}

export interface SparseTensorProto {
  values?: TensorProto;
  indices?: TensorProto;
  dims?: Int64[];
}

export interface AttributeProto {
  name?: string;
  ref_attr_name?: string;
  doc_string?: string;
  type?: number;
  f?: number;
  i?: Int64;
  s?: Uint8Array;
  t?: TensorProto;
  g?: GraphProto;
  sparse_tensor?: SparseTensorProto;
  tp?: TypeProto;
  floats?: number[];
  ints?: Int64[];
  strings?: Uint8Array[];
  tensors?: TensorProto[];
  graphs?: GraphProto[];
  sparse_tensors?: SparseTensorProto[];
  type_protos?: TypeProto[];
}

export interface NodeProto {
  input?: string[];
  output?: string[];
  name?: string;
  op_type?: string;
  domain?: string;
  overload?: string;
  attribute?: AttributeProto[];
  doc_string?: string;
  metadata_props?: StringStringEntryProto[];
  device_configurations?: unknown[];
}

export interface GraphProto {
  node?: NodeProto[];
  name?: string;
  initializer?: TensorProto[];
  sparse_initializer?: SparseTensorProto[];
  doc_string?: string;
  input?: ValueInfoProto[];
  output?: ValueInfoProto[];
  value_info?: ValueInfoProto[];
  quantization_annotation?: unknown[];
  metadata_props?: StringStringEntryProto[];
}

export interface ModelProto {
  ir_version?: Int64;
  opset_import?: OperatorSetIdProto[];
  producer_name?: string;
  producer_version?: string;
  domain?: string;
  model_version?: Int64;
  doc_string?: string;
  graph?: GraphProto;
  metadata_props?: StringStringEntryProto[];
  training_info?: unknown[];
  functions?: unknown[];
  configuration?: unknown[];
}

/** TensorProto.DataType, the element types this code creates or checks. */
export const DataType = {
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  INT32: 6,
  INT64: 7,
  BOOL: 9,
  FLOAT16: 10,
  DOUBLE: 11,
} as const;

/** AttributeProto.AttributeType */
export const AttributeType = { FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, GRAPH: 5, FLOATS: 6, INTS: 7, GRAPHS: 10 } as const;

/** TensorProto.DataLocation.EXTERNAL */
export const EXTERNAL_DATA_LOCATION = 1;

export const SCHEMA_PATH = join(repoRoot, 'src', 'onnx', 'onnx.proto');

let modelType: protobuf.Type | undefined;

/** The ModelProto message type of the vendored schema, parsed once (tsc does not copy .proto files into dist). */
function modelProtoType(): protobuf.Type {
  modelType ??= protobuf.parse(readFileSync(SCHEMA_PATH, 'utf8'), { keepCase: true }).root.lookupType('onnx.ModelProto');
  return modelType;
}

/** Decodes a model into plain objects that hold exactly the fields the file sets (absent ones are undefined); int64s
 * stay exact (Long), bytes are views into `bytes`. */
export function decodeModel(bytes: Uint8Array): ModelProto {
  const type = modelProtoType();
  return type.toObject(type.decode(bytes)) as ModelProto;
}

export function encodeModel(model: ModelProto): Uint8Array {
  return modelProtoType().encode(model as protobuf.Message).finish();
}

/** Reads a model file; tensors in external data files are not read (see external-data.ts). */
export async function readModel(path: string): Promise<ModelProto> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (error) {
    throw new Error(`cannot read ${path}: ${(error as Error).message}`);
  }
  try {
    return decodeModel(bytes);
  } catch (error) {
    throw new Error(`${path} is not an ONNX model: ${(error as Error).message}`);
  }
}

/** Writes the model file only; see writeModelWithData (external-data.ts) for models with external tensors. */
export async function writeModelFile(model: ModelProto, path: string): Promise<number> {
  const bytes = encodeModel(model);
  await writeFile(path, bytes);
  return bytes.length;
}

export function int64ToNumber(value: Int64 | undefined): number {
  if (value === undefined) return 0;
  if (typeof value === 'number') return value;
  const number = value.toNumber();
  if (!Number.isSafeInteger(number)) throw new Error(`int64 ${number} is beyond the integers a number holds exactly`);
  return number;
}

/** The graph of a model, which every model meant for inference has. */
export function graphOf(model: ModelProto): GraphProto {
  if (model.graph === undefined) throw new Error('the model has no graph');
  return model.graph;
}
