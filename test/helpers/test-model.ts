import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { repoRoot } from '../../src/config/paths.js';
import type { ModelManifest } from '../../src/registry/model-manifest.js';

/** The model package the engine, service, registry and ONNX-toolkit tests run on: SNOOPI_TEST_MODEL (an id under
 * models/), else the committed fixture, a real trainer export small enough to keep the tests fast. Named, not the
 * first package found, so that adding a package to models/ does not move the tests onto it. */
export const TEST_MODEL_ID = process.env.SNOOPI_TEST_MODEL ?? 'shapes-fixture';
export const TEST_MODEL_DIR = join(repoRoot, 'models', TEST_MODEL_ID);

/** Its model.json as written, unvalidated (tests derive broken and renamed manifests from it). */
export async function testManifest(): Promise<ModelManifest> {
  return JSON.parse(await readFile(join(TEST_MODEL_DIR, 'model.json'), 'utf8')) as ModelManifest;
}
