// Wires the fine-tune job manager (src/jobs/, plain TypeScript) into the app: built only when the admin routes are
// enabled (an admin token is set), decorated as app.jobs (null otherwise), closed in onClose, where the local
// runner stops its trainers and the kubernetes runner leaves its Jobs running for the next start to follow.
import fp from 'fastify-plugin';
import type { FastifyInstance } from 'fastify';
import { createJobManager } from '../../jobs/create-job-manager.js';
import type { JobManager } from '../../jobs/job-manager.js';
import type { JobRunner } from '../../jobs/job-runner.js';
import { Job } from '../schemas/admin.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** null when no admin token is set: the admin routes answer 404 then. */
    jobs: JobManager | null;
  }
}

export interface AdminJobsOptions {
  /** A runner of the caller's (tests); default: the one the settings name. */
  runner?: JobRunner;
}

export default fp(
  async function adminJobs(app: FastifyInstance, options: AdminJobsOptions) {
    // The routes' shared schema is documented whether or not the routes are enabled.
    app.addSchema(Job);
    if (app.settings.adminToken === undefined) {
      app.decorate('jobs', null);
      return;
    }
    const manager = await createJobManager(app.settings, {
      rescan: () => app.generation.rescan(),
      modelIds: () => app.generation.listModels().map((model) => model.id),
      log: app.log.child({ component: 'jobs' }),
      ...(options.runner === undefined ? {} : { runner: options.runner }),
    });
    app.decorate('jobs', manager);
    app.addHook('onClose', async () => {
      await manager.close();
    });
  },
  { name: 'snoopi-admin-jobs', dependencies: ['snoopi-generation'], decorators: { fastify: ['settings'] } },
);
