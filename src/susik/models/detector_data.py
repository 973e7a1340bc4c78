"""Detector training data: a page cache made once with the composer, and training samples drawn from it.

Cache: `generate_pages` follows the dataset spec's page plan (kinds x conditions x formula counts), renders
printed formulas with TeX (corpus lines + generated K-12 formulas), takes handwritten ones from a crop
manifest (CROHME canvases cropped to their ink), composes photographed worksheet pages, downscales them to
`long_side`, and writes a page manifest (DESIGN.md format) + JPEGs. Page composition runs on `workers`
processes; the result depends only on the seed.

Samples: `PageSamples` turns a cached page into one training example: a random quarter turn (so every
orientation is equally common), a random scale and crop, light photometric jitter, and the targets at the
net's map stride: the shrunk kernel of each formula, an ignore mask, and a handwritten map with its mask.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from susik.data.geometry import rotate_quarter_points
from susik.runtime.detector import MAP_STRIDE, MEAN, STD, offset_polygon, shrink_distance

SYNTHETIC_PAGES = "susik-synth-pages"  # the `source` of every page `generate_pages` writes


class GenerateConfig(BaseModel):
    """How the page cache is made."""

    model_config = ConfigDict(extra="forbid")

    n: int = Field(3000, ge=1)
    seed: int = 0
    spec: Path = Path("specs/dataset.yaml")
    corpus: Path | None = Field(None, description="formula corpus (one LaTeX a line); None: K-12 generator only")
    generated_ratio: float = Field(0.5, ge=0, le=1, description="share of printed formulas from the generator")
    handwritten: Path | None = Field(None, description="crop manifest of handwritten formulas (e.g. CROHME)")
    long_side: int | None = Field(800, ge=64, description="downscale pages to this long side; None keeps them")
    jpeg_quality: int = Field(92, ge=50, le=100)
    workers: int = Field(2, ge=1)
    chunk: int = Field(20, ge=1, description="pages per task (one TeX run per font per task)")


# --- generating the cache ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Task:
    config: GenerateConfig
    index: int
    plans: tuple  # tuple[PagePlan, ...]
    first: int  # number of the task's first page
    out: Path
    licence: str  # license_note(config), read once for all tasks


def license_note(config: GenerateConfig) -> str:
    """A cached page's licence: every source its formulas may come from, each with its own licence (a crop cut
    from the page carries it into the recognizer's model card)."""
    from susik.data.synth import CORPUS_LICENSE, GENERATED_LICENSE

    generated = config.corpus is None or config.generated_ratio > 0
    from_corpus = config.corpus is not None and config.generated_ratio < 1
    printed = [GENERATED_LICENSE] * generated + [CORPUS_LICENSE] * from_corpus
    note = "synthetic pages; printed: " + "; ".join(printed)
    if config.handwritten is None:
        return note
    licences = set()
    for line in config.handwritten.read_text(encoding="utf-8").splitlines():
        if line.strip():
            licences.add(json.loads(line).get("license") or "licence not given")
    return f"{note}; handwriting from {config.handwritten.name}: {'; '.join(sorted(licences))}"


def _handwritten_pool(manifest: Path | None) -> list[tuple[Path, str]]:
    if manifest is None:
        return []
    folder = manifest.parent
    pool = []
    for line in manifest.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            pool.append((folder / record["image"], record["latex"]))
    return pool


