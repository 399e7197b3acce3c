// Small, dependency-free SVG charts for the report: line charts (linear, log2 or log10 axes) and horizontal
// stacked bars. Enough for a handful of series; not a plotting library.

export type Scale = 'linear' | 'log2' | 'log10';

export interface Point {
  x: number;
  y: number;
  /** Drawn next to the marker (e.g. "c=16"). */
  label?: string;
}

export interface Series {
  name: string;
  points: Point[];
  /** Index into the palette (default: the series' position), so related series can share a color. */
  color?: number;
  dashed?: boolean;
  /** Draw markers (default true). */
  markers?: boolean;
}

export interface LineChart {
  title: string;
  xLabel: string;
  yLabel: string;
  xScale?: Scale;
  yScale?: Scale;
  /** Start a linear axis at 0 (default: x false, y true). */
  xFromZero?: boolean;
  yFromZero?: boolean;
  series: Series[];
}

const WIDTH = 760;
const HEIGHT = 440;
const MARGIN = { left: 70, right: 190, top: 40, bottom: 55 };
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#17becf', '#bcbd22'];

export const escape = (text: string): string => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

function formatTick(value: number): string {
  if (value === 0) return '0';
  const magnitude = Math.abs(value);
  if (magnitude >= 10_000) return `${Number((value / 1000).toPrecision(3))}k`;
  if (magnitude >= 1) return String(Number(value.toPrecision(4)));
  return String(Number(value.toPrecision(2)));
}

/** Round-number ticks covering [min, max] for a linear axis. */
function linearTicks(min: number, max: number): number[] {
  const span = max - min || Math.abs(max) || 1;
  const rough = span / 6;
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 2.5, 5, 10].map((factor) => factor * power).find((candidate) => candidate >= rough)!;
  // From the last tick at or below min to the first at or above max.
  const ticks: number[] = [];
  for (let tick = Math.floor(min / step) * step; ; tick += step) {
    ticks.push(Number(tick.toPrecision(12)));
    if (tick >= max - step * 1e-9) return ticks;
  }
}

function logTicks(min: number, max: number, base: 2 | 10): number[] {
  const ticks: number[] = [];
  const steps = base === 2 ? [1] : [1, 2, 5];
  for (let power = Math.floor(Math.log(min) / Math.log(base)); base ** power <= max * 1.0001; power++) {
    for (const step of steps) {
      const tick = step * base ** power;
      if (tick >= min * 0.9999 && tick <= max * 1.0001) ticks.push(tick);
    }
  }
  return ticks.length >= 2 ? ticks : [min, max];
}

interface Axis {
  map: (value: number) => number;
  ticks: number[];
}

function axis(values: number[], scale: Scale, from: number, to: number, fromZero: boolean): Axis {
  const finite = values.filter((value) => Number.isFinite(value) && (scale === 'linear' || value > 0));
  let min = finite.length > 0 ? Math.min(...finite) : 0;
  let max = finite.length > 0 ? Math.max(...finite) : 1;
  if (scale === 'linear') {
    if (fromZero) min = Math.min(0, min);
    const ticks = linearTicks(min, max);
    min = ticks[0]!;
    max = Math.max(ticks.at(-1)!, max);
    if (max === min) max = min + 1;
    return { map: (value) => from + ((value - min) / (max - min)) * (to - from), ticks };
  }
  const base = scale === 'log2' ? 2 : 10;
  if (min <= 0) min = 1;
  if (max <= min) max = min * base;
  min = base ** Math.floor(Math.log(min) / Math.log(base) + 1e-9);
  max = base ** Math.ceil(Math.log(max) / Math.log(base) - 1e-9);
  const lo = Math.log(min);
  const hi = Math.log(max);
  return { map: (value) => from + ((Math.log(value) - lo) / (hi - lo)) * (to - from), ticks: logTicks(min, max, base) };
}

