// The shape of results.json, and the targets of issue #8 evaluated on one run's numbers (ratios taken within the
// run, so they hold on a noisy machine). Targets are reported as pass/miss, never asserted.
import type { BatchTiming, EngineResults, ParityResult } from './engine-throughput.js';
import type { EncodingTiming } from './image-encoding.js';
import type { InterleavedLatency } from './interleaved-latency.js';
import type { Cell, LoadRun } from './load.js';
import type { ConfigName, Plan } from './plan.js';
import type { ProfileSummary } from './profile-summary.js';
import type { SoakResults } from './soak.js';
import type { TimingSample } from './timings.js';

export const RESULTS_SCHEMA_VERSION = 3;

export interface PytorchRun {
  threads: number;
  batches: BatchTiming[];
  best: BatchTiming;
}

export interface PytorchResults {
  torch: string;
  blas: string;
  openblasCoretype: string | null;
  ompWaitPolicy: string | null;
  weights: string;
  parameters: number;
  runs: PytorchRun[];
  /** The fastest (threads, batch) measured: the baseline the service is compared with. */
  best: BatchTiming & { threads: number };
}

export interface HealthResults {
  probe: { connections: number; ratePerConnection: number };
  generate: Cell;
  healthz: LoadRun;
}

export interface Target {
  id: string;
  description: string;
  /** The measured quantity (a ratio, ms, a fraction or a count); null when the run did not measure it. */
  value: number | null;
  unit: string;
  comparison: '>=' | '<=';
  threshold: number;
  pass: boolean | null;
  /** How the value was computed, with the numbers it came from. */
  detail: string;
}

export interface SuiteResults {
  schemaVersion: number;
  kind: Plan['kind'];
  note: string | null;
  startedAt: string;
  finishedAt: string;
  wallSeconds: number;
  machine: {
    cpus: number;
    cpuModel: string;
    memoryGiB: number;
    platform: string;
    node: string;
    versions: Record<string, string>;
    loadAverageBefore: number[];
    loadAverageAfter: number[];
  };
  git: { commit: string | null; dirty: boolean | null };
  model: {
    id: string;
    packageDir: string;
    displayName: string;
    backbone: string;
    method: string;
    trainingSteps: number;
    image: { width: number; height: number };
    latent: { channels: number; height: number; width: number };
  };
  plan: Plan;
  serverFlags: Partial<Record<ConfigName, string[]>>;
  pytorch: PytorchResults | { skipped: string } | null;
  engine: EngineResults | null;
  parity: ParityResult | null;
  imageEncoding: EncodingTiming[] | null;
  service: Cell[];
  health: HealthResults | null;
  timings: TimingSample[];
  /** The single-connection target's measurement (interleaved-latency.ts). */
  latency: InterleavedLatency | null;
  soak: SoakResults | null;
  profiles: (ProfileSummary & { config: string })[];
  targets: Target[];
}

/** The engine's best-batch timing: the faster of the first measurement and the recheck at that batch size. */
export function engineBest(engine: EngineResults): BatchTiming {
  const again = engine.recheck.find((timing) => timing.batch === engine.best.batch);
  return again !== undefined && again.imagesPerSecond > engine.best.imagesPerSecond ? again : engine.best;
}

export const SATURATION_SCENARIO = { config: 'batch-on', scenario: 'repeated' } as const;

/** The default service's best throughput with one image per request and a repeated prompt. */
export function saturationCell(service: readonly Cell[]): Cell | undefined {
  return service
    .filter((cell) => cell.config === SATURATION_SCENARIO.config && cell.scenario === SATURATION_SCENARIO.scenario)
    .reduce<Cell | undefined>((best, cell) => (best === undefined || cell.requestsPerSecond > best.requestsPerSecond ? cell : best), undefined);
}

function target(
  id: string,
  description: string,
  unit: string,
  comparison: Target['comparison'],
  threshold: number,
  value: number | null,
  detail: string,
): Target {
  const pass = value === null || !Number.isFinite(value) ? null : comparison === '>=' ? value >= threshold : value <= threshold;
  return { id, description, value: value !== null && Number.isFinite(value) ? value : null, unit, comparison, threshold, pass, detail };
}

const fixed = (value: number, digits = 1) => value.toFixed(digits);

