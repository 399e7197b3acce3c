// Which backbones a job may name: those with a teacher checkpoint in the base folder; the trainer's own list, which
// the service copies for its messages, must stay the trainer's.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { repoRoot } from '../src/config/paths.js';
import { TRAINER_BACKBONES, describeBackbones, listBackbones } from '../src/jobs/backbones.js';

test("TRAINER_BACKBONES is trainer/sample.py's BACKBONES", async () => {
  const { stdout } = await promisify(execFile)('/usr/bin/python3', ['-c', 'import json; from trainer.sample import BACKBONES; print(json.dumps(list(BACKBONES)))'], {
    cwd: repoRoot,
  });
  assert.deepEqual(JSON.parse(stdout), TRAINER_BACKBONES);
});

test('known backbones are the teacher-<name>.pt files with a safe name; a missing folder knows none', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'snoopi-base-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  for (const file of ['teacher-unet-eps.pt', 'teacher-dit-s.pt', 'teacher-Bad Name.pt', 'clip.pt', 'teacher-unet-v.json']) await writeFile(join(dir, file), '');
  const backbones = await listBackbones(dir);
  assert.deepEqual(backbones, { known: ['dit-s', 'unet-eps'], untrained: ['unet-v', 'dit'] });
  assert.equal(describeBackbones(backbones), 'dit-s, unet-eps (trainer backbones without a teacher checkpoint yet: unet-v, dit)');
  assert.deepEqual(await listBackbones(join(dir, 'missing')), { known: [], untrained: ['unet-eps', 'unet-v', 'dit'] });
  assert.equal(describeBackbones(await listBackbones(join(dir, 'missing'))), '(none) (trainer backbones without a teacher checkpoint yet: unet-eps, unet-v, dit)');
});
