// The recognizer's pre- and post-processing in plain JavaScript, ported from susik.runtime.preprocess,
// susik.runtime.decoding and susik.latex so the browser reads a crop as the server does. No DOM, no ORT:
// the model runs behind an injected `step`/`encode`, so this module also runs under Node.
//
// Float32 work mirrors numpy/OpenCV operation by operation (Math.fround after each float op), so the model
// input is the same to the bit (to within one float32 ulp on rare OpenCV SIMD paths).

const f = Math.fround;
export const NEG_INF = -1e4; // susik.runtime.recognizer.NEG_INF
const SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>"];
const [PAD, BOS, EOS] = [0, 1, 2];
const MIN_SIDE = 4;

export class CropError extends Error {}

// Python's round(): halves go to the even neighbour.
export function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

// cv2.COLOR_BGR2GRAY on 8-bit: fixed-point weights summing to 1 << 14, rounded.
export function toGray(rgba, width, height) {
  const gray = new Uint8Array(width * height);
  for (let i = 0, p = 0; i < gray.length; i++, p += 4) {
    let [r, g, b] = [rgba[p], rgba[p + 1], rgba[p + 2]];
    const a = rgba[p + 3];
    if (a !== 255) { // transparent pixels on white paper, as susik.runtime.image_io does (to within rounding)
      [r, g, b] = [r, g, b].map((c) => Math.round((c * a + 255 * (255 - a)) / 255));
    }
    gray[i] = (r * 4899 + g * 9617 + b * 1868 + 8192) >> 14;
  }
  return gray;
}

// A view of a gray image: `data` row-major with `stride`, so crops need no copy.
function view(data, width, height, stride = width, offset = 0) {
  return { data, width, height, stride, offset };
}

function histogram(img) {
  const h = new Float64Array(256);
  for (let y = 0; y < img.height; y++) {
    const row = img.offset + y * img.stride;
    for (let x = 0; x < img.width; x++) h[img.data[row + x]]++;
  }
  return h;
}

// cv2.threshold(..., THRESH_OTSU) on 8-bit.
function otsu(h, total) {
  const scale = 1 / total;
  let mu = 0;
  for (let i = 0; i < 256; i++) mu += i * h[i];
  mu *= scale;
  let mu1 = 0, q1 = 0, maxSigma = 0, maxVal = 0;
  const eps = 1.1920928955078125e-7; // FLT_EPSILON
  for (let i = 0; i < 256; i++) {
    const p = h[i] * scale;
    mu1 *= q1;
    q1 += p;
    const q2 = 1 - q1;
    if (Math.min(q1, q2) < eps || Math.max(q1, q2) > 1 - eps) continue;
    mu1 = (mu1 + i * p) / q1;
    const mu2 = (mu - q1 * mu1) / q2;
    const sigma = q1 * q2 * (mu1 - mu2) * (mu1 - mu2);
    if (sigma > maxSigma) {
      maxSigma = sigma;
      maxVal = i;
    }
  }
  return maxVal;
}

// np.median of the histogram's values in [lo, hi].
function median(h, lo, hi) {
  let n = 0;
  for (let i = lo; i <= hi; i++) n += h[i];
  const nth = (k) => { // k-th smallest, 0-based
    for (let i = lo, seen = 0; i <= hi; i++) {
      seen += h[i];
      if (seen > k) return i;
    }
    return hi;
  };
  return n % 2 ? nth((n - 1) / 2) : (nth(n / 2 - 1) + nth(n / 2)) / 2;
}

// (Otsu threshold, paper level, ink level): preprocess.ink_levels.
function inkLevels(img) {
  const h = histogram(img);
  const total = img.width * img.height;
  const threshold = otsu(h, total);
  let darker = 0;
  for (let i = 0; i <= threshold; i++) darker += h[i];
  if (darker === 0 || darker === total) {
    const level = median(h, 0, 255);
    return [threshold, level, level];
  }
  return [threshold, median(h, threshold + 1, 255), median(h, 0, threshold)];
}

