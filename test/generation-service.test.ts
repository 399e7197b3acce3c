import assert from 'node:assert/strict';
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import sharp from 'sharp';
import { GenerationService, type BatchEvent, type GenerateRequest, type GenerationServiceOptions } from '../src/generation/generation-service.js';
import { pixels } from './helpers/pixels.js';
import { maxAbsDifference } from './helpers/trainer-export.js';
import { TEST_MODEL_DIR, testManifest } from './helpers/test-model.js';

async function createService(t: TestContext, options: Partial<GenerationServiceOptions> = {}, ids = ['alpha']) {
  const modelsDir = await mkdtemp(join(tmpdir(), 'snoopi-service-'));
  t.after(() => rm(modelsDir, { recursive: true, force: true }));
  const manifest = await testManifest();
  for (const id of ids) {
    await cp(TEST_MODEL_DIR, join(modelsDir, id), { recursive: true });
    await writeFile(join(modelsDir, id, 'model.json'), JSON.stringify({ ...manifest, id }));
  }
  const service = await GenerationService.create({
    modelsDir,
    executionProvider: 'cpu',
    intraOpThreads: 2,
    maxBatch: 8,
    maxQueueRows: 64,
    deadlineMs: 60_000,
    cacheBytes: 1 << 20,
    ...options,
  });
  t.after(() => service.close());
  await service.ready();
  const batches: BatchEvent[] = [];
  service.onBatch((event) => batches.push(event));
  return { service, manifest, batches };
}

const request = (overrides: Partial<GenerateRequest> = {}): GenerateRequest => ({
  prompt: 'a red circle on a white background',
  negativePrompt: '',
  seed: 42,
  numImages: 1,
  format: 'png',
  quality: 90,
  ...overrides,
});

/**
 * Occupies the generator so that the requests started right after it queue up and form the next batch together. Their
 * prompts must be in the embedding cache (see warm) so that all of them reach the batcher before the blocker ends.
 */
const blocker = () => request({ prompt: 'a blue square', seed: 1, numImages: 8 });

/** Runs each request once, so that their embeddings are cached. */
async function warm(service: GenerationService, requests: GenerateRequest[]): Promise<void> {
  for (const each of requests) await service.generate({ ...each, numImages: 1 });
}

test('a request gives decodable images with their seeds, model, batch size and timings', async (t) => {
  const { service, manifest } = await createService(t);
  const result = await service.generate(request({ numImages: 2 }));
  const { width, height } = manifest.image;
  assert.equal(result.model, 'alpha');
  assert.deepEqual(
    result.images.map(({ seed, contentType, width: w, height: h }) => ({ seed, contentType, width: w, height: h })),
    [
      { seed: 42, contentType: 'image/png', width, height },
      { seed: 43, contentType: 'image/png', width, height },
    ],
  );
  const { info } = await sharp(result.images[0]!.data).raw().toBuffer({ resolveWithObject: true });
  assert.deepEqual([info.width, info.height, info.channels], [width, height, 3]);
  assert.equal(result.truncated, false);
  assert.equal(result.negativeTruncated, false);
  assert.equal(result.negativeScale, 0);
  assert.equal(result.batchSize, 2);
  const { queueMs, encodeMs, generateMs, imageMs, totalMs } = result.timings;
  for (const value of [queueMs, encodeMs, generateMs, imageMs]) assert.ok(value >= 0 && value <= totalMs);
});

test('batch invariance: the same request alone and inside batches of 2, 5 and 8 rows gives pixels within 1', async (t) => {
  const { service, manifest, batches } = await createService(t);
  const probe = request({ prompt: 'a large green triangle', negativePrompt: 'red', negativeScale: manifest.nasa.max_scale, seed: 7 });
  const alone = await service.generate(probe);
  assert.equal(alone.batchSize, 1);
  const reference = await pixels(alone.images[0]!.data);
  const others = [
    request({ prompt: 'a yellow circle', seed: 100 }),
    request({ prompt: 'a purple square on a black background', negativePrompt: 'small', seed: 200, numImages: 3 }),
    request({ prompt: 'two shapes', seed: 300 }),
    request({ prompt: 'an orange triangle', seed: 400, numImages: 2 }),
  ];
  // Companions fill rows before and after the probe: 2 = probe + 1, 5 = 3 + probe + 1, 8 = 1 + 3 + 1 + probe + 2.
  await warm(service, [blocker(), ...others]);
  batches.length = 0;
  const layouts = [
    { companions: [others[0]!], probeAt: 1, rows: 2 },
    { companions: [others[1]!, others[2]!], probeAt: 1, rows: 5 },
    { companions: [others[0]!, others[1]!, others[2]!, others[3]!], probeAt: 3, rows: 8 },
  ];
  for (const { companions, probeAt, rows } of layouts) {
    const group = [...companions];
    group.splice(probeAt, 0, probe);
    const [, ...results] = await Promise.all([service.generate(blocker()), ...group.map((member) => service.generate(member))]);
    const probeResult = results[probeAt]!;
    assert.equal(probeResult.batchSize, rows);
    assert.ok(maxAbsDifference(await pixels(probeResult.images[0]!.data), reference) <= 1, `batch of ${rows}`);
  }
  assert.deepEqual(batches.map((batch) => batch.rows), [8, 2, 8, 5, 8, 8]);
});

