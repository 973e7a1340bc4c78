"use strict";
// The labeling page: item list -> one page on an SVG canvas (zoom, pan, quads) + LaTeX per region -> /api.
// Unsaved work is mirrored to localStorage on every change, so a crash of the browser or server loses nothing.

const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);
const view = {
  canvas: $("canvas"), photo: $("photo"), shapes: $("shapes"), draft: $("draft"), handles: $("handles"),
  items: $("items"), counts: $("counts"), filter: $("filter"), annotator: $("annotator"), regions: $("regions"),
  template: $("region-template"), conditions: $("conditions"), orientation: $("orientation"), status: $("status"), title: $("title"),
  itemStatus: $("item-status"),
};
const state = {
  list: [], // summaries of the filtered items
  page: null, // {index, image, width, height, orientation, regions: [{quad, latex, kind, polygon?}]}
  selected: -1,
  drawing: null, // points clicked so far, or null
  undo: [],
  dirty: false,
  openedAt: 0, // performance.now() when the item was opened or last saved
  box: null, // the viewBox: {x, y, w, h}
};

function say(text, isError = false) {
  view.status.textContent = text;
  view.status.classList.toggle("error", isError);
}

async function api(method, path, body) {
  const response = await fetch(path, {
    method, headers: body ? { "Content-Type": "application/json" } : {}, body: body ? JSON.stringify(body) : undefined,
  });
  const data = await response.json();
  if (!response.ok) throw new Error(data.detail || data.error || response.statusText);
  return data;
}

function renderMath(latex, target) {
  if (window.katex) window.katex.render(latex, target, { displayMode: true, throwOnError: false, strict: "ignore" });
  else target.textContent = latex;
}

// --- the item list ---

async function loadList() {
  const status = view.filter.value;
  const data = await api("GET", "/api/items" + (status ? `?status=${encodeURIComponent(status)}` : ""));
  state.list = data.items;
  view.counts.textContent = Object.entries(data.counts).filter(([, n]) => n).map(([k, n]) => `${k} ${n}`).join(" · ");
  view.items.replaceChildren(...data.items.map((item) => {
    const li = document.createElement("li");
    li.dataset.index = item.index;
    li.textContent = item.image;
    const badge = document.createElement("span");
    badge.className = `badge ${item.status}`;
    badge.textContent = item.status;
    li.append(badge);
    li.classList.toggle("current", state.page !== null && state.page.index === item.index);
    li.addEventListener("click", () => go(item.index));
    return li;
  }));
}

async function go(index) {
  if (state.dirty && !(await save())) return;
  await openItem(index);
}

async function step(delta) {
  if (!state.list.length) return;
  const at = state.list.findIndex((item) => state.page && item.index === state.page.index);
  const next = state.list[(at + delta + state.list.length) % state.list.length];
  await go(next.index);
}

// --- one page ---

function draftKey(image) {
  return `susik-draft:${location.host}:${image}`;
}

async function openItem(index) {
  const data = await api("GET", `/api/items/${index}`);
  let regions = data.regions;
  let note = data.status;
  if (!regions.length && data.prelabel) {
    regions = data.prelabel.regions;
    note += ` · proposed by ${data.prelabel.model_version}`;
  }
  state.page = { index, image: data.image, width: data.width, height: data.height, orientation: data.orientation,
    conditions: data.conditions || [], regions: regions.map((r) => ({ ...r })) };
  const draft = localStorage.getItem(draftKey(data.image));
  state.dirty = false;
  if (draft) {
    const saved = JSON.parse(draft);
    state.page.regions = saved.regions;
    state.page.orientation = saved.orientation;
    state.page.conditions = saved.conditions;
    state.dirty = true;
    note += " · unsaved edits restored";
  }
  state.selected = -1;
  state.drawing = null;
  state.undo = [];
  state.openedAt = performance.now();
  view.title.textContent = data.image;
  view.itemStatus.textContent = note;
  view.photo.setAttribute("href", `/api/items/${index}/image`);
  view.photo.setAttribute("width", data.width);
  view.photo.setAttribute("height", data.height);
  fit();
  redraw();
  renderPanel();
  for (const li of view.items.children) li.classList.toggle("current", Number(li.dataset.index) === index);
  say("");
}

function snapshot() {
  const { regions, orientation, conditions } = state.page;
  return JSON.stringify({ regions, orientation, conditions });
}

