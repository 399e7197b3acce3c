// Random tiny teacher, CLIP and VAE checkpoints in the formats of models/base/ (teacher-<backbone>.pt, clip.pt,
// vae.pt), written by the trainer's own test helper (trainer/tests/test_distill.py: write_tiny_checkpoints), so a
// real trainer.distill run takes seconds. ~3 s.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { repoRoot } from '../../src/config/paths.js';

const WRITE_TINY_CHECKPOINTS = `
import pathlib, sys
sys.path.insert(0, "trainer/tests")
from test_distill import write_tiny_checkpoints
write_tiny_checkpoints(pathlib.Path(sys.argv[1]))
`;

export async function writeTinyBaseModels(dir: string): Promise<void> {
  await promisify(execFile)('/usr/bin/python3', ['-c', WRITE_TINY_CHECKPOINTS, dir], { cwd: repoRoot, env: { ...process.env, OMP_NUM_THREADS: '1' } });
}
