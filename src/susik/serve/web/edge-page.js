// Page mode's geometry in plain JavaScript, ported from susik.runtime.detector (pre- and post-processing),
// susik.pipeline.rectify and susik.runtime.orient.DeskewOrienter, so the browser finds, straightens and turns
// a photo's formulas as the server does. No DOM, no ORT: images are {data: RGBA bytes, width, height}
// (ImageData's shape) and the detector's outputs come in as arrays, so this module also runs under Node.
//
// Pixels follow OpenCV 5 operation by operation: the detector's downscale and input to the bit (enlarging a tiny
// photo: within one grey level on under 2% of pixels, OpenCV's SIMD rounding); warpPerspective
// and warpAffine (float32 bilinear weights, rounded half to even) to within one grey level on ~0.01% of pixels,
// where OpenCV's SIMD kernels round a source coordinate differently. Blobs and quads use exact geometry (the
// convex hull of a blob's pixels, in the order cv2.convexHull gives it) instead of contour tracing, then
// OpenCV's rotating calipers and box corners in float32, so ties go the same way and quads agree to a float32
// ulp. The polygon of a region is its quad here: the server's finer outline is not ported.

import { areaTable, linearTable, roundHalfEven } from "./edge-core.js";

const f = Math.fround;
const STRIDE = 32; // detector.STRIDE: inputs are padded to a multiple of it
const MAP_STRIDE = 2; // detector.MAP_STRIDE: the output maps' stride
const MEAN = 0.5, STD = 0.25; // detector.MEAN, STD
const SCALE = f(1 / (255 * STD));
export const ORIENTATIONS = [0, 90, 180, 270];
export const RECTIFY_HEIGHT = 64; // pipeline.rectify's target_height
export const DESKEW = { maxDegrees: 6, minDegrees: 1.5, step: 1 }; // orient.DeskewOrienter's defaults
// susik.runtime.label_gap's constants
const LABEL_GAP = { inkUnderPaper: 0.7, minInkPixels: 2, minGap: 0.25, maxLabel: 0.5, labelHeights: 1.5 };

// --- the detector's input ---------------------------------------------------------------------------------

// cv2.resize(INTER_AREA) of 8-bit RGBA to (dw, dh) when shrinking; alpha is carried along untouched.
function resizeAreaRGBA(image, dw, dh) {
  const { data, width: sw, height: sh } = image;
  const out = new Uint8ClampedArray(dw * dh * 4);
  const scaleX = sw / dw, scaleY = sh / dh;
  const ix = Math.round(scaleX), iy = Math.round(scaleY);
  if (Math.abs(scaleX - ix) < 2.220446049250313e-16 && Math.abs(scaleY - iy) < 2.220446049250313e-16) {
    // OpenCV's integer-factor path: exact sums; 2x2 rounds half up (its SIMD path), others half to even.
    const area = ix * iy, inv = f(1 / area);
    const round = area === 4 && ix === 2 ? (sum) => (sum + 2) >> 2 : (sum) => roundHalfEven(f(sum * inv));
    for (let dy = 0; dy < dh; dy++) {
      for (let dx = 0; dx < dw; dx++) {
        for (let c = 0; c < 3; c++) {
          let sum = 0;
          for (let y = dy * iy; y < dy * iy + iy; y++) {
            for (let x = dx * ix, p = (y * sw + x) * 4 + c; x < dx * ix + ix; x++, p += 4) sum += data[p];
          }
          out[(dy * dw + dx) * 4 + c] = round(sum);
        }
        out[(dy * dw + dx) * 4 + 3] = 255;
      }
    }
    return { data: out, width: dw, height: dh };
  }
  // The general path: float32 weights per source cell, rows accumulated, each output row rounded at the end.
  const xtab = areaTable(sw, dw, scaleX), ytab = areaTable(sh, dh, scaleY);
  const buf = new Float32Array(dw * 3), sum = new Float32Array(dw * 3);
  const flush = (dy) => {
    for (let dx = 0; dx < dw; dx++) {
      for (let c = 0; c < 3; c++) out[(dy * dw + dx) * 4 + c] = roundHalfEven(sum[dx * 3 + c]);
      out[(dy * dw + dx) * 4 + 3] = 255;
    }
  };
  let prev = ytab[0][0];
  for (const [dy, sy, beta] of ytab) {
    buf.fill(0);
    for (const [dx, sx, alpha] of xtab) {
      const p = (sy * sw + sx) * 4;
      for (let c = 0; c < 3; c++) buf[dx * 3 + c] = f(buf[dx * 3 + c] + f(data[p + c] * alpha));
    }
    if (dy !== prev) {
      flush(prev);
      for (let i = 0; i < sum.length; i++) sum[i] = f(beta * buf[i]);
      prev = dy;
    } else {
      for (let i = 0; i < sum.length; i++) sum[i] = f(sum[i] + f(beta * buf[i]));
    }
  }
  flush(prev);
  return { data: out, width: dw, height: dh };
}

// cv2.resize(INTER_LINEAR) of 8-bit RGBA: OpenCV's fixed-point weights (11 bits) and its SIMD vertical pass.
function resizeLinearRGBA(image, dw, dh) {
  const { data, width: sw, height: sh } = image;
  if (2 * dw === sw && 2 * dh === sh) return resizeAreaRGBA(image, dw, dh); // OpenCV switches to INTER_AREA
  const weights = (table) => table.map(([s0, s1, a0, a1]) => [s0, s1, roundHalfEven(a0 * 2048), roundHalfEven(a1 * 2048)]);
  const xs = weights(linearTable(sw, dw, false)), ys = weights(linearTable(sh, dh, false));
  const rows = new Int32Array(sh * dw * 3);
  for (let y = 0; y < sh; y++) {
    xs.forEach(([s0, s1, a0, a1], dx) => {
      for (let c = 0; c < 3; c++) rows[(y * dw + dx) * 3 + c] = data[(y * sw + s0) * 4 + c] * a0 + data[(y * sw + s1) * 4 + c] * a1;
    });
  }
  const out = new Uint8ClampedArray(dw * dh * 4);
  ys.forEach(([s0, s1, b0, b1], dy) => {
    for (let i = 0; i < dw * 3; i++) {
      const [r0, r1] = [rows[s0 * dw * 3 + i] >> 4, rows[s1 * dw * 3 + i] >> 4];
      out[(dy * dw + Math.floor(i / 3)) * 4 + (i % 3)] = (((r0 * b0) >> 16) + ((r1 * b1) >> 16) + 2) >> 2;
    }
    for (let dx = 0; dx < dw; dx++) out[(dy * dw + dx) * 4 + 3] = 255;
  });
  return { data: out, width: dw, height: dh };
}

