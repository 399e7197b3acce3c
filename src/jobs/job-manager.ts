// The fine-tune jobs of the service: accepts a job, queues it (maxRunning at once, the rest wait in order), runs its
// trainer through the runner, records every change on disk (job-store.ts) and tells subscribers, and on success
// checks the package and registers it (package-registrar.ts). Plain TypeScript: the admin routes only wire it in.
//
// After a restart the records are read back: finished jobs are listed as they were, queued ones queue again, and a
// running one is reattached when its trainer can have survived (a Kubernetes Job); otherwise it is marked failed.
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { errors } from '../errors.js';
import { describeBackbones, listBackbones } from './backbones.js';
import { JOB_STATUSES, isFinished, newJob, newJobId, withProgress, type Job, type JobStatus } from './job-record.js';
import type { JobRunner, TrainerEvents, TrainerLaunch, TrainerOutcome, TrainerRun } from './job-runner.js';
import { RESERVED_MODEL_IDS, checkSpec, stagingDir, type FinetuneSpec } from './job-spec.js';
import type { JobStore } from './job-store.js';
import type { PackageRegistrar } from './package-registrar.js';

export interface JobLog {
  info(details: object, message: string): void;
  warn(details: object, message: string): void;
  error(details: object, message: string): void;
}

export interface JobManagerOptions {
  store: JobStore;
  runner: JobRunner;
  registrar: PackageRegistrar;
  /** Registry root (packages are staged under it). */
  modelsDir: string;
  /** Where the teacher checkpoints are (which backbones are known). */
  baseModelsDir: string;
  maxRunning: number;
  /** trainer.distill keys added to every job (SNOOPI_TRAINER_CONFIG). */
  operatorKeys?: Readonly<Record<string, unknown>>;
  /** The ids of the registered models (a job may not take one). */
  modelIds(): string[];
  log: JobLog;
}

/** A job as submitted: the spec, with the name optional. */
export type FinetuneRequest = Omit<FinetuneSpec, 'name'> & { name?: string };

export type JobListener = (job: Job) => void;

export const RESTART_ERROR = 'the service stopped while the job was running; its trainer did not survive (start a new job)';

export class JobManager {
  private readonly jobs = new Map<string, Job>();
  private readonly queue: string[] = [];
  private readonly runs = new Map<string, TrainerRun>();
  /** Per running job: settles when the job has finished (or the service stopped following it). */
  private readonly settling = new Map<string, Promise<void>>();
  private readonly listeners = new Map<string, Set<JobListener>>();
  private closing = false;

  private constructor(private readonly options: JobManagerOptions) {}

  /** Reads the records back, recovers the jobs that were queued or running, and starts what can start. */
  static async open(options: JobManagerOptions): Promise<JobManager> {
    const manager = new JobManager(options);
    const records = await options.store.loadAll();
    for (const job of records) manager.jobs.set(job.id, job);
    for (const job of records) {
      if (job.status === 'queued') manager.queue.push(job.id);
      if (job.status === 'running') manager.recover(job);
    }
    manager.pump();
    await options.store.flush();
    return manager;
  }

  /** Every job, newest first. */
  list(): Job[] {
    return [...this.jobs.values()].sort((a, b) => b.created_at.localeCompare(a.created_at) || b.id.localeCompare(a.id));
  }

  get(id: string): Job | undefined {
    return this.jobs.get(id);
  }

  /** Jobs by status, every status present. */
  counts(): Record<JobStatus, number> {
    const counts = Object.fromEntries(JOB_STATUSES.map((status) => [status, 0])) as Record<JobStatus, number>;
    for (const job of this.jobs.values()) counts[job.status]++;
    return counts;
  }

  /** Checks the request against what the service knows (backbones, model ids), records the job and queues it. */
  async submit(request: FinetuneRequest): Promise<Job> {
    if (this.closing) throw new errors.SNOOPI_SHUTTING_DOWN();
    const backbones = await listBackbones(this.options.baseModelsDir);
    if (!backbones.known.includes(request.backbone)) throw new errors.SNOOPI_UNKNOWN_BACKBONE(request.backbone, describeBackbones(backbones));
    const id = newJobId();
    const spec: FinetuneSpec = { ...request, name: request.name ?? `${request.backbone}-${request.method}-${id}` };
    checkSpec(spec);
    // Checked and taken in one synchronous step, so two requests cannot both get a name.
    this.checkNameFree(spec.name);
    const job = newJob(id, spec, this.options.runner.kind);
    this.jobs.set(id, job);
    try {
      await this.options.store.create(job);
    } catch (error) {
      this.jobs.delete(id);
      throw error;
    }
    this.options.log.info({ job: id, spec }, 'fine-tune job queued');
    this.queue.push(id);
    this.pump();
    return this.jobs.get(id)!;
  }

  /** Cancels a queued job at once, or stops a running trainer and resolves once it has stopped. */
  async cancel(id: string): Promise<Job> {
    const job = this.jobs.get(id);
    if (job === undefined) throw new errors.SNOOPI_JOB_NOT_FOUND(id);
    if (isFinished(job.status)) throw new errors.SNOOPI_JOB_ENDED(id, job.status);
    if (job.status === 'queued') {
      this.queue.splice(this.queue.indexOf(id), 1);
      this.finish(id, 'cancelled');
      return this.jobs.get(id)!;
    }
    const run = this.runs.get(id);
    // Once the trainer has finished, the package is being checked and registered: that runs to its end.
    if (run !== undefined && job.stage === 'training') {
      this.update({ ...job, stage: 'cancelling' });
      this.options.log.info({ job: id }, 'cancelling a fine-tune job');
      await run.cancel();
    }
    await this.settling.get(id);
    return this.jobs.get(id)!;
  }

