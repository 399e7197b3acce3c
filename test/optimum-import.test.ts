// `snoopi nasa-patch` and `snoopi import` on the trainer's own export: a tiny random-init package, the same weights in
// the optimum/diffusers layout (what real SD-family students come as) and the parity fixture with PyTorch's outputs.
//  - the NASA-patched optimum UNet at nasa_scale 0 is the plain UNet, and a mixed-scale batch steers only its rows;
//  - a UNet whose weights are in an external data file is patched without reading them;
//  - the imported package gives the trainer package's images (the trainer's generator has PyTorch's NASA in it) at
//    nasa_scale 0, 0.5 and 1 with real negative embeddings, and PyTorch's x0 latents;
//  - each exporter's timestep form (int64 [steps], float32 [batch], float32 scalar) is fed;
//  - a wrong layer count is refused;
//  - GenerationService serves the imported package, and a negative prompt with scale > 0 changes the image.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cp, mkdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { repoRoot } from '../src/config/paths.js';
import { DEFAULT_SESSION_SETTINGS, closeSession, openSession, runSession, type PlainTensor } from '../src/engine/onnx-runtime.js';
import { GenerationService } from '../src/generation/generation-service.js';
import { LATENTS_VALUE } from '../src/importer/generator-graph.js';
import { expectedCrossAttentionLayers } from '../src/importer/optimum-import.js';
import { oneStepSchedule } from '../src/importer/one-step-schedule.js';
import { externalDataFiles, externalizeInitializers, forEachTensor, locateExternalData, writeModel } from '../src/onnx/external-data.js';
import { attribute, int64Tensor, makeNode, tensorValueInfo } from '../src/onnx/onnx-builders.js';
import { renameGraph } from '../src/onnx/onnx-graph.js';
import { DataType, graphOf, readModel } from '../src/onnx/onnx-proto.js';
import { loadManifest, type ModelManifest } from '../src/registry/model-manifest.js';
import { exportTinyModel, maxAbsDifference, parityInputs, readParityCases, readTensor } from './helpers/trainer-export.js';

const cli = join(repoRoot, 'dist', 'src', 'cli.js');

async function snoopi(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [cli, ...args]);
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

async function run(t: TestContext, path: string, feeds: Record<string, PlainTensor>): Promise<Record<string, PlainTensor>> {
  const opened = await openSession(path, path, DEFAULT_SESSION_SETTINGS);
  t.after(() => closeSession(opened));
  return runSession(opened, feeds);
}

const rows = (data: PlainTensor['data'], count: number) => Array.from({ length: count }, (_, row) => data.slice((row * data.length) / count, ((row + 1) * data.length) / count));
const scales = (values: number[]): PlainTensor => ({ type: 'float32', data: Float32Array.from(values), dims: [values.length] });