function checkCrop(img, config) {
  if (Math.min(img.height, img.width) < MIN_SIDE) {
    throw new CropError(`image too small: ${img.width}x${img.height} (need at least ${MIN_SIDE} px a side)`);
  }
  const [, paper, ink] = inkLevels(img);
  if (paper - ink < config.min_contrast) throw new CropError("image is blank: no ink stands out from the background");
}

// preprocess.dark_ink: chalk on a blackboard is inverted to dark ink on light paper.
function darkInk(img) {
  const { data, width, height } = img;
  const threshold = otsu(histogram(img), width * height);
  let dark = 0;
  for (let i = 0; i < data.length; i++) dark += data[i] <= threshold;
  let border = 0;
  for (let x = 0; x < width; x++) border += (data[x] <= threshold) + (data[(height - 1) * width + x] <= threshold);
  for (let y = 0; y < height; y++) border += (data[y * width] <= threshold) + (data[y * width + width - 1] <= threshold);
  if (dark / data.length > 0.6 && border / (2 * width + 2 * height) > 0.8) {
    return view(data.map((v) => 255 - v), width, height);
  }
  return img;
}

// The extreme (`better(a, b)`: a replaces b) over a window of 2 * radius + 1 centred on each pixel along rows
// (step 1) or columns (step width), clipped at the edges: a monotonic queue, O(1) a pixel.
function slide(src, width, height, radius, alongRows, better) {
  const out = new Uint8Array(src.length);
  const [lines, length] = alongRows ? [height, width] : [width, height];
  const [lineStep, step] = alongRows ? [width, 1] : [1, width];
  const queue = new Int32Array(length);
  for (let line = 0; line < lines; line++) {
    const base = line * lineStep;
    let head = 0, tail = 0, next = 0;
    for (let i = 0; i < length; i++) {
      for (; next < length && next <= i + radius; next++) { // take in the window's new right end
        const value = src[base + next * step];
        while (tail > head && !better(src[base + queue[tail - 1] * step], value)) tail--;
        queue[tail++] = next;
      }
      while (queue[head] < i - radius) head++;
      out[base + i * step] = src[base + queue[head] * step];
    }
  }
  return out;
}

// preprocess.flatten_light: each pixel divided by the paper's light around it (a closing), in integers.
function flattenLight(img, share) {
  if (!(share > 0)) return img; // 0 (or a manifest without the setting): no flattening
  const { width, height } = img;
  const data = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    data.set(img.data.subarray(img.offset + y * img.stride, img.offset + y * img.stride + width), y * width);
  }
  const radius = Math.floor(Math.max(3, roundHalfEven(share * height) | 1) / 2);
  const lighter = (a, b) => a > b, darker = (a, b) => a < b;
  const dilated = slide(slide(data, width, height, radius, true, lighter), width, height, radius, false, lighter);
  const background = slide(slide(dilated, width, height, radius, true, darker), width, height, radius, false, darker);
  for (let i = 0; i < data.length; i++) {
    data[i] = Math.min(255, Math.floor((data[i] * 255) / Math.max(background[i], 1)));
  }
  return view(data, width, height);
}

// preprocess._ink_box's span: numpy searchsorted on the cumulative ink profile.
function span(profile) {
  const cumulative = new Float64Array(profile.length);
  let sum = 0;
  profile.forEach((value, i) => { cumulative[i] = sum += value; });
  const trim = 0.001 * sum;
  let start = 0;
  while (start < cumulative.length && cumulative[start] <= trim) start++;
  let end = 0;
  while (end < cumulative.length && cumulative[end] < sum - trim) end++;
  end += 1;
  return [start, Math.max(end, start + 1)];
}

