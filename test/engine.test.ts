import assert from 'node:assert/strict';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { createEngine, type Engine, type EngineLog } from '../src/engine/engine.js';
import { INTRA_OP_WAITS } from '../src/engine/intra-op-wait.js';
import { feedMismatches } from '../src/engine/onnx-runtime.js';
import { loadManifest, type ModelManifest } from '../src/registry/model-manifest.js';
import { seededNoise } from '../src/noise/seeded-noise.js';
import { ClipTokenizer } from '../src/tokenizer/clip-tokenizer.js';
import { maxAbsDifference } from './helpers/trainer-export.js';
import { TEST_MODEL_DIR, TEST_MODEL_ID } from './helpers/test-model.js';

let manifest: ModelManifest;
let engine: Engine;
let tokenizer: ClipTokenizer;

function recordingLog() {
  const lines: { level: string; details: object; message: string }[] = [];
  const log: EngineLog = {
    info: (details, message) => lines.push({ level: 'info', details, message }),
    warn: (details, message) => lines.push({ level: 'warn', details, message }),
  };
  return { log, lines };
}

before(async () => {
  manifest = await loadManifest(TEST_MODEL_DIR, TEST_MODEL_ID, { verifyFiles: true });
  engine = await createEngine({ packageDir: TEST_MODEL_DIR, manifest, executionProvider: 'cpu', intraOpThreads: 2 });
  tokenizer = await ClipTokenizer.fromDir(join(TEST_MODEL_DIR, 'tokenizer'), { maxLength: manifest.text.max_length });
});

after(() => engine?.close());

const sizes = () => {
  const { max_length: L, hidden_size: D } = manifest.text;
  const { channels: C, height: h, width: w } = manifest.latent;
  return { L, D, noise: C * h * w, embedding: L * D, image: manifest.image.width * manifest.image.height * 3 };
};

async function embed(text: string): Promise<Float32Array> {
  return engine.encodeText(BigInt64Array.from(tokenizer.encode(text).ids, BigInt), 1);
}

/** Repeats `row` `times` times into one array. */
function tile(row: Float32Array, times: number): Float32Array {
  const out = new Float32Array(row.length * times);
  for (let i = 0; i < times; i++) out.set(row, i * row.length);
  return out;
}

test('cpu is used when configured, with no fallback logged', async () => {
  const { log, lines } = recordingLog();
  const cpuEngine = await createEngine({ packageDir: TEST_MODEL_DIR, manifest, executionProvider: 'cpu', intraOpThreads: 1, log });
  await cpuEngine.close();
  assert.equal(cpuEngine.provider, 'cpu');
  assert.deepEqual(cpuEngine.providers, { textEncoder: 'cpu', generator: 'cpu' });
  assert.deepEqual(lines.map(({ level, message }) => [level, message]), [['info', 'model graphs loaded']]);
});

test('cuda falls back to cpu with the reason logged where CUDA cannot load, and is used where it can', async () => {
  const { log, lines } = recordingLog();
  const cudaEngine = await createEngine({ packageDir: TEST_MODEL_DIR, manifest, executionProvider: 'cuda', intraOpThreads: 1, log });
  await cudaEngine.close();
  const warnings = lines.filter((line) => line.level === 'warn');
  if (cudaEngine.provider === 'cuda') {
    assert.deepEqual(warnings, []);
    return;
  }
  assert.deepEqual(cudaEngine.providers, { textEncoder: 'cpu', generator: 'cpu' });
  assert.deepEqual(
    warnings.map(({ details, message }) => ({ ...details, reason: undefined, message })),
    ['text_encoder.onnx', 'generator.onnx'].map((graph) => ({
      model: TEST_MODEL_ID,
      graph,
      requested: 'cuda',
      provider: 'cpu',
      reason: undefined,
      message: `execution provider cuda is unavailable; ${graph} runs on cpu`,
    })),
  );
  for (const { details } of warnings) assert.match((details as { reason: string }).reason, /Failed to load shared library/);
});

