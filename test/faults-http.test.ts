// Faults a production server must survive, through real sockets and real files (issue 29): requests that arrive too
// slowly, servers that cannot listen, requests Node's HTTP parser refuses, a corrupt package, a credential in the
// query string, and the event-loop delay under a storm of finished batches.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, connect, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Writable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { repoRoot } from '../src/config/paths.js';
import type { Settings } from '../src/config/settings.js';
import { loggerOptions } from '../src/http/app.js';
import type { ModelRegistry } from '../src/registry/model-registry.js';
import { TOKEN, auth } from './helpers/admin.js';
import { build, testSettings } from './helpers/build.js';
import { TEST_MODEL_DIR, TEST_MODEL_ID } from './helpers/test-model.js';

const cli = join(repoRoot, 'dist', 'src', 'cli.js');

interface RawExchange {
  /** Everything the server wrote, as text. */
  answer: string;
  /** ms from the first byte sent to the server closing the connection. */
  closedAfterMs: number;
}

/** Writes `chunks` on a fresh connection to `url` and waits for the server to close it (the test fails after 10 s). */
function rawExchange(url: string, chunks: (string | Buffer)[]): Promise<RawExchange> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    const received: Buffer[] = [];
    const startedAt = performance.now();
    const giveUp = setTimeout(() => {
      socket.destroy();
      reject(new Error(`the server kept the connection open for 10 s; it wrote ${JSON.stringify(Buffer.concat(received).toString('latin1'))}`));
    }, 10_000);
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(giveUp);
      resolve({ answer: Buffer.concat(received).toString('latin1'), closedAfterMs: performance.now() - startedAt });
    });
    for (const chunk of chunks) socket.write(chunk);
  });
}

/** The raw HTTP answer the server writes when it refuses a request and closes the connection. */
function closingAnswer(status: number, statusText: string, body: object): string {
  const text = JSON.stringify(body);
  return (
    `HTTP/1.1 ${status} ${statusText}\r\nConnection: close\r\nContent-Type: application/json; charset=utf-8\r\n` +
    `Content-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`
  );
}

/** The value of the sample `name{labels}` in /metrics, fetched over HTTP; undefined when the line is absent. */
async function metric(url: string, name: string, labels = ''): Promise<number | undefined> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${name}${labels} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

/** A pino logger (the app's options) whose lines are collected as objects. */
function recordingLogger(): { logger: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      lines.push(JSON.parse(chunk.toString('utf8')) as Record<string, unknown>);
      callback();
    },
  });
  return { logger: pino({ level: 'info', ...loggerOptions }, sink), lines };
}

const generateHead = (contentLength: number) =>
  `POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${contentLength}\r\n\r\n`;

// 2. The time to receive a request is bounded.

test('requestTimeoutMs defaults to 30 s', () => {
  assert.equal(testSettings({}).requestTimeoutMs, 30_000);
});

test('a request that does not arrive whole within requestTimeoutMs is answered 408 and cut; each cut is counted', async (t) => {
  const requestTimeoutMs = 500;
  const { url } = await build(t, { listen: true, settings: { requestTimeoutMs } });
  const timeout = closingAnswer(408, 'Request Timeout', {
    statusCode: 408,
    code: 'SNOOPI_REQUEST_TIMEOUT',
    error: 'Request Timeout',
    message: 'The request was not received within 500 ms; the connection is closed',
  });
  const body = '{"prompt":"a red circle","seed":1}';
  const [partialBody, partialHeaders, nothing] = await Promise.all([
    rawExchange(url, [generateHead(body.length), body.slice(0, 10)]),
    rawExchange(url, ['POST /generate HTTP/1.1\r\nHost: x\r\n']),
    rawExchange(url, []),
  ]);
  for (const exchange of [partialBody, partialHeaders]) assert.equal(exchange.answer, timeout);
  assert.equal(nothing.answer, timeout, 'a connection that sends nothing is cut too');
  for (const { closedAfterMs } of [partialBody, partialHeaders, nothing]) {
    assert.ok(closedAfterMs >= requestTimeoutMs - 5, `cut after ${closedAfterMs} ms, before the timeout`);
    // Node checks every 250 ms; the rest is slack for a busy shared CPU.
    assert.ok(closedAfterMs < requestTimeoutMs + 250 + 1000, `cut after ${closedAfterMs} ms`);
  }
  t.diagnostic(`cut after ${[partialBody, partialHeaders, nothing].map((e) => e.closedAfterMs.toFixed(0)).join(', ')} ms`);
  assert.equal(await metric(url, 'snoopi_http_connections_cut_total', '{code="SNOOPI_REQUEST_TIMEOUT"}'), 3);
  assert.deepEqual(await (await fetch(`${url}/healthz`)).json(), { status: 'ok' }, 'the server still answers');
});

