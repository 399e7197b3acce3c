// text_encoder.onnx of a package from an optimum text encoder: the contract's signature is input_ids int64 [B, L] ->
// last_hidden_state float32 [B, L, D] and nothing else. optimum's CLIP export takes int32 ids (a Cast to int32 is put
// in front) and also outputs pooler_output (dropped, with the nodes only it needed).
import { attribute, elementTypeName, makeNode, tensorTypeOf, type TensorType } from '../onnx/onnx-builders.js';
import { pruneUnused, renameGraph } from '../onnx/onnx-graph.js';
import { DataType, graphOf, type ModelProto } from '../onnx/onnx-proto.js';

export const IDS_INPUT = 'input_ids';
export const HIDDEN_OUTPUT = 'last_hidden_state';

export interface TextEncoderSignature {
  ids: TensorType;
  hidden: TensorType;
  /** What was changed, for the import report. */
  changes: string[];
}

export function adaptTextEncoder(model: ModelProto): TextEncoderSignature {
  const graph = graphOf(model);
  const runtimeInputs = (graph.input ?? []).filter((input) => !(graph.initializer ?? []).some((tensor) => tensor.name === input.name));
  const idsInfo = runtimeInputs.find((input) => input.name === IDS_INPUT);
  if (idsInfo === undefined || runtimeInputs.length !== 1) {
    throw new Error(`the text encoder must take only ${IDS_INPUT}; it takes ${runtimeInputs.map((input) => input.name).join(', ')}`);
  }
  const ids = tensorTypeOf(idsInfo);
  if (ids === undefined || ids.dims.length !== 2 || ![DataType.INT64, DataType.INT32].includes(ids.elemType as never)) {
    throw new Error(`the text encoder's ${IDS_INPUT} must be int64 or int32 [B, L]`);
  }
  const hiddenInfo = (graph.output ?? []).find((output) => output.name === HIDDEN_OUTPUT);
  const hidden = hiddenInfo === undefined ? undefined : tensorTypeOf(hiddenInfo);
  if (hidden === undefined || hidden.elemType !== DataType.FLOAT || hidden.dims.length !== 3) {
    throw new Error(`the text encoder must output ${HIDDEN_OUTPUT} float32 [B, L, D]${hidden === undefined ? '' : `; it is ${elementTypeName(hidden.elemType)}`}`);
  }

  const changes: string[] = [];
  if (ids.elemType === DataType.INT32) {
    const cast = `${IDS_INPUT}/int32`;
    renameGraph(graph, (name) => (name === IDS_INPUT ? cast : name));
    idsInfo.name = IDS_INPUT;
    idsInfo.type!.tensor_type!.elem_type = DataType.INT64;
    graph.node!.unshift(makeNode('Cast', [IDS_INPUT], [cast], 'input_ids/Cast', [attribute.int('to', DataType.INT32)]));
    changes.push('input_ids int32 -> int64 (a Cast in front)');
  }
  const dropped = (graph.output ?? []).filter((output) => output !== hiddenInfo).map((output) => output.name);
  if (dropped.length > 0) {
    graph.output = [hiddenInfo!];
    const pruned = pruneUnused(graph);
    changes.push(`dropped output${dropped.length > 1 ? 's' : ''} ${dropped.join(', ')} (${pruned} nodes)`);
  }
  return { ids: { ...ids, elemType: DataType.INT64 }, hidden, changes };
}
