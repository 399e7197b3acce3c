// The one way tests get an app: the real GenerationService over the real model packages of the registry
// (SNOOPI_MODELS_DIR or the repo's models/), wired by buildApp, shut down in t.after.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import { loadSettings, validateSettings, type Settings } from '../../src/config/settings.js';
import { GenerationService, type GenerationServiceOptions } from '../../src/generation/generation-service.js';
import { buildApp } from '../../src/http/app.js';
import type { JobRunner } from '../../src/jobs/job-runner.js';
import type { ModelManifest } from '../../src/registry/model-manifest.js';
import { serviceOptions } from '../../src/serve.js';

export interface BuildOptions {
  /** Settings on top of the environment's; logs are silent unless SNOOPI_LOG_LEVEL says otherwise. */
  settings?: Partial<Settings>;
  /** Wait until the active model is loaded and warmed (default true). */
  warm?: boolean;
  /** Listen on a free loopback port, for the real-socket tests (default false: use inject). */
  listen?: boolean;
  /** The runner of fine-tune jobs (default: the one the settings name). */
  jobRunner?: JobRunner;
  /** Sees every engine worker thread started (fault injection). */
  onWorker?: GenerationServiceOptions['onWorker'];
  /** The app's logger (default: one at the settings' level, writing to stdout). */
  logger?: FastifyBaseLogger;
}

export interface Built {
  app: FastifyInstance;
  service: GenerationService;
  settings: Settings;
  /** http://127.0.0.1:<port> when listening. */
  url: string;
}

export function testSettings(overrides: Partial<Settings> = {}): Settings {
  const fromEnvironment = loadSettings([], process.env);
  return validateSettings({ ...fromEnvironment, logLevel: process.env.SNOOPI_LOG_LEVEL ?? 'silent', ...overrides });
}

export async function build(t: TestContext, options: BuildOptions = {}): Promise<Built> {
  const settings = testSettings(options.settings);
  const service = await GenerationService.create({ ...serviceOptions(settings), ...(options.onWorker === undefined ? {} : { onWorker: options.onWorker }) });
  const app = buildApp(settings, service, {
    ...(options.jobRunner === undefined ? {} : { jobRunner: options.jobRunner }),
    ...(options.logger === undefined ? {} : { logger: options.logger }),
  });
  t.after(() => app.lifecycle.shutdown('test finished'));
  if (options.warm ?? true) await service.ready();
  let url = '';
  if (options.listen) {
    await app.listen({ port: 0, host: '127.0.0.1' });
    const address = app.server.address();
    if (address === null || typeof address === 'string') throw new Error(`unexpected server address ${String(address)}`);
    url = `http://127.0.0.1:${address.port}`;
  } else {
    await app.ready();
  }
  return { app, service, settings, url };
}

/** The manifest of the active model, read from disk independently of the service. */
export async function activeManifest(built: Built): Promise<ModelManifest> {
  const active = built.service.stats().activeModel;
  if (active === null) throw new Error('no active model');
  return JSON.parse(await readFile(join(built.settings.modelsDir, active, 'model.json'), 'utf8')) as ModelManifest;
}