// detector.downscale: exact 2x2 halvings while the image is at least 4x the target, a bilinear step of less
// than 2x to twice the target, then a last 2x2 halving; one INTER_AREA step when the image is under 2x.
function downscale(image, dw, dh) {
  if (image.width < 2 * dw || image.height < 2 * dh) return resizeAreaRGBA(image, dw, dh);
  while (image.width >= 4 * dw && image.height >= 4 * dh) {
    image = resizeAreaRGBA(image, Math.floor(image.width / 2), Math.floor(image.height / 2));
  }
  if (image.width !== 2 * dw || image.height !== 2 * dh) image = resizeLinearRGBA(image, 2 * dw, 2 * dh);
  return resizeAreaRGBA(image, dw, dh);
}

// detector.preprocess + detect_page's valid map size: the (1, 3, H, W) BGR input, normalised and padded with
// zeros (mid grey) at the right and bottom to a multiple of 32. A small image is enlarged (bilinear) to
// `minShortSide` on its short side, never past `longSide` (detector.input_scale).
export function detectorInput(image, longSide, minShortSide = 0) {
  const { width, height } = image;
  const fit = longSide / Math.max(height, width);
  const scale = Math.min(fit, Math.max(1, minShortSide / Math.min(height, width)));
  const [dw, dh] = [Math.max(1, roundHalfEven(width * scale)), Math.max(1, roundHalfEven(height * scale))];
  let resized = image;
  if (scale < 1) resized = downscale(image, dw, dh);
  else if (scale > 1) resized = resizeLinearRGBA(image, dw, dh);
  const h = Math.ceil(resized.height / STRIDE) * STRIDE, w = Math.ceil(resized.width / STRIDE) * STRIDE;
  const tensor = new Float32Array(3 * h * w);
  const { data } = resized;
  for (let y = 0; y < resized.height; y++) {
    for (let x = 0; x < resized.width; x++) {
      const p = (y * resized.width + x) * 4;
      for (let c = 0; c < 3; c++) { // BGR planes from RGBA
        tensor[c * h * w + y * w + x] = f((data[p + 2 - c] - 255 * MEAN) * SCALE); // cv2.dnn.blobFromImage, in float32
      }
    }
  }
  return {
    tensor, height: h, width: w, scale, resized,
    validHeight: Math.ceil(resized.height / MAP_STRIDE), validWidth: Math.ceil(resized.width / MAP_STRIDE),
  };
}

// detector.page_input: the detector's input, a close-up's shrunk until its letters are as tall as on the whole
// worksheets the net learnt (params.closeup_letters_above, 0: off); `letters` is the height measured at the
// first size (0 when no rule needs it).
export function pageInput(image, params) {
  const input = detectorInput(image, params.long_side, params.min_short_side ?? 0);
  const closeUp = params.closeup_letters_above ?? 0;
  const fewAbove = params.closeup_few_letters_above || Infinity;
  const letters = closeUp > 0 || (params.confirm_letters_above ?? 0) > 0 ? letterHeight(input.resized, fewAbove) : 0;
  if (!(closeUp > 0 && letters > closeUp)) return { ...input, letters };
  const side = Math.max(input.resized.width, input.resized.height);
  const longSide = shrunkLongSide(side, letters, params.closeup_letters_to ?? 12, params.closeup_min_long_side ?? 320);
  return { ...(longSide < side ? detectorInput(image, longSide, 0) : input), letters };
}

// detector.shrunk_long_side
function shrunkLongSide(longSide, letters, target, floor) {
  return Math.max(floor, Math.floor(Math.floor(longSide * (target / letters)) / STRIDE) * STRIDE);
}

// detector.detect_page's second pass: the smaller input that confirms a large-lettered page's regions
// (params.confirm_letters_above, 0: off), or null when the page needs none. `first` is pageInput's answer.
export function confirmInput(image, first, params, regions) {
  const above = params.confirm_letters_above ?? 0, closeUp = params.closeup_letters_above ?? 0;
  const letters = first.letters;
  if (above <= 0 || (closeUp > 0 && letters > closeUp) || letters <= above || regions === 0) return null;
  const side = Math.max(first.resized.width, first.resized.height);
  const longSide = shrunkLongSide(side, letters, params.confirm_letters_to ?? 15, params.closeup_min_long_side ?? 320);
  return longSide < side ? detectorInput(image, longSide, 0) : null;
}

// The regions a second-pass quad overlaps by `iou` (detector.quad_iou).
export function confirmed(detections, checks, iou) {
  return detections.filter((d) => checks.some((c) => quadIou(d.quad, c.quad) >= iou));
}

// detector.quad_iou: intersection over union of two convex quads, by Sutherland-Hodgman clipping.
export function quadIou(a, b) {
  const overlap = clipConvex(a, b);
  const inter = overlap.length >= 3 ? Math.abs(signedArea(overlap)) : 0;
  const union = Math.abs(signedArea(a)) + Math.abs(signedArea(b)) - inter;
  return union > 0 ? inter / union : 0;
}

// one_formula.central_region: the index of the polygon the image's centre lies in (the largest, if several hold
// it; an edge counts as inside), else of the nearest one; null without polygons.
export function centralRegion(polygons, width, height) {
  const centre = [width / 2, height / 2];
  let best = null;
  let bestKey = null;
  polygons.forEach((polygon, index) => {
    const distance = signedDistance(polygon, centre);
    const key = distance >= 0 ? [1, Math.abs(signedArea(polygon))] : [0, distance];
    if (bestKey === null || key[0] > bestKey[0] || (key[0] === bestKey[0] && key[1] > bestKey[1])) {
      best = index;
      bestKey = key;
    }
  });
  return best;
}

// cv2.pointPolygonTest measuring: the distance to the nearest edge, positive inside, negative outside, 0 on one.
function signedDistance(polygon, [x, y]) {
  let nearest = Infinity;
  let inside = false;
  for (let i = 0, j = polygon.length - 1; i < polygon.length; j = i++) {
    const [x0, y0] = polygon[j], [x1, y1] = polygon[i];
    const dx = x1 - x0, dy = y1 - y0, length2 = dx * dx + dy * dy;
    const t = length2 > 0 ? Math.min(1, Math.max(0, ((x - x0) * dx + (y - y0) * dy) / length2)) : 0;
    nearest = Math.min(nearest, Math.hypot(x - x0 - t * dx, y - y0 - t * dy));
    if ((y0 > y) !== (y1 > y) && x < x0 + ((y - y0) * dx) / dy) inside = !inside;
  }
  return nearest === 0 ? 0 : inside ? nearest : -nearest;
}