function cropToInk(img, config) {
  const [threshold, paper, ink] = inkLevels(img);
  if (paper - ink < config.min_contrast) return img;
  const rows = new Float64Array(img.height), cols = new Float64Array(img.width);
  for (let y = 0; y < img.height; y++) {
    for (let x = 0; x < img.width; x++) {
      if (img.data[y * img.width + x] <= threshold) {
        rows[y]++;
        cols[x]++;
      }
    }
  }
  const [top, bottom] = span(rows), [left, right] = span(cols);
  const pad = roundHalfEven(config.margin * (bottom - top)) + 1;
  const [y0, y1] = [Math.max(0, top - pad), Math.min(img.height, bottom + pad)];
  const [x0, x1] = [Math.max(0, left - pad), Math.min(img.width, right + pad)];
  return view(img.data, x1 - x0, y1 - y0, img.width, y0 * img.width + x0);
}

// float32 (paper 0, ink 1): preprocess.normalise.
function normalise(img, config) {
  const [, paper, ink] = inkLevels(img);
  const spread = Math.max(paper - ink, config.min_contrast);
  const out = new Float32Array(img.width * img.height);
  for (let y = 0; y < img.height; y++) {
    const row = img.offset + y * img.stride;
    for (let x = 0; x < img.width; x++) {
      out[y * img.width + x] = Math.min(1, Math.max(0, f((paper - img.data[row + x]) / spread)));
    }
  }
  return out;
}

// OpenCV's computeResizeAreaTab: which source pixels feed each output pixel, with what weight.
export function areaTable(ssize, dsize, scale) {
  const table = [];
  for (let dx = 0; dx < dsize; dx++) {
    const fsx1 = dx * scale, fsx2 = fsx1 + scale;
    const cellWidth = Math.min(scale, ssize - fsx1);
    let sx1 = Math.ceil(fsx1), sx2 = Math.floor(fsx2);
    sx2 = Math.min(sx2, ssize - 1);
    sx1 = Math.min(sx1, sx2);
    if (sx1 - fsx1 > 1e-3) table.push([dx, sx1 - 1, f((sx1 - fsx1) / cellWidth)]);
    for (let sx = sx1; sx < sx2; sx++) table.push([dx, sx, f(1 / cellWidth)]);
    if (fsx2 - sx2 > 1e-3) table.push([dx, sx2, f(Math.min(Math.min(fsx2 - sx2, 1), cellWidth) / cellWidth)]);
  }
  return table;
}

// cv2.resize(INTER_AREA) of float32 when shrinking: the integer-factor fast path or the general one.
function resizeArea(src, sw, sh, dw, dh) {
  const scaleX = 1 / (dw / sw), scaleY = 1 / (dh / sh);
  const ix = Math.round(scaleX), iy = Math.round(scaleY);
  const out = new Float32Array(dw * dh);
  if (Math.abs(scaleX - ix) < 2.220446049250313e-16 && Math.abs(scaleY - iy) < 2.220446049250313e-16) {
    const area = ix * iy, inv = f(1 / area);
    for (let dy = 0; dy < dh; dy++) {
      for (let dx = 0; dx < dw; dx++) {
        const base = dy * iy * sw + dx * ix;
        let sum = 0, k = 0;
        const at = (n) => src[base + Math.floor(n / ix) * sw + (n % ix)];
        for (; k <= area - 4; k += 4) sum = f(sum + f(f(f(at(k) + at(k + 1)) + at(k + 2)) + at(k + 3)));
        for (; k < area; k++) sum = f(sum + at(k));
        out[dy * dw + dx] = f(sum * inv);
      }
    }
    return out;
  }
  const xtab = areaTable(sw, dw, scaleX), ytab = areaTable(sh, dh, scaleY);
  const buf = new Float32Array(dw), sum = new Float32Array(dw);
  let prev = ytab[0][0];
  for (const [dy, sy, beta] of ytab) {
    buf.fill(0);
    for (const [dx, sx, alpha] of xtab) buf[dx] = f(buf[dx] + f(src[sy * sw + sx] * alpha));
    if (dy !== prev) {
      out.set(sum, prev * dw);
      for (let dx = 0; dx < dw; dx++) sum[dx] = f(beta * buf[dx]);
      prev = dy;
    } else {
      for (let dx = 0; dx < dw; dx++) sum[dx] = f(sum[dx] + f(beta * buf[dx]));
    }
  }
  out.set(sum, prev * dw);
  return out;
}

