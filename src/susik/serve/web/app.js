"use strict";
// The page: photo -> /v1/recognize -> outlined regions + KaTeX + editable LaTeX -> /v1/feedback.

const SVG = "http://www.w3.org/2000/svg";
// The served confidence is calibrated (the chance the reading is exactly right; see the model card): below
// even odds a reading is more likely wrong than right, so the page asks the user to check it. Same number as
// susik.results.CHECK_BELOW (the CLI's flag).
const CHECK_BELOW = 0.5;
const MAX_SIDE = 2048; // px; a 12 MP phone photo is shrunk before upload: formulas stay legible, bytes drop ~5x
const view = {
  photo: document.getElementById("photo"),
  status: document.getElementById("status"),
  offer: document.getElementById("offer"),
  result: document.getElementById("result"),
  preview: document.getElementById("preview"),
  overlay: document.getElementById("overlay"),
  formulas: document.getElementById("formulas"),
  template: document.getElementById("formula-template"),
};
let current = null; // {requestId, displayMs}
let lastPhoto = null; // what "read it as one formula" reads again

function say(text, isError = false) {
  view.status.textContent = text;
  view.status.classList.toggle("error", isError);
}

function renderMath(latex, target) {
  if (window.katex) {
    window.katex.render(latex, target, { displayMode: true, throwOnError: false, strict: "ignore" });
  } else {
    target.textContent = latex; // KaTeX assets missing: show the source rather than nothing
  }
}

function mode() {
  return document.querySelector("input[name=mode]:checked").value;
}

function loaded(img) {
  return img.complete && img.naturalWidth ? Promise.resolve() : new Promise((resolve) => {
    img.onload = resolve;
    img.onerror = resolve;
  });
}

function painted() {
  return new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
}

// Upright (EXIF applied) and at most MAX_SIDE px; the original when it is small or cannot be decoded here.
async function shrink(file) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
  } catch {
    return file; // let the server judge (and explain) what the browser cannot decode
  }
  const scale = MAX_SIDE / Math.max(bitmap.width, bitmap.height);
  if (scale >= 1) {
    bitmap.close();
    return file;
  }
  const canvas = document.createElement("canvas");
  canvas.width = Math.round(bitmap.width * scale);
  canvas.height = Math.round(bitmap.height * scale);
  canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  bitmap.close();
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.9));
  return blob || file;
}

async function recognize(file) {
  const captured = performance.now();
  view.offer.hidden = true;
  lastPhoto = file;
  say("Reading the formulas…");
  const onDevice = window.susikEdge?.active() ?? false; // edge.js reads the photo here: nothing is uploaded
  const image = onDevice ? file : await shrink(file);
  const form = new FormData();
  form.append("file", image, image === file ? file.name : "photo.jpg");
  form.append("mode", mode());
  form.append("consent", document.getElementById("consent").checked ? "true" : "false"); // off unless ticked
  form.append("source", "web");
  let response;
  try {
    response = onDevice ? await window.susikEdge.read(image, mode()) : await fetch("/v1/recognize", { method: "POST", body: form });
  } catch (error) {
    say(`Network error: ${error.message}`, true);
    return;
  }
  const body = await response.json().catch(() => ({ error: "bad_response", detail: response.statusText }));
  if (!response.ok) {
    say(`Could not read this photo: ${body.detail || body.error} (${response.status})`, true);
    return;
  }
  if (view.preview.src) URL.revokeObjectURL(view.preview.src);
  view.preview.src = URL.createObjectURL(image); // what the server saw, so the outlines fit exactly
  await loaded(view.preview);
  show(body);
  await painted();
  current = { requestId: body.request_id, displayMs: Math.round(performance.now() - captured) };
  document.body.dataset.displayMs = current.displayMs;
  const count = body.regions.length;
  const unsure = body.regions.filter((region) => region.confidence < CHECK_BELOW).length;
  const toCheck = unsure ? ` · ${unsure} to check` : "";
  say(`${count} formula${count === 1 ? "" : "s"}${toCheck} · ${current.displayMs} ms from photo to screen · ${body.source === "device" ? "read on this device" : `read by the server · request ${body.request_id}`}`);
  // A photo of one formula alone shows glyphs larger than any on a page, and reading it as a page can find
  // nothing, a piece, or the formula and a neighbour's text, where reading it whole works (see the model card):
  // where a page reading found two regions or fewer, offer that, one click away.
  if (count <= 2 && mode() === "page") {
    view.offer.querySelector(".offer-text").textContent =
      count ? "One formula alone in the photo?" : "No formula found reading it as a page.";
    view.offer.hidden = false;
  }
}