function signedArea(points) {
  let sum = 0;
  for (let i = 0; i < points.length; i++) {
    const [x0, y0] = points[i], [x1, y1] = points[(i + 1) % points.length];
    sum += x0 * y1 - x1 * y0;
  }
  return sum / 2;
}

function clipConvex(subject, clip) {
  const sign = signedArea(clip) >= 0 ? 1 : -1;
  let output = subject.map(([x, y]) => [x, y]);
  for (let i = 0; i < clip.length && output.length; i++) {
    const a = clip[i], b = clip[(i + 1) % clip.length];
    const inside = output.map((p) => sign * ((b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])) >= 0);
    const points = output;
    output = [];
    for (let j = 0; j < points.length; j++) {
      const k = (j + points.length - 1) % points.length;
      if (inside[j]) {
        if (!inside[k]) output.push(crossing(points[k], points[j], a, b));
        output.push(points[j]);
      } else if (inside[k]) {
        output.push(crossing(points[k], points[j], a, b));
      }
    }
  }
  return output;
}

function crossing(p, q, a, b) {
  const dx = q[0] - p[0], dy = q[1] - p[1], ex = b[0] - a[0], ey = b[1] - a[1];
  const t = (ex * (p[1] - a[1]) - ey * (p[0] - a[0])) / (ey * dx - ex * dy);
  return [p[0] + t * dx, p[1] + t * dy];
}

const INK_CONTRAST = 20, INK_WINDOW = 101; // detector.INK_CONTRAST, INK_WINDOW

// detector.ink_mask: 1 where a grey pixel is INK_CONTRAST darker than the mean of the INK_WINDOW square around
// it, edges replicated; the sums are whole numbers far below 2^53, so Float64 holds them exactly.
export function inkMask(grey, width, height) {
  const half = (INK_WINDOW - 1) / 2, paddedW = width + 2 * half, paddedH = height + 2 * half;
  const stride = paddedW + 1;
  const table = new Float64Array((paddedH + 1) * stride);
  for (let y = 0; y < paddedH; y++) {
    const row = Math.min(height - 1, Math.max(0, y - half)) * width;
    let sum = 0;
    for (let x = 0; x < paddedW; x++) {
      sum += grey[row + Math.min(width - 1, Math.max(0, x - half))];
      table[(y + 1) * stride + x + 1] = table[y * stride + x + 1] + sum;
    }
  }
  const w = INK_WINDOW, area = w * w;
  const mask = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const sum = table[(y + w) * stride + x + w] - table[y * stride + x + w] - table[(y + w) * stride + x] + table[y * stride + x];
      mask[y * width + x] = (grey[y * width + x] + INK_CONTRAST) * area <= sum ? 1 : 0;
    }
  }
  return mask;
}

// detector.letter_height: the 75th percentile (numpy's linear) of the heights of the ink's letter-like
// 8-connected components; with fewer than FEWEST_LETTERS of them, only when over `fewAbove`, else 0.
const FEWEST_LETTERS = 6; // detector.FEWEST_LETTERS
export function letterHeight(image, fewAbove = Infinity) {
  const { width, height } = image;
  const { boxes, areas } = components(inkMask(gray(image), width, height), width, height, true);
  const heights = [];
  for (let i = 1; i < boxes.length; i++) {
    const w = boxes[i][2] - boxes[i][0] + 1, h = boxes[i][3] - boxes[i][1] + 1;
    if (h >= 5 && 4 * w >= h && w <= 3 * h && 5 * h <= 2 * height && 100 * areas[i] >= 12 * w * h) heights.push(h);
  }
  if (heights.length === 0) return 0;
  heights.sort((a, b) => a - b);
  const position = 0.75 * (heights.length - 1), low = Math.floor(position);
  const high = Math.min(low + 1, heights.length - 1);
  const typical = heights[low] + (heights[high] - heights[low]) * (position - low);
  return heights.length >= FEWEST_LETTERS || typical > fewAbove ? typical : 0;
}

// --- the detector's output --------------------------------------------------------------------------------

// cv2.connectedComponentsWithStats (connectivity 4, or 8 with `eight`): labels in raster order of each blob's
// first pixel, each blob's box and pixel count.
function components(binary, width, height, eight = false) {
  const labels = new Int32Array(width * height);
  const boxes = [null]; // per label: [x0, y0, x1, y1] inclusive
  const areas = [0];
  const queue = new Int32Array(width * height);
  const steps = eight ? [[-1, 0], [1, 0], [0, -1], [0, 1], [-1, -1], [1, -1], [-1, 1], [1, 1]] : [[-1, 0], [1, 0], [0, -1], [0, 1]];
  let count = 1;
  for (let start = 0; start < binary.length; start++) {
    if (!binary[start] || labels[start]) continue;
    const box = [width, height, -1, -1];
    labels[start] = count;
    let head = 0, tail = 0;
    queue[tail++] = start;
    while (head < tail) {
      const p = queue[head++];
      const x = p % width, y = (p - x) / width;
      box[0] = Math.min(box[0], x); box[1] = Math.min(box[1], y);
      box[2] = Math.max(box[2], x); box[3] = Math.max(box[3], y);
      for (const [dx, dy] of steps) {
        const nx = x + dx, ny = y + dy;
        if (nx < 0 || nx >= width || ny < 0 || ny >= height) continue;
        const q = ny * width + nx;
        if (binary[q] && !labels[q]) {
          labels[q] = count;
          queue[tail++] = q;
        }
      }
    }
    boxes.push(box);
    areas.push(tail);
    count++;
  }
  return { labels, boxes, areas, count };
}

function cross(o, a, b) {
  return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]);
}

// Andrew's monotone chain over points sorted by x then y: the convex hull without collinear points, clockwise
// in y-up coordinates = counter-clockwise on screen, as OpenCV's.
function monotoneChain(sorted) {
  const half = (list) => {
    const chain = [];
    for (const p of list) {
      while (chain.length >= 2 && cross(chain[chain.length - 2], chain[chain.length - 1], p) <= 0) chain.pop();
      chain.push(p);
    }
    chain.pop();
    return chain;
  };
  return [...half(sorted), ...half([...sorted].reverse())].reverse();
}

