// What one run of the suite measures: the server configurations, the request scenarios, the grid of
// (configuration, scenario, connections) cells and the time given to each part. `quick` is `npm run bench` (about
// 3-5 minutes), `full` is `npm run bench:full` (about 25 minutes, soak included).
import type { ModelManifest } from '../../src/registry/model-manifest.js';

export const CONFIGS = {
  'batch-on': { description: 'micro-batching on (the default --max-batch=16), embedding cache on (default 64 MiB)', flags: [] },
  'batch-off': { description: 'micro-batching off (--max-batch=1), embedding cache on', flags: ['--max-batch=1'] },
  'cache-off': { description: 'embedding cache off (--cache-bytes=1024: smaller than one embedding), batching on', flags: ['--cache-bytes=1024'] },
  'batch-64': { description: 'micro-batching up to 64 images (--max-batch=64), cache on', flags: ['--max-batch=64'] },
  block: {
    description: 'batching and cache on, idle onnxruntime intra-op threads sleep (--intra-op-wait=block), also between the operators of a call',
    flags: ['--intra-op-wait=block'],
  },
  spin: {
    description: 'batching and cache on, idle onnxruntime intra-op threads busy-wait, also after each call (--intra-op-wait=spin)',
    flags: ['--intra-op-wait=spin'],
  },
  'threads-1': {
    description: 'batching and cache on, one onnxruntime intra-op thread (--intra-op-threads=1): a core left for HTTP and image encoding',
    flags: ['--intra-op-threads=1'],
  },
} as const satisfies Record<string, { description: string; flags: readonly string[] }>;

export type ConfigName = keyof typeof CONFIGS;

/** Flags every configuration shares: a queue long enough that no bench cell is refused with 429. */
export const COMMON_FLAGS = ['--max-queue-rows=4096'] as const;

export const SCENARIOS = {
  repeated: 'one prompt on every request (embedding cache hits), PNG in JSON',
  unique: 'a different prompt on every request ("<n> a red circle": embedding cache misses), PNG in JSON',
  negative: 'the repeated prompt plus a negative prompt with NASA on every request',
  'images-4': 'the repeated prompt, num_images 4 (throughput counted in images)',
  jpeg: 'the repeated prompt, format jpeg (quality 90)',
  webp: 'the repeated prompt, format webp (quality 90)',
  'png-raw': 'the repeated prompt, Accept: image/png (the image bytes, no JSON or base64)',
} as const;

export type ScenarioName = keyof typeof SCENARIOS;

export const REPEATED_PROMPT = 'a red circle on a white background';
export const NEGATIVE_PROMPT = 'blue';

export interface ScenarioRequest {
  /** The same body on every request, or a fresh one per request. */
  body: string | (() => string);
  headers: Record<string, string>;
  imagesPerRequest: number;
}

// Unique prompts put a counter first: prompts are cut at the model's max_length (32 tokens for the shapes models), so
// a unique suffix (autocannon's [<id>] replacement) could be cut off and every prompt would share one cache entry.
// One counter for the whole process, so that a later cell never meets a prompt an earlier one cached.
let uniquePrompts = 0;
const uniquePrompt = (): string => `${++uniquePrompts} a red circle`;

/** The NASA scale of the negative scenario: the model's default, or half its maximum when the default is 0. */
export function negativeScale(manifest: ModelManifest): number {
  return manifest.nasa.default_scale > 0 ? manifest.nasa.default_scale : manifest.nasa.max_scale / 2;
}

export function scenarioRequest(scenario: ScenarioName, manifest: ModelManifest): ScenarioRequest {
  const json = { 'content-type': 'application/json' };
  const plain = (extra: object, imagesPerRequest = 1, headers: Record<string, string> = json): ScenarioRequest => ({
    body: JSON.stringify({ prompt: REPEATED_PROMPT, ...extra }),
    headers,
    imagesPerRequest,
  });
  switch (scenario) {
    case 'repeated':
      return plain({});
    case 'unique':
      return { ...plain({}), body: () => JSON.stringify({ prompt: uniquePrompt() }) };
    case 'negative':
      return plain({ negative_prompt: NEGATIVE_PROMPT, negative_scale: negativeScale(manifest) });
    case 'images-4':
      return plain({ num_images: 4 }, 4);
    case 'jpeg':
      return plain({ format: 'jpeg' });
    case 'webp':
      return plain({ format: 'webp' });
    case 'png-raw':
      return plain({}, 1, { ...json, accept: 'image/png' });
  }
}

export interface CellGroup {
  config: ConfigName;
  scenario: ScenarioName;
  connections: number[];
}

