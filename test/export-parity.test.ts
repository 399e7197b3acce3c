// onnxruntime-node against PyTorch on the graphs trainer/export.py writes: a tiny random-init package, its
// optimum/diffusers layout and a parity fixture (inputs + PyTorch outputs) are exported into a temporary folder by
// the Python trainer, then every graph runs here through the engine's runSession and is compared output by output.
// Float outputs (hidden states, latents, decoder samples) must agree to 1e-4, uint8 pixels within one grey level.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { repoRoot } from '../src/config/paths.js';
import { DEFAULT_SESSION_SETTINGS, closeSession, openSession, runSession, type PlainTensor } from '../src/engine/onnx-runtime.js';

const PYTHON = '/usr/bin/python3';

interface TensorFile {
  dtype: 'float32' | 'int64' | 'int32' | 'uint8';
  dims: number[];
  file: string;
  max_abs?: number;
}

interface ParityCase {
  name: string;
  graph: string;
  inputs: Record<string, TensorFile>;
  outputs: Record<string, TensorFile>;
}

async function readTensor(dir: string, entry: TensorFile): Promise<PlainTensor> {
  const bytes = await readFile(join(dir, entry.file));
  const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  switch (entry.dtype) {
    case 'float32':
      return { type: 'float32', data: new Float32Array(buffer), dims: entry.dims };
    case 'int64':
      return { type: 'int64', data: new BigInt64Array(buffer), dims: entry.dims };
    case 'uint8':
      return { type: 'uint8', data: new Uint8Array(buffer), dims: entry.dims };
    case 'int32':
      // optimum's text encoder takes int32 ids; the engine's TensorType does not list int32 (yet), onnxruntime does.
      return { type: 'int32', data: new Int32Array(buffer), dims: entry.dims } as unknown as PlainTensor;
  }
}

function maxAbsDifference(actual: PlainTensor['data'], expected: PlainTensor['data']): number {
  let max = 0;
  for (let i = 0; i < expected.length; i++) max = Math.max(max, Math.abs(Number(actual[i]) - Number(expected[i])));
  return max;
}

test('graphs exported by trainer.export give PyTorch outputs under onnxruntime', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'snoopi-export-parity-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const parityDir = join(dir, 'parity');
  await promisify(execFile)(
    PYTHON,
    ['-m', 'trainer.export', '--random-init', 'unet-eps', '--tiny', '--id', 'tiny', '--out', join(dir, 'tiny'),
      '--optimum-out', join(dir, 'optimum'), '--parity-out', parityDir, '--seed', '7'],
    { cwd: repoRoot, maxBuffer: 16 * 1024 * 1024 },
  );
  const fixture = JSON.parse(await readFile(join(parityDir, 'parity.json'), 'utf8')) as { cases: ParityCase[] };
  assert.deepEqual(fixture.cases.map((c) => c.name), [
    'text_encoder', 'generator', 'generator_with_latents', 'optimum_text_encoder', 'optimum_unet', 'optimum_vae_decoder',
  ]);

  for (const parityCase of fixture.cases) {
    await t.test(parityCase.name, async (st) => {
      const opened = await openSession(join(parityDir, parityCase.graph), parityCase.name, DEFAULT_SESSION_SETTINGS);
      st.after(() => closeSession(opened));
      const feeds: Record<string, PlainTensor> = {};
      for (const [name, entry] of Object.entries(parityCase.inputs)) feeds[name] = await readTensor(parityDir, entry);
      const outputs = await runSession(opened, feeds);
      assert.deepEqual(Object.keys(outputs).sort(), Object.keys(parityCase.outputs).sort());
      for (const [name, entry] of Object.entries(parityCase.outputs)) {
        const expected = await readTensor(parityDir, entry);
        const actual = outputs[name]!;
        assert.equal(actual.type, expected.type, `${name} dtype`);
        assert.deepEqual([...actual.dims], expected.dims, `${name} dims`);
        const difference = maxAbsDifference(actual.data, expected.data);
        st.diagnostic(`${parityCase.name}.${name}: max |onnxruntime - PyTorch| = ${difference.toExponential(2)}`);
        assert.ok(difference <= entry.max_abs!, `${name}: max difference ${difference} > ${entry.max_abs}`);
      }
    });
  }
});