// Convex hull of a blob's pixel centres, as cv2.convexHull(clockwise=True) gives it for the blob's contour:
// counter-clockwise on screen, no collinear points, starting at the top row's leftmost pixel (the contour's
// first point). Returns map pixel coordinates.
function blobHull(labels, width, label, box) {
  const points = [];
  for (let y = box[1]; y <= box[3]; y++) {
    let lo = -1, hi = -1;
    for (let x = box[0]; x <= box[2]; x++) {
      if (labels[y * width + x] === label) {
        if (lo < 0) lo = x;
        hi = x;
      }
    }
    if (lo >= 0) points.push([lo, y], ...(hi !== lo ? [[hi, y]] : []));
  }
  const first = points[0];
  points.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  if (points.length < 3) return points.length === 2 && points[0][1] !== first[1] ? points.reverse() : points;
  const hull = monotoneChain(points);
  const start = hull.findIndex((p) => p[0] === first[0] && p[1] === first[1]);
  return [...hull.slice(start), ...hull.slice(0, start)];
}

// OpenCV's rotatingCalipers (CALIPERS_MINAREARECT) in float32, so that rectangles of equal area (a triangle's
// three sides) are chosen as OpenCV chooses them. `points`: a hull of more than 2 points in OpenCV's order.
// Returns [corner, side 1, side 2] as OpenCV's `out`.
function rotatingCalipers(points) {
  const n = points.length;
  const vect = [], inv = [];
  let [left, bottom, right, top] = [0, 0, 0, 0];
  let [pt0] = points;
  let [leftX, rightX, topY, bottomY] = [pt0[0], pt0[0], pt0[1], pt0[1]];
  for (let i = 0; i < n; i++) {
    if (pt0[0] < leftX) [leftX, left] = [pt0[0], i];
    if (pt0[0] > rightX) [rightX, right] = [pt0[0], i];
    if (pt0[1] > topY) [topY, top] = [pt0[1], i];
    if (pt0[1] < bottomY) [bottomY, bottom] = [pt0[1], i];
    const pt = points[(i + 1) % n];
    const [dx, dy] = [pt[0] - pt0[0], pt[1] - pt0[1]];
    vect.push([f(dx), f(dy)]);
    inv.push(f(1 / Math.sqrt(dx * dx + dy * dy)));
    pt0 = pt;
  }
  let orientation = 0;
  for (let i = 0, [ax, ay] = vect[n - 1]; i < n && orientation === 0; i++) {
    const convexity = ax * vect[i][1] - ay * vect[i][0];
    if (convexity !== 0) orientation = convexity > 0 ? 1 : -1;
    [ax, ay] = vect[i];
  }
  let [baseA, baseB] = [orientation, 0];
  const seq = [bottom, right, top, left];
  let minArea = 3.4028234663852886e38, best = null;
  for (let k = 0; k < n; k++) {
    const v = seq.map((i) => vect[i]);
    const dps = [
      f(f(baseA * v[0][0]) + f(baseB * v[0][1])), f(f(-baseB * v[1][0]) + f(baseA * v[1][1])),
      f(f(-baseA * v[2][0]) - f(baseB * v[2][1])), f(f(baseB * v[3][0]) - f(baseA * v[3][1])),
    ];
    let main = 0, maxCos = f(dps[0] * inv[seq[0]]);
    for (let j = 1; j < 4; j++) {
      const cos = f(dps[j] * inv[seq[j]]);
      if (cos > maxCos) [main, maxCos] = [j, cos];
    }
    const p = seq[main];
    const [leadX, leadY] = [f(vect[p][0] * inv[p]), f(vect[p][1] * inv[p])];
    [baseA, baseB] = [[leadX, leadY], [leadY, -leadX], [-leadX, -leadY], [-leadY, leadX]][main];
    seq[main] = (seq[main] + 1) % n;
    let [dx, dy] = [f(points[seq[1]][0] - points[seq[3]][0]), f(points[seq[1]][1] - points[seq[3]][1])];
    const width = f(f(dx * baseA) + f(dy * baseB));
    [dx, dy] = [f(points[seq[2]][0] - points[seq[0]][0]), f(points[seq[2]][1] - points[seq[0]][1])];
    const height = f(f(-dx * baseB) + f(dy * baseA));
    const area = f(width * height);
    if (area <= minArea) [minArea, best] = [area, { left: seq[3], baseA, width, baseB, height, bottom: seq[0] }];
  }
  const [a1, b1, a2, b2] = [best.baseA, best.baseB, -best.baseB, best.baseA];
  const [l, b] = [points[best.left], points[best.bottom]];
  const c1 = f(f(a1 * l[0]) + f(l[1] * b1)), c2 = f(f(a2 * b[0]) + f(b[1] * b2));
  const idet = f(1 / f(f(a1 * b2) - f(a2 * b1)));
  const corner = [f(f(f(c1 * b2) - f(c2 * b1)) * idet), f(f(f(a1 * c2) - f(a2 * c1)) * idet)];
  return [corner, [f(a1 * best.width), f(b1 * best.width)], [f(a2 * best.height), f(b2 * best.height)]];
}

// cv2.minAreaRect of a hull in OpenCV's order: its RotatedRect {centre, size: [width, height], angle (degrees)},
// every field float32 as OpenCV stores it.
function minAreaRect(hull) {
  if (hull.length === 1) return { centre: hull[0], size: [0, 0], angle: 0 };
  let centre, size, radians;
  if (hull.length === 2) {
    const [[x0, y0], [x1, y1]] = hull;
    centre = [f(f(x0 + x1) * 0.5), f(f(y0 + y1) * 0.5)];
    size = [f(Math.hypot(x1 - x0, y1 - y0)), 0];
    radians = f(Math.atan2(y1 - y0, x1 - x0));
  } else {
    const [corner, side1, side2] = rotatingCalipers(hull);
    centre = [f(corner[0] + f(f(side1[0] + side2[0]) * 0.5)), f(corner[1] + f(f(side1[1] + side2[1]) * 0.5))];
    size = [f(Math.hypot(...side1)), f(Math.hypot(...side2))];
    radians = f(Math.atan2(side1[1], side1[0]));
  }
  return { centre, size, angle: f((radians * 180) / Math.PI) };
}

