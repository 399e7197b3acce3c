// The admin routes: fine-tune jobs (src/jobs/job-manager.ts does the work) and model activation. Their own context
// holds the bearer-token hook, so no other route is affected by it.
import type { ServerResponse } from 'node:http';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { errors } from '../../errors.js';
import { isFinished, type Job } from '../../jobs/job-record.js';
import type { JobManager } from '../../jobs/job-manager.js';
import adminAuth from '../plugins/admin-auth.js';
import {
  activateModelSchema,
  cancelJobSchema,
  finetuneSchema,
  getJobSchema,
  jobEventsSchema,
  listJobsSchema,
  type FinetuneBody,
} from '../schemas/admin.js';

/** Seconds between keep-alive comments of an event stream, so that proxies do not drop a quiet one. */
const KEEP_ALIVE_MS = 15_000;

const adminRoutes: FastifyPluginAsyncTypebox = async (app) => {
  await app.register(adminAuth);

  // The auth hook answers 404 before any handler runs when there is no token, so there is a manager here.
  const jobs = (): JobManager => app.jobs!;
  const jobOf = (id: string): Job => {
    const job = jobs().get(id);
    if (job === undefined) throw errors.SNOOPI_JOB_NOT_FOUND(id);
    return job;
  };

  app.post('/admin/finetune', { schema: finetuneSchema }, async (request, reply) => {
    const job = await jobs().submit(request.body as FinetuneBody);
    reply.code(202).header('location', `/admin/jobs/${job.id}`);
    return { job };
  });

  app.get('/admin/jobs', { schema: listJobsSchema }, async () => ({ data: jobs().list() }));

  app.get('/admin/jobs/:id', { schema: getJobSchema }, async (request) => ({ job: jobOf(request.params.id) }));

  // Open event streams, ended when the app closes (an open stream would hold the server's close forever).
  const streams = new Set<() => void>();
  app.addHook('preClose', async () => {
    for (const end of streams) end();
  });

  app.get('/admin/jobs/:id/events', { schema: jobEventsSchema }, async (request, reply) => {
    const current = jobOf(request.params.id);
    reply.hijack();
    const response: ServerResponse = reply.raw;
    response.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      'x-accel-buffering': 'no',
      'x-request-id': request.id,
    });
    let sequence = 0;
    let ended = false;
    const end = () => {
      if (ended) return;
      ended = true;
      clearInterval(keepAlive);
      unsubscribe();
      streams.delete(end);
      response.end();
    };
    const send = (job: Job) => {
      if (ended) return;
      response.write(`id: ${++sequence}\nevent: job\ndata: ${JSON.stringify(job)}\n\n`);
      if (isFinished(job.status)) end();
    };
    const keepAlive = setInterval(() => response.write(': keep-alive\n\n'), KEEP_ALIVE_MS).unref();
    // Subscribe first, then replay the current state: no change can fall between the two.
    const unsubscribe = jobs().subscribe(current.id, send);
    streams.add(end);
    response.once('close', end);
    send(jobs().get(current.id)!);
  });

  app.delete('/admin/jobs/:id', { schema: cancelJobSchema }, async (request) => {
    jobOf(request.params.id);
    return { job: await jobs().cancel(request.params.id) };
  });

  app.post('/admin/models/:id/activate', { schema: activateModelSchema }, async (request) => {
    const previous = app.generation.listModels().find((model) => model.active)?.id ?? null;
    await app.generation.activate(request.params.id);
    request.log.info({ model: request.params.id, previous }, 'model activated by an admin');
    return { active: request.params.id, previous };
  });
};

export default adminRoutes;
