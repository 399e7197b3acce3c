// The bearer token of the admin routes (SNOOPI_ADMIN_TOKEN). Registered inside the admin routes' own context, so it
// guards those routes only. Without a token configured they answer exactly what an unknown route answers. The
// presented token is compared with the configured one in constant time: both are hashed (equal-length digests) and
// compared with timingSafeEqual. The token is never logged (app.ts redacts the Authorization header).
import { createHash, timingSafeEqual } from 'node:crypto';
import fp from 'fastify-plugin';
import type { FastifyInstance } from 'fastify';
import { errors } from '../../errors.js';
import { bearerToken } from '../bearer-token.js';
import { redactUrl } from '../request-log.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** True once the request presented the admin token (admin routes only): it may see errors' server-side detail. */
    isAdmin?: boolean;
  }
}

const digest = (token: string): Buffer => createHash('sha256').update(token, 'utf8').digest();

/** True when `authorization` is "Bearer <token>" with the expected token. */
export function bearerMatches(authorization: string | undefined, expectedDigest: Buffer): boolean {
  const presented = bearerToken(authorization);
  return presented !== undefined && timingSafeEqual(digest(presented), expectedDigest);
}

export default fp(
  async function adminAuth(app: FastifyInstance) {
    const token = app.settings.adminToken;
    const expectedDigest = token === undefined ? undefined : digest(token);
    app.decorateRequest('isAdmin', false);
    app.addHook('onRequest', async (request, reply) => {
      if (expectedDigest === undefined) throw errors.SNOOPI_ROUTE_NOT_FOUND(request.method, redactUrl(request.url));
      if (!bearerMatches(request.headers.authorization, expectedDigest)) {
        reply.header('www-authenticate', 'Bearer realm="snoopi-admin"');
        throw errors.SNOOPI_UNAUTHORIZED();
      }
      request.isAdmin = true;
    });
  },
  { name: 'snoopi-admin-auth', decorators: { fastify: ['settings'] } },
);
