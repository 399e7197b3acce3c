// results.json -> report.md and its SVG plots, all in one folder (the report links the plots by file name).
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DEFAULT_INTRA_OP_WAIT, INTRA_OP_WAITS } from '../../src/engine/intra-op-wait.js';
import { PNG_WRITER_MAX_PIXELS } from '../../src/images/image-encoder.js';
import type { BatchTiming } from './engine-throughput.js';
import type { Cell } from './load.js';
import { CONFIGS, SCENARIOS, type ConfigName, type ScenarioName } from './plan.js';
import { engineBest, saturationCell, type SuiteResults, type Target } from './results.js';
import { round } from './stats.js';
import { lineChart, stackedBars, type Series } from './svg-plot.js';
import { PHASES } from './timings.js';

const PLOTS = {
  engine: 'engine-vs-pytorch.svg',
  latency: 'latency-vs-throughput.svg',
  timings: 'time-per-request.svg',
  soak: 'soak-rss.svg',
} as const;

const num = (value: number | null | undefined, digits = 3): string => {
  if (value === null || value === undefined || !Number.isFinite(value)) return '–';
  return String(digits === 3 ? round(value) : Number(value.toFixed(digits)));
};
const percent = (fraction: number): string => (Number.isFinite(fraction) ? `${Math.round(fraction * 100)}%` : '–');

