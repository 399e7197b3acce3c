// What happens to a job's package once the trainer has exported it to the staging folder: it is checked the way the
// service will use it (manifest, every file's size and sha256, both sessions loaded and warmed, one generation
// through the whole pipeline), then moved into the registry with one rename and the registry rescanned. A package
// that fails a check never becomes visible to /models.
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { ExecutionProvider } from '../engine/onnx-runtime.js';
import { GenerationService } from '../generation/generation-service.js';
import { MANIFEST_FILE } from '../registry/model-manifest.js';

export interface PackageRegistrar {
  /** Throws with a message saying what is wrong with the staged package. */
  validate(stagedDir: string, modelId: string): Promise<void>;
  /** Moves the package into the registry and rescans it; throws if the id is taken meanwhile. */
  install(stagedDir: string, modelId: string): Promise<void>;
}

export interface RegistrarOptions {
  modelsDir: string;
  executionProvider: ExecutionProvider;
  /** The serving registry's rescan. */
  rescan(): Promise<void>;
}

const SMOKE_PROMPT = 'a red circle on a white background';

export function createPackageRegistrar(options: RegistrarOptions): PackageRegistrar {
  return {
    async validate(stagedDir, modelId) {
      await stat(join(stagedDir, MANIFEST_FILE)).catch(() => {
        throw new Error(`the trainer wrote no package: ${join(stagedDir, MANIFEST_FILE)} is missing`);
      });
      // A service of its own over the staging folder, holding only this package: the same loader, engine and
      // pipeline that will serve it, released at once.
      const service = await GenerationService.create({
        modelsDir: dirname(stagedDir),
        activeModel: modelId,
        verifyFiles: true,
        executionProvider: options.executionProvider,
        intraOpThreads: 1,
        maxBatch: 1,
        maxQueueRows: 1,
        deadlineMs: 60_000,
        cacheBytes: 1024 * 1024,
      });
      try {
        await service.ready();
        const result = await service.generate({ prompt: SMOKE_PROMPT, negativePrompt: '', seed: 0, numImages: 1, format: 'png', quality: 90 });
        const [image] = result.images;
        if (result.model !== modelId || image === undefined || image.data.length === 0) {
          throw new Error(`the smoke generation of ${modelId} returned no image`);
        }
      } finally {
        await service.close();
      }
    },

    async install(stagedDir, modelId) {
      const target = join(options.modelsDir, modelId);
      const taken = await stat(target).then(
        () => true,
        () => false,
      );
      if (taken) throw new Error(`${target} exists already: a package with id ${modelId} was added while the job ran`);
      await mkdir(options.modelsDir, { recursive: true });
      await rename(stagedDir, target);
      await rm(dirname(stagedDir), { recursive: true, force: true });
      await options.rescan();
    },
  };
}
