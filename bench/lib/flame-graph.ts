// A flame graph of a V8 CPU profile (node --cpu-prof) as a dependency-free SVG, icicle style: the root on top, each
// call-tree node a box under its caller, as wide as the time spent in it and its callees, callees ordered by time.
// Idle time is left out, so the root is the thread's busy time. Boxes narrower than MIN_SHARE of it are not drawn
// (their time still widens their callers). Colors follow categoryOf (a package, a folder of src/, Node's internals);
// every box has a tooltip with its function, place, milliseconds and share.
import { IDLE_FRAME, categoryOf, frameLabel, selfTimes, type CpuProfile } from './profile-summary.js';
import { escape } from './svg-plot.js';

export interface FlameBox {
  name: string;
  category: string;
  /** Left edge and width as fractions of the root's time. */
  x: number;
  width: number;
  depth: number;
  ms: number;
}

const MIN_SHARE = 0.002;
const WIDTH = 1200;
const ROW = 16;
const TOP = 28;
const CHAR_PX = 6.2;

/** The boxes to draw, callers before callees. */
export function flameBoxes(profile: CpuProfile, minShare = MIN_SHARE): FlameBox[] {
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
  const self = selfTimes(profile);
  const totals = new Map<number, number>();
  const total = (id: number): number => {
    const node = nodes.get(id)!;
    if (node.callFrame.functionName === IDLE_FRAME) return 0;
    const sum = (self.get(id) ?? 0) + (node.children ?? []).reduce((acc, child) => acc + total(child), 0);
    totals.set(id, sum);
    return sum;
  };
  const root = profile.nodes[0]!;
  const rootMicros = total(root.id);
  const boxes: FlameBox[] = [];
  if (rootMicros === 0) return boxes;
  const place = (id: number, x: number, depth: number): void => {
    const node = nodes.get(id)!;
    const micros = totals.get(id) ?? 0;
    if (micros / rootMicros < minShare) return;
    boxes.push({ name: frameLabel(node.callFrame), category: categoryOf(node.callFrame.url, node.callFrame.functionName), x, width: micros / rootMicros, depth, ms: micros / 1000 });
    let offset = x;
    const children = [...(node.children ?? [])].sort((a, b) => (totals.get(b) ?? 0) - (totals.get(a) ?? 0));
    for (const child of children) {
      place(child, offset, depth + 1);
      offset += (totals.get(child) ?? 0) / rootMicros;
    }
  };
  place(root.id, 0, 0);
  return boxes;
}

function hue(category: string): number {
  let hash = 0;
  for (const char of category) hash = (hash * 31 + char.charCodeAt(0)) >>> 0;
  return hash % 360;
}

export function flameGraph(profile: CpuProfile, title: string): string {
  const boxes = flameBoxes(profile);
  const depth = boxes.reduce((deepest, box) => Math.max(deepest, box.depth), 0);
  const height = TOP + (depth + 1) * ROW + 8;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="monospace" font-size="11">`,
    `<rect width="${WIDTH}" height="${height}" fill="#ffffff"/>`,
    `<text x="6" y="18" font-size="13" font-family="sans-serif">${escape(title)}</text>`,
  ];
  for (const box of boxes) {
    const x = box.x * WIDTH;
    const width = box.width * WIDTH;
    const y = TOP + box.depth * ROW;
    const share = `${(box.width * 100).toFixed(1)}%`;
    parts.push(
      `<g><title>${escape(`${box.name}\n${box.ms.toFixed(1)} ms (${share}), ${box.category}`)}</title>` +
        `<rect x="${x.toFixed(2)}" y="${y}" width="${Math.max(width - 0.5, 0.5).toFixed(2)}" height="${ROW - 1}" fill="hsl(${hue(box.category)},55%,72%)"/>`,
    );
    const room = Math.floor((width - 6) / CHAR_PX);
    if (room >= 4) {
      const text = box.name.length > room ? `${box.name.slice(0, room - 1)}…` : box.name;
      parts.push(`<text x="${(x + 3).toFixed(2)}" y="${y + ROW - 4}">${escape(text)}</text>`);
    }
    parts.push('</g>');
  }
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}