test('num_images expands to rows with seed + i (mod 2^32), each equal to that seed alone; other seeds differ', async (t) => {
  const { service } = await createService(t);
  const expanded = await service.generate(request({ seed: 4294967294, numImages: 3 }));
  assert.deepEqual(expanded.images.map((image) => image.seed), [4294967294, 4294967295, 0]);
  for (const image of expanded.images) {
    const alone = await service.generate(request({ seed: image.seed }));
    assert.ok(maxAbsDifference(await pixels(alone.images[0]!.data), await pixels(image.data)) <= 1, `seed ${image.seed}`);
  }
  const [a, b] = expanded.images;
  assert.ok(maxAbsDifference(await pixels(a!.data), await pixels(b!.data)) > 1);
});

test('a request without a seed gets a random one, echoed', async (t) => {
  const { service } = await createService(t);
  const { seed: _seed, ...withoutSeed } = request({ numImages: 2 });
  const result = await service.generate(withoutSeed);
  const [first, second] = result.images.map((image) => image.seed);
  assert.ok(Number.isInteger(first) && first! >= 0 && first! <= 4294967295);
  assert.equal(second, (first! + 1) % 2 ** 32);
});

test('negative scale: 0 without a negative prompt, the model default with one, refused above max_scale', async (t) => {
  const { service, manifest } = await createService(t);
  assert.equal((await service.generate(request())).negativeScale, 0);
  assert.equal((await service.generate(request({ negativePrompt: 'red' }))).negativeScale, manifest.nasa.default_scale);
  assert.equal((await service.generate(request({ negativePrompt: 'red', negativeScale: 0 }))).negativeScale, 0);
  const tooHigh = manifest.nasa.max_scale + 0.5;
  await assert.rejects(service.generate(request({ negativePrompt: 'red', negativeScale: tooHigh })), {
    code: 'SNOOPI_SCALE_OUT_OF_RANGE',
    statusCode: 400,
    message: `negative_scale ${tooHigh} is outside 0..${manifest.nasa.max_scale} for model alpha`,
  });
  await assert.rejects(service.generate(request({ negativeScale: -1 })), { code: 'SNOOPI_SCALE_OUT_OF_RANGE' });
});

test('with nasa scale 0 the negative prompt changes nothing; with a positive scale it changes the image', async (t) => {
  const { service, manifest } = await createService(t);
  const plain = await pixels((await service.generate(request())).images[0]!.data);
  const ignored = await pixels((await service.generate(request({ negativePrompt: 'white background', negativeScale: 0 }))).images[0]!.data);
  assert.deepEqual(ignored, plain);
  const applied = await service.generate(request({ negativePrompt: 'white background', negativeScale: manifest.nasa.max_scale }));
  assert.ok(maxAbsDifference(await pixels(applied.images[0]!.data), plain) > 1);
});

test('an unknown model is SNOOPI_MODEL_NOT_FOUND; invalid inputs are SNOOPI_VALIDATION', async (t) => {
  const { service } = await createService(t);
  await assert.rejects(service.generate(request({ model: 'nope' })), {
    code: 'SNOOPI_MODEL_NOT_FOUND',
    statusCode: 404,
    message: 'Model nope not found; known models: alpha',
  });
  await assert.rejects(service.generate(request({ numImages: 9, seed: -1, quality: 0 })), {
    code: 'SNOOPI_VALIDATION',
    statusCode: 400,
    message: 'Invalid request: numImages must be an integer in 1..8; seed must be an integer in 0..4294967295; quality must be an integer in 1..100',
  });
});

test('an over-long prompt is cut to the model\'s max length and says so', async (t) => {
  const { service } = await createService(t);
  const result = await service.generate(request({ prompt: 'a red circle '.repeat(20), negativePrompt: 'blue '.repeat(40) }));
  assert.equal(result.truncated, true);
  assert.equal(result.negativeTruncated, true);
});

test('jpeg and webp', async (t) => {
  const { service } = await createService(t);
  const jpeg = await service.generate(request({ format: 'jpeg', quality: 80 }));
  const webp = await service.generate(request({ format: 'webp', quality: 80 }));
  assert.equal(jpeg.images[0]!.contentType, 'image/jpeg');
  assert.equal(webp.images[0]!.contentType, 'image/webp');
  assert.deepEqual([...jpeg.images[0]!.data.subarray(0, 2)], [0xff, 0xd8]);
  assert.equal(webp.images[0]!.data.subarray(8, 12).toString('latin1'), 'WEBP');
});

