"""The HTTP app: recognize, feedback, online report, health, metrics and the web page.

`create_app(settings, pipeline_factory)` builds it; the lifespan opens the store and loads the models once.
Inference runs on the batcher's worker thread, decoding and database work on the threadpool: the event loop
only moves bytes.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, File, Form, Header, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.concurrency import run_in_threadpool

from susik.results import Page
from susik.serve.batching import Batcher, Overloaded
from susik.serve.edge import install_edge
from susik.serve.errors import ApiError, error_body, install_error_handlers
from susik.serve.guards import BodySizeLimit, RateLimiter, decode_upload
from susik.serve.metrics import Metrics, RequestMetrics
from susik.serve.online import online_report
from susik.serve.privacy import purge_periodically
from susik.serve.rollout import ModelSource, Rollout, Serving
from susik.serve.settings import Settings
from susik.serve.store import FeedbackStore, RegionOutOfRange, UnknownRequest

log = logging.getLogger("susik.serve")
WEB = Path(__file__).parent / "web"
Mode = Literal["page", "crop"]
ReadPages = Callable[[list[np.ndarray]], list[Page]]


@dataclass(frozen=True)
class Pipelines:
    """What the server runs: photos with several formulas (`page`) and crops or photos of one formula (`crop`).

    `page` is None while only the recognizer exists (no detector yet): crops serve, page mode says why not.
    """

    page: ReadPages | None
    crop: ReadPages
    model_version: str
    page_unavailable: str | None = None
    recognizer_dir: Path | None = None  # the crop recognizer's bundle, offered to browsers (susik.serve.edge)


def default_pipelines(settings: Settings) -> Pipelines:
    """The bundled models; fails (and the server reports not ready) when they are not installed.

    The crop pipeline shares the page pipeline's recognizer, so the weights sit in memory once; with a detector it
    also finds the formula in a photo of one formula (`susik.one_formula`).
    """
    from susik.models.registry import ModelNotFoundError, get_model
    from susik.one_formula import OneFormulaReader
    from susik.pipeline import Pipeline
    from susik.runtime.detector import load_detector_record
    from susik.runtime.recognizer import OnnxRecognizer
    from susik.runtime.served_version import served_version

    record = get_model("recognizer")
    try:
        page = Pipeline.default(threads=settings.onnx_threads)
    except ModelNotFoundError as missing:  # the recognizer alone still reads crops
        crop = Pipeline.for_crops(OnnxRecognizer.from_record(record, threads=settings.onnx_threads))
        return Pipelines(None, crop, served_version(record), page_unavailable=str(missing),
                         recognizer_dir=record.root)
    version = served_version(record, load_detector_record())
    crop = OneFormulaReader(page, Pipeline.for_crops(page.recognizer))
    return Pipelines(page, crop, version, recognizer_dir=record.root)


@dataclass
class ServeState:
    settings: Settings
    store: FeedbackStore
    metrics: Metrics
    limiter: RateLimiter
    rollout: Rollout  # the models serving now; swapped whole when the registry's aliases move
    batcher: Batcher


# --- HTTP schemas (mirror susik.results) ---


class RegionOut(BaseModel):
    quad: list[list[float]]
    polygon: list[list[float]]
    latex: str
    confidence: float = Field(description="the chance that the LaTeX is exactly right, calibrated on held-out "
                              "crops when the model's record has a map (the bundled one does); below 0.5, check it")
    kind: Literal["printed", "handwritten"]
    label: str | None = Field(None, description="a problem or choice label read with the formula, e.g. (1)")


class RecognizeOut(BaseModel):
    request_id: str
    model_version: str
    width: int
    height: int
    orientation: int
    regions: list[RegionOut]
    timings_ms: dict[str, float]


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(min_length=1, max_length=64)
    region: int = Field(ge=0, description="index into the response's regions")
    latex: str | None = Field(None, max_length=4000, description="the corrected LaTeX")
    accepted: bool | None = Field(None, description="the prediction was right (true) or wrong (false)")
    comment: str | None = Field(None, max_length=4000, description="free text: the voice of the customer")
    display_ms: float | None = Field(
        None, ge=0, le=3_600_000, description="capture->display, measured by the client"
    )

    @model_validator(mode="after")
    def _says_something(self) -> FeedbackIn:
        if self.latex is None and self.accepted is None and self.comment is None:
            raise ValueError("give at least one of latex, accepted, comment")
        return self


class FeedbackOut(BaseModel):
    feedback_id: int
    corrected: bool


# --- dependencies ---


# async on purpose: FastAPI runs plain `def` dependencies on the threadpool, a hop per request for nothing.
async def _state(request: Request) -> ServeState:
    return request.app.state.serve


State = Annotated[ServeState, Depends(_state)]


async def _api_key(state: State, x_api_key: Annotated[str | None, Header()] = None) -> None:
    state.limiter.check(x_api_key)


api = APIRouter(prefix="/v1", dependencies=[Depends(_api_key)])
ops = APIRouter()


def _run_batch(items: list[tuple[Pipelines, Mode, np.ndarray]]) -> list[Page]:
    """One batch may mix page and crop requests, and (during a swap or a canary) model versions: the
    images of each version and mode go through their pipeline together."""
    pages: list[Page | None] = [None] * len(items)
    groups: dict[tuple[int, Mode], list[int]] = {}
    for index, (pipelines, mode, _) in enumerate(items):
        groups.setdefault((id(pipelines), mode), []).append(index)
    for chosen in groups.values():
        pipelines, mode, _ = items[chosen[0]]
        read = pipelines.page if mode == "page" else pipelines.crop
        for index, page in zip(chosen, read([items[index][2] for index in chosen]), strict=True):
            pages[index] = page
    return pages  # type: ignore[return-value]


@api.post(
    "/recognize",
    response_model=RecognizeOut,
    responses={
        413: {"description": "body or image too large"},
        415: {"description": "not an accepted image format"},
        422: {"description": "undecodable image or bad form"},
        503: {"description": "not ready or overloaded"},
        504: {"description": "inference timed out"},
    },
)
async def recognize(
    state: State,
    file: Annotated[UploadFile, File()],
    mode: Annotated[Mode, Form(description="page: a photo that may hold several formulas; crop: a crop or a photo "
                               "of one formula (one region: the whole image's reading, or the formula found in it "
                               "when that reads surer)")] = "page",
    consent: Annotated[bool, Form(description="the user lets the photo be kept to train models")] = False,
    source: Annotated[str, Form(pattern=r"^[a-z0-9_.-]{1,32}$", description="client: web, api...")] = "api",
) -> dict:
    served = state.rollout.route()  # taken once: this request finishes on these models, whatever swaps
    if served is None:
        raise ApiError(503, "not_ready", state.rollout.problem or "models not loaded")
    if mode == "page" and served.page is None:
        raise ApiError(503, "page_mode_unavailable", f"{served.page_unavailable}; mode=crop works")
    start = time.perf_counter()
    request_id, version = uuid.uuid4().hex, served.model_version
    with state.batcher.arriving():
        data = await file.read()
        image, image_format = await run_in_threadpool(decode_upload, data, state.settings.max_image_pixels)
        decoded = time.perf_counter()
        if state.batcher.full():
            state.metrics.rejected.labels("overloaded").inc()
            raise ApiError(503, "overloaded", "too many requests waiting; retry shortly")
        await run_in_threadpool(
            state.store.receive,
            request_id,
            version,
            mode,
            data,
            image_format,
            consent=consent,
            source=source,
            license=state.settings.collection_license,
        )
        stored = time.perf_counter()
        future = await _submit(state, request_id, (served, mode, image))
    page = await _infer(state, request_id, future)
    done = time.perf_counter()
    body = page.to_json()
    body["timings_ms"].update(  # wait: in the queue, gathering a batch, and the other images of the batch
        decode=_ms(decoded - start),
        store=_ms(stored - decoded),
        wait=round(_ms(done - stored) - page.timings_ms["total"], 2),
    )
    await run_in_threadpool(state.store.complete, request_id, body)
    state.metrics.observe_page(mode, page.timings_ms, [(region.kind, region.confidence) for region in page.regions])
    body["timings_ms"]["server"] = _ms(time.perf_counter() - start)
    return {**body, "request_id": request_id, "model_version": version}


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


async def _submit(state: ServeState, request_id: str, item: tuple[Pipelines, Mode, np.ndarray]) -> Future:
    try:
        future = state.batcher.submit(item)
    except Overloaded as error:
        state.metrics.rejected.labels("overloaded").inc()
        await run_in_threadpool(state.store.fail, request_id, "overloaded")
        raise ApiError(503, "overloaded", str(error)) from None
    state.metrics.queue_depth.set(state.batcher.depth())
    return future


async def _infer(state: ServeState, request_id: str, future: Future) -> Page:
    """Wait for the batcher; a timeout or a model error is written to the request's row."""
    try:
        return await asyncio.wait_for(asyncio.wrap_future(future), state.settings.request_timeout_s)
    except TimeoutError:
        state.metrics.rejected.labels("timeout").inc()
        await run_in_threadpool(state.store.fail, request_id, "timeout")
        raise ApiError(
            504, "timeout", f"inference took over {state.settings.request_timeout_s:g} s"
        ) from None
    except Exception as error:
        log.exception("inference failed for request %s", request_id)
        await run_in_threadpool(state.store.fail, request_id, f"{type(error).__name__}: {error}")
        raise ApiError(500, "inference_failed", "the model failed on this image") from None


