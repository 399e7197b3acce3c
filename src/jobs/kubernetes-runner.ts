// The kubernetes runner: each job becomes a batch/v1 Job made from a manifest template (k8s/trainer-job.yaml),
// created through the Kubernetes API (@kubernetes/client-node, in-cluster or from a kubeconfig). The runner polls the
// Job's status, follows its pod's log (progress lines and messages, as the local trainer prints them) and deletes
// the Job on cancel. The trainer gets the job's keys as --key=value arguments (no shell, no ConfigMap), and exports
// its package to the staging folder of the models volume that the service shares with it.
//
// Template contract: a batch/v1 Job whose pod has a container named "trainer" that runs `python -m trainer.distill`
// in the repository root of the image, with the service's models volume mounted at models/ there (base/ inside).
// The runner sets the Job's name and labels and appends its arguments to the container's own.
import { readFile } from 'node:fs/promises';
import { Writable } from 'node:stream';
import { BatchV1Api, CoreV1Api, Log, loadYaml, type KubeConfig, type V1Job, type V1Pod } from '@kubernetes/client-node';
import type { JobRunner, TrainerEvents, TrainerLaunch, TrainerOutcome, TrainerRun } from './job-runner.js';
import { stagingDir, trainerConfig } from './job-spec.js';
import { MessageTail, parseTrainerLine } from './trainer-output.js';

export const TRAINER_CONTAINER = 'trainer';
export const JOB_ID_LABEL = 'snoopi.dev/job-id';
export const MODEL_ID_ANNOTATION = 'snoopi.dev/model-id';
/** The models volume as the trainer pod sees it, relative to its working directory. */
const POD_MODELS_DIR = 'models';

export interface KubernetesRunnerOptions {
  kubeConfig: KubeConfig;
  namespace: string;
  /** The manifest every job's Job is made from (loadJobTemplate). */
  template: V1Job;
  /** Between two reads of a Job's status (default 5000). */
  pollMs?: number;
  /** Consecutive failed API calls after which a run is given up as failed (default 5). */
  maxApiFailures?: number;
}

export const kubernetesJobName = (jobId: string): string => `snoopi-${jobId}`;

/** Reads and checks the Job template; the error names the file and what is wrong. */
export async function loadJobTemplate(path: string): Promise<V1Job> {
  const template = loadYaml<V1Job>(await readFile(path, 'utf8'));
  const problem = templateProblem(template);
  if (problem !== undefined) throw new Error(`${path}: ${problem}`);
  return template;
}

function templateProblem(template: V1Job | undefined): string | undefined {
  if (template?.apiVersion !== 'batch/v1' || template.kind !== 'Job') return 'must be one batch/v1 Job';
  const containers = template.spec?.template?.spec?.containers ?? [];
  if (!containers.some((container) => container.name === TRAINER_CONTAINER)) return `its pod needs a container named ${TRAINER_CONTAINER}`;
  return undefined;
}

/** The trainer's arguments after the template's: --out, then every job key as --key=value (JSON unless a string). */
export function trainerArguments(launch: TrainerLaunch): string[] {
  const config = trainerConfig(launch.spec, {}, launch.operatorKeys);
  const keys = Object.entries(config).map(([key, value]) => `--${key}=${typeof value === 'string' ? value : JSON.stringify(value)}`);
  return ['--out', stagingDir(POD_MODELS_DIR, launch.jobId, launch.spec.name), ...keys];
}

/** The Job of one launch: the template with its name, labels and the trainer's arguments set. */
export function renderJob(template: V1Job, launch: TrainerLaunch): V1Job {
  const problem = templateProblem(template);
  if (problem !== undefined) throw new Error(`the Job template ${problem}`);
  const job = structuredClone(template);
  const labels = { 'app.kubernetes.io/name': 'snoopi-trainer', [JOB_ID_LABEL]: launch.jobId };
  const { generateName: _unused, ...metadata } = job.metadata ?? {};
  job.metadata = {
    ...metadata,
    name: kubernetesJobName(launch.jobId),
    labels: { ...metadata.labels, ...labels },
    annotations: { ...metadata.annotations, [MODEL_ID_ANNOTATION]: launch.spec.name },
  };
  const pod = job.spec!.template;
  pod.metadata = { ...pod.metadata, labels: { ...pod.metadata?.labels, ...labels } };
  const container = pod.spec!.containers.find((candidate) => candidate.name === TRAINER_CONTAINER)!;
  container.args = [...(container.args ?? []), ...trainerArguments(launch)];
  return job;
}