test('the timeout bounds receiving only: a slow answer and an idle keep-alive connection are not cut', async (t) => {
  const requestTimeoutMs = 500;
  const { app, url } = await build(t, { listen: true, settings: { requestTimeoutMs } });
  // The answer takes twice the timeout: the request was received in time, so it is answered.
  const generate = app.generation.generate.bind(app.generation);
  app.generation.generate = async (request) => {
    await sleep(2 * requestTimeoutMs);
    return generate(request);
  };
  const body = '{"prompt":"a red circle","seed":1}';
  const keepAliveRequest = `${generateHead(body.length).replace('\r\n\r\n', '\r\nConnection: keep-alive\r\n\r\n')}${body}`;
  const closingRequest = `${generateHead(body.length).replace('\r\n\r\n', '\r\nConnection: close\r\n\r\n')}${body}`;
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  const received: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => received.push(chunk));
  const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
  const sentAt = performance.now();
  socket.write(keepAliveRequest);
  // Status lines; the second follows the first's JSON body on the same line.
  const answers = () => Buffer.concat(received).toString('latin1').match(/HTTP\/1\.1 \d{3} [^\r]*/g) ?? [];
  while (answers().length === 0) await sleep(20);
  assert.ok(performance.now() - sentAt >= 2 * requestTimeoutMs);
  // Idle on the kept-alive connection for longer than the timeout, then reuse it.
  await sleep(2 * requestTimeoutMs);
  socket.write(closingRequest);
  await closed;
  assert.deepEqual(answers(), ['HTTP/1.1 200 OK', 'HTTP/1.1 200 OK']);
  assert.equal(await metric(url, 'snoopi_http_connections_cut_total', '{code="SNOOPI_REQUEST_TIMEOUT"}'), undefined);
});

// 3. A server that cannot serve exits non-zero at once.

interface Exit {
  code: number | null;
  stderr: string;
  /** The msg of every log line on stdout. */
  messages: string[];
}

function serveUntilExit(args: string[]): Promise<Exit> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, 'serve', '--log-level=info', ...args], { timeout: 60_000 }, (error, stdout, stderr) => {
      const messages = stdout
        .split('\n')
        .filter(Boolean)
        .map((line) => (JSON.parse(line) as { msg: string }).msg);
      resolve({ code: error === null ? 0 : (error as { code?: number }).code ?? null, stderr, messages });
    });
  });
}

test('serve exits 1 at once when its port is in use, before the model is ready', async (t) => {
  const taken = createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  t.after(() => taken.close());
  const { port } = taken.address() as AddressInfo;
  const exit = await serveUntilExit([`--port=${port}`, '--host=127.0.0.1']);
  assert.equal(exit.code, 1);
  assert.equal(exit.stderr, `snoopi serve: listen EADDRINUSE: address already in use 127.0.0.1:${port}\n`);
  assert.ok(!exit.messages.some((message) => message.startsWith('ready')), exit.messages.join('\n'));
});

test('serve exits 1 at once when HOST does not resolve', async () => {
  const exit = await serveUntilExit(['--port=0', '--host=no-such-host.invalid']);
  assert.equal(exit.code, 1);
  assert.equal(exit.stderr, 'snoopi serve: getaddrinfo ENOTFOUND no-such-host.invalid\n');
  assert.ok(!exit.messages.some((message) => message.startsWith('ready')), exit.messages.join('\n'));
});

test('serve exits 1 after a fatal log line when the models folder holds no package', async (t) => {
  const modelsDir = await mkdtemp(join(tmpdir(), 'snoopi-empty-models-'));
  t.after(() => rm(modelsDir, { recursive: true, force: true }));
  const exit = await serveUntilExit(['--port=0', '--host=127.0.0.1', `--models-dir=${modelsDir}`]);
  assert.equal(exit.code, 1);
  assert.equal(exit.stderr, 'snoopi serve: The service is not ready: no model package is registered\n');
  // pino flushes a fatal line at once, so it may come out ahead of lines logged before it.
  assert.ok(exit.messages.includes('the active model failed to load; shutting down'), exit.messages.join('\n'));
  assert.deepEqual(exit.messages.slice(-2), ['shutting down: refusing new work', 'shut down']);
});

// 6. Error bodies: one shape, no server paths or checksums for anonymous clients, no credentials in the log.