def _compose_chunk(task: _Task) -> list[dict]:
    """Compose and write the pages of one task; returns their manifest records."""
    from susik.data.compose import FormulaCrop, PageComposer
    from susik.data.corpus import FormulaSource
    from susik.data.crops import restore_crohme
    from susik.data.render import TexRenderer
    from susik.latex.labels import split_typeset_label

    config = task.config
    rng = np.random.default_rng([config.seed, task.index])
    source = iter(FormulaSource(rng, config.corpus, config.generated_ratio if config.corpus else 1.0))
    pool = _handwritten_pool(config.handwritten)
    kinds_per_page = [_formula_kinds(plan, rng, bool(pool)) for plan in task.plans]
    wanted = sum(kind == "printed" for kinds in kinds_per_page for kind in kinds)
    # TeX rejects a few formulas: render spares so each page still gets its count. A leading answer-choice
    # label is drawn as text beside its formula, outside the region.
    drawn = [split_typeset_label(next(source).latex) for _ in range(wanted + wanted // 10 + 2)]
    rendered = TexRenderer().render([latex for _, latex in drawn], rng)
    printed = iter([(label, r) for (label, _), r in zip(drawn, rendered, strict=True) if r is not None])
    composer = PageComposer()
    records = []
    for offset, (plan, kinds) in enumerate(zip(task.plans, kinds_per_page, strict=True)):
        crops = []
        for kind in kinds:
            if kind == "printed":
                label, formula = next(printed, (None, None))
                if formula is not None:
                    crops.append(FormulaCrop(formula.image, formula.latex, "printed", label))
            else:
                path, latex = pool[int(rng.integers(len(pool)))]
                gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
                if gray is not None:
                    crops.append(FormulaCrop(_thicken(restore_crohme(gray), rng), latex, "handwritten"))
        if not crops:
            continue
        page = composer.compose(crops, rng, plan.conditions)
        name = f"images/{task.first + offset:06d}.jpg"
        image, regions = _downscale(page.image, page.regions, config.long_side)
        cv2.imwrite(str(task.out / name), image, [cv2.IMWRITE_JPEG_QUALITY, config.jpeg_quality])
        height, width = image.shape[:2]
        records.append({
            "image": name, "width": width, "height": height, "orientation": page.orientation,
            "regions": regions, "conditions": list(page.conditions) or ["clean"], "source": SYNTHETIC_PAGES,
            "license": task.licence,
        })
    return records


def _formula_kinds(plan, rng: np.random.Generator, have_handwriting: bool) -> list[str]:
    if plan.kind == "printed" or not have_handwriting:
        return ["printed"] * plan.n_formulas
    if plan.kind == "handwritten":
        return ["handwritten"] * plan.n_formulas
    kinds = ["printed", "handwritten"] + [str(rng.choice(["printed", "handwritten"])) for _ in range(plan.n_formulas - 2)]
    return [kinds[i] for i in rng.permutation(len(kinds))]


def _thicken(gray: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """CROHME strokes are 2-3 px on a 246-px canvas and vanish when the composer shrinks a formula to text
    size; a pen is thicker than that relative to the writing, so grow the ink by 0-2 px."""
    grow = int(rng.integers(0, 3))
    if grow == 0:
        return gray
    return cv2.erode(gray, np.ones((grow + 1, grow + 1), np.uint8))


def _downscale(image: np.ndarray, regions, long_side: int | None) -> tuple[np.ndarray, list[dict]]:
    height, width = image.shape[:2]
    scale = 1.0 if long_side is None else min(1.0, long_side / max(height, width))
    if scale < 1.0:
        image = cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)

    def move(points: np.ndarray) -> list[list[float]]:
        return np.round((np.asarray(points) + 0.5) * scale - 0.5, 2).tolist()

    return image, [
        {"quad": move(r.quad), "polygon": move(r.polygon), "latex": r.latex, "kind": r.kind} for r in regions
    ]


def generate_pages(config: GenerateConfig, out: Path, on_page: Callable[[int], None] | None = None) -> Path:
    """Write `out`/manifest.jsonl and `out`/images/*.jpg; returns the manifest path."""
    from susik.spec.dataset import load_spec, plan_pages

    spec = load_spec(config.spec)
    plans = plan_pages(spec.pages, config.n, np.random.default_rng([config.seed, 1 << 20]))
    (out / "images").mkdir(parents=True, exist_ok=True)
    licence = license_note(config)
    tasks = [
        _Task(config, index, tuple(plans[start : start + config.chunk]), start, out, licence)
        for index, start in enumerate(range(0, len(plans), config.chunk))
    ]
    manifest = out / "manifest.jsonl"
    with manifest.open("w", encoding="utf-8") as handle:
        for records in _map(tasks, config.workers):
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            if on_page is not None:
                on_page(len(records))
    return manifest


def _map(tasks: list[_Task], workers: int) -> Iterator[list[dict]]:
    if workers <= 1:
        yield from map(_compose_chunk, tasks)
        return
    # spawn: a forked child would inherit the parent's torch/OpenMP threads in a broken state
    with get_context("spawn").Pool(workers) as pool:
        yield from pool.imap(_compose_chunk, tasks)


# --- training samples ----------------------------------------------------------------------------------


class SampleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    size: int = Field(416, ge=64, description="square training crop (a multiple of 32)")
    scale: tuple[float, float] = Field((0.7, 1.0), description="page rescale range before cropping")
    # A student photographs one problem from close by: its text is two or three times the size it has on a
    # whole-page photo, and a detector that never saw text that large took Korean words for formulas.
    zoom_share: float = Field(0.0, ge=0, le=1, description="pages rescaled within `zoom` instead of `scale`")
    zoom: tuple[float, float] = Field((1.6, 3.2), description="rescale range of a close-up (zoomed) page")
    # A photo of one formula alone fills the frame with it: at a close-up's letter size the net split or missed
    # it (`benchmarks/bench_closeups.py`, filling the frame), having only seen formulas among a page's text.
    alone_share: float = Field(0.0, ge=0, le=1, description="samples cut around one formula, a little paper "
                               "around it (`alone_margin` line heights), scaled to fill `alone_fill` of the crop")
    alone_margin: tuple[float, float] = Field((0.2, 1.0), description="paper around the formula, line heights")
    alone_fill: tuple[float, float] = Field((0.5, 1.0), description="the window's long side / the crop's size")
    quarter_turn_share: float = Field(0.6, ge=0, le=1, description="pages given an extra random quarter turn")
    # Pages are filled from the top and formulas cover a few percent of them: a uniform crop often holds
    # none, and the kernel head learned nothing in 175 steps that way (measured). Most crops hold one.
    focus_share: float = Field(0.8, ge=0, le=1, description="crops placed so a random formula is inside")
    gray_share: float = Field(0.1, ge=0, le=1)
    shrink: float = Field(0.5, gt=0, lt=1)


@dataclass(frozen=True)
class PageRecord:
    image: bytes  # the encoded JPEG, decoded per sample (keeps thousands of pages in little memory)
    orientation: int
    polygons: tuple[np.ndarray, ...]
    handwritten: tuple[bool, ...]


@dataclass(frozen=True)
class Sample:
    image: np.ndarray  # (3, S, S) float32, normalised
    kernel: np.ndarray  # (S/2, S/2) float32 0/1
    kernel_mask: np.ndarray  # (S/2, S/2) float32: 0 where a formula too small to shrink is ignored
    handwritten: np.ndarray  # (S/2, S/2) float32 0/1
    kind_mask: np.ndarray  # (S/2, S/2) float32: 1 inside formulas
    ends: np.ndarray  # (S/2, S/2) float32: 1 near a formula's two ends (see `end_zones`)
    starts: np.ndarray  # (S/2, S/2) float32: 1 where a printed formula starts (see `draw_targets`)
    orientation: int  # class index 0..3


def read_pages(manifest: Path, limit: int | None = None) -> list[PageRecord]:
    folder = manifest.parent
    pages = []
    for line in manifest.read_text(encoding="utf-8").splitlines()[:limit]:
        if not line.strip():
            continue
        record = json.loads(line)
        pages.append(PageRecord(
            image=(folder / record["image"]).read_bytes(),
            orientation=int(record["orientation"]),
            polygons=tuple(np.asarray(r["polygon"] or r["quad"], dtype=np.float64) for r in record["regions"]),
            handwritten=tuple(r["kind"] == "handwritten" for r in record["regions"]),
        ))
    return pages


def make_sample(page: PageRecord, config: SampleConfig, rng: np.random.Generator) -> Sample:
    image = cv2.imdecode(np.frombuffer(page.image, np.uint8), cv2.IMREAD_COLOR)
    polygons = list(page.polygons)
    orientation = page.orientation
    if rng.random() < config.quarter_turn_share:
        turns = int(rng.integers(1, 4))
        height, width = image.shape[:2]
        polygons = [rotate_quarter_points(p, width, height, turns) for p in polygons]
        image = np.ascontiguousarray(np.rot90(image, k=-turns))  # k < 0: clockwise, as the points
        orientation = (orientation + 90 * turns) % 360
    alone = config.alone_share > 0 and bool(polygons) and rng.random() < config.alone_share  # no draw at 0
    visible = None
    if alone:
        canvas, polygons, visible = _alone(image, polygons, config, rng)
    else:
        canvas, polygons = _page_window(image, polygons, config, rng)
    canvas = _jitter(canvas, config, rng)
    targets = draw_targets(polygons, page.handwritten, config.size, config.shrink)
    if visible is not None:  # a neighbour cut by the window ends at its edge, not on the grey around it
        targets = _only_inside(targets, visible)
    tensor = ((canvas.astype(np.float32) / 255 - MEAN) / STD).transpose(2, 0, 1)
    return Sample(tensor, *targets, orientation // 90)


def _page_window(image: np.ndarray, polygons: list[np.ndarray], config: SampleConfig,
                 rng: np.random.Generator) -> tuple[np.ndarray, list[np.ndarray]]:
    """The page rescaled (a close-up's zoom or the usual range) and a crop of it, mostly around a formula."""
    zoomed = config.zoom_share > 0 and rng.random() < config.zoom_share  # no draw at 0: older runs replay
    scale = float(rng.uniform(*(config.zoom if zoomed else config.scale)))
    height, width = image.shape[:2]
    image = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))),
                       interpolation=cv2.INTER_AREA)
    polygons = [(p + 0.5) * scale - 0.5 for p in polygons]
    focus = None
    if polygons and rng.random() < config.focus_share:
        focus = polygons[int(rng.integers(len(polygons)))].mean(axis=0)
    canvas, offset = _random_crop(image, config.size, rng, focus)
    return canvas, [p - offset for p in polygons]


