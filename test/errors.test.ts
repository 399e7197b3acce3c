import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { repoRoot } from '../src/config/paths.js';
import { errors } from '../src/errors.js';

test('each key of the error table equals the code of the errors it creates', () => {
  for (const [key, create] of Object.entries(errors)) {
    const error = create('a', 'b', 'c');
    assert.equal(error.code, key);
    assert.equal(error.name, 'FastifyError');
  }
});

test('docs/errors.md lists exactly the codes of the table, each with its status', () => {
  const page = readFileSync(join(repoRoot, 'docs', 'errors.md'), 'utf8');
  const documented = new Map<string, number>();
  for (const [, code, status] of page.matchAll(/^\| `(SNOOPI_[A-Z_]+)` \| (\d{3}) \|/gm)) {
    assert.ok(!documented.has(code!), `${code} is documented twice`);
    documented.set(code!, Number(status));
  }
  const table = new Map(Object.entries(errors).map(([code, create]) => [code, create('a', 'b', 'c').statusCode!]));
  assert.deepEqual([...documented.keys()].sort(), [...table.keys()].sort());
  assert.deepEqual(Object.fromEntries([...documented].sort()), Object.fromEntries([...table].sort()));
});
