"""The labeling web app: item list, one page's regions (read, save, review), crops, the TeX compile check, the
guide.

`create_app(dataset, spec_path)` builds it. Two static pages (web/) talk to the JSON API under /api: the
labeling page at / and the review page at /review.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, get_args

import cv2
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.concurrency import run_in_threadpool

from susik.annotate.guide import guide_html
from susik.annotate.shapes import ShapeError, outline
from susik.annotate.store import STATUSES, Dataset, DatasetError, Event, Item
from susik.data.manifest import PageRegion
from susik.pipeline import rectify
from susik.results import Quad
from susik.serve.errors import ApiError, install_error_handlers
from susik.spec.dataset import CONDITIONS, Condition, Kind

WEB = Path(__file__).parent / "web"
MAX_COMPILE = 50
MAX_POLYGON = 500  # points: an outline, not a traced contour


class RegionIn(BaseModel):
    """A quad, a polygon with its quad, or a polygon alone (just drawn or edited): its quad is then derived."""

    model_config = ConfigDict(extra="forbid")

    quad: list[tuple[float, float]] | None = Field(None, min_length=4, max_length=4)
    polygon: list[tuple[float, float]] | None = Field(None, max_length=MAX_POLYGON)
    latex: str = Field(max_length=4000)
    kind: Literal["printed", "handwritten"]

    @model_validator(mode="after")
    def _has_a_shape(self) -> RegionIn:
        if self.quad is None and self.polygon is None:
            raise ValueError("a region needs a quad or a polygon")
        return self


class SaveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    regions: list[RegionIn]
    orientation: Literal[0, 90, 180, 270]
    conditions: list[Condition] | None = Field(
        None, description="photo conditions; omitted: left as they are"
    )
    annotator: str = Field(min_length=1, max_length=80)
    seconds: float = Field(0.0, ge=0, le=86_400, description="time spent on this item since it was opened")


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reviewer: str = Field(min_length=1, max_length=80)
    verdict: Literal["accepted", "rejected"]
    comment: str = Field("", max_length=2000, description="why; the annotator sees it on the labeling page")
    seconds: float = Field(0.0, ge=0, le=86_400)


class CompileIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    latex: list[str] = Field(min_length=1, max_length=MAX_COMPILE)


async def _dataset(request: Request) -> Dataset:
    return request.app.state.dataset


DatasetDep = Annotated[Dataset, Depends(_dataset)]
api = APIRouter(prefix="/api")


def _annotators(events: list[Event]) -> list[str]:
    """Who saved, in the order they first did."""
    return list(dict.fromkeys(event.annotator for event in events if event.type == "save"))


def _summary(item: Item, events: list[Event]) -> dict:
    sample = item.sample
    return {
        "index": item.index,
        "image": sample.image,
        "status": item.status,
        "regions": len(sample.regions),
        "annotators": _annotators(events),
        # the model's least sure proposal (calibrated: the chance it reads exactly right); None: no proposals
        "least_sure": min(item.prelabel.scores) if item.prelabel is not None and item.prelabel.scores else None,
    }


def _history(events: list[Event]) -> list[dict]:
    keep = {"type", "at", "annotator", "seconds", "verdict", "comment", "version", "model_version"}
    return [
        {**event.model_dump(mode="json", include=keep, exclude_defaults=True), "regions": len(event.regions)}
        for event in events
    ]


def _item(dataset: Dataset, index: int) -> Item:
    try:
        return dataset.item(index)
    except DatasetError as error:
        raise ApiError(404, "unknown_item", str(error)) from None


def _regions(raw: list[RegionIn], orientation: int) -> tuple[PageRegion, ...]:
    regions = []
    for number, region in enumerate(raw, start=1):
        fields = region.model_dump(exclude_none=True)
        try:
            if region.quad is None:
                fields["quad"], fields["polygon"] = outline(region.polygon, orientation)
            regions.append(PageRegion.model_validate(fields))
        except ShapeError as error:
            raise ApiError(422, "invalid_region", f"region {number}: {error}") from None
        except ValidationError as error:
            raise ApiError(422, "invalid_region", f"region {number}: {str(error).splitlines()[0]}") from None
    return tuple(regions)


def _region_json(region: PageRegion) -> dict:
    return region.model_dump(mode="json", exclude_none=True)


@api.get("/items")
async def items(
    dataset: DatasetDep,
    status: Annotated[str | None, Query()] = None,
    annotator: Annotated[str | None, Query(description="only pages this person saved")] = None,
    order: Annotated[str, Query(description="file: manifest order; unsure: pages whose least sure proposal is "
                                "least sure first (labels where the model is weakest teach it most)")] = "file",
) -> dict:
    if status is not None and status not in STATUSES:
        raise ApiError(422, "invalid_status", f"status must be one of {', '.join(STATUSES)}")
    if order not in ("file", "unsure"):
        raise ApiError(422, "invalid_order", "order must be file or unsure")
    everyone: dict[str, None] = {}
    counts = {name: 0 for name in STATUSES}
    listed = []
    for item in dataset.items():
        summary = _summary(item, dataset.events_for(item.sample.image))
        everyone.update(dict.fromkeys(summary["annotators"]))
        counts[item.status] += 1
        if (status is None or item.status == status) and (
            annotator is None or annotator in summary["annotators"]
        ):
            listed.append(summary)
    if order == "unsure":  # pages without proposals last, in file order
        listed.sort(key=lambda summary: (summary["least_sure"] is None, summary["least_sure"] or 0.0))
    return {"items": listed, "counts": counts, "total": len(dataset), "annotators": sorted(everyone)}


@api.get("/items/{index}")
async def item(dataset: DatasetDep, index: int) -> dict:
    found = _item(dataset, index)
    events = dataset.events_for(found.sample.image)
    body = {
        **_summary(found, events),
        **found.sample.model_dump(mode="json", include={"width", "height", "orientation", "conditions"}),
    }
    body["regions"] = [_region_json(region) for region in found.sample.regions]
    body["history"] = _history(events)
    body["prelabel"] = None
    if found.prelabel is not None:
        body["prelabel"] = {
            "model_version": found.prelabel.model_version,
            "regions": [_region_json(region) for region in found.prelabel.regions],
            "scores": list(found.prelabel.scores),
        }
    return body


@api.get("/items/{index}/image", include_in_schema=False)
async def image(dataset: DatasetDep, index: int) -> FileResponse:
    file = dataset.folder / _item(dataset, index).sample.image
    if not file.is_file():
        raise ApiError(404, "missing_image", f"{file.name} is not on disk")
    return FileResponse(file)


def _crop_png(dataset: Dataset, index: int, region: int) -> bytes:
    """The saved region warped upright, as the recognizer sees it."""
    sample = _item(dataset, index).sample
    if not 0 <= region < len(sample.regions):
        raise ApiError(404, "unknown_region", f"item {index} has {len(sample.regions)} regions, no {region}")
    image = cv2.imread(str(dataset.folder / sample.image), cv2.IMREAD_COLOR)
    if image is None:
        raise ApiError(404, "missing_image", f"{sample.image} is not on disk or not an image")
    ok, png = cv2.imencode(".png", rectify(image, Quad(sample.regions[region].quad), target_height=64))
    if not ok:
        raise ApiError(500, "encode_failed", "could not encode the crop")
    return png.tobytes()


@api.get("/items/{index}/regions/{region}/crop", include_in_schema=False)
async def crop(dataset: DatasetDep, index: int, region: int) -> Response:
    png = await run_in_threadpool(_crop_png, dataset, index, region)
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})


@api.put("/items/{index}")
async def save(dataset: DatasetDep, index: int, body: SaveIn) -> dict:
    """Store the page's labels; a region sent as a polygon alone comes back with its derived quad."""
    _item(dataset, index)
    regions = _regions(body.regions, body.orientation)
    version = await run_in_threadpool(
        dataset.save,
        index,
        regions,
        body.orientation,
        body.annotator,
        body.seconds,
        None if body.conditions is None else tuple(body.conditions),
    )
    return {
        "version": version,
        "status": dataset.item(index).status,
        "regions": [_region_json(region) for region in regions],
    }


