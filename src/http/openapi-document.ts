// The OpenAPI document, generated from the route schemas. It depends on nothing but the code: the default settings
// and a service with no models stand in for the real ones, so the output is the same on every machine.
import { errors } from '../errors.js';
import { resolveSettings } from '../config/settings.js';
import { buildApp } from './app.js';
import type { InferenceService } from './inference-service.js';

const noModels: InferenceService = {
  generate: () => Promise.reject(errors.SNOOPI_NOT_READY('no models are loaded')),
  listModels: () => [],
  isReady: () => false,
  stats: () => ({ activeModel: null, ready: false, models: [], stalePackages: [], cache: { hits: 0, misses: 0, bytes: 0, entries: 0 } }),
  onBatch: () => () => {},
  close: async () => {},
  activate: (id) => Promise.reject(errors.SNOOPI_MODEL_NOT_FOUND(id, '(none)')),
  rescan: async () => {},
};

/** The document as written to openapi/openapi.json: two-space indented JSON with a final newline. */
export async function renderOpenApiDocument(): Promise<string> {
  const app = buildApp(resolveSettings({ logLevel: 'silent' }), noModels);
  try {
    await app.ready();
    return `${JSON.stringify(app.swagger(), null, 2)}\n`;
  } finally {
    await app.close();
  }
}
