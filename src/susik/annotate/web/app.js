"use strict";
// The labeling page: item list -> one page on an SVG canvas (zoom, pan, quads and polygons) + LaTeX per
// region -> /api. Unsaved work is mirrored to localStorage on every change, so a crash of the browser or server
// loses nothing. A region is a quad (4 corners) or a polygon; editing a polygon drops its quad, which the
// server derives again on save (the minimum-area rectangle, see susik.annotate.shapes). Uses common.js.

const view = {
  canvas: $("canvas"), photo: $("photo"), shapes: $("shapes"), draft: $("draft"), handles: $("handles"),
  items: $("items"), counts: $("counts"), filter: $("filter"), order: $("order"), annotator: $("annotator"), regions: $("regions"),
  template: $("region-template"), conditions: $("conditions"), orientation: $("orientation"), status: $("status"), title: $("title"),
  itemStatus: $("item-status"),
};
const state = {
  list: [], // summaries of the filtered items
  page: null, // {index, image, width, height, orientation, regions: [{quad?, polygon?, latex, kind}]}
  selected: -1,
  vertex: -1, // the picked vertex of the selected polygon (Delete removes it), or -1
  drawing: null, // {mode: "quad" | "polygon", points: clicked so far}, or null
  undo: [],
  dirty: false,
  openedAt: 0, // performance.now() when the item was opened or last saved
  box: null, // the viewBox: {x, y, w, h}
};

function say(text, isError = false) {
  view.status.textContent = text;
  view.status.classList.toggle("error", isError);
}

// --- the item list ---

