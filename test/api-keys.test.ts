// API keys (SNOOPI_API_KEYS) and their per-key limits: the key file's format, then a live server driven by OpenAI's
// official client and by plain fetch on POST /generate: 401 without a key, requests and images per minute (429 with
// Retry-After), one window per key across both APIs, per-key counts in /metrics that never show a key.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import OpenAI from 'openai';
import { ApiKeyFileError, ApiKeys, apiKeyDigest } from '../src/auth/api-keys.js';
import { build } from './helpers/build.js';
import { generateImages, openAIClient, rejection } from './helpers/openai.js';

const defaults = { requestsPerMinute: 60, imagesPerMinute: 240 };

test('the key file: a name and the sha256 of the key per line, optional limits, comments; keys are found by their digest', () => {
  const keys = ApiKeys.parse(
    [
      '# name  sha256 of the key',
      `alice ${apiKeyDigest('key-of-alice')}`,
      '',
      `batch\t${apiKeyDigest('key-of-batch')}  requests_per_minute=600 images_per_minute=4800   # the nightly job`,
      `bob ${apiKeyDigest('key-of-bob')} images_per_minute=8`,
    ].join('\n'),
    defaults,
  );
  assert.deepEqual(keys.list(), [
    { name: 'alice', requestsPerMinute: 60, imagesPerMinute: 240 },
    { name: 'batch', requestsPerMinute: 600, imagesPerMinute: 4800 },
    { name: 'bob', requestsPerMinute: 60, imagesPerMinute: 8 },
  ]);
  assert.equal(keys.find('key-of-batch')?.name, 'batch');
  assert.equal(keys.find(apiKeyDigest('key-of-batch')), undefined, 'the digest itself is not a key');
  assert.equal(keys.find('key-of-nobody'), undefined);
});

test('a malformed key file names the line and what is wrong with it', () => {
  const digest = apiKeyDigest('a key');
  const cases: [string, string][] = [
    ['', 'keys.txt holds no key: every request would be refused'],
    ['# only a comment\n', 'keys.txt holds no key: every request would be refused'],
    ['alice', 'keys.txt, line 1: expected the key\'s sha256 as 64 lowercase hex digits after the name, got ""'],
    ['\nalice a-plain-key', 'keys.txt, line 2: expected the key\'s sha256 as 64 lowercase hex digits after the name, got "a-plain-key"'],
    [
      `alice ${digest.toUpperCase()}`,
      `keys.txt, line 1: expected the key's sha256 as 64 lowercase hex digits after the name, got "${digest.toUpperCase()}"`,
    ],
    [`al/ice ${digest}`, 'keys.txt, line 1: the name "al/ice" must be 1-64 letters, digits, \'.\', \'_\' or \'-\''],
    [`alice ${digest}\nalice ${apiKeyDigest('another')}`, 'keys.txt, line 2: the name alice is used twice'],
    [`alice ${digest}\nbob ${digest}`, "keys.txt, line 2: the key of bob is also alice's"],
    [`alice ${digest} rpm=5`, 'keys.txt, line 1: unknown field "rpm=5"; known: requests_per_minute=N, images_per_minute=N'],
    [`alice ${digest} images_per_minute=0`, 'keys.txt, line 1: images_per_minute must be a whole number from 1, got "0"'],
    [`alice ${digest} requests_per_minute=1.5`, 'keys.txt, line 1: requests_per_minute must be a whole number from 1, got "1.5"'],
  ];
  for (const [text, message] of cases) {
    assert.throws(() => ApiKeys.parse(text, defaults, 'keys.txt'), (error) => error instanceof ApiKeyFileError && error.message === message, text);
  }
});

const keyOf = { alice: 'sk-test-alice-0123456789', bob: 'sk-test-bob-0123456789' };

async function keyedServer(t: TestContext) {
  const folder = await mkdtemp(join(tmpdir(), 'snoopi-keys-'));
  t.after(() => rm(folder, { recursive: true, force: true }));
  const apiKeys = join(folder, 'api-keys.txt');
  await writeFile(apiKeys, `alice ${apiKeyDigest(keyOf.alice)} requests_per_minute=3\nbob ${apiKeyDigest(keyOf.bob)} images_per_minute=5\n`);
  return build(t, { listen: true, settings: { apiKeys } });
}

const postGenerate = (url: string, key: string | undefined, body: object) =>
  fetch(`${url}/generate`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(key === undefined ? {} : { authorization: `Bearer ${key}` }) },
    body: JSON.stringify(body),
  });