// OpenCV's bilinear source positions and weights along one axis; `area`: INTER_AREA when enlarging, which
// OpenCV spells as a bilinear blend only across source pixel borders.
export function linearTable(ssize, dsize, area) {
  const inv = dsize / ssize, scale = 1 / inv;
  const table = [];
  for (let d = 0; d < dsize; d++) {
    let sx, fx;
    if (area) {
      sx = Math.floor(d * scale);
      fx = f(d + 1 - (sx + 1) * inv);
      fx = fx <= 0 ? 0 : f(fx - Math.floor(fx));
    } else {
      fx = f((d + 0.5) * scale - 0.5);
      sx = Math.floor(fx);
      fx = f(fx - sx);
    }
    if (sx < 0) [fx, sx] = [0, 0];
    if (sx >= ssize - 1) [fx, sx] = [0, ssize - 1];
    table.push([sx, Math.min(sx + 1, ssize - 1), f(1 - fx), fx]);
  }
  return table;
}

// preprocess.resize_bilinear (cv2 INTER_LINEAR without IPP), or cv2 INTER_AREA when enlarging (`area`).
function resizeLinear(src, sw, sh, dw, dh, area = false) {
  const xs = linearTable(sw, dw, area), ys = linearTable(sh, dh, area);
  const rows = new Float32Array(sh * dw);
  for (let y = 0; y < sh; y++) {
    xs.forEach(([s0, s1, a0, a1], dx) => {
      rows[y * dw + dx] = f(f(src[y * sw + s0] * a0) + f(src[y * sw + s1] * a1));
    });
  }
  const out = new Float32Array(dw * dh);
  ys.forEach(([s0, s1, b0, b1], dy) => {
    for (let dx = 0; dx < dw; dx++) out[dy * dw + dx] = f(f(rows[s0 * dw + dx] * b0) + f(rows[s1 * dw + dx] * b1));
  });
  return out;
}

function resize(src, sw, sh, dw, dh, area) {
  if (sw === dw && sh === dh) return src;
  if (!area) return resizeLinear(src, sw, sh, dw, dh);
  return dw <= sw && dh <= sh ? resizeArea(src, sw, sh, dw, dh) : resizeLinear(src, sw, sh, dw, dh, true);
}

// preprocess.resize_to_height -> {data, width} at config.height, stretched sideways by `widthScale`.
function resizeToHeight(image, width, height, config, widthScale = 1) {
  const targetW = Math.max(1, roundHalfEven((width * config.height * widthScale) / height));
  if (targetW <= config.max_width) {
    return { data: resize(image, width, height, targetW, config.height, config.height < height), width: targetW };
  }
  const targetH = Math.max(1, roundHalfEven((height * config.max_width) / (width * widthScale)));
  const scaled = resize(image, width, height, config.max_width, targetH, true);
  const canvas = new Float32Array(config.height * config.max_width);
  canvas.set(scaled, Math.floor((config.height - targetH) / 2) * config.max_width);
  return { data: canvas, width: config.max_width };
}

// One crop (RGBA pixels) -> {data: float32 (height x width), width}; throws CropError for blank or tiny crops.
// `widthScale` stretches it sideways (a look of decode.widen_below).
export function preprocess(rgba, width, height, config, widthScale = 1) {
  const ink = croppedInk(view(toGray(rgba, width, height), width, height), config, true);
  return resizeToHeight(ink.data, ink.width, ink.height, config, widthScale);
}

// preprocess._ink: float32 (paper 0, ink 1), cut to the ink, at the crop's own resolution; `check` first
// throws CropError for a tiny crop or one without ink once flattened (preprocess.check_crop).
function croppedInk(gray, config, check = false) {
  const paper = flattenLight(darkInk(gray), config.flatten);
  if (check) checkCrop(paper, config);
  const cropped = cropToInk(paper, config);
  return { data: normalise(cropped, config), width: cropped.width, height: cropped.height };
}

