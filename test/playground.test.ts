// The web playground (GET /, web/), end to end in a real browser: Debian's Chromium, headless, driven by
// playwright-core, against the live server on a real socket, which has API keys. Without a key the page shows the
// API's 401; with one it types a prompt, generates, and waits for the images to decode; then a request the server
// refuses must show the API's error, and the OpenAI-compatible route must give the same images. The page must log no
// error but the refusals' (a Content-Security-Policy violation would). The screenshot goes to docs/screenshots/playground.png with
// SNOOPI_UPDATE_SCREENSHOTS=1, else to a temporary folder (its timings change every run).
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { chromium } from 'playwright-core';
import { apiKeyDigest } from '../src/auth/api-keys.js';
import { repoRoot } from '../src/config/paths.js';
import { build } from './helpers/build.js';

const chromiumPath = '/usr/bin/chromium';
// Headless on a machine without a GPU or an outside network: no GPU process, no background connections.
const chromiumArgs = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];

test('GET / serves the playground page, its script and its style, with a strict Content-Security-Policy', async (t) => {
  const { app } = await build(t, { warm: false });
  for (const [url, type, file] of [
    ['/', 'text/html; charset=utf-8', 'index.html'],
    ['/playground/app.js', 'text/javascript; charset=utf-8', 'app.js'],
    ['/playground/style.css', 'text/css; charset=utf-8', 'style.css'],
    ['/playground/favicon.svg', 'image/svg+xml', 'favicon.svg'],
  ] as const) {
    const response = await app.inject({ method: 'GET', url });
    assert.equal(response.statusCode, 200, url);
    assert.equal(response.headers['content-type'], type, url);
    assert.match(String(response.headers['content-security-policy']), /^default-src 'self'; img-src 'self' data:;/, url);
    assert.equal(response.body, await readFile(join(repoRoot, 'web', file), 'utf8'), url);
  }
});

