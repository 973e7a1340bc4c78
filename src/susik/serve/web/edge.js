// On-device mode: the server's crop recognizer (and, for whole pages, its detector) runs here with
// onnxruntime-web (WASM); the photo is never uploaded. app.js asks `window.susikEdge.active()` and, when on,
// takes `read(file, mode)` instead of POST /v1/recognize: it answers a Response with the same page JSON (plus
// `source: "device"`).
import * as core from "./edge-core.js";
import * as geometry from "./edge-page.js";

const toggle = document.getElementById("on-device");
let model = null; // Promise of {ort, manifest, encoder, decoder, words}, made on first use
let detector = null; // Promise of {manifest, session}, made on the first page
const SESSION = { executionProviders: ["wasm"], graphOptimizationLevel: "all" };

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
  const [encoder, decoder] = await Promise.all(
    [manifest.files.encoder, manifest.files.decoder].map((url) => ort.InferenceSession.create(url, SESSION)),
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

async function loadDetector() {
  const [{ ort }, manifest] = await Promise.all([ready(), fetchJson("/v1/edge/detector")]);
  return { manifest, session: await ort.InferenceSession.create(manifest.files.model, SESSION) };
}

function detectorReady() {
  detector ??= loadDetector().catch((error) => {
    detector = null;
    throw error;
  });
  return detector;
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

// One crop's hypothesis; `rescue` false reads greedily whatever the record's rescue (the widened looks).
async function decode(m, prepared, rescue = true) {
  const { ort, manifest, encoder, decoder } = m;
  const config = manifest.preprocess;
  const batch = core.padded(prepared, config);
  const images = new ort.Tensor("float32", batch.data, [1, 1, config.height, batch.width]);
  const cross = await encoder.run({ images });
  const layers = encoder.outputNames.length / 2;
  const [heads, memory, headDim] = cross.cross_k_0.dims.slice(1);
  const bias = core.crossBias(memory, config.height, prepared.width, manifest.stride);
  // A decoder over `rows` copies of the crop (beam search runs one row per beam), its cache reordered by row.
  const open = (rows) => {
    const copies = (tensor) => {
      if (rows === 1) return tensor;
      const data = new Float32Array(tensor.data.length * rows);
      for (let r = 0; r < rows; r++) data.set(tensor.data, r * tensor.data.length);
      return new ort.Tensor("float32", data, [rows, ...tensor.dims.slice(1)]);
    };
    const feeds = { cross_bias: copies(new ort.Tensor("float32", bias, [1, memory])) };
    for (let layer = 0; layer < layers; layer++) {
      for (const kind of ["k", "v"]) {
        feeds[`cross_${kind}_${layer}`] = copies(cross[`cross_${kind}_${layer}`]);
        feeds[`past_${kind}_${layer}`] = new ort.Tensor("float32", new Float32Array(0), [rows, heads, 0, headDim]);
      }
    }
    return {
      async step(tokens, position) {
        feeds.tokens = new ort.Tensor("int64", BigInt64Array.from(tokens, BigInt), [rows, 1]);
        feeds.position = new ort.Tensor("int64", BigInt64Array.of(BigInt(position)), [1]);
        const out = await decoder.run(feeds);
        for (let layer = 0; layer < layers; layer++) {
          for (const kind of ["k", "v"]) feeds[`past_${kind}_${layer}`] = out[`present_${kind}_${layer}`];
        }
        return out.logits.data;
      },
      reorder(sources) {
        for (const name of Object.keys(feeds).filter((key) => key.startsWith("past_"))) {
          const { data, dims } = feeds[name];
          const size = data.length / rows;
          const moved = new Float32Array(data.length);
          sources.forEach((source, r) => moved.set(data.subarray(source * size, (source + 1) * size), r * size));
          feeds[name] = new ort.Tensor("float32", moved, dims);
        }
      },
    };
  };
  const decoding = rescue ? manifest.decode : { ...manifest.decode, rescue_below: 0 };
  return core.decodeCrop(open, core.maxLength(prepared.width, manifest.decode), decoding);
}

// The recognizer's input for one crop, or null for a blank or tiny one (the server reads those as nothing).
function prepare(m, image) {
  try {
    return core.preprocess(image.data, image.width, image.height, m.manifest.preprocess);
  } catch (error) {
    if (!(error instanceof core.CropError)) throw error;
    return null;
  }
}

// One crop's reading (`prepared` is its input), with the record's further looks (thickened strokes, stretched
// sideways, the latter read greedily) when the first is unsure.
async function recognize(m, image, prepared) {
  const config = m.manifest.preprocess;
  const input = (look) => {
    if (look === null) return prepared;
    if (look === "thick") return core.preprocessThickened(image.data, image.width, image.height, config);
    return core.preprocess(image.data, image.width, image.height, config, look);
  };
  const hypothesis = prepared
    ? await core.withSecondLook((look) => decode(m, input(look), typeof look !== "number"), m.manifest.decode,
      core.strokeCoreShare(prepared, config.height))
    : { tokens: [], probs: [], stop: "empty" };
  return {
    latex: core.detokenize(core.decodeIds(hypothesis.tokens, m.words)),
    confidence: core.reportedConfidence(hypothesis, m.manifest.decode),
    // Recognition.look_score: second readings are gated and compared on the raw score, as on the server
    lookScore: core.confidence(hypothesis, m.manifest.decode.confidence),
  };
}

// One crop -> {latex, confidence, ms: {decode_image, preprocess, recognize}}; what the server's crop mode says.
// `given`: the blob's pixels when the caller has them already.
export async function readCrop(blob, given = null) {
  const m = await ready();
  const start = performance.now();
  const image = given ?? (await pixels(blob));
  const decoded = performance.now();
  const prepared = prepare(m, image);
  const preprocessed = performance.now();
  const { latex, confidence } = await recognize(m, image, prepared);
  const done = performance.now();
  return {
    width: image.width,
    height: image.height,
    latex,
    confidence,
    model_version: m.manifest.model_version,
    ms: { decode_image: decoded - start, preprocess: preprocessed - decoded, recognize: done - preprocessed },
  };
}

// A photo of a page -> the server's page JSON fields: detect -> rectify -> orient -> recognize, as
// susik.pipeline.Pipeline does with the bundled detector and the deskew orienter. `given` as in readCrop (made
// opaque in place).
export async function readPage(blob, given = null) {
  const [m, d] = await Promise.all([ready(), detectorReady()]);
  const start = performance.now();
  const image = geometry.opaque(given ?? (await pixels(blob)));
  const decoded = performance.now();
  const { params } = d.manifest;
  const detect = async (input) => {
    const tensor = new m.ort.Tensor("float32", input.tensor, [1, 3, input.height, input.width]);
    const out = await d.session.run({ [d.session.inputNames[0]]: tensor });
    const [maps, orientation] = d.session.outputNames.map((name) => out[name]);
    const valid = { height: input.validHeight, width: input.validWidth };
    return geometry.postprocess(maps.data, maps.dims[2], maps.dims[3], valid, orientation.data, input.scale,
      [image.width, image.height], params);
  };
  const input = geometry.pageInput(image, params);
  const found = await detect(input);
  // as detector.detect_page: a page of large letters keeps the regions a smaller second pass finds too
  const second = geometry.confirmInput(image, input, params, found.detections.length);
  if (second) {
    const checks = (await detect(second)).detections;
    found.detections = geometry.confirmed(found.detections, checks, params.confirm_iou ?? 0.2);
  }
  const detected = performance.now();
  const crops = found.detections.map((detection) => geometry.rectify(image, detection.cropQuad));
  const rectified = performance.now();
  const upright = crops.map((crop) => geometry.deskew(crop));
  const oriented = performance.now();
  const regions = [];
  for (const [i, detection] of found.detections.entries()) {
    let reading = await recognize(m, upright[i], prepare(m, upright[i]));
    // as susik.Pipeline: an unsure printed reading is read again from crops grown along its line, the surest kept
    for (const quad of reading.lookScore < (params.recrop_below ?? 0) ? detection.recropQuads : []) {
      const crop = geometry.deskew(geometry.rectify(image, quad));
      const other = await recognize(m, crop, prepare(m, crop));
      if (other.lookScore > reading.lookScore) reading = other;
    }
    // as susik.Pipeline: a problem number read with the formula is kept apart; alone, it is no formula;
    // the sentence's punctuation after it goes
    const [label, latex] = core.splitReadingLabel(core.stripSentencePunctuation(reading.latex));
    if (label !== null && !latex) continue;
    let { quad, polygon } = detection;
    if (label !== null) { // as susik.Pipeline: a region read with its label starts after the label's space
      const start = geometry.labelEnd(geometry.rectify(image, detection.quad));
      if (start !== null) {
        quad = geometry.cutQuad(detection.quad, start);
        polygon = quad;
      }
    }
    regions.push({ quad, polygon, latex, confidence: reading.confidence, kind: detection.kind, label });
  }
  const done = performance.now();
  return {
    width: image.width,
    height: image.height,
    orientation: found.orientation,
    regions,
    model_version: m.manifest.model_version,
    ms: { decode_image: decoded - start, detect: detected - decoded, rectify: rectified - detected,
      orient: oriented - rectified, recognize: done - oriented },
  };
}

// susik.one_formula.OneFormulaReader, where the server's crop mode runs it (its manifest's `one_formula`): the
// photo read whole and, where that reading could be beaten, read as a page; the found region nearest the centre
// stands in for the whole reading when surer by `prefer_found_by`.
export async function readOneFormula(blob) {
  const m = await ready();
  const start = performance.now();
  const image = await pixels(blob); // decoded once for both readings
  const decodeMs = performance.now() - start;
  const crop = await readCrop(blob, image);
  crop.ms.decode_image += decodeMs;
  const corners = [[0, 0], [crop.width, 0], [crop.width, crop.height], [0, crop.height]];
  const whole = { quad: corners, polygon: corners, latex: crop.latex, confidence: crop.confidence, kind: "printed" };
  const reading = { width: crop.width, height: crop.height, orientation: 0, regions: [whole],
    model_version: crop.model_version, ms: crop.ms };
  const margin = m.manifest.one_formula?.prefer_found_by;
  if (margin === undefined || crop.confidence + margin >= 1) return reading;
  const page = await readPage(blob, image);
  const ms = { ...crop.ms };
  for (const [stage, value] of Object.entries(page.ms)) ms[stage] = (ms[stage] ?? 0) + value;
  const pick = geometry.centralRegion(page.regions.map((region) => region.polygon), crop.width, crop.height);
  if (pick !== null && page.regions[pick].confidence > crop.confidence + margin) {
    return { ...reading, orientation: page.orientation, regions: [page.regions[pick]], ms };
  }
  return { ...reading, ms };
}

function answer(status, body) {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

// app.js's stand-in for POST /v1/recognize: the page JSON of a page or a crop, read here.
async function read(file, mode) {
  try {
    const page = mode === "crop" ? await readOneFormula(file) : await readPage(file);
    const total = Object.values(page.ms).reduce((a, b) => a + b, 0);
    const { ms, ...fields } = page;
    return answer(200, { request_id: null, source: "device", ...fields, timings_ms: { ...ms, total } });
  } catch (error) {
    return answer(500, { error: "on_device_failed", detail: error.message });
  }
}

window.susikEdge = {
  active: () => Boolean(toggle?.checked && !toggle.disabled), read, readCrop, readPage, readOneFormula, ready,
};

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
