// The TypeScript SDK's types (clients/typescript/src/schema.d.ts) are generated from openapi/openapi.json by
// `npm run sdk`; this fails when the committed file is not what a fresh generation gives.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { repoRoot } from '../src/config/paths.js';

test('clients/typescript/src/schema.d.ts is what `npm run sdk` generates from openapi/openapi.json', async () => {
  const generator = (await import(pathToFileURL(join(repoRoot, 'clients', 'typescript', 'scripts', 'generate-schema.mjs')).href)) as {
    renderSchema(): Promise<string>;
    schemaPath: string;
  };
  assert.equal(generator.schemaPath, join(repoRoot, 'clients', 'typescript', 'src', 'schema.d.ts'));
  assert.equal(readFileSync(generator.schemaPath, 'utf8'), await generator.renderSchema(), 'run `npm run sdk`');
});

test('the generated schema covers every path and method of the OpenAPI document', () => {
  const document = JSON.parse(readFileSync(join(repoRoot, 'openapi', 'openapi.json'), 'utf8')) as { paths: Record<string, Record<string, unknown>> };
  const schema = readFileSync(join(repoRoot, 'clients', 'typescript', 'src', 'schema.d.ts'), 'utf8');
  for (const [path, methods] of Object.entries(document.paths)) {
    const start = schema.indexOf(`    "${path}": {`);
    assert.ok(start !== -1, `${path} is missing`);
    const block = schema.slice(start, schema.indexOf('\n    };', start));
    for (const method of Object.keys(methods)) assert.match(block, new RegExp(`\\n        ${method}: \\{`), `${method.toUpperCase()} ${path}`);
  }
});
