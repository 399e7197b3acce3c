import { join } from 'node:path';
import { repoRoot } from '../../src/config/paths.js';

/** The model package the engine, service, registry and ONNX-toolkit tests run on: SNOOPI_TEST_MODEL (an id under
 * models/), else the committed fixture, a real trainer export small enough to keep the tests fast. Named, not the
 * first package found, so that adding a package to models/ does not move the tests onto it. */
export const TEST_MODEL_ID = process.env.SNOOPI_TEST_MODEL ?? 'shapes-fixture';
export const TEST_MODEL_DIR = join(repoRoot, 'models', TEST_MODEL_ID);