test('encodeText gives [B, L, D] and each row equals the row encoded alone', async () => {
  const { L, D, embedding } = sizes();
  const texts = ['a red circle', 'a large blue square on a black background', ''];
  const alone = await Promise.all(texts.map(embed));
  const ids = BigInt64Array.from(texts.flatMap((text) => tokenizer.encode(text).ids), BigInt);
  const batched = await engine.encodeText(ids, texts.length);
  assert.equal(batched.length, texts.length * L * D);
  texts.forEach((_, row) => {
    assert.ok(maxAbsDifference(batched.subarray(row * embedding, (row + 1) * embedding), alone[row]!) < 1e-5);
  });
  assert.notDeepEqual(alone[0], alone[1]);
});

test('generate gives uint8 [B, H, W, 3]; a row in batches of 1, 3 and 8 is the same within 1', async () => {
  const { noise: noiseSize, image: imageSize } = sizes();
  const positive = await embed('a red circle on a white background');
  const negative = await embed('blue');
  const noise = seededNoise(42, noiseSize);
  const run = async (batch: number, scale: number) => {
    const noises = new Float32Array(batch * noiseSize);
    for (let row = 0; row < batch; row++) seededNoise(1000 + row, noiseSize, noises.subarray(row * noiseSize, (row + 1) * noiseSize));
    noises.set(noise, (batch - 1) * noiseSize); // the row under test goes last
    const image = await engine.generate({
      noise: noises,
      encoderHiddenStates: tile(positive, batch),
      negativeEncoderHiddenStates: tile(negative, batch),
      nasaScale: new Float32Array(batch).fill(scale),
      batch,
    });
    assert.equal(image.length, batch * imageSize);
    return image.subarray((batch - 1) * imageSize);
  };
  for (const scale of [0, manifest.nasa.max_scale]) {
    const alone = await run(1, scale);
    for (const batch of [3, 8]) assert.ok(maxAbsDifference(await run(batch, scale), alone) <= 1, `batch ${batch}, scale ${scale}`);
  }
});

test('every intra-op wait mode opens on the real onnxruntime and gives the same pixels', async () => {
  const { noise: noiseSize } = sizes();
  const positive = await embed('a red circle on a white background');
  const inputs = () => ({
    noise: seededNoise(7, noiseSize),
    encoderHiddenStates: positive.slice(),
    negativeEncoderHiddenStates: positive.slice(),
    nasaScale: new Float32Array(1),
    batch: 1,
  });
  const reference = await engine.generate(inputs());
  for (const intraOpWait of INTRA_OP_WAITS) {
    const other = await createEngine({ packageDir: TEST_MODEL_DIR, manifest, executionProvider: 'cpu', intraOpThreads: 2, intraOpWait });
    try {
      assert.deepEqual(await other.generate(inputs()), reference, intraOpWait);
    } finally {
      await other.close();
    }
  }
});

test('nasa_scale 0 ignores the negative embedding exactly; other seeds give other pixels', async () => {
  const { noise: noiseSize } = sizes();
  const positive = await embed('a green triangle');
  const generateWith = async (negativeText: string, seed: number) =>
    engine.generate({
      noise: seededNoise(seed, noiseSize),
      encoderHiddenStates: positive.slice(),
      negativeEncoderHiddenStates: await embed(negativeText),
      nasaScale: new Float32Array(1),
      batch: 1,
    });
  const withRed = await generateWith('red', 7);
  const withNothing = await generateWith('', 7);
  assert.deepEqual(withRed, withNothing);
  assert.ok(maxAbsDifference(await generateWith('', 8), withNothing) > 1);
});

test('generateRows packs requests into one batch and hands each its rows', async () => {
  const { noise: noiseSize, image: imageSize } = sizes();
  const red = await embed('a red circle');
  const blue = await embed('a blue square');
  const empty = await embed('');
  const requests = [
    { rows: 2, noise: seededNoise(1, 2 * noiseSize), embedding: red, negativeEmbedding: empty, nasaScale: 0 },
    { rows: 1, noise: seededNoise(2, noiseSize), embedding: blue, negativeEmbedding: red, nasaScale: manifest.nasa.max_scale },
  ];
  const [first, second] = await engine.generateRows(requests);
  assert.equal(first!.length, 2 * imageSize);
  assert.equal(second!.length, imageSize);
  const secondAlone = await engine.generate({
    noise: seededNoise(2, noiseSize),
    encoderHiddenStates: blue.slice(),
    negativeEncoderHiddenStates: red.slice(),
    nasaScale: new Float32Array([manifest.nasa.max_scale]),
    batch: 1,
  });
  assert.ok(maxAbsDifference(second!, secondAlone) <= 1);
  // The embeddings are read, not transferred: the cache may hold them.
  assert.equal(red.length, sizes().embedding);
});