// Call before every change: remembers the state to undo to.
function willChange() {
  state.undo.push(snapshot());
  if (state.undo.length > 200) state.undo.shift();
}

function changed() {
  state.dirty = true;
  localStorage.setItem(draftKey(state.page.image), snapshot());
  redraw();
}

function undo() {
  if (!state.page || !state.undo.length) return;
  const previous = JSON.parse(state.undo.pop());
  state.page.regions = previous.regions;
  state.page.orientation = previous.orientation;
  state.page.conditions = previous.conditions;
  state.selected = Math.min(state.selected, state.page.regions.length - 1);
  changed();
  renderPanel();
}

// --- zoom and pan (the SVG viewBox, in image pixels) ---

function setBox(box) {
  state.box = box;
  view.canvas.setAttribute("viewBox", `${box.x} ${box.y} ${box.w} ${box.h}`);
}

function fit() {
  if (!state.page) return;
  const { width: w, height: h } = state.page; // a margin, so the toolbar hides no corner of the page
  setBox({ x: -0.03 * w, y: -0.12 * h, w: 1.06 * w, h: 1.15 * h });
}

function toImage(event) {
  const point = view.canvas.createSVGPoint();
  point.x = event.clientX;
  point.y = event.clientY;
  const p = point.matrixTransform(view.canvas.getScreenCTM().inverse());
  return [p.x, p.y];
}

view.canvas.addEventListener("wheel", (event) => {
  if (!state.page) return;
  event.preventDefault();
  const [x, y] = toImage(event);
  const k = event.deltaY < 0 ? 1 / 1.2 : 1.2;
  const b = state.box;
  setBox({ x: x - (x - b.x) * k, y: y - (y - b.y) * k, w: b.w * k, h: b.h * k });
  redraw();
}, { passive: false });

// --- drawing ---

