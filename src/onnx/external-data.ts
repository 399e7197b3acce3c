// Tensors in external data files. A model over protobuf's 2 GB limit (every Stable Diffusion UNet in fp32) keeps its
// weights in files beside the model, named by each tensor's `location` (relative to the model file) with an offset
// and a length. Rewrites never read those files: they keep the references as they are, and writing a model puts each
// file it references next to it (a hard link, or a copy across file systems), so a written model opens on its own.
import { constants } from 'node:fs';
import { copyFile, link, mkdir, open, rm, stat } from 'node:fs/promises';
import { dirname, isAbsolute, join, normalize, sep } from 'node:path';
import { subgraphsOf } from './onnx-graph.js';
import { EXTERNAL_DATA_LOCATION, graphOf, writeModelFile, type GraphProto, type ModelProto, type TensorProto } from './onnx-proto.js';

export interface ExternalData {
  location: string;
  offset: number;
  /** Undefined: to the end of the file. */
  length: number | undefined;
}

/** Calls `visit` on every tensor of the graph: initializers, sparse initializers, constants in attributes, and the
 * same in subgraphs. */
export function forEachTensor(graph: GraphProto, visit: (tensor: TensorProto) => void): void {
  for (const tensor of graph.initializer ?? []) visit(tensor);
  for (const sparse of graph.sparse_initializer ?? []) {
    if (sparse.values !== undefined) visit(sparse.values);
    if (sparse.indices !== undefined) visit(sparse.indices);
  }
  for (const node of graph.node ?? []) {
    for (const entry of node.attribute ?? []) {
      if (entry.t !== undefined) visit(entry.t);
      for (const tensor of entry.tensors ?? []) visit(tensor);
      for (const sparse of [...(entry.sparse_tensor !== undefined ? [entry.sparse_tensor] : []), ...(entry.sparse_tensors ?? [])]) {
        if (sparse.values !== undefined) visit(sparse.values);
        if (sparse.indices !== undefined) visit(sparse.indices);
      }
    }
    for (const subgraph of subgraphsOf(node)) forEachTensor(subgraph, visit);
  }
}

export function externalDataOf(tensor: TensorProto): ExternalData | undefined {
  if (tensor.data_location !== EXTERNAL_DATA_LOCATION) return undefined;
  const entries = new Map((tensor.external_data ?? []).map((entry) => [entry.key ?? '', entry.value ?? '']));
  const location = entries.get('location');
  if (location === undefined || location === '') throw new Error(`tensor ${tensor.name} is external but names no location`);
  if (isAbsolute(location) || normalize(location).split(sep).includes('..')) {
    throw new Error(`tensor ${tensor.name}: external data location ${location} leaves the model's folder`);
  }
  const length = entries.get('length');
  return { location, offset: Number(entries.get('offset') ?? 0), length: length === undefined ? undefined : Number(length) };
}

/** The external data files the model references, with the bytes each must at least have. */
export function externalDataFiles(model: ModelProto): Map<string, number> {
  const files = new Map<string, number>();
  forEachTensor(graphOf(model), (tensor) => {
    const data = externalDataOf(tensor);
    if (data !== undefined) files.set(data.location, Math.max(files.get(data.location) ?? 0, data.offset + (data.length ?? 0)));
  });
  return files;
}

/**
 * Where the model's external data files are, when the model file is in `modelDir`: location -> path. Checks that each
 * exists and is long enough for the tensors that point into it (reading no data).
 */
export async function locateExternalData(model: ModelProto, modelDir: string): Promise<Map<string, string>> {
  const sources = new Map<string, string>();
  for (const [location, minimumBytes] of externalDataFiles(model)) {
    const path = join(modelDir, location);
    let size: number;
    try {
      size = (await stat(path)).size;
    } catch {
      throw new Error(`external data file ${path} is missing`);
    }
    if (size < minimumBytes) throw new Error(`external data file ${path} has ${size} bytes; its tensors need ${minimumBytes}`);
    sources.set(location, path);
  }
  return sources;
}