@api.post(
    "/feedback",
    status_code=201,
    response_model=FeedbackOut,
    responses={404: {"description": "unknown request_id"}, 422: {"description": "invalid body"}},
)
async def feedback(state: State, body: FeedbackIn) -> dict:
    try:
        row = await run_in_threadpool(
            lambda: state.store.add_feedback(
                body.request_id,
                body.region,
                latex=body.latex,
                accepted=body.accepted,
                comment=body.comment,
                display_ms=body.display_ms,
            )
        )
    except UnknownRequest:
        raise ApiError(404, "unknown_request", f"no finished request {body.request_id}") from None
    except RegionOutOfRange as error:
        raise ApiError(422, "region_out_of_range", str(error)) from None
    state.metrics.observe_feedback(row.corrected, body.latex is not None or body.accepted is not None)
    return {"feedback_id": row.id, "corrected": row.corrected}


@api.get("/online/report")
async def report(state: State, champion: str | None = None, challenger: str | None = None) -> dict:
    """Per model version; with a challenger (serving now, or both versions named), whether it beats the
    champion on correction rate and latency."""
    serving = state.rollout.serving
    if champion is None and challenger is None and serving is not None and serving.challenger is not None:
        champion, challenger = serving.champion.model_version, serving.challenger.model_version
    return await run_in_threadpool(
        lambda: online_report(
            state.store.request_facts(),
            state.store.feedback_facts(),
            champion=champion,
            challenger=challenger,
        )
    )


