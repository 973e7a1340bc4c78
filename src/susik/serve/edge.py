"""On-device reading: the page runs the server's own crop recognizer in the browser (onnxruntime-web, WASM),
so a photo read that way is never uploaded.

The browser fetches a manifest (geometry, decoding limits, vocabulary, file URLs) and the two ONNX graphs of
the recognizer the server runs now (the champion), as they are: int8 graphs run under the WASM backend. File
URLs carry the model version, so browsers may cache them for good. onnxruntime-web's files are served from
node_modules, installed at set-up like KaTeX (`npm ci`); without them the page offers no on-device mode.

Page mode on the device also needs the detector: the bundled one (models/detector), the one every server's
page pipeline runs, with the thresholds it was validated with.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from susik.latex import Vocabulary
from susik.models.registry import ModelNotFoundError, ModelRecord, load_record
from susik.one_formula import OneFormulaReader
from susik.serve.errors import ApiError
from susik.serve.settings import Settings

if TYPE_CHECKING:
    from susik.runtime.detector import DetectorRecord

ORT_PATH = "/static/ort"
router = APIRouter(prefix="/v1/edge", tags=["edge"])


def find_ort(settings: Settings) -> Path | None:
    """onnxruntime-web's dist folder (its WASM build and loader), or None when it is not installed."""
    candidates = (
        [settings.ort_dir]
        if settings.ort_dir
        else [
            Path.cwd() / "node_modules/onnxruntime-web/dist",
            Path(__file__).resolve().parents[3] / "node_modules/onnxruntime-web/dist",
        ]
    )
    return next((path for path in candidates if (path / "ort.wasm.min.mjs").is_file()), None)


def _champion_record(request: Request) -> ModelRecord:
    if request.app.state.edge_ort is None:
        raise ApiError(404, "edge_unavailable", "onnxruntime-web is not installed on the server: run `npm ci`")
    serving = request.app.state.serve.rollout.serving
    folder = serving.champion.recognizer_dir if serving is not None else None
    if folder is None:
        raise ApiError(404, "edge_unavailable", "the model serving now is not offered for on-device reading")
    return load_record(folder)


@router.get("/recognizer")
async def recognizer_manifest(request: Request) -> dict:
    """What the browser needs to read a crop exactly as the server's crop mode does, and whether that mode also
    looks for the formula in the photo (`one_formula`: `susik.one_formula.OneFormulaReader`'s margin, or null)."""
    record = await run_in_threadpool(_champion_record, request)
    crop = request.app.state.serve.rollout.serving.champion.crop
    vocab = await run_in_threadpool(lambda: Vocabulary.load(record.root / record.files["vocab"].path))
    base = f"/v1/edge/recognizer/{record.version}"
    return {
        "model_version": request.app.state.serve.rollout.serving.champion.model_version,
        "runtime": f"{ORT_PATH}/",
        "preprocess": record.preprocess.model_dump(),
        "stride": list(record.stride),
        "decode": record.decode.model_dump(),
        "quantization": record.quantization,
        "vocab": vocab.tokens,
        "files": {key: f"{base}/{key}" for key in ("encoder", "decoder")},
        "one_formula": {"prefer_found_by": crop.prefer_found_by} if isinstance(crop, OneFormulaReader) else None,
    }


@router.get("/recognizer/{version}/{key}", response_class=FileResponse)
async def recognizer_file(request: Request, version: str, key: Literal["encoder", "decoder"]) -> FileResponse:
    record = await run_in_threadpool(_champion_record, request)
    if version != record.version:
        raise ApiError(404, "unknown_version", f"serving {record.version}, not {version}")
    path = await run_in_threadpool(record.file, key)  # hash-checked, as the server loads it
    return FileResponse(
        path, media_type="application/octet-stream", headers={"Cache-Control": "public, max-age=31536000, immutable"}
    )


def _detector_record(request: Request) -> DetectorRecord:
    from susik.runtime.detector import load_detector_record  # OpenCV + pyclipper: only once a browser asks

    if request.app.state.edge_ort is None:
        raise ApiError(404, "edge_unavailable", "onnxruntime-web is not installed on the server: run `npm ci`")
    try:
        return load_detector_record()
    except ModelNotFoundError as missing:
        raise ApiError(404, "edge_unavailable", str(missing)) from missing


@router.get("/detector")
async def detector_manifest(request: Request) -> dict:
    """What the browser needs to find a photo's formulas as the server's page mode does."""
    record = await run_in_threadpool(_detector_record, request)
    return {
        "version": record.version,
        "runtime": f"{ORT_PATH}/",
        "params": record.params.model_dump(),
        "files": {"model": f"/v1/edge/detector/{record.version}/model"},
    }


@router.get("/detector/{version}/model", response_class=FileResponse)
async def detector_file(request: Request, version: str) -> FileResponse:
    record = await run_in_threadpool(_detector_record, request)
    if version != record.version:
        raise ApiError(404, "unknown_version", f"serving detector {record.version}, not {version}")
    path = await run_in_threadpool(record.file, "model")  # hash-checked, as the server loads it
    return FileResponse(
        path, media_type="application/octet-stream", headers={"Cache-Control": "public, max-age=31536000, immutable"}
    )


def install_edge(app: FastAPI, settings: Settings) -> None:
    """The manifest and model routes, and onnxruntime-web's files under /static/ort when installed."""
    ort = find_ort(settings)
    app.state.edge_ort = ort
    if ort is not None:
        app.mount(ORT_PATH, StaticFiles(directory=ort), name="ort")
    app.include_router(router)