export function lineChart(chart: LineChart): string {
  const plotRight = WIDTH - MARGIN.right;
  const plotBottom = HEIGHT - MARGIN.bottom;
  const points = chart.series.flatMap((series) => series.points);
  const x = axis(points.map((point) => point.x), chart.xScale ?? 'linear', MARGIN.left, plotRight, chart.xFromZero ?? false);
  const y = axis(points.map((point) => point.y), chart.yScale ?? 'linear', plotBottom, MARGIN.top, chart.yFromZero ?? true);
  const onScale = (value: number, scale: Scale | undefined) => Number.isFinite(value) && (scale === undefined || scale === 'linear' || value > 0);
  const drawable = (point: Point) => onScale(point.x, chart.xScale) && onScale(point.y, chart.yScale);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="sans-serif" font-size="12">`,
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="white"/>`,
    `<text x="${(MARGIN.left + plotRight) / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${escape(chart.title)}</text>`,
  ];
  for (const tick of x.ticks) {
    const px = x.map(tick).toFixed(1);
    parts.push(`<line x1="${px}" y1="${MARGIN.top}" x2="${px}" y2="${plotBottom}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${px}" y="${plotBottom + 16}" text-anchor="middle">${formatTick(tick)}</text>`);
  }
  for (const tick of y.ticks) {
    const py = y.map(tick).toFixed(1);
    parts.push(`<line x1="${MARGIN.left}" y1="${py}" x2="${plotRight}" y2="${py}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${MARGIN.left - 6}" y="${py}" text-anchor="end" dominant-baseline="middle">${formatTick(tick)}</text>`);
  }
  parts.push(`<rect x="${MARGIN.left}" y="${MARGIN.top}" width="${plotRight - MARGIN.left}" height="${plotBottom - MARGIN.top}" fill="none" stroke="#333"/>`);
  parts.push(`<text x="${(MARGIN.left + plotRight) / 2}" y="${HEIGHT - 14}" text-anchor="middle">${escape(chart.xLabel)}</text>`);
  parts.push(
    `<text x="16" y="${(MARGIN.top + plotBottom) / 2}" text-anchor="middle" transform="rotate(-90 16 ${(MARGIN.top + plotBottom) / 2})">${escape(chart.yLabel)}</text>`,
  );
  chart.series.forEach((series, index) => {
    const color = COLORS[(series.color ?? index) % COLORS.length]!;
    const shown = series.points.filter(drawable);
    const path = shown.map((point, i) => `${i === 0 ? 'M' : 'L'}${x.map(point.x).toFixed(1)},${y.map(point.y).toFixed(1)}`).join(' ');
    if (shown.length > 1) parts.push(`<path d="${path}" fill="none" stroke="${color}" stroke-width="2"${series.dashed ? ' stroke-dasharray="6 4"' : ''}/>`);
    for (const point of shown) {
      const [px, py] = [x.map(point.x).toFixed(1), y.map(point.y).toFixed(1)];
      if (series.markers ?? true) parts.push(`<circle cx="${px}" cy="${py}" r="3.5" fill="${color}"/>`);
      if (point.label !== undefined) parts.push(`<text x="${Number(px) + 5}" y="${Number(py) - 6}" font-size="10" fill="${color}">${escape(point.label)}</text>`);
    }
    const legendY = MARGIN.top + 10 + index * 20;
    parts.push(`<line x1="${plotRight + 12}" y1="${legendY}" x2="${plotRight + 34}" y2="${legendY}" stroke="${color}" stroke-width="2"${series.dashed ? ' stroke-dasharray="6 4"' : ''}/>`);
    parts.push(`<text x="${plotRight + 40}" y="${legendY}" dominant-baseline="middle">${escape(series.name)}</text>`);
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

export interface StackedBars {
  title: string;
  xLabel: string;
  /** Segment names, in drawing order. */
  segments: string[];
  bars: { label: string; values: number[] }[];
}

export function stackedBars(chart: StackedBars): string {
  const labelWidth = 190;
  const barHeight = 24;
  const gap = 12;
  const top = 40;
  const legendHeight = 30;
  const height = top + chart.bars.length * (barHeight + gap) + legendHeight + 40;
  const plotLeft = labelWidth;
  const plotRight = WIDTH - 30;
  const totals = chart.bars.map((bar) => bar.values.reduce((sum, value) => sum + Math.max(0, value), 0));
  const ticks = linearTicks(0, Math.max(...totals, 1e-9));
  const max = ticks.at(-1)!;
  const map = (value: number) => plotLeft + (value / max) * (plotRight - plotLeft);
  const plotBottom = top + chart.bars.length * (barHeight + gap);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${WIDTH}" height="${height}" fill="white"/>`,
    `<text x="${WIDTH / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${escape(chart.title)}</text>`,
  ];
  for (const tick of ticks) {
    const px = map(tick).toFixed(1);
    parts.push(`<line x1="${px}" y1="${top - 4}" x2="${px}" y2="${plotBottom}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${px}" y="${plotBottom + 14}" text-anchor="middle">${formatTick(tick)}</text>`);
  }
  chart.bars.forEach((bar, row) => {
    const y = top + row * (barHeight + gap);
    parts.push(`<text x="${plotLeft - 8}" y="${y + barHeight / 2}" text-anchor="end" dominant-baseline="middle">${escape(bar.label)}</text>`);
    let offset = 0;
    bar.values.forEach((value, segment) => {
      const width = map(offset + Math.max(0, value)) - map(offset);
      parts.push(`<rect x="${map(offset).toFixed(1)}" y="${y}" width="${width.toFixed(1)}" height="${barHeight}" fill="${COLORS[segment % COLORS.length]}"/>`);
      offset += Math.max(0, value);
    });
    parts.push(`<text x="${(map(offset) + 4).toFixed(1)}" y="${y + barHeight / 2}" dominant-baseline="middle" font-size="11">${formatTick(Number(offset.toPrecision(3)))}</text>`);
  });
  parts.push(`<text x="${(plotLeft + plotRight) / 2}" y="${plotBottom + 32}" text-anchor="middle">${escape(chart.xLabel)}</text>`);
  const legendY = plotBottom + 50;
  let legendX = plotLeft;
  chart.segments.forEach((segment, index) => {
    parts.push(`<rect x="${legendX}" y="${legendY - 8}" width="12" height="12" fill="${COLORS[index % COLORS.length]}"/>`);
    parts.push(`<text x="${legendX + 16}" y="${legendY}" dominant-baseline="middle">${escape(segment)}</text>`);
    legendX += 24 + segment.length * 6.5;
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}