/** The namespace setting, else the kubeconfig context's (in a cluster: the pod's own), else default. */
export function resolveNamespace(kubeConfig: KubeConfig, setting: string | undefined): string {
  return setting ?? kubeConfig.getContextObject(kubeConfig.getCurrentContext())?.namespace ?? 'default';
}

interface RunnerContext extends Required<Omit<KubernetesRunnerOptions, 'kubeConfig'>> {
  batch: BatchV1Api;
  core: CoreV1Api;
  logs: Log;
}

export class KubernetesRunner implements JobRunner {
  readonly kind = 'kubernetes' as const;
  private readonly context: RunnerContext;
  private readonly runs = new Set<KubernetesRun>();

  constructor(options: KubernetesRunnerOptions) {
    const problem = templateProblem(options.template);
    if (problem !== undefined) throw new Error(`the Job template ${problem}`);
    this.context = {
      namespace: options.namespace,
      template: options.template,
      pollMs: options.pollMs ?? 5000,
      maxApiFailures: options.maxApiFailures ?? 5,
      batch: options.kubeConfig.makeApiClient(BatchV1Api),
      core: options.kubeConfig.makeApiClient(CoreV1Api),
      logs: new Log(options.kubeConfig),
    };
  }

  start(launch: TrainerLaunch, events: TrainerEvents): TrainerRun {
    return this.track(new KubernetesRun(this.context, launch, events, true));
  }

  reattach(launch: TrainerLaunch, events: TrainerEvents): TrainerRun {
    return this.track(new KubernetesRun(this.context, launch, events, false));
  }

  async close(): Promise<void> {
    for (const run of this.runs) run.detach();
    await Promise.all([...this.runs].map((run) => run.done));
  }

  private track(run: KubernetesRun): KubernetesRun {
    this.runs.add(run);
    void run.done.finally(() => this.runs.delete(run));
    return run;
  }
}

/** An HTTP error of the Kubernetes API as one line: "HTTP 403: jobs.batch is forbidden: ...". */
function describeApiError(error: unknown): string {
  const { code, body, message } = error as { code?: number; body?: unknown; message?: string };
  if (typeof code !== 'number') return message ?? String(error);
  let detail = typeof body === 'string' ? body : '';
  try {
    detail = (JSON.parse(detail) as { message?: string }).message ?? detail;
  } catch {
    // a body that is not JSON is shown as it is
  }
  return `HTTP ${code}${detail ? `: ${detail}` : ''}`;
}

type JobState = { state: 'running' } | { state: 'succeeded' } | { state: 'failed'; reason: string };

function jobState(job: V1Job): JobState {
  const conditions = job.status?.conditions ?? [];
  const failed = conditions.find((condition) => condition.type === 'Failed' && condition.status === 'True');
  if (failed !== undefined) return { state: 'failed', reason: [failed.reason, failed.message].filter(Boolean).join(': ') || 'Failed' };
  if (conditions.some((condition) => condition.type === 'Complete' && condition.status === 'True')) return { state: 'succeeded' };
  return { state: 'running' };
}

const COMPLETION_INDEX = 'batch.kubernetes.io/job-completion-index';
const completionIndex = (pod: V1Pod): string | undefined => pod.metadata?.labels?.[COMPLETION_INDEX] ?? pod.metadata?.annotations?.[COMPLETION_INDEX];

const TERMINAL_PHASES = new Set(['Succeeded', 'Failed']);
const STARTED_PHASES = new Set(['Running', 'Succeeded', 'Failed']);

/** "2024-05-01T12:00:00.1234Z" -> "2024-05-01T12:00:00.123400000": sortable as text (the API trims trailing zeros). */
function timeKey(timestamp: string): string {
  const match = /^([^.Z]+)(?:\.(\d+))?Z$/.exec(timestamp);
  return match === null ? timestamp : `${match[1]}.${(match[2] ?? '').padEnd(9, '0')}`;
}

