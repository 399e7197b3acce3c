// Which package is active without an explicit choice: the best-distilled one. PG-SB students before SB, before
// imported, before undistilled ones; among those the one with the lowest FID its distillation recorded
// (training.metrics.fid.value, trainer.distill's probe on one fixed prompt set), a package without one after those
// with one; then by id. The registry and the benchmark both pick by this rule.
import type { ModelManifest } from './model-manifest.js';

const METHOD_PREFERENCE: readonly ModelManifest['method'][] = ['pg-sb', 'sb', 'imported', 'teacher-init'];

function recordedFid(manifest: ModelManifest): number {
  const value = (manifest.training.metrics.fid as { value?: unknown } | undefined)?.value;
  return typeof value === 'number' && Number.isFinite(value) ? value : Infinity;
}

/** The id of the default package among `manifests`; undefined when there are none. */
export function defaultModelId(manifests: readonly ModelManifest[]): string | undefined {
  const rank = (manifest: ModelManifest) => METHOD_PREFERENCE.indexOf(manifest.method);
  const fid = (a: ModelManifest, b: ModelManifest) => Math.sign(recordedFid(a) - recordedFid(b)) || 0; // both none: NaN -> 0
  return [...manifests].sort((a, b) => rank(a) - rank(b) || fid(a, b) || a.id.localeCompare(b.id))[0]?.id;
}