// cv2.boxPoints: a RotatedRect's corners, in float32 as OpenCV computes them.
function boxPoints({ centre: [cx, cy], size: [w, h], angle }) {
  const radians = (angle * Math.PI) / 180;
  const [b, a] = [f(f(Math.cos(radians)) * 0.5), f(f(Math.sin(radians)) * 0.5)];
  const p0 = [f(f(cx - f(a * h)) - f(b * w)), f(f(cy + f(b * h)) - f(a * w))];
  const p1 = [f(f(cx + f(a * h)) - f(b * w)), f(f(cy - f(b * h)) - f(a * w))];
  const p2 = [f(f(cx + f(a * h)) + f(b * w)), f(f(cy - f(b * h)) + f(a * w))];
  return [p0, p1, p2, [f(f(cx - f(a * h)) + f(b * w)), f(f(cy + f(b * h)) + f(a * w))]];
}

// detector.unclip_distance: the offset that the training shrink took off a w x h rectangle (exact).
export function unclipDistance(kernelWidth, kernelHeight, shrink) {
  const [a, b, s] = [Math.max(kernelWidth, 0), Math.max(kernelHeight, 0), shrink];
  const [qa, qb, qc] = [8 - 4 * s, 2 * (1 - s) * (a + b), s * a * b];
  return (-qb + Math.sqrt(qb * qb + 4 * qa * qc)) / (2 * qa);
}

function area(points) {
  let twice = 0;
  points.forEach(([x, y], i) => {
    const [nx, ny] = points[(i + 1) % points.length];
    twice += x * ny - nx * y;
  });
  return twice / 2;
}

// detector._region for the quad: a blob (label) -> its grown min-area rectangle in original pixels, or null.
function regionQuad(labels, width, label, box, shrink, scale, imageSize) {
  const centre = (v) => v * MAP_STRIDE + (MAP_STRIDE - 1) / 2; // input pixels of a map pixel's centre
  const hull = blobHull(labels, width, label, box).map(([x, y]) => [centre(x), centre(y)]);
  const rect = minAreaRect(hull);
  const [w, h] = rect.size.map((side) => Math.max(side, MAP_STRIDE));
  const grow = unclipDistance(w, h, shrink);
  const grown = { ...rect, size: [f(w + 2 * grow), f(h + 2 * grow)] };
  const [limitX, limitY] = [imageSize[0] - 1, imageSize[1] - 1];
  const quad = boxPoints(grown).map(([x, y]) => [
    Math.min(Math.max((x + 0.5) / scale - 0.5, 0), limitX), Math.min(Math.max((y + 0.5) / scale - 0.5, 0), limitY),
  ]);
  return Math.abs(area(quad)) < 1 ? null : quad;
}

// geometry.rotate_quarter_points via orient.to_upright_points: where a photo's point lies on the upright page.
export function toUpright(point, orientation, imageSize) {
  let [x, y] = point, [width, height] = imageSize;
  for (let turn = 0; turn < (4 - orientation / 90) % 4; turn++) {
    [x, y] = [height - 1 - y, x];
    [width, height] = [height, width];
  }
  return [x, y];
}

// orient.order_quad: corners clockwise from the formula's own top-left, judged on the upright page.
export function orderQuad(quad, orientation) {
  let upright = quad.map((p) => [...p]);
  for (let turn = 0; turn < orientation / 90; turn++) upright = upright.map(([x, y]) => [y, -x]);
  const cx = upright.reduce((s, p) => s + p[0], 0) / 4, cy = upright.reduce((s, p) => s + p[1], 0) / 4;
  const ring = [0, 1, 2, 3].map((i) => [Math.atan2(upright[i][1] - cy, upright[i][0] - cx), i])
    .sort((a, b) => a[0] - b[0]).map(([, i]) => i);
  let start = 0;
  ring.forEach((i, k) => {
    if (upright[i][0] + upright[i][1] < upright[ring[start]][0] + upright[ring[start]][1]) start = k;
  });
  return [...ring.slice(start), ...ring.slice(0, start)].map((i) => quad[i]);
}

// --- line_merge.py: pieces of one formula line joined ----------------------------------------------------

// Convex hull (monotone chain) of float points, counter-clockwise on screen as OpenCV's; where it starts only
// matters for rectangles of exactly equal area, whose corners come out the same after orderQuad.
function convexHull(points) {
  return monotoneChain([...points].sort((a, b) => a[0] - b[0] || a[1] - b[1]));
}

// line_merge._line_angle: radians of the side nearest the upright horizontal, within a half turn.
function lineAngle(upright) {
  const sides = [0, 1].map((i) => [upright[i + 1][0] - upright[i][0], upright[i + 1][1] - upright[i][1]]);
  const [dx, dy] = Math.abs(sides[1][0]) - Math.abs(sides[1][1]) > Math.abs(sides[0][0]) - Math.abs(sides[0][1])
    ? sides[1] : sides[0];
  const angle = Math.atan2(dy, dx);
  return angle - Math.PI * roundHalfEven(angle / Math.PI);
}

// line_merge._box_along: [x0, y0, x1, y1] of points turned by `angle` so that a line at that angle lies level.
function boxAlong(points, angle) {
  const [cos, sin] = [Math.cos(angle), Math.sin(angle)];
  const level = points.map(([x, y]) => [x * cos + y * sin, -x * sin + y * cos]);
  const xs = level.map((p) => p[0]), ys = level.map((p) => p[1]);
  return [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)];
}

// line_merge.same_line
function sameLine(a, b, maxGap, minOverlap) {
  const [heightA, heightB] = [a[3] - a[1], b[3] - b[1]];
  const overlap = Math.min(a[3], b[3]) - Math.max(a[1], b[1]);
  const gap = Math.max(a[0], b[0]) - Math.min(a[2], b[2]);
  return overlap >= minOverlap * Math.min(heightA, heightB) && gap <= maxGap * Math.max(heightA, heightB);
}

// line_merge.join: the min-area rectangle of both quads, area-weighted kind and score.
function joinPieces(a, b) {
  const points = [...a.quad, ...b.quad].map(([x, y]) => [f(x), f(y)]);
  const quad = boxPoints(minAreaRect(convexHull(points)));
  const area = a.area + b.area;
  return {
    quad, handwritten: (a.handwritten * a.area + b.handwritten * b.area) / area,
    score: (a.score * a.area + b.score * b.area) / area, area,
  };
}

