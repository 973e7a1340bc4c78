"""`susik synth`: synthetic worksheet photos following the dataset spec's proportions.

Pages are made in fixed-size chunks on a process pool. A chunk's formulas, fonts and degradations come from
`default_rng([seed, chunk])`, so the output depends on the seed alone, not on the number of workers.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from susik.data.compose import ComposedPage, FormulaCrop, PageComposer
from susik.data.crop_augment import elastic
from susik.data.corpus import FormulaSource
from susik.latex.labels import split_typeset_label
from susik.data.crops import CropDataset, restore_crohme
from susik.data.manifest import ManifestWriter, PageSample
from susik.data.render import RenderConfig, TexRenderer
from susik.spec.dataset import PagePlan, PageSpec, plan_pages

GENERATED_LICENSE = "Apache-2.0 (susik synthetic; formulas from the built-in K-12 generator)"
CORPUS_LICENSE = "formula text from the shared corpus: unknown licence, research use"
PSEUDO_HANDWRITING = "susik-pseudo-handwriting"


class SynthConfig(BaseModel):
    """What `susik synth` draws from, besides the spec."""

    model_config = ConfigDict(extra="forbid")

    corpus: Path | None = None  # a formula-per-line text file mixed with the built-in generator
    generated_ratio: float = Field(1.0, ge=0, le=1)  # share of generated formulas when a corpus is given
    handwritten: Path | None = None  # a crop manifest of real handwriting (e.g. an imported CROHME set)
    handwritten_license: str = "see the handwriting manifest"
    chunk_pages: int = Field(8, ge=1)  # pages per work unit: one TeX run renders a chunk's formulas
    jpeg_quality: int = Field(92, ge=50, le=100)


@dataclass(frozen=True)
class ChunkResult:
    pages: list[tuple[ComposedPage, str, str]]  # page, source, license
    render_failures: int


def _pseudo_handwriting(gray: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Printed ink made to wobble like a pen: a smooth random displacement field and a varied stroke width.

    Used for handwritten regions when no real handwriting is given, so a fresh install still makes every
    kind of page; the region's source says so.
    """
    amplitude = max(gray.shape[0], 24) / 10 * 0.35
    warped = elastic(gray, rng, amplitude, replicate=True, cell=12)  # the crop's white margin fills the edges
    kernel = np.ones((2, 2), np.uint8)
    return cv2.erode(warped, kernel) if rng.random() < 0.5 else warped


class _ChunkMaker:
    """Lives in one worker process: renders and composes whole chunks."""

    def __init__(self, config: SynthConfig, render: RenderConfig) -> None:
        self.config = config
        self.renderer = TexRenderer(render)
        self.composer = PageComposer()
        self.handwriting = CropDataset(config.handwritten) if config.handwritten else None

    def make(self, plans: Sequence[PagePlan], seed: int, chunk: int) -> ChunkResult:
        rng = np.random.default_rng([seed, chunk])
        source = FormulaSource(rng, self.config.corpus, self.config.generated_ratio if self.config.corpus else 1.0)
        kinds = [_region_kinds(plan, rng) for plan in plans]
        drawn = source.take(sum(len(k) for k in kinds) + 8)  # a few spares replace formulas TeX rejects
        # A leading answer-choice label ("C.", "(1)") is drawn as text beside its formula, outside the region.
        split = [split_typeset_label(f.latex) for f in drawn]
        rendered = self.renderer.render([latex for _, latex in split], rng)
        usable = [(f, label, r) for f, (label, _), r in zip(drawn, split, rendered, strict=True)
                  if r is not None]
        failures = len(drawn) - len(usable)
        pages = []
        for plan, page_kinds in zip(plans, kinds):
            crops, origins = [], set()
            for kind in page_kinds:
                if not usable:
                    break
                formula, label, render = usable.pop()
                crops.append(self._crop(render.image, render.latex, label, kind, rng, origins))
                origins.add(formula.source)
            page = self.composer.compose(crops, rng, plan.conditions)
            pages.append((page, *self._provenance(origins)))
        return ChunkResult(pages, failures)

    def _crop(self, printed: np.ndarray, latex: str, label: str | None, kind: str, rng,
              origins: set[str]) -> FormulaCrop:
        if kind == "printed":
            return FormulaCrop(printed, latex, "printed", label)
        if self.handwriting is not None and len(self.handwriting):
            image, written = self.handwriting[int(rng.integers(len(self.handwriting)))]
            origins.add("handwriting")
            return FormulaCrop(restore_crohme(image), written, "handwritten")
        origins.add(PSEUDO_HANDWRITING)
        return FormulaCrop(_pseudo_handwriting(printed, rng), latex, "handwritten")

    def _provenance(self, origins: set[str]) -> tuple[str, str]:
        licences = [GENERATED_LICENSE]
        if "corpus" in origins:
            licences.append(CORPUS_LICENSE)
        if "handwriting" in origins:
            licences.append(f"handwriting: {self.config.handwritten_license}")
        source = "susik-synth" + (f"+{PSEUDO_HANDWRITING}" if PSEUDO_HANDWRITING in origins else "")
        return source, "; ".join(licences)


