// Real sockets: a client that disconnects is dropped from its batch, overload is refused with 429 while /healthz
// stays fast, and a graceful shutdown finishes the requests in flight.
import assert from 'node:assert/strict';
import { Agent, get as httpGet } from 'node:http';
import { connect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { BatchEvent } from '../src/generation/generation-service.js';
import { build } from './helpers/build.js';

interface Answer {
  status: number;
  headers: Headers;
  body: any;
}

async function post(url: string, payload: object): Promise<Answer> {
  const response = await fetch(`${url}/generate`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(payload) });
  return { status: response.status, headers: response.headers, body: await response.json() };
}

async function get(url: string, path: string): Promise<Answer> {
  const response = await fetch(`${url}${path}`);
  return { status: response.status, headers: response.headers, body: await response.json() };
}

/** Opens a raw connection and writes a POST /generate whose body is cut after `sentBytes` (all of it by default). */
function rawPost(url: string, payload: object, sentBytes?: number): { socket: Socket; rest: () => void; answer: Promise<string> } {
  const { hostname, port } = new URL(url);
  const body = Buffer.from(JSON.stringify(payload));
  const socket = connect(Number(port), hostname);
  const head = `POST /generate HTTP/1.1\r\nHost: ${hostname}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`;
  const cut = sentBytes ?? body.length;
  socket.write(Buffer.concat([Buffer.from(head), body.subarray(0, cut)]));
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  const answer = new Promise<string>((resolve) => socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1'))));
  return { socket, rest: () => socket.write(body.subarray(cut)), answer };
}

async function until(condition: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

test('a client that disconnects while queued is dropped from the batch and never computed', async (t) => {
  // No deadline: 40 queued batches on busy shared cores may take longer than the default 10 s.
  const { app, service, url } = await build(t, { listen: true, settings: { maxBatch: 8, maxQueueRows: 100_000, deadlineMs: 3_600_000 } });
  const batches: BatchEvent[] = [];
  service.onBatch((batch) => batches.push(batch));
  const model = service.stats().activeModel!;
  const queue = () => service.stats().models.find((m) => m.id === model)!;
  const submitted = () => batches.length + queue().queuedRequests + (queue().busy ? 1 : 0);
  const victimPrompt = { prompt: 'the victim: a purple square', seed: 1, num_images: 1 };
  await post(url, victimPrompt); // caches the victim's embeddings, so it reaches the queue quickly
  batches.length = 0;

  // Fillers of 8 images fill a batch each; topped up so that the queue stays long however fast the model is. The
  // 1-image victim joins the end of the queue, where it can only run alone: a batch of 1 row would be the victim's.
  const fillers: Promise<Answer>[] = [];
  let victimSent = false;
  const topUp = (async () => {
    while (!victimSent) {
      while (queue().queuedRequests + (fillers.length - submitted()) < 40) fillers.push(post(url, { prompt: 'a red circle', seed: fillers.length, num_images: 8 }));
      await new Promise((resolve) => setImmediate(resolve));
    }
  })();
  await until(() => queue().queuedRequests >= 32, 'fillers wait in the queue');
  victimSent = true;
  await topUp;
  const victim = rawPost(url, victimPrompt);
  // Fillers queue 8 rows each, the victim 1: queued rows that are not a multiple of 8 mean the victim is waiting.
  await until(() => queue().queuedRows % 8 === 1, 'the victim is queued');
  const waitingWith = queue().queuedRequests - 1;
  victim.socket.destroy();
  t.diagnostic(`the victim left the queue with ${waitingWith} fillers waiting, ${fillers.length} fillers in all`);
  assert.equal(await victim.answer, '', 'no answer reached the closed socket');

  for (const filler of await Promise.all(fillers)) assert.equal(filler.status, 200);
  await until(() => !queue().busy && queue().queuedRequests === 0, 'the queue is empty');
  assert.deepEqual(
    batches.map((batch) => batch.rows),
    fillers.map(() => 8),
    'only the fillers ran; the victim would have run alone, in a batch of 1 row',
  );
  const metrics = (await app.inject('/metrics')).body;
  assert.match(metrics, /^snoopi_http_requests_aborted_total\{method="POST",route="\/generate"\} 1$/m);
});

test('over the queue limit: 429 SNOOPI_QUEUE_FULL with Retry-After, while /healthz stays fast', async (t) => {
  const { service, url } = await build(t, { listen: true, settings: { maxBatch: 8, maxQueueRows: 16 } });
  const model = service.stats().activeModel!;
  let settled = false;

  // The probe connection is opened before the storm: a connection opened during it queues behind the storm's own
  // connections in the kernel's accept queue, which measures the 2 shared cores, not the HTTP thread.
  const probe = new Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => probe.destroy());
  const healthz = () =>
    new Promise<number>((resolve, reject) => {
      httpGet(`${url}/healthz`, { agent: probe }, (response) => {
        response.resume();
        response.on('end', () => resolve(response.statusCode!));
      }).on('error', reject);
    });
  assert.equal(await healthz(), 200);
  const storm = Promise.all(Array.from({ length: 48 }, (_, i) => post(url, { prompt: 'a blue circle', seed: i, num_images: 8 }))).finally(() => {
    settled = true;
  });
  const healthLatenciesMs: number[] = [];
  while (!settled) {
    const startedAt = performance.now();
    assert.equal(await healthz(), 200);
    healthLatenciesMs.push(performance.now() - startedAt);
  }
  const answers = await storm;
  const refused = answers.filter((answer) => answer.status === 429);
  const served = answers.filter((answer) => answer.status === 200);
  t.diagnostic(`${served.length} served, ${refused.length} refused; /healthz under load: max ${Math.max(...healthLatenciesMs).toFixed(1)} ms over ${healthLatenciesMs.length} probes`);
  assert.equal(served.length + refused.length, answers.length, 'every request is served or refused, nothing else');
  assert.ok(refused.length > 0, 'the queue overflowed');
  for (const answer of refused) {
    assert.equal(answer.headers.get('retry-after'), '1');
    assert.deepEqual(answer.body, {
      statusCode: 429,
      code: 'SNOOPI_QUEUE_FULL',
      error: 'Too Many Requests',
      message: `The queue for model ${model} is full (16 images waiting); retry later`,
    });
  }
  assert.ok(healthLatenciesMs.length >= 2, 'probes ran during the storm');
  assert.ok(Math.max(...healthLatenciesMs) < 250, `/healthz took ${Math.max(...healthLatenciesMs).toFixed(1)} ms under load`);
});

test('graceful shutdown: /readyz turns 503, new work is refused, in-flight requests finish, then the port closes', async (t) => {
  const { app, service, url } = await build(t, { listen: true, settings: { shutdownGraceMs: 30_000 } });
  // Requests whose bodies are still uploading are in flight (past onRequest) until the test sends the rest.
  const held = [1, 2, 3].map((seed) => rawPost(url, { prompt: 'a green triangle', seed, num_images: 2 }, 10));
  await until(() => app.lifecycle.inFlight === held.length, 'the three requests are in flight');

  const shutdown = app.lifecycle.shutdown('test');
  const shuttingDown = { statusCode: 503, code: 'SNOOPI_SHUTTING_DOWN', error: 'Service Unavailable', message: 'The service is shutting down' };
  const readyz = await get(url, '/readyz');
  assert.deepEqual([readyz.status, readyz.headers.get('retry-after'), readyz.body], [503, '5', shuttingDown]);
  const refused = await post(url, { prompt: 'too late' });
  assert.deepEqual([refused.status, refused.headers.get('retry-after'), refused.body], [503, '5', shuttingDown]);
  assert.equal((await get(url, '/healthz')).status, 200, 'alive while draining');
  await sleep(100);
  assert.equal(app.lifecycle.inFlight, 3, 'the shutdown waits for the requests in flight');

  for (const request of held) request.rest();
  for (const [index, raw] of (await Promise.all(held.map((request) => request.answer))).entries()) {
    assert.match(raw, /^HTTP\/1\.1 200 OK\r\n/);
    const body = JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4));
    assert.deepEqual(body.images.map((image: { seed: number }) => image.seed), [index + 1, index + 2]);
  }

  await shutdown;
  assert.equal(service.isReady(), false, 'the service was closed after the requests finished');
  await assert.rejects(fetch(`${url}/healthz`), (err: Error & { cause?: { code?: string } }) => err.cause?.code === 'ECONNREFUSED');
});