export type Section = 'pytorch' | 'engine' | 'images' | 'service' | 'health' | 'timings' | 'latency' | 'soak';
export const SECTIONS: readonly Section[] = ['pytorch', 'engine', 'images', 'service', 'health', 'timings', 'latency', 'soak'];

export interface Plan {
  kind: 'quick' | 'full' | 'smoke';
  sections: Section[];
  engine: { batches: number[]; secondsPerBatch: number; minRuns: number; otherWaitBatches: number[] };
  pytorch: { batches: number[]; secondsPerBatch: number; minRuns: number; threads: number[] };
  images: { rounds: number; sweep: boolean };
  service: { cellSeconds: number; warmupSeconds: number; groups: CellGroup[] };
  /** /healthz probed while /generate is saturated (batch-on, repeated prompt). */
  health: { seconds: number; generateConnections: number; probeConnections: number; probeRatePerConnection: number };
  /** Server-Timing sampled with fetch: sequential requests, then `loadedInFlight` concurrent loops. */
  timings: { requests: number; loadedInFlight: number };
  /** One connection against the raw engine, interleaved: `rounds` x (engine, POST /generate, GET /healthz blocks). */
  latency: { rounds: number; callsPerBlock: number };
  /** 0: no soak. */
  soak: { seconds: number; loadFraction: number; connections: number; sampleSeconds: number };
}

const QUICK_SATURATION = 64;

export function quickPlan(): Plan {
  return {
    kind: 'quick',
    sections: ['pytorch', 'engine', 'images', 'service', 'health', 'timings', 'latency'],
    engine: { batches: [1, 2, 4, 8, 16, 32, 64], secondsPerBatch: 1, minRuns: 5, otherWaitBatches: [1, 16] },
    pytorch: { batches: [1, 4, 16, 64], secondsPerBatch: 1.5, minRuns: 2, threads: [2, 1] },
    images: { rounds: 200, sweep: false },
    service: {
      cellSeconds: 5,
      warmupSeconds: 2,
      groups: [
        // The latency-throughput curve of the default service, and the scenarios at saturation.
        { config: 'batch-on', scenario: 'repeated', connections: [1, 4, 16, QUICK_SATURATION] },
        { config: 'batch-on', scenario: 'unique', connections: [QUICK_SATURATION] },
        { config: 'batch-on', scenario: 'negative', connections: [QUICK_SATURATION] },
        { config: 'batch-on', scenario: 'images-4', connections: [16] },
        { config: 'batch-on', scenario: 'jpeg', connections: [QUICK_SATURATION] },
        { config: 'batch-on', scenario: 'webp', connections: [QUICK_SATURATION] },
        // What batching buys: the same curve without it.
        { config: 'batch-off', scenario: 'repeated', connections: [1, 16, QUICK_SATURATION] },
        // What the cache buys: the text encoder on every request.
        { config: 'cache-off', scenario: 'repeated', connections: [QUICK_SATURATION] },
        { config: 'cache-off', scenario: 'unique', connections: [QUICK_SATURATION] },
        // The default's intra-op wait (spin-in-call) against the other two, at one connection and at saturation.
        { config: 'block', scenario: 'repeated', connections: [1, QUICK_SATURATION] },
        { config: 'spin', scenario: 'repeated', connections: [1, QUICK_SATURATION] },
      ],
    },
    health: { seconds: 5, generateConnections: QUICK_SATURATION, probeConnections: 4, probeRatePerConnection: 50 },
    timings: { requests: 100, loadedInFlight: 16 },
    latency: { rounds: 10, callsPerBlock: 30 },
    soak: { seconds: 0, loadFraction: 0.8, connections: QUICK_SATURATION, sampleSeconds: 1 },
  };
}

export function fullPlan(): Plan {
  const curve = [1, 2, 4, 8, 16, 32, 64, 128];
  const points = [1, 16, 64];
  return {
    kind: 'full',
    sections: [...SECTIONS],
    engine: { batches: [1, 2, 4, 8, 16, 32, 64], secondsPerBatch: 3, minRuns: 10, otherWaitBatches: [1, 16] },
    pytorch: { batches: [1, 2, 4, 8, 16, 32, 64], secondsPerBatch: 3, minRuns: 3, threads: [2, 1] },
    images: { rounds: 300, sweep: true },
    service: {
      cellSeconds: 10,
      warmupSeconds: 3,
      groups: [
        { config: 'batch-on', scenario: 'repeated', connections: curve },
        ...(['unique', 'negative', 'images-4', 'jpeg', 'webp', 'png-raw'] as const).map((scenario) => ({
          config: 'batch-on' as const,
          scenario,
          connections: points,
        })),
        ...(['batch-off', 'cache-off', 'batch-64', 'threads-1', 'block', 'spin'] as const).flatMap((config) => [
          { config, scenario: 'repeated' as const, connections: curve },
          { config, scenario: 'unique' as const, connections: points },
        ]),
      ],
    },
    health: { seconds: 10, generateConnections: 64, probeConnections: 4, probeRatePerConnection: 50 },
    timings: { requests: 300, loadedInFlight: 16 },
    latency: { rounds: 20, callsPerBlock: 40 },
    soak: { seconds: 600, loadFraction: 0.8, connections: 64, sampleSeconds: 1 },
  };
}