def _region_kinds(plan: PagePlan, rng: np.random.Generator) -> list[str]:
    if plan.kind != "mixed":
        return [plan.kind] * plan.n_formulas
    kinds = ["printed", "handwritten"] + [str(rng.choice(["printed", "handwritten"]))
                                          for _ in range(plan.n_formulas - 2)]
    rng.shuffle(kinds)
    return kinds


_MAKER: _ChunkMaker | None = None


def _init_worker(config: SynthConfig, render: RenderConfig) -> None:
    global _MAKER  # one renderer per worker process, built once
    cv2.setNumThreads(1)
    _MAKER = _ChunkMaker(config, render)


def _make_chunk(plans: Sequence[PagePlan], seed: int, chunk: int) -> ChunkResult:
    assert _MAKER is not None
    return _MAKER.make(plans, seed, chunk)


def synthesize(spec: PageSpec, n: int, seed: int, config: SynthConfig, render: RenderConfig | None = None,
               workers: int | None = None) -> Iterator[ChunkResult]:
    """Chunks of composed pages in plan order, made on `workers` processes (default: all cores)."""
    render = render or RenderConfig()
    plans = plan_pages(spec, n, np.random.default_rng(seed))
    chunks = [plans[i : i + config.chunk_pages] for i in range(0, len(plans), config.chunk_pages)]
    workers = max(1, min(workers or os.cpu_count() or 1, len(chunks)))
    if workers == 1:
        _init_worker(config, render)
        for index, chunk in enumerate(chunks):
            yield _make_chunk(chunk, seed, index)
        return
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker,
                             initargs=(config, render)) as pool:
        # At most two chunks per worker in flight: finished pages wait in memory only until they are written.
        pending: deque[Future[ChunkResult]] = deque()
        for index, chunk in enumerate(chunks):
            pending.append(pool.submit(_make_chunk, chunk, seed, index))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def write_pages(results: Iterator[ChunkResult], out: Path, jpeg_quality: int, on_page=None) -> tuple[int, int]:
    """Save pages as JPEGs under out/images and their records to out/manifest.jsonl (atomically)."""
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    written = failures = 0
    with ManifestWriter(out / "manifest.jsonl") as writer:
        for result in results:
            failures += result.render_failures
            for page, source, license in result.pages:
                name = f"images/page_{written:06d}.jpg"
                ok, encoded = cv2.imencode(".jpg", page.image, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
                if not ok:
                    raise RuntimeError(f"could not encode {name}")
                (out / name).write_bytes(encoded.tobytes())
                writer.write(PageSample.model_validate(page.to_record(name, source, license)))
                written += 1
                if on_page is not None:
                    on_page()
    return written, failures
