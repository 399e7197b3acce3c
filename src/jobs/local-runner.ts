// The local runner: trainer.distill as a child process of the service, started in the job's folder with an argv
// array (no shell). Its job keys go in a JSON file the runner writes there; stdout carries the progress lines and
// stderr the human messages. Cancel is SIGTERM (the trainer saves a resumable checkpoint and exits 143), then
// SIGKILL after a grace period.
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { JobRunner, TrainerEvents, TrainerLaunch, TrainerOutcome, TrainerRun } from './job-runner.js';
import { stagingDir, trainerConfig } from './job-spec.js';
import { MessageTail, exitDescription, parseTrainerLine } from './trainer-output.js';

export interface LocalRunnerOptions {
  /** The trainer's program and first arguments, e.g. ['/usr/bin/python3', '-m', 'trainer.distill']. */
  command: readonly string[];
  /** Registry root: the package is exported to its staging folder (job-spec.ts). */
  modelsDir: string;
  /** Teacher, CLIP and VAE checkpoints. */
  baseModelsDir: string;
  /** SIGTERM, then SIGKILL after this many ms. */
  cancelGraceMs: number;
  /** Added to the service's environment (PYTHONPATH, so that `-m trainer.distill` resolves from the job folder). */
  env?: Readonly<Record<string, string>>;
}

/** The trainer config file in the job folder. */
export const TRAINER_CONFIG_FILE = 'trainer-config.json';

const SHUTDOWN_ERROR = 'the service shut down while the job was running; its checkpoint is in the job folder (run/)';

export class LocalRunner implements JobRunner {
  readonly kind = 'local' as const;
  private readonly running = new Set<LocalRun>();

  constructor(private readonly options: LocalRunnerOptions) {}

  start(launch: TrainerLaunch, events: TrainerEvents): TrainerRun {
    const run = new LocalRun(this.options, launch, events);
    this.running.add(run);
    void run.done.finally(() => this.running.delete(run));
    return run;
  }

  reattach(): undefined {
    return undefined;
  }

  async close(): Promise<void> {
    await Promise.all([...this.running].map((run) => run.stop(SHUTDOWN_ERROR)));
  }
}

class LocalRun implements TrainerRun {
  readonly done: Promise<TrainerOutcome>;
  private child: ChildProcess | undefined;
  /** Set by cancel() or close(): how the run ends whatever the exit code. */
  private stopping: TrainerOutcome | undefined;
  private exited = false;

  constructor(
    private readonly options: LocalRunnerOptions,
    launch: TrainerLaunch,
    events: TrainerEvents,
  ) {
    this.done = this.run(launch, events).catch((error: Error) => ({ outcome: 'failed', error: `cannot start the trainer: ${error.message}` }));
  }

  private async run(launch: TrainerLaunch, events: TrainerEvents): Promise<TrainerOutcome> {
    const { spec, jobDir } = launch;
    const configPath = join(jobDir, TRAINER_CONFIG_FILE);
    const config = trainerConfig(spec, { baseModelsDir: this.options.baseModelsDir, runDir: join(jobDir, 'run') }, launch.operatorKeys);
    await writeFile(configPath, `${JSON.stringify(config, null, 2)}\n`);
    if (this.stopping !== undefined) return this.stopping;

    const [program, ...programArgs] = this.options.command;
    const out = stagingDir(this.options.modelsDir, launch.jobId, spec.name);
    const child = spawn(program!, [...programArgs, '--config', configPath, '--out', out], {
      cwd: jobDir,
      env: { ...process.env, PYTHONUNBUFFERED: '1', ...this.options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    const tail = new MessageTail();
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const parsed = parseTrainerLine(line);
      if (parsed.kind === 'progress') events.progress(parsed.record);
      else if (parsed.kind === 'exported') events.exported(parsed.event);
      else events.message(parsed.text);
    });
    createInterface({ input: child.stderr! }).on('line', (line) => {
      tail.push(line);
      events.message(line);
    });
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (exitCode, exitSignal) => resolve([exitCode, exitSignal]));
    });
    this.exited = true;
    if (this.stopping !== undefined) return this.stopping;
    if (code === 0) return { outcome: 'succeeded' };
    return { outcome: 'failed', error: exitDescription(code, signal, tail.last()) };
  }

  cancel(): Promise<void> {
    return this.stop();
  }

  /** SIGTERM, then SIGKILL once the grace period is over; resolves when the child has exited. */
  async stop(shutdownError?: string): Promise<void> {
    this.stopping ??= shutdownError === undefined ? { outcome: 'cancelled' } : { outcome: 'failed', error: shutdownError };
    const child = this.child;
    if (child !== undefined && !this.exited) {
      child.kill('SIGTERM');
      const kill = setTimeout(() => child.kill('SIGKILL'), this.options.cancelGraceMs).unref();
      void this.done.finally(() => clearTimeout(kill));
    }
    await this.done;
  }
}