// preprocess.thicken: ink grown by `radius` pixels in all eight directions, the border adding paper (0).
export function thicken(data, width, height, radius) {
  const grown = Float32Array.from(data);
  for (let dy = -radius; dy <= radius; dy++) {
    for (let dx = -radius; dx <= radius; dx++) {
      for (let y = 0; y < height; y++) {
        const sy = y + dy;
        for (let x = 0; x < width; x++) {
          const sx = x + dx;
          const value = sy >= 0 && sy < height && sx >= 0 && sx < width ? data[sy * width + sx] : 0;
          if (value > grown[y * width + x]) grown[y * width + x] = value;
        }
      }
    }
  }
  return grown;
}

// preprocess.halve: the mean of each 2x2 block, ((a + b) + (c + d)) * 0.25 in float32 as numpy sums it.
export function halve(data, width, height) {
  const [w, h] = [width / 2, height / 2];
  const out = new Float32Array(w * h);
  for (let y = 0; y < h; y++) {
    const [top, bottom] = [2 * y * width, (2 * y + 1) * width];
    for (let x = 0; x < w; x++) {
      const upper = f(data[top + 2 * x] + data[top + 2 * x + 1]);
      const lower = f(data[bottom + 2 * x] + data[bottom + 2 * x + 1]);
      out[y * w + x] = f(f(upper + lower) * 0.25);
    }
  }
  return out;
}

// preprocess.preprocess_thickened: the crop read at twice the height, its ink grown by two pixels, halved.
export function preprocessThickened(rgba, width, height, config) {
  const ink = croppedInk(view(toGray(rgba, width, height), width, height), config);
  const double = { ...config, height: 2 * config.height, max_width: 2 * config.max_width };
  const large = resizeToHeight(ink.data, ink.width, ink.height, double);
  let [data, wide] = [large.data, large.width];
  if (wide % 2) { // an odd width: one more column of paper
    const even = new Float32Array((wide + 1) * double.height);
    for (let y = 0; y < double.height; y++) even.set(data.subarray(y * wide, (y + 1) * wide), y * (wide + 1));
    [data, wide] = [even, wide + 1];
  }
  return { data: halve(thicken(data, wide, double.height, 2), wide, double.height), width: wide / 2 };
}

// preprocess.stroke_core_share: the share of ink pixels (> 0.5) with ink all around them (the border is paper).
export function strokeCoreShare(prepared, height) {
  const { data, width } = prepared;
  const ink = (y, x) => y >= 0 && y < height && x >= 0 && x < width && data[y * width + x] > 0.5;
  let total = 0, core = 0;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (!ink(y, x)) continue;
      total++;
      let all = true;
      for (let dy = -1; dy <= 1 && all; dy++) for (let dx = -1; dx <= 1 && all; dx++) all = ink(y + dy, x + dx);
      core += all;
    }
  }
  return total ? core / total : 0;
}

// OnnxRecognizer.hypotheses' further looks: a thin-stroked crop (`coreShare` below decode.thin_core_share) whose
// reading is less confident than decode.thicken_below is read again thickened (`read("thick")`); then, while the
// surest reading is less confident than decode.widen_below, the crop is read (greedily) stretched sideways by
// each of decode.widen_factors in turn (`read(factor)`). The surest reading is kept; `read(null)` is the first.
export async function withSecondLook(read, decode, coreShare) {
  let best = await read(null);
  let sure = confidence(best, decode.confidence);
  const consider = async (look) => {
    const other = await read(look);
    const score = confidence(other, decode.confidence);
    if (score > sure) [best, sure] = [other, score];
  };
  if (decode.thicken_below > 0 && sure < decode.thicken_below && coreShare < decode.thin_core_share) {
    await consider("thick");
  }
  for (const factor of decode.widen_below > 0 ? decode.widen_factors : []) {
    if (sure < decode.widen_below) await consider(factor);
  }
  return best;
}

// pad_batch for one crop: width padded to the encoder stride with paper (0); NCHW.
export function padded(prepared, config) {
  const width = Math.ceil(prepared.width / config.width_multiple) * config.width_multiple;
  const batch = new Float32Array(config.height * width);
  for (let y = 0; y < config.height; y++) {
    batch.set(prepared.data.subarray(y * prepared.width, (y + 1) * prepared.width), y * width);
  }
  return { data: batch, width };
}