@ops.get("/healthz")
async def healthz() -> dict:
    return {"status": "ok"}


@ops.get("/readyz")
async def readyz(state: State) -> JSONResponse:
    serving = state.rollout.serving
    if serving is None:
        return JSONResponse(
            error_body("not_ready", state.rollout.problem or "models not loaded"), status_code=503
        )
    body = {"status": "ready", "model_version": serving.champion.model_version}
    if serving.challenger is not None:
        body["challenger"] = {
            "model_version": serving.challenger.model_version,
            "share": state.settings.canary_share,
        }
    if serving.champion.page is None:
        body["page_mode"] = serving.champion.page_unavailable
    if state.rollout.problem is not None:  # a newly promoted version failed to load: the old one serves
        body["rollout_problem"] = state.rollout.problem
    return JSONResponse(body)


@ops.get("/metrics")
async def metrics(state: State) -> Response:
    if state.batcher is not None:
        state.metrics.queue_depth.set(state.batcher.depth())
    return Response(state.metrics.render(), media_type=state.metrics.content_type)


@ops.get("/", include_in_schema=False)
async def index() -> FileResponse:
    return FileResponse(WEB / "index.html")


def _start_rollout(
    settings: Settings,
    pipeline_factory: Callable[[Settings], Pipelines],
    source_factory: Callable[[Settings], ModelSource] | None,
) -> Rollout:
    """Fixed models, or a source followed every `registry_poll_s`. Models that fail to load leave the server
    alive, serving health and the page and refusing inference (a followed source is retried)."""
    rollout = Rollout(settings.canary_share)
    if source_factory is None and settings.model_source == "registry":
        from susik.serve.registry_source import RegistrySource  # MLflow only when asked for

        source_factory = RegistrySource
    if source_factory is not None:
        rollout.follow(source_factory(settings), settings.registry_poll_s)
        return rollout
    try:
        rollout.swap(Serving(pipeline_factory(settings)))
    except Exception as error:  # noqa: BLE001 - missing weights or runtime, of many types
        rollout.problem = f"models not available: {type(error).__name__}: {error}"
        log.warning(rollout.problem)
    return rollout


def find_katex(settings: Settings) -> Path | None:
    candidates = (
        [settings.katex_dir]
        if settings.katex_dir
        else [
            Path.cwd() / "node_modules/katex/dist",
            Path(__file__).resolve().parents[3] / "node_modules/katex/dist",
        ]
    )
    return next((path for path in candidates if (path / "katex.min.js").is_file()), None)


def create_app(
    settings: Settings | None = None,
    pipeline_factory: Callable[[Settings], Pipelines] = default_pipelines,
    source_factory: Callable[[Settings], ModelSource] | None = None,
) -> FastAPI:
    """`pipeline_factory` builds fixed models (default: the bundled ones). A model source is followed
    instead when `source_factory` is given or `settings.model_source` is `registry`."""
    settings = settings or Settings()
    metrics_ = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = FeedbackStore.open(settings.database_url(), settings.image_dir)
        purger = asyncio.create_task(
            purge_periodically(store, settings.retention_days, settings.purge_interval_s)
        )
        rollout = _start_rollout(settings, pipeline_factory, source_factory)
        batcher = Batcher(
            _run_batch,
            settings.batch_max_size,
            settings.batch_max_wait_ms / 1000,
            settings.max_queue,
            metrics_.batch_size.observe,
        )
        app.state.serve = ServeState(
            settings,
            store,
            metrics_,
            RateLimiter(settings.api_keys, settings.rate_limit_per_minute),
            rollout,
            batcher,
        )
        try:
            yield
        finally:
            rollout.close()
            batcher.close()
            purger.cancel()
            store.close()

    app = FastAPI(
        title="susik",
        summary="Phone photos of school math -> formula regions and LaTeX",
        version="1",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.include_router(api)
    app.include_router(ops)
    katex = find_katex(settings)
    if katex is not None:
        app.mount("/static/katex", StaticFiles(directory=katex), name="katex")
    install_edge(app, settings)
    app.mount("/static", StaticFiles(directory=WEB), name="static")
    # The last added runs first: metrics see every answer; the size cap runs before anything reads the body.
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes)
    app.add_middleware(RequestMetrics, metrics=metrics_)
    return app