  /** Calls `listener` with the job after every change; returns the unsubscribe function. */
  subscribe(id: string, listener: JobListener): () => void {
    let set = this.listeners.get(id);
    if (set === undefined) this.listeners.set(id, (set = new Set()));
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0) this.listeners.delete(id);
    };
  }

  /** Starts no more jobs; stops following the running ones (runner.close) and lets their records land. */
  async close(): Promise<void> {
    this.closing = true;
    await this.options.runner.close();
    await Promise.all(this.settling.values());
    await this.options.store.flush();
  }

  private checkNameFree(name: string): void {
    if (RESERVED_MODEL_IDS.includes(name)) throw new errors.SNOOPI_NAME_TAKEN(name, 'the folder of that name holds the base checkpoints');
    if (this.options.modelIds().includes(name)) throw new errors.SNOOPI_NAME_TAKEN(name, 'a registered model has it');
    // Any other file or folder there (training checkpoints, a broken package) would make the trained package
    // impossible to register after the whole budget.
    if (existsSync(join(this.options.modelsDir, name))) throw new errors.SNOOPI_NAME_TAKEN(name, 'the models folder holds a file or folder of that name');
    for (const other of this.jobs.values()) {
      if (!isFinished(other.status) && other.spec.name === name) throw new errors.SNOOPI_NAME_TAKEN(name, `job ${other.id} is making it`);
    }
  }

  private recover(job: Job): void {
    const run = job.runner === this.options.runner.kind ? this.options.runner.reattach(this.launch(job), this.events(job.id)) : undefined;
    if (run === undefined) {
      this.options.log.warn({ job: job.id }, 'a job was running when the service stopped: marked failed');
      this.finish(job.id, 'failed', RESTART_ERROR);
      return;
    }
    this.options.log.info({ job: job.id }, 'following a job that was running when the service stopped');
    this.follow(job.id, run);
    if (job.stage === 'cancelling') void run.cancel();
  }

  private pump(): void {
    while (!this.closing && this.runs.size < this.options.maxRunning && this.queue.length > 0) this.start(this.queue.shift()!);
  }

  private start(id: string): void {
    const job = this.jobs.get(id)!;
    this.update({ ...job, status: 'running', stage: 'training', started_at: new Date().toISOString() });
    this.options.log.info({ job: id, runner: this.options.runner.kind }, 'fine-tune job started');
    this.follow(id, this.options.runner.start(this.launch(job), this.events(id)));
  }

  private follow(id: string, run: TrainerRun): void {
    this.runs.set(id, run);
    const settled = run.done
      .then((outcome) => this.afterTrainer(id, outcome))
      .catch((error: Error) => this.finish(id, 'failed', `internal error: ${error.message}`))
      .finally(() => {
        this.runs.delete(id);
        this.settling.delete(id);
        this.pump();
      });
    this.settling.set(id, settled);
  }

  private async afterTrainer(id: string, outcome: TrainerOutcome): Promise<void> {
    const job = this.jobs.get(id)!;
    const staged = stagingDir(this.options.modelsDir, id, job.spec.name);
    if (outcome.outcome === 'detached') return;
    if (outcome.outcome === 'succeeded') {
      try {
        this.update({ ...this.jobs.get(id)!, stage: 'validating' });
        await this.options.registrar.validate(staged, job.spec.name);
        this.update({ ...this.jobs.get(id)!, stage: 'registering' });
        await this.options.registrar.install(staged, job.spec.name);
        this.finish(id, 'succeeded');
        this.options.log.info({ job: id, model: job.spec.name }, 'fine-tune job succeeded: model registered');
        return;
      } catch (error) {
        outcome = { outcome: 'failed', error: `the exported package failed its checks: ${(error as Error).message}` };
      }
    }
    await rm(dirname(staged), { recursive: true, force: true });
    if (outcome.outcome === 'cancelled') this.finish(id, 'cancelled');
    else this.finish(id, 'failed', outcome.error);
  }

  private finish(id: string, status: 'succeeded' | 'failed' | 'cancelled', error: string | null = null): void {
    const job = this.jobs.get(id)!;
    if (status === 'failed') this.options.log.warn({ job: id, error }, 'fine-tune job failed');
    this.update({
      ...job,
      status,
      stage: null,
      finished_at: new Date().toISOString(),
      model_id: status === 'succeeded' ? job.spec.name : null,
      error,
    });
  }

  private update(job: Job): void {
    this.jobs.set(job.id, job);
    void this.options.store.save(job);
    for (const listener of this.listeners.get(job.id) ?? []) listener(job);
  }

  private launch(job: Job): TrainerLaunch {
    return { jobId: job.id, jobDir: this.options.store.jobDir(job.id), spec: job.spec, operatorKeys: this.options.operatorKeys ?? {} };
  }

  private events(id: string): TrainerEvents {
    return {
      progress: (record) => {
        void this.options.store.appendProgress(id, record);
        this.update(withProgress(this.jobs.get(id)!, record));
      },
      exported: (event) => this.options.log.info({ job: id, model: event.model_id, package: event.package }, 'the trainer exported its package'),
      message: (text) => void this.options.store.appendLog(id, text),
    };
  }
}