// The memory bias (1, S): 0 over the crop, NEG_INF over the padding columns (recognizer.encode).
export function crossBias(memory, paddedHeight, validWidth, stride) {
  const featureH = paddedHeight / stride[0];
  const featureW = memory / featureH;
  const valid = Math.max(1, Math.ceil(validWidth / stride[1]));
  const bias = new Float32Array(memory);
  for (let r = 0; r < featureH; r++) {
    for (let c = valid; c < featureW; c++) bias[r * featureW + c] = NEG_INF;
  }
  return bias;
}

export function maxLength(width, decode) {
  const columns = Math.ceil(width / 16);
  return Math.floor(Math.min(decode.max_tokens, decode.base_tokens + decode.tokens_per_column * columns));
}

// decoding.is_looping: the sequence ends in a short unit repeated over `repeat_span` tokens.
export function isLooping(tokens, decode) {
  const n = tokens.length;
  if (n < decode.repeat_span) return false;
  for (let period = 1; period <= decode.repeat_max_period; period++) {
    const repeats = Math.max(decode.repeat_min_count, Math.ceil(decode.repeat_span / period));
    const length = period * repeats;
    if (length > n) continue;
    const tail = tokens.slice(n - length);
    const unit = tail.slice(-period);
    if (tail.every((token, i) => token === unit[i % period])) return true;
  }
  return false;
}

// Greedy decoding of one crop (decoding.greedy at batch 1): `step(token, position)` -> logits (Float32Array).
export async function greedy(step, maxLen, decode) {
  const tokens = [], probs = [];
  let current = BOS;
  for (let position = 0; ; position++) {
    const row = logSoftmax(await step(current, position));
    let best = 0;
    for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
    probs.push(Math.exp(row[best]));
    if (best === EOS) return { tokens, probs, stop: "eos" };
    tokens.push(best);
    if (tokens.length >= maxLen) return { tokens, probs, stop: "length" };
    if (isLooping(tokens, decode)) return { tokens, probs, stop: "repetition" };
    current = best;
  }
}

// decoding.beam_search for one crop: `decoder` = open(width) runs `width` copies of the crop at once,
// decoder.step(tokens, position) -> logits (width x vocabulary, row-major), decoder.reorder(sources) makes
// row r's cache that of row sources[r]. Scores in double precision, as numpy's float64.
export async function beamSearch(decoder, width, maxLen, decode) {
  const dead = () => ({ tokens: [], probs: [], score: -Infinity });
  let beams = Array.from({ length: width }, (_, b) => (b === 0 ? { tokens: [], probs: [], score: 0 } : dead()));
  const finished = [];
  let current = new Array(width).fill(BOS);
  for (let position = 0; ; position++) {
    const logits = await decoder.step(current, position);
    const vocab = logits.length / width;
    const logProbs = [];
    const candidates = []; // the best 2 * width finite (score, beam, token), best first
    for (let b = 0; b < width; b++) {
      const row = logSoftmax(logits.subarray(b * vocab, (b + 1) * vocab));
      logProbs.push(row);
      for (let t = 0; t < vocab; t++) {
        const score = beams[b].score + row[t];
        if (!Number.isFinite(score)) continue;
        if (candidates.length === 2 * width && score <= candidates[candidates.length - 1][0]) continue;
        let at = candidates.length;
        while (at > 0 && candidates[at - 1][0] < score) at--;
        candidates.splice(at, 0, [score, b, t]);
        if (candidates.length > 2 * width) candidates.pop();
      }
    }
    const sources = new Array(width).fill(0);
    const next = new Array(width).fill(EOS);
    const survivors = [];
    for (const [score, b, token] of candidates) {
      const parent = beams[b];
      const child = { tokens: [...parent.tokens, token], probs: [...parent.probs, Math.exp(logProbs[b][token])], score };
      const stop = token === EOS ? "eos" : child.tokens.length >= maxLen ? "length"
        : isLooping(child.tokens, decode) ? "repetition" : null;
      if (stop !== null) {
        const tokens = stop === "eos" ? child.tokens.slice(0, -1) : child.tokens;
        const normalised = score / Math.max(1, child.tokens.length) ** decode.length_penalty;
        finished.push({ normalised, hypothesis: { tokens, probs: child.probs, stop } });
        continue;
      }
      sources[survivors.length] = b;
      next[survivors.length] = token;
      survivors.push(child);
      if (survivors.length === width) break;
    }
    const ended = finished.filter((f) => f.hypothesis.stop === "eos").length;
    if (!survivors.length || ended >= width) return bestFinished(finished);
    while (survivors.length < width) survivors.push(dead());
    beams = survivors;
    decoder.reorder(sources);
    current = next;
  }
}

