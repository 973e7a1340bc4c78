"""The qualitative report: one self-contained folder (report.html, katex/, plots/) that opens offline.

Each sample shows its image, the ground truth and the prediction rendered side by side with KaTeX (copied
from node_modules/katex/dist into the folder), and the token diff; worst errors come first. Then the
per-slice tables with intervals and baselines, and plots of error against length and condition.
"""

from __future__ import annotations

import base64
import difflib
import html
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from susik.data.manifest import PageSample
from susik.eval.detection import PageScore
from susik.eval.evaluate import DETECT_KEYS, RECOGNIZE_KEYS, Evaluation, Scored
from susik.eval.metrics import SampleScore
from susik.eval.plots import reliability_plot, slice_plot
from susik.latex import normalize
from susik.results import Quad

REPO_ROOT = Path(__file__).resolve().parents[3]
LOWER_IS_BETTER = {"cer", "norm_edit_distance"}

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:3px 7px;font-size:13px;text-align:right;vertical-align:middle}
th{background:#f3f3f3} td.l{text-align:left}
.ci{color:#777;font-size:11px} .base{color:#999;font-size:11px}
.sample{display:grid;grid-template-columns:minmax(120px,1fr) 1fr 1fr;gap:10px;align-items:center;
  border-top:1px solid #ddd;padding:8px 0}
.sample img{max-width:100%;max-height:110px;border:1px solid #eee}
.sample.page .cell{grid-column:1/4} .sample.page img{max-height:480px}
.cell h4{margin:0 0 4px;font-size:11px;color:#888;font-weight:normal;text-transform:uppercase}
.tex{font-size:1.15em;min-height:1.5em;overflow-x:auto}
.diff{grid-column:1/4;font-family:monospace;font-size:12px;color:#444}
del{background:#fdd;color:#a00} ins{background:#dfd;color:#060;text-decoration:none}
.meta{grid-column:1/4;font-size:11px;color:#888}
.ok{color:#070} .bad{color:#b00}
"""

_RENDER = """
document.querySelectorAll('.tex').forEach(function (el) {
  if (!window.katex) { el.textContent = el.dataset.latex; return; }
  try { katex.render(el.dataset.latex, el, {displayMode: true, throwOnError: false}); }
  catch (e) { el.textContent = el.dataset.latex; }
});
"""


def find_katex(explicit: Path | None = None) -> Path | None:
    """KaTeX's dist folder (installed by `npm ci` at set-up); None if it is not installed."""
    candidates = [explicit] if explicit else [Path.cwd() / "node_modules/katex/dist", REPO_ROOT / "node_modules/katex/dist"]
    return next((path for path in candidates if path and (path / "katex.min.js").is_file()), None)


def _copy_katex(source: Path | None, out: Path) -> bool:
    if source is None:
        return False
    target = out / "katex"
    target.mkdir(parents=True, exist_ok=True)
    for name in ("katex.min.js", "katex.min.css"):
        shutil.copy2(source / name, target / name)
    shutil.copytree(source / "fonts", target / "fonts", dirs_exist_ok=True)
    return True


# --- pieces ---------------------------------------------------------------------------------------------


def token_diff(reference: Sequence[str], prediction: Sequence[str]) -> str:
    """HTML of the edit from reference to prediction: missing tokens struck out, extra tokens inserted."""
    parts: list[str] = []
    matcher = difflib.SequenceMatcher(None, list(reference), list(prediction), autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            parts.append(html.escape(" ".join(reference[i1:i2])))
            continue
        if i2 > i1:
            parts.append(f"<del>{html.escape(' '.join(reference[i1:i2]))}</del>")
        if j2 > j1:
            parts.append(f"<ins>{html.escape(' '.join(prediction[j1:j2]))}</ins>")
    return " ".join(parts) or "<i>(both empty)</i>"


def _data_uri(image: np.ndarray, max_side: int) -> str:
    scale = min(1.0, max_side / max(image.shape[:2]))
    if scale < 1.0:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return "data:image/jpeg;base64," + base64.b64encode(encoded.tobytes()).decode("ascii") if ok else ""


def _load(path: Path) -> np.ndarray | None:
    from susik.runtime.image_io import ImageLoadError, load_image

    try:
        return load_image(path)
    except ImageLoadError:
        return None


def _tex(latex: str) -> str:
    if not latex.strip():
        return '<div class="tex-empty"><i>(empty)</i></div>'
    return f'<div class="tex" data-latex="{html.escape(latex, quote=True)}"></div>'


def _img(uri: str, alt: str) -> str:
    return f'<img src="{uri}" alt="{html.escape(alt)}">' if uri else '<i>(image unreadable)</i>'


def _number(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else html.escape(str(value))


def metrics_table(blocks: dict[str, dict[str, Any]], keys: Sequence[str], first: str) -> str:
    """Rows = named blocks (whole set or slice values); each score with its interval and the baselines."""
    baseline_names = list(next(iter(blocks.values())).get("baselines", {}))
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    rows = []
    for name, block in blocks.items():
        cells = [f'<td class="l">{html.escape(name)}</td>']
        for key in keys:
            cell = _number(block[key])
            if key in block.get("ci", {}):
                low, high = block["ci"][key]
                cell += f'<br><span class="ci">[{low:.3f}, {high:.3f}]</span>'
            for base in baseline_names if key != "n" else ():
                cell += f'<br><span class="base">{base}: {_number(block["baselines"][base][key])}</span>'
            cells.append(f"<td>{cell}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table><tr><th class="l">{html.escape(first)}</th>{head}</tr>{"".join(rows)}</table>'


def _sample_html(item: Scored) -> str:
    score = item.score
    assert isinstance(score, SampleScore)
    image = _load(item.image)
    prediction = item.prediction.get("latex", "")
    status = "ok" if score.exact else "bad"
    error = f" — error: {html.escape(item.prediction['error'])}" if "error" in item.prediction else ""
    slices = "; ".join(f"{k}={','.join(v)}" for k, v in item.slices.items())
    return (
        f'<div class="sample" id="s{item.index}">'
        f'<div class="cell"><h4>image #{item.index + 1}</h4>{_img(_data_uri(image, 600) if image is not None else "", item.sample.image)}</div>'
        f'<div class="cell gt"><h4>ground truth</h4>{_tex(item.sample.latex)}</div>'  # type: ignore[union-attr]
        f'<div class="cell pred"><h4>prediction</h4>{_tex(prediction)}</div>'
        f'<div class="diff">{token_diff(score.reference, score.prediction)}</div>'
        f'<div class="meta"><span class="{status}">{score.token_distance} token edits</span>, normalised '
        f'{score.norm_distance:.3f}{error} · {html.escape(item.sample.image)} · {html.escape(slices)}</div></div>'
    )


def _page_html(item: Scored) -> str:
    from susik.pipeline import rectify

    score = item.score
    sample = item.sample
    assert isinstance(score, PageScore) and isinstance(sample, PageSample)
    image = _load(item.image)
    predicted = item.prediction.get("regions", [])
    parts = []
    if image is not None:
        overlay = image.copy()
        thickness = max(2, round(max(overlay.shape[:2]) / 400))
        for region in sample.regions:
            points = np.asarray(region.polygon or region.quad, np.int32)
            cv2.polylines(overlay, [points], True, (0, 160, 0), thickness)
        for region in predicted:
            points = np.asarray(region.get("polygon") or region["quad"], np.int32)
            cv2.polylines(overlay, [points], True, (0, 0, 220), thickness)
        parts.append(
            f'<div class="sample page"><div class="cell"><h4>page #{item.index + 1}: truth green, '
            f'prediction red</h4>{_img(_data_uri(overlay, 900), sample.image)}</div>'
            f'<div class="meta">{score.matched}/{score.truths} found, {score.exact} exact, {score.predictions} '
            f'predicted · {html.escape(sample.image)}</div></div>'
        )
    for region, match in zip(sample.regions, score.match_of_truth):
        crop = rectify(image, Quad(region.quad)) if image is not None else None
        guess = predicted[match].get("latex", "") if match is not None else ""
        reference, prediction = normalize(region.latex), normalize(guess)
        label = "missed" if match is None else ("exact" if reference == prediction else "misread")
        parts.append(
            f'<div class="sample"><div class="cell"><h4>region ({label})</h4>'
            f'{_img(_data_uri(crop, 600) if crop is not None else "", "region")}</div>'
            f'<div class="cell gt"><h4>ground truth</h4>{_tex(region.latex)}</div>'
            f'<div class="cell pred"><h4>prediction</h4>{_tex(guess) if match is not None else "<i>not detected</i>"}</div>'
            f'<div class="diff">{token_diff(reference, prediction)}</div></div>'
        )
    return "".join(parts)


def _badness(item: Scored) -> tuple[float, ...]:
    score = item.score
    if isinstance(score, SampleScore):
        return (score.norm_distance, score.token_distance)
    wrong = (score.truths - score.exact) + (score.predictions - score.exact)
    return (wrong / max(1, score.truths + score.predictions), wrong)


# --- the report -----------------------------------------------------------------------------------------


def _plots(evaluation: Evaluation, out: Path) -> list[str]:
    slices = evaluation.metrics.get("slices", {})
    if evaluation.task == "recognize":
        wanted = [("length", "norm_edit_distance", "normalised edit distance", "error vs formula length (tokens)"),
                  ("condition", "norm_edit_distance", "normalised edit distance", "error vs condition"),
                  ("structure", "exp_rate", "ExpRate", "exact match vs structure")]
    else:
        wanted = [("condition", "e2e_exact", "end-to-end exact F1", "end-to-end vs condition"),
                  ("regions", "f1", "detection F1", "detection vs formulas per page")]
    (out / "plots").mkdir(exist_ok=True)
    names = []
    for field, metric, label, title in wanted:
        if field in slices:
            path = slice_plot(slices[field], metric, label, out / "plots" / f"{metric}_by_{field}.png", title)
            names.append(f"plots/{path.name}")
    confidence = evaluation.metrics.get("confidence")
    if confidence and confidence.get("reliability"):
        path = reliability_plot(confidence["reliability"], out / "plots" / "reliability.png",
                                f"reliability (ECE {confidence['ece']:.3f})")
        names.append(f"plots/{path.name}")
    return names


def write_report(evaluation: Evaluation, out: Path, *, title: str, limit: int = 200, katex: Path | None = None) -> Path:
    """DIR/report.html (+ katex/, plots/). Shows the `limit` worst samples, worst first."""
    out.mkdir(parents=True, exist_ok=True)
    has_katex = _copy_katex(find_katex(katex), out)
    keys = RECOGNIZE_KEYS if evaluation.task == "recognize" else DETECT_KEYS
    metrics = evaluation.metrics
    ordered = sorted(evaluation.scored, key=_badness, reverse=True)[:limit]
    render = _sample_html if evaluation.task == "recognize" else _page_html
    slices = "".join(
        f"<h3>by {html.escape(field)}</h3>" + metrics_table(values, keys, field)
        for field, values in metrics.get("slices", {}).items()
    )
    plots = "".join(f'<img src="{name}" alt="{name}" style="margin:4px">' for name in _plots(evaluation, out))
    run = metrics.get("run", {})
    head = (
        '<link rel="stylesheet" href="katex/katex.min.css"><script src="katex/katex.min.js"></script>'
        if has_katex else ""
    )
    shown = f"{len(ordered)} of {len(evaluation.scored)}"
    body = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>{head}
<style>{_STYLE}</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="meta">{html.escape(json.dumps(run, ensure_ascii=False))}</p>
{'' if has_katex else '<p class="bad">KaTeX not found (run npm ci): formulas are shown as source.</p>'}
<h2>Scores</h2><p>95% bootstrap intervals in brackets; dumb baselines on the same samples beneath each score.</p>
{metrics_table({"all": metrics}, keys, "set")}
<h2>Plots</h2>{plots}
<h2>Slices</h2>{slices}
<h2>Samples, worst first ({shown})</h2>
{''.join(render(item) for item in ordered)}
<script>{_RENDER}</script></body></html>"""
    path = out / "report.html"
    path.write_text(body, encoding="utf-8")
    return path
