"use strict";
// What the labeling page and the review page share: the JSON API, KaTeX, SVG nodes, item badges.

const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);

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

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

function badge(status) {
  const span = document.createElement("span");
  span.className = `badge ${status}`;
  span.textContent = status;
  return span;
}

const points = (shape) => shape.map((p) => p.join(",")).join(" ");

// The outline a region is seen as: the polygon drawn for it, else its quad.
const outlineOf = (region) => region.polygon || region.quad;

// The latest review of an item's history, or null.
function lastReview(history) {
  const reviews = (history || []).filter((event) => event.type === "review");
  return reviews.length ? reviews[reviews.length - 1] : null;
}
