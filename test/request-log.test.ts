import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import { pino } from 'pino';
import type { Settings } from '../src/config/settings.js';
import { GenerationService } from '../src/generation/generation-service.js';
import { buildApp, loggerOptions } from '../src/http/app.js';
import { serviceOptions } from '../src/serve.js';
import { testSettings } from './helpers/build.js';

/** The log lines of three requests (a probe, a generation, a bad request) under one requestLog mode. */
async function requestLines(t: TestContext, requestLog: Settings['requestLog']) {
  const settings = testSettings({ logLevel: 'info', requestLog });
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      lines.push(JSON.parse(chunk.toString('utf8')) as Record<string, unknown>);
      callback();
    },
  });
  const logger = pino({ level: 'info', ...loggerOptions }, sink);
  const service = await GenerationService.create(serviceOptions(settings));
  const app = buildApp(settings, service, { logger });
  t.after(() => app.close());
  await service.ready();
  await app.ready();
  lines.length = 0;
  const send = (id: string, method: 'GET' | 'POST', url: string, payload?: object) =>
    app.inject({ method, url, headers: { 'x-request-id': id }, ...(payload === undefined ? {} : { payload }) });
  assert.equal((await send('probe', 'GET', '/healthz')).statusCode, 200);
  assert.equal((await send('ok', 'POST', '/generate', { prompt: 'a red circle', seed: 1 })).statusCode, 200);
  assert.equal((await send('bad', 'POST', '/generate', { prompt: '' })).statusCode, 400);
  // The fields that do not change from run to run; responseTime is checked for its type.
  return lines.map(({ level, msg, reqId, method, url, statusCode, responseTime, req, res, code }) => {
    assert.equal(typeof (responseTime ?? 0), 'number');
    return Object.fromEntries(Object.entries({ level, msg, reqId, method, url, statusCode, req: req === undefined ? undefined : 'req', res, code }).filter(([, value]) => value !== undefined));
  });
}

const INFO = 30;
const refusal = { level: INFO, msg: 'Invalid request: body/prompt must NOT have fewer than 1 characters', reqId: 'bad', code: 'SNOOPI_VALIDATION' };

test('requestLog completed (the default): one line per answered request, with its id, method, url and status', async (t) => {
  assert.equal(testSettings({}).requestLog, 'completed');
  assert.deepEqual(await requestLines(t, 'completed'), [
    { level: INFO, msg: 'request completed', reqId: 'ok', method: 'POST', url: '/generate', statusCode: 200 },
    refusal,
    { level: INFO, msg: 'request completed', reqId: 'bad', method: 'POST', url: '/generate', statusCode: 400 },
  ]);
});

test("requestLog full: Fastify's two lines per request", async (t) => {
  assert.deepEqual(await requestLines(t, 'full'), [
    { level: INFO, msg: 'incoming request', reqId: 'ok', req: 'req' },
    { level: INFO, msg: 'request completed', reqId: 'ok', res: { statusCode: 200 } },
    { level: INFO, msg: 'incoming request', reqId: 'bad', req: 'req' },
    refusal,
    { level: INFO, msg: 'request completed', reqId: 'bad', res: { statusCode: 400 } },
  ]);
});

test('requestLog errors: no line per request; the error handler still logs the refusal with its request id', async (t) => {
  assert.deepEqual(await requestLines(t, 'errors'), [refusal]);
});
