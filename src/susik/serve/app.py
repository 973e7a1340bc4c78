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
from susik.serve.errors import ApiError, error_body, install_error_handlers
from susik.serve.guards import BodySizeLimit, RateLimiter, decode_upload
from susik.serve.metrics import Metrics, RequestMetrics
from susik.serve.online import online_report
from susik.serve.settings import Settings
from susik.serve.store import FeedbackStore, RegionOutOfRange, UnknownRequest

log = logging.getLogger("susik.serve")
WEB = Path(__file__).parent / "web"
Mode = Literal["page", "crop"]
ReadPages = Callable[[list[np.ndarray]], list[Page]]


@dataclass(frozen=True)
class Pipelines:
    """What the server runs: photos with several formulas (`page`) and single-formula crops (`crop`).

    `page` is None while only the recognizer exists (no detector yet): crops serve, page mode says why not.
    """

    page: ReadPages | None
    crop: ReadPages
    model_version: str
    page_unavailable: str | None = None


def default_pipelines(settings: Settings) -> Pipelines:
    """The bundled models; fails (and the server reports not ready) when they are not installed.

    The crop pipeline shares the page pipeline's recognizer, so the weights sit in memory once.
    """
    from susik.models.registry import ModelNotFoundError, get_model
    from susik.pipeline import Pipeline
    from susik.runtime.recognizer import OnnxRecognizer

    record = get_model("recognizer")
    version = f"{record.name}-{record.version[:12]}"
    try:
        page = Pipeline.default(threads=settings.onnx_threads)
    except ModelNotFoundError as missing:  # the recognizer alone still reads crops
        crop = Pipeline.for_crops(OnnxRecognizer.from_record(record, threads=settings.onnx_threads))
        return Pipelines(None, crop, version, page_unavailable=str(missing))
    return Pipelines(page, Pipeline.for_crops(page.recognizer), version)


@dataclass
class ServeState:
    settings: Settings
    store: FeedbackStore
    metrics: Metrics
    limiter: RateLimiter
    pipelines: Pipelines | None
    batcher: Batcher | None
    not_ready: str | None


# --- HTTP schemas (mirror susik.results) ---


class RegionOut(BaseModel):
    quad: list[list[float]]
    polygon: list[list[float]]
    latex: str
    confidence: float
    kind: Literal["printed", "handwritten"]


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


def _run_batch(pipelines: Pipelines, items: list[tuple[Mode, np.ndarray]]) -> list[Page]:
    """One batch may mix page and crop requests: each mode's images go through its pipeline together."""
    pages: list[Page | None] = [None] * len(items)
    for mode, read in (("page", pipelines.page), ("crop", pipelines.crop)):
        chosen = [index for index, (item_mode, _) in enumerate(items) if item_mode == mode]
        if chosen:
            for index, page in zip(chosen, read([items[index][1] for index in chosen]), strict=True):
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
    mode: Annotated[Mode, Form()] = "page",
) -> dict:
    if state.batcher is None or state.pipelines is None:
        raise ApiError(503, "not_ready", state.not_ready or "models not loaded")
    if mode == "page" and state.pipelines.page is None:
        raise ApiError(503, "page_mode_unavailable", f"{state.pipelines.page_unavailable}; mode=crop works")
    start = time.perf_counter()
    request_id, version = uuid.uuid4().hex, state.pipelines.model_version
    with state.batcher.arriving():
        data = await file.read()
        image, image_format = await run_in_threadpool(decode_upload, data, state.settings.max_image_pixels)
        decoded = time.perf_counter()
        if state.batcher.full():
            state.metrics.rejected.labels("overloaded").inc()
            raise ApiError(503, "overloaded", "too many requests waiting; retry shortly")
        await run_in_threadpool(state.store.receive, request_id, version, mode, data, image_format)
        stored = time.perf_counter()
        future = await _submit(state, request_id, mode, image)
    page = await _infer(state, request_id, future)
    done = time.perf_counter()
    body = page.to_json()
    body["timings_ms"].update(  # wait: in the queue, gathering a batch, and the other images of the batch
        decode=_ms(decoded - start),
        store=_ms(stored - decoded),
        wait=round(_ms(done - stored) - page.timings_ms["total"], 2),
    )
    await run_in_threadpool(state.store.complete, request_id, body)
    state.metrics.observe_page(mode, page.timings_ms)
    body["timings_ms"]["server"] = _ms(time.perf_counter() - start)
    return {**body, "request_id": request_id, "model_version": version}


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


async def _submit(state: ServeState, request_id: str, mode: Mode, image: np.ndarray) -> Future:
    try:
        future = state.batcher.submit((mode, image))
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
async def report(state: State) -> dict:
    return await run_in_threadpool(
        lambda: online_report(state.store.request_facts(), state.store.feedback_facts())
    )


@ops.get("/healthz")
async def healthz() -> dict:
    return {"status": "ok"}


@ops.get("/readyz")
async def readyz(state: State) -> JSONResponse:
    if state.pipelines is None:
        return JSONResponse(error_body("not_ready", state.not_ready or "models not loaded"), status_code=503)
    body = {"status": "ready", "model_version": state.pipelines.model_version}
    if state.pipelines.page is None:
        body["page_mode"] = state.pipelines.page_unavailable
    return JSONResponse(body)


@ops.get("/metrics")
async def metrics(state: State) -> Response:
    if state.batcher is not None:
        state.metrics.queue_depth.set(state.batcher.depth())
    return Response(state.metrics.render(), media_type=state.metrics.content_type)


@ops.get("/", include_in_schema=False)
async def index() -> FileResponse:
    return FileResponse(WEB / "index.html")


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
    settings: Settings | None = None, pipeline_factory: Callable[[Settings], Pipelines] = default_pipelines
) -> FastAPI:
    settings = settings or Settings()
    metrics_ = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = FeedbackStore.open(settings.database_url(), settings.image_dir)
        pipelines, not_ready, batcher = None, None, None
        try:
            pipelines = pipeline_factory(settings)
        except Exception as error:  # missing weights or runtime: serve health and the page, refuse inference
            not_ready = f"models not available: {type(error).__name__}: {error}"
            log.warning(not_ready)
        if pipelines is not None:
            batcher = Batcher(
                lambda items: _run_batch(pipelines, items),
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
            pipelines,
            batcher,
            not_ready,
        )
        try:
            yield
        finally:
            if batcher is not None:
                batcher.close()
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
    app.mount("/static", StaticFiles(directory=WEB), name="static")
    # The last added runs first: metrics see every answer; the size cap runs before anything reads the body.
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes)
    app.add_middleware(RequestMetrics, metrics=metrics_)
    return app
