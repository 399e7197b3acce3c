// Load on the service with autocannon's programmatic API, and one measured cell of the grid: a load run between two
// scrapes of /metrics (batch sizes, cache, engine time, event-loop lag) and two reads of the server's /proc numbers.
import autocannon, { type Instance } from 'autocannon';
import { performance } from 'node:perf_hooks';
import { histogramDelta, delta, parseMetrics, total, type Sample } from './prometheus.js';
import type { ServerProcess } from './server-process.js';
import { round, summarize, type Summary } from './stats.js';

export interface LoadOptions {
  url: string;
  path: string;
  method: 'GET' | 'POST';
  headers?: Record<string, string>;
  /** One body for every request, or a function called for each request. */
  body?: string | (() => string);
  connections: number;
  seconds: number;
  /** Requests per second per connection (a probe), or over all connections (the soak); unthrottled without. */
  connectionRate?: number;
  overallRate?: number;
  /** Called on every response (the soak's time series). */
  onResponse?: (statusCode: number) => void;
}

export interface LoadRun {
  seconds: number;
  responses: number;
  /** 2xx responses per second. */
  perSecond: number;
  /**
   * Client-side latency of 2xx responses in ms, from autocannon's per-response times (autocannon's own histogram
   * has 1 ms resolution; these are not corrected for coordinated omission).
   */
  latencyMs: Summary;
  non2xx: number;
  errors: number;
  timeouts: number;
  statusCodes: Record<string, number>;
}

export function runLoad(options: LoadOptions): Promise<LoadRun> {
  const latencies: number[] = [];
  const statusCodes: Record<string, number> = {};
  let instance: Instance;
  const startedAt = performance.now();
  return new Promise((resolve, reject) => {
    instance = autocannon(
      {
        url: `${options.url}${options.path}`,
        method: options.method,
        connections: options.connections,
        duration: options.seconds,
        ...(options.headers !== undefined ? { headers: options.headers } : {}),
        ...(typeof options.body === 'string' ? { body: options.body } : {}),
        ...(typeof options.body === 'function'
          ? { requests: [{ method: options.method, path: options.path, setupRequest: (request) => ({ ...request, body: (options.body as () => string)() }) }] }
          : {}),
        ...(options.connectionRate !== undefined ? { connectionRate: options.connectionRate } : {}),
        ...(options.overallRate !== undefined ? { overallRate: options.overallRate } : {}),
      },
      (error, result) => {
        if (error !== null) {
          reject(error);
          return;
        }
        const seconds = (performance.now() - startedAt) / 1000;
        const ok = Object.entries(statusCodes).reduce((sum, [code, count]) => sum + (code.startsWith('2') ? count : 0), 0);
        resolve({
          seconds,
          responses: Object.values(statusCodes).reduce((sum, count) => sum + count, 0),
          perSecond: ok / seconds,
          latencyMs: summarize(latencies),
          non2xx: result.non2xx,
          errors: result.errors,
          timeouts: result.timeouts,
          statusCodes,
        });
      },
    );
    instance.on('response', (_client, statusCode, _bytes, responseTime) => {
      statusCodes[statusCode] = (statusCodes[statusCode] ?? 0) + 1;
      if (statusCode >= 200 && statusCode < 300) latencies.push(responseTime);
      options.onResponse?.(statusCode);
    });
  });
}

export interface BatchSizes {
  batches: number;
  meanRows: number;
  /** Batches per size range of the service's snoopi_batch_size buckets ("1", "2", "3-4", "5-8", ...). */
  histogram: { rows: string; count: number }[];
}

export interface Cell {
  config: string;
  scenario: string;
  connections: number;
  seconds: number;
  requestsPerSecond: number;
  imagesPerSecond: number;
  latencyMs: Summary;
  responses: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  statusCodes: Record<string, number>;
  batchSizes: BatchSizes;
  cache: { hits: number; misses: number };
  /** Generator time over wall time: 1 means the engine never waited for work. */
  engineBusy: number;
  /** Mean wall time of one generator batch (compare with the raw engine at batchSizes.meanRows). */
  meanGenerateMs: number;
  /** CPU cores the server process used on average (all threads), and the bench process (autocannon). */
  serverCpuCores: number;
  clientCpuCores: number;
  /** The server's event-loop delay p99 over the cell (prom-client resets it at each scrape). */
  eventLoopLagP99Ms: number;
  serverRssMiB: number;
}

