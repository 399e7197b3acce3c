// Generator latency and throughput of a model package per batch size, with onnxruntime's intra-op thread spinning
// off (the engine's default) and on.
//   node dist/bench/engine.bench.js [models/<id>] [intraOpThreads]
import { performance } from 'node:perf_hooks';
import { createEngine } from '../src/engine/engine.js';
import { loadManifest } from '../src/registry/model-manifest.js';

const packageDir = process.argv[2] ?? 'models/shapes-fixture';
const intraOpThreads = Number(process.argv[3] ?? 2);
const RUNS = Number(process.env.RUNS ?? 40);

const id = packageDir.split('/').filter(Boolean).at(-1)!;
const manifest = await loadManifest(packageDir, id, { verifyFiles: false });
const noiseSize = manifest.latent.channels * manifest.latent.height * manifest.latent.width;
const embeddingSize = manifest.text.max_length * manifest.text.hidden_size;

for (const allowSpinning of [false, true]) {
  const engine = await createEngine({ packageDir, manifest, executionProvider: 'cpu', intraOpThreads, allowSpinning });
  await engine.warmup();
  for (const batch of [1, 4, 8, 16]) {
    const times: number[] = [];
    for (let run = 0; run < RUNS; run++) {
      const started = performance.now();
      await engine.generate({
        noise: new Float32Array(batch * noiseSize),
        encoderHiddenStates: new Float32Array(batch * embeddingSize),
        negativeEncoderHiddenStates: new Float32Array(batch * embeddingSize),
        nasaScale: new Float32Array(batch),
        batch,
      });
      times.push(performance.now() - started);
    }
    times.sort((a, b) => a - b);
    const median = times[RUNS >> 1]!;
    console.log(
      `spinning ${allowSpinning ? 'on ' : 'off'} batch ${String(batch).padStart(2)}: median ${median.toFixed(2)} ms, ` +
        `p90 ${times[Math.floor(RUNS * 0.9)]!.toFixed(2)} ms, ${((batch / median) * 1000).toFixed(0)} img/s`,
    );
  }
  await engine.close();
}