export function evaluateTargets(results: Pick<SuiteResults, 'engine' | 'pytorch' | 'service' | 'health' | 'latency' | 'soak'>): Target[] {
  const { engine, service, health, latency, soak } = results;
  const pytorch = results.pytorch !== null && 'best' in results.pytorch ? results.pytorch : null;
  const saturation = saturationCell(service);
  const best = engine !== null ? engineBest(engine) : undefined;
  // NASA against no NASA at the same configuration and connection count: the largest count measured for both.
  const nasa = service
    .filter((cell) => cell.config === 'batch-on' && cell.scenario === 'negative')
    .map((negative) => ({
      negative,
      plain: service.find((cell) => cell.config === 'batch-on' && cell.scenario === 'repeated' && cell.connections === negative.connections),
    }))
    .filter((pair) => pair.plain !== undefined)
    .sort((a, b) => b.negative.connections - a.negative.connections)[0];

  return [
    target(
      'saturation-vs-engine',
      "service saturation throughput / the raw engine's best-batch throughput (same model, 1 image per request, repeated prompt)",
      'ratio',
      '>=',
      0.8,
      saturation !== undefined && best !== undefined ? saturation.imagesPerSecond / best.imagesPerSecond : null,
      saturation !== undefined && best !== undefined
        ? `${fixed(saturation.imagesPerSecond)} img/s at ${saturation.connections} connections / ${fixed(best.imagesPerSecond)} img/s at engine batch ${best.batch}`
        : 'not measured',
    ),
    target(
      'single-connection-latency',
      "p50 latency at one connection minus the raw engine's batch-1 p50 latency, the two measured interleaved",
      'ms',
      '<=',
      2,
      latency !== null ? latency.gapMs : null,
      latency !== null
        ? `service p50 ${fixed(latency.serviceMs.p50, 2)} ms - engine batch 1 p50 ${fixed(latency.engineMs.p50, 2)} ms, interleaved ` +
            `(${latency.rounds} rounds of ${latency.callsPerBlock} calls each); an empty /healthz round trip: p50 ${fixed(latency.healthzMs.p50, 2)} ms`
        : 'not measured',
    ),
    target(
      'healthz-under-saturation',
      '/healthz p99 latency while /generate is saturated',
      'ms',
      '<=',
      20,
      health !== null ? health.healthz.latencyMs.p99 : null,
      health !== null
        ? `${health.healthz.responses} probes, p50 ${fixed(health.healthz.latencyMs.p50, 2)} ms, max ${fixed(health.healthz.latencyMs.max, 1)} ms; /generate at ${fixed(health.generate.requestsPerSecond)} req/s meanwhile`
        : 'not measured',
    ),
    target(
      'nasa-throughput',
      'throughput with a negative prompt (NASA) on every request / without',
      'ratio',
      '>=',
      0.85,
      nasa !== undefined ? nasa.negative.requestsPerSecond / nasa.plain!.requestsPerSecond : null,
      nasa !== undefined
        ? `${fixed(nasa.negative.requestsPerSecond)} / ${fixed(nasa.plain!.requestsPerSecond)} req/s at ${nasa.negative.connections} connections`
        : 'not measured',
    ),
    target(
      'service-vs-pytorch',
      'service saturation throughput / PyTorch eager best throughput (best of the thread counts and batch sizes measured)',
      'ratio',
      '>=',
      3,
      saturation !== undefined && pytorch !== null ? saturation.imagesPerSecond / pytorch.best.imagesPerSecond : null,
      saturation !== undefined && pytorch !== null
        ? `${fixed(saturation.imagesPerSecond)} img/s / ${fixed(pytorch.best.imagesPerSecond)} img/s (torch, ${pytorch.best.threads} thread(s), batch ${pytorch.best.batch})`
        : 'not measured',
    ),
    target(
      'soak-rss-growth',
      'soak: RSS growth after warm-up (median of the last window / median of the first window after warm-up - 1)',
      'fraction',
      '<=',
      0.1,
      soak !== null ? soak.growth : null,
      soak !== null ? `${fixed(soak.baselineRssMiB)} MiB -> ${fixed(soak.finalRssMiB)} MiB over ${soak.seconds} s (peak ${fixed(soak.peakRssMiB)} MiB)` : 'not measured',
    ),
    target(
      'soak-5xx',
      'soak: 5xx responses',
      'count',
      '<=',
      0,
      soak !== null ? soak.status5xx : null,
      soak !== null ? `${soak.load.responses} responses at ${soak.targetRate} req/s (target), non-2xx ${soak.load.non2xx}, errors ${soak.load.errors}` : 'not measured',
    ),
  ];
}
