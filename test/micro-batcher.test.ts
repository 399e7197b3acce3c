import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { MicroBatcher, type BatchReport, type MicroBatcherOptions } from '../src/batching/micro-batcher.js';

/** A runner whose batches finish when the test says so; records every batch's inputs. */
function gatedRunner() {
  const batches: string[][] = [];
  const gates: (() => void)[] = [];
  const runBatch = async (inputs: string[]) => {
    batches.push(inputs);
    await new Promise<void>((resolve) => gates.push(resolve));
    return inputs.map((input) => `result of ${input}`);
  };
  /** Waits until `count` batches have started, then lets the oldest unfinished one finish. */
  const finishNext = async () => {
    while (gates.length === 0) await sleep(1);
    gates.shift()!();
  };
  const waitForBatches = async (count: number) => {
    while (batches.length < count) await sleep(1);
  };
  return { batches, runBatch, finishNext, waitForBatches };
}

function batcher(runBatch: (inputs: string[]) => Promise<string[]>, options: Partial<MicroBatcherOptions<string, string>> = {}) {
  const reports: BatchReport[] = [];
  const created = new MicroBatcher<string, string>({
    name: 'model-x',
    maxBatchRows: 8,
    maxQueueRows: 16,
    deadlineMs: Infinity,
    runBatch,
    onBatch: (report) => reports.push(report),
    ...options,
  });
  return { batcher: created, reports };
}

test('an idle batcher runs a request at once, alone', async () => {
  const runner = gatedRunner();
  const { batcher: queue, reports } = batcher(runner.runBatch);
  const done = queue.submit('a', { rows: 3 });
  await runner.waitForBatches(1);
  await runner.finishNext();
  const result = await done;
  assert.deepEqual(runner.batches, [['a']]);
  assert.equal(result.result, 'result of a');
  assert.equal(result.batchRows, 3);
  assert.equal(result.batchRequests, 1);
  assert.deepEqual(reports.map(({ rows, requests, failed }) => ({ rows, requests, failed })), [{ rows: 3, requests: 1, failed: false }]);
});

test('of requests submitted together the first runs at once, the others share the next batch', async () => {
  const runner = gatedRunner();
  const { batcher: queue } = batcher(runner.runBatch);
  const done = Promise.all(['a', 'b', 'c'].map((input) => queue.submit(input, { rows: 1 })));
  await runner.finishNext();
  await runner.finishNext();
  await done;
  assert.deepEqual(runner.batches, [['a'], ['b', 'c']]);
});

test('while a batch runs, requests queue; the next batch takes whole requests in order up to maxBatchRows', async () => {
  const runner = gatedRunner();
  const { batcher: queue, reports } = batcher(runner.runBatch);
  const first = queue.submit('first', { rows: 1 });
  await runner.waitForBatches(1);
  const rows: Record<string, number> = { b: 3, c: 4, d: 2, e: 1, f: 5 };
  const waiting = Object.entries(rows).map(([input, count]) => queue.submit(input, { rows: count }));
  assert.equal(queue.queuedRows, 15);
  assert.equal(queue.queuedRequests, 5);
  assert.equal(queue.busy, true);
  for (let i = 0; i < 3; i++) await runner.finishNext();
  const results = await Promise.all([first, ...waiting]);
  // b+c = 7 rows; d would make 9 > 8, so it starts the next batch: d+e = 3, f would make 8: fits.
  assert.deepEqual(runner.batches, [['first'], ['b', 'c'], ['d', 'e', 'f']]);
  assert.deepEqual(results.map((result) => [result.result, result.batchRows, result.batchRequests]), [
    ['result of first', 1, 1],
    ['result of b', 7, 2],
    ['result of c', 7, 2],
    ['result of d', 8, 3],
    ['result of e', 8, 3],
    ['result of f', 8, 3],
  ]);
  assert.deepEqual(reports.map((report) => report.rows), [1, 7, 8]);
  assert.equal(queue.queuedRows, 0);
  assert.equal(queue.busy, false);
});

