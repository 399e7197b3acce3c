// What the HTTP layer uses of the generation service: a structural slice of it, so the OpenAPI generator can build
// the app with no models loaded.
import type { GenerationService } from '../generation/generation-service.js';

export type InferenceService = Pick<
  GenerationService,
  'generate' | 'listModels' | 'isReady' | 'stats' | 'onBatch' | 'close' | 'activate' | 'rescan'
>;
export type { GenerateRequest, GenerateResult, ModelInfo, ServiceStats } from '../generation/generation-service.js';
