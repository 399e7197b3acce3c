// Prometheus metrics with prom-client, in a registry of this app's own (two apps in one process never collide).
// HTTP metrics are observed in hooks, batches through the service's onBatch listener; queue, cache and model
// numbers are read from the service's stats() at scrape time, so the inference path does no metrics work.
import type { Socket } from 'node:net';
import fp from 'fastify-plugin';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { JOB_STATUSES } from '../../jobs/job-record.js';
import { parserErrorAnswer } from './error-handler.js';

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Registry;
  }
}

const latencyBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const inferenceBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
const batchSizeBuckets = [1, 2, 4, 8, 16, 32, 64, 128, 256];

// Unmatched URLs share one label so that scanners cannot blow up the series count.
const routeLabel = (request: FastifyRequest): string => request.routeOptions.url ?? 'unmatched';

export default fp(
  async function metrics(app: FastifyInstance) {
    const registry = new Registry();
    const service = app.generation;
    collectDefaultMetrics({ register: registry, prefix: 'snoopi_' });

    // HTTP.
    const requests = new Counter({
      name: 'snoopi_http_requests_total',
      help: 'HTTP requests answered, by method, route and status',
      labelNames: ['method', 'route', 'status_code'] as const,
      registers: [registry],
    });
    const latency = new Histogram({
      name: 'snoopi_http_request_duration_seconds',
      help: 'Time from receiving a request to the end of its answer, by method, route and status',
      labelNames: ['method', 'route', 'status_code'] as const,
      buckets: latencyBuckets,
      registers: [registry],
    });
    const aborted = new Counter({
      name: 'snoopi_http_requests_aborted_total',
      help: 'Requests whose client disconnected before the answer was sent, by route',
      labelNames: ['method', 'route'] as const,
      registers: [registry],
    });
    app.addHook('onResponse', async (request, reply) => {
      const labels = { method: request.method, route: routeLabel(request), status_code: String(reply.statusCode) };
      requests.inc(labels);
      latency.observe(labels, reply.elapsedTime / 1000);
    });
    // A response closed before it finished means the client went away (onRequestAbort misses clients that leave
    // after sending their whole body).
    app.addHook('onRequest', async (request, reply) => {
      reply.raw.once('close', () => {
        if (!reply.raw.writableFinished) aborted.inc({ method: request.method, route: routeLabel(request) });
      });
    });
    const cut = new Counter({
      name: 'snoopi_http_connections_cut_total',
      help: 'Connections answered and closed by the server before any route ran: requests not received within SNOOPI_REQUEST_TIMEOUT_MS, malformed requests, headers too large; by code',
      labelNames: ['code'] as const,
      registers: [registry],
    });
    // Ahead of the answering listener (error-handler.ts), which closes the socket.
    app.server.prependListener('clientError', (error: Error, socket: Socket) => {
      const answer = parserErrorAnswer(error, socket, app.settings.requestTimeoutMs);
      if (answer !== undefined) cut.inc({ code: answer.code });
    });

    // Batches, as they finish.
    const batchSize = new Histogram({
      name: 'snoopi_batch_size',
      help: 'Images per generator batch, by model',
      labelNames: ['model'] as const,
      buckets: batchSizeBuckets,
      registers: [registry],
    });
    const inference = new Histogram({
      name: 'snoopi_engine_inference_seconds',
      help: 'Wall time of one generator batch in the engine, by model',
      labelNames: ['model'] as const,
      buckets: inferenceBuckets,
      registers: [registry],
    });
    const failedBatches = new Counter({
      name: 'snoopi_batches_failed_total',
      help: 'Generator batches that failed, by model',
      labelNames: ['model'] as const,
      registers: [registry],
    });
    const stopListening = service.onBatch((batch) => {
      batchSize.observe({ model: batch.model }, batch.rows);
      inference.observe({ model: batch.model }, batch.runMs / 1000);
      if (batch.failed) failedBatches.inc({ model: batch.model });
    });
    app.addHook('onClose', async () => stopListening());

    // The service's state, read at scrape time.
    new Gauge({
      name: 'snoopi_queue_depth',
      help: 'Images waiting for a batch, by model (the running batch excluded)',
      labelNames: ['model'] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const model of service.stats().models) if (model.loaded) this.set({ model: model.id }, model.queuedRows);
      },
    });
    new Gauge({
      name: 'snoopi_queue_requests',
      help: 'Requests waiting for a batch, by model',
      labelNames: ['model'] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const model of service.stats().models) if (model.loaded) this.set({ model: model.id }, model.queuedRequests);
      },
    });
    new Gauge({
      name: 'snoopi_active_model',
      help: 'Always 1, labelled with the active model and the execution provider its sessions run on',
      labelNames: ['model', 'execution_provider'] as const,
      registers: [registry],
      collect() {
        this.reset();
        const { activeModel, models } = service.stats();
        if (activeModel === null) return;
        const provider = models.find((model) => model.id === activeModel)?.executionProvider ?? 'none';
        this.set({ model: activeModel, execution_provider: provider }, 1);
      },
    });
    new Counter({
      name: 'snoopi_engine_restarts_total',
      help: 'Engine worker threads that died and were started again, by loaded model',
      labelNames: ['model'] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const model of service.stats().models) if (model.engine !== null) this.inc({ model: model.id }, model.engine.restarts);
      },
    });
    new Gauge({
      name: 'snoopi_stale_packages',
      help: 'Loaded models whose package on disk has vanished or no longer validates, by model (they keep serving)',
      labelNames: ['model'] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const model of service.stats().stalePackages) this.set({ model }, 1);
      },
    });
    new Gauge({
      name: 'snoopi_ready',
      help: '1 once the active model is loaded and warmed and the service is not shutting down',
      registers: [registry],
      collect() {
        this.set(service.isReady() && !app.lifecycle.shuttingDown ? 1 : 0);
      },
    });
    const cacheCounter = (name: string, help: string, read: () => number) =>
      new Counter({
        name,
        help,
        registers: [registry],
        collect() {
          this.reset();
          this.inc(read());
        },
      });
    cacheCounter('snoopi_embedding_cache_hits_total', 'Text-embedding lookups answered without running the text encoder', () => service.stats().cache.hits);
    cacheCounter('snoopi_embedding_cache_misses_total', 'Text-embedding lookups that ran the text encoder', () => service.stats().cache.misses);
    new Gauge({
      name: 'snoopi_embedding_cache_bytes',
      help: 'Bytes held by the text-embedding cache',
      registers: [registry],
      collect() {
        this.set(service.stats().cache.bytes);
      },
    });
    new Gauge({
      name: 'snoopi_embedding_cache_entries',
      help: 'Prompts held by the text-embedding cache',
      registers: [registry],
      collect() {
        this.set(service.stats().cache.entries);
      },
    });

    new Gauge({
      name: 'snoopi_jobs',
      help: 'Fine-tune jobs by status (all 0 while the admin routes are off)',
      labelNames: ['status'] as const,
      registers: [registry],
      collect() {
        const counts = app.jobs?.counts();
        for (const status of JOB_STATUSES) this.set({ status }, counts?.[status] ?? 0);
      },
    });

    app.decorate('metrics', registry);
  },
  { name: 'snoopi-metrics', dependencies: ['snoopi-generation', 'snoopi-graceful-shutdown', 'snoopi-admin-jobs'] },
);