test('a finished batch settles its requests in order, one per turn of the event loop, and idle() waits for the last', async () => {
  const runner = gatedRunner();
  const { batcher: queue } = batcher(runner.runBatch);
  const first = queue.submit('a', { rows: 1 });
  // Counts turns of the event loop: one immediate per turn, each queueing the next.
  let turns = 0;
  let ticking = true;
  const tick = () => {
    turns++;
    if (ticking) setImmediate(tick);
  };
  setImmediate(tick);
  let idle = false;
  const settled = ['b', 'c', 'd'].map((input) => queue.submit(input, { rows: 1 }).then(() => ({ turn: turns, idle })));
  await runner.finishNext();
  await first;
  const idled = queue.idle().then(() => {
    idle = true;
  });
  await runner.finishNext();
  const [b, c, d] = await Promise.all(settled);
  ticking = false;
  assert.ok(b!.turn < c!.turn && c!.turn < d!.turn, `settled in turns ${b!.turn}, ${c!.turn}, ${d!.turn}`);
  assert.deepEqual([b!.idle, c!.idle, d!.idle], [false, false, false]);
  await idled;
  assert.deepEqual(runner.batches, [['a'], ['b', 'c', 'd']]);
});

test('a request with more rows than maxBatchRows runs alone and is not split', async () => {
  const runner = gatedRunner();
  const { batcher: queue } = batcher(runner.runBatch, { maxBatchRows: 4 });
  const blocker = queue.submit('blocker', { rows: 1 });
  await runner.waitForBatches(1);
  const big = queue.submit('big', { rows: 6 });
  const small = queue.submit('small', { rows: 1 });
  for (let i = 0; i < 3; i++) await runner.finishNext();
  await Promise.all([blocker, big, small]);
  assert.deepEqual(runner.batches, [['blocker'], ['big'], ['small']]);
});

test('a full queue refuses with SNOOPI_QUEUE_FULL; an idle batcher still takes a request larger than the bound', async () => {
  const runner = gatedRunner();
  const { batcher: queue } = batcher(runner.runBatch, { maxQueueRows: 4 });
  const running = queue.submit('running', { rows: 8 });
  await runner.waitForBatches(1);
  const queued = queue.submit('queued', { rows: 3 });
  await assert.rejects(queue.submit('over', { rows: 2 }), {
    code: 'SNOOPI_QUEUE_FULL',
    statusCode: 429,
    message: 'The queue for model model-x is full (3 images waiting); retry later',
  });
  const fits = queue.submit('fits', { rows: 1 });
  await runner.finishNext();
  await runner.finishNext();
  await Promise.all([running, queued, fits]);
  assert.deepEqual(runner.batches, [['running'], ['queued', 'fits']]);
});

test('checkRoom refuses exactly what submit would refuse now, so a caller can refuse before preparing a request', async () => {
  const runner = gatedRunner();
  const { batcher: queue } = batcher(runner.runBatch, { maxQueueRows: 4 });
  assert.doesNotThrow(() => queue.checkRoom(100), 'an idle batcher takes any request');
  const running = queue.submit('running', { rows: 8 });
  await runner.waitForBatches(1);
  const queued = queue.submit('queued', { rows: 3 });
  assert.throws(() => queue.checkRoom(2), {
    code: 'SNOOPI_QUEUE_FULL',
    statusCode: 429,
    message: 'The queue for model model-x is full (3 images waiting); retry later',
  });
  assert.doesNotThrow(() => queue.checkRoom(1));
  await runner.finishNext();
  await runner.finishNext();
  await Promise.all([running, queued]);
  assert.deepEqual(runner.batches, [['running'], ['queued']]);
});

test('a request that cannot start before its deadline fails with SNOOPI_DEADLINE_EXCEEDED and is never run', async (t) => {
  // Deadline timers are unref()'d: they do not keep a process alive. Here nothing else would (a server's sockets do).
  const keepAlive = setInterval(() => {}, 1000);
  t.after(() => clearInterval(keepAlive));
  const runner = gatedRunner();
  const { batcher: queue } = batcher(runner.runBatch, { deadlineMs: 30 });
  const running = queue.submit('running', { rows: 1 });
  await runner.waitForBatches(1);
  const late = queue.submit('late', { rows: 1 });
  const lateError = await late.then(
    () => undefined,
    (error: Error & { code: string; statusCode: number }) => error,
  );
  assert.equal(lateError?.code, 'SNOOPI_DEADLINE_EXCEEDED');
  assert.equal(lateError?.statusCode, 504);
  assert.match(lateError!.message, /^The request waited \d+ ms, past its deadline of 30 ms$/);
  assert.equal(queue.queuedRows, 0);
  await runner.finishNext();
  await running;
  assert.deepEqual(runner.batches, [['running']]);
});

test('the deadline counts from arrivedAt: a request that already waited too long is refused at once', async () => {
  const runner = gatedRunner();
  const { batcher: queue } = batcher(runner.runBatch, { deadlineMs: 50 });
  await assert.rejects(queue.submit('old', { rows: 1, arrivedAt: performance.now() - 60 }), { code: 'SNOOPI_DEADLINE_EXCEEDED' });
  assert.deepEqual(runner.batches, []);
});