test('inputs cross to the worker by transfer: the caller\'s buffers are detached', async () => {
  const { noise: noiseSize, embedding } = sizes();
  const noise = seededNoise(3, noiseSize);
  const states = new Float32Array(embedding);
  const image = await engine.generate({
    noise,
    encoderHiddenStates: states,
    negativeEncoderHiddenStates: new Float32Array(embedding),
    nasaScale: new Float32Array(1),
    batch: 1,
  });
  assert.equal(noise.byteLength, 0);
  assert.equal(states.byteLength, 0);
  assert.equal(image.byteOffset, 0);
  assert.equal(image.buffer.byteLength, image.byteLength);
});

test('a feed that does not match the graph fails with each input\'s expected and actual dtype and dims', async () => {
  const { L, D, embedding } = sizes();
  const { channels: C, height: h, width: w } = manifest.latent;
  await assert.rejects(
    engine.generate({
      noise: new Float32Array(2 * C * h * w),
      encoderHiddenStates: new Float32Array(embedding),
      negativeEncoderHiddenStates: new Float32Array(embedding),
      nasaScale: new Float32Array(1),
      batch: 1,
    }),
    (error: Error & { code: string; statusCode: number }) => {
      assert.equal(error.code, 'SNOOPI_ENGINE_FAILED');
      assert.equal(error.statusCode, 500);
      const lines = error.message.split('\n');
      assert.equal(lines[0], 'Inference failed: generator.onnx: the inputs do not match the graph:');
      assert.match(lines[1]!, new RegExp(`^  noise: expected float32 \\[\\w+,${C},${h},${w}\\], got float32 \\[1,${C},${h},${w}\\] \\(data holds ${2 * C * h * w} values, dims need ${C * h * w}\\)$`));
      assert.match(lines[2]!, new RegExp(`^  encoder_hidden_states: expected float32 \\[\\w+,${L},${D}\\], got float32 \\[1,${L},${D}\\]$`));
      assert.equal(lines.length, 5);
      return true;
    },
  );
});

test('feedMismatches checks names, dtypes, fixed dims, one size per symbolic dim and data length', () => {
  const inputs = [
    { name: 'x', type: 'float32', dims: ['batch', 4] },
    { name: 'ids', type: 'int64', dims: ['batch', 2] },
  ];
  const ok = { x: { type: 'float32' as const, data: new Float32Array(8), dims: [2, 4] }, ids: { type: 'int64' as const, data: new BigInt64Array(4), dims: [2, 2] } };
  assert.deepEqual(feedMismatches(inputs, ok), []);
  assert.deepEqual(
    feedMismatches(inputs, {
      x: { type: 'float32', data: new Float32Array(12), dims: [3, 4] },
      ids: { type: 'float32', data: new Float32Array(6), dims: [2, 3] },
      extra: { type: 'uint8', data: new Uint8Array(1), dims: [1] },
    }),
    [
      'x: expected float32 [batch,4], got float32 [3,4]',
      'ids: expected int64 [batch,2], got float32 [2,3] (dtype differs; axis 0 (batch) must be 3 as in an earlier input; axis 1 must be 2)',
      'extra: not an input of the graph',
    ],
  );
  assert.deepEqual(feedMismatches(inputs, { x: ok.x }), ['x: expected float32 [batch,4], got float32 [2,4]', 'ids: expected int64 [batch,2], got nothing']);
  assert.deepEqual(feedMismatches([{ name: 'x', type: 'float32', dims: [4] }], { x: { type: 'float32', data: new Float32Array(4), dims: [2, 2] } }), [
    'x: expected float32 [4], got float32 [2,2] (rank differs)',
  ]);
});