// decoding._log_softmax for one row, PAD and BOS banned.
function logSoftmax(logits) {
  let top = -Infinity;
  for (let i = 0; i < logits.length; i++) if (i !== PAD && i !== BOS && logits[i] > top) top = logits[i];
  let total = 0;
  for (let i = 0; i < logits.length; i++) if (i !== PAD && i !== BOS) total += Math.exp(logits[i] - top);
  const lse = Math.log(total);
  return Float64Array.from(logits, (x, i) => (i === PAD || i === BOS ? -Infinity : x - top - lse));
}

// decoding._best: the highest normalised score, hypotheses that ended with EOS before guarded ones.
function bestFinished(finished) {
  let best = finished[0];
  for (const f of finished.slice(1)) {
    const [a, b] = [f.hypothesis.stop === "eos", best.hypothesis.stop === "eos"];
    if (a > b || (a === b && f.normalised > best.normalised)) best = f;
  }
  return best.hypothesis;
}

// OnnxRecognizer._decode_batch for one crop: beam search when decode.beam > 1, otherwise greedy, read again
// with a beam of decode.rescue_beam when its confidence is below decode.rescue_below (decoding.greedy_with_rescue).
// `open(rows)` -> a decoder over `rows` copies of the crop (see beamSearch).
export async function decodeCrop(open, maxLen, decode) {
  if (decode.beam > 1) return beamSearch(open(decode.beam), decode.beam, maxLen, decode);
  const single = open(1);
  const found = await greedy((token, position) => single.step([token], position), maxLen, decode);
  if (!(decode.rescue_below > 0) || confidence(found, decode.confidence) >= decode.rescue_below) return found;
  return beamSearch(open(decode.rescue_beam), decode.rescue_beam, maxLen, decode);
}

export function confidence(hypothesis, method) {
  if (hypothesis.stop !== "eos" || !hypothesis.probs.length) return 0;
  if (method === "min") return Math.min(...hypothesis.probs);
  const logs = hypothesis.probs.map((p) => Math.log(Math.max(p, 1e-12)));
  return Math.exp(logs.reduce((a, b) => a + b, 0) / logs.length);
}

const logit = (p) => {
  const clipped = Math.min(Math.max(p, 1e-6), 1 - 1e-6);
  return Math.log(clipped / (1 - clipped));
};

// decoding.reported_confidence: the confidence a user sees, the raw score mapped by decode.calibration (a
// logistic map of the geometric mean's and the least likely token's logits) when the record has one.
export function reportedConfidence(hypothesis, decode) {
  const calibration = decode.calibration;
  if (!calibration || hypothesis.stop !== "eos" || !hypothesis.probs.length) {
    return confidence(hypothesis, decode.confidence);
  }
  const score = calibration.geomean * logit(confidence(hypothesis, "geomean"))
    + calibration.minimum * logit(confidence(hypothesis, "min")) + calibration.bias;
  return 1 / (1 + Math.exp(-score));
}

// --- susik.latex: Vocabulary.decode and detokenize ---

const TEXT_COMMANDS = new Set(["\\text", "\\mbox", "\\textrm", "\\textbf", "\\textit", "\\hbox", "\\textnormal"]);
const TEXT_SPACE = "\\ ";
const CONTROL_WORD = /^\\[A-Za-z]+$/;

