// Where a V8 CPU profile (node --cpu-prof) spends its time: self time by function and by category (a package of
// node_modules, a folder of src/, Node's internals, GC, idle).
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  /** Callees' node ids. */
  children?: number[];
}

export interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileEntry {
  name: string;
  selfMs: number;
  /** Of the profile's non-idle time. */
  share: number;
}

export interface ProfileSummary {
  file: string;
  /** The thread id in the file name: 0 is the main (HTTP) thread, others are the engine's workers. */
  thread: number;
  wallMs: number;
  busyMs: number;
  categories: ProfileEntry[];
  functions: ProfileEntry[];
  /** The flame graph's SVG file, beside the report (flame-graph.ts). */
  flameGraph?: string;
}

export function categoryOf(url: string, functionName: string): string {
  if (url === '') return functionName.startsWith('(') ? functionName : '(native)';
  const packageMatch = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (packageMatch !== null) return packageMatch[1]!;
  const srcMatch = /\/(?:dist\/)?(src|bench)\/([^/]+)/.exec(url);
  if (srcMatch !== null) return `${srcMatch[1]}/${srcMatch[2]!.replace(/\.js$/, '')}`;
  if (url.startsWith('node:')) return 'node internals';
  return url;
}

/** Microseconds of samples that landed in each node (its self time). */
export function selfTimes(profile: CpuProfile): Map<number, number> {
  const selfByNode = new Map<number, number>();
  profile.samples.forEach((id, index) => selfByNode.set(id, (selfByNode.get(id) ?? 0) + (profile.timeDeltas[index] ?? 0)));
  return selfByNode;
}

/** The name of V8's idle pseudo-frame: time the thread waited for work. */
export const IDLE_FRAME = '(idle)';

/** "function place:line" of a frame, places shortened to node_modules/... or dist/... */
export function frameLabel({ functionName, url, lineNumber }: ProfileNode['callFrame']): string {
  const where = url === '' ? '' : ` ${url.replace(/^.*\/(node_modules|dist)\//, '$1/')}:${lineNumber + 1}`;
  return `${functionName || '(anonymous)'}${where}`;
}

export function summarizeProfile(profile: CpuProfile, file: string, top = 15): ProfileSummary {
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfByNode = selfTimes(profile);
  const byFunction = new Map<string, number>();
  const byCategory = new Map<string, number>();
  let busy = 0;
  for (const [id, micros] of selfByNode) {
    const frame = nodes.get(id)!.callFrame;
    const { functionName, url } = frame;
    if (functionName === IDLE_FRAME) continue;
    busy += micros;
    const name = frameLabel(frame);
    byFunction.set(name, (byFunction.get(name) ?? 0) + micros);
    const category = categoryOf(url, functionName);
    byCategory.set(category, (byCategory.get(category) ?? 0) + micros);
  }
  const entries = (map: Map<string, number>) =>
    [...map]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, micros]) => ({ name, selfMs: micros / 1000, share: busy > 0 ? micros / busy : 0 }));
  return { file, thread: threadOf(file), wallMs: (profile.endTime - profile.startTime) / 1000, busyMs: busy / 1000, categories: entries(byCategory), functions: entries(byFunction) };
}

/** The thread id in a --cpu-prof file name (CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile): 0 is the main thread. */
export const threadOf = (file: string): number => Number(/\.(\d+)\.\d+\.cpuprofile$/.exec(file)?.[1] ?? 0);

/** Every .cpuprofile in `dir`, main thread first. */
export async function loadProfiles(dir: string): Promise<{ file: string; profile: CpuProfile }[]> {
  const files = (await readdir(dir).catch(() => [] as string[])).filter((name) => name.endsWith('.cpuprofile'));
  const loaded = await Promise.all(
    files.map(async (name) => ({ file: join(dir, name), profile: JSON.parse(await readFile(join(dir, name), 'utf8')) as CpuProfile })),
  );
  return loaded.sort((a, b) => threadOf(a.file) - threadOf(b.file));
}