test("requests Node's HTTP parser refuses get the one error body, and each cut is counted by code", async (t) => {
  const { url } = await build(t, { listen: true });
  const badRequest = (message: string) =>
    closingAnswer(400, 'Bad Request', { statusCode: 400, code: 'SNOOPI_BAD_REQUEST', error: 'Bad Request', message: `Malformed request: ${message}` });
  const body = '{"prompt":"a red circle","seed":1}';

  const chunkedWithLength = await rawExchange(url, [
    'POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
  ]);
  assert.equal(chunkedWithLength.answer, badRequest("Transfer-Encoding can't be present with Content-Length"));

  const negativeLength = await rawExchange(url, [`${generateHead(-1)}${body}`]);
  assert.equal(negativeLength.answer, badRequest('Invalid character in Content-Length'));

  // A Content-Length shorter than the body: the bytes after it are read as the next request, which does not parse.
  const shortLength = await rawExchange(url, [`${generateHead(8)}${body}`]);
  assert.equal(shortLength.answer, badRequest('Invalid method encountered'));

  const hugeHeaders = await rawExchange(url, [`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: ${'a'.repeat(20_000)}\r\n\r\n`]);
  assert.equal(
    hugeHeaders.answer,
    closingAnswer(431, 'Request Header Fields Too Large', {
      statusCode: 431,
      code: 'SNOOPI_HEADERS_TOO_LARGE',
      error: 'Request Header Fields Too Large',
      message: 'The request headers are larger than 16384 bytes',
    }),
  );

  assert.equal(await metric(url, 'snoopi_http_connections_cut_total', '{code="SNOOPI_BAD_REQUEST"}'), 3);
  assert.equal(await metric(url, 'snoopi_http_connections_cut_total', '{code="SNOOPI_HEADERS_TOO_LARGE"}'), 1);
});

test("a corrupt package's 500 names the model and the request id; the paths and sha256s go to the log and to admins only", async (t) => {
  const modelsDir = await mkdtemp(join(tmpdir(), 'snoopi-corrupt-'));
  t.after(() => rm(modelsDir, { recursive: true, force: true }));
  await cp(TEST_MODEL_DIR, join(modelsDir, TEST_MODEL_ID), { recursive: true });
  await cp(TEST_MODEL_DIR, join(modelsDir, 'broken'), { recursive: true });
  const manifestPath = join(modelsDir, 'broken', 'model.json');
  await writeFile(manifestPath, JSON.stringify({ ...JSON.parse(await readFile(manifestPath, 'utf8')), id: 'broken' }));
  const merges = join(modelsDir, 'broken', 'tokenizer', 'merges.txt');
  const corrupted = await readFile(merges);
  corrupted[corrupted.length - 2] ^= 1;
  await writeFile(merges, corrupted);

  const { logger, lines } = recordingLogger();
  const { url } = await build(t, { listen: true, logger, settings: { modelsDir, activeModel: TEST_MODEL_ID, adminToken: TOKEN } });
  const detail = new RegExp(`^Model broken could not be loaded: ${manifestPath}: tokenizer/merges\\.txt: sha256 [0-9a-f]{64}, model\\.json says [0-9a-f]{64}$`);

  const anonymous = await fetch(`${url}/generate`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-request-id': 'corrupt-1' },
    body: JSON.stringify({ prompt: 'a red circle', model: 'broken' }),
  });
  assert.equal(anonymous.status, 500);
  assert.deepEqual(await anonymous.json(), {
    statusCode: 500,
    code: 'SNOOPI_MODEL_LOAD_FAILED',
    error: 'Internal Server Error',
    message: 'Model broken could not be loaded; the reason is logged under request id corrupt-1',
  });
  const logged = lines.find((line) => line.reqId === 'corrupt-1' && line.code === 'SNOOPI_MODEL_LOAD_FAILED');
  assert.ok(logged !== undefined, JSON.stringify(lines));
  assert.match(String(logged.msg), detail);

  const admin = await fetch(`${url}/admin/models/broken/activate`, { method: 'POST', headers: auth });
  assert.equal(admin.status, 500);
  const adminBody = (await admin.json()) as { code: string; message: string };
  assert.equal(adminBody.code, 'SNOOPI_MODEL_LOAD_FAILED');
  assert.match(adminBody.message, detail);
});

/** The log lines (request id, message, logged URL) of two requests carrying credentials in their query strings. */
async function credentialRequestLines(t: TestContext, requestLog: Settings['requestLog']) {
  const { logger, lines } = recordingLogger();
  const { url } = await build(t, { listen: true, logger, settings: { requestLog } });
  lines.length = 0;
  const headers = (id: string) => ({ 'x-request-id': id });
  assert.equal((await fetch(`${url}/models?access_token=s3cret&page=2`, { headers: headers('listed') })).status, 200);
  const notFound = await fetch(`${url}/nope?api_key=s3cret&Token=s3cret&keep=1`, { headers: headers('missing') });
  assert.deepEqual(await notFound.json(), {
    statusCode: 404,
    code: 'SNOOPI_ROUTE_NOT_FOUND',
    error: 'Not Found',
    message: 'Route GET /nope?api_key=[redacted]&Token=[redacted]&keep=1 not found',
  });
  assert.ok(!JSON.stringify(lines).includes('s3cret'), JSON.stringify(lines));
  return lines.map(({ reqId, msg, url: completedUrl, req }) => ({ reqId, msg, url: completedUrl ?? (req as { url?: string } | undefined)?.url }));
}

