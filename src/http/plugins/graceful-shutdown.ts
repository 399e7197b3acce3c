// Graceful shutdown, in three steps:
//   1. Stop taking work: /readyz answers 503 and new inference requests are refused with 503 + Retry-After
//      (load-shedding.ts). The server still accepts connections, so probes and clients get an explicit answer.
//   2. Let the in-flight inference requests finish (at most shutdownGraceMs; then their connections are cut).
//   3. Close the app: the server stops accepting connections, then onClose releases the service's sessions.
import fp from 'fastify-plugin';
import type { FastifyInstance, FastifyRequest } from 'fastify';

export interface Lifecycle {
  readonly shuttingDown: boolean;
  /** Inference requests received and not yet answered. */
  readonly inFlight: number;
  /** Starts the shutdown (once) and resolves when the app has closed. */
  shutdown(reason: string): Promise<void>;
}

declare module 'fastify' {
  interface FastifyInstance {
    lifecycle: Lifecycle;
  }
}

export interface GracefulShutdownOptions {
  graceMs: number;
  /** Install SIGTERM/SIGINT handlers (the serve command); tests call lifecycle.shutdown() themselves. */
  handleSignals: boolean;
}

const signals = ['SIGTERM', 'SIGINT'] as const;

export default fp(
  async function gracefulShutdown(app: FastifyInstance, options: GracefulShutdownOptions) {
    const inFlight = new Set<FastifyRequest>();
    let drained: (() => void) | undefined;
    let closing: Promise<void> | undefined;

    // The response's 'close' comes once per request in every case: answered, or connection lost before the answer
    // (Fastify's onResponse and onRequestAbort both miss a client that leaves after sending its whole body).
    app.addHook('onRequest', async (request, reply) => {
      if (request.routeOptions.config.inference !== true) return;
      inFlight.add(request);
      reply.raw.once('close', () => {
        if (inFlight.delete(request) && inFlight.size === 0) drained?.();
      });
    });

    const waitForInFlight = (graceMs: number) =>
      new Promise<boolean>((resolve) => {
        if (inFlight.size === 0) return resolve(true);
        const timer = setTimeout(() => resolve(false), graceMs).unref();
        drained = () => {
          clearTimeout(timer);
          resolve(true);
        };
      });

    const lifecycle: Lifecycle = {
      get shuttingDown() {
        return closing !== undefined;
      },
      get inFlight() {
        return inFlight.size;
      },
      shutdown(reason) {
        closing ??= (async () => {
          app.log.info({ reason, inFlight: inFlight.size, graceMs: options.graceMs }, 'shutting down: refusing new work');
          if (!(await waitForInFlight(options.graceMs))) {
            app.log.warn({ inFlight: inFlight.size }, 'grace period over: closing the connections of unfinished requests');
            app.server.closeAllConnections();
          }
          await app.close();
          app.log.info('shut down');
        })();
        return closing;
      },
    };
    app.decorate('lifecycle', lifecycle);

    if (options.handleSignals) {
      const onSignal = (signal: NodeJS.Signals) => {
        if (lifecycle.shuttingDown) {
          app.log.warn({ signal }, 'second signal: closing every connection now');
          app.server.closeAllConnections();
          return;
        }
        lifecycle.shutdown(signal).catch((err: unknown) => app.log.error({ err }, 'shutdown failed'));
      };
      for (const signal of signals) process.on(signal, onSignal);
      app.addHook('onClose', async () => {
        for (const signal of signals) process.off(signal, onSignal);
      });
    }
  },
  { name: 'snoopi-graceful-shutdown' },
);
