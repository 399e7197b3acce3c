// The playground: GET /models fills the model list and the NASA scale's range, the form posts to POST /generate,
// the answer becomes an image grid with each image's seed and the request's timings. Plain ES module, no build step;
// everything the page shows comes from the public API, nothing else.

const $ = (id) => document.getElementById(id);
const form = $('generate-form');
const promptInput = $('prompt');
const negativeInput = $('negative-prompt');
const scaleInput = $('scale');
const scaleValue = $('scale-value');
const seedInput = $('seed');
const countInput = $('num-images');
const modelInput = $('model');
const generateButton = $('generate');

const MAX_SEED = 4294967295;
let models = [];

// --- talking to the API --------------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super(body?.message ?? `HTTP ${status}`);
    this.status = status;
    this.code = body?.code ?? `HTTP ${status}`;
  }
}

async function call(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: body === undefined ? { accept: 'application/json' } : { 'content-type': 'application/json', accept: 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
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

function requestBody() {
  const body = { prompt: promptInput.value, num_images: Number(countInput.value), model: modelInput.value };
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
  const started = performance.now();
  try {
    const result = await call('POST', '/generate', requestBody());
    showResult(result, performance.now() - started);
  } catch (error) {
    showError(error);
  } finally {
    generateButton.disabled = false;
    form.classList.remove('busy');
  }
}

// --- showing the answer --------------------------------------------------------------------------------------------

function showResult(result, roundTripMs) {
  const figures = result.images.map((image) => {
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

  const t = result.timings;
  const entries = [
    ['total', t.total_ms],
    ['queue', t.queue_ms],
    ['encode', t.encode_ms],
    ['generate', t.generate_ms],
    ['image', t.image_ms],
    ['round trip', roundTripMs],
  ];
  $('timings').replaceChildren(
    ...entries.flatMap(([name, ms]) => {
      const wrapper = document.createElement('div');
      const dt = document.createElement('dt');
      dt.textContent = name;
      const dd = document.createElement('dd');
      dd.textContent = `${ms.toFixed(1)} ms`;
      wrapper.append(dt, dd);
      return [wrapper];
    }),
  );
  const notes = [`model ${result.model}`, `batch of ${result.batch_size}`, `NASA scale ${result.negative_scale}`];
  if (result.truncated) notes.push('prompt truncated to the model’s token limit');
  if (result.negative_truncated) notes.push('negative prompt truncated');
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
