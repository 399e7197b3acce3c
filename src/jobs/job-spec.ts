// What a fine-tune job asks for (the validated body of POST /admin/finetune, defaults filled in) and the one
// translation of it into trainer.distill's keys. The trainer gets these keys as a JSON file (local runner) or as
// --key=value arguments (kubernetes runner), never through a shell; every path in them is chosen by the service.
import { join } from 'node:path';
import { errors } from '../errors.js';

export type FinetuneMethod = 'pg-sb' | 'sb';

/** PG-SB draws kappa ~ U(min, max) at every step; SB (SwiftBrush) keeps it fixed. */
export type Guidance = { min: number; max: number } | { fixed: number };

export interface FinetuneSpec {
  /** A name with a teacher checkpoint teacher-<backbone>.pt in the base models folder (backbones.ts). */
  backbone: string;
  method: FinetuneMethod;
  /** Absent: the trainer's default for the backbone and method. */
  guidance?: Guidance;
  steps: number;
  batch_size: number;
  seed: number;
  /** The id of the model package the job makes. */
  name: string;
}

/** What a job may ask for, inclusive. Each range lies within trainer.distill's (its RANGES and MAX_GUIDANCE), which
 * an operator running the trainer by hand may use in full; the seed range is the trainer's exactly (its seeds from 1000
 * up are evaluation sets). test/jobs-trainer-limits.test.ts checks both against trainer/distill.py. */
export const FINETUNE_LIMITS = {
  guidance: { minimum: 0, maximum: 20 },
  steps: { minimum: 1, maximum: 100_000 },
  batch_size: { minimum: 1, maximum: 1024 },
  seed: { minimum: 0, maximum: 999 },
} as const;

/** Folder names under the models root that are not packages: an id may not take them. */
export const RESERVED_MODEL_IDS: readonly string[] = ['base'];

/** Where a job's package is exported before it is checked and moved into the registry: under the models root (same
 * filesystem, so the move is one rename), in a dot-folder the registry's scan never reads. */
export const STAGING_FOLDER = '.incoming';

export function stagingDir(modelsDir: string, jobId: string, modelId: string): string {
  return join(modelsDir, STAGING_FOLDER, jobId, modelId);
}

/** The rules a schema cannot say: guidance that fits the method, min below max. Throws SNOOPI_VALIDATION. */
export function checkSpec(spec: FinetuneSpec): void {
  const guidance = spec.guidance;
  if (guidance === undefined) return;
  if ('fixed' in guidance) {
    if (spec.method !== 'sb') {
      throw new errors.SNOOPI_VALIDATION(`body/guidance {fixed} is SB's fixed kappa; method ${spec.method} draws kappa from {min, max}`);
    }
    return;
  }
  if (spec.method !== 'pg-sb') {
    throw new errors.SNOOPI_VALIDATION(`body/guidance {min, max} is PG-SB's random kappa; method ${spec.method} takes {fixed}`);
  }
  if (!(guidance.min < guidance.max)) {
    throw new errors.SNOOPI_VALIDATION(`body/guidance/min (${guidance.min}) must be below body/guidance/max (${guidance.max})`);
  }
}

/** Where the trainer finds its inputs and writes its run; an absent path keeps the trainer's default (relative to its
 * working directory: models/base/teacher-<backbone>.pt, models/base/clip.pt, runs/distill/<id>). */
export interface TrainerPaths {
  baseModelsDir?: string;
  runDir?: string;
}

/** trainer.distill's keys for a job: the operator's keys (SNOOPI_TRAINER_CONFIG) first, the job's over them. */
export function trainerConfig(spec: FinetuneSpec, paths: TrainerPaths, operatorKeys: Readonly<Record<string, unknown>> = {}): Record<string, unknown> {
  const base = paths.baseModelsDir;
  return {
    ...operatorKeys,
    ...(base === undefined
      ? { backbone: spec.backbone }
      : { backbone: join(base, `teacher-${spec.backbone}.pt`), clip_path: join(base, 'clip.pt'), vae_path: join(base, 'vae.pt') }),
    ...(paths.runDir === undefined ? {} : { run_dir: paths.runDir }),
    method: spec.method,
    ...(spec.guidance === undefined ? {} : { guidance: spec.guidance }),
    steps: spec.steps,
    batch_size: spec.batch_size,
    seed: spec.seed,
    name: spec.name,
  };
}