/** The smallest grid that exercises every section (test/bench-smoke.test.ts): about a second per part. */
export function smokePlan(): Plan {
  return {
    kind: 'smoke',
    sections: [...SECTIONS],
    engine: { batches: [1, 2], secondsPerBatch: 0.2, minRuns: 3, otherWaitBatches: [1] },
    pytorch: { batches: [1], secondsPerBatch: 0.1, minRuns: 1, threads: [1] },
    images: { rounds: 5, sweep: false },
    service: {
      cellSeconds: 1,
      warmupSeconds: 1,
      groups: [
        { config: 'batch-on', scenario: 'repeated', connections: [1, 4] },
        { config: 'batch-on', scenario: 'negative', connections: [4] },
      ],
    },
    health: { seconds: 1, generateConnections: 4, probeConnections: 1, probeRatePerConnection: 20 },
    timings: { requests: 4, loadedInFlight: 2 },
    latency: { rounds: 2, callsPerBlock: 2 },
    soak: { seconds: 2, loadFraction: 0.5, connections: 2, sampleSeconds: 0.25 },
  };
}

export interface CliOptions {
  plan: Plan;
  model: string | undefined;
  out: string | undefined;
  note: string | undefined;
  profile: boolean;
}

export const USAGE = `node dist/bench/suite.js [flags]     (npm run bench / npm run bench:full)

  --full              the full grid, 10 s cells, image-encoder sweep, 10-minute soak
  --model=ID          the model package to measure (default: the best trained package, else shapes-fixture)
  --out=DIR           where results.json, report.md and the plots go (default bench/results/<quick|full>)
  --seconds=N         seconds per load cell (default 5 quick, 10 full)
  --soak-seconds=N    soak duration; 0 skips it (default 0 quick, 600 full)
  --only=a,b          only these sections: ${SECTIONS.join(', ')}
  --note=TEXT         a caveat printed at the top of the report (e.g. "taken on a loaded machine")
  --profile           run the servers under node --cpu-prof: per-thread self-time tables and flame graphs (SVG)`;

export function parseCli(argv: readonly string[]): CliOptions {
  const values = new Map<string, string>();
  for (const arg of argv) {
    const match = /^--([a-z-]+)(?:=(.*))?$/.exec(arg);
    if (match === null) throw new Error(`unknown argument ${JSON.stringify(arg)}\n\n${USAGE}`);
    values.set(match[1]!, match[2] ?? 'true');
  }
  const known = ['full', 'model', 'out', 'seconds', 'soak-seconds', 'only', 'note', 'profile', 'help'];
  for (const key of values.keys()) if (!known.includes(key)) throw new Error(`unknown flag --${key}\n\n${USAGE}`);
  const plan = values.has('full') ? fullPlan() : quickPlan();
  const positive = (key: string, allowZero: boolean): number | undefined => {
    const raw = values.get(key);
    if (raw === undefined) return undefined;
    const value = Number(raw);
    if (!Number.isFinite(value) || value < 0 || (!allowZero && value === 0)) throw new Error(`--${key} must be a ${allowZero ? 'non-negative' : 'positive'} number, got ${raw}`);
    return value;
  };
  const seconds = positive('seconds', false);
  if (seconds !== undefined) plan.service.cellSeconds = seconds;
  const soakSeconds = positive('soak-seconds', true);
  if (soakSeconds !== undefined) {
    plan.soak.seconds = soakSeconds;
    if (soakSeconds > 0 && !plan.sections.includes('soak')) plan.sections.push('soak');
  }
  if (plan.soak.seconds === 0) plan.sections = plan.sections.filter((section) => section !== 'soak');
  const only = values.get('only');
  if (only !== undefined) {
    const wanted = only.split(',');
    for (const section of wanted) if (!SECTIONS.includes(section as Section)) throw new Error(`--only: unknown section ${section}; known: ${SECTIONS.join(', ')}`);
    plan.sections = SECTIONS.filter((section) => wanted.includes(section));
  }
  if (plan.sections.includes('soak') && plan.soak.seconds === 0) throw new Error('the soak section needs --soak-seconds=N (N > 0)');
  return { plan, model: values.get('model'), out: values.get('out'), note: values.get('note'), profile: values.has('profile') };
}