@api.post("/items/{index}/review")
async def review(dataset: DatasetDep, index: int, body: ReviewIn) -> dict:
    image = _item(dataset, index).sample.image
    await run_in_threadpool(
        dataset.review, index, body.reviewer, body.verdict, body.seconds, body.comment.strip()
    )
    return {"status": dataset.item(index).status, "history": _history(dataset.events_for(image))}


@api.post("/compile")
async def compile_check_route(body: CompileIn) -> dict:
    """Whether each formula typesets with TeX (amsmath + amssymb), as the training renderer needs."""
    from susik.latex.validity import compile_check

    try:
        flags = await run_in_threadpool(compile_check, body.latex)
    except (OSError, RuntimeError) as error:  # no TeX installed
        raise ApiError(503, "tex_unavailable", f"TeX is not available: {error}") from None
    return {"compiles": flags}


@api.get("/choices")
async def choices() -> dict:
    """What the page offers to pick from, straight from the spec's vocabulary."""
    return {"conditions": list(CONDITIONS), "kinds": list(get_args(Kind)), "statuses": list(STATUSES)}


@api.get("/version")
async def version(dataset: DatasetDep) -> dict:
    return {"version": await run_in_threadpool(dataset.version), "manifest": dataset.manifest.name}


def find_katex() -> Path | None:
    candidates = [
        Path.cwd() / "node_modules/katex/dist",
        Path(__file__).resolve().parents[3] / "node_modules/katex/dist",
    ]
    return next((path for path in candidates if (path / "katex.min.js").is_file()), None)


def create_app(dataset: Dataset, spec_path: Path | None = None, katex_dir: Path | None = None) -> FastAPI:
    app = FastAPI(title="susik annotate", summary="Label formula regions and their LaTeX", version="1")
    app.state.dataset = dataset
    install_error_handlers(app)
    app.include_router(api)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(WEB / "index.html")

    @app.get("/review", include_in_schema=False)
    async def review_page() -> FileResponse:
        return FileResponse(WEB / "review.html")

    @app.get("/guide", include_in_schema=False)
    async def guide() -> HTMLResponse:
        return HTMLResponse(guide_html(spec_path))

    katex = katex_dir or find_katex()
    if katex is not None:
        app.mount("/static/katex", StaticFiles(directory=katex), name="katex")
    app.mount("/static", StaticFiles(directory=WEB), name="static")
    return app
