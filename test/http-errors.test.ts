// Every 4xx answer of the API, through inject, with its whole body: bad input never reaches the model, never
// produces a 500, and always has the one error shape.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { activeManifest, build } from './helpers/build.js';

const json = { 'content-type': 'application/json' };

function validation(message: string) {
  return { statusCode: 400, code: 'SNOOPI_VALIDATION', error: 'Bad Request', message: `Invalid request: ${message}` };
}

test('a body that fails the schema is a 400 SNOOPI_VALIDATION naming the field', async (t) => {
  const { app } = await build(t);
  const cases: [unknown, string][] = [
    [{}, 'body/prompt is required'],
    [{ prompt: '' }, 'body/prompt must NOT have fewer than 1 characters'],
    [{ prompt: 'x'.repeat(2001) }, 'body/prompt must NOT have more than 2000 characters'],
    [{ prompt: 42 }, 'body/prompt must be string'],
    [{ prompt: 'a', negative_prompt: 'x'.repeat(2001) }, 'body/negative_prompt must NOT have more than 2000 characters'],
    [{ prompt: 'a', negative_scale: -0.5 }, 'body/negative_scale must be >= 0'],
    [{ prompt: 'a', negative_scale: '0.5' }, 'body/negative_scale must be number'],
    [{ prompt: 'a', seed: -1 }, 'body/seed must be >= 0'],
    [{ prompt: 'a', seed: 4294967296 }, 'body/seed must be <= 4294967295'],
    [{ prompt: 'a', seed: 1.5 }, 'body/seed must be integer'],
    [{ prompt: 'a', num_images: 0 }, 'body/num_images must be >= 1'],
    [{ prompt: 'a', num_images: 9 }, 'body/num_images must be <= 8'],
    [{ prompt: 'a', num_images: '2' }, 'body/num_images must be integer'],
    [{ prompt: 'a', model: '' }, 'body/model must NOT have fewer than 1 characters'],
    [{ prompt: 'a', format: 'gif' }, 'body/format must be one of png, jpeg, webp'],
    [{ prompt: 'a', quality: 0 }, 'body/quality must be >= 1'],
    [{ prompt: 'a', quality: 101 }, 'body/quality must be <= 100'],
    [{ prompt: 'a', steps: 4 }, 'body/steps is not a known field'],
    [[{ prompt: 'a' }], 'body must be object'],
    ['a string', 'body must be object'],
  ];
  for (const [payload, message] of cases) {
    const response = await app.inject({ method: 'POST', url: '/generate', headers: json, payload: JSON.stringify(payload) });
    assert.equal(response.statusCode, 400, JSON.stringify(payload));
    assert.deepEqual(response.json(), validation(message));
  }
});

test('a POST without a body is a 400 SNOOPI_VALIDATION', async (t) => {
  const { app } = await build(t);
  const response = await app.inject({ method: 'POST', url: '/generate' });
  assert.equal(response.statusCode, 400);
  assert.deepEqual(response.json(), validation('body must be object'));
});

test('a body that is not JSON is a 400 SNOOPI_BAD_JSON', async (t) => {
  const { app } = await build(t);
  const unparsable = 'it does not parse, or it holds a __proto__ or constructor.prototype key';
  for (const [payload, why] of [
    ['{"prompt": ', unparsable],
    ["{'prompt': 'a'}", unparsable],
    ['{"prompt": "a", "__proto__": {"isAdmin": true}}', unparsable],
    ['', 'it is empty'],
  ]) {
    const response = await app.inject({ method: 'POST', url: '/generate', headers: json, payload });
    assert.equal(response.statusCode, 400);
    assert.deepEqual(response.json(), { statusCode: 400, code: 'SNOOPI_BAD_JSON', error: 'Bad Request', message: `Body is not valid JSON: ${why}` });
  }
});

test('a body over the limit is a 413 SNOOPI_BODY_TOO_LARGE', async (t) => {
  const { app } = await build(t, { settings: { bodyLimit: 2048 } });
  const response = await app.inject({ method: 'POST', url: '/generate', headers: json, payload: JSON.stringify({ prompt: 'x'.repeat(2000), negative_prompt: 'y'.repeat(100) }) });
  assert.equal(response.statusCode, 413);
  assert.deepEqual(response.json(), {
    statusCode: 413,
    code: 'SNOOPI_BODY_TOO_LARGE',
    error: 'Payload Too Large',
    message: 'Request body is larger than 2048 bytes',
  });
});

test('the default body limit is 64 KiB', async (t) => {
  const { app } = await build(t);
  const response = await app.inject({ method: 'POST', url: '/generate', headers: json, payload: JSON.stringify({ prompt: 'x'.repeat(65536) }) });
  assert.equal(response.statusCode, 413);
  assert.equal(response.json().message, 'Request body is larger than 65536 bytes');
});