test('the playground generates images and shows errors, in a real browser', async (t) => {
  assert.ok(existsSync(chromiumPath), `${chromiumPath} is missing: scripts/setup.sh installs Debian's chromium`);
  const scratch = await mkdtemp(join(tmpdir(), 'snoopi-playground-'));
  const apiKey = 'playground-test-key-0123456789';
  await writeFile(join(scratch, 'api-keys.txt'), `playground ${apiKeyDigest(apiKey)}\n`);
  const { url, service } = await build(t, { listen: true, settings: { apiKeys: join(scratch, 'api-keys.txt') } });
  // playwright gives the browser a new empty profile of its own.
  const browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: chromiumArgs });
  t.after(async () => {
    await browser.close();
    await rm(scratch, { recursive: true, force: true });
  });
  const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
  const pageErrors: string[] = [];
  page.on('console', (message) => {
    if (message.type() === 'error') pageErrors.push(message.text());
  });
  page.on('pageerror', (error) => pageErrors.push(error.message));

  await page.goto(`${url}/`);
  const active = service.stats().activeModel!;
  await page.waitForSelector('#status[data-state="ready"]');
  assert.equal(await page.inputValue('#model'), active);
  const { data: models } = (await (await fetch(`${url}/models`)).json()) as { data: { id: string; nasa: { max_scale: number } }[] };
  assert.equal(await page.getAttribute('#scale', 'max'), String(models.find((model) => model.id === active)!.nasa.max_scale));

  await t.test('without the API key the server asks for, the page shows its 401', async () => {
    await page.fill('#prompt', 'a red circle above a blue square');
    await page.click('#generate');
    await page.waitForSelector('#error:not([hidden])');
    assert.equal(await page.textContent('#error-code'), 'SNOOPI_INVALID_API_KEY');
    await page.fill('#api-key', apiKey);
  });

  await t.test('generate: four images, each with its seed, and the timings', async () => {
    await page.fill('#prompt', 'a red circle above a blue square');
    await page.fill('#negative-prompt', 'a green triangle');
    await page.locator('#scale').fill('0.5');
    await page.fill('#seed', '42');
    await page.selectOption('#num-images', '4');
    await page.click('#generate');
    await page.waitForFunction(() => {
      const images = [...document.querySelectorAll<HTMLImageElement>('#grid img')];
      return images.length === 4 && images.every((image) => image.complete && image.naturalWidth === 64);
    });
    assert.deepEqual(await page.$$eval('#grid .seed', (seeds) => seeds.map((seed) => seed.textContent)), ['seed 42', 'seed 43', 'seed 44', 'seed 45']);
    assert.deepEqual(await page.$$eval('#timings dt', (names) => names.map((name) => name.textContent)), [
      'total',
      'queue',
      'encode',
      'generate',
      'image',
      'round trip',
    ]);
    assert.match((await page.textContent('#notes'))!, new RegExp(`^model ${active} · batch of \\d+ · NASA scale 0\\.5`));
    assert.equal(await page.isHidden('#error'), true);
    assert.equal(await page.isHidden('#empty'), true);

    const path = process.env.SNOOPI_UPDATE_SCREENSHOTS === '1' ? join(repoRoot, 'docs', 'screenshots', 'playground.png') : join(scratch, 'playground.png');
    const png = await page.screenshot({ path, fullPage: true });
    assert.deepEqual([...png.subarray(1, 4)], [...Buffer.from('PNG')]);
  });

  await t.test("a refused request shows the API's error code and message; the images stay", async () => {
    await page.fill('#seed', '99999999999');
    await page.click('#generate');
    await page.waitForSelector('#error:not([hidden])');
    assert.equal(await page.textContent('#error-code'), 'SNOOPI_VALIDATION');
    assert.match((await page.textContent('#error-message'))!, /seed/);
    assert.equal(await page.locator('#grid img').count(), 4);

    await page.fill('#seed', '7');
    await page.selectOption('#num-images', '1');
    await page.click('#generate');
    await page.waitForFunction(() => document.querySelectorAll('#grid img').length === 1 && document.querySelector('#error')!.hasAttribute('hidden'));
    assert.deepEqual(await page.$$eval('#grid .seed', (seeds) => seeds.map((seed) => seed.textContent)), ['seed 7']);
  });

  await t.test('the OpenAI-compatible route gives the same images, and its errors in OpenAI shape', async () => {
    const imageSources = () => page.$$eval('#grid img', (images) => images.map((image) => (image as HTMLImageElement).src));
    await page.selectOption('#num-images', '2');
    await page.click('#generate');
    await page.waitForFunction(() => document.querySelectorAll('#grid img').length === 2);
    const native = await imageSources();

    await page.selectOption('#api', 'openai');
    await page.evaluate(() => document.querySelector('#grid')!.replaceChildren());
    await page.click('#generate');
    await page.waitForFunction(() => {
      const images = [...document.querySelectorAll<HTMLImageElement>('#grid img')];
      return images.length === 2 && images.every((image) => image.complete && image.naturalWidth === 64);
    });
    assert.deepEqual(await imageSources(), native);
    assert.deepEqual(await page.$$eval('#grid .seed', (seeds) => seeds.map((seed) => seed.textContent)), ['seed 7', 'seed 8']);
    assert.deepEqual(await page.$$eval('#timings dt', (names) => names.map((name) => name.textContent)), ['round trip']);
    assert.equal(await page.textContent('#notes'), `model ${active} · OpenAI-compatible answer · size 64x64`);

    await page.fill('#seed', '-3');
    await page.click('#generate');
    await page.waitForSelector('#error:not([hidden])');
    assert.equal(await page.textContent('#error-code'), 'SNOOPI_VALIDATION');
    assert.equal(await page.textContent('#error-message'), 'Invalid request: body/seed must be integer');
  });

  assert.deepEqual(pageErrors.filter((text) => !/status of 40[01]/.test(text)), [], 'the page logged errors');
});