def _alone(image: np.ndarray, polygons: list[np.ndarray], config: SampleConfig,
           rng: np.random.Generator) -> tuple[np.ndarray, list[np.ndarray], tuple[int, int, int, int]]:
    """One formula's box with `alone_margin` line heights of the page around it, scaled so its long side is
    `alone_fill` of the crop, at a random place on a flat grey canvas: a photo of that formula alone. Also
    the window's place on the canvas (x0, y0, x1, y1)."""
    chosen = polygons[int(rng.integers(len(polygons)))]
    line_height = min(cv2.minAreaRect(chosen.astype(np.float32))[1])
    margin = float(rng.uniform(*config.alone_margin)) * max(line_height, 1.0)
    height, width = image.shape[:2]
    x0, y0 = np.maximum(np.floor(chosen.min(axis=0) - margin), 0).astype(int)
    x1, y1 = np.minimum(np.ceil(chosen.max(axis=0) + margin) + 1, (width, height)).astype(int)
    window = image[y0:y1, x0:x1]
    scale = float(rng.uniform(*config.alone_fill)) * config.size / max(window.shape[:2])
    size = (max(1, min(config.size, round(window.shape[1] * scale))),
            max(1, min(config.size, round(window.shape[0] * scale))))
    scaled = cv2.resize(window, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    canvas = np.full((config.size, config.size, 3), int(rng.integers(40, 220)), np.uint8)
    left = int(rng.integers(0, config.size - size[0] + 1))
    top = int(rng.integers(0, config.size - size[1] + 1))
    canvas[top : top + size[1], left : left + size[0]] = scaled
    factors = np.array([size[0] / window.shape[1], size[1] / window.shape[0]])
    moved = [(p - (x0, y0) + 0.5) * factors - 0.5 + (left, top) for p in polygons]
    return canvas, moved, (left, top, left + size[0], top + size[1])


def _only_inside(targets: tuple[np.ndarray, ...], box: tuple[int, int, int, int]) -> tuple[np.ndarray, ...]:
    """Targets (kernel, kernel mask, handwritten, kind mask, ends, starts) zeroed outside `box` (input pixels),
    the kernel mask left whole: the grey around a window is no formula, and says so."""
    x0, y0, x1, y1 = box
    inside = np.zeros_like(targets[0])
    inside[y0 // MAP_STRIDE : -(-y1 // MAP_STRIDE), x0 // MAP_STRIDE : -(-x1 // MAP_STRIDE)] = 1
    return tuple(t if index == 1 else t * inside for index, t in enumerate(targets))


def _random_crop(image: np.ndarray, size: int, rng: np.random.Generator,
                 focus: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A size x size window (padded with a flat grey where the page is smaller) and the page point at its
    top-left; with `focus`, the window holds that point (away from its border by an eighth of the size)."""
    height, width = image.shape[:2]
    low_x, high_x = min(0, width - size), max(0, width - size)
    low_y, high_y = min(0, height - size), max(0, height - size)
    if focus is not None:
        margin = size // 8
        low_x, high_x = max(low_x, int(focus[0]) - size + margin), min(high_x, int(focus[0]) - margin)
        low_y, high_y = max(low_y, int(focus[1]) - size + margin), min(high_y, int(focus[1]) - margin)
        low_x, low_y = min(low_x, high_x), min(low_y, high_y)
    x0 = int(rng.integers(low_x, high_x + 1))
    y0 = int(rng.integers(low_y, high_y + 1))
    canvas = np.full((size, size, 3), int(rng.integers(40, 220)), np.uint8)
    src_x, src_y = max(0, x0), max(0, y0)
    dst_x, dst_y = src_x - x0, src_y - y0
    w, h = min(width - src_x, size - dst_x), min(height - src_y, size - dst_y)
    canvas[dst_y : dst_y + h, dst_x : dst_x + w] = image[src_y : src_y + h, src_x : src_x + w]
    return canvas, np.array([x0, y0], dtype=np.float64)


def _jitter(image: np.ndarray, config: SampleConfig, rng: np.random.Generator) -> np.ndarray:
    if rng.random() < config.gray_share:
        image = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    gain, lift = rng.uniform(0.8, 1.15), rng.uniform(-20, 20)
    return np.clip(image.astype(np.float32) * gain + lift, 0, 255).astype(np.uint8)


def end_zones(polygon: np.ndarray, inside: float = 1.0) -> list[np.ndarray]:
    """The two rectangles where a formula starts and ends, the start first: along its length from `inside`
    line heights inside each end to half a line height past it, across its whole height. A formula's first or
    last glyph (a leading minus, an italic letter beside the text) is where the detector most often cuts short
    or runs on. The start is the end nearer the polygon's first point (regions list their points in reading
    order from the top-left)."""
    rect = cv2.minAreaRect(np.asarray(polygon, np.float32))
    corners = cv2.boxPoints(rect).astype(np.float64)
    sides = [corners[1] - corners[0], corners[2] - corners[1]]
    long_side, short_side = sorted(sides, key=lambda side: -float(np.linalg.norm(side)))
    w, h = float(np.linalg.norm(long_side)), float(np.linalg.norm(short_side))
    if h <= 0:
        return []
    along, across = long_side / w, short_side / h
    center = corners.mean(axis=0)
    if float((np.asarray(polygon[0], np.float64) - center) @ along) > 0:
        along = -along  # point from the start towards the end
    inner, outer = max(0.0, w / 2 - inside * h), w / 2 + h / 2
    zones = []
    for sign in (-1.0, 1.0):
        start, stop = center + sign * inner * along, center + sign * outer * along
        zones.append(np.array([start - across * h / 2, stop - across * h / 2,
                               stop + across * h / 2, start + across * h / 2]))
    return zones


# How far into a printed formula its start zone reaches, in line heights: a late start most often loses a
# leading word (`\sin`, `\log`) or number (`10`), up to 1.3 line heights long on the tuning pages.
START_REACH = 2.0


def draw_targets(
    polygons: list[np.ndarray], handwritten: tuple[bool, ...], size: int, shrink: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Kernel, kernel mask, handwritten, kind mask, end-zone and printed-start-zone maps (size/2 square) for
    polygons in input pixels."""
    side = size // MAP_STRIDE
    kernel = np.zeros((side, side), np.float32)
    kernel_mask = np.ones((side, side), np.float32)
    hand = np.zeros((side, side), np.float32)
    kind_mask = np.zeros((side, side), np.float32)
    ends = np.zeros((side, side), np.float32)
    starts = np.zeros((side, side), np.float32)

    def to_map(points: np.ndarray) -> np.ndarray:
        # input pixel-centre coords -> map pixel-centre coords, in 1/16 px for cv2's sub-pixel fill
        return np.round(((points + 0.5) / MAP_STRIDE - 0.5) * 16).astype(np.int32)

    for polygon, is_hand in zip(polygons, handwritten, strict=True):
        outline = to_map(polygon)
        cv2.fillPoly(kind_mask, [outline], 1.0, cv2.LINE_8, 4)
        for zone in end_zones(polygon):  # one call each: a single call would XOR where the two overlap
            cv2.fillPoly(ends, [to_map(zone)], 1.0, cv2.LINE_8, 4)
        if is_hand:
            cv2.fillPoly(hand, [outline], 1.0, cv2.LINE_8, 4)
        else:
            for zone in end_zones(polygon, START_REACH)[:1]:
                cv2.fillPoly(starts, [to_map(zone)], 1.0, cv2.LINE_8, 4)
        inner = offset_polygon(polygon, -shrink_distance(polygon, shrink))
        if inner is None or len(inner) < 3:
            cv2.fillPoly(kernel_mask, [outline], 0.0, cv2.LINE_8, 4)
            continue
        cv2.fillPoly(kernel, [to_map(inner)], 1.0, cv2.LINE_8, 4)
    return kernel, kernel_mask, hand, kind_mask, ends, starts