/** A Writable that calls onLine for every complete line (and the unterminated rest at the end). */
class LineSplitter extends Writable {
  private rest = '';

  constructor(private readonly onLine: (line: string) => void) {
    super({ decodeStrings: true });
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    const lines = (this.rest + chunk.toString('utf8')).split('\n');
    this.rest = lines.pop()!;
    for (const line of lines) this.onLine(line);
    callback();
  }

  override _final(callback: (error?: Error | null) => void): void {
    if (this.rest !== '') this.onLine(this.rest);
    callback();
  }
}

interface LogFollow {
  pod: string;
  /** The pod had terminated when following started: once the stream ends, its log has been read to the end. */
  terminal: boolean;
  ended: Promise<void>;
  abort(): void;
}

class KubernetesRun implements TrainerRun {
  readonly done: Promise<TrainerOutcome>;
  private resolve!: (outcome: TrainerOutcome) => void;
  private ended = false;
  private timer: NodeJS.Timeout | undefined;
  private follow: LogFollow | undefined;
  /** Pods whose log has been read to its end. */
  private readonly readPods = new Set<string>();
  private lastStep = -1;
  private lastTimeKey = '';
  private lastTimestamp: string | undefined;
  private apiFailures = 0;
  private readonly tail = new MessageTail();
  private readonly name: string;

  constructor(
    private readonly context: RunnerContext,
    private readonly launch: TrainerLaunch,
    private readonly events: TrainerEvents,
    create: boolean,
  ) {
    this.name = kubernetesJobName(launch.jobId);
    this.done = new Promise((resolve) => {
      this.resolve = resolve;
    });
    void this.begin(create);
  }

  async cancel(): Promise<void> {
    if (this.ended) return;
    this.end({ outcome: 'cancelled' });
    // Deleting the Job deletes its pod: the trainer gets SIGTERM and saves its checkpoint in the pod's grace period.
    await this.context.batch
      .deleteNamespacedJob({ name: this.name, namespace: this.context.namespace, propagationPolicy: 'Background' })
      .catch((error: unknown) => {
        if ((error as { code?: number }).code !== 404) this.events.message(`deleting the Kubernetes Job ${this.name} failed: ${describeApiError(error)}`);
      });
  }

  detach(): void {
    this.end({ outcome: 'detached' });
  }

  private async begin(create: boolean): Promise<void> {
    if (create) {
      try {
        await this.context.batch.createNamespacedJob({ namespace: this.context.namespace, body: renderJob(this.context.template, this.launch) });
      } catch (error) {
        this.end({ outcome: 'failed', error: `cannot create the Kubernetes Job ${this.name}: ${describeApiError(error)}` });
        return;
      }
    }
    this.schedule(0);
  }

  private schedule(delayMs: number): void {
    if (this.ended) return;
    this.timer = setTimeout(() => void this.poll(), delayMs).unref();
  }

  private async poll(): Promise<void> {
    try {
      const job = await this.context.batch.readNamespacedJobStatus({ name: this.name, namespace: this.context.namespace });
      this.apiFailures = 0;
      const state = jobState(job);
      if (state.state === 'running') {
        await this.followLog();
      } else {
        await this.readRemainingLogs();
        if (state.state === 'succeeded') this.end({ outcome: 'succeeded' });
        else this.end({ outcome: 'failed', error: `Kubernetes Job ${this.name} failed (${state.reason})${this.tail.last() ? `: ${this.tail.last()}` : ''}` });
      }
    } catch (error) {
      if ((error as { code?: number }).code === 404) {
        this.end({ outcome: 'failed', error: `the Kubernetes Job ${this.name} is gone (deleted outside the service)` });
      } else if (++this.apiFailures >= this.context.maxApiFailures) {
        this.end({ outcome: 'failed', error: `lost the Kubernetes API after ${this.apiFailures} tries: ${describeApiError(error)}` });
      }
    }
    this.schedule(this.context.pollMs);
  }

