// The OpenAI-compatible API (/v1) driven by OpenAI's official client (the `openai` package) against the live server on
// a real socket: images with the service's extensions, reproducibility against POST /generate, URLs, the model list,
// and a typed error of the client for every error status.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import OpenAI from 'openai';
import { build } from './helpers/build.js';
import { generateImages, openAIClient, rejection, type SnoopiImage, type SnoopiImageParams } from './helpers/openai.js';

/** Width and height from a PNG's IHDR chunk. */
function pngSize(bytes: Buffer): [number, number] {
  assert.deepEqual([...bytes.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'a PNG signature');
  return [bytes.readUInt32BE(16), bytes.readUInt32BE(20)];
}

test('images.generate: n images, consecutive seeds, negative prompt and seed as body fields, the pixels of POST /generate', async (t) => {
  const { url, service } = await build(t, { listen: true });
  const client = openAIClient(url);
  const model = service.stats().activeModel!;
  const request = { prompt: 'a red circle above a blue square', negative_prompt: 'green', negative_scale: 0.5, seed: 42 };

  const response = await generateImages(client, { ...request, n: 3, size: '64x64' });
  assert.deepEqual(Object.keys(response).sort(), ['created', 'data', 'output_format', 'size']);
  assert.ok(Math.abs(response.created - Date.now() / 1000) < 60, `created ${response.created}`);
  assert.equal(response.output_format, 'png');
  assert.equal(response.size, '64x64');
  const images = response.data as SnoopiImage[];
  assert.deepEqual(images.map((image) => [Object.keys(image).sort(), image.seed]), [
    [['b64_json', 'seed'], 42],
    [['b64_json', 'seed'], 43],
    [['b64_json', 'seed'], 44],
  ]);
  for (const image of images) assert.deepEqual(pngSize(Buffer.from(image.b64_json!, 'base64')), [64, 64]);

  // The same request, the same images: again through the client, and through the native API.
  const again = await generateImages(client, { ...request, n: 3, model });
  assert.deepEqual(again.data!.map((image) => image.b64_json), images.map((image) => image.b64_json));
  const native = await fetch(`${url}/generate`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ ...request, num_images: 3 }),
  });
  const nativeBody = (await native.json()) as { images: { b64_json: string }[] };
  assert.deepEqual(nativeBody.images.map((image) => image.b64_json), images.map((image) => image.b64_json));

  // Without the negative prompt the pixels differ: the extension fields reached the pipeline.
  const plain = await generateImages(client, { prompt: request.prompt, seed: 42 });
  assert.notEqual(plain.data![0]!.b64_json, images[0]!.b64_json);

  // output_format and output_compression choose the encoder.
  const jpeg = await generateImages(client, { prompt: 'a blue square', seed: 7, output_format: 'jpeg', output_compression: 50 });
  assert.equal(jpeg.output_format, 'jpeg');
  assert.deepEqual([...Buffer.from(jpeg.data![0]!.b64_json!, 'base64').subarray(0, 3)], [0xff, 0xd8, 0xff], 'a JPEG');
});

test('response_format url: links served by the server, the same bytes as b64_json; unknown names are a 404 in OpenAI shape', async (t) => {
  const { url } = await build(t, { listen: true });
  const client = openAIClient(url);
  const linked = await generateImages(client, { prompt: 'a green triangle', seed: 5, n: 2, response_format: 'url' });
  const inline = await generateImages(client, { prompt: 'a green triangle', seed: 5, n: 2 });
  assert.equal(linked.data!.length, 2);
  for (const [index, image] of linked.data!.entries()) {
    assert.deepEqual(Object.keys(image).sort(), ['seed', 'url']);
    assert.match(image.url!, new RegExp(`^${url}/v1/images/files/[\\w-]{22}\\.png$`));
    const fetched = await fetch(image.url!);
    assert.equal(fetched.status, 200);
    assert.equal(fetched.headers.get('content-type'), 'image/png');
    assert.deepEqual(Buffer.from(await fetched.arrayBuffer()), Buffer.from(inline.data![index]!.b64_json!, 'base64'));
  }

  const missing = await fetch(`${url}/v1/images/files/AAAAAAAAAAAAAAAAAAAAAA.png`);
  assert.equal(missing.status, 404);
  assert.deepEqual(await missing.json(), {
    error: {
      message: 'Image AAAAAAAAAAAAAAAAAAAAAA.png is not here: image URLs expire after 600 s, the oldest sooner when their memory is full',
      type: 'invalid_request_error',
      param: null,
      code: 'SNOOPI_IMAGE_NOT_FOUND',
    },
  });
});

test('models.list and models.retrieve: the registry in OpenAI shape', async (t) => {
  const { url, service } = await build(t, { listen: true });
  const client = openAIClient(url);
  const ids = service.listModels().map((model) => model.id);
  const listed = [];
  for await (const model of client.models.list()) listed.push(model);
  assert.deepEqual(listed.map((model) => model.id), ids);
  for (const model of listed) {
    assert.deepEqual(Object.keys(model).sort(), ['created', 'id', 'object', 'owned_by']);
    assert.deepEqual([model.object, model.owned_by], ['model', 'snoopi']);
  }
  const active = service.stats().activeModel!;
  assert.deepEqual(await client.models.retrieve(active), listed.find((model) => model.id === active));

  const unknown = await rejection(client.models.retrieve('no-such-model'), OpenAI.NotFoundError);
  assert.deepEqual([unknown.status, unknown.code, unknown.type, unknown.param], [404, 'SNOOPI_MODEL_NOT_FOUND', 'invalid_request_error', 'model']);
  assert.equal(unknown.message, `404 Model no-such-model not found; known models: ${ids.join(', ')}`);
});