function table(header: string[], rows: (string | number)[][]): string {
  const line = (cells: (string | number)[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

function verdict(target: Target): string {
  if (target.pass === null) return 'not measured';
  return target.pass ? '**pass**' : '**miss**';
}

function targetValue(target: Target): string {
  if (target.value === null) return '–';
  if (target.unit === 'fraction') return `${(target.value * 100).toFixed(1)}%`;
  if (target.unit === 'ratio') return `${target.value.toFixed(2)}x`;
  if (target.unit === 'ms') return `${target.value.toFixed(2)} ms`;
  return String(target.value);
}

function thresholdText(target: Target): string {
  const value = target.unit === 'fraction' ? `${target.threshold * 100}%` : target.unit === 'ratio' ? `${target.threshold}x` : target.unit === 'ms' ? `${target.threshold} ms` : String(target.threshold);
  return `${target.comparison === '>=' ? '≥' : '≤'} ${value}`;
}

function batchHistogram(cell: Cell): string {
  return cell.batchSizes.histogram
    .filter((bucket) => bucket.count > 0)
    .map((bucket) => `${bucket.rows}:${bucket.count}`)
    .join(' ');
}

function cellRow(cell: Cell): (string | number)[] {
  const lookups = cell.cache.hits + cell.cache.misses;
  return [
    cell.config,
    cell.scenario,
    cell.connections,
    num(cell.requestsPerSecond),
    num(cell.imagesPerSecond),
    num(cell.latencyMs.p50),
    num(cell.latencyMs.p90),
    num(cell.latencyMs.p99),
    num(cell.latencyMs.max),
    cell.non2xx + cell.errors,
    num(cell.batchSizes.meanRows),
    batchHistogram(cell) || '–',
    num(cell.meanGenerateMs),
    lookups > 0 ? percent(cell.cache.hits / lookups) : '–',
    percent(cell.engineBusy),
    num(cell.serverCpuCores),
    num(cell.clientCpuCores),
    num(cell.eventLoopLagP99Ms),
  ];
}

const CELL_HEADER = [
  'config',
  'scenario',
  'conns',
  'req/s',
  'img/s',
  'p50 ms',
  'p90 ms',
  'p99 ms',
  'max ms',
  'non-2xx + errors',
  'mean batch',
  'batch sizes (rows:batches)',
  'generate ms / batch',
  'cache hits',
  'engine busy',
  'server CPU (cores)',
  'client CPU (cores)',
  'event-loop p99 ms',
];

function timingPoints(timings: readonly BatchTiming[]): { x: number; y: number }[] {
  return timings.map((timing) => ({ x: timing.batch, y: timing.imagesPerSecond }));
}

function enginePlot(results: SuiteResults): string | undefined {
  const series: Series[] = [];
  if (results.engine !== null) series.push({ name: 'onnxruntime engine', points: timingPoints(results.engine.batches) });
  for (const other of results.engine?.otherWaits ?? []) {
    series.push({ name: `engine, intra-op wait ${other.wait}`, points: timingPoints(other.batches), dashed: true });
  }
  if (results.pytorch !== null && 'runs' in results.pytorch) {
    for (const run of results.pytorch.runs) series.push({ name: `PyTorch eager, ${run.threads} thr`, points: timingPoints(run.batches) });
  }
  const saturation = saturationCell(results.service);
  const batches = series.flatMap((entry) => entry.points.map((point) => point.x));
  if (saturation !== undefined && batches.length > 0) {
    series.push({
      name: 'service saturation',
      points: [
        { x: Math.min(...batches), y: saturation.imagesPerSecond },
        { x: Math.max(...batches), y: saturation.imagesPerSecond },
      ],
      dashed: true,
      markers: false,
    });
  }
  if (series.length === 0) return undefined;
  return lineChart({
    title: `Throughput by batch size (${results.model.id})`,
    xLabel: 'batch size (images per call)',
    yLabel: 'images / s',
    xScale: 'log2',
    yScale: 'log10',
    series,
  });
}

function latencyPlot(results: SuiteResults): string | undefined {
  const series: Series[] = [];
  const configs = [...new Set(results.service.map((cell) => cell.config))];
  configs.forEach((config, color) => {
    const cells = results.service.filter((cell) => cell.config === config && cell.scenario === 'repeated').sort((a, b) => a.connections - b.connections);
    if (cells.length === 0) return;
    series.push({ name: `${config} p50`, color, points: cells.map((cell) => ({ x: cell.requestsPerSecond, y: cell.latencyMs.p50, label: `c=${cell.connections}` })) });
    series.push({ name: `${config} p99`, color, points: cells.map((cell) => ({ x: cell.requestsPerSecond, y: cell.latencyMs.p99 })), dashed: true });
  });
  if (series.length === 0) return undefined;
  return lineChart({
    title: 'Latency vs throughput (repeated prompt, 1 image per request)',
    xLabel: 'throughput (requests / s)',
    yLabel: 'latency (ms)',
    xFromZero: true,
    yScale: 'log10',
    series,
  });
}

const TIMING_SEGMENTS = ['receive', 'queue', 'encode', 'generate', 'image', 'other', 'serialise', 'outside'] as const;

function timingsPlot(results: SuiteResults): string | undefined {
  if (results.timings.length === 0) return undefined;
  return stackedBars({
    title: 'Where a request spends its time (mean ms)',
    xLabel: 'milliseconds (client-measured total at the end of each bar)',
    segments: ['receive (body, validation)', 'queue', 'encode', 'generate', 'image', 'other pipeline', 'serialise', 'outside (HTTP, loopback, client)'],
    bars: results.timings.map((sample) => ({ label: sample.label, values: TIMING_SEGMENTS.map((phase) => sample.meanMs[phase]) })),
  });
}

function soakPlot(results: SuiteResults): string | undefined {
  const { soak } = results;
  if (soak === null || soak.points.length === 0) return undefined;
  return lineChart({
    title: `Soak: server memory at ${soak.targetRate} req/s`,
    xLabel: 'seconds',
    yLabel: 'MiB',
    series: [
      { name: 'RSS (/proc)', points: soak.points.map((point) => ({ x: point.t, y: point.rssMiB })), markers: false },
      { name: 'V8 heap used', points: soak.heap.map((point) => ({ x: point.t, y: point.heapUsedMiB })) },
    ],
  });
}

function engineTable(results: SuiteResults): string {
  const columns: { name: string; timings: BatchTiming[] }[] = [];
  if (results.engine !== null) columns.push({ name: 'engine', timings: results.engine.batches });
  for (const other of results.engine?.otherWaits ?? []) columns.push({ name: `engine ${other.wait}`, timings: other.batches });
  if (results.engine !== null && results.engine.recheck.length > 0) columns.push({ name: 'engine again', timings: results.engine.recheck });
  if (results.pytorch !== null && 'runs' in results.pytorch) {
    for (const run of results.pytorch.runs) columns.push({ name: `PyTorch ${run.threads} thr`, timings: run.batches });
  }
  const batches = [...new Set(columns.flatMap((column) => column.timings.map((timing) => timing.batch)))].sort((a, b) => a - b);
  const rows = batches.map((batch) => [
    batch,
    ...columns.flatMap((column) => {
      const timing = column.timings.find((candidate) => candidate.batch === batch);
      return timing === undefined ? ['–', '–', '–'] : [`${num(timing.medianMs)} (p90 ${num(timing.p90Ms)})`, num(timing.imagesPerSecond), num(timing.cpuCores)];
    }),
  ]);
  return table(['batch', ...columns.flatMap((column) => [`${column.name} median ms`, `${column.name} img/s`, `${column.name} CPU cores`])], rows);
}

/** What each other --intra-op-wait mode (a configuration of the same name) does at one connection, in CPU and at saturation, against the default. */
function intraOpWaitTradeOffs(results: SuiteResults): string[] {
  const cell = (config: string, connections: number) =>
    results.service.find((candidate) => candidate.config === config && candidate.scenario === 'repeated' && candidate.connections === connections);
  const cpuMsPerRequest = (c: Cell) => (c.serverCpuCores / c.requestsPerSecond) * 1000;
  const engineBatch1 = (timings: readonly BatchTiming[] | undefined) => timings?.find((timing) => timing.batch === 1)?.medianMs;
  const defaultWait = results.engine?.intraOpWait ?? DEFAULT_INTRA_OP_WAIT;
  return INTRA_OP_WAITS.filter((wait) => wait !== defaultWait).flatMap((wait) => {
    const [other1, default1] = [cell(wait, 1), cell('batch-on', 1)];
    if (other1 === undefined || default1 === undefined) return [];
    const [engineOther, engineDefault] = [engineBatch1(results.engine?.otherWaits.find((other) => other.wait === wait)?.batches), engineBatch1(results.engine?.batches)];
    const saturation = Math.max(...results.service.filter((c) => c.config === wait).map((c) => c.connections));
    const [otherSat, defaultSat] = [cell(wait, saturation), cell('batch-on', saturation)];
    return [
      `--intra-op-wait=${wait} against the default (${defaultWait}): one-connection p50 ${num(other1.latencyMs.p50)} ms against ${num(default1.latencyMs.p50)} ms` +
        (engineOther !== undefined && engineDefault !== undefined ? ` (raw engine batch 1: ${num(engineOther)} against ${num(engineDefault)} ms)` : '') +
        `, for ${num(cpuMsPerRequest(other1))} against ${num(cpuMsPerRequest(default1))} ms of server CPU per request` +
        (otherSat !== undefined && defaultSat !== undefined && saturation > 1
          ? `; at ${saturation} connections ${num(otherSat.requestsPerSecond)} against ${num(defaultSat.requestsPerSecond)} req/s.`
          : '.'),
    ];
  });
}

/** Plain-language readings of the numbers that decide the targets: contention, batch sizes, event-loop bursts. */
function diagnose(results: SuiteResults): string[] {
  const lines: string[] = [];
  const saturation = saturationCell(results.service);
  if (saturation !== undefined && results.engine !== null) {
    const nearest = results.engine.batches.reduce((best, timing) =>
      Math.abs(Math.log(timing.batch / saturation.batchSizes.meanRows)) < Math.abs(Math.log(best.batch / saturation.batchSizes.meanRows)) ? timing : best,
    );
    lines.push(
      `At saturation (${saturation.connections} connections) the service ran batches of ${num(saturation.batchSizes.meanRows)} images on average, ` +
        `${num(saturation.meanGenerateMs)} ms each (engine busy ${percent(saturation.engineBusy)}); the raw engine took ${num(nearest.meanMs)} ms at batch ${nearest.batch}: ` +
        `${num(saturation.meanGenerateMs / nearest.meanMs)}x inside the service. The server process got ${num(saturation.serverCpuCores)} cores, ` +
        `the raw engine ${num(nearest.cpuCores)}, the load generator ${num(saturation.clientCpuCores)}.`,
    );
  }
  if (results.health !== null) {
    lines.push(
      `While /healthz was probed, the server's event-loop delay p99 was ${num(results.health.generate.eventLoopLagP99Ms)} ms with batches of ` +
        `${num(results.health.generate.batchSizes.meanRows)} images: each finished batch answers that many requests on the HTTP thread ` +
        '(image encoding, JSON serialisation, socket writes, log lines; one request per turn of the event loop), and that thread shares the cores with the engine.',
    );
  }
  if (results.latency !== null) {
    const { latency } = results;
    lines.push(
      `One connection (interleaved with the raw engine): POST /generate p50 ${num(latency.serviceMs.p50)} ms against the engine's batch-1 p50 ${num(latency.engineMs.p50)} ms, ` +
        `${num(latency.gapMs)} ms more; an empty round trip on the same connection (GET /healthz) takes ${num(latency.healthzMs.p50)} ms of that.`,
    );
  }
  lines.push(...intraOpWaitTradeOffs(results));
  const loadBefore = results.machine.loadAverageBefore[0]!;
  if (loadBefore > results.machine.cpus * 0.5) {
    lines.push(`The machine was busy before the run started (1-minute load ${loadBefore.toFixed(2)} on ${results.machine.cpus} cores): absolute numbers and ratios are both affected.`);
  }
  return lines;
}

export function renderMarkdown(results: SuiteResults, plots: Partial<Record<keyof typeof PLOTS, boolean>>): string {
  const { machine, model, plan } = results;
  const lines: string[] = [];
  const push = (...text: string[]) => lines.push(...text);
  push(`# snoopi-serve benchmark (${results.kind})`, '');
  if (results.note !== null) push(`> **Caveat: ${results.note}**`, '');
  push(
    `Taken ${results.startedAt} (${Math.round(results.wallSeconds)} s) on ${machine.cpus} x ${machine.cpuModel}, ${machine.memoryGiB.toFixed(0)} GiB, ${machine.platform}; ` +
      `load average ${machine.loadAverageBefore.map((value) => value.toFixed(2)).join(' / ')} before, ${machine.loadAverageAfter.map((value) => value.toFixed(2)).join(' / ')} after (1 / 5 / 15 min). ` +
      `Node ${machine.node}, ${Object.entries(machine.versions).map(([name, version]) => `${name} ${version}`).join(', ')}. ` +
      `Commit ${results.git.commit ?? 'unknown'}${results.git.dirty ? ' (with uncommitted changes)' : ''}.`,
    '',
    `Model: **${model.id}** (${model.displayName}; ${model.backbone}, ${model.method}, ${model.trainingSteps} training steps), ` +
      `${model.image.width}x${model.image.height} images from ${model.latent.channels}x${model.latent.height}x${model.latent.width} latents, package ${model.packageDir}.`,
    '',
    `Rerun: \`npm run bench\` (quick) or \`npm run bench:full\`; flags: \`node dist/bench/suite.js --help\`. Every number below is in results.json.`,
    '',
    '## Targets',
    '',
    'Ratios are taken between measurements of this one run. Reported, not asserted.',
    '',
    table(
      ['target', 'measured', 'goal', 'verdict', 'from'],
      results.targets.map((target) => [target.description, targetValue(target), thresholdText(target), verdict(target), target.detail]),
    ),
    '',
  );

  const diagnostics = diagnose(results);
  if (diagnostics.length > 0) push('Reading this run:', '', ...diagnostics.map((line) => `- ${line}`), '');

  push('## Raw engine and PyTorch eager', '');
  if (results.engine !== null) {
    push(
      `The generator graph through src/engine (worker thread, onnxruntime CPU provider, intra-op threads ${results.engine.intraOpThreads}, intra-op wait ${results.engine.intraOpWait}), ` +
        `timed for ≥ ${plan.engine.secondsPerBatch} s and ≥ ${plan.engine.minRuns} calls per batch size after two warm-up calls ` +
        '(CPU cores: CPU time of the timing process, every thread, over wall time -- the cores it actually got). ' +
        `Best: ${num(results.engine.best.imagesPerSecond)} img/s at batch ${results.engine.best.batch}. ` +
        (results.engine.recheck.length > 0
          ? `"engine again": batch 1 and the best batch timed once more at the end of the run; the saturation targets use the faster best batch of the two (${num(engineBest(results.engine).imagesPerSecond)} img/s).`
          : ''),
      '',
    );
  }
  if (results.pytorch !== null && 'skipped' in results.pytorch) push(`PyTorch baseline skipped: ${results.pytorch.skipped}`, '');
  if (results.pytorch !== null && 'runs' in results.pytorch) {
    const { pytorch } = results;
    push(
      `PyTorch eager: trainer.generator.Generator (the module exported as generator.onnx), ${pytorch.weights}, ${pytorch.parameters.toLocaleString('en-US')} parameters, ` +
        `torch ${pytorch.torch} (BLAS ${pytorch.blas}${pytorch.openblasCoretype !== null ? `, OPENBLAS_CORETYPE=${pytorch.openblasCoretype}` : ''}${pytorch.ompWaitPolicy !== null ? `, OMP_WAIT_POLICY=${pytorch.ompWaitPolicy}` : ''}), ` +
        `inference_mode, thread counts ${pytorch.runs.map((run) => run.threads).join(' and ')}, same timing rule (≥ ${plan.pytorch.secondsPerBatch} s, ≥ ${plan.pytorch.minRuns} calls). ` +
        `Best: ${num(pytorch.best.imagesPerSecond)} img/s (${pytorch.best.threads} thread(s), batch ${pytorch.best.batch}).`,
      '',
    );
  }
  if (results.parity !== null) {
    push(
      `Same weights: PyTorch and the engine given the same batch of ${results.parity.batch} (one row with NASA scale 0, one with NASA on) differ by at most ` +
        `${results.parity.maxAbsDiff} grey level(s) (${results.parity.differing} of ${results.parity.channels} channels differ at all).`,
      '',
    );
  }
  if (results.engine !== null || (results.pytorch !== null && 'runs' in results.pytorch)) push(engineTable(results), '');
  if (plots.engine) push(`![throughput by batch size](${PLOTS.engine})`, '');

  if (results.service.length > 0) {
    push(
      '## The service under load',
      '',
      `autocannon (programmatic, in the bench process) against \`node dist/src/cli.js serve\` in a child process on loopback; ` +
        `${num(plan.service.cellSeconds)} s per cell after a ${plan.service.warmupSeconds} s warm-up per server. Latencies are client-side, 2xx only. ` +
        'Batch sizes, generator time per batch (compare with the raw engine at the same batch size), cache hits, engine busy time (generator seconds / wall seconds) ' +
        'and event-loop delay come from /metrics scraped before and after each cell; ' +
        'CPU from /proc (server: every thread of the process; client: the bench process).',
      '',
      'Configurations:',
      '',
      ...Object.entries(results.serverFlags).map(
        ([config, flags]) => `- **${config}**: ${CONFIGS[config as ConfigName].description}. Flags: \`${flags!.filter((flag) => !flag.startsWith('--models-dir')).join(' ')}\``,
      ),
      '',
      'Scenarios:',
      '',
      ...[...new Set(results.service.map((cell) => cell.scenario))].map((scenario) => `- **${scenario}**: ${SCENARIOS[scenario as ScenarioName]}`),
      '',
      table(CELL_HEADER, results.service.map(cellRow)),
      '',
    );
    if (plots.latency) push(`![latency vs throughput](${PLOTS.latency})`, '');
  }

  if (results.health !== null) {
    const { health } = results;
    push(
      '## /healthz under saturation',
      '',
      `A second autocannon instance probed GET /healthz with ${health.probe.connections} connections at ${health.probe.ratePerConnection} req/s each while /generate ran at ${health.generate.connections} connections.`,
      '',
      table(
        ['probe responses', 'non-2xx + errors', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms', '/generate req/s meanwhile', '/generate p99 ms'],
        [
          [
            health.healthz.responses,
            health.healthz.non2xx + health.healthz.errors,
            num(health.healthz.latencyMs.p50),
            num(health.healthz.latencyMs.p90),
            num(health.healthz.latencyMs.p99),
            num(health.healthz.latencyMs.max),
            num(health.generate.requestsPerSecond),
            num(health.generate.latencyMs.p99),
          ],
        ],
      ),
      '',
    );
  }

  if (results.timings.length > 0) {
    push(
      '## Where a request spends its time',
      '',
      'From the Server-Timing header of requests sent with fetch (repeated prompt): receive (from Fastify receiving the request to the route handler: body, validation, hooks), ' +
        "queue (waiting for a batch), encode (tokenize + text embeddings through the cache), generate (the batch's generator call), image (PNG encoding), " +
        "other (the rest of the service's pipeline: checks, seeded noise, model lease, awaits), total (the service's pipeline), serialise (the answer object, base64 and JSON, until onSend); " +
        'client is what fetch measured, and outside = client - receive - total - serialise (Node\'s HTTP parsing, the socket write, loopback, thread wake-ups, the client). Means in ms, medians in brackets:',
      '',
      table(
        ['sample', 'requests', ...PHASES],
        results.timings.map((sample) => [sample.label, sample.samples, ...PHASES.map((phase) => `${num(sample.meanMs[phase])} (p50 ${num(sample.p50Ms[phase])})`)]),
      ),
      '',
    );
    if (plots.timings) push(`![time per request](${PLOTS.timings})`, '');
  }

  if (results.latency !== null) {
    const { latency } = results;
    push(
      '## One connection against the raw engine, interleaved',
      '',
      `The single-connection target, measured so that drift in the machine's load falls on both sides alike: ${latency.rounds} rounds, each a block of ${latency.callsPerBlock} ` +
        `batch-1 calls of the raw engine (in the bench process, NASA scale 0 like the service's request), ${latency.callsPerBlock} sequential POST /generate ` +
        `(repeated prompt, JSON answer) and ${latency.callsPerBlock} GET /healthz on one keep-alive connection (node:http). /healthz is an HTTP round trip with ` +
        'no work behind it: the floor of any request on this machine.',
      '',
      table(
        ['calls', 'count', 'p50 ms', 'p90 ms', 'mean ms', 'max ms'],
        (
          [
            ['raw engine, batch 1', latency.engineMs],
            ['POST /generate', latency.serviceMs],
            ['GET /healthz', latency.healthzMs],
          ] as const
        ).map(([name, stats]) => [name, stats.count, num(stats.p50), num(stats.p90), num(stats.mean), num(stats.max)]),
      ),
      '',
    );
  }

  if (results.imageEncoding !== null) {
    push(
      '## Image encoding',
      '',
      `One image at a time after 20 warm-up calls ("service png" is src/images/png-writer.ts up to ${PNG_WRITER_MAX_PIXELS} pixels, sharp beyond); ${plan.images.rounds} timed calls for 64x64 images, proportionally fewer (at least 10) for larger ones.`,
      '',
      table(
        ['images', 'encoder', 'size', 'median ms', 'p90 ms', 'mean bytes'],
        results.imageEncoding.map((timing) => [timing.images, timing.encoder, `${timing.width}x${timing.height}`, num(timing.medianMs), num(timing.p90Ms), Math.round(timing.meanBytes)]),
      ),
      '',
    );
  }

  if (results.soak !== null) {
    const { soak } = results;
    push(
      '## Soak',
      '',
      `${soak.seconds} s at ${soak.targetRate} req/s (${plan.soak.loadFraction} x the ${num(soak.saturationRate)} req/s saturation measured in this run), ${soak.connections} connections, repeated prompt, ` +
        `on a fresh batch-on server. Achieved ${num(soak.load.perSecond)} req/s; ${soak.load.responses} responses, ${soak.status5xx} 5xx, ${soak.load.non2xx} non-2xx, ${soak.load.errors} errors; ` +
        `latency p50 ${num(soak.load.latencyMs.p50)} ms, p99 ${num(soak.load.latencyMs.p99)} ms. ` +
        `RSS after a ${num(soak.warmupSeconds)} s warm-up ${num(soak.baselineRssMiB)} MiB, at the end ${num(soak.finalRssMiB)} MiB (${(soak.growth * 100).toFixed(1)}%), peak ${num(soak.peakRssMiB)} MiB.`,
      '',
    );
    if (plots.soak) push(`![soak RSS](${PLOTS.soak})`, '');
  }

  if (results.profiles.length > 0) {
    push(
      '## CPU profiles of the servers (node --cpu-prof)',
      '',
      'Self time of the busiest categories and functions, per server and thread (0 = the HTTP thread), as a share of non-idle samples, and a flame graph of each thread (bench/lib/flame-graph.ts).',
      '',
    );
    for (const profile of results.profiles) {
      push(
        `### ${profile.config}, thread ${profile.thread} (busy ${num(profile.busyMs / 1000)} s of ${num(profile.wallMs / 1000)} s)`,
        '',
        table(['category', 'self ms', 'share'], profile.categories.slice(0, 10).map((entry) => [entry.name, Math.round(entry.selfMs), percent(entry.share)])),
        '',
        table(['function', 'self ms', 'share'], profile.functions.slice(0, 12).map((entry) => [`\`${entry.name}\``, Math.round(entry.selfMs), percent(entry.share)])),
        '',
      );
      if (profile.flameGraph !== undefined) push(`Flame graph (hover a box for its time): [${profile.flameGraph}](${profile.flameGraph})`, '');
    }
  }
  return `${lines.join('\n')}\n`;
}

export async function writeReport(results: SuiteResults, out: string): Promise<void> {
  await writeFile(join(out, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
  const charts: Record<keyof typeof PLOTS, string | undefined> = {
    engine: enginePlot(results),
    latency: latencyPlot(results),
    timings: timingsPlot(results),
    soak: soakPlot(results),
  };
  const written: Partial<Record<keyof typeof PLOTS, boolean>> = {};
  for (const [name, svg] of Object.entries(charts) as [keyof typeof PLOTS, string | undefined][]) {
    if (svg === undefined) continue;
    await writeFile(join(out, PLOTS[name]), svg);
    written[name] = true;
  }
  await writeFile(join(out, 'report.md'), renderMarkdown(results, written));
}
