// bench/negative_prompts.py as a user runs it, against the real service on a real socket (the shapes-fixture
// package: random weights, so the rates are checked for consistency, never for their values). The script's images
// are compared with direct requests for the same pair, seed and scale, and its rates with an independent judging of
// the images it saved. Then its exit codes: 1 for a closed port or an error answer, 2 for bad arguments.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { PYTHON } from '../bench/lib/run-suite.js';
import { repoRoot } from '../src/config/paths.js';
import { build } from './helpers/build.js';
import { pixels } from './helpers/pixels.js';
import { maxAbsDifference } from './helpers/trainer-export.js';

const SCRIPT = join('bench', 'negative_prompts.py');
const KINDS = ['under-specified', 'removal'] as const;
const FIXTURE = 'shapes-fixture';

interface Pair {
  prompt: string;
  negative: string;
  kind: (typeof KINDS)[number];
}
interface Outcome {
  removed: boolean;
  kept: boolean;
  success: boolean;
}
interface Rates {
  success: number;
  kept: number;
  success_and_kept: number;
}

// The test's own judging of the saved images, straight from eval_sets (not through the script's code): the pairs,
// the first seed and, per scale, negative_outcome of image i (DIR/<scale>/<NEGATIVE_SEED + i>.png).
const REFERENCE_JUDGE = `
import json, sys
import numpy as np
from PIL import Image
from trainer import eval_sets, judge
from trainer.evaluate import NEGATIVE_SEED
pairs = eval_sets.negative_pairs()
directory, scales = sys.argv[1], sys.argv[2:]
def outcome(scale, i, pair):
    image = np.asarray(Image.open(f"{directory}/{scale}/{NEGATIVE_SEED + i}.png").convert("RGB"))
    return eval_sets.negative_outcome(judge.read_image(image), pair)
print(json.dumps({"first_seed": NEGATIVE_SEED, "pairs": pairs,
                  "outcomes": {s: [outcome(s, i, p) for i, p in enumerate(pairs)] for s in scales}}))
`;

function python(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(PYTHON, args, { cwd: repoRoot }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : Number(error.code), stdout, stderr });
    });
  });
}

async function scratch(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'snoopi-negative-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** success, kept and both over `outcomes`, as fractions (the script's numbers, computed here independently). */
function rates(outcomes: Outcome[]): Rates {
  const share = (count: (o: Outcome) => boolean) => outcomes.filter(count).length / outcomes.length;
  return { success: share((o) => o.success), kept: share((o) => o.kept), success_and_kept: share((o) => o.success && o.kept) };
}

async function fixtureNasa(url: string): Promise<{ default_scale: number; max_scale: number }> {
  const models = (await (await fetch(`${url}/models`)).json()) as { data: { id: string; nasa: { default_scale: number; max_scale: number } }[] };
  return models.data.find((model) => model.id === FIXTURE)!.nasa;
}

async function directImage(url: string, pair: Pair, seed: number, scale: number): Promise<Buffer> {
  const response = await fetch(`${url}/generate`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: FIXTURE, prompt: pair.prompt, negative_prompt: pair.negative, negative_scale: scale, seed, format: 'png' }),
  });
  assert.equal(response.status, 200);
  const body = (await response.json()) as { model: string; images: { b64_json: string }[] };
  assert.equal(body.model, FIXTURE);
  return Buffer.from(body.images[0]!.b64_json, 'base64');
}

