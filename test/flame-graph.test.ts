// The bench's CPU-profile tools on a hand-made profile (exact layout) and on a real one from node --cpu-prof.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { flameBoxes, flameGraph } from '../bench/lib/flame-graph.js';
import { loadProfiles, summarizeProfile, type CpuProfile } from '../bench/lib/profile-summary.js';

const frame = (functionName: string, url = '') => ({ functionName, url, lineNumber: 0 });

// (root) -> work (30 ms self) -> inner (10 ms self); (root) -> other (20 ms self); (root) -> (idle) (100 ms)
const handMade: CpuProfile = {
  nodes: [
    { id: 1, callFrame: frame('(root)'), children: [2, 4, 5] },
    { id: 2, callFrame: frame('work', 'file:///app/dist/src/engine/engine.js'), children: [3] },
    { id: 3, callFrame: frame('inner', 'file:///app/node_modules/fastify/lib/reply.js') },
    { id: 4, callFrame: frame('other', 'node:zlib') },
    { id: 5, callFrame: frame('(idle)') },
  ],
  // each sample stands for the time delta at its index: 10 ms each
  samples: [2, 2, 2, 3, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5],
  timeDeltas: Array(16).fill(10_000),
  startTime: 0,
  endTime: 160_000,
};

test('flame boxes: widths are inclusive time over busy time, callees under callers by time, idle left out', () => {
  const boxes = flameBoxes(handMade).map(({ name, category, x, width, depth, ms }) => ({ name, category, x: +x.toFixed(4), width: +width.toFixed(4), depth, ms }));
  assert.deepEqual(boxes, [
    { name: '(root)', category: '(root)', x: 0, width: 1, depth: 0, ms: 60 },
    { name: 'work dist/src/engine/engine.js:1', category: 'src/engine', x: 0, width: 0.6667, depth: 1, ms: 40 },
    { name: 'inner node_modules/fastify/lib/reply.js:1', category: 'fastify', x: 0, width: 0.1667, depth: 2, ms: 10 },
    { name: 'other node:zlib:1', category: 'node internals', x: 0.6667, width: 0.3333, depth: 1, ms: 20 },
  ]);
  // a box below the cut is not drawn, its time still counts in its caller
  assert.deepEqual(flameBoxes(handMade, 0.2).map((box) => box.name), ['(root)', 'work dist/src/engine/engine.js:1', 'other node:zlib:1']);
  const svg = flameGraph(handMade, 'a <test>');
  assert.equal((svg.match(/<rect /g) ?? []).length, 1 + 4); // the background and one per box
  assert.match(svg, /a &lt;test&gt;/);
  assert.match(svg, /<title>work dist\/src\/engine\/engine.js:1\n40.0 ms \(66.7%\), src\/engine<\/title>/);
});

test('the summary and the flame graph of a real node --cpu-prof profile agree on the busy time', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'snoopi-cpuprof-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const busyWork = 'let x = 0; const end = Date.now() + 300; while (Date.now() < end) x += Math.sqrt(x + 1);';
  await promisify(execFile)(process.execPath, ['--cpu-prof', `--cpu-prof-dir=${dir}`, '-e', busyWork]);
  const [loaded, ...others] = await loadProfiles(dir);
  assert.equal(others.length, 0);
  const summary = summarizeProfile(loaded!.profile, loaded!.file);
  const boxes = flameBoxes(loaded!.profile, 0);
  assert.ok(summary.busyMs >= 250, `busy ${summary.busyMs} ms`);
  assert.ok(Math.abs(boxes[0]!.ms - summary.busyMs) < 1e-6, 'the root is the busy time');
  for (const box of boxes) {
    const callers = boxes.filter((other) => other.depth === box.depth - 1 && other.x <= box.x + 1e-9 && box.x + box.width <= other.x + other.width + 1e-9);
    if (box.depth > 0) assert.equal(callers.length, 1, `${box.name} lies under exactly one caller`);
  }
});