function outline(region, index) {
  const polygon = document.createElementNS(SVG, "polygon");
  polygon.setAttribute("points", region.quad.map(([x, y]) => `${x},${y}`).join(" "));
  const unsure = region.confidence < CHECK_BELOW ? " unsure" : "";
  polygon.setAttribute("class", `region ${region.kind}${unsure}`);
  polygon.dataset.index = index;
  const label = document.createElementNS(SVG, "text");
  const [x, y] = region.quad[0];
  label.setAttribute("x", x);
  label.setAttribute("y", y);
  label.setAttribute("class", "region-label");
  label.textContent = String(index + 1);
  view.overlay.append(polygon, label);
  return polygon;
}

function show(page) {
  view.overlay.setAttribute("viewBox", `0 0 ${page.width} ${page.height}`);
  view.overlay.style.setProperty("--stroke", `${Math.max(page.width, page.height) / 250}px`);
  view.overlay.replaceChildren();
  view.formulas.replaceChildren();
  page.regions.forEach((region, index) => {
    const polygon = outline(region, index);
    const item = view.template.content.firstElementChild.cloneNode(true);
    item.dataset.index = index;
    const rendered = item.querySelector(".rendered");
    const source = item.querySelector(".source");
    const problem = item.querySelector(".problem-label");
    problem.textContent = region.label ?? "";
    problem.hidden = !region.label; // a problem number read with the formula, not part of its LaTeX
    const check = item.querySelector(".check");
    check.hidden = !(region.confidence < CHECK_BELOW);
    check.textContent = `check this: ${Math.round(100 * region.confidence)}% likely right`;
    source.value = region.latex;
    renderMath(region.latex, rendered);
    source.addEventListener("input", () => renderMath(source.value, rendered));
    item.querySelector(".correct").addEventListener("click", () => sendFeedback(item, region.latex));
    item.querySelector(".copy").addEventListener("click", () => copy(source, item));
    const highlight = (on) => polygon.classList.toggle("active", on);
    item.addEventListener("mouseenter", () => highlight(true));
    item.addEventListener("mouseleave", () => highlight(false));
    item.addEventListener("focusin", () => highlight(true));
    item.addEventListener("focusout", () => highlight(false));
    view.formulas.append(item);
  });
  view.result.hidden = false;
}

async function sendFeedback(item, predicted) {
  const latex = item.querySelector(".source").value;
  const comment = item.querySelector(".comment").value.trim();
  const note = item.querySelector(".note");
  const feedback = { request_id: current.requestId, region: Number(item.dataset.index), display_ms: current.displayMs };
  if (latex === predicted) feedback.accepted = true;
  else feedback.latex = latex;
  if (comment) feedback.comment = comment;
  if (!current.requestId) { // read on this device: there is no server request to attach feedback to
    note.textContent = "read on this device: nothing is sent";
    return;
  }
  note.textContent = "sending…";
  try {
    const response = await fetch("/v1/feedback", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(feedback),
    });
    const body = await response.json();
    if (!response.ok) throw new Error(body.detail || body.error);
    note.textContent = body.corrected ? "correction saved — thank you" : "marked as right — thank you";
    item.classList.add("sent");
  } catch (error) {
    note.textContent = `not saved: ${error.message}`;
  }
}

async function copy(source, item) {
  const note = item.querySelector(".note");
  try {
    await navigator.clipboard.writeText(source.value);
  } catch {
    source.select(); // no clipboard API outside secure contexts (e.g. http on a LAN address)
    document.execCommand("copy");
  }
  note.textContent = "copied";
}

document.getElementById("as-one-formula").addEventListener("click", () => {
  document.querySelector("input[name=mode][value=crop]").checked = true;
  if (lastPhoto) recognize(lastPhoto);
});

view.photo.addEventListener("change", () => {
  const file = view.photo.files[0];
  if (file) recognize(file);
  view.photo.value = ""; // the same photo can be chosen again
});
