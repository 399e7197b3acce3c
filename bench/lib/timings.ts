// Where a request's time goes, from the Server-Timing header the service sends with every image (receive = from
// Fastify's receipt of the request to the route handler: body, validation, hooks; queue; encode = tokenize + text
// embeddings; generate = the batch's generator call; image = PNG/JPEG/WebP encoding; total = the service's pipeline;
// serialise = from the pipeline's answer to onSend: answer object, base64, JSON), next to what the client measured.
// other = total - the four pipeline phases (the pipeline's own bookkeeping: checks, seeded noise, model lease,
// awaits); outside = client - receive - total - serialise: Node's HTTP parsing before Fastify, the socket write,
// loopback, thread wake-ups and the client.
import { performance } from 'node:perf_hooks';
import { REPEATED_PROMPT } from './plan.js';
import { summarize } from './stats.js';

export const PHASES = ['receive', 'queue', 'encode', 'generate', 'image', 'other', 'total', 'serialise', 'client', 'outside'] as const;
export type Phase = (typeof PHASES)[number];

export interface TimingSample {
  label: string;
  /** Requests kept in flight by the sampler. */
  inFlight: number;
  response: 'json' | 'png';
  samples: number;
  meanMs: Record<Phase, number>;
  p50Ms: Record<Phase, number>;
}

export function parseServerTiming(header: string): Record<string, number> {
  const phases: Record<string, number> = {};
  for (const entry of header.split(',')) {
    const [name, ...params] = entry.trim().split(';');
    const duration = params.map((param) => /^dur=([\d.]+)$/.exec(param.trim())?.[1]).find((value) => value !== undefined);
    if (name !== undefined && duration !== undefined) phases[name] = Number(duration);
  }
  return phases;
}

async function sampleOne(url: string, response: 'json' | 'png'): Promise<Record<Phase, number>> {
  const started = performance.now();
  const answer = await fetch(`${url}/generate`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(response === 'png' ? { accept: 'image/png' } : {}) },
    body: JSON.stringify({ prompt: REPEATED_PROMPT }),
  });
  await answer.arrayBuffer();
  const client = performance.now() - started;
  if (answer.status !== 200) throw new Error(`timings: POST /generate answered ${answer.status}`);
  const phases = parseServerTiming(answer.headers.get('server-timing') ?? '');
  const sent = ['receive', 'queue', 'encode', 'generate', 'image', 'total', 'serialise'] as const;
  for (const phase of sent) {
    if (!Number.isFinite(phases[phase])) throw new Error(`timings: no ${phase} in Server-Timing "${answer.headers.get('server-timing')}"`);
  }
  const { receive, queue, encode, generate, image, total, serialise } = phases as Record<(typeof sent)[number], number>;
  const other = total - queue - encode - generate - image;
  return { receive, queue, encode, generate, image, other, total, serialise, client, outside: client - receive - total - serialise };
}

/** `requests` requests with `inFlight` concurrent loops; the first `inFlight` answers are a warm-up and not kept. */
export async function sampleTimings(url: string, label: string, response: 'json' | 'png', requests: number, inFlight: number): Promise<TimingSample> {
  const samples: Record<Phase, number>[] = [];
  let started = 0;
  const loop = async () => {
    while (started < requests + inFlight) {
      const index = started++;
      const sample = await sampleOne(url, response);
      if (index >= inFlight) samples.push(sample);
    }
  };
  await Promise.all(Array.from({ length: inFlight }, loop));
  const meanMs = {} as Record<Phase, number>;
  const p50Ms = {} as Record<Phase, number>;
  for (const phase of PHASES) {
    const stats = summarize(samples.map((sample) => sample[phase]));
    meanMs[phase] = stats.mean;
    p50Ms[phase] = stats.p50;
  }
  return { label, inFlight, response, samples: samples.length, meanMs, p50Ms };
}
