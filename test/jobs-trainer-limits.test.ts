// The limits the service and the trainer share. The service checks a fine-tune job before the trainer sees it, so
// every job the admin endpoint accepts must be one trainer/distill.py accepts, and a model id must be the same thing
// on both sides. The trainer may allow more (operators run it by hand), never less.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { repoRoot } from '../src/config/paths.js';
import { FINETUNE_LIMITS } from '../src/jobs/job-spec.js';
import { MODEL_ID_PATTERN } from '../src/registry/model-manifest.js';

interface TrainerLimits {
  id_pattern: string;
  max_guidance: number;
  ranges: Record<string, [number, number]>;
}

const script =
  'import json; from trainer import distill; ' +
  'print(json.dumps({"id_pattern": distill.ID_PATTERN.pattern, "max_guidance": distill.MAX_GUIDANCE, "ranges": distill.RANGES}))';
const { stdout } = await promisify(execFile)('/usr/bin/python3', ['-c', script], { cwd: repoRoot });
const trainer = JSON.parse(stdout) as TrainerLimits;

test("a model id is the same on both sides: the manifest's MODEL_ID_PATTERN is trainer/distill.py's ID_PATTERN", () => {
  assert.equal(trainer.id_pattern, MODEL_ID_PATTERN);
});

test("the admin endpoint's seed range is the trainer's (its seeds from 1000 up are evaluation sets)", () => {
  const [minimum, maximum] = trainer.ranges.seed!;
  assert.deepEqual(FINETUNE_LIMITS.seed, { minimum, maximum });
});

test("the admin endpoint's guidance, steps and batch_size ranges lie within the trainer's", () => {
  const trainerRanges: Record<'guidance' | 'steps' | 'batch_size', [number, number]> = {
    guidance: [0, trainer.max_guidance],
    steps: trainer.ranges.steps!,
    batch_size: trainer.ranges.batch_size!,
  };
  const outside = Object.entries(trainerRanges)
    .map(([key, [low, high]]) => ({ key, ...FINETUNE_LIMITS[key as keyof typeof trainerRanges], low, high }))
    .filter(({ minimum, maximum, low, high }) => minimum < low || maximum > high)
    .map(({ key, minimum, maximum, low, high }) => `${key}: ${minimum}..${maximum} is not within the trainer's ${low}..${high}`);
  assert.deepEqual(outside, []);
});