test('a request aborted while queued is removed and never computed; an abort after its batch started changes nothing', async () => {
  const runner = gatedRunner();
  const { batcher: queue } = batcher(runner.runBatch);
  const runningAbort = new AbortController();
  const running = queue.submit('running', { rows: 1, signal: runningAbort.signal });
  await runner.waitForBatches(1);
  runningAbort.abort();
  const queuedAbort = new AbortController();
  const dropped = queue.submit('dropped', { rows: 2, signal: queuedAbort.signal });
  const kept = queue.submit('kept', { rows: 1 });
  assert.equal(queue.queuedRows, 3);
  queuedAbort.abort(new Error('client went away'));
  await assert.rejects(dropped, /client went away/);
  assert.equal(queue.queuedRows, 1);
  await runner.finishNext();
  await runner.finishNext();
  assert.equal((await running).result, 'result of running');
  assert.equal((await kept).result, 'result of kept');
  assert.deepEqual(runner.batches, [['running'], ['kept']]);
});

test('an already aborted signal is refused without queueing', async () => {
  const runner = gatedRunner();
  const { batcher: queue } = batcher(runner.runBatch);
  await assert.rejects(queue.submit('a', { rows: 1, signal: AbortSignal.abort() }), { name: 'AbortError' });
  assert.equal(queue.queuedRequests, 0);
});

test('a failing batch rejects its requests only; the next batch runs', async () => {
  let calls = 0;
  const { batcher: queue, reports } = batcher(async (inputs) => {
    calls++;
    if (calls === 1) {
      await sleep(20);
      throw new Error('boom');
    }
    return inputs.map((input) => `ok ${input}`);
  });
  const failing = queue.submit('a', { rows: 1 });
  await sleep(5);
  const next = queue.submit('b', { rows: 1 });
  await assert.rejects(failing, /boom/);
  assert.equal((await next).result, 'ok b');
  assert.deepEqual(reports.map((report) => report.failed), [true, false]);
});

test('a runner that returns the wrong number of results fails the batch with SNOOPI_ENGINE_FAILED', async () => {
  const { batcher: queue } = batcher(async (inputs) => [...inputs, 'one too many']);
  await assert.rejects(queue.submit('a', { rows: 1 }), {
    code: 'SNOOPI_ENGINE_FAILED',
    message: 'Inference failed: the batch runner returned 2 results for 1 requests',
  });
});

test('close rejects waiting requests with SNOOPI_SHUTTING_DOWN, lets the running batch finish, refuses new ones', async () => {
  const runner = gatedRunner();
  const { batcher: queue } = batcher(runner.runBatch);
  const running = queue.submit('running', { rows: 1 });
  await runner.waitForBatches(1);
  const waiting = queue.submit('waiting', { rows: 1 });
  const closed = queue.close();
  await assert.rejects(waiting, { code: 'SNOOPI_SHUTTING_DOWN', statusCode: 503 });
  await assert.rejects(queue.submit('late', { rows: 1 }), { code: 'SNOOPI_SHUTTING_DOWN' });
  await runner.finishNext();
  await closed;
  assert.equal((await running).result, 'result of running');
  assert.deepEqual(runner.batches, [['running']]);
});

test('idle() resolves once the queue is empty and nothing runs', async () => {
  const runner = gatedRunner();
  const { batcher: queue } = batcher(runner.runBatch);
  await queue.idle();
  const a = queue.submit('a', { rows: 1 });
  await runner.waitForBatches(1);
  const b = queue.submit('b', { rows: 1 });
  let idle = false;
  const idled = queue.idle().then(() => {
    idle = true;
  });
  await runner.finishNext();
  await a;
  assert.equal(idle, false);
  await runner.finishNext();
  await Promise.all([b, idled]);
  assert.equal(idle, true);
});

test('invalid settings and rows are refused', async () => {
  const runBatch = async (inputs: string[]) => inputs;
  assert.throws(() => batcher(runBatch, { maxBatchRows: 0 }), /maxBatchRows must be a positive integer, got 0/);
  assert.throws(() => batcher(runBatch, { maxQueueRows: 1.5 }), /maxQueueRows must be a positive integer, got 1.5/);
  assert.throws(() => batcher(runBatch, { deadlineMs: 0 }), /deadlineMs must be > 0/);
  await assert.rejects(batcher(runBatch).batcher.submit('a', { rows: 0 }), /rows must be a positive integer, got 0/);
});
