"""The labeling web app: item list, one page's regions (read, save, review), the TeX compile check, the guide.

`create_app(dataset, spec_path)` builds it; the page is static (web/) and talks to the JSON API under /api.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, get_args

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from susik.annotate.guide import guide_html
from susik.annotate.store import STATUSES, Dataset, DatasetError, Item
from susik.data.manifest import PageRegion
from susik.serve.errors import ApiError, install_error_handlers
from susik.spec.dataset import CONDITIONS, Condition, Kind

WEB = Path(__file__).parent / "web"
MAX_COMPILE = 50


class RegionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    quad: list[list[float]] = Field(min_length=4, max_length=4)
    polygon: list[list[float]] | None = None
    latex: str = Field(max_length=4000)
    kind: Literal["printed", "handwritten"]


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
    seconds: float = Field(0.0, ge=0, le=86_400)


class CompileIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    latex: list[str] = Field(min_length=1, max_length=MAX_COMPILE)


async def _dataset(request: Request) -> Dataset:
    return request.app.state.dataset


DatasetDep = Annotated[Dataset, Depends(_dataset)]
api = APIRouter(prefix="/api")


def _summary(item: Item) -> dict:
    sample = item.sample
    return {"index": item.index, "image": sample.image, "status": item.status, "regions": len(sample.regions)}


def _item(dataset: Dataset, index: int) -> Item:
    try:
        return dataset.item(index)
    except DatasetError as error:
        raise ApiError(404, "unknown_item", str(error)) from None


def _regions(raw: list[RegionIn]) -> tuple[PageRegion, ...]:
    try:
        return tuple(PageRegion.model_validate(region.model_dump(exclude_none=True)) for region in raw)
    except ValidationError as error:
        raise ApiError(422, "invalid_region", str(error).splitlines()[0]) from None


@api.get("/items")
async def items(dataset: DatasetDep, status: Annotated[str | None, Query()] = None) -> dict:
    if status is not None and status not in STATUSES:
        raise ApiError(422, "invalid_status", f"status must be one of {', '.join(STATUSES)}")
    listed = [_summary(item) for item in dataset.items() if status is None or item.status == status]
    counts = {name: 0 for name in STATUSES}
    for item in dataset.items():
        counts[item.status] += 1
    return {"items": listed, "counts": counts, "total": len(dataset)}


@api.get("/items/{index}")
async def item(dataset: DatasetDep, index: int) -> dict:
    found = _item(dataset, index)
    body = {
        **_summary(found),
        **found.sample.model_dump(mode="json", include={"width", "height", "orientation", "conditions"}),
    }
    body["regions"] = [region.model_dump(mode="json", exclude_none=True) for region in found.sample.regions]
    body["prelabel"] = None
    if found.prelabel is not None:
        body["prelabel"] = {
            "model_version": found.prelabel.model_version,
            "regions": [
                region.model_dump(mode="json", exclude_none=True) for region in found.prelabel.regions
            ],
            "scores": list(found.prelabel.scores),
        }
    return body


@api.get("/items/{index}/image", include_in_schema=False)
async def image(dataset: DatasetDep, index: int) -> FileResponse:
    file = dataset.folder / _item(dataset, index).sample.image
    if not file.is_file():
        raise ApiError(404, "missing_image", f"{file.name} is not on disk")
    return FileResponse(file)


@api.put("/items/{index}")
async def save(dataset: DatasetDep, index: int, body: SaveIn) -> dict:
    _item(dataset, index)
    regions = _regions(body.regions)
    version = await run_in_threadpool(
        dataset.save,
        index,
        regions,
        body.orientation,
        body.annotator,
        body.seconds,
        None if body.conditions is None else tuple(body.conditions),
    )
    return {"version": version, "status": dataset.item(index).status}


@api.post("/items/{index}/review")
async def review(dataset: DatasetDep, index: int, body: ReviewIn) -> dict:
    _item(dataset, index)
    await run_in_threadpool(dataset.review, index, body.reviewer, body.verdict, body.seconds)
    return {"status": dataset.item(index).status}


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

    @app.get("/guide", include_in_schema=False)
    async def guide() -> HTMLResponse:
        return HTMLResponse(guide_html(spec_path))

    katex = katex_dir or find_katex()
    if katex is not None:
        app.mount("/static/katex", StaticFiles(directory=katex), name="katex")
    app.mount("/static", StaticFiles(directory=WEB), name="static")
    return app
