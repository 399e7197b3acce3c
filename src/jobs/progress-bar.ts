// One line of text for a job's state, as `snoopi jobs watch` redraws it:
//   ft-mi9x2k4c-3f9a1b running [##########----------]  500/1000  50%  eta 4m10s  loss student 0.0123 lora 1.0200  kappa 3.10
import type { Job } from './job-record.js';

export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export function progressBar(step: number, total: number, width: number): string {
  const filled = total > 0 ? Math.min(width, Math.floor((step / total) * width)) : 0;
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}]`;
}

export function formatJobLine(job: Job, barWidth = 20): string {
  const { step, total, eta_s: eta } = job.progress;
  const percent = total > 0 ? Math.floor((100 * step) / total) : 0;
  const parts = [
    job.id,
    job.stage === null || job.stage === 'training' ? job.status : `${job.status} (${job.stage})`,
    progressBar(step, total, barWidth),
    `${String(step).padStart(String(total).length)}/${total}`,
    `${String(percent).padStart(3)}%`,
  ];
  if (job.status === 'running' && eta !== null) parts.push(`eta ${formatDuration(eta)}`);
  const losses = Object.entries(job.losses);
  if (losses.length > 0) parts.push(`loss ${losses.map(([name, value]) => `${name} ${value.toPrecision(3)}`).join(' ')}`);
  if (job.kappa !== null) parts.push(`kappa ${job.kappa.toFixed(2)}`);
  return parts.join('  ');
}

/** The last line of a watch: what became of the job. */
export function formatOutcome(job: Job): string {
  switch (job.status) {
    case 'succeeded':
      return `succeeded: model ${job.model_id} is registered (activate it with POST /admin/models/${job.model_id}/activate)`;
    case 'failed':
      return `failed: ${job.error ?? 'no reason recorded'}`;
    default:
      return job.status;
  }
}
