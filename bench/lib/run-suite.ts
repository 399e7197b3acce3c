// One run of the benchmark suite, every part in sequence on the same machine so that the ratios between them hold:
// PyTorch eager (a child process), the raw engine (a worker thread here), image encoding, then the service in a child
// process under autocannon for each server configuration, /healthz under saturation, Server-Timing samples and the
// soak. Writes results.json, report.md and the plots into `out`.
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, totalmem } from 'node:os';
import { join, relative } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { repoRoot } from '../../src/config/paths.js';
import { defaultModelId } from '../../src/registry/default-model.js';
import { loadManifest } from '../../src/registry/model-manifest.js';
import { scanPackages } from '../../src/registry/model-registry.js';
import { bestBatch, measureEngine, recheckEngine } from './engine-throughput.js';
import { measureImageEncoding } from './image-encoding.js';
import { describeCell, measureCell, runLoad, type Cell } from './load.js';
import { COMMON_FLAGS, CONFIGS, scenarioRequest, type ConfigName, type Plan } from './plan.js';
import { flameGraph } from './flame-graph.js';
import { measureInterleavedLatency, type InterleavedLatency } from './interleaved-latency.js';
import { loadProfiles, summarizeProfile } from './profile-summary.js';
import { writeReport } from './report.js';
import { evaluateTargets, RESULTS_SCHEMA_VERSION, saturationCell, type HealthResults, type PytorchResults, type PytorchRun, type SuiteResults } from './results.js';
import { ServerProcess } from './server-process.js';
import { runSoak } from './soak.js';
import { sampleTimings, type TimingSample } from './timings.js';

export interface SuiteOptions {
  plan: Plan;
  /** Model package id; default: the best trained package of the registry, else shapes-fixture. */
  model?: string;
  /** Registry root (default SNOOPI_MODELS_DIR or the repo's models/). */
  modelsDir?: string;
  /** results.json, report.md and the SVG plots go here. */
  out: string;
  /** Server logs, parity files and CPU profiles (default: bench/results/tmp/<plan kind>). */
  scratch?: string;
  note?: string;
  /** Run the servers under node --cpu-prof and summarise the profiles. */
  profile?: boolean;
  log?: (line: string) => void;
}

export const PYTHON = '/usr/bin/python3';
const PYTHON_NO_WEIGHTS_EXIT = 3;
const ENGINE_INTRA_OP_THREADS = 2; // the service's default intraOpThreads, which every bench server keeps
const GENERATED_IMAGES = 16;

/** A server's CPU profiles summarised, each with its flame graph written beside the report. */
async function profileResults(profileDir: string, config: string, out: string): Promise<SuiteResults['profiles']> {
  const results: SuiteResults['profiles'] = [];
  for (const { file, profile } of await loadProfiles(profileDir)) {
    const summary = summarizeProfile(profile, file);
    const flameFile = `flame-${config}-thread${summary.thread}.svg`;
    await writeFile(join(out, flameFile), flameGraph(profile, `${config} server, thread ${summary.thread} (0: HTTP): ${(summary.busyMs / 1000).toFixed(1)} s busy of ${(summary.wallMs / 1000).toFixed(1)} s`));
    results.push({ ...summary, config, flameGraph: flameFile });
  }
  return results;
}

/** The package the service would pick by default (src/registry/default-model.ts). */
export async function defaultModel(modelsDir: string): Promise<string> {
  const id = defaultModelId([...(await scanPackages(modelsDir)).values()].map((entry) => entry.manifest));
  if (id === undefined) throw new Error(`no model package in ${modelsDir}`);
  return id;
}