test('the script measures every pair at each scale with the service images of its seeds, and reports consistent rates', async (t) => {
  const started = performance.now();
  const { url } = await build(t, { listen: true });
  const dir = await scratch(t);
  const out = join(dir, 'result.json');
  const images = join(dir, 'images');
  const run = await python([SCRIPT, '--url', url, '--model', FIXTURE, '--images-per-pair', '1', '--scales', '0,1', '--out', out, '--save-images', images]);
  assert.equal(run.code, 0, run.stderr);
  const result = JSON.parse(await readFile(out, 'utf8'));
  const nasa = await fixtureNasa(url);
  assert.deepEqual(nasa, { default_scale: 0, max_scale: 1 }, 'the scales below assume the fixture default 0 and max 1');
  const scales = ['0.0', '1.0']; // --scales 0,1 plus the default scale, 0

  const judged = await python(['-c', REFERENCE_JUDGE, images, ...scales]);
  assert.equal(judged.code, 0, judged.stderr);
  const reference = JSON.parse(judged.stdout) as { first_seed: number; pairs: Pair[]; outcomes: Record<string, Outcome[]> };
  const { pairs } = reference;
  const count = (kind: string) => pairs.filter((pair) => pair.kind === kind).length;

  assert.equal(result.model, FIXTURE);
  assert.deepEqual(result.nasa, nasa);
  assert.deepEqual(result.pairs, { 'under-specified': count('under-specified'), removal: count('removal') });
  assert.equal(count('under-specified') + count('removal'), pairs.length);
  assert.equal(result.images_per_pair, 1);
  assert.equal(result.first_seed, reference.first_seed);
  assert.deepEqual(Object.keys(result.by_nasa_scale), scales);

  for (const scale of scales) {
    const measured = result.by_nasa_scale[scale];
    const outcomes = reference.outcomes[scale]!;
    for (const kind of KINDS) {
      const expected = rates(outcomes.filter((_, i) => pairs[i]!.kind === kind));
      assert.deepEqual(measured[kind], expected, `${kind} at scale ${scale}`);
      assert.ok(expected.success_and_kept <= Math.min(expected.success, expected.kept));
    }
    assert.deepEqual(measured.overall, rates(outcomes), `overall at scale ${scale}`);
    assert.equal(measured.images, pairs.length);
    assert.ok(measured.wall_s > 0);
    assert.ok(Math.abs(measured.images_per_s - pairs.length / measured.wall_s) < 1e-9);
    assert.equal(measured.throughput_vs_off, measured.images_per_s / result.by_nasa_scale['0.0'].images_per_s);
    assert.ok(measured.mean_batch_size >= 1 && measured.mean_batch_size <= 8, `mean batch ${measured.mean_batch_size}`);
  }

  const atDefault = result.by_nasa_scale['0.0'];
  const targets = [
    ['under-specified', 'success', 0.95],
    ['removal', 'success', 0.8],
    ['removal', 'kept', 0.8],
  ] as const;
  assert.deepEqual(result.targets, {
    nasa_scale: '0.0',
    rows: targets.map(([kind, rate, atLeast]) => ({ kind, rate, at_least: atLeast, value: atDefault[kind][rate], pass: atDefault[kind][rate] >= atLeast })),
  });
  for (const row of result.targets.rows) {
    const line = `  ${row.kind} ${row.rate} >= ${row.at_least * 100}%: ${(row.value * 100).toFixed(1)}%  ${row.pass ? 'PASS' : 'MISS'}`;
    assert.ok(run.stdout.split('\n').includes(line), `stdout has "${line}"`);
  }
  assert.match(run.stdout, /autocannon bench \(npm run bench\) is the authoritative throughput number/);

  // The saved images are the service's for each pair's prompt, negative, seed and scale (pixels within 1: batch
  // invariance), checked on the first pair of each kind; and the scale reached the service (NASA changes pixels).
  for (const kind of KINDS) {
    const index = pairs.findIndex((pair) => pair.kind === kind);
    const seed = reference.first_seed + index;
    const saved = (scale: string) => readFile(join(images, scale, `${seed}.png`)).then(pixels);
    for (const scale of scales) {
      const direct = await pixels(await directImage(url, pairs[index]!, seed, Number(scale)));
      assert.ok(maxAbsDifference(await saved(scale), direct) <= 1, `${kind} pair ${index} at scale ${scale}`);
    }
    assert.ok(maxAbsDifference(await saved('0.0'), await saved('1.0')) > 1, `NASA changes ${kind} pair ${index}`);
  }
  t.diagnostic(`the run and its checks took ${((performance.now() - started) / 1000).toFixed(1)} s`);
});

test('the script exits 1 with a clear message when the server is unreachable or answers an error', async (t) => {
  const closed = createServer();
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
  const port = (closed.address() as { port: number }).port;
  await new Promise((resolve) => closed.close(resolve));
  const dir = await scratch(t);
  const out = join(dir, 'result.json');

  const refused = await python([SCRIPT, '--url', `http://127.0.0.1:${port}`, '--out', out]);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, new RegExp(`^negative_prompts: cannot reach http://127\\.0\\.0\\.1:${port}: .*Connection refused`));

  const { url } = await build(t, { listen: true });
  const notFound = await python([SCRIPT, '--url', `${url}/nothing`, '--out', out]);
  assert.equal(notFound.code, 1);
  assert.equal(notFound.stderr, 'negative_prompts: GET /models answered 404 SNOOPI_ROUTE_NOT_FOUND: Route GET /nothing/models not found\n');
  assert.equal(existsSync(out), false, 'no JSON written after a failure');
});

test('the script exits 2 on bad arguments, including a model or a scale the server refutes', async (t) => {
  const { url } = await build(t, { listen: true });
  const unknownModel = await python([SCRIPT, '--url', url, '--model', 'nope']);
  assert.equal(unknownModel.code, 2);
  assert.match(unknownModel.stderr, new RegExp(`^negative_prompts: --model nope is not served at ${url.replaceAll(".", "\\.")} \\(served: .*${FIXTURE}.*\\)\n$`));
  const tooHigh = await python([SCRIPT, '--url', url, '--model', FIXTURE, '--scales', '0,2']);
  assert.equal(tooHigh.code, 2);
  assert.equal(tooHigh.stderr, `negative_prompts: scales [2.0] are above ${FIXTURE}'s nasa.max_scale ${(await fixtureNasa(url)).max_scale}\n`);
  const notNumbers = await python([SCRIPT, '--url', url, '--scales', '0,x']);
  assert.equal(notNumbers.code, 2);
  assert.match(notNumbers.stderr, /error: argument --scales: not a comma-separated list of numbers: '0,x'$/m);
});
