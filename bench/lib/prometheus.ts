// The few reads the suite makes of the service's /metrics text: counters and histograms scraped before and after a
// measurement and subtracted, gauges read as they are.

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const LINE = /^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$/;
const LABEL = /([A-Za-z_]\w*)="((?:[^"\\]|\\.)*)"/g;

export function parseMetrics(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = LINE.exec(line);
    if (match === null) continue;
    const labels: Record<string, string> = {};
    for (const [, key, value] of (match[2] ?? '').matchAll(LABEL)) labels[key!] = value!.replace(/\\(.)/g, '$1');
    samples.push({ name: match[1]!, labels, value: Number(match[3]) });
  }
  return samples;
}

/** The sum of the samples named `name` whose labels include `match`. */
export function total(samples: readonly Sample[], name: string, match: Record<string, string> = {}): number {
  return samples
    .filter((sample) => sample.name === name && Object.entries(match).every(([key, value]) => sample.labels[key] === value))
    .reduce((sum, sample) => sum + sample.value, 0);
}

/** after - before of a counter (or a histogram's _sum / _count). */
export function delta(before: readonly Sample[], after: readonly Sample[], name: string, match: Record<string, string> = {}): number {
  return total(after, name, match) - total(before, name, match);
}

export interface HistogramBucket {
  /** Values in (previous bound, le]; the last bucket's le is Infinity. */
  le: number;
  count: number;
}

export interface HistogramDelta {
  count: number;
  sum: number;
  buckets: HistogramBucket[];
}

const bound = (le: string): number => (le === '+Inf' ? Infinity : Number(le));

/** What a histogram observed between two scrapes: its count, sum and per-bucket (not cumulative) counts. */
export function histogramDelta(before: readonly Sample[], after: readonly Sample[], name: string, match: Record<string, string> = {}): HistogramDelta {
  const bounds = [
    ...new Set(after.filter((sample) => sample.name === `${name}_bucket`).map((sample) => sample.labels.le!)),
  ].sort((a, b) => bound(a) - bound(b));
  let previous = 0;
  const buckets = bounds.map((le) => {
    const cumulative = delta(before, after, `${name}_bucket`, { ...match, le });
    const bucket = { le: bound(le), count: cumulative - previous };
    previous = cumulative;
    return bucket;
  });
  return { count: delta(before, after, `${name}_count`, match), sum: delta(before, after, `${name}_sum`, match), buckets };
}
