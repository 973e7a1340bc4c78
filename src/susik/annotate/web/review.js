"use strict";
// The review page: walk the labeled items (filtered by status and annotator); for each, every saved region's
// upright crop (what the recognizer is trained on) beside its LaTeX rendered by KaTeX; accept or reject with a
// comment. The verdict, the comment and the dataset version it saw go to the item's history. Uses common.js.

const view = {
  items: $("items"), counts: $("counts"), status: $("filter-status"), annotator: $("filter-annotator"),
  reviewer: $("reviewer"), title: $("title"), itemStatus: $("item-status"), annotators: $("annotators"),
  edit: $("edit"), thumb: $("thumb"), photo: $("photo"), outlines: $("outlines"), rows: $("rows"),
  comment: $("comment"), history: $("history"), statusLine: $("status"),
};
const state = { list: [], item: null, openedAt: 0 };

function say(text, isError = false) {
  view.statusLine.textContent = text;
  view.statusLine.classList.toggle("error", isError);
}

async function loadList() {
  const query = new URLSearchParams();
  if (view.status.value) query.set("status", view.status.value);
  if (view.annotator.value) query.set("annotator", view.annotator.value);
  const data = await api("GET", `/api/items?${query}`);
  state.list = data.items;
  const chosen = view.annotator.value;
  view.annotator.replaceChildren(new Option("anyone", ""), ...data.annotators.map((name) => new Option(name, name)));
  view.annotator.value = data.annotators.includes(chosen) ? chosen : "";
  view.counts.textContent = Object.entries(data.counts).filter(([, n]) => n).map(([k, n]) => `${k} ${n}`).join(" · ");
  view.items.replaceChildren(...data.items.map((item) => {
    const li = document.createElement("li");
    li.dataset.index = item.index;
    li.textContent = item.image + (item.annotators.length ? ` · ${item.annotators.join(", ")}` : "");
    li.append(badge(item.status));
    li.addEventListener("click", () => openItem(item.index));
    return li;
  }));
  markCurrent();
}

function markCurrent() {
  for (const li of view.items.children) li.classList.toggle("current", state.item && Number(li.dataset.index) === state.item.index);
}

const plural = (n, noun) => `${n} ${noun}${n === 1 ? "" : "s"}`;

function describe(event) {
  const when = new Date(event.at * 1000).toLocaleString();
  const version = event.version ? ` · version ${event.version.slice(7, 19)}` : "";
  if (event.type === "review") {
    return `${when} · ${event.verdict} by ${event.annotator}${event.comment ? `: “${event.comment}”` : ""}${version}`;
  }
  if (event.type === "save") {
    return `${when} · saved by ${event.annotator} · ${plural(event.regions, "region")} · ${event.seconds || 0} s${version}`;
  }
  return `${when} · proposed by ${event.model_version} · ${plural(event.regions, "region")}`;
}

function renderItem(data) {
  view.title.textContent = data.image;
  view.itemStatus.replaceChildren(badge(data.status));
  view.annotators.textContent = data.annotators.length ? `labeled by ${data.annotators.join(", ")}` : "not saved in the app";
  view.history.replaceChildren(...data.history.map((event) => {
    const li = document.createElement("li");
    li.className = event.type + (event.verdict ? ` ${event.verdict}` : "");
    li.textContent = describe(event);
    return li;
  }));
}

