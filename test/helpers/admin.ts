// What the admin tests share: a registry of their own (a copy of the fixture package, so a job can register into
// it), a base-models folder, a jobs folder, the token, and a local runner over the stand-in trainer.
import { cp, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { repoRoot } from '../../src/config/paths.js';
import type { Settings } from '../../src/config/settings.js';
import { LocalRunner } from '../../src/jobs/local-runner.js';

export const TOKEN = 'test-admin-token-0123456789';
export const auth = { authorization: `Bearer ${TOKEN}` };
export const FIXTURE_MODEL = 'shapes-fixture';

export interface AdminFolders {
  dir: string;
  modelsDir: string;
  baseModelsDir: string;
  jobsDir: string;
  /** Settings that point the service at these folders, with the admin routes on. */
  settings: Partial<Settings>;
}

export async function adminFolders(t: TestContext): Promise<AdminFolders> {
  const dir = await mkdtemp(join(tmpdir(), 'snoopi-admin-'));
  t.after(() => rm(dir, { recursive: true, force: true, maxRetries: 5 }));
  const modelsDir = join(dir, 'models');
  const baseModelsDir = join(modelsDir, 'base');
  const jobsDir = join(dir, 'jobs');
  await mkdir(baseModelsDir, { recursive: true });
  await cp(join(repoRoot, 'models', FIXTURE_MODEL), join(modelsDir, FIXTURE_MODEL), { recursive: true });
  return { dir, modelsDir, baseModelsDir, jobsDir, settings: { adminToken: TOKEN, modelsDir, jobsDir, activeModel: FIXTURE_MODEL } };
}

/** A local runner over helpers/fake-trainer.ts in the given mode (ok | fail | slow | stubborn). */
export function fakeTrainerRunner(folders: AdminFolders, mode: string): LocalRunner {
  return new LocalRunner({
    command: [process.execPath, join(repoRoot, 'dist', 'test', 'helpers', 'fake-trainer.js')],
    modelsDir: folders.modelsDir,
    baseModelsDir: folders.baseModelsDir,
    cancelGraceMs: 2000,
    env: { FAKE_TRAINER: mode },
  });
}