function batchSizes(before: Sample[], after: Sample[], model: string): BatchSizes {
  const histogram = histogramDelta(before, after, 'snoopi_batch_size', { model });
  let lower = 0;
  const ranges = histogram.buckets.map(({ le, count }) => {
    const rows = le === Infinity ? `>${lower}` : lower + 1 === le ? String(le) : `${lower + 1}-${le}`;
    lower = le;
    return { rows, count };
  });
  return { batches: histogram.count, meanRows: histogram.count > 0 ? histogram.sum / histogram.count : 0, histogram: ranges };
}

export interface CellOptions {
  server: ServerProcess;
  model: string;
  config: string;
  scenario: string;
  connections: number;
  seconds: number;
  imagesPerRequest: number;
  request: { body: string | (() => string); headers: Record<string, string> };
}

/** One cell: POST /generate under `connections` for `seconds`, with the server's own view of it. */
export async function measureCell(options: CellOptions): Promise<Cell> {
  const { server, model } = options;
  const before = parseMetrics(await server.metrics());
  const usageBefore = await server.usage();
  const clientBefore = process.cpuUsage();
  const load = await runLoad({
    url: server.url,
    path: '/generate',
    method: 'POST',
    headers: options.request.headers,
    body: options.request.body,
    connections: options.connections,
    seconds: options.seconds,
  });
  const client = process.cpuUsage(clientBefore);
  const usageAfter = await server.usage();
  const after = parseMetrics(await server.metrics());
  const inferenceSeconds = delta(before, after, 'snoopi_engine_inference_seconds_sum', { model });
  return {
    config: options.config,
    scenario: options.scenario,
    connections: options.connections,
    seconds: load.seconds,
    requestsPerSecond: load.perSecond,
    imagesPerSecond: load.perSecond * options.imagesPerRequest,
    latencyMs: load.latencyMs,
    responses: load.responses,
    non2xx: load.non2xx,
    errors: load.errors,
    timeouts: load.timeouts,
    statusCodes: load.statusCodes,
    batchSizes: batchSizes(before, after, model),
    cache: { hits: delta(before, after, 'snoopi_embedding_cache_hits_total'), misses: delta(before, after, 'snoopi_embedding_cache_misses_total') },
    engineBusy: inferenceSeconds / load.seconds,
    meanGenerateMs: (inferenceSeconds * 1000) / Math.max(1, delta(before, after, 'snoopi_engine_inference_seconds_count', { model })),
    serverCpuCores: (usageAfter.cpuSeconds - usageBefore.cpuSeconds) / load.seconds,
    clientCpuCores: (client.user + client.system) / 1e6 / load.seconds,
    eventLoopLagP99Ms: total(after, 'snoopi_nodejs_eventloop_lag_p99_seconds') * 1000,
    serverRssMiB: usageAfter.rssBytes / 2 ** 20,
  };
}

/** One line of progress for the console. */
export function describeCell(cell: Cell): string {
  return (
    `${cell.config.padEnd(9)} ${cell.scenario.padEnd(8)} c=${String(cell.connections).padStart(3)}: ` +
    `${round(cell.requestsPerSecond)} req/s, ${round(cell.imagesPerSecond)} img/s, p50 ${round(cell.latencyMs.p50)} ms, ` +
    `p99 ${round(cell.latencyMs.p99)} ms, non-2xx ${cell.non2xx}, mean batch ${round(cell.batchSizes.meanRows)}, ` +
    `${round(cell.meanGenerateMs)} ms per batch, engine busy ${Math.round(cell.engineBusy * 100)}%, server CPU ${round(cell.serverCpuCores)} cores`
  );
}
