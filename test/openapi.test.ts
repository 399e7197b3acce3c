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
  ]);
  const errorBody = { 'application/json': { schema: { $ref: '#/components/schemas/ErrorBody' } } };
  const generate = document.paths['/generate'].post.responses;
  assert.deepEqual(Object.keys(generate), ['200', '400', '404', '406', '413', '415', '429', '500', '503', '504']);
  for (const status of ['400', '404', '406', '413', '415', '429', '500', '503', '504']) {
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
