// The playground: GET /models fills the model list and the NASA scale's range, the form posts to POST /generate or to
// the OpenAI-compatible POST /v1/images/generations (with an API key when the server has keys), and the answer
// becomes an image grid with each image's seed and the request's timings. Plain ES module, no build step; everything
// the page shows comes from the public API, nothing else.

const $ = (id) => document.getElementById(id);
const form = $('generate-form');
const promptInput = $('prompt');
const negativeInput = $('negative-prompt');
const scaleInput = $('scale');
const scaleValue = $('scale-value');
const seedInput = $('seed');
const countInput = $('num-images');
const modelInput = $('model');
const apiInput = $('api');
const keyInput = $('api-key');
const generateButton = $('generate');

const MAX_SEED = 4294967295;
let models = [];

// --- talking to the API --------------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    // Under /v1 the message and the code are inside OpenAI's `error` object.
    const details = typeof body?.error === 'object' ? body.error : body;
    super(details?.message ?? `HTTP ${status}`);
    this.status = status;
    this.code = details?.code ?? `HTTP ${status}`;
  }
}

async function call(method, path, body) {
  const headers = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const key = keyInput.value.trim();
  if (key !== '') headers.authorization = `Bearer ${key}`;
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  let json;
  try {
    json = text === '' ? undefined : JSON.parse(text);
  } catch {
    json = { message: text.slice(0, 300) };
  }
  if (!response.ok) throw new ApiError(response.status, json);
  return json;
}

// --- models and the NASA scale -------------------------------------------------------------------------------------

function selectedModel() {
  return models.find((model) => model.id === modelInput.value);
}

function showScale() {
  scaleValue.value = Number(scaleInput.value).toFixed(2);
  const ratio = Number(scaleInput.max) > 0 ? Number(scaleInput.value) / Number(scaleInput.max) : 0;
  scaleInput.style.setProperty('--fill', `${(ratio * 100).toFixed(1)}%`);
}

function applyModel(model) {
  const { max_scale: max, default_scale: initial } = model.nasa;
  scaleInput.max = String(max);
  scaleInput.step = String(max / 40 || 0.05);
  scaleInput.value = String(initial);
  scaleInput.disabled = max === 0;
  $('scale-max').textContent = max.toFixed(2);
  $('model-info').textContent = [
    model.display_name,
    `${model.backbone} · ${model.method} · ${model.image.width}×${model.image.height} · ${model.execution_provider}`,
  ]
    .filter(Boolean)
    .join('\n');
  showScale();
}

function setStatus(state, text) {
  $('status').dataset.state = state;
  $('status-text').textContent = text;
}

async function loadModels() {
  try {
    ({ data: models } = await call('GET', '/models'));
  } catch (error) {
    setStatus('error', 'models unavailable');
    showError(error);
    return;
  }
  modelInput.replaceChildren(
    ...models.map((model) => {
      const option = new Option(model.id, model.id, false, model.active);
      option.title = model.display_name ?? model.id;
      return option;
    }),
  );
  modelInput.disabled = models.length === 0;
  const active = models.find((model) => model.active) ?? models[0];
  if (active === undefined) {
    setStatus('error', 'no models');
    return;
  }
  modelInput.value = active.id;
  applyModel(active);
  setStatus('ready', active.id);
}

// --- the request ---------------------------------------------------------------------------------------------------

// The two APIs the form can call: where, the field that counts images, and how to read the answer into the images
// (seed, type, size, base64), the timings and the notes that the page shows.
const apis = {
  generate: {
    path: '/generate',
    countField: 'num_images',
    read: (result) => ({
      images: result.images,
      timings: [
        ['total', result.timings.total_ms],
        ['queue', result.timings.queue_ms],
        ['encode', result.timings.encode_ms],
        ['generate', result.timings.generate_ms],
        ['image', result.timings.image_ms],
      ],
      notes: [
        `model ${result.model}`,
        `batch of ${result.batch_size}`,
        `NASA scale ${result.negative_scale}`,
        ...(result.truncated ? ['prompt truncated to the model’s token limit'] : []),
        ...(result.negative_truncated ? ['negative prompt truncated'] : []),
      ],
    }),
  },
  openai: {
    path: '/v1/images/generations',
    countField: 'n',
    read: (result) => {
      const [width, height] = result.size.split('x').map(Number);
      const contentType = `image/${result.output_format}`;
      return {
        images: result.data.map((image) => ({ seed: image.seed, content_type: contentType, width, height, b64_json: image.b64_json })),
        timings: [],
        notes: [`model ${modelInput.value}`, 'OpenAI-compatible answer', `size ${result.size}`],
      };
    },
  },
};

