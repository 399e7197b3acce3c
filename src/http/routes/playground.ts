// GET / : the web playground. Static files from web/ (no build step), read once when the app starts, so a
// missing file stops the start instead of failing a visitor; they are not part of the API (hidden from OpenAPI).
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyPluginAsync } from 'fastify';
import { repoRoot } from '../../config/paths.js';

const webDir = join(repoRoot, 'web');

const assets = [
  { url: '/', file: 'index.html', type: 'text/html; charset=utf-8' },
  { url: '/playground/app.js', file: 'app.js', type: 'text/javascript; charset=utf-8' },
  { url: '/playground/style.css', file: 'style.css', type: 'text/css; charset=utf-8' },
  { url: '/playground/favicon.svg', file: 'favicon.svg', type: 'image/svg+xml' },
] as const;

// The page talks to its own origin only; images arrive as data: URLs (the JSON response's b64_json).
const contentSecurityPolicy =
  "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const playgroundRoutes: FastifyPluginAsync = async (app) => {
  for (const asset of assets) {
    const body = await readFile(join(webDir, asset.file));
    app.get(asset.url, { schema: { hide: true } }, async (_request, reply) =>
      reply
        .type(asset.type)
        .header('content-security-policy', contentSecurityPolicy)
        .header('x-content-type-options', 'nosniff')
        .header('cache-control', 'no-cache')
        .send(body),
    );
  }
};

export default playgroundRoutes;
