// /healthz under a storm (issue 29, item 7): a niced child process runs autocannon with `--connections` clients
// posting num_images=`--images` to /generate as fast as they are answered, while this process probes /healthz on
// one keep-alive connection every 20 ms. The server's event-loop delay over the storm comes from its /metrics.
//   node dist/bench/healthz-storm.js [--connections=256] [--images=8] [--seconds=20] [--model=ID] [--profile]
//                                     [-- serve flags...]
// Prints one JSON object: the probe's latency, the server's event-loop delay, and the storm's status counts; with
// --profile, the server's HTTP thread's top functions by self time (node --cpu-prof, bench/lib/profile-summary.ts).
import { spawn } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { Agent, get } from 'node:http';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { repoRoot } from '../src/config/paths.js';
import { runLoad } from './lib/load.js';
import { loadProfiles, summarizeProfile, threadOf } from './lib/profile-summary.js';
import { parseMetrics, total } from './lib/prometheus.js';
import { ServerProcess } from './lib/server-process.js';
import { round, summarize } from './lib/stats.js';

const PROBE_INTERVAL_MS = 20;

interface Options {
  connections: number;
  images: number;
  seconds: number;
  model: string | undefined;
  profile: boolean;
  serveFlags: string[];
}

function parse(argv: string[]): Options {
  const split = argv.indexOf('--');
  const own = split === -1 ? argv : argv.slice(0, split);
  const options: Options = { connections: 256, images: 8, seconds: 20, model: undefined, profile: false, serveFlags: split === -1 ? [] : argv.slice(split + 1) };
  for (const arg of own) {
    const [key, value] = arg.split('=') as [string, string | undefined];
    if (key === '--model' && value) options.model = value;
    else if (key === '--profile' && value === undefined) options.profile = true;
    else if ((key === '--connections' || key === '--images' || key === '--seconds') && value && /^\d+$/.test(value)) {
      options[key.slice(2) as 'connections' | 'images' | 'seconds'] = Number(value);
    } else throw new Error(`unknown or malformed argument ${JSON.stringify(arg)}`);
  }
  return options;
}

/** The storm, in the niced child: autocannon at full speed; prints its status counts as JSON. */
async function storm(url: string, options: Options): Promise<void> {
  const body = JSON.stringify({ prompt: 'a red circle on a white background', seed: 1, num_images: options.images, ...(options.model ? { model: options.model } : {}) });
  const run = await runLoad({ url, path: '/generate', method: 'POST', headers: { 'content-type': 'application/json' }, body, connections: options.connections, seconds: options.seconds });
  process.stdout.write(JSON.stringify({ statusCodes: run.statusCodes, errors: run.errors, timeouts: run.timeouts, okPerSecond: round(run.perSecond) }));
}

async function probe(url: string, until: number): Promise<number[]> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const latencies: number[] = [];
  while (performance.now() < until) {
    const startedAt = performance.now();
    await new Promise<void>((resolve, reject) => {
      get(`${url}/healthz`, { agent }, (response) => {
        response.resume();
        response.on('end', () => (response.statusCode === 200 ? resolve() : reject(new Error(`/healthz answered ${response.statusCode}`))));
      }).on('error', reject);
    });
    latencies.push(performance.now() - startedAt);
    await sleep(PROBE_INTERVAL_MS);
  }
  agent.destroy();
  return latencies;
}

async function main(argv: string[]): Promise<void> {
  if (argv[0] === '--storm') {
    await storm(argv[1]!, parse(argv.slice(2)));
    return;
  }
  const options = parse(argv);
  const profileDir = join(repoRoot, 'bench', 'results', 'tmp', 'healthz-storm-profile');
  await rm(profileDir, { recursive: true, force: true });
  const server = await ServerProcess.start({
    flags: [...(options.model ? [`--active-model=${options.model}`] : []), '--log-level=warn', ...options.serveFlags],
    logFile: join(repoRoot, 'bench', 'results', 'tmp', 'healthz-storm-server.log'),
    ...(options.profile ? { nodeFlags: ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] } : {}),
  });
  let summary: Record<string, unknown> = {};
  try {
    await server.metrics(); // resets the event-loop delay histogram
    const child = spawn('nice', ['-n', '10', process.execPath, join(repoRoot, 'dist', 'bench', 'healthz-storm.js'), '--storm', server.url, ...argv], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let stormOutput = '';
    child.stdout.on('data', (chunk: Buffer) => (stormOutput += chunk.toString()));
    const stormDone = new Promise<void>((resolve) => child.on('exit', () => resolve()));
    await sleep(1000); // connections open and the queue fills
    const latencies = await probe(server.url, performance.now() + (options.seconds - 2) * 1000);
    const metrics = parseMetrics(await server.metrics());
    await stormDone;
    const lagMs = (name: string) => round(total(metrics, `snoopi_nodejs_eventloop_lag_${name}_seconds`) * 1000);
    const probeMs = summarize(latencies);
    summary = {
          options: { ...options, serveFlags: options.serveFlags.join(' ') },
          healthzMs: { count: probeMs.count, p50: round(probeMs.p50), p90: round(probeMs.p90), p99: round(probeMs.p99), max: round(probeMs.max) },
          eventLoopDelayMs: { p50: lagMs('p50'), p90: lagMs('p90'), p99: lagMs('p99'), max: lagMs('max') },
          storm: JSON.parse(stormOutput || '{}') as unknown,
          loadAverage: loadavg().map(round),
    };
  } finally {
    await server.stop();
  }
  if (options.profile) {
    const main = (await loadProfiles(profileDir)).find(({ file }) => threadOf(file) === 0);
    if (main !== undefined) {
      const { busyMs, wallMs, functions, categories } = summarizeProfile(main.profile, main.file);
      summary.httpThreadProfile = { busyMs: round(busyMs), wallMs: round(wallMs), categories, functions };
    }
  }
  process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
}

await main(process.argv.slice(2));