test('inference runs off the main thread: timers keep firing during a large batch', async () => {
  const { noise: noiseSize, embedding } = sizes();
  const batch = 32;
  let last = performance.now();
  let longestGap = 0;
  const ticker = setInterval(() => {
    const now = performance.now();
    longestGap = Math.max(longestGap, now - last);
    last = now;
  }, 1);
  const started = performance.now();
  await engine.generate({
    noise: new Float32Array(batch * noiseSize),
    encoderHiddenStates: new Float32Array(batch * embedding),
    negativeEncoderHiddenStates: new Float32Array(batch * embedding),
    nasaScale: new Float32Array(batch),
    batch,
  });
  const runMs = performance.now() - started;
  clearInterval(ticker);
  assert.ok(longestGap < Math.max(25, runMs / 2), `longest timer gap ${longestGap.toFixed(1)} ms during a ${runMs.toFixed(1)} ms run`);
});

test('a failed load rejects with SNOOPI_MODEL_LOAD_FAILED, and a later load of the repaired package works', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'snoopi-engine-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await cp(join(TEST_MODEL_DIR, 'text_encoder.onnx'), join(dir, 'text_encoder.onnx'));
  const options = { packageDir: dir, manifest, executionProvider: 'cpu' as const, intraOpThreads: 1 };
  await assert.rejects(createEngine(options), (error: Error & { code: string }) => {
    assert.equal(error.code, 'SNOOPI_MODEL_LOAD_FAILED');
    assert.match(error.message, new RegExp(`^Model ${TEST_MODEL_ID} could not be loaded: generator.onnx: .*generator.onnx`));
    return true;
  });
  await cp(join(TEST_MODEL_DIR, 'generator.onnx'), join(dir, 'generator.onnx'));
  const repaired = await createEngine(options);
  await repaired.warmup();
  await repaired.close();
});

test('a manifest that disagrees with the graphs is refused at load, naming each disagreement', async () => {
  const wrong: ModelManifest = { ...manifest, latent: { ...manifest.latent, channels: manifest.latent.channels + 1 }, text: { ...manifest.text, hidden_size: 7 } };
  const { L } = sizes();
  const { channels: C, height: h, width: w } = manifest.latent;
  await assert.rejects(createEngine({ packageDir: TEST_MODEL_DIR, manifest: wrong, executionProvider: 'cpu', intraOpThreads: 1 }), (error: Error & { code: string }) => {
    assert.equal(error.code, 'SNOOPI_MODEL_LOAD_FAILED');
    const detail = error.message.replace(`Model ${TEST_MODEL_ID} could not be loaded: `, '').replace(/\[[a-z_]+,/g, '[B,');
    assert.deepEqual(detail.split('; '), [
      `text_encoder.onnx: output last_hidden_state is float32 [B,${L},${manifest.text.hidden_size}], the manifest implies float32 [B,${L},7]`,
      `generator.onnx: input noise is float32 [B,${C},${h},${w}], the manifest implies float32 [B,${C + 1},${h},${w}]`,
      `generator.onnx: input encoder_hidden_states is float32 [B,${L},${manifest.text.hidden_size}], the manifest implies float32 [B,${L},7]`,
      `generator.onnx: input negative_encoder_hidden_states is float32 [B,${L},${manifest.text.hidden_size}], the manifest implies float32 [B,${L},7]`,
    ]);
    return true;
  });
});

test('close() is idempotent and later calls fail with SNOOPI_ENGINE_FAILED', async () => {
  const closing = await createEngine({ packageDir: TEST_MODEL_DIR, manifest, executionProvider: 'cpu', intraOpThreads: 1 });
  await Promise.all([closing.close(), closing.close()]);
  await closing.close();
  await assert.rejects(closing.encodeText(new BigInt64Array(manifest.text.max_length), 1), {
    code: 'SNOOPI_ENGINE_FAILED',
    message: 'Inference failed: text_encoder.onnx: the engine is closed',
  });
});