test('a request aborted before its batch runs is dropped and never computed', async (t) => {
  const { service, batches } = await createService(t);
  await warm(service, [blocker(), request({ prompt: 'a green circle' })]);
  batches.length = 0;
  const aborted = new AbortController();
  const blocked = service.generate(blocker());
  const dropped = service.generate(request({ prompt: 'a green circle', numImages: 3, signal: aborted.signal }));
  while (service.stats().models[0]!.queuedRequests === 0) await new Promise((resolve) => setImmediate(resolve));
  aborted.abort(new Error('client disconnected'));
  await assert.rejects(dropped, /client disconnected/);
  await blocked;
  assert.deepEqual(batches.map((batch) => batch.rows), [8]);
  await assert.rejects(service.generate(request({ signal: AbortSignal.abort() })), { name: 'AbortError' });
  assert.deepEqual(batches.map((batch) => batch.rows), [8]);
});

test('a full queue refuses with SNOOPI_QUEUE_FULL', async (t) => {
  const { service } = await createService(t, { maxQueueRows: 4 });
  await warm(service, [blocker(), request()]);
  const results = await Promise.allSettled([
    service.generate(blocker()),
    service.generate(request({ numImages: 3 })),
    service.generate(request({ numImages: 2 })),
    service.generate(request({ numImages: 1 })),
  ]);
  assert.deepEqual(
    results.map((result) => (result.status === 'fulfilled' ? result.value.batchSize : (result.reason as Error).message)),
    [8, 4, 'The queue for model alpha is full (3 images waiting); retry later', 4],
  );
});

test('a request that cannot start before its deadline fails with SNOOPI_DEADLINE_EXCEEDED', async (t) => {
  // A 1-image request runs at once; six 8-image requests then fill the next batch (48 rows, several times the
  // deadline on a CPU) and the probe must wait for both. The six wait only for the 1-image batch.
  const { service, batches } = await createService(t, { maxBatch: 48, deadlineMs: 60 });
  await warm(service, [blocker()]);
  batches.length = 0;
  const first = service.generate({ ...blocker(), numImages: 1 });
  const blockers = Array.from({ length: 6 }, () => service.generate(blocker()));
  const late = service.generate(request({ prompt: 'a blue square', seed: 9 }));
  await assert.rejects(late, (error: Error & { code: string; statusCode: number }) => {
    assert.equal(error.code, 'SNOOPI_DEADLINE_EXCEEDED');
    assert.equal(error.statusCode, 504);
    assert.match(error.message, /^The request waited \d+ ms, past its deadline of 60 ms$/);
    return true;
  });
  await Promise.all([first, ...blockers]);
  assert.deepEqual(batches.map((batch) => batch.rows), [1, 48]);
});

test('activation moves new requests to the new model while in-flight ones finish on the old', async (t) => {
  const { service } = await createService(t, {}, ['alpha', 'beta']);
  await warm(service, [blocker(), request()]);
  const inFlight = [service.generate(blocker()), service.generate(request())];
  await service.activate('beta');
  const after = await service.generate(request());
  const finished = await Promise.all(inFlight);
  assert.deepEqual(finished.map((result) => result.model), ['alpha', 'alpha']);
  assert.equal(after.model, 'beta');
  assert.deepEqual(service.listModels().map(({ id, active, loaded }) => ({ id, active, loaded })), [
    { id: 'alpha', active: false, loaded: false },
    { id: 'beta', active: true, loaded: true },
  ]);
  assert.equal((await service.generate(request({ model: 'alpha' }))).model, 'alpha');
});

test('listModels, stats and readiness', async (t) => {
  const { service, manifest } = await createService(t);
  assert.equal(service.isReady(), true);
  await service.generate(request());
  await service.generate(request());
  assert.deepEqual(service.listModels(), [
    {
      id: 'alpha',
      displayName: manifest.display_name,
      backbone: manifest.backbone,
      method: manifest.method,
      parameterization: manifest.parameterization,
      active: true,
      loaded: true,
      image: manifest.image,
      nasa: { defaultScale: manifest.nasa.default_scale, maxScale: manifest.nasa.max_scale },
      executionProvider: 'cpu',
      metrics: manifest.training.metrics,
    },
  ]);
  const stats = service.stats();
  const embeddingBytes = manifest.text.max_length * manifest.text.hidden_size * 4;
  assert.deepEqual(
    { ...stats, cache: { ...stats.cache, bytes: stats.cache.bytes - (stats.cache.bytes % embeddingBytes) } },
    {
      activeModel: 'alpha',
      ready: true,
      models: [
        {
          id: 'alpha',
          loaded: true,
          executionProvider: 'cpu',
          queuedRows: 0,
          queuedRequests: 0,
          busy: false,
          engine: { restarts: 0, restarting: false, lastFailure: null },
        },
      ],
      stalePackages: [],
      // The prompt and the empty negative prompt: two misses, then two hits.
      cache: { hits: 2, misses: 2, bytes: 2 * embeddingBytes, entries: 2 },
    },
  );
});

test('close refuses new requests and leaves the service not ready', async (t) => {
  const { service } = await createService(t);
  await service.close();
  assert.equal(service.isReady(), false);
  await assert.rejects(service.generate(request()), { code: 'SNOOPI_SHUTTING_DOWN', statusCode: 503 });
});
