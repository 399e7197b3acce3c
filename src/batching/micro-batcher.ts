// Per-model micro-batching. Requests carry `rows` (their number of images). When the runner is idle a request runs
// at once, alone: waiting for company would add latency at low load, and at high load batches form by themselves.
// While a batch runs, new requests wait in a bounded queue (the bound counts waiting rows, not the running batch) and
// the next batch takes, in arrival order, as many whole requests as fit in maxBatchRows. A request is never split
// across batches; one larger than maxBatchRows runs alone. The requests of a finished batch are settled one per turn
// of the event loop (see deliver()).
import { performance } from 'node:perf_hooks';
import { errors } from '../errors.js';

export interface MicroBatcherOptions<I, R> {
  /** Names the queue in errors (the model id). */
  name: string;
  /** Rows one batch may hold. */
  maxBatchRows: number;
  /** Rows that may wait; beyond it submit() rejects with SNOOPI_QUEUE_FULL. */
  maxQueueRows: number;
  /** How long a request may wait for its batch to start; Infinity for no deadline. */
  deadlineMs: number;
  /** Runs one batch; must return one result per input, in order. */
  runBatch: (inputs: I[]) => Promise<R[]>;
  /** Called after every batch (metrics). */
  onBatch?: (batch: BatchReport) => void;
}

export interface BatchReport {
  rows: number;
  requests: number;
  runMs: number;
  failed: boolean;
}

export interface SubmitOptions {
  rows: number;
  /** Aborting before the request's batch starts removes it; it is never computed. */
  signal?: AbortSignal;
  /** performance.now() when the request arrived; the deadline counts from here (default: now). */
  arrivedAt?: number;
}

export interface BatchedResult<R> {
  result: R;
  /** From submit() to the start of its batch. */
  queueMs: number;
  runMs: number;
  batchRows: number;
  batchRequests: number;
}

interface Waiting<I, R> {
  input: I;
  rows: number;
  arrivedAt: number;
  submittedAt: number;
  resolve: (value: BatchedResult<R>) => void;
  reject: (error: unknown) => void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
  timer: NodeJS.Timeout | undefined;
}

export class MicroBatcher<I, R> {
  private readonly options: MicroBatcherOptions<I, R>;
  private readonly queue: Waiting<I, R>[] = [];
  private waitingRows = 0;
  private running = false;
  /** Finished batches whose requests are not all settled yet. */
  private delivering = 0;
  private closed = false;
  private idleWaiters: (() => void)[] = [];

  constructor(options: MicroBatcherOptions<I, R>) {
    for (const key of ['maxBatchRows', 'maxQueueRows'] as const) {
      if (!Number.isInteger(options[key]) || options[key] < 1) {
        throw new RangeError(`${key} must be a positive integer, got ${options[key]}`);
      }
    }
    if (!(options.deadlineMs > 0)) throw new RangeError(`deadlineMs must be > 0 (Infinity for none), got ${options.deadlineMs}`);
    this.options = options;
  }

  /** Rows waiting for a batch (the running batch excluded). */
  get queuedRows(): number {
    return this.waitingRows;
  }

  get queuedRequests(): number {
    return this.queue.length;
  }

  get busy(): boolean {
    return this.running;
  }

  /**
   * Throws SNOOPI_QUEUE_FULL if `rows` more would be refused now, so that a caller can refuse a request before it
   * prepares the request's inputs (under a storm of refusals, that work is what the event loop would spend its
   * time on). submit() checks again: the queue may fill meanwhile.
   */
  checkRoom(rows: number): void {
    const full = this.queueFull(rows);
    if (full !== undefined) throw full;
  }

  submit(input: I, { rows, signal, arrivedAt = performance.now() }: SubmitOptions): Promise<BatchedResult<R>> {
    if (this.closed) return Promise.reject(new errors.SNOOPI_SHUTTING_DOWN());
    if (!Number.isInteger(rows) || rows < 1) return Promise.reject(new RangeError(`rows must be a positive integer, got ${rows}`));
    if (signal?.aborted) return Promise.reject(signal.reason);
    const full = this.queueFull(rows);
    if (full !== undefined) return Promise.reject(full);
    const submittedAt = performance.now();
    const waitedMs = submittedAt - arrivedAt;
    if (waitedMs > this.options.deadlineMs) return Promise.reject(this.deadlineError(waitedMs));

    return new Promise((resolve, reject) => {
      const waiting: Waiting<I, R> = { input, rows, arrivedAt, submittedAt, resolve, reject, signal, onAbort: undefined, timer: undefined };
      if (Number.isFinite(this.options.deadlineMs)) {
        waiting.timer = setTimeout(() => this.expire(waiting), this.options.deadlineMs - waitedMs).unref();
      }
      if (signal !== undefined) {
        waiting.onAbort = () => this.remove(waiting, signal.reason);
        signal.addEventListener('abort', waiting.onAbort, { once: true });
      }
      this.queue.push(waiting);
      this.waitingRows += rows;
      this.pump();
    });
  }