async function gitState(): Promise<SuiteResults['git']> {
  const run = promisify(execFile);
  // GIT_OPTIONAL_LOCKS=0: status must not refresh the index (the bench never writes to the repository).
  const env = { ...process.env, GIT_OPTIONAL_LOCKS: '0' };
  try {
    const commit = (await run('git', ['rev-parse', 'HEAD'], { cwd: repoRoot, env })).stdout.trim();
    const status = (await run('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: repoRoot, env })).stdout.trim();
    return { commit, dirty: status !== '' };
  } catch {
    return { commit: null, dirty: null };
  }
}

async function versions(): Promise<Record<string, string>> {
  const entries = await Promise.all(
    ['onnxruntime-node', 'sharp', 'fastify', 'autocannon'].map(async (name) => {
      const info = JSON.parse(await readFile(join(repoRoot, 'node_modules', name, 'package.json'), 'utf8')) as { version: string };
      return [name, info.version] as const;
    }),
  );
  return Object.fromEntries(entries);
}

/** What bench/pytorch_eager.py prints: the results before the best timings are picked. */
type PythonOutput = Omit<PytorchResults, 'runs' | 'best'> & { runs: Omit<PytorchRun, 'best'>[] };

async function runPytorch(plan: Plan, packageDir: string, parityDir: string, log: (line: string) => void): Promise<PytorchResults | { skipped: string }> {
  if (!existsSync(PYTHON)) return { skipped: `${PYTHON} is not installed` };
  const { batches, secondsPerBatch, minRuns, threads } = plan.pytorch;
  const args = [
    join(repoRoot, 'bench', 'pytorch_eager.py'),
    `--package=${packageDir}`,
    `--batches=${batches.join(',')}`,
    `--seconds=${secondsPerBatch}`,
    `--min-runs=${minRuns}`,
    `--threads=${threads.join(',')}`,
    `--parity-out=${parityDir}`,
  ];
  const child = spawn(PYTHON, args, { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  if (code === PYTHON_NO_WEIGHTS_EXIT) return { skipped: stderr.trim() };
  if (code !== 0) throw new Error(`bench/pytorch_eager.py exited with code ${code}:\n${stderr}`);
  const output = JSON.parse(stdout) as PythonOutput;
  const runs = output.runs.map((run) => ({ ...run, best: bestBatch(run.batches) }));
  const best = runs.map((run) => ({ ...run.best, threads: run.threads })).reduce((a, b) => (b.imagesPerSecond > a.imagesPerSecond ? b : a));
  for (const run of runs) {
    log(`pytorch ${run.threads} thread(s): ${run.batches.map((timing) => `b${timing.batch} ${timing.imagesPerSecond.toFixed(1)} img/s`).join(', ')}`);
  }
  return { ...output, runs, best };
}

async function stopServer(server: ServerProcess, config: string, log: (line: string) => void): Promise<void> {
  const code = await server.stop();
  if (code !== 0) log(`warning: the ${config} server exited with code ${code}`);
}

export async function runSuite(options: SuiteOptions): Promise<SuiteResults> {
  const { plan } = options;
  const log = options.log ?? ((line: string) => process.stdout.write(`${line}\n`));
  const startedAt = new Date();
  const started = performance.now();
  const loadAverageBefore = loadavg();
  const modelsDir = options.modelsDir ?? process.env.SNOOPI_MODELS_DIR ?? join(repoRoot, 'models');
  const modelId = options.model ?? (await defaultModel(modelsDir));
  const packageDir = join(modelsDir, modelId);
  const manifest = await loadManifest(packageDir, modelId, { verifyFiles: false });
  const scratch = options.scratch ?? join(repoRoot, 'bench', 'results', 'tmp', plan.kind);
  await rm(scratch, { recursive: true, force: true });
  await mkdir(scratch, { recursive: true });
  await mkdir(options.out, { recursive: true });
  const has = (section: Plan['sections'][number]) => plan.sections.includes(section);
  log(`bench (${plan.kind}): model ${modelId}, sections ${plan.sections.join(', ')}; results in ${options.out}`);

  // 1. PyTorch eager, first: its parity files feed the engine section.
  const parityDir = join(scratch, 'parity');
  const pytorch = has('pytorch') ? await runPytorch(plan, packageDir, parityDir, log) : null;
  if (pytorch !== null && 'skipped' in pytorch) log(`pytorch baseline skipped: ${pytorch.skipped}`);

  // 2. The raw engine (and the PyTorch/onnxruntime parity check, and images for the encoders).
  const needEngine = has('engine') || has('images');
  const engineSection = needEngine
    ? await measureEngine(packageDir, manifest, {
        intraOpThreads: ENGINE_INTRA_OP_THREADS,
        batches: has('engine') ? plan.engine.batches : [],
        secondsPerBatch: plan.engine.secondsPerBatch,
        minRuns: plan.engine.minRuns,
        otherWaitBatches: has('engine') ? plan.engine.otherWaitBatches : [],
        ...(pytorch !== null && !('skipped' in pytorch) ? { parityDir } : {}),
        imageCount: GENERATED_IMAGES,
      })
    : undefined;
  const engine = engineSection?.results ?? null;
  if (engine !== null) {
    log(`engine: ${engine.batches.map((timing) => `b${timing.batch} ${timing.medianMs.toFixed(2)} ms ${timing.imagesPerSecond.toFixed(0)} img/s`).join(', ')}`);
  }
  const parity = engineSection?.parity ?? null;
  if (parity !== null) log(`parity PyTorch vs onnxruntime: max |diff| ${parity.maxAbsDiff} grey levels over ${parity.channels} channels`);

  // 3. Image encoding.
  const imageEncoding =
    has('images') && engineSection !== undefined
      ? await measureImageEncoding(
          { name: `generated (${modelId})`, pixels: engineSection.images, width: manifest.image.width, height: manifest.image.height },
          plan.images,
        )
      : null;

  // 4. The service, one server per configuration.
  const service: Cell[] = [];
  let health: HealthResults | null = null;
  const timings: TimingSample[] = [];
  const profiles: SuiteResults['profiles'] = [];
  const serverFlags: SuiteResults['serverFlags'] = {};
  const configs = new Set<ConfigName>(has('service') ? plan.service.groups.map((group) => group.config) : []);
  if (has('health') || has('timings') || has('latency')) configs.add('batch-on');
  let latency: InterleavedLatency | null = null;
  // The servers run in the repository root: a registry inside it is named relative to it, so reports carry no local paths.
  const modelsFlag = relative(repoRoot, modelsDir).startsWith('..') ? modelsDir : relative(repoRoot, modelsDir) || '.';
  const flagsOf = (config: ConfigName) => [`--models-dir=${modelsFlag}`, `--active-model=${modelId}`, ...COMMON_FLAGS, ...CONFIGS[config].flags];
  const startServer = async (config: ConfigName, name: string) => {
    serverFlags[config] = flagsOf(config);
    const profileDir = join(scratch, 'profiles', name);
    const server = await ServerProcess.start({
      flags: flagsOf(config),
      logFile: join(scratch, `server-${name}.log`),
      ...(options.profile ? { nodeFlags: ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] } : {}),
    });
    return { server, profileDir };
  };
  const saturationConnections = Math.max(plan.health.generateConnections, 1);
  const repeated = scenarioRequest('repeated', manifest);
  for (const config of (Object.keys(CONFIGS) as ConfigName[]).filter((name) => configs.has(name))) {
    const { server, profileDir } = await startServer(config, config);
    try {
      await runLoad({ url: server.url, path: '/generate', method: 'POST', ...repeated, connections: saturationConnections, seconds: plan.service.warmupSeconds });
      await sleep(300);
      for (const group of has('service') ? plan.service.groups.filter((candidate) => candidate.config === config) : []) {
        const request = scenarioRequest(group.scenario, manifest);
        for (const connections of group.connections) {
          const cell = await measureCell({
            server,
            model: modelId,
            config,
            scenario: group.scenario,
            connections,
            seconds: plan.service.cellSeconds,
            imagesPerRequest: request.imagesPerRequest,
            request,
          });
          service.push(cell);
          log(describeCell(cell));
          // Requests autocannon abandoned at the end are dropped by the service; let the queue drain.
          await sleep(300);
        }
      }
      if (config === 'batch-on' && has('health')) {
        const [generate, healthz] = await Promise.all([
          measureCell({
            server,
            model: modelId,
            config,
            scenario: 'repeated',
            connections: plan.health.generateConnections,
            seconds: plan.health.seconds,
            imagesPerRequest: 1,
            request: repeated,
          }),
          runLoad({
            url: server.url,
            path: '/healthz',
            method: 'GET',
            connections: plan.health.probeConnections,
            connectionRate: plan.health.probeRatePerConnection,
            seconds: plan.health.seconds,
          }),
        ]);
        health = { probe: { connections: plan.health.probeConnections, ratePerConnection: plan.health.probeRatePerConnection }, generate, healthz };
        log(`healthz under saturation: p50 ${healthz.latencyMs.p50.toFixed(2)} ms, p99 ${healthz.latencyMs.p99.toFixed(2)} ms, max ${healthz.latencyMs.max.toFixed(2)} ms (${healthz.responses} probes); ${describeCell(generate)}`);
        await sleep(300);
      }
      if (config === 'batch-on' && has('timings')) {
        const { requests, loadedInFlight } = plan.timings;
        timings.push(await sampleTimings(server.url, 'idle, JSON', 'json', requests, 1));
        timings.push(await sampleTimings(server.url, 'idle, image/png', 'png', Math.max(1, Math.round(requests / 2)), 1));
        timings.push(await sampleTimings(server.url, `${loadedInFlight} in flight, JSON`, 'json', requests, loadedInFlight));
        for (const sample of timings) {
          log(`timings ${sample.label}: ${Object.entries(sample.meanMs).map(([phase, ms]) => `${phase} ${ms.toFixed(2)}`).join(', ')} ms (mean)`);
        }
      }
      if (config === 'batch-on' && has('latency')) {
        latency = await measureInterleavedLatency({ packageDir, manifest, intraOpThreads: ENGINE_INTRA_OP_THREADS, serverUrl: server.url, request: repeated, ...plan.latency });
        log(
          `one connection, interleaved: service p50 ${latency.serviceMs.p50.toFixed(2)} ms, engine batch 1 p50 ${latency.engineMs.p50.toFixed(2)} ms ` +
            `(gap ${latency.gapMs.toFixed(2)} ms), /healthz p50 ${latency.healthzMs.p50.toFixed(2)} ms`,
        );
      }
    } finally {
      await stopServer(server, config, log);
    }
    if (options.profile) profiles.push(...(await profileResults(profileDir, config, options.out)));
  }

  // 5. Soak, on a fresh server.
  let soak: SuiteResults['soak'] = null;
  if (has('soak')) {
    const { server, profileDir } = await startServer('batch-on', 'soak');
    try {
      await runLoad({ url: server.url, path: '/generate', method: 'POST', ...repeated, connections: saturationConnections, seconds: plan.service.warmupSeconds });
      let saturationRate = saturationCell(service)?.requestsPerSecond;
      if (saturationRate === undefined) {
        await sleep(300);
        const cell = await measureCell({
          server,
          model: modelId,
          config: 'batch-on',
          scenario: 'repeated',
          connections: plan.soak.connections,
          seconds: plan.service.cellSeconds,
          imagesPerRequest: 1,
          request: repeated,
        });
        log(`soak: saturation measured first: ${describeCell(cell)}`);
        saturationRate = cell.requestsPerSecond;
      }
      await sleep(300);
      log(`soak: ${plan.soak.seconds} s at ${Math.round(saturationRate * plan.soak.loadFraction)} req/s (${plan.soak.loadFraction} x ${saturationRate.toFixed(0)})`);
      soak = await runSoak(server, { ...plan.soak, saturationRate, body: repeated.body });
      log(`soak: RSS ${soak.baselineRssMiB.toFixed(1)} -> ${soak.finalRssMiB.toFixed(1)} MiB (${(soak.growth * 100).toFixed(1)}%), 5xx ${soak.status5xx}, ${soak.load.perSecond.toFixed(0)} req/s`);
    } finally {
      await stopServer(server, 'soak', log);
    }
    if (options.profile) profiles.push(...(await profileResults(profileDir, 'soak', options.out)));
  }

  // 6. The engine again at batch 1 and its best batch, so that drift in the machine's load shows (and the targets
  // compare with the engine at its better moment).
  if (engine !== null && (service.length > 0 || soak !== null)) {
    engine.recheck = await recheckEngine(packageDir, manifest, {
      intraOpThreads: ENGINE_INTRA_OP_THREADS,
      batches: [...new Set([1, engine.best.batch])],
      secondsPerBatch: plan.engine.secondsPerBatch,
      minRuns: plan.engine.minRuns,
    });
    log(`engine again: ${engine.recheck.map((timing) => `b${timing.batch} ${timing.medianMs.toFixed(2)} ms ${timing.imagesPerSecond.toFixed(0)} img/s`).join(', ')}`);
  }

  const partial = { engine, pytorch, service, health, latency, soak };
  const results: SuiteResults = {
    schemaVersion: RESULTS_SCHEMA_VERSION,
    kind: plan.kind,
    note: options.note ?? null,
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    wallSeconds: (performance.now() - started) / 1000,
    machine: {
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model ?? 'unknown',
      memoryGiB: totalmem() / 2 ** 30,
      platform: `${process.platform} ${process.arch}`,
      node: process.version,
      versions: await versions(),
      loadAverageBefore,
      loadAverageAfter: loadavg(),
    },
    git: await gitState(),
    model: {
      id: modelId,
      packageDir: relative(repoRoot, packageDir) || packageDir,
      displayName: manifest.display_name,
      backbone: manifest.backbone,
      method: manifest.method,
      trainingSteps: manifest.training.steps,
      image: { width: manifest.image.width, height: manifest.image.height },
      latent: { ...manifest.latent },
    },
    plan,
    serverFlags,
    pytorch,
    engine,
    parity,
    imageEncoding,
    service,
    health,
    timings,
    latency,
    soak,
    profiles,
    targets: evaluateTargets(partial),
  };
  await writeReport(results, options.out);
  log(`wrote ${join(options.out, 'results.json')} and report.md (${results.wallSeconds.toFixed(0)} s)`);
  return results;
}
