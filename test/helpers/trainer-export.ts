// The Python trainer's export of a tiny random-init model, for the tests that need real exported graphs: the model
// package, its optimum/diffusers layout and the parity fixture (inputs and PyTorch outputs as raw .bin files
// described by parity.json), written into a temporary folder that is removed when the test ends.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { promisify } from 'node:util';
import { repoRoot } from '../../src/config/paths.js';
import type { PlainTensor } from '../../src/engine/onnx-runtime.js';

const PYTHON = '/usr/bin/python3';

export interface TinyExport {
  /** The package folder (its name is the id). */
  packageDir: string;
  optimumDir: string;
  parityDir: string;
  id: string;
  /** The temporary folder holding all three; free for the test's own files. */
  dir: string;
}

/** Runs `python -m trainer.export --random-init unet-eps --tiny` with --optimum-out and --parity-out (~20 s). */
export async function exportTinyModel(t: TestContext, { id = 'tiny', seed = 7 }: { id?: string; seed?: number } = {}): Promise<TinyExport> {
  const dir = await mkdtemp(join(tmpdir(), 'snoopi-export-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const exported = { packageDir: join(dir, id), optimumDir: join(dir, 'optimum'), parityDir: join(dir, 'parity'), id, dir };
  await promisify(execFile)(
    PYTHON,
    ['-m', 'trainer.export', '--random-init', 'unet-eps', '--tiny', '--id', id, '--out', exported.packageDir,
      '--optimum-out', exported.optimumDir, '--parity-out', exported.parityDir, '--seed', String(seed)],
    { cwd: repoRoot, maxBuffer: 16 * 1024 * 1024 },
  );
  return exported;
}

export interface TensorFile {
  dtype: 'float32' | 'int64' | 'int32' | 'uint8';
  dims: number[];
  file: string;
  max_abs?: number;
}

export interface ParityCase {
  name: string;
  graph: string;
  inputs: Record<string, TensorFile>;
  outputs: Record<string, TensorFile>;
}

export async function readParityCases(parityDir: string): Promise<ParityCase[]> {
  return (JSON.parse(await readFile(join(parityDir, 'parity.json'), 'utf8')) as { cases: ParityCase[] }).cases;
}

export async function readTensor(dir: string, entry: TensorFile): Promise<PlainTensor> {
  const bytes = await readFile(join(dir, entry.file));
  const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  switch (entry.dtype) {
    case 'float32':
      return { type: 'float32', data: new Float32Array(buffer), dims: entry.dims };
    case 'int64':
      return { type: 'int64', data: new BigInt64Array(buffer), dims: entry.dims };
    case 'int32':
      return { type: 'int32', data: new Int32Array(buffer), dims: entry.dims };
    case 'uint8':
      return { type: 'uint8', data: new Uint8Array(buffer), dims: entry.dims };
  }
}

/** The inputs of one parity case, read. */
export async function parityInputs(parityDir: string, parityCase: ParityCase): Promise<Record<string, PlainTensor>> {
  const feeds: Record<string, PlainTensor> = {};
  for (const [name, entry] of Object.entries(parityCase.inputs)) feeds[name] = await readTensor(parityDir, entry);
  return feeds;
}

export function maxAbsDifference(actual: PlainTensor['data'], expected: PlainTensor['data']): number {
  if (actual.length !== expected.length) throw new Error(`${actual.length} values against ${expected.length}`);
  let max = 0;
  for (let i = 0; i < expected.length; i++) max = Math.max(max, Math.abs(Number(actual[i]) - Number(expected[i])));
  return max;
}