function pixelsPerUnit() {
  const rect = view.canvas.getBoundingClientRect(); // the viewBox is fitted inside (preserveAspectRatio meet)
  return Math.min(rect.width / state.box.w, rect.height / state.box.h) || 1;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

function redraw() {
  if (!state.page) return;
  const unit = 1 / pixelsPerUnit(); // one screen pixel in image units
  view.shapes.replaceChildren();
  view.handles.replaceChildren();
  view.draft.replaceChildren();
  state.page.regions.forEach((region, i) => {
    const classes = `quad ${region.kind}${i === state.selected ? " selected" : ""}`;
    const polygon = svg("polygon", { class: classes, points: region.quad.map((p) => p.join(",")).join(" ") });
    polygon.dataset.index = i;
    view.shapes.append(polygon);
    const [x, y] = region.quad[0];
    const label = svg("text", { class: "quad-label", x: x + 8 * unit, y: y - 4 * unit, "font-size": 16 * unit,
      "stroke-width": 3 * unit });
    label.textContent = String(i + 1);
    view.shapes.append(label);
  });
  if (state.selected >= 0) {
    state.page.regions[state.selected].quad.forEach(([x, y], corner) => {
      const handle = svg("circle", { class: "handle", cx: x, cy: y, r: 6 * unit });
      handle.dataset.corner = corner;
      view.handles.append(handle);
    });
  }
  if (state.drawing) {
    const points = state.drawing.map((p) => p.join(",")).join(" ");
    view.draft.append(svg("polyline", { class: "draft", points }));
    for (const [x, y] of state.drawing) view.draft.append(svg("circle", { class: "handle", cx: x, cy: y, r: 4 * unit }));
  }
  view.canvas.classList.toggle("drawing", Boolean(state.drawing));
  view.orientation.value = String(state.page.orientation);
  for (const box of view.conditions.querySelectorAll("input")) box.checked = state.page.conditions.includes(box.value);
}

// Clockwise on screen (y down) means a positive shoelace sum; keep the first click as the top-left.
function clockwise(quad) {
  let twice = 0;
  for (let i = 0; i < 4; i++) {
    const [x0, y0] = quad[i];
    const [x1, y1] = quad[(i + 1) % 4];
    twice += x0 * y1 - x1 * y0;
  }
  return twice >= 0 ? quad : [quad[0], quad[3], quad[2], quad[1]];
}

function startDrawing() {
  if (!state.page) return;
  state.drawing = [];
  say("click 4 corners, clockwise from the formula's top-left (Esc cancels)");
  redraw();
}

let drag = null; // {kind: "corner", corner} or {kind: "pan", from: [clientX, clientY], box}

view.canvas.addEventListener("mousedown", (event) => {
  if (!state.page) return;
  view.canvas.focus();
  const target = event.target;
  if (event.button === 1 || (event.button === 0 && event.shiftKey)) {
    drag = { kind: "pan", from: [event.clientX, event.clientY], box: { ...state.box } };
    event.preventDefault();
    return;
  }
  if (event.button !== 0) return;
  if (state.drawing) {
    event.preventDefault(); // keep the focus where we put it (the new region's LaTeX box)
    state.drawing.push(toImage(event).map((v) => Math.round(v * 100) / 100));
    if (state.drawing.length === 4) {
      willChange();
      state.page.regions.push({ quad: clockwise(state.drawing), latex: "", kind: defaultKind() });
      state.selected = state.page.regions.length - 1;
      state.drawing = null;
      changed();
      renderPanel();
      say("quad added: type its LaTeX");
      view.regions.lastElementChild.querySelector(".latex").focus();
    } else {
      redraw();
    }
    return;
  }
  if (target.classList.contains("handle") && target.dataset.corner !== undefined) {
    willChange();
    delete state.page.regions[state.selected].polygon; // an outline drawn for the old corners no longer fits
    drag = { kind: "corner", corner: Number(target.dataset.corner) };
    return;
  }
  if (target.classList.contains("quad")) {
    select(Number(target.dataset.index));
    return;
  }
  select(-1);
  drag = { kind: "pan", from: [event.clientX, event.clientY], box: { ...state.box } };
});

window.addEventListener("mousemove", (event) => {
  if (!drag) return;
  if (drag.kind === "corner") {
    state.page.regions[state.selected].quad[drag.corner] = toImage(event).map((v) => Math.round(v * 100) / 100);
    redraw();
  } else {
    const scale = 1 / pixelsPerUnit();
    setBox({ ...drag.box, x: drag.box.x - (event.clientX - drag.from[0]) * scale,
      y: drag.box.y - (event.clientY - drag.from[1]) * scale });
  }
});

window.addEventListener("mouseup", () => {
  if (drag && drag.kind === "corner") changed();
  drag = null;
});

function defaultKind() {
  const last = state.page.regions[state.page.regions.length - 1];
  return last ? last.kind : "printed";
}

function select(index) {
  state.selected = index;
  redraw();
  [...view.regions.children].forEach((li, i) => li.classList.toggle("selected", i === index));
}

function deleteSelected() {
  if (!state.page || state.selected < 0) return;
  willChange();
  state.page.regions.splice(state.selected, 1);
  state.selected = -1;
  changed();
  renderPanel();
}

// --- the region panel ---

function renderPanel() {
  view.regions.replaceChildren(...state.page.regions.map((region, i) => {
    const li = view.template.content.firstElementChild.cloneNode(true);
    const kind = li.querySelector(".kind");
    const latex = li.querySelector(".latex");
    const rendered = li.querySelector(".rendered");
    kind.value = region.kind;
    latex.value = region.latex;
    renderMath(region.latex, rendered);
    li.classList.toggle("selected", i === state.selected);
    li.addEventListener("focusin", () => select(i));
    kind.addEventListener("change", () => {
      willChange();
      region.kind = kind.value;
      changed();
    });
    latex.addEventListener("focus", () => willChange()); // one undo step per edit of a box
    latex.addEventListener("input", () => {
      region.latex = latex.value;
      renderMath(latex.value, rendered);
      li.querySelector(".tex-check").textContent = "";
      changed();
    });
    return li;
  }));
}

async function checkTex() {
  if (!state.page || !state.page.regions.length) return;
  say("checking with TeX…");
  try {
    const { compiles } = await api("POST", "/api/compile", { latex: state.page.regions.map((r) => r.latex) });
    [...view.regions.children].forEach((li, i) => {
      const mark = li.querySelector(".tex-check");
      mark.textContent = compiles[i] ? "TeX ok" : "TeX error";
      mark.className = `tex-check ${compiles[i] ? "ok" : "fail"}`;
    });
    say(compiles.every(Boolean) ? "all regions compile" : "some regions do not compile", !compiles.every(Boolean));
  } catch (error) {
    say(error.message, true);
  }
}

function annotator() {
  const name = view.annotator.value.trim();
  if (!name) {
    say("type your name first (annotator)", true);
    view.annotator.focus();
  }
  return name;
}

async function save() {
  if (!state.page) return false;
  const name = annotator();
  if (!name) return false;
  const now = performance.now();
  const { regions, orientation, conditions } = state.page;
  const body = { regions, orientation, conditions, annotator: name,
    seconds: Math.round((now - state.openedAt) / 100) / 10 };
  try {
    const data = await api("PUT", `/api/items/${state.page.index}`, body);
    localStorage.removeItem(draftKey(state.page.image));
    state.dirty = false;
    state.openedAt = now;
    view.itemStatus.textContent = data.status;
    say(`saved · version ${data.version.slice(7, 19)}`);
    await loadList();
    return true;
  } catch (error) {
    say(`not saved: ${error.message}`, true);
    return false;
  }
}

async function review(verdict) {
  if (!state.page) return;
  const name = annotator();
  if (!name) return;
  try {
    const seconds = Math.round((performance.now() - state.openedAt) / 100) / 10;
    const data = await api("POST", `/api/items/${state.page.index}/review`, { reviewer: name, verdict, seconds });
    view.itemStatus.textContent = data.status;
    say(`${verdict}`);
    await loadList();
  } catch (error) {
    say(error.message, true);
  }
}

// --- wiring ---

$("draw").addEventListener("click", startDrawing);
$("delete").addEventListener("click", deleteSelected);
$("undo").addEventListener("click", undo);
$("fit").addEventListener("click", () => { fit(); redraw(); });
$("check").addEventListener("click", checkTex);
$("save").addEventListener("click", save);
$("next").addEventListener("click", () => step(1));
$("accept").addEventListener("click", () => review("accepted"));
$("reject").addEventListener("click", () => review("rejected"));
view.filter.addEventListener("change", loadList);
view.orientation.addEventListener("change", () => {
  willChange();
  state.page.orientation = Number(view.orientation.value);
  changed();
});
view.annotator.value = localStorage.getItem("susik-annotator") || "";
view.annotator.addEventListener("change", () => localStorage.setItem("susik-annotator", view.annotator.value.trim()));

document.addEventListener("keydown", (event) => {
  const typing = ["TEXTAREA", "INPUT", "SELECT"].includes(document.activeElement.tagName);
  if ((event.ctrlKey || event.metaKey) && event.key === "s") {
    event.preventDefault();
    save();
  } else if ((event.ctrlKey || event.metaKey) && event.key === "z" && !typing) {
    event.preventDefault();
    undo();
  } else if (event.key === "Escape") {
    state.drawing = null;
    document.activeElement.blur();
    redraw();
  } else if (!typing && !event.ctrlKey && !event.metaKey && !event.altKey) {
    const actions = {
      q: startDrawing, d: deleteSelected, s: save, n: () => step(1), p: () => step(-1), f: () => { fit(); redraw(); },
      a: () => review("accepted"), x: () => review("rejected"),
      k: () => {
        if (state.selected < 0) return;
        willChange();
        const region = state.page.regions[state.selected];
        region.kind = region.kind === "printed" ? "handwritten" : "printed";
        changed();
        renderPanel();
      },
      r: () => {
        willChange();
        state.page.orientation = (state.page.orientation + 90) % 360;
        changed();
      },
    };
    if (actions[event.key] && state.page) {
      event.preventDefault();
      actions[event.key]();
    }
  }
});
window.addEventListener("resize", redraw);
window.addEventListener("beforeunload", (event) => {
  if (state.dirty) event.preventDefault(); // the draft is in localStorage anyway; this only warns
});

async function loadChoices() {
  const { conditions } = await api("GET", "/api/choices");
  for (const name of conditions) {
    const label = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.value = name;
    box.addEventListener("change", () => {
      if (!state.page) return;
      willChange();
      const others = state.page.conditions.filter((c) => c !== name);
      state.page.conditions = box.checked ? [...others, name] : others;
      changed();
    });
    label.append(box, ` ${name}`);
    view.conditions.append(label);
  }
}

loadChoices().then(loadList).then(() => (state.list.length ? openItem(state.list[0].index) : say("no items")))
  .catch((error) => say(error.message, true));