function requestBody(api) {
  const body = { prompt: promptInput.value, [api.countField]: Number(countInput.value), model: modelInput.value };
  const negative = negativeInput.value.trim();
  if (negative !== '') {
    body.negative_prompt = negative;
    body.negative_scale = Number(scaleInput.value);
  }
  // The server validates the seed (an integer 0..2^32-1) and says what is wrong with it: a typed value is sent as it is.
  const seed = seedInput.value.trim();
  if (seed !== '') body.seed = /^\d+$/.test(seed) ? Number(seed) : seed;
  return body;
}

async function generate() {
  if (generateButton.disabled) return;
  if (promptInput.value.trim() === '') {
    showError(new ApiError(0, { code: 'Prompt required', message: 'write what the image should show' }));
    promptInput.focus();
    return;
  }
  hideError();
  generateButton.disabled = true;
  form.classList.add('busy');
  const api = apis[apiInput.value];
  const started = performance.now();
  try {
    const result = await call('POST', api.path, requestBody(api));
    showResult(api.read(result), performance.now() - started);
  } catch (error) {
    showError(error);
  } finally {
    generateButton.disabled = false;
    form.classList.remove('busy');
  }
}

// --- showing the answer --------------------------------------------------------------------------------------------

function showResult({ images, timings, notes }, roundTripMs) {
  const figures = images.map((image) => {
    const figure = document.createElement('figure');
    figure.className = 'tile';
    const img = new Image(image.width, image.height);
    img.src = `data:${image.content_type};base64,${image.b64_json}`;
    img.alt = `${promptInput.value} (seed ${image.seed})`;
    img.dataset.seed = String(image.seed);
    const caption = document.createElement('figcaption');
    const seed = document.createElement('button');
    seed.type = 'button';
    seed.className = 'seed';
    seed.textContent = `seed ${image.seed}`;
    seed.title = 'Use this seed';
    seed.addEventListener('click', () => {
      seedInput.value = String(image.seed);
      seedInput.focus();
    });
    const size = document.createElement('span');
    size.className = 'size';
    size.textContent = `${image.width}×${image.height}`;
    caption.append(seed, size);
    figure.append(img, caption);
    return figure;
  });
  $('grid').replaceChildren(...figures);
  $('empty').hidden = true;

  $('timings').replaceChildren(
    ...[...timings, ['round trip', roundTripMs]].flatMap(([name, ms]) => {
      const wrapper = document.createElement('div');
      const dt = document.createElement('dt');
      dt.textContent = name;
      const dd = document.createElement('dd');
      dd.textContent = `${ms.toFixed(1)} ms`;
      wrapper.append(dt, dd);
      return [wrapper];
    }),
  );
  $('notes').textContent = notes.join(' · ');
  $('summary').hidden = false;
}

function showError(error) {
  $('error-code').textContent = error instanceof ApiError ? error.code : 'Network error';
  $('error-message').textContent = error.message;
  $('error').hidden = false;
}

function hideError() {
  $('error').hidden = true;
}

// --- wiring --------------------------------------------------------------------------------------------------------

form.addEventListener('submit', (event) => {
  event.preventDefault();
  void generate();
});
document.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    void generate();
  }
});
scaleInput.addEventListener('input', showScale);
modelInput.addEventListener('change', () => {
  const model = selectedModel();
  if (model !== undefined) applyModel(model);
});
$('random-seed').addEventListener('click', () => {
  seedInput.value = String(Math.floor(Math.random() * (MAX_SEED + 1)));
});

void loadModels();
