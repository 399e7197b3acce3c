// The benchmark harness end to end on its smallest grid: PyTorch baseline, raw engine, image encoding, a real
// server in a child process under autocannon, /healthz under load, Server-Timing samples and a two-second soak.
// Checks the shape of results.json and that what was measured is finite and error-free; never how fast it was.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { BatchTiming } from '../bench/lib/engine-throughput.js';
import type { Cell } from '../bench/lib/load.js';
import { smokePlan } from '../bench/lib/plan.js';
import type { SuiteResults } from '../bench/lib/results.js';
import { PYTHON, runSuite } from '../bench/lib/run-suite.js';
import { PHASES } from '../bench/lib/timings.js';

function assertFinite(value: unknown, path: string): void {
  assert.equal(typeof value, 'number', `${path} is a number`);
  assert.ok(Number.isFinite(value), `${path} is finite, got ${String(value)}`);
}

function assertTimings(timings: readonly BatchTiming[], batches: readonly number[], path: string): void {
  assert.deepEqual(
    timings.map((timing) => timing.batch),
    batches,
    `${path}: one timing per batch size`,
  );
  for (const timing of timings) {
    for (const key of ['runs', 'medianMs', 'p90Ms', 'meanMs', 'imagesPerSecond', 'cpuCores'] as const) assertFinite(timing[key], `${path}[${timing.batch}].${key}`);
    assert.ok(timing.imagesPerSecond > 0);
  }
}

function assertCell(cell: Cell, path: string): void {
  for (const key of ['seconds', 'requestsPerSecond', 'imagesPerSecond', 'engineBusy', 'serverCpuCores', 'clientCpuCores', 'eventLoopLagP99Ms', 'serverRssMiB'] as const) {
    assertFinite(cell[key], `${path}.${key}`);
  }
  for (const key of ['count', 'mean', 'p50', 'p90', 'p99', 'max'] as const) assertFinite(cell.latencyMs[key], `${path}.latencyMs.${key}`);
  assert.ok(cell.responses > 0, `${path}: some responses`);
  assert.equal(cell.non2xx, 0, `${path}: no non-2xx`);
  assert.equal(cell.errors, 0, `${path}: no connection errors`);
  assert.deepEqual(Object.keys(cell.statusCodes), ['200'], `${path}: only 200s`);
  assert.ok(cell.batchSizes.batches > 0, `${path}: the /metrics diff saw batches`);
  assertFinite(cell.batchSizes.meanRows, `${path}.batchSizes.meanRows`);
  assert.equal(
    cell.batchSizes.histogram.reduce((sum, bucket) => sum + bucket.count, 0),
    cell.batchSizes.batches,
    `${path}: the batch-size histogram adds up`,
  );
}

