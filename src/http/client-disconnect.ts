// A client that goes away before its batch runs is dropped from the batch: the routes that generate pass this signal
// to the generation service.
import type { FastifyReply } from 'fastify';
import { errors } from '../errors.js';

/** Aborts with SNOOPI_CLIENT_DISCONNECTED when the connection closes before the answer has been sent. */
export function disconnectSignal(reply: FastifyReply): AbortSignal {
  const disconnected = new AbortController();
  reply.raw.once('close', () => {
    if (!reply.raw.writableFinished) disconnected.abort(errors.SNOOPI_CLIENT_DISCONNECTED());
  });
  return disconnected.signal;
}