  /** Resolves once nothing waits, nothing runs and every finished request is settled. */
  idle(): Promise<void> {
    if (!this.running && this.delivering === 0 && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Refuses new requests, rejects waiting ones with `reason`, and resolves once the running batch is done and settled. */
  close(reason: unknown = new errors.SNOOPI_SHUTTING_DOWN()): Promise<void> {
    this.closed = true;
    for (const waiting of [...this.queue]) this.remove(waiting, reason);
    return this.idle();
  }

  private pump(): void {
    if (this.running) return;
    const now = performance.now();
    const batch: Waiting<I, R>[] = [];
    let rows = 0;
    while (this.queue.length > 0) {
      const head = this.queue[0]!;
      if (now - head.arrivedAt > this.options.deadlineMs) {
        this.expire(head);
        continue;
      }
      if (batch.length > 0 && rows + head.rows > this.options.maxBatchRows) break;
      this.take(head);
      batch.push(head);
      rows += head.rows;
    }
    if (batch.length === 0) {
      this.notifyIdle();
      return;
    }
    this.running = true;
    void this.run(batch, rows, now);
  }

  private async run(batch: Waiting<I, R>[], rows: number, startedAt: number): Promise<void> {
    let results: R[] | undefined;
    let failure: unknown;
    try {
      results = await this.options.runBatch(batch.map((waiting) => waiting.input));
      if (results.length !== batch.length) {
        throw new errors.SNOOPI_ENGINE_FAILED(`the batch runner returned ${results.length} results for ${batch.length} requests`);
      }
    } catch (error) {
      failure = error;
    }
    const runMs = performance.now() - startedAt;
    this.deliver(
      batch.map((waiting, index) => () => {
        if (failure !== undefined) waiting.reject(failure);
        else {
          waiting.resolve({
            result: results![index]!,
            queueMs: startedAt - waiting.submittedAt,
            runMs,
            batchRows: rows,
            batchRequests: batch.length,
          });
        }
      }),
    );
    this.running = false;
    this.options.onBatch?.({ rows, requests: batch.length, runMs, failed: failure !== undefined });
    this.pump();
  }

  /**
   * Settles a finished batch's requests one per turn of the event loop (the next batch starts meanwhile). Each
   * request's answer (image encoding, serialisation, socket write) then runs in a turn of its own, so probes and new
   * requests get in between the answers of a large batch instead of waiting behind all of them.
   */
  private deliver(settlers: (() => void)[]): void {
    this.delivering++;
    let next = 0;
    const settleNext = (): void => {
      settlers[next++]!();
      if (next < settlers.length) {
        setImmediate(settleNext);
        return;
      }
      this.delivering--;
      this.notifyIdle();
    };
    settleNext();
  }

  /** The refusal of `rows` more rows while a batch runs and the queue holds maxQueueRows already. */
  private queueFull(rows: number): Error | undefined {
    if (!this.running || this.waitingRows + rows <= this.options.maxQueueRows) return undefined;
    return new errors.SNOOPI_QUEUE_FULL(this.options.name, this.waitingRows);
  }

  private expire(waiting: Waiting<I, R>): void {
    this.remove(waiting, this.deadlineError(performance.now() - waiting.arrivedAt));
  }

  private deadlineError(waitedMs: number): Error {
    return new errors.SNOOPI_DEADLINE_EXCEEDED(Math.round(waitedMs), this.options.deadlineMs);
  }

  /** Takes a waiting request out of the queue (to run it or to drop it) and stops its timer and abort listener. */
  private take(waiting: Waiting<I, R>): boolean {
    const index = this.queue.indexOf(waiting);
    if (index === -1) return false;
    this.queue.splice(index, 1);
    this.waitingRows -= waiting.rows;
    if (waiting.timer !== undefined) clearTimeout(waiting.timer);
    if (waiting.onAbort !== undefined) waiting.signal!.removeEventListener('abort', waiting.onAbort);
    return true;
  }

  private remove(waiting: Waiting<I, R>, reason: unknown): void {
    if (!this.take(waiting)) return;
    waiting.reject(reason);
    this.notifyIdle();
  }

  private notifyIdle(): void {
    if (this.running || this.delivering > 0 || this.queue.length > 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const resolve of waiters) resolve();
  }
}
