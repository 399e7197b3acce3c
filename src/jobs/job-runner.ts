// How a job's trainer runs: as a child process (local-runner.ts) or as a Kubernetes Job (kubernetes-runner.ts). A
// runner starts the trainer, reports what it prints, stops it on cancel, and says how it ended. It knows nothing of
// job records, queues or the registry (job-manager.ts).
import type { FinetuneSpec } from './job-spec.js';
import type { RunnerKind } from './job-record.js';
import type { TrainerExported, TrainerProgress } from './trainer-output.js';

export interface TrainerLaunch {
  jobId: string;
  /** The job's record folder (the local trainer runs in it). */
  jobDir: string;
  /** spec.name is the package id. */
  spec: FinetuneSpec;
  /** trainer.distill keys the operator adds to every job (SNOOPI_TRAINER_CONFIG). */
  operatorKeys: Readonly<Record<string, unknown>>;
}

export interface TrainerEvents {
  progress(record: TrainerProgress): void;
  exported(event: TrainerExported): void;
  /** A human message of the trainer (its stderr). */
  message(text: string): void;
}

/** detached: the service stopped following a trainer that goes on without it (a Kubernetes Job); the next start
 * reattaches to it. */
export type TrainerOutcome = { outcome: 'succeeded' } | { outcome: 'failed'; error: string } | { outcome: 'cancelled' } | { outcome: 'detached' };

export interface TrainerRun {
  /** Settles (never rejects) when the trainer has ended. */
  readonly done: Promise<TrainerOutcome>;
  /** Stops the trainer; resolves when it has stopped (done then says cancelled). */
  cancel(): Promise<void>;
}

export interface JobRunner {
  readonly kind: RunnerKind;
  start(launch: TrainerLaunch, events: TrainerEvents): TrainerRun;
  /** Follows a job that was running when the service stopped; undefined when its trainer cannot have survived
   * (a child process dies with the service). */
  reattach(launch: TrainerLaunch, events: TrainerEvents): TrainerRun | undefined;
  /** Stops following every run: the local runner stops its trainers (each done says failed), the kubernetes runner
   * leaves its Jobs running (each done says detached). */
  close(): Promise<void>;
}