test('a content type other than application/json is a 415 SNOOPI_UNSUPPORTED_MEDIA_TYPE', async (t) => {
  const { app } = await build(t);
  for (const contentType of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) {
    const response = await app.inject({ method: 'POST', url: '/generate', headers: { 'content-type': contentType }, payload: 'prompt=a' });
    assert.equal(response.statusCode, 415, contentType);
    assert.deepEqual(response.json(), {
      statusCode: 415,
      code: 'SNOOPI_UNSUPPORTED_MEDIA_TYPE',
      error: 'Unsupported Media Type',
      message: `Content-Type ${contentType} is not supported; send application/json`,
    });
  }
  const charset = await app.inject({ method: 'POST', url: '/generate', headers: { 'content-type': 'application/json; charset=utf-8' }, payload: '{"prompt": "a red circle"}' });
  assert.equal(charset.statusCode, 200);
});

test('an unknown route or method is a 404 SNOOPI_ROUTE_NOT_FOUND', async (t) => {
  const { app } = await build(t);
  for (const [method, url] of [
    ['GET', '/nope'],
    ['GET', '/generate'],
    ['DELETE', '/models'],
    ['POST', '/generate/extra'],
  ] as const) {
    const response = await app.inject({ method, url });
    assert.equal(response.statusCode, 404);
    assert.deepEqual(response.json(), { statusCode: 404, code: 'SNOOPI_ROUTE_NOT_FOUND', error: 'Not Found', message: `Route ${method} ${url} not found` });
  }
});

test('an unknown model is a 404 SNOOPI_MODEL_NOT_FOUND listing the known ones', async (t) => {
  const built = await build(t);
  const known = built.service.listModels().map((model) => model.id);
  const response = await built.app.inject({ method: 'POST', url: '/generate', payload: { prompt: 'a red circle', model: 'no-such-model' } });
  assert.equal(response.statusCode, 404);
  assert.deepEqual(response.json(), {
    statusCode: 404,
    code: 'SNOOPI_MODEL_NOT_FOUND',
    error: 'Not Found',
    message: `Model no-such-model not found; known models: ${known.join(', ')}`,
  });
});

test("a negative_scale above the model's max_scale is a 400 SNOOPI_SCALE_OUT_OF_RANGE", async (t) => {
  const built = await build(t);
  const manifest = await activeManifest(built);
  const scale = manifest.nasa.max_scale + 0.5;
  const response = await built.app.inject({ method: 'POST', url: '/generate', payload: { prompt: 'a red circle', negative_prompt: 'blue', negative_scale: scale } });
  assert.equal(response.statusCode, 400);
  assert.deepEqual(response.json(), {
    statusCode: 400,
    code: 'SNOOPI_SCALE_OUT_OF_RANGE',
    error: 'Bad Request',
    message: `negative_scale ${scale} is outside 0..${manifest.nasa.max_scale} for model ${manifest.id}`,
  });
});

test('Accept that cannot be met is a 406 SNOOPI_NOT_ACCEPTABLE saying what to change', async (t) => {
  const { app } = await build(t);
  const cases: [Record<string, unknown>, string, string][] = [
    [
      { prompt: 'a red circle', num_images: 2 },
      'image/png',
      'Accept asks for image/png, and a raw image response holds one image, but num_images is 2; set num_images to 1 or accept application/json',
    ],
    [
      { prompt: 'a red circle', num_images: 3 },
      'image/*',
      'Accept asks for image/png, and a raw image response holds one image, but num_images is 3; set num_images to 1 or accept application/json',
    ],
    [
      { prompt: 'a red circle', format: 'png' },
      'image/jpeg',
      "Accept asks for image/jpeg but the body's format is png; make them agree or leave format out",
    ],
    [
      { prompt: 'a red circle' },
      'text/html',
      'Accept "text/html" matches nothing this route produces: application/json, image/png, image/jpeg, image/webp',
    ],
  ];
  for (const [payload, accept, message] of cases) {
    const response = await app.inject({ method: 'POST', url: '/generate', headers: { accept }, payload });
    assert.equal(response.statusCode, 406, accept);
    assert.deepEqual(response.json(), { statusCode: 406, code: 'SNOOPI_NOT_ACCEPTABLE', error: 'Not Acceptable', message });
  }
});

test('error answers carry the request id; a sane X-Request-Id from the caller is kept', async (t) => {
  const { app } = await build(t);
  const kept = await app.inject({ method: 'GET', url: '/nope', headers: { 'x-request-id': 'caller-abc.123' } });
  assert.equal(kept.headers['x-request-id'], 'caller-abc.123');
  const replaced = await app.inject({ method: 'GET', url: '/nope', headers: { 'x-request-id': 'bad id with spaces' } });
  assert.match(String(replaced.headers['x-request-id']), /^[0-9a-f-]{36}$/);
});
