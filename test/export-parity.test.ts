// onnxruntime-node against PyTorch on the graphs trainer/export.py writes: a tiny random-init package, its
// optimum/diffusers layout and a parity fixture (inputs + PyTorch outputs) are exported into a temporary folder by
// the Python trainer, then every graph runs here through the engine's runSession and is compared output by output.
// Float outputs (hidden states, latents, decoder samples) must agree to 1e-4, uint8 pixels within one grey level.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { DEFAULT_SESSION_SETTINGS, closeSession, openSession, runSession } from '../src/engine/onnx-runtime.js';
import { exportTinyModel, maxAbsDifference, parityInputs, readParityCases, readTensor } from './helpers/trainer-export.js';

test('graphs exported by trainer.export give PyTorch outputs under onnxruntime', async (t) => {
  const { parityDir } = await exportTinyModel(t);
  const cases = await readParityCases(parityDir);
  assert.deepEqual(cases.map((c) => c.name), [
    'text_encoder', 'generator', 'generator_with_latents', 'optimum_text_encoder', 'optimum_unet', 'optimum_vae_decoder',
  ]);

  for (const parityCase of cases) {
    await t.test(parityCase.name, async (st) => {
      const opened = await openSession(join(parityDir, parityCase.graph), parityCase.name, DEFAULT_SESSION_SETTINGS);
      st.after(() => closeSession(opened));
      const outputs = await runSession(opened, await parityInputs(parityDir, parityCase));
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