// line_merge._place: a piece with its upright corners and their bounding box, computed once.
function place(piece, orientation, imageSize) {
  const upright = piece.quad.map((p) => toUpright(p, orientation, imageSize));
  const xs = upright.map((p) => p[0]), ys = upright.map((p) => p[1]);
  return { piece, upright, box: [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)] };
}

// line_merge._joinable: boxes too far apart are skipped, then the rule along the larger piece's line.
function joinable(a, b, maxGap, minOverlap) {
  const [[ax0, ay0, ax1, ay1], [bx0, by0, bx1, by1]] = [a.box, b.box];
  const apart = Math.max(bx0 - ax1, ax0 - bx1, by0 - ay1, ay0 - by1);
  const reach = maxGap * Math.max(Math.hypot(ax1 - ax0, ay1 - ay0), Math.hypot(bx1 - bx0, by1 - by0));
  if (apart > reach) return false;
  const angle = lineAngle(a.piece.area >= b.piece.area ? a.upright : b.upright);
  return sameLine(boxAlong(a.upright, angle), boxAlong(b.upright, angle), maxGap, minOverlap);
}

// line_merge.merge_line_pieces
export function mergeLinePieces(pieces, orientation, imageSize, maxGap, minOverlap) {
  if (!(maxGap > 0)) return pieces;
  const placed = pieces.map((piece) => place(piece, orientation, imageSize));
  for (let joined = true; joined;) {
    joined = false;
    for (let i = 0; i < placed.length; i++) {
      for (let j = i + 1; j < placed.length;) {
        if (joinable(placed[i], placed[j], maxGap, minOverlap)) {
          placed[i] = place(joinPieces(placed[i].piece, placed[j].piece), orientation, imageSize);
          placed.splice(j, 1);
          joined = true;
          j = i + 1;
        } else {
          j++;
        }
      }
    }
  }
  return placed.map((entry) => entry.piece);
}

// detector.widen_quad: a quad (clockwise from the formula's top-left) grown by `along` line heights past each
// end and `across` above and below, clipped to the image: the context the recognizer's crop takes.
export function widenQuad(quad, along, across, imageSize) {
  const half = (a, b, c, d) => [(b[0] - a[0] + c[0] - d[0]) / 2, (b[1] - a[1] + c[1] - d[1]) / 2];
  const reading = half(quad[0], quad[1], quad[2], quad[3]);
  const downward = half(quad[0], quad[3], quad[2], quad[1]);
  const lineHeight = Math.hypot(downward[0], downward[1]);
  if (lineHeight === 0 || (reading[0] === 0 && reading[1] === 0)) return quad.map((p) => [...p]);
  const readingLength = Math.hypot(reading[0], reading[1]);
  const along_ = reading.map((v) => (v / readingLength) * along * lineHeight);
  const across_ = downward.map((v) => v * across);
  const signs = [[-1, -1], [1, -1], [1, 1], [-1, 1]];
  const limit = [imageSize[0] - 1, imageSize[1] - 1];
  return quad.map((p, i) => [0, 1].map((k) =>
    Math.min(Math.max(p[k] + signs[i][0] * along_[k] + signs[i][1] * across_[k], 0), limit[k])));
}

// detector.postprocess: maps of one page -> {orientation, detections: [{quad, polygon, kind, score, cropQuad,
// recropQuads}]}.
// `maps` is the net's (1, 2, mapHeight, mapWidth) output; blobs are read in its valid top-left corner.
export function postprocess(maps, mapHeight, mapWidth, valid, orientationProbs, scale, imageSize, params) {
  let best = 0;
  for (let i = 1; i < orientationProbs.length; i++) if (orientationProbs[i] > orientationProbs[best]) best = i;
  const orientation = orientationProbs[best] >= (params.min_orientation_confidence ?? 0) ? ORIENTATIONS[best] : 0;
  const [height, width] = [valid.height, valid.width];
  const binary = new Uint8Array(width * height);
  const kernel = new Float64Array(width * height), handwritten = new Float64Array(width * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      kernel[y * width + x] = maps[y * mapWidth + x];
      handwritten[y * width + x] = maps[mapHeight * mapWidth + y * mapWidth + x];
      binary[y * width + x] = kernel[y * width + x] > params.kernel_threshold;
    }
  }
  const { labels, boxes, count } = components(binary, width, height);
  const areas = new Float64Array(count), scores = new Float64Array(count), kinds = new Float64Array(count);
  for (let p = 0; p < labels.length; p++) { // np.bincount order: raster order, background included
    areas[labels[p]] += 1;
    scores[labels[p]] += kernel[p];
    kinds[labels[p]] += handwritten[p];
  }
  const keep = [];
  for (let i = 1; i < count; i++) {
    scores[i] /= Math.max(areas[i], 1);
    kinds[i] /= Math.max(areas[i], 1);
    if (areas[i] >= params.min_kernel_px && scores[i] > params.box_threshold) keep.push(i);
  }
  keep.sort((a, b) => scores[b] - scores[a]);
  let pieces = [];
  for (const i of keep.slice(0, params.max_regions)) {
    const quad = regionQuad(labels, width, i, boxes[i], params.shrink, scale, imageSize);
    if (quad !== null) pieces.push({ quad, handwritten: kinds[i], score: scores[i], area: areas[i] });
  }
  pieces = mergeLinePieces(pieces, orientation, imageSize, params.merge_gap ?? 0, params.merge_overlap ?? 0.5);
  const detections = pieces.map((piece) => {
    const ordered = orderQuad(piece.quad, orientation);
    const cropQuad = widenQuad(ordered, params.crop_margin_along ?? 0, params.crop_margin_across ?? 0, imageSize);
    const kind = piece.handwritten > (params.handwritten_threshold ?? 0.5) ? "handwritten" : "printed";
    // printed regions read unsurely are read again from these, grown along their line (susik.Pipeline)
    const recropQuads = kind === "printed" && (params.recrop_below ?? 0) > 0
      ? (params.recrop_along ?? []).map((along) => widenQuad(ordered, along, params.crop_margin_across ?? 0, imageSize))
      : [];
    return { quad: ordered, polygon: ordered, kind, score: piece.score, cropQuad, recropQuads };
  });
  const key = (d) => {
    const [x, y] = toUpright(d.quad[0], orientation, imageSize);
    return [roundHalfEven(y / 8), x];
  };
  detections.sort((a, b) => {
    const [ka, kb] = [key(a), key(b)];
    return ka[0] - kb[0] || ka[1] - kb[1];
  });
  return { orientation, detections };
}