test('the bench harness runs every section on a minimal grid and writes a well-formed report', async (t) => {
  const out = await mkdtemp(join(tmpdir(), 'snoopi-bench-smoke-'));
  t.after(() => rm(out, { recursive: true, force: true }));
  const plan = smokePlan();
  const lines: string[] = [];
  const results = await runSuite({ plan, model: 'shapes-fixture', out, scratch: join(out, 'scratch'), note: 'smoke test', log: (line) => lines.push(line) });
  t.diagnostic(`the smoke run took ${results.wallSeconds.toFixed(1)} s`);

  // results.json is what runSuite returned.
  const written = JSON.parse(await readFile(join(out, 'results.json'), 'utf8')) as SuiteResults;
  assert.deepEqual(written, JSON.parse(JSON.stringify(results)));
  assert.equal(written.schemaVersion, 3);
  assert.equal(written.kind, 'smoke');
  assert.equal(written.note, 'smoke test');
  assert.equal(written.model.id, 'shapes-fixture');
  assert.deepEqual(written.plan, plan);

  // Raw engine and PyTorch baseline (the latter only where the trainer's Python is installed).
  assert.ok(written.engine !== null);
  assertTimings(written.engine.batches, plan.engine.batches, 'engine.batches');
  assert.ok(plan.engine.batches.includes(written.engine.best.batch));
  assertTimings(written.engine.recheck, [...new Set([1, written.engine.best.batch])], 'engine.recheck');
  // The service's default intra-op wait, then each other mode at the plan's batches.
  assert.equal(written.engine.intraOpWait, 'spin-in-call');
  assert.deepEqual(written.engine.otherWaits.map((other) => other.wait), ['block', 'spin']);
  for (const other of written.engine.otherWaits) assertTimings(other.batches, plan.engine.otherWaitBatches, `engine.otherWaits[${other.wait}]`);
  if (existsSync(PYTHON)) {
    assert.ok(written.pytorch !== null && 'runs' in written.pytorch, `pytorch ran: ${JSON.stringify(written.pytorch)}`);
    assert.deepEqual(written.pytorch.runs.map((run) => run.threads), plan.pytorch.threads);
    for (const run of written.pytorch.runs) assertTimings(run.batches, plan.pytorch.batches, `pytorch.runs[${run.threads}]`);
    // The baseline is the same model: the parity check ran and the pixels agree within one grey level.
    assert.ok(written.parity !== null);
    assert.ok(written.parity.maxAbsDiff <= 1, `PyTorch and onnxruntime differ by ${written.parity.maxAbsDiff} grey levels`);
  }
  assert.ok(written.imageEncoding !== null);
  assert.deepEqual(
    written.imageEncoding.map((timing) => timing.encoder),
    ['service png', 'service jpeg q90', 'service webp q90'],
  );
  for (const timing of written.imageEncoding) for (const key of ['medianMs', 'p90Ms', 'meanBytes'] as const) assertFinite(timing[key], `imageEncoding.${key}`);

  // The service grid: one cell per (config, scenario, connections), in plan order, all clean.
  const expectedCells = plan.service.groups.flatMap((group) => group.connections.map((connections) => `${group.config}/${group.scenario}/${connections}`));
  assert.deepEqual(
    written.service.map((cell) => `${cell.config}/${cell.scenario}/${cell.connections}`),
    expectedCells,
  );
  written.service.forEach((cell, index) => assertCell(cell, `service[${index}]`));
  assert.deepEqual(Object.keys(written.serverFlags), ['batch-on']);

  // /healthz under load.
  assert.ok(written.health !== null);
  assertCell(written.health.generate, 'health.generate');
  assert.ok(written.health.healthz.responses > 0);
  assert.equal(written.health.healthz.non2xx, 0);
  assert.equal(written.health.healthz.errors, 0);
  for (const key of ['p50', 'p99', 'max'] as const) assertFinite(written.health.healthz.latencyMs[key], `health.healthz.latencyMs.${key}`);

  // Server-Timing samples.
  assert.deepEqual(
    written.timings.map((sample) => [sample.response, sample.inFlight]),
    [
      ['json', 1],
      ['png', 1],
      ['json', plan.timings.loadedInFlight],
    ],
  );
  for (const sample of written.timings) {
    assert.ok(sample.samples > 0);
    for (const phase of PHASES) {
      assertFinite(sample.meanMs[phase], `timings ${sample.label} mean ${phase}`);
      assertFinite(sample.p50Ms[phase], `timings ${sample.label} p50 ${phase}`);
    }
  }

  // One connection against the raw engine, interleaved: every block ran its calls.
  assert.ok(written.latency !== null);
  assert.deepEqual([written.latency.rounds, written.latency.callsPerBlock], [plan.latency.rounds, plan.latency.callsPerBlock]);
  for (const key of ['engineMs', 'serviceMs', 'healthzMs'] as const) {
    assert.equal(written.latency[key].count, plan.latency.rounds * plan.latency.callsPerBlock, `latency.${key}: one sample per call`);
    for (const stat of ['p50', 'p90', 'mean', 'max'] as const) assertFinite(written.latency[key][stat], `latency.${key}.${stat}`);
  }
  assert.equal(written.latency.gapMs, written.latency.serviceMs.p50 - written.latency.engineMs.p50);
  assert.equal(written.targets.find((target) => target.id === 'single-connection-latency')?.value, written.latency.gapMs);

  // The soak.
  assert.ok(written.soak !== null);
  assert.ok(written.soak.points.length > 0, 'RSS was sampled');
  for (const point of written.soak.points) {
    assertFinite(point.t, 'soak.points.t');
    assertFinite(point.rssMiB, 'soak.points.rssMiB');
  }
  for (const key of ['targetRate', 'saturationRate', 'baselineRssMiB', 'finalRssMiB', 'growth', 'peakRssMiB'] as const) assertFinite(written.soak[key], `soak.${key}`);
  assert.equal(written.soak.status5xx, 0);
  assert.equal(written.soak.load.non2xx, 0);
  assert.equal(written.soak.load.errors, 0);

  // Every target of the issue is evaluated; all but the PyTorch ratio are measured on any machine.
  assert.deepEqual(
    written.targets.map((target) => target.id),
    ['saturation-vs-engine', 'single-connection-latency', 'healthz-under-saturation', 'nasa-throughput', 'service-vs-pytorch', 'soak-rss-growth', 'soak-5xx'],
  );
  for (const target of written.targets) {
    if (target.id === 'service-vs-pytorch' && !existsSync(PYTHON)) continue;
    assertFinite(target.value, `target ${target.id}`);
    assert.equal(typeof target.pass, 'boolean', `target ${target.id} has a verdict`);
  }

  // The report and its plots.
  const report = await readFile(join(out, 'report.md'), 'utf8');
  assert.match(report, /^# snoopi-serve benchmark \(smoke\)/);
  assert.match(report, /> \*\*Caveat: smoke test\*\*/);
  for (const heading of ['## Targets', '## Raw engine and PyTorch eager', '## The service under load', '## /healthz under saturation', '## Where a request spends its time', '## One connection against the raw engine, interleaved', '## Image encoding', '## Soak']) {
    assert.ok(report.includes(heading), `report.md has ${heading}`);
  }
  // The engine table has a column group per other intra-op wait mode, and the plot a series.
  for (const wait of ['block', 'spin']) assert.ok(report.includes(`| engine ${wait} median ms |`), `report.md has the engine ${wait} columns`);
  assert.ok((await readFile(join(out, 'engine-vs-pytorch.svg'), 'utf8')).includes('engine, intra-op wait block'));
  for (const plot of ['engine-vs-pytorch.svg', 'latency-vs-throughput.svg', 'time-per-request.svg', 'soak-rss.svg']) {
    const svg = await readFile(join(out, plot), 'utf8');
    assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/, `${plot} is an SVG`);
    assert.ok(!svg.includes('NaN'), `${plot} has no NaN coordinates`);
    assert.ok(report.includes(`](${plot})`), `report.md links ${plot}`);
  }
});