async function loadList() {
  const query = new URLSearchParams({ order: view.order.value });
  if (view.filter.value) query.set("status", view.filter.value);
  const data = await api("GET", `/api/items?${query}`);
  state.list = data.items;
  view.counts.textContent = Object.entries(data.counts).filter(([, n]) => n).map(([k, n]) => `${k} ${n}`).join(" · ");
  view.items.replaceChildren(...data.items.map((item) => {
    const li = document.createElement("li");
    li.dataset.index = item.index;
    li.textContent = item.image;
    li.append(badge(item.status));
    if (item.least_sure !== null) li.title = `least sure proposal: ${Math.round(100 * item.least_sure)}% likely right`;
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
  const review = lastReview(data.history);
  if (review && data.status === review.verdict.replace("accepted", "reviewed")) {
    note += ` by ${review.annotator}` + (review.comment ? `: “${review.comment}”` : "");
  }
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
  state.vertex = -1;
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
  [...view.regions.children].forEach((li, i) => {
    if (state.page.regions[i]) li.querySelector(".shape").textContent = shapeText(state.page.regions[i]);
  });
}

const shapeText = (region) => (region.polygon ? `polygon · ${region.polygon.length} points` : "quad");

function undo() {
  if (!state.page || !state.undo.length) return;
  const previous = JSON.parse(state.undo.pop());
  state.page.regions = previous.regions;
  state.page.orientation = previous.orientation;
  state.page.conditions = previous.conditions;
  state.selected = Math.min(state.selected, state.page.regions.length - 1);
  state.vertex = -1;
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

function redraw() {
  if (!state.page) return;
  const unit = 1 / pixelsPerUnit(); // one screen pixel in image units
  view.shapes.replaceChildren();
  view.handles.replaceChildren();
  view.draft.replaceChildren();
  state.page.regions.forEach((region, i) => {
    const shape = region.polygon ? "outline" : "quad";
    const classes = `${shape} ${region.kind}${i === state.selected ? " selected" : ""}`;
    const polygon = svg("polygon", { class: classes, points: points(outlineOf(region)) });
    polygon.dataset.index = i;
    view.shapes.append(polygon);
    if (region.polygon && region.quad) view.shapes.append(svg("polygon", { class: "derived", points: points(region.quad) }));
    const [x, y] = outlineOf(region)[0];
    const label = svg("text", { class: "quad-label", x: x + 8 * unit, y: y - 4 * unit, "font-size": 16 * unit,
      "stroke-width": 3 * unit });
    label.textContent = String(i + 1);
    view.shapes.append(label);
  });
  if (state.selected >= 0) {
    const region = state.page.regions[state.selected];
    if (region.polygon) {
      const ring = region.polygon;
      ring.forEach(([x, y], vertex) => { // a midpoint handle on each edge: drag it to insert a vertex
        const [nx, ny] = ring[(vertex + 1) % ring.length];
        const mid = svg("circle", { class: "handle mid", cx: (x + nx) / 2, cy: (y + ny) / 2, r: 4 * unit });
        mid.dataset.after = vertex;
        view.handles.append(mid);
      });
      ring.forEach(([x, y], vertex) => {
        const handle = svg("circle", { class: `handle vertex${vertex === state.vertex ? " picked" : ""}`, cx: x, cy: y,
          r: 6 * unit });
        handle.dataset.vertex = vertex;
        view.handles.append(handle);
      });
    } else {
      region.quad.forEach(([x, y], corner) => {
        const handle = svg("circle", { class: "handle", cx: x, cy: y, r: 6 * unit });
        handle.dataset.corner = corner;
        view.handles.append(handle);
      });
    }
  }
  if (state.drawing) {
    const clicked = state.drawing.points;
    const closing = state.drawing.mode === "polygon" && clicked.length >= 3;
    view.draft.append(svg(closing ? "polygon" : "polyline", { class: "draft", points: points(clicked) }));
    clicked.forEach(([x, y], i) => {
      const first = i === 0 && closing; // click it (or press Enter) to close the polygon
      view.draft.append(svg("circle", { class: `handle${first ? " closer" : ""}`, cx: x, cy: y, r: (first ? 7 : 4) * unit }));
    });
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

function startDrawing(mode) {
  if (!state.page) return;
  state.drawing = { mode, points: [] };
  say(mode === "quad" ? "click 4 corners, clockwise from the formula's top-left (Esc cancels)"
    : "click around the formula; click the first point or press Enter to close (Backspace: undo a point, Esc cancels)");
  redraw();
}

const rounded = (point) => point.map((v) => Math.round(v * 100) / 100);

function addRegion(shape) {
  willChange();
  state.page.regions.push({ ...shape, latex: "", kind: defaultKind() });
  state.selected = state.page.regions.length - 1;
  state.vertex = -1;
  state.drawing = null;
  changed();
  renderPanel();
  say(shape.quad ? "quad added: type its LaTeX" : "polygon added (its quad is derived on save): type its LaTeX");
  view.regions.lastElementChild.querySelector(".latex").focus();
}

function closePolygon() {
  if (!state.drawing || state.drawing.mode !== "polygon") return;
  if (state.drawing.points.length < 3) {
    say("a polygon needs at least 3 points", true);
    return;
  }
  addRegion({ polygon: state.drawing.points });
}

// The polygon is about to change: its quad no longer fits it, and the server derives a new one on save.
function editPolygon(region) {
  delete region.quad;
}

function deleteVertex() {
  const region = state.page.regions[state.selected];
  if (!region || !region.polygon || state.vertex < 0) return false;
  if (region.polygon.length <= 3) {
    say("a polygon keeps at least 3 points; press d to delete the whole region", true);
    return true;
  }
  willChange();
  region.polygon.splice(state.vertex, 1);
  editPolygon(region);
  state.vertex = -1;
  changed();
  return true;
}

let drag = null; // {kind: "corner"|"vertex"|"move"|"pan", ...}; "vertex"/"move" record a change once moved

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
    if (target.classList.contains("closer")) {
      closePolygon();
      return;
    }
    state.drawing.points.push(rounded(toImage(event)));
    if (state.drawing.mode === "quad" && state.drawing.points.length === 4) addRegion({ quad: clockwise(state.drawing.points) });
    else redraw();
    return;
  }
  const region = state.page.regions[state.selected];
  if (target.dataset.corner !== undefined) {
    willChange();
    delete region.polygon; // an outline drawn for the old corners no longer fits
    drag = { kind: "corner", corner: Number(target.dataset.corner) };
    return;
  }
  if (target.dataset.vertex !== undefined) {
    state.vertex = Number(target.dataset.vertex);
    drag = { kind: "vertex", vertex: state.vertex, moved: false };
    redraw();
    return;
  }
  if (target.dataset.after !== undefined) { // insert a vertex on that edge and drag it
    willChange();
    state.vertex = Number(target.dataset.after) + 1;
    region.polygon.splice(state.vertex, 0, rounded(toImage(event)));
    editPolygon(region);
    drag = { kind: "vertex", vertex: state.vertex, moved: true };
    redraw();
    return;
  }
  if (target.dataset.index !== undefined) { // a region: select it; dragging it moves it whole
    select(Number(target.dataset.index));
    const picked = state.page.regions[state.selected];
    drag = { kind: "move", from: toImage(event), start: JSON.stringify(picked), moved: false };
    return;
  }
  select(-1);
  drag = { kind: "pan", from: [event.clientX, event.clientY], box: { ...state.box } };
});

window.addEventListener("mousemove", (event) => {
  if (!drag) return;
  const region = state.page.regions[state.selected];
  if (drag.kind === "corner") {
    region.quad[drag.corner] = rounded(toImage(event));
    redraw();
  } else if (drag.kind === "vertex") {
    if (!drag.moved) {
      willChange();
      editPolygon(region);
      drag.moved = true;
    }
    region.polygon[drag.vertex] = rounded(toImage(event));
    redraw();
  } else if (drag.kind === "move") {
    const [x, y] = toImage(event);
    const [dx, dy] = [x - drag.from[0], y - drag.from[1]];
    if (!drag.moved) willChange();
    drag.moved = true;
    const start = JSON.parse(drag.start);
    for (const key of ["quad", "polygon"]) {
      if (start[key]) region[key] = start[key].map(([px, py]) => rounded([px + dx, py + dy]));
    }
    redraw();
  } else {
    const scale = 1 / pixelsPerUnit();
    setBox({ ...drag.box, x: drag.box.x - (event.clientX - drag.from[0]) * scale,
      y: drag.box.y - (event.clientY - drag.from[1]) * scale });
  }
});

window.addEventListener("mouseup", () => {
  if (drag && (drag.kind === "corner" || drag.moved)) changed();
  drag = null;
});

function defaultKind() {
  const last = state.page.regions[state.page.regions.length - 1];
  return last ? last.kind : "printed";
}

function select(index) {
  if (index !== state.selected) state.vertex = -1;
  state.selected = index;
  redraw();
  [...view.regions.children].forEach((li, i) => li.classList.toggle("selected", i === index));
}

function deleteSelected() {
  if (!state.page || state.selected < 0) return;
  willChange();
  state.page.regions.splice(state.selected, 1);
  state.selected = -1;
  state.vertex = -1;
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
    li.querySelector(".shape").textContent = shapeText(region);
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
    state.page.regions = data.regions; // polygons drawn or edited come back with their derived quad
    state.dirty = false;
    state.openedAt = now;
    view.itemStatus.textContent = data.status;
    redraw();
    say(`saved · version ${data.version.slice(7, 19)}`);
    await loadList();
    return true;
  } catch (error) {
    say(`not saved: ${error.message}`, true);
    return false;
  }
}

// --- wiring ---

$("draw").addEventListener("click", () => startDrawing("quad"));
$("draw-polygon").addEventListener("click", () => startDrawing("polygon"));
$("delete").addEventListener("click", deleteSelected);
$("undo").addEventListener("click", undo);
$("fit").addEventListener("click", () => { fit(); redraw(); });
$("check").addEventListener("click", checkTex);
$("save").addEventListener("click", save);
$("next").addEventListener("click", () => step(1));
view.filter.addEventListener("change", loadList);
view.order.addEventListener("change", loadList);
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
  } else if (state.drawing && !typing && event.key === "Enter") {
    event.preventDefault();
    closePolygon();
  } else if (state.drawing && !typing && event.key === "Backspace") {
    event.preventDefault();
    state.drawing.points.pop();
    redraw();
  } else if (!typing && (event.key === "Delete" || event.key === "Backspace")) {
    event.preventDefault();
    if (state.page && !deleteVertex()) deleteSelected();
  } else if (!typing && !event.ctrlKey && !event.metaKey && !event.altKey) {
    const actions = {
      q: () => startDrawing("quad"), g: () => startDrawing("polygon"), d: deleteSelected, s: save,
      n: () => step(1), p: () => step(-1), f: () => { fit(); redraw(); },
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

// `/?item=N` (the review page's "edit" link) opens that item first.
function firstItem() {
  const wanted = new URLSearchParams(location.search).get("item");
  const found = state.list.find((item) => String(item.index) === wanted);
  return (found || state.list[0]).index;
}

loadChoices().then(loadList).then(() => (state.list.length ? openItem(firstItem()) : say("no items")))
  .catch((error) => say(error.message, true));