test('the UNet config gives the cross-attention count; the schedule gives the trainer\'s alpha_bar', async () => {
  assert.equal(expectedCrossAttentionLayers({ cross_attention_layers: 4 }), 4);
  const sd15 = {
    down_block_types: ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'],
    up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D'],
    layers_per_block: 2,
  };
  assert.equal(expectedCrossAttentionLayers(sd15), 16);
  const sdxl = {
    down_block_types: ['DownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D'],
    up_block_types: ['CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'UpBlock2D'],
    layers_per_block: 2,
    transformer_layers_per_block: [1, 2, 10],
  };
  assert.equal(expectedCrossAttentionLayers(sdxl), 70);
  assert.equal(expectedCrossAttentionLayers({ ...sd15, only_cross_attention: true }), undefined);
  assert.equal(expectedCrossAttentionLayers({}), undefined);
  // trainer/diffusion.py's ALPHAS_CUMPROD[999] and [500] (float64).
  const config = { beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'scaled_linear', prediction_type: 'epsilon' };
  assert.ok(Math.abs(oneStepSchedule(config).alphaBar - 0.004660098513077241) < 1e-15);
  assert.deepEqual({ ...oneStepSchedule(config, 500), alphaBar: Number(oneStepSchedule(config, 500).alphaBar.toFixed(12)) }, { parameterization: 'eps', timestep: 500, alphaBar: 0.276332683823 });
  assert.throws(() => oneStepSchedule({ ...config, prediction_type: 'flow' }), /prediction_type "flow" is not supported/);
});

test('nasa-patch and import on the trainer\'s optimum export', async (t) => {
  const exported = await exportTinyModel(t, { id: 'tiny' });
  const { optimumDir, parityDir, dir } = exported;
  const cases = new Map((await readParityCases(parityDir)).map((parityCase) => [parityCase.name, parityCase]));
  const generatorCase = cases.get('generator')!;
  const generatorFeeds = await parityInputs(parityDir, generatorCase);
  const negativeStates = generatorFeeds.negative_encoder_hidden_states!;

  await t.test('the patched UNet at nasa_scale 0 is the plain UNet; mixed scales steer only their rows', async (st) => {
    const out = join(dir, 'patched', 'unet-nasa.onnx');
    const patch = await snoopi(['nasa-patch', join(optimumDir, 'unet', 'model.onnx'), out]);
    assert.equal(patch.code, 0, patch.stderr);
    const lines = patch.stdout.trimEnd().split('\n');
    assert.deepEqual(lines.slice(0, 2), [
      `patched 4 cross-attention layers reading encoder_hidden_states (4 matmul-softmax); as expected by ${join(optimumDir, 'unet', 'config.json')}`,
      'added inputs negative_encoder_hidden_states and nasa_scale, 80 nodes',
    ]);
    assert.match(lines[2]!, new RegExp(`^wrote ${out} in \\d+\\.\\d\\d s$`));

    const unetFeeds = await parityInputs(parityDir, cases.get('optimum_unet')!);
    const plain = (await run(st, join(optimumDir, 'unet', 'model.onnx'), unetFeeds)).out_sample!.data;
    const atZero = (await run(st, out, { ...unetFeeds, negative_encoder_hidden_states: negativeStates, nasa_scale: scales([0, 0, 0]) })).out_sample!.data;
    const mixed = (await run(st, out, { ...unetFeeds, negative_encoder_hidden_states: negativeStates, nasa_scale: scales([0, 0.5, 1]) })).out_sample!.data;
    const zeroDifference = maxAbsDifference(atZero, plain);
    const [row0, row1, row2] = rows(mixed, 3).map((row, index) => maxAbsDifference(row, rows(plain, 3)[index]!));
    st.diagnostic(`nasa_scale 0: max |patched - plain| = ${zeroDifference.toExponential(2)}; scales [0, 0.5, 1]: rows differ by ${[row0, row1, row2].map((value) => value!.toExponential(2)).join(', ')}`);
    assert.ok(zeroDifference <= 1e-6);
    assert.ok(row0! <= 1e-6);
    assert.ok(row1! > 1e-3 && row2! > row1!);
  });

  await t.test('a UNet with external data is patched without reading it; the data file is linked next to the output', async (st) => {
    const model = await readModel(join(optimumDir, 'unet', 'model.onnx'));
    await mkdir(join(dir, 'external'));
    await externalizeInitializers(model, join(dir, 'external'), 'model.onnx_data', 1024);
    await writeModel(model, join(dir, 'external', 'model.onnx'), await locateExternalData(model, join(dir, 'external')));
    const out = join(dir, 'external-patched', 'unet-nasa.onnx');
    const patch = await snoopi(['nasa-patch', join(dir, 'external', 'model.onnx'), out, '--expect=4']);
    assert.equal(patch.code, 0, patch.stderr);
    assert.match(patch.stdout, /as expected by --expect\n.*\nwrote .* and its external data \(model\.onnx_data\) in/);
    const [source, placed] = await Promise.all([stat(join(dir, 'external', 'model.onnx_data')), stat(join(dir, 'external-patched', 'model.onnx_data'))]);
    assert.equal(placed.ino, source.ino);
    const patched = await readModel(out);
    assert.deepEqual([...externalDataFiles(patched).keys()], ['model.onnx_data']);
    const largeInline: string[] = []; // what externalizeInitializers moved out must not have come back in
    forEachTensor(graphOf(patched), (tensor) => {
      if ((tensor.raw_data?.length ?? 0) >= 1024) largeInline.push(tensor.name ?? '');
    });
    assert.deepEqual(largeInline, []);
    const feeds = { ...(await parityInputs(parityDir, cases.get('optimum_unet')!)), negative_encoder_hidden_states: negativeStates, nasa_scale: scales([0, 0.5, 1]) };
    const inline = (await run(st, join(dir, 'patched', 'unet-nasa.onnx'), feeds)).out_sample!.data;
    assert.equal(maxAbsDifference((await run(st, out, feeds)).out_sample!.data, inline), 0);
  });

  const registry = join(dir, 'registry');
  const imported = join(registry, 'imported');
  await t.test('snoopi import gives the trainer package\'s images and PyTorch\'s latents, NASA at scales 0, 0.5 and 1', async (st) => {
    const result = await snoopi(['import', optimumDir, '--out', imported, '--display-name=Tiny, imported']);
    assert.equal(result.code, 0, result.stderr);
    const lines = result.stdout.trimEnd().split('\n');
    assert.deepEqual(lines.slice(0, 3), [
      'NASA: patched 4 cross-attention layers (as expected by unet/config.json)',
      'generator.onnx: eps student at t = 999, latent 4x16x16, image 64x64',
      'text_encoder.onnx: input_ids int32 -> int64 (a Cast in front); dropped output pooler_output (27 nodes)',
    ]);
    assert.match(lines[3]!, new RegExp(`^wrote ${imported} \\(4 files, method imported\\) in \\d+\\.\\d\\d s$`));

    const manifest = await loadManifest(imported, 'imported', { verifyFiles: true });
    const trainer = JSON.parse(await readFile(join(exported.packageDir, 'model.json'), 'utf8')) as ModelManifest;
    const shape = (m: ModelManifest) => ({ parameterization: m.parameterization, timestep: m.timestep, image: m.image, latent: m.latent, text: m.text, backbone: m.backbone });
    assert.deepEqual(shape(manifest), shape(trainer));
    assert.deepEqual({ id: manifest.id, display_name: manifest.display_name, method: manifest.method, files: Object.keys(manifest.files) }, {
      id: 'imported',
      display_name: 'Tiny, imported',
      method: 'imported',
      files: ['generator.onnx', 'text_encoder.onnx', 'tokenizer/vocab.json', 'tokenizer/merges.txt'],
    });

    const pytorchImage = (await readTensor(parityDir, generatorCase.outputs.image!)).data;
    const importedImage = (await run(st, join(imported, 'generator.onnx'), generatorFeeds)).image!;
    const trainerImage = (await run(st, join(exported.packageDir, 'generator.onnx'), generatorFeeds)).image!.data;
    assert.deepEqual([importedImage.type, ...importedImage.dims], ['uint8', 3, 64, 64, 3]);
    const fromTrainer = maxAbsDifference(importedImage.data, trainerImage);
    const fromPytorch = maxAbsDifference(importedImage.data, pytorchImage);

    // The x0 latent inside the imported generator, made an output with the toolkit, against PyTorch's.
    const withLatents = await readModel(join(imported, 'generator.onnx'));
    graphOf(withLatents).output!.push(tensorValueInfo(LATENTS_VALUE, DataType.FLOAT, ['batch_size', 4, 16, 16]));
    await writeModel(withLatents, join(dir, 'generator-with-latents.onnx'));
    const latentsCase = cases.get('generator_with_latents')!;
    const latents = (await run(st, join(dir, 'generator-with-latents.onnx'), generatorFeeds)).latents!.data;
    const fromPytorchLatents = maxAbsDifference(latents, (await readTensor(parityDir, latentsCase.outputs.latents!)).data);

    const textCase = cases.get('text_encoder')!;
    const hidden = (await run(st, join(imported, 'text_encoder.onnx'), await parityInputs(parityDir, textCase))).last_hidden_state!.data;
    const fromPytorchText = maxAbsDifference(hidden, (await readTensor(parityDir, textCase.outputs.last_hidden_state!)).data);
    st.diagnostic(`nasa_scale ${[...(generatorFeeds.nasa_scale!.data as Float32Array)].join(', ')}: max |imported - trainer package| = ${fromTrainer} grey levels, ` +
      `|imported - PyTorch| = ${fromPytorch}; latents |imported - PyTorch| = ${fromPytorchLatents.toExponential(2)}; ` +
      `text encoder |imported - PyTorch| = ${fromPytorchText.toExponential(2)}`);
    assert.ok(fromTrainer <= 1 && fromPytorch <= 1);
    assert.ok(fromPytorchLatents <= 1e-4);
    assert.ok(fromPytorchText <= 1e-4);
  });

  await t.test('each exporter\'s timestep form is fed: int64 [steps], float32 [batch], float32 scalar', async (st) => {
    const trainerImage = (await run(st, join(exported.packageDir, 'generator.onnx'), generatorFeeds)).image!.data;
    for (const form of ['batch', 'scalar'] as const) {
      const variant = join(dir, `optimum-timestep-${form}`);
      await cp(optimumDir, variant, { recursive: true });
      const unet = await readModel(join(variant, 'unet', 'model.onnx'));
      const graph = graphOf(unet);
      renameGraph(graph, (name) => (name === 'timestep' ? 'timestep/int64' : name));
      const input = graph.input!.find((info) => info.name === 'timestep/int64')!;
      Object.assign(input, tensorValueInfo('timestep', DataType.FLOAT, form === 'batch' ? ['batch_size'] : []));
      const cast = makeNode('Cast', ['timestep'], [form === 'batch' ? 'timestep/int64' : 'timestep/int64_scalar'], 'timestep/Cast', [attribute.int('to', DataType.INT64)]);
      const nodes = form === 'batch' ? [cast] : [cast, makeNode('Unsqueeze', ['timestep/int64_scalar', 'timestep/axes'], ['timestep/int64'], 'timestep/Unsqueeze')];
      if (form === 'scalar') graph.initializer!.push(int64Tensor('timestep/axes', [1], [0]));
      graph.node!.unshift(...nodes);
      await writeModel(unet, join(variant, 'unet', 'model.onnx'));
      const result = await snoopi(['import', variant, '--out', join(dir, `timestep-${form}`, 'imported')]);
      assert.equal(result.code, 0, result.stderr);
      const image = (await run(st, join(dir, `timestep-${form}`, 'imported', 'generator.onnx'), generatorFeeds)).image!.data;
      const difference = maxAbsDifference(image, trainerImage);
      st.diagnostic(`timestep float32 ${form === 'batch' ? '[batch]' : 'scalar'}: max |imported - trainer package| = ${difference} grey levels`);
      assert.ok(difference <= 1);
    }
  });

  await t.test('import keeps external data external: the files are linked into the package and listed', async (st) => {
    const variant = join(dir, 'optimum-external');
    await cp(optimumDir, variant, { recursive: true });
    for (const component of ['unet', 'vae_decoder', 'text_encoder']) {
      const path = join(variant, component, 'model.onnx');
      const model = await readModel(path);
      await externalizeInitializers(model, join(variant, component), 'model.onnx_data', 1024);
      await writeModel(model, path, await locateExternalData(model, join(variant, component)));
    }
    const out = join(dir, 'external-package', 'imported');
    const result = await snoopi(['import', variant, '--out', out]);
    assert.equal(result.code, 0, result.stderr);
    const manifest = await loadManifest(out, 'imported', { verifyFiles: true });
    assert.deepEqual(Object.keys(manifest.files), [
      'generator.onnx', 'unet/model.onnx_data', 'vae_decoder/model.onnx_data', 'text_encoder.onnx', 'text_encoder/model.onnx_data', 'tokenizer/vocab.json', 'tokenizer/merges.txt',
    ]);
    const [source, placed] = await Promise.all([stat(join(variant, 'unet', 'model.onnx_data')), stat(join(out, 'unet', 'model.onnx_data'))]);
    assert.equal(placed.ino, source.ino);
    const trainerImage = (await run(st, join(exported.packageDir, 'generator.onnx'), generatorFeeds)).image!.data;
    assert.ok(maxAbsDifference((await run(st, join(out, 'generator.onnx'), generatorFeeds)).image!.data, trainerImage) <= 1);
  });

  await t.test('a cross-attention count other than the expected one is refused', async () => {
    const patch = await snoopi(['nasa-patch', join(optimumDir, 'unet', 'model.onnx'), join(dir, 'refused.onnx'), '--expect=5']);
    assert.deepEqual({ code: patch.code, stdout: patch.stdout }, { code: 1, stdout: '' });
    assert.match(patch.stderr, /^snoopi nasa-patch: found 4 cross-attention layers, expected 5: \/down_blocks\.1\/attentions\.0\/transformer_blocks\.0\/attn2\/Softmax, /);
    const imported3 = await snoopi(['import', optimumDir, '--out', join(dir, 'refused', 'refused'), '--expect', '3']);
    assert.equal(imported3.code, 1);
    assert.match(imported3.stderr, /^snoopi import: found 4 cross-attention layers, expected 3: /);
    await assert.rejects(stat(join(dir, 'refused', 'refused')), { code: 'ENOENT' });
    const badFlag = await snoopi(['import', optimumDir, '--out', join(dir, 'x'), '--method=distilled']);
    assert.deepEqual(badFlag, { code: 2, stdout: '', stderr: 'snoopi import: --method must be one of imported, pg-sb, sb, teacher-init, got "distilled"\n' });
  });

  await t.test('GenerationService serves the imported package like the trainer\'s; a negative prompt steers it', async (st) => {
    await cp(exported.packageDir, join(registry, 'tiny'), { recursive: true });
    const service = await GenerationService.create({
      modelsDir: registry, executionProvider: 'cpu', intraOpThreads: 2, maxBatch: 8, maxQueueRows: 64, deadlineMs: 60_000, cacheBytes: 1 << 20, activeModel: 'imported',
    });
    st.after(() => service.close());
    await service.ready();
    const generate = async (model: string, negativeScale: number) => {
      const result = await service.generate({
        model, prompt: 'a red circle on a white background', negativePrompt: 'red', negativeScale, seed: 42, numImages: 1, format: 'png', quality: 90,
      });
      const image = result.images[0]!;
      assert.deepEqual({ model: result.model, width: image.width, height: image.height, contentType: image.contentType }, { model, width: 64, height: 64, contentType: 'image/png' });
      return new Uint8Array(await sharp(image.data).raw().toBuffer());
    };
    const plain = await generate('imported', 0);
    const steered = await generate('imported', 1);
    const trainerSteered = await generate('tiny', 1);
    const steering = maxAbsDifference(steered, plain);
    const fromTrainer = maxAbsDifference(steered, trainerSteered);
    st.diagnostic(`negative prompt "red": max |scale 1 - scale 0| = ${steering} grey levels; |imported - trainer package| at scale 1 = ${fromTrainer}`);
    assert.ok(steering > 0);
    assert.ok(fromTrainer <= 1);
  });
});