export function vocabulary(tokens) {
  return [...SPECIALS, ...tokens.filter((token) => !SPECIALS.includes(token))];
}

export function decodeIds(ids, words) {
  const out = [];
  for (const id of ids) {
    if (id === EOS) break;
    if (id === PAD || id === BOS) continue;
    out.push(id >= 0 && id < words.length ? words[id] : "<unk>");
  }
  return out;
}

function isSpacedDialect(latex) {
  if (!latex.trim().includes(" ")) return false;
  const withoutCommands = latex
    .replace(/\\(begin|end)\s*\{\s*([A-Za-z]+\*?)\s*\}/g, " ")
    .replace(/\\[A-Za-z]+/g, " ");
  return !/[A-Za-z0-9]{2,}/.test(withoutCommands);
}

function join(tokens, textSpace) {
  const out = [], textDepth = [];
  let depth = 0, pendingTextArg = false;
  for (const token of tokens) {
    const inText = textDepth.length > 0 && depth === textDepth[textDepth.length - 1];
    if (token === TEXT_SPACE && inText) {
      out.push(textSpace);
      continue;
    }
    const previous = out.length ? out[out.length - 1] : "";
    if (CONTROL_WORD.test(previous) && (/^\p{L}/u.test(token) || token === TEXT_SPACE)) out.push(" ");
    out.push(token);
    if (token === "{") {
      depth += 1;
      if (pendingTextArg) textDepth.push(depth);
    } else if (token === "}") {
      if (textDepth.length && depth === textDepth[textDepth.length - 1]) textDepth.pop();
      depth -= 1;
    }
    pendingTextArg = TEXT_COMMANDS.has(token);
  }
  return out.join("");
}

export function detokenize(tokens) {
  const latex = join(tokens, " ");
  return tokens.includes(TEXT_SPACE) && isSpacedDialect(latex) ? join(tokens, TEXT_SPACE) : latex;
}

// --- susik.latex.labels.split_reading_label: a problem or choice label read with the formula ---

const LABEL = String.raw`[A-Ea-e][.)]|\([A-Ea-e1-9][0-9]?\)|[1-9][0-9]?[.)]\.?|I{1,3}\)\.?|IV\)\.?`;
const OPERAND_NEXT = String.raw`[\^_'=+\-*/<>,.)!|:;]|\\(?:cdot|times|div|pm|mp|le|leq|leqslant|ge|geq|geqslant|ne|neq)(?![A-Za-z])`;
const LABEL_PATTERNS = [
  new RegExp(String.raw`^\\text\s*\{\s*(?<label>${LABEL})\s*\}\s*(?<rest>.*)$`, "s"),
  new RegExp(String.raw`^(?<label>[1-9][0-9]?\s*\))\s*(?<rest>.*)$`, "s"),
  new RegExp(String.raw`^(?<label>\(\s*(?:[1-9][0-9]?|[A-E])\s*\))\s*(?<rest>(?!${OPERAND_NEXT}).*)$`, "s"),
  new RegExp(String.raw`^(?<label>[1-9][0-9]?\s*\.)\s*(?<rest>(?![0-9.,\s]|\\(?:overline|dot|ddot|dots|ldots|cdots)(?![A-Za-z])).+)$`, "s"),
];

// --- and strip_sentence_punctuation: a sentence's comma, full stop or semicolon read after it ---

const SENTENCE_END = /^(?<formula>.*[^\s.\\])\s*[,.;]\s*$/s;

export function stripSentencePunctuation(latex) {
  const found = SENTENCE_END.exec(latex);
  return found ? found.groups.formula : latex;
}

// [label, formula] of a reading that starts with a label, else [null, latex]; the formula may be empty.
export function splitReadingLabel(latex) {
  const text = latex.trim();
  for (const pattern of LABEL_PATTERNS) {
    const found = pattern.exec(text);
    if (found) return [found.groups.label.replace(/\s+/g, ""), found.groups.rest.trim()];
  }
  return [null, latex];
}