/** Gives every external data file a new location (merging models whose files have the same names). */
export function renameExternalData(model: ModelProto, rename: (location: string) => string): void {
  forEachTensor(graphOf(model), (tensor) => {
    const data = externalDataOf(tensor);
    if (data === undefined) return;
    for (const entry of tensor.external_data ?? []) if (entry.key === 'location') entry.value = rename(data.location);
  });
}

/** Puts `source` at `target`: a hard link where the file system allows one, otherwise a streamed copy. Nothing to do
 * when `target` is `source` already (the same file, by device and inode, whatever the path). */
async function placeFile(source: string, target: string): Promise<void> {
  const [from, to] = await Promise.all([stat(source), stat(target).catch(() => undefined)]);
  if (to !== undefined && to.dev === from.dev && to.ino === from.ino) return;
  await mkdir(dirname(target), { recursive: true });
  await rm(target, { force: true });
  try {
    await link(source, target);
  } catch {
    await copyFile(source, target, constants.COPYFILE_FICLONE);
  }
}

/**
 * Writes the model to `path` and puts every external data file it references next to it, taken from `sources`
 * (location -> current path; see locateExternalData). Returns the files written, relative to the model's folder:
 * the model file first.
 */
export async function writeModel(model: ModelProto, path: string, sources: ReadonlyMap<string, string> = new Map()): Promise<string[]> {
  const locations = [...externalDataFiles(model).keys()];
  await mkdir(dirname(path), { recursive: true });
  for (const location of locations) {
    const source = sources.get(location);
    if (source === undefined) throw new Error(`no source given for the external data file ${location}`);
    await placeFile(source, join(dirname(path), location));
  }
  await writeModelFile(model, path);
  return [path.split(sep).pop()!, ...locations];
}

/** Offsets of externalised tensors are multiples of this (what onnx's own save_as_external_data does for large
 * tensors, so that a runtime can map them). */
const EXTERNAL_ALIGNMENT = 4096;

/**
 * Moves the inline data (raw_data) of initializers of at least `minimumBytes` into one external file `location` in
 * `dir`: how a graph whose inline tensors would pass protobuf's 2 GB limit is written. Returns the bytes moved.
 */
export async function externalizeInitializers(model: ModelProto, dir: string, location: string, minimumBytes: number): Promise<number> {
  await mkdir(dirname(join(dir, location)), { recursive: true });
  const file = await open(join(dir, location), 'w');
  let offset = 0;
  let moved = 0;
  try {
    for (const tensor of graphOf(model).initializer ?? []) {
      const data = tensor.raw_data;
      if (data === undefined || data.length < minimumBytes || tensor.data_location === EXTERNAL_DATA_LOCATION) continue;
      offset = Math.ceil(offset / EXTERNAL_ALIGNMENT) * EXTERNAL_ALIGNMENT;
      await file.write(data, 0, data.length, offset);
      tensor.external_data = [
        { key: 'location', value: location },
        { key: 'offset', value: String(offset) },
        { key: 'length', value: String(data.length) },
      ];
      tensor.data_location = EXTERNAL_DATA_LOCATION;
      delete tensor.raw_data;
      offset += data.length;
      moved += data.length;
    }
  } finally {
    await file.close();
  }
  return moved;
}

/** Bytes of tensor data held inside the model file (what counts towards protobuf's 2 GB limit). */
export function inlineTensorBytes(model: ModelProto): number {
  let bytes = 0;
  forEachTensor(graphOf(model), (tensor) => {
    bytes += tensor.raw_data?.length ?? 0;
    bytes += 4 * ((tensor.float_data?.length ?? 0) + (tensor.int32_data?.length ?? 0));
    bytes += 8 * ((tensor.int64_data?.length ?? 0) + (tensor.double_data?.length ?? 0) + (tensor.uint64_data?.length ?? 0));
  });
  return bytes;
}