// --- warps ------------------------------------------------------------------------------------------------

// Solve A x = b (n x n, row-major) by Gaussian elimination with partial pivoting, as cv::solve(DECOMP_LU).
function solve(a, b, n) {
  for (let col = 0; col < n; col++) {
    let pivot = col;
    for (let row = col + 1; row < n; row++) if (Math.abs(a[row * n + col]) > Math.abs(a[pivot * n + col])) pivot = row;
    if (a[pivot * n + col] === 0) return null;
    if (pivot !== col) {
      for (let k = 0; k < n; k++) [a[col * n + k], a[pivot * n + k]] = [a[pivot * n + k], a[col * n + k]];
      [b[col], b[pivot]] = [b[pivot], b[col]];
    }
    for (let row = col + 1; row < n; row++) {
      const factor = a[row * n + col] / a[col * n + col];
      for (let k = col; k < n; k++) a[row * n + k] -= factor * a[col * n + k];
      b[row] -= factor * b[col];
    }
  }
  const x = new Float64Array(n);
  for (let row = n - 1; row >= 0; row--) {
    let sum = b[row];
    for (let k = row + 1; k < n; k++) sum -= a[row * n + k] * x[k];
    x[row] = sum / a[row * n + row];
  }
  return x;
}

// cv2.getPerspectiveTransform(src, dst): the 3x3 homography (row-major, double).
export function perspectiveTransform(src, dst) {
  const a = new Float64Array(64), b = new Float64Array(8);
  for (let i = 0; i < 4; i++) {
    const [[x, y], [u, v]] = [src[i], dst[i]];
    a.set([x, y, 1, 0, 0, 0, -x * u, -y * u], i * 8);
    a.set([0, 0, 0, x, y, 1, -x * v, -y * v], (i + 4) * 8);
    [b[i], b[i + 4]] = [u, v];
  }
  const m = solve(a, b, 8);
  return m === null ? null : [...m, 1];
}

// cv::invert of a 3x3 matrix (OpenCV's closed form for small matrices).
function invert3(m) {
  const det = m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6]) + m[2] * (m[3] * m[7] - m[4] * m[6]);
  if (det === 0) return new Array(9).fill(0);
  const d = 1 / det;
  return [
    (m[4] * m[8] - m[5] * m[7]) * d, (m[2] * m[7] - m[1] * m[8]) * d, (m[1] * m[5] - m[2] * m[4]) * d,
    (m[5] * m[6] - m[3] * m[8]) * d, (m[0] * m[8] - m[2] * m[6]) * d, (m[2] * m[3] - m[0] * m[5]) * d,
    (m[3] * m[7] - m[4] * m[6]) * d, (m[1] * m[6] - m[0] * m[7]) * d, (m[0] * m[4] - m[1] * m[3]) * d,
  ];
}

// OpenCV 5's bilinear warp kernel: float32 source coordinates from the inverse map `inverse` (3x3, its last
// row [0, 0, 1] for affine warps), float32 weights, a horizontal then a vertical blend. `planes` is
// interleaved with `channels` values per pixel; `border`: "replicate" or a constant for outside pixels;
// `out` is a typed array of the right type (Uint8ClampedArray rounds half to even, as cv::saturate_cast).
function warpBilinear(src, width, height, channels, inverse, outWidth, outHeight, border, out) {
  const m = inverse.map(f);
  const affine = m[6] === 0 && m[7] === 0 && m[8] === 1;
  const pick = border === "replicate"
    ? (x, y, c) => src[(Math.min(Math.max(y, 0), height - 1) * width + Math.min(Math.max(x, 0), width - 1)) * channels + c]
    : (x, y, c) => (x >= 0 && x < width && y >= 0 && y < height ? src[(y * width + x) * channels + c] : border);
  for (let y = 0; y < outHeight; y++) {
    for (let x = 0; x < outWidth; x++) {
      let sx = f(f(m[0] * x) + f(f(m[1] * y) + m[2]));
      let sy = f(f(m[3] * x) + f(f(m[4] * y) + m[5]));
      if (!affine) {
        const w = f(f(m[6] * x) + f(f(m[7] * y) + m[8]));
        [sx, sy] = [f(sx / w), f(sy / w)];
      }
      const [x0, y0] = [Math.floor(sx), Math.floor(sy)];
      const [ax, ay] = [f(sx - x0), f(sy - y0)];
      for (let c = 0; c < channels; c++) {
        const [p00, p01, p10, p11] = [pick(x0, y0, c), pick(x0 + 1, y0, c), pick(x0, y0 + 1, c), pick(x0 + 1, y0 + 1, c)];
        const top = f(p00 + f(ax * f(p01 - p00))), bottom = f(p10 + f(ax * f(p11 - p10)));
        out[(y * outWidth + x) * channels + c] = f(top + f(ay * f(bottom - top)));
      }
    }
  }
  return out;
}

// Uint8ClampedArray rounds half to even when assigned, as OpenCV's saturate_cast<uchar>.
function rgba(width, height) {
  return { data: new Uint8ClampedArray(width * height * 4), width, height };
}

function edge(a, b) {
  return f(Math.hypot(f(a[0] - b[0]), f(a[1] - b[1])));
}

// pipeline.rectify: perspective-warp a quad (clockwise from the formula's top-left) to an upright crop that
// keeps its aspect ratio, at most `targetHeight * 2` px tall.
export function rectify(image, quad, targetHeight = RECTIFY_HEIGHT) {
  const points = quad.map(([x, y]) => [f(x), f(y)]);
  const width = Math.max(edge(points[0], points[1]), edge(points[3], points[2]));
  const height = Math.max(edge(points[0], points[3]), edge(points[1], points[2]));
  const scale = Math.min(1, (targetHeight * 2) / Math.max(height, 1));
  const [outW, outH] = [Math.max(2, roundHalfEven(width * scale)), Math.max(2, roundHalfEven(height * scale))];
  const forward = perspectiveTransform(points, [[0, 0], [outW, 0], [outW, outH], [0, outH]]);
  const out = rgba(outW, outH);
  if (forward === null) return out; // a degenerate quad: OpenCV would fail; a blank crop reads as nothing
  warpBilinear(image.data, image.width, image.height, 4, invert3(forward), outW, outH, "replicate", out.data);
  return out;
}