test('4xx answers raise the client typed errors, with type, param and code', async (t) => {
  const { url, service } = await build(t, { listen: true, settings: { bodyLimit: 1024 } });
  const client = openAIClient(url);
  const model = service.listModels().find((entry) => entry.active)!;
  const resolution = `${model.image.width}x${model.image.height}`;
  const cases: [SnoopiImageParams, string, string | null, string][] = [
    [{ prompt: 'a', n: 9 }, 'SNOOPI_VALIDATION', 'n', '400 Invalid request: body/n must be <= 8'],
    [{ prompt: '' }, 'SNOOPI_VALIDATION', 'prompt', '400 Invalid request: body/prompt must NOT have fewer than 1 characters'],
    [{ prompt: 'a', style: 'vivid' }, 'SNOOPI_VALIDATION', 'style', '400 Invalid request: body/style is not a known field'],
    [
      { prompt: 'a', response_format: 'png' as never },
      'SNOOPI_VALIDATION',
      'response_format',
      '400 Invalid request: body/response_format must be one of b64_json, url',
    ],
    [{ prompt: 'a', seed: -1 }, 'SNOOPI_VALIDATION', 'seed', '400 Invalid request: body/seed must be >= 0'],
    [
      { prompt: 'a', output_compression: 80 },
      'SNOOPI_VALIDATION',
      null,
      '400 Invalid request: body/output_compression applies to jpeg and webp only; png is lossless',
    ],
    [
      { prompt: 'a', size: '1024x1024' },
      'SNOOPI_SIZE_UNSUPPORTED',
      'size',
      `400 size 1024x1024 is not available: model ${model.id} draws ${resolution} images`,
    ],
    [
      { prompt: 'a', negative_prompt: 'b', negative_scale: 99 },
      'SNOOPI_SCALE_OUT_OF_RANGE',
      'negative_scale',
      `400 negative_scale 99 is outside 0..${model.nasa.maxScale} for model ${model.id}`,
    ],
  ];
  for (const [params, code, param, message] of cases) {
    const error = await rejection(generateImages(client, params), OpenAI.BadRequestError);
    const seen = [error.status, error.code, error.type, error.param, error.message];
    assert.deepEqual(seen, [400, code, 'invalid_request_error', param, message], JSON.stringify(params));
  }

  const unknownModel = await rejection(generateImages(client, { prompt: 'a', model: 'dall-e-3' }), OpenAI.NotFoundError);
  assert.deepEqual([unknownModel.code, unknownModel.param], ['SNOOPI_MODEL_NOT_FOUND', 'model']);

  const tooLarge = await rejection(generateImages(client, { prompt: 'x'.repeat(1500) }), OpenAI.APIError);
  assert.deepEqual(
    [tooLarge.status, tooLarge.code, tooLarge.type, tooLarge.message],
    [413, 'SNOOPI_BODY_TOO_LARGE', 'invalid_request_error', '413 Request body is larger than 1024 bytes'],
  );

  const unknownRoute = await rejection(client.get('/images/variations'), OpenAI.NotFoundError);
  assert.deepEqual([unknownRoute.code, unknownRoute.message], ['SNOOPI_ROUTE_NOT_FOUND', '404 Route GET /v1/images/variations not found']);
});

test('5xx and queue refusals raise the client typed errors too: 503 while not ready, 429 on a full queue, 504 past the deadline', async (t) => {
  const emptyModelsDir = await mkdtemp(join(tmpdir(), 'snoopi-no-models-'));
  t.after(() => rm(emptyModelsDir, { recursive: true, force: true }));
  const loading = await build(t, { listen: true, warm: false, settings: { modelsDir: emptyModelsDir } });
  const notReady = await rejection(generateImages(openAIClient(loading.url), { prompt: 'a' }), OpenAI.InternalServerError);
  assert.deepEqual([notReady.status, notReady.code, notReady.type], [503, 'SNOOPI_NOT_READY', 'server_error']);
  assert.equal(notReady.headers.get('retry-after'), '5');

  const busy = await build(t, { listen: true, settings: { maxBatch: 8, maxQueueRows: 8 } });
  const busyClient = openAIClient(busy.url);
  const storm = await Promise.allSettled(
    Array.from({ length: 12 }, (_, seed) => generateImages(busyClient, { prompt: 'a blue circle', seed, n: 8 })),
  );
  const refused = storm.flatMap((outcome) => (outcome.status === 'rejected' ? [outcome.reason as unknown] : []));
  assert.ok(refused.length > 0 && refused.length < storm.length, `${refused.length} of ${storm.length} refused`);
  for (const error of refused) {
    assert.ok(error instanceof OpenAI.RateLimitError, String(error));
    assert.deepEqual([error.code, error.type, error.headers.get('retry-after')], ['SNOOPI_QUEUE_FULL', 'rate_limit_error', '1']);
  }

  const late = await build(t, { listen: true, settings: { maxBatch: 1, deadlineMs: 1 } });
  const lateClient = openAIClient(late.url);
  const rush = await Promise.allSettled(Array.from({ length: 6 }, (_, seed) => generateImages(lateClient, { prompt: 'a red square', seed })));
  const expired = rush.flatMap((outcome) => (outcome.status === 'rejected' ? [outcome.reason as unknown] : []));
  assert.ok(expired.length > 0, 'requests queued behind a batch waited past a 1 ms deadline');
  for (const error of expired) {
    assert.ok(error instanceof OpenAI.InternalServerError, String(error));
    assert.deepEqual([error.status, error.code, error.type], [504, 'SNOOPI_DEADLINE_EXCEEDED', 'server_error']);
  }
});
