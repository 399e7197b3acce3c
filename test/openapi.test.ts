import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { packageInfo, repoRoot } from '../src/config/paths.js';
import { renderOpenApiDocument } from '../src/http/openapi-document.js';

const checkedInPath = join(repoRoot, 'openapi', 'openapi.json');

test('openapi/openapi.json is what `snoopi openapi` generates (run it after changing a schema)', async () => {
  assert.equal(readFileSync(checkedInPath, 'utf8'), await renderOpenApiDocument());
});

test('the document names the service and lists every route with its error responses', async () => {
  const document = JSON.parse(await renderOpenApiDocument());
  assert.equal(document.openapi, '3.0.3');
  assert.deepEqual(document.info, { title: 'snoopi-serve', version: packageInfo.version, description: packageInfo.description });
  assert.deepEqual(Object.keys(document.paths).sort(), [
    '/admin/finetune',
    '/admin/jobs',
    '/admin/jobs/{id}',
    '/admin/jobs/{id}/events',
    '/admin/models/{id}/activate',
    '/generate',
    '/healthz',
    '/metrics',
    '/models',
    '/readyz',
    '/v1/images/files/{name}',
    '/v1/images/generations',
    '/v1/models',
    '/v1/models/{id}',
  ]);
  const errorBody = { 'application/json': { schema: { $ref: '#/components/schemas/ErrorBody' } } };
  const generate = document.paths['/generate'].post.responses;
  assert.deepEqual(Object.keys(generate), ['200', '400', '401', '404', '406', '413', '415', '429', '500', '503', '504']);
  for (const status of ['400', '401', '404', '406', '413', '415', '429', '500', '503', '504']) {
    assert.deepEqual(generate[status].content, errorBody, status);
  }
  const retryAfter = { schema: { type: 'integer', minimum: 0 }, description: 'seconds to wait before retrying' };
  assert.deepEqual(generate['429'].headers, { 'retry-after': retryAfter });
  assert.deepEqual(generate['503'].headers, { 'retry-after': retryAfter });
  assert.deepEqual(Object.keys(generate['200'].content), ['application/json', 'image/png', 'image/jpeg', 'image/webp']);
  assert.deepEqual(document.paths['/readyz'].get.responses['503'].content, errorBody);
  assert.deepEqual(document.components.schemas.ErrorBody.required, ['statusCode', 'code', 'error', 'message']);
  // b64_json's format 'unsafe' only tells the serializer not to escape the base64; clients never see it.
  const image = generate['200'].content['application/json'].schema.properties.images.items.properties.b64_json;
  assert.deepEqual(image, { type: 'string', description: 'the encoded image, base64' });
});

test('the OpenAI-compatible routes answer errors with OpenAI\'s body, and declare the API key', async () => {
  const document = JSON.parse(await renderOpenApiDocument());
  const openAIError = { 'application/json': { schema: { $ref: '#/components/schemas/OpenAIError' } } };
  const generations = document.paths['/v1/images/generations'].post;
  assert.deepEqual(Object.keys(generations.responses), ['200', '400', '401', '404', '413', '415', '429', '500', '503', '504']);
  for (const [status, response] of Object.entries(generations.responses) as [string, { content: unknown }][]) {
    if (status !== '200') assert.deepEqual(response.content, openAIError, status);
  }
  assert.deepEqual(document.components.schemas.OpenAIError.properties.error.required, ['message', 'type', 'param', 'code']);
  for (const [path, method] of [['/generate', 'post'], ['/v1/images/generations', 'post'], ['/v1/models', 'get'], ['/v1/models/{id}', 'get']]) {
    assert.deepEqual(document.paths[path!][method!].security, [{ apiKey: [] }], path);
  }
  assert.equal(document.paths['/v1/images/files/{name}'].get.security, undefined, 'image URLs need no key');
  assert.deepEqual(document.components.securitySchemes.apiKey, {
    type: 'http',
    scheme: 'bearer',
    description: 'an API key of SNOOPI_API_KEYS; only when the server has keys (else open)',
  });
});