  /** Starts following the trainer's pod, unless following it already: the newest started pod of rank 0 (only rank 0
   * prints progress; in an Indexed Job it is the pod of completion index 0) whose log has not been read to its end.
   * After the Job has ended, only a pod that has terminated too: its log ends. */
  private async followLog(terminatedOnly = false): Promise<void> {
    if (this.follow !== undefined || this.ended) return;
    const pods = await this.context.core.listNamespacedPod({ namespace: this.context.namespace, labelSelector: `${JOB_ID_LABEL}=${this.launch.jobId}` });
    // The run may have ended, or another poll started following, while the list was on its way.
    if (this.follow !== undefined || this.ended) return;
    const phases = terminatedOnly ? TERMINAL_PHASES : STARTED_PHASES;
    const pod = pods.items
      .filter((candidate: V1Pod) => (completionIndex(candidate) ?? '0') === '0')
      .filter((candidate: V1Pod) => phases.has(candidate.status?.phase ?? '') && !this.readPods.has(candidate.metadata?.name ?? ''))
      .sort((a: V1Pod, b: V1Pod) => String(b.metadata?.creationTimestamp ?? '').localeCompare(String(a.metadata?.creationTimestamp ?? '')))[0];
    const podName = pod?.metadata?.name;
    if (podName === undefined) return;
    const terminal = TERMINAL_PHASES.has(pod!.status!.phase!);
    let finish = () => {};
    const ended = new Promise<void>((resolve) => {
      finish = resolve;
    });
    const sink = new LineSplitter((line) => this.onLogLine(line));
    sink.once('finish', () => finish());
    sink.once('close', () => finish());
    let controller: AbortController | undefined;
    let aborted = false;
    const follow: LogFollow = {
      pod: podName,
      terminal,
      ended,
      abort: () => {
        aborted = true;
        controller?.abort();
        finish();
      },
    };
    this.follow = follow;
    void ended.then(() => {
      if (follow.terminal) this.readPods.add(podName);
      if (this.follow === follow) this.follow = undefined;
    });
    // Not awaited: polling the Job's status must not wait on the log connection.
    this.context.logs
      .log(this.context.namespace, podName, TRAINER_CONTAINER, sink, {
        follow: true,
        timestamps: true,
        ...(this.lastTimestamp === undefined ? {} : { sinceTime: this.lastTimestamp }),
      })
      .then(
        (opened) => {
          controller = opened;
          if (aborted) opened.abort();
        },
        // The container may not be ready for its log yet: the next poll tries again.
        () => follow.abort(),
      );
  }

  /** After the Job ended: reads what its pods printed since the last line seen (at most a few pods, a few seconds). */
  private async readRemainingLogs(): Promise<void> {
    for (let attempt = 0; attempt < 3; attempt++) {
      await this.followLog(true).catch(() => {});
      const follow = this.follow;
      if (follow === undefined) return;
      const timeout = new Promise<void>((resolve) => setTimeout(resolve, 10_000).unref());
      await Promise.race([follow.ended, timeout]);
      if (this.follow === follow) follow.abort();
    }
  }

  private onLogLine(line: string): void {
    if (this.ended) return;
    const space = line.indexOf(' ');
    const timestamp = space > 0 ? line.slice(0, space) : '';
    const key = timeKey(timestamp);
    // A reconnect with sinceTime repeats the lines from that time on: skip those already seen.
    if (this.lastTimeKey !== '' && key <= this.lastTimeKey) return;
    this.lastTimeKey = key;
    this.lastTimestamp = timestamp;
    const parsed = parseTrainerLine(line.slice(space + 1));
    if (parsed.kind === 'progress') {
      if (parsed.record.step <= this.lastStep) return;
      this.lastStep = parsed.record.step;
      this.events.progress(parsed.record);
    } else if (parsed.kind === 'exported') {
      this.events.exported(parsed.event);
    } else {
      this.tail.push(parsed.text);
      this.events.message(parsed.text);
    }
  }

  private end(outcome: TrainerOutcome): void {
    if (this.ended) return;
    this.ended = true;
    clearTimeout(this.timer);
    this.follow?.abort();
    this.resolve(outcome);
  }
}
