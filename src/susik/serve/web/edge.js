// On-device mode: the server's crop recognizer runs here with onnxruntime-web (WASM); the photo is never
// uploaded. app.js asks `window.susikEdge.active()` and, when on, takes `read(file, mode)` instead of
// POST /v1/recognize: it answers a Response with the same page JSON (plus `source: "device"`).
import * as core from "./edge-core.js";

const toggle = document.getElementById("on-device");
let model = null; // Promise of {ort, manifest, encoder, decoder, words}, made on first use

async function fetchJson(url) {
  const response = await fetch(url);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.detail || `${url}: ${response.status}`);
  return body;
}

async function load() {
  const manifest = await fetchJson("/v1/edge/recognizer");
  const ort = await import(`${manifest.runtime}ort.wasm.min.mjs`);
  ort.env.wasm.wasmPaths = manifest.runtime;
  ort.env.wasm.numThreads = 1; // threads need a cross-origin-isolated page; one keeps the UI thread's core free
  const options = { executionProviders: ["wasm"], graphOptimizationLevel: "all" };
  const [encoder, decoder] = await Promise.all(
    [manifest.files.encoder, manifest.files.decoder].map((url) => ort.InferenceSession.create(url, options)),
  );
  return { ort, manifest, encoder, decoder, words: core.vocabulary(manifest.vocab) };
}

function ready() {
  model ??= load().catch((error) => {
    model = null; // let a later try fetch again
    throw error;
  });
  return model;
}

// Upright RGBA pixels, decoded by the browser without colour management (the server ignores ICC too).
async function pixels(blob) {
  const bitmap = await createImageBitmap(blob, {
    imageOrientation: "from-image", premultiplyAlpha: "none", colorSpaceConversion: "none",
  });
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.drawImage(bitmap, 0, 0);
  bitmap.close();
  return context.getImageData(0, 0, canvas.width, canvas.height);
}

async function decode(m, prepared) {
  const { ort, manifest, encoder, decoder } = m;
  const config = manifest.preprocess;
  const batch = core.padded(prepared, config);
  const images = new ort.Tensor("float32", batch.data, [1, 1, config.height, batch.width]);
  const cross = await encoder.run({ images });
  const layers = encoder.outputNames.length / 2;
  const [heads, memory, headDim] = cross.cross_k_0.dims.slice(1);
  const bias = new ort.Tensor("float32", core.crossBias(memory, config.height, prepared.width, manifest.stride),
    [1, memory]);
  const feeds = { cross_bias: bias };
  for (let layer = 0; layer < layers; layer++) {
    for (const kind of ["k", "v"]) {
      feeds[`cross_${kind}_${layer}`] = cross[`cross_${kind}_${layer}`];
      feeds[`past_${kind}_${layer}`] = new ort.Tensor("float32", new Float32Array(0), [1, heads, 0, headDim]);
    }
  }
  const step = async (token, position) => {
    feeds.tokens = new ort.Tensor("int64", BigInt64Array.of(BigInt(token)), [1, 1]);
    feeds.position = new ort.Tensor("int64", BigInt64Array.of(BigInt(position)), [1]);
    const out = await decoder.run(feeds);
    for (let layer = 0; layer < layers; layer++) {
      for (const kind of ["k", "v"]) feeds[`past_${kind}_${layer}`] = out[`present_${kind}_${layer}`];
    }
    return out.logits.data;
  };
  return core.greedy(step, core.maxLength(prepared.width, manifest.decode), manifest.decode);
}

// One crop -> {latex, confidence, ms: {decode_image, preprocess, recognize}}; what the server's crop mode says.
export async function readCrop(blob) {
  const m = await ready();
  const start = performance.now();
  const image = await pixels(blob);
  const decoded = performance.now();
  let prepared = null;
  try {
    prepared = core.preprocess(image.data, image.width, image.height, m.manifest.preprocess);
  } catch (error) {
    if (!(error instanceof core.CropError)) throw error;
  }
  const preprocessed = performance.now();
  const hypothesis = prepared ? await decode(m, prepared) : { tokens: [], probs: [], stop: "empty" };
  const done = performance.now();
  return {
    width: image.width,
    height: image.height,
    latex: core.detokenize(core.decodeIds(hypothesis.tokens, m.words)),
    confidence: core.confidence(hypothesis, m.manifest.decode.confidence),
    model_version: m.manifest.model_version,
    ms: { decode_image: decoded - start, preprocess: preprocessed - decoded, recognize: done - preprocessed },
  };
}

function answer(status, body) {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

// app.js's stand-in for POST /v1/recognize: the page JSON of a crop, read here.
async function read(file, mode) {
  if (mode !== "crop") {
    return answer(422, { error: "page_mode_on_device", detail: "on this device only one formula is read; choose \"one formula\" or turn on-device mode off" });
  }
  try {
    const crop = await readCrop(file);
    const corners = [[0, 0], [crop.width, 0], [crop.width, crop.height], [0, crop.height]];
    const total = Object.values(crop.ms).reduce((a, b) => a + b, 0);
    return answer(200, {
      request_id: null,
      source: "device",
      model_version: crop.model_version,
      width: crop.width,
      height: crop.height,
      orientation: 0,
      regions: [{ quad: corners, polygon: corners, latex: crop.latex, confidence: crop.confidence, kind: "printed" }],
      timings_ms: { ...crop.ms, total },
    });
  } catch (error) {
    return answer(500, { error: "on_device_failed", detail: error.message });
  }
}

window.susikEdge = { active: () => Boolean(toggle?.checked && !toggle.disabled), read, readCrop, ready };

if (toggle) {
  // Offer the mode only when the server has a model and the runtime to hand out; load it once it is chosen.
  fetch("/v1/edge/recognizer").then((response) => {
    toggle.disabled = !response.ok;
    if (!response.ok) toggle.parentElement.title = "on-device reading is not available on this server";
  });
  toggle.addEventListener("change", () => {
    if (toggle.checked) ready().catch((error) => { toggle.parentElement.title = error.message; });
  });
}
