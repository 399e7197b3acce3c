// A fine-tune job as the admin API shows it and as status.json stores it: one shape for both, so a restart lists
// exactly what was answered before it.
import { randomBytes } from 'node:crypto';
import type { FinetuneSpec } from './job-spec.js';
import type { TrainerProgress } from './trainer-output.js';

export const JOB_STATUSES = ['queued', 'running', 'succeeded', 'failed', 'cancelled'] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];

/** What a running job is doing: training, then checking its package, then moving it into the registry. */
export const JOB_STAGES = ['training', 'validating', 'registering', 'cancelling'] as const;
export type JobStage = (typeof JOB_STAGES)[number];

export type RunnerKind = 'local' | 'kubernetes';

export interface Job {
  id: string;
  status: JobStatus;
  /** null unless running. */
  stage: JobStage | null;
  runner: RunnerKind;
  spec: FinetuneSpec;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  progress: { step: number; total: number; eta_s: number | null };
  /** The latest progress line's losses, without the loss_ prefix: { student, lora }. */
  losses: Record<string, number>;
  /** The teacher's guidance scale at the latest progress line. */
  kappa: number | null;
  /** The latest evaluation (fid, align), empty before the first. */
  metrics: Record<string, number>;
  /** Set once the package is registered. */
  model_id: string | null;
  /** Why the job failed. */
  error: string | null;
}

export const isFinished = (status: JobStatus): boolean => status === 'succeeded' || status === 'failed' || status === 'cancelled';

/** Sortable by creation time, and a valid Kubernetes name part (lowercase letters, digits, dashes). */
export const JOB_ID_PATTERN = '^ft-[0-9a-z]{8,11}-[0-9a-f]{6}$';

export function newJobId(now = Date.now()): string {
  return `ft-${now.toString(36).padStart(8, '0')}-${randomBytes(3).toString('hex')}`;
}

export function newJob(id: string, spec: FinetuneSpec, runner: RunnerKind, now = new Date()): Job {
  return {
    id,
    status: 'queued',
    stage: null,
    runner,
    spec,
    created_at: now.toISOString(),
    started_at: null,
    finished_at: null,
    progress: { step: 0, total: spec.steps, eta_s: null },
    losses: {},
    kappa: null,
    metrics: {},
    model_id: null,
    error: null,
  };
}

const EVALUATION_KEYS = ['fid', 'align'] as const;

/** The job with a trainer progress line applied. */
export function withProgress(job: Job, record: TrainerProgress): Job {
  const losses: Record<string, number> = {};
  for (const [key, value] of Object.entries(record)) {
    if (key.startsWith('loss_') && typeof value === 'number') losses[key.slice('loss_'.length)] = value;
  }
  const metrics = { ...job.metrics };
  for (const key of EVALUATION_KEYS) if (typeof record[key] === 'number') metrics[key] = record[key];
  return {
    ...job,
    progress: { step: record.step, total: record.total, eta_s: typeof record.eta_s === 'number' ? record.eta_s : null },
    losses,
    kappa: typeof record.kappa === 'number' ? record.kappa : job.kappa,
    metrics,
  };
}