const notFoundLine = { reqId: 'missing', msg: 'Route GET /nope?api_key=[redacted]&Token=[redacted]&keep=1 not found', url: undefined };

test('a credential in the query string is redacted in the logged URL (requestLog completed) and in the 404 message', async (t) => {
  assert.deepEqual(await credentialRequestLines(t, 'completed'), [
    { reqId: 'listed', msg: 'request completed', url: '/models?access_token=[redacted]&page=2' },
    notFoundLine,
    { reqId: 'missing', msg: 'request completed', url: '/nope?api_key=[redacted]&Token=[redacted]&keep=1' },
  ]);
});

test('a credential in the query string is redacted in the logged request (requestLog full)', async (t) => {
  assert.deepEqual(await credentialRequestLines(t, 'full'), [
    { reqId: 'listed', msg: 'incoming request', url: '/models?access_token=[redacted]&page=2' },
    { reqId: 'listed', msg: 'request completed', url: undefined },
    { reqId: 'missing', msg: 'incoming request', url: '/nope?api_key=[redacted]&Token=[redacted]&keep=1' },
    notFoundLine,
    { reqId: 'missing', msg: 'request completed', url: undefined },
  ]);
});

// 7. /healthz under a storm: a full queue refuses before any work, and the event-loop delay is exported.

test('a request refused for a full queue costs no text encoding; the event-loop delay is in /metrics', async (t) => {
  const { url, service } = await build(t, { listen: true, settings: { maxBatch: 8, maxQueueRows: 8 } });
  const post = (body: object) =>
    fetch(`${url}/generate`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }).then(async (response) => ({
      status: response.status,
      code: ((await response.json()) as { code?: string }).code,
    }));
  const filler = { prompt: 'a red circle', seed: 1, num_images: 8 };
  assert.equal((await post(filler)).status, 200, 'caches the fillers\' prompt and the empty negative prompt');
  // Hold the engine: a batch of 8 runs and waits, one filler of 8 fills the queue.
  const model = service.stats().activeModel!;
  const { engine } = (service as unknown as { registry: ModelRegistry }).registry.loadedModel(model)!;
  const generateRows = engine.generateRows.bind(engine);
  let release = () => {};
  const held = new Promise<void>((resolve) => (release = resolve));
  engine.generateRows = async (rows) => {
    await held;
    return generateRows(rows);
  };
  const fillers = [post(filler), post(filler)];
  const queue = () => service.stats().models.find((entry) => entry.id === model)!;
  const misses = () => metric(url, 'snoopi_embedding_cache_misses_total');
  let missesBefore: number | undefined;
  try {
    while (!(queue().busy && queue().queuedRows === 8)) await sleep(5);
    missesBefore = await misses();
    const refused = await Promise.all(Array.from({ length: 6 }, (_, index) => post({ prompt: `a storm of ${index} blue squares`, seed: 1, num_images: 8 })));
    assert.deepEqual(refused, Array.from({ length: 6 }, () => ({ status: 429, code: 'SNOOPI_QUEUE_FULL' })));
    assert.equal(await misses(), missesBefore, 'no refused prompt was encoded');
  } finally {
    release();
  }
  assert.deepEqual(await Promise.all(fillers), [{ status: 200, code: undefined }, { status: 200, code: undefined }]);
  assert.deepEqual(await post({ prompt: 'a storm of 0 blue squares', seed: 1 }), { status: 200, code: undefined });
  assert.equal(await misses(), missesBefore! + 1, 'an admitted new prompt is encoded once');

  // Read over the time since the previous scrape (prom-client's perf_hooks histogram, reset at each scrape).
  const text = await (await fetch(`${url}/metrics`)).text();
  const exported = [...text.matchAll(/^snoopi_nodejs_eventloop_lag_(\w+) /gm)].map(([, name]) => name);
  assert.deepEqual(exported, ['seconds', 'min_seconds', 'max_seconds', 'mean_seconds', 'stddev_seconds', 'p50_seconds', 'p90_seconds', 'p99_seconds']);
  assert.ok(Number((/^snoopi_nodejs_eventloop_lag_p99_seconds (\S+)$/m.exec(text) ?? [])[1]) > 0);
});