test('with keys: /generate and /v1 need one (401 in each API shape); health, readiness, /models and the playground stay open', async (t) => {
  const { url } = await keyedServer(t);
  for (const key of [undefined, 'sk-not-a-key']) {
    const native = await postGenerate(url, key, { prompt: 'a red circle' });
    assert.equal(native.status, 401);
    assert.equal(native.headers.get('www-authenticate'), 'Bearer realm="snoopi"');
    assert.deepEqual(await native.json(), {
      statusCode: 401,
      code: 'SNOOPI_INVALID_API_KEY',
      error: 'Unauthorized',
      message: 'Missing or unknown API key; send Authorization: Bearer <key>',
    });
  }
  const unknownKey = await rejection(generateImages(openAIClient(url, 'sk-not-a-key'), { prompt: 'a red circle' }), OpenAI.AuthenticationError);
  assert.deepEqual(unknownKey.error, {
    message: 'Missing or unknown API key; send Authorization: Bearer <key>',
    type: 'invalid_request_error',
    param: null,
    code: 'SNOOPI_INVALID_API_KEY',
  });
  await rejection(openAIClient(url, 'sk-not-a-key').models.list(), OpenAI.AuthenticationError);
  for (const path of ['/healthz', '/readyz', '/models', '/', '/openapi.json', '/metrics']) {
    assert.equal((await fetch(`${url}${path}`)).status, 200, path);
  }

  const served = await generateImages(openAIClient(url, keyOf.bob), { prompt: 'a red circle', seed: 1 });
  assert.equal(served.data!.length, 1);
  assert.equal((await postGenerate(url, keyOf.bob, { prompt: 'a red circle', seed: 1 })).status, 200);
});

test('per-key limits: requests across both APIs, images, 429 with Retry-After; counts in /metrics without the keys', async (t) => {
  const { url } = await keyedServer(t);
  const alice = openAIClient(url, keyOf.alice);
  const bob = openAIClient(url, keyOf.bob);

  // alice: 3 requests a minute, counted across /v1 and /generate; the fourth is refused whatever the route.
  await alice.models.list();
  await generateImages(alice, { prompt: 'a blue square', n: 2 });
  const native = await postGenerate(url, keyOf.alice, { prompt: 'a blue square' });
  assert.deepEqual([native.status, native.headers.get('x-ratelimit-limit'), native.headers.get('x-ratelimit-remaining')], [200, '3', '0']);
  const overRequests = await rejection(generateImages(alice, { prompt: 'a blue square' }), OpenAI.RateLimitError);
  const retryAfter = Number(overRequests.headers.get('retry-after'));
  assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60, `Retry-After ${retryAfter}`);
  assert.deepEqual(overRequests.error, {
    message: `API key alice is over its limit of 3 requests per minute; retry in ${retryAfter} s`,
    type: 'rate_limit_error',
    param: null,
    code: 'SNOOPI_RATE_LIMITED',
  });
  const nativeRefused = await postGenerate(url, keyOf.alice, { prompt: 'a blue square' });
  assert.equal(nativeRefused.status, 429);
  assert.equal((await nativeRefused.json()).code, 'SNOOPI_RATE_LIMITED');

  // bob: 5 images a minute; a request that asks for more than are left is refused and spends none of them.
  await generateImages(bob, { prompt: 'a green triangle', n: 4 });
  const overImages = await rejection(generateImages(bob, { prompt: 'a green triangle', n: 2 }), OpenAI.RateLimitError);
  assert.match(overImages.message, /^429 API key bob is over its limit of 5 images per minute; retry in \d+ s$/);
  assert.ok(Number(overImages.headers.get('retry-after')) >= 1);
  const last = await postGenerate(url, keyOf.bob, { prompt: 'a green triangle', num_images: 1 });
  assert.equal(last.status, 200);
  assert.equal((await postGenerate(url, keyOf.bob, { prompt: 'a green triangle' })).status, 429);

  const metrics = await (await fetch(`${url}/metrics`)).text();
  const series = metrics.split('\n').filter((line) => line.startsWith('snoopi_api_key_'));
  assert.deepEqual(series.sort(), [
    'snoopi_api_key_images_total{key="alice"} 3',
    'snoopi_api_key_images_total{key="bob"} 5',
    'snoopi_api_key_rate_limited_total{key="alice",limit="images"} 0',
    'snoopi_api_key_rate_limited_total{key="alice",limit="requests"} 2',
    'snoopi_api_key_rate_limited_total{key="bob",limit="images"} 2',
    'snoopi_api_key_rate_limited_total{key="bob",limit="requests"} 0',
    'snoopi_api_key_requests_total{key="alice",status_code="200"} 3',
    'snoopi_api_key_requests_total{key="alice",status_code="429"} 2',
    'snoopi_api_key_requests_total{key="bob",status_code="200"} 2',
    'snoopi_api_key_requests_total{key="bob",status_code="429"} 2',
  ]);
  for (const key of Object.values(keyOf)) {
    assert.ok(!metrics.includes(key) && !metrics.includes(apiKeyDigest(key)), 'neither a key nor its digest is in /metrics');
  }
});