async function openItem(index) {
  const data = await api("GET", `/api/items/${index}`);
  state.item = data;
  state.openedAt = performance.now();
  renderItem(data);
  view.edit.href = `/?item=${index}`;
  view.thumb.setAttribute("viewBox", `0 0 ${data.width} ${data.height}`);
  view.photo.setAttribute("href", `/api/items/${index}/image`);
  view.photo.setAttribute("width", data.width);
  view.photo.setAttribute("height", data.height);
  const box = view.thumb.getBoundingClientRect(); // one screen pixel in image units, so labels stay readable
  const unit = 1 / (Math.min(box.width / data.width, box.height / data.height) || 1);
  view.outlines.replaceChildren(...data.regions.flatMap((region, i) => {
    const label = svg("text", { class: "quad-label", x: outlineOf(region)[0][0], y: outlineOf(region)[0][1] - 2 * unit,
      "font-size": 14 * unit, "stroke-width": 3 * unit });
    label.textContent = String(i + 1);
    return [svg("polygon", { class: `quad ${region.kind}`, points: points(outlineOf(region)) }), label];
  }));
  const stamp = Date.now(); // the crops follow the labels, which may have been saved since
  view.rows.replaceChildren(...data.regions.map((region, i) => {
    const row = document.createElement("tr");
    const cells = [0, 1, 2, 3, 4].map(() => row.insertCell());
    cells[0].textContent = String(i + 1);
    const crop = document.createElement("img");
    crop.className = "crop";
    crop.alt = `region ${i + 1}`;
    crop.src = `/api/items/${index}/regions/${i}/crop?v=${stamp}`;
    cells[1].append(crop);
    cells[2].className = "rendered";
    renderMath(region.latex, cells[2]);
    const code = document.createElement("code");
    code.textContent = region.latex;
    cells[3].append(code);
    cells[4].textContent = region.kind + (region.polygon ? " · polygon" : "");
    return row;
  }));
  if (!data.regions.length) {
    const cell = view.rows.insertRow().insertCell();
    cell.colSpan = 5;
    cell.textContent = "no regions: accepting says this page has no formulas";
  }
  view.comment.value = "";
  markCurrent();
}

async function step(delta) {
  if (!state.list.length) return;
  const at = state.list.findIndex((item) => state.item && item.index === state.item.index);
  await openItem(state.list[(at + delta + state.list.length) % state.list.length].index);
}

async function decide(verdict) {
  if (!state.item) return;
  const reviewer = view.reviewer.value.trim();
  if (!reviewer) {
    say("type your name first (reviewer)", true);
    view.reviewer.focus();
    return;
  }
  const comment = view.comment.value.trim();
  if (verdict === "rejected" && !comment) {
    say("say what is wrong in the comment: the annotator reads it", true);
    view.comment.focus();
    return;
  }
  const { index, image } = state.item;
  try {
    const seconds = Math.round((performance.now() - state.openedAt) / 100) / 10;
    const data = await api("POST", `/api/items/${index}/review`, { reviewer, verdict, comment, seconds });
    const at = state.list.findIndex((item) => item.index === index);
    const following = new Set(state.list.slice(at + 1).map((item) => item.index));
    await loadList();
    // walk on: the next item of the old list still listed, else the first other one, else stay here
    const next = state.list.find((item) => following.has(item.index))
      || state.list.find((item) => item.index !== index);
    if (next) {
      await openItem(next.index);
    } else {
      renderItem({ ...state.item, status: data.status, history: data.history });
      view.comment.value = "";
    }
    say(`${image}: ${verdict}${next ? "" : " · nothing more to review here"}`);
  } catch (error) {
    say(error.message, true);
  }
}

$("accept").addEventListener("click", () => decide("accepted"));
$("reject").addEventListener("click", () => decide("rejected"));
$("next").addEventListener("click", () => step(1));
$("prev").addEventListener("click", () => step(-1));
async function refilter() {
  await loadList();
  if (state.list.length) await openItem(state.list[0].index);
  else say("nothing to review with these filters");
}
view.status.addEventListener("change", refilter);
view.annotator.addEventListener("change", refilter);
view.reviewer.value = localStorage.getItem("susik-reviewer") || localStorage.getItem("susik-annotator") || "";
view.reviewer.addEventListener("change", () => localStorage.setItem("susik-reviewer", view.reviewer.value.trim()));

document.addEventListener("keydown", (event) => {
  const typing = ["TEXTAREA", "INPUT", "SELECT"].includes(document.activeElement.tagName);
  if (event.key === "Escape") document.activeElement.blur();
  if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
  const actions = {
    a: () => decide("accepted"), x: () => decide("rejected"), n: () => step(1), p: () => step(-1),
    c: () => view.comment.focus(),
  };
  if (actions[event.key]) {
    event.preventDefault();
    actions[event.key]();
  }
});

refilter().catch((error) => say(error.message, true));
