// The TypeScript SDK (clients/typescript, @snoopi/client) against the live server on a real socket: images, a typed
// error, the model list, the OpenAI-compatible routes with an API key, the admin routes.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { SnoopiError, createClient } from '../clients/typescript/src/index.js';
import { apiKeyDigest } from '../src/auth/api-keys.js';
import { build } from './helpers/build.js';

const adminToken = 'sdk-test-token-0123456789abcdef';

const apiKey = 'sdk-test-api-key-0123456789';

/** A server with the admin token; with `keys`, also with an API key file holding `apiKey` (named sdk). */
async function server(t: TestContext, keys = false) {
  const jobsDir = await mkdtemp(join(tmpdir(), 'snoopi-sdk-jobs-'));
  t.after(() => rm(jobsDir, { recursive: true, force: true }));
  const apiKeys = join(jobsDir, 'api-keys.txt');
  await writeFile(apiKeys, `sdk ${apiKeyDigest(apiKey)}\n`);
  return build(t, { listen: true, settings: { adminToken, jobsDir, ...(keys ? { apiKeys } : {}) } });
}

/** Width and height from a PNG's IHDR chunk. */
function pngSize(bytes: Uint8Array): [number, number] {
  assert.deepEqual([...bytes.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'a PNG signature');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return [view.getUint32(16), view.getUint32(20)];
}

async function rejection(promise: Promise<unknown>): Promise<SnoopiError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof SnoopiError, `expected a SnoopiError, got ${String(error)}`);
    return error;
  }
  assert.fail('expected the call to fail');
}

test('generate: base64 PNGs with consecutive seeds, timings, and the raw-image variant', async (t) => {
  const { url, service } = await server(t);
  const client = createClient(url);
  const result = await client.generate({ prompt: 'a red circle above a blue square', seed: 42, num_images: 2 });
  assert.equal(result.model, service.stats().activeModel);
  assert.deepEqual(
    result.images.map(({ seed, content_type, width, height }) => ({ seed, content_type, width, height })),
    [
      { seed: 42, content_type: 'image/png', width: 64, height: 64 },
      { seed: 43, content_type: 'image/png', width: 64, height: 64 },
    ],
  );
  for (const image of result.images) assert.deepEqual(pngSize(Buffer.from(image.b64_json, 'base64')), [64, 64]);
  for (const key of ['queue_ms', 'encode_ms', 'generate_ms', 'total_ms'] as const) assert.ok(result.timings[key] >= 0, key);

  const raw = await client.generateImage({ prompt: 'a red circle above a blue square', seed: 42 });
  assert.equal(raw.contentType, 'image/png');
  assert.equal(raw.seed, 42);
  assert.equal(raw.model, result.model);
  assert.match(raw.serverTiming ?? '', /total;dur=/);
  assert.deepEqual(Buffer.from(raw.bytes), Buffer.from(result.images[0]!.b64_json, 'base64'), 'the same seed, the same pixels');
});

test('errors are typed: status, code, message and the whole error body', async (t) => {
  const { url } = await server(t);
  const client = createClient(url);
  const unknownModel = await rejection(client.generate({ prompt: 'a circle', model: 'no-such-model' }));
  assert.equal(unknownModel.status, 404);
  assert.equal(unknownModel.code, 'SNOOPI_MODEL_NOT_FOUND');
  assert.deepEqual(unknownModel.body, { statusCode: 404, code: 'SNOOPI_MODEL_NOT_FOUND', error: 'Not Found', message: unknownModel.message });
  assert.match(unknownModel.message, /no-such-model/);

  const invalid = await rejection(client.generate({ prompt: 'a circle', num_images: 9 }));
  assert.deepEqual([invalid.status, invalid.code], [400, 'SNOOPI_VALIDATION']);
  assert.match(invalid.message, /num_images/);
});

test('the OpenAI-compatible routes with an API key: images, models, OpenAI-shaped errors; the admin token still goes to admin routes', async (t) => {
  const { url, service } = await server(t, true);
  const client = createClient(url, { apiKey, token: adminToken });
  const images = await client.openai.generateImages({ prompt: 'a red circle', negative_prompt: 'blue', seed: 9, n: 2 });
  assert.deepEqual(images.data.map((image) => [image.seed, Object.keys(image).sort()]), [
    [9, ['b64_json', 'seed']],
    [10, ['b64_json', 'seed']],
  ]);
  assert.equal(images.size, '64x64');
  const { data: models } = await client.openai.listModels();
  assert.deepEqual(models.map((model) => model.id), service.listModels().map((model) => model.id));
  assert.deepEqual(await client.openai.getModel(models[0]!.id), models[0]);
  assert.deepEqual(await client.admin.listJobs(), { data: [] }, 'the admin token reached the admin route');

  const tooMany = await rejection(client.openai.generateImages({ prompt: 'a red circle', n: 9 }));
  assert.deepEqual([tooMany.status, tooMany.code, tooMany.message], [400, 'SNOOPI_VALIDATION', 'Invalid request: body/n must be <= 8']);
  assert.deepEqual(tooMany.body, { error: { message: tooMany.message, type: 'invalid_request_error', param: 'n', code: 'SNOOPI_VALIDATION' } });

  const keyless = await rejection(createClient(url, { token: adminToken }).generate({ prompt: 'a red circle' }));
  assert.deepEqual([keyless.status, keyless.code], [401, 'SNOOPI_INVALID_API_KEY']);
});

test('models, health and readiness', async (t) => {
  const { url, service } = await server(t);
  const client = createClient(url);
  const { data } = await client.listModels();
  const active = data.filter((model) => model.active);
  assert.deepEqual(
    active.map((model) => model.id),
    [service.stats().activeModel],
  );
  assert.deepEqual(active[0]!.image, { width: 64, height: 64 });
  assert.deepEqual(await client.health(), { status: 'ok' });
  assert.deepEqual(await client.ready(), { status: 'ready', model: active[0]!.id });
});

test('admin: the token is required; jobs, a typed 400 for an unknown backbone, activation', async (t) => {
  const { url } = await server(t);
  const anonymous = createClient(url);
  const unauthorized = await rejection(anonymous.admin.listJobs());
  assert.deepEqual([unauthorized.status, unauthorized.code], [401, 'SNOOPI_UNAUTHORIZED']);

  const admin = createClient(url, { token: adminToken });
  assert.deepEqual(await admin.admin.listJobs(), { data: [] });
  const unknownBackbone = await rejection(admin.admin.finetune({ backbone: 'no-such-backbone', name: 'sdk-test-student' }));
  assert.deepEqual([unknownBackbone.status, unknownBackbone.code], [400, 'SNOOPI_UNKNOWN_BACKBONE']);
  assert.match(unknownBackbone.message, /no-such-backbone/);
  const missing = await rejection(admin.admin.getJob('ft-00000000-000000'));
  assert.deepEqual([missing.status, missing.code], [404, 'SNOOPI_JOB_NOT_FOUND']);

  const { data } = await admin.listModels();
  const active = data.find((model) => model.active)!;
  assert.deepEqual(await admin.admin.activateModel(active.id), { active: active.id, previous: active.id });
  const unknownModel = await rejection(admin.admin.activateModel('no-such-model'));
  assert.deepEqual([unknownModel.status, unknownModel.code], [404, 'SNOOPI_MODEL_NOT_FOUND']);
});
