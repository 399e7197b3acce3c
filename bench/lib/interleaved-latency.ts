// The one-connection latency target, measured so that the machine's drift cannot decide it: round after round, a
// block of batch-1 calls of the raw engine (in this process, through src/engine as in the engine section), a block of
// sequential POST /generate requests on one keep-alive connection, and a block of GET /healthz on the same connection
// (the machine's HTTP round trip with no work behind it). Each block is short (a fraction of a second), so a change in
// the host's load during the run lands on all three alike; medians are over every call of a kind.
import { Agent, request as httpRequest } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { ModelManifest } from '../../src/registry/model-manifest.js';
import { generateCopies, generatorInputs, openEngine } from './engine-throughput.js';
import type { ScenarioRequest } from './plan.js';
import { summarize, type Summary } from './stats.js';

export interface InterleavedLatency {
  rounds: number;
  callsPerBlock: number;
  /** The raw engine, batch 1, the service's inputs (no negative prompt: NASA scale 0). */
  engineMs: Summary;
  /** POST /generate, the repeated prompt, one image, JSON answer. */
  serviceMs: Summary;
  /** GET /healthz. */
  healthzMs: Summary;
  /** serviceMs.p50 - engineMs.p50: what the service adds to one request on an idle machine. */
  gapMs: number;
}

interface Answer {
  status: number;
  body: Buffer;
}

/** One request on `agent` (keep-alive, one socket), the whole answer read. */
function send(agent: Agent, url: URL, method: 'GET' | 'POST', path: string, request?: ScenarioRequest): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const body = request === undefined ? undefined : typeof request.body === 'string' ? request.body : request.body();
    const headers = request === undefined || body === undefined ? {} : { ...request.headers, 'content-length': Buffer.byteLength(body) };
    const outgoing = httpRequest({ host: url.hostname, port: url.port, method, path, agent, headers }, (incoming) => {
      const chunks: Buffer[] = [];
      incoming.on('data', (chunk: Buffer) => chunks.push(chunk));
      incoming.on('end', () => resolve({ status: incoming.statusCode ?? 0, body: Buffer.concat(chunks) }));
      incoming.on('error', reject);
    });
    outgoing.on('error', reject);
    outgoing.end(body);
  });
}

async function timeBlock(calls: number, call: () => Promise<unknown>, into: number[]): Promise<void> {
  for (let i = 0; i < calls; i++) {
    const started = performance.now();
    await call();
    into.push(performance.now() - started);
  }
}

export async function measureInterleavedLatency(options: {
  packageDir: string;
  manifest: ModelManifest;
  intraOpThreads: number;
  serverUrl: string;
  /** The single-connection cell's request (the repeated scenario). */
  request: ScenarioRequest;
  rounds: number;
  callsPerBlock: number;
}): Promise<InterleavedLatency> {
  const { manifest, rounds, callsPerBlock } = options;
  const url = new URL(options.serverUrl);
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const engine = await openEngine(options.packageDir, manifest, options.intraOpThreads);
  const inputs = { ...generatorInputs(manifest, 1), nasaScale: new Float32Array(1) };
  const generate = () => generateCopies(engine, inputs, 1);
  const post = async () => {
    const answer = await send(agent, url, 'POST', '/generate', options.request);
    if (answer.status !== 200) throw new Error(`interleaved latency: POST /generate answered ${answer.status}: ${answer.body.toString().slice(0, 200)}`);
  };
  const probe = async () => {
    const answer = await send(agent, url, 'GET', '/healthz');
    if (answer.status !== 200) throw new Error(`interleaved latency: GET /healthz answered ${answer.status}`);
  };
  const engineMs: number[] = [];
  const serviceMs: number[] = [];
  const healthzMs: number[] = [];
  try {
    await engine.warmup();
    for (const call of [generate, post, probe]) await timeBlock(3, call, []);
    for (let round = 0; round < rounds; round++) {
      await timeBlock(callsPerBlock, generate, engineMs);
      await timeBlock(callsPerBlock, post, serviceMs);
      await timeBlock(callsPerBlock, probe, healthzMs);
    }
  } finally {
    agent.destroy();
    await engine.close();
  }
  const [engineSummary, serviceSummary] = [summarize(engineMs), summarize(serviceMs)];
  return {
    rounds,
    callsPerBlock,
    engineMs: engineSummary,
    serviceMs: serviceSummary,
    healthzMs: summarize(healthzMs),
    gapMs: serviceSummary.p50 - engineSummary.p50,
  };
}
