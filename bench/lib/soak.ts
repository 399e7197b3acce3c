// The soak: a fixed request rate below saturation for a long time, with the server's RSS (from /proc) and V8 heap
// (from /metrics) sampled as it runs. Growth compares the RSS after warm-up with the RSS at the end.
import { setTimeout as sleep } from 'node:timers/promises';
import { parseMetrics, total } from './prometheus.js';
import { runLoad, type LoadRun } from './load.js';
import type { ServerProcess } from './server-process.js';
import { median } from './stats.js';

export interface SoakPoint {
  /** Seconds since the soak started. */
  t: number;
  rssMiB: number;
  /** Responses per second since the previous point. */
  responsesPerSecond: number;
}

export interface HeapPoint {
  t: number;
  heapUsedMiB: number;
}

export interface SoakResults {
  seconds: number;
  /** The requested rate: loadFraction x the saturation throughput measured earlier in the run. */
  targetRate: number;
  saturationRate: number;
  connections: number;
  load: LoadRun;
  status5xx: number;
  points: SoakPoint[];
  heap: HeapPoint[];
  warmupSeconds: number;
  /** Median RSS over the first window after warm-up, and over the last window. */
  baselineRssMiB: number;
  finalRssMiB: number;
  /** finalRssMiB / baselineRssMiB - 1. */
  growth: number;
  peakRssMiB: number;
}

const HEAP_SCRAPE_SECONDS = 10;

export async function runSoak(
  server: ServerProcess,
  options: { seconds: number; saturationRate: number; loadFraction: number; connections: number; sampleSeconds: number; body: string | (() => string) },
): Promise<SoakResults> {
  const targetRate = Math.max(1, Math.round(options.saturationRate * options.loadFraction));
  const points: SoakPoint[] = [];
  const heap: HeapPoint[] = [];
  let responses = 0;
  let running = true;
  const startedAt = Date.now();
  const elapsed = () => (Date.now() - startedAt) / 1000;
  const sampler = (async () => {
    let lastResponses = 0;
    let lastT = 0;
    let lastHeapAt = -HEAP_SCRAPE_SECONDS;
    while (running) {
      await sleep(options.sampleSeconds * 1000);
      if (!running) break;
      const t = elapsed();
      const usage = await server.usage();
      points.push({ t, rssMiB: usage.rssBytes / 2 ** 20, responsesPerSecond: (responses - lastResponses) / (t - lastT) });
      lastResponses = responses;
      lastT = t;
      if (t - lastHeapAt >= HEAP_SCRAPE_SECONDS) {
        lastHeapAt = t;
        const metrics = parseMetrics(await server.metrics());
        heap.push({ t, heapUsedMiB: total(metrics, 'snoopi_nodejs_heap_size_used_bytes') / 2 ** 20 });
      }
    }
  })();
  const load = await runLoad({
    url: server.url,
    path: '/generate',
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: options.body,
    connections: options.connections,
    seconds: options.seconds,
    overallRate: targetRate,
    onResponse: () => responses++,
  });
  running = false;
  await sampler;

  const warmupSeconds = Math.min(60, options.seconds * 0.1);
  const window = Math.max(options.sampleSeconds, Math.min(30, options.seconds * 0.05));
  const rssBetween = (from: number, to: number) => points.filter((point) => point.t >= from && point.t <= to).map((point) => point.rssMiB);
  const afterWarmup = points.filter((point) => point.t >= warmupSeconds);
  const firstT = afterWarmup[0]?.t ?? warmupSeconds;
  const lastT = points.at(-1)?.t ?? options.seconds;
  const baselineRssMiB = median(rssBetween(firstT, firstT + window));
  const finalRssMiB = median(rssBetween(lastT - window, lastT));
  const status5xx = Object.entries(load.statusCodes).reduce((sum, [code, count]) => sum + (code.startsWith('5') ? count : 0), 0);
  return {
    seconds: options.seconds,
    targetRate,
    saturationRate: options.saturationRate,
    connections: options.connections,
    load,
    status5xx,
    points,
    heap,
    warmupSeconds,
    baselineRssMiB,
    finalRssMiB,
    growth: finalRssMiB / baselineRssMiB - 1,
    peakRssMiB: Math.max(...points.map((point) => point.rssMiB)),
  };
}
