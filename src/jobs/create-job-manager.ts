// The job manager the service runs, built from its settings: the runner they choose (local by default, kubernetes
// loaded only when chosen), the records folder, the operator's trainer keys and the registrar of finished packages.
import { readFile } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { repoRoot } from '../config/paths.js';
import type { Settings } from '../config/settings.js';
import { JobManager, type JobLog } from './job-manager.js';
import type { JobRunner } from './job-runner.js';
import { JobStore } from './job-store.js';
import { LocalRunner } from './local-runner.js';
import { createPackageRegistrar } from './package-registrar.js';

export interface JobManagerDependencies {
  /** The serving registry's rescan (a registered package shows up in /models). */
  rescan(): Promise<void>;
  /** The ids of the registered models. */
  modelIds(): string[];
  log: JobLog;
  /** A runner of the caller's (tests); default: the one settings.jobRunner names. */
  runner?: JobRunner;
}

export const baseModelsDirOf = (settings: Settings): string => settings.baseModelsDir ?? join(settings.modelsDir, 'base');

async function createRunner(settings: Settings): Promise<JobRunner> {
  if (settings.jobRunner === 'local') {
    return new LocalRunner({
      command: [settings.trainerPython, '-m', 'trainer.distill'],
      modelsDir: settings.modelsDir,
      baseModelsDir: baseModelsDirOf(settings),
      cancelGraceMs: settings.jobCancelGraceMs,
      // The trainer runs in the job's folder; the repository must stay importable.
      env: { PYTHONPATH: [repoRoot, process.env.PYTHONPATH].filter(Boolean).join(delimiter) },
    });
  }
  const [{ KubeConfig }, { KubernetesRunner, loadJobTemplate, resolveNamespace }] = await Promise.all([
    import('@kubernetes/client-node'),
    import('./kubernetes-runner.js'),
  ]);
  const kubeConfig = new KubeConfig();
  // In a pod: its service account; elsewhere: KUBECONFIG or ~/.kube/config.
  kubeConfig.loadFromDefault();
  return new KubernetesRunner({
    kubeConfig,
    namespace: resolveNamespace(kubeConfig, settings.k8sNamespace),
    template: await loadJobTemplate(settings.k8sJobTemplate),
    pollMs: settings.k8sPollMs,
  });
}

async function readOperatorKeys(path: string): Promise<Record<string, unknown>> {
  const value: unknown = JSON.parse(await readFile(path, 'utf8'));
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`${path} (SNOOPI_TRAINER_CONFIG) must hold a JSON object`);
  return value as Record<string, unknown>;
}

export async function createJobManager(settings: Settings, dependencies: JobManagerDependencies): Promise<JobManager> {
  return JobManager.open({
    store: new JobStore(settings.jobsDir, dependencies.log),
    runner: dependencies.runner ?? (await createRunner(settings)),
    registrar: createPackageRegistrar({ modelsDir: settings.modelsDir, executionProvider: settings.executionProvider, rescan: dependencies.rescan }),
    modelsDir: settings.modelsDir,
    baseModelsDir: baseModelsDirOf(settings),
    maxRunning: settings.maxRunningJobs,
    operatorKeys: settings.trainerConfig === undefined ? {} : await readOperatorKeys(settings.trainerConfig),
    modelIds: dependencies.modelIds,
    log: dependencies.log,
  });
}