// cv2.getRotationMatrix2D + cv2.invertAffineTransform: the inverse map of a turn by `degrees` about `centre`.
function inverseRotation(centre, degrees) {
  const angle = (degrees * Math.PI) / 180;
  const [alpha, beta] = [Math.cos(angle), Math.sin(angle)];
  const m = [alpha, beta, (1 - alpha) * centre[0] - beta * centre[1], -beta, alpha, beta * centre[0] + (1 - alpha) * centre[1]];
  let d = m[0] * m[4] - m[1] * m[3];
  d = d !== 0 ? 1 / d : 0;
  const [a11, a22, a12, a21] = [m[4] * d, m[0] * d, -m[1] * d, -m[3] * d];
  return [a11, a12, -a11 * m[2] - a12 * m[5], a21, a22, -a21 * m[2] - a22 * m[5], 0, 0, 1];
}

// orient.skew_angle: the small turn (degrees, anticlockwise on screen) that makes the ink's rows sharpest.
export function skewAngle(gray, width, height, maxDegrees = DESKEW.maxDegrees, step = DESKEW.step) {
  const ink = new Float32Array(gray.length);
  let any = false;
  for (let i = 0; i < gray.length; i++) {
    const value = 255 - gray[i];
    ink[i] = value < 64 ? 0 : value; // paper grain and shading are not ink
    any ||= ink[i] > 0;
  }
  if (!any) return 0;
  const turned = new Float32Array(gray.length);
  const profile = new Float32Array(height), squares = new Float32Array(Math.max(height - 1, 0));
  let best = 0, bestScore = -1;
  for (let k = 0, angle = -maxDegrees; angle < maxDegrees + step / 2; k++, angle = -maxDegrees + k * step) {
    warpBilinear(ink, width, height, 1, inverseRotation([width / 2, height / 2], angle), width, height, 0, turned);
    for (let y = 0; y < height; y++) profile[y] = pairwiseSum(turned, y * width, width);
    for (let y = 0; y + 1 < height; y++) squares[y] = f(f(profile[y + 1] - profile[y]) ** 2);
    const score = pairwiseSum(squares, 0, squares.length);
    if (score > bestScore + 1e-6 * Math.abs(bestScore)) [best, bestScore] = [angle, score];
  }
  return best;
}

// numpy's float32 sum (pairwise, 8 accumulators per block of up to 128): near-equal skew scores then rank
// as the server's do.
function pairwiseSum(values, start, n) {
  if (n < 8) {
    let sum = 0;
    for (let i = start; i < start + n; i++) sum = f(sum + values[i]);
    return sum;
  }
  if (n <= 128) {
    const r = Array.from(values.subarray(start, start + 8));
    let i = 8;
    for (; i < n - (n % 8); i += 8) for (let j = 0; j < 8; j++) r[j] = f(r[j] + values[start + i + j]);
    let sum = f(f(f(r[0] + r[1]) + f(r[2] + r[3])) + f(f(r[4] + r[5]) + f(r[6] + r[7])));
    for (; i < n; i++) sum = f(sum + values[start + i]);
    return sum;
  }
  const half = Math.floor(n / 2) - (Math.floor(n / 2) % 8);
  return f(pairwiseSum(values, start, half) + pairwiseSum(values, start + half, n - half));
}

// cv2.COLOR_BGR2GRAY of RGBA bytes.
function gray(image) {
  const out = new Uint8Array(image.width * image.height);
  for (let i = 0, p = 0; i < out.length; i++, p += 4) {
    out[i] = (image.data[p] * 4899 + image.data[p + 1] * 9617 + image.data[p + 2] * 1868 + 8192) >> 14;
  }
  return out;
}

// label_gap.label_end: where the formula after a problem label starts in an upright crop, as a fraction of its
// width (inside the first word-wide blank run after the first ink, when the label before it is short), or null.
export function labelEnd(crop) {
  const { width, height } = crop;
  const values = gray(crop);
  const histogram = new Uint32Array(256);
  for (const value of values) histogram[value]++;
  let paper = 0;
  for (let seen = 0; paper < 256; paper++) {
    seen += histogram[paper];
    if (seen > Math.floor(values.length / 2)) break;
  }
  const columns = [];
  for (let x = 0; x < width; x++) {
    let ink = 0;
    for (let y = 0; y < height; y++) ink += values[y * width + x] < LABEL_GAP.inkUnderPaper * paper ? 1 : 0;
    if (ink >= LABEL_GAP.minInkPixels) columns.push(x);
  }
  const gap = columns.findIndex((x, i) => i + 1 < columns.length
    && columns[i + 1] - x - 1 >= Math.max(2, LABEL_GAP.minGap * height));
  if (gap < 0) return null;
  const left = columns[gap], right = columns[gap + 1];
  if (left + 1 > LABEL_GAP.maxLabel * width || left + 1 - columns[0] > LABEL_GAP.labelHeights * height) return null;
  return (right - (right - left) / 4) / width;
}

// label_gap.cut_quad: the part of a quad (clockwise from its top-left) from `start` (a share of its width) on.
export function cutQuad([topLeft, topRight, bottomRight, bottomLeft], start) {
  const along = (a, b) => [a[0] + start * (b[0] - a[0]), a[1] + start * (b[1] - a[1])];
  return [along(topLeft, topRight), topRight, bottomRight, along(bottomLeft, bottomRight)];
}

// orient.DeskewOrienter on one upright crop: turned by its residual skew when that is at least minDegrees.
export function deskew(crop, maxDegrees = DESKEW.maxDegrees, minDegrees = DESKEW.minDegrees) {
  const angle = skewAngle(gray(crop), crop.width, crop.height, maxDegrees);
  if (Math.abs(angle) < minDegrees) return crop;
  const out = rgba(crop.width, crop.height);
  const inverse = inverseRotation([crop.width / 2, crop.height / 2], angle);
  warpBilinear(crop.data, crop.width, crop.height, 4, inverse, crop.width, crop.height, "replicate", out.data);
  return out;
}

// Transparent pixels on white paper, as susik.runtime.image_io does (to within rounding).
export function opaque(image) {
  const { data } = image;
  for (let p = 0; p < data.length; p += 4) {
    const a = data[p + 3];
    if (a === 255) continue;
    for (let c = p; c < p + 3; c++) data[c] = Math.round((data[c] * a + 255 * (255 - a)) / 255);
    data[p + 3] = 255;
  }
  return image;
}
