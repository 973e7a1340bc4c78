"""Export a detector checkpoint to ONNX (+ optional static int8) and write its record beside it.

The exported graph ends in the probabilities (sigmoid maps, softmax orientation), so serving only thresholds.
Static QDQ int8 (per-channel weights, activations calibrated on pages) is the int8 form that suits a CNN;
dynamic int8 of convolutions measured ~4x slower than fp32 here. The int8 export is checked against fp32 on
its calibration pages (map difference, share of fp32 quads it finds again) and the check goes in the record;
whether int8 pays is measured, not assumed: `benchmarks/bench_pipeline.py --detector` times either.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import torch
from torch import nn

from susik.eval.detect_match import match_regions
from susik.models.data_card import data_section
from susik.models.detector import FormulaDetector, count_parameters
from susik.models.detector_data import SYNTHETIC_PAGES
from susik.models.registry import RECORD_NAME, TrainingInfo, averaged_lines, file_entry
from susik.models.train_detector import load_model
from susik.runtime.detector import FEWEST_LETTERS, DetectorRecord, DetectParams, OnnxDetector, preprocess

Quantization = Literal["none", "static-int8"]


class _Probabilities(nn.Module):
    def __init__(self, model: FormulaDetector) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        maps, orientation = self.model(images)
        return torch.sigmoid(maps), torch.softmax(orientation, dim=1)


def export_onnx(model: FormulaDetector, path: Path, opset: int = 17) -> Path:
    """The model as ONNX with dynamic batch, height and width (multiples of 32)."""
    wrapped = _Probabilities(model).eval()  # the exporter restores the wrapper's mode afterwards: keep it eval
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(1, 3, 256, 320)
    torch.onnx.export(
        wrapped, (example,), str(path), input_names=["images"], output_names=["maps", "orientation"],
        dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"}, "maps": {0: "batch", 2: "h2", 3: "w2"},
                      "orientation": {0: "batch"}},
        opset_version=opset, dynamo=False,
    )
    return path


def _calibration_inputs(images: list[Path], long_side: int) -> Iterator[dict[str, np.ndarray]]:
    for image_path in images:
        image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
        if image is not None:
            yield {"images": preprocess(image, long_side)[0]}


def quantize_static(source: Path, target: Path, calibration: list[Path], long_side: int) -> Path:
    """Static QDQ int8: per-channel weights, activation ranges from `calibration` pages.

    Weights use 7 bits (`reduce_range`): on AVX2 CPUs without VNNI, ORT's u8 x s8 kernels sum pairs of
    products in saturating int16, and full-range weights dropped held-out F1 from 0.87 to 0.27 (0.86 with 7 bits).
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.inputs = _calibration_inputs(calibration, long_side)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.inputs, None)

    prepared = target.with_suffix(".pre.onnx")
    quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    try:
        quantize_static(str(prepared), str(target), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    finally:
        prepared.unlink(missing_ok=True)
    return target


def int8_check(fp32: Path, int8: Path, pages: list[Path], params: DetectParams, iou: float = 0.5) -> dict:
    """How closely the int8 graph follows fp32 on `pages`: mean and largest absolute difference of the kernel
    probability map, orientation agreement, and the share of fp32 quads that int8 finds again at `iou`."""
    reference, quantized = OnnxDetector(fp32, params, threads=1), OnnxDetector(int8, params, threads=1)
    mean_diffs, max_diffs, same_turn, matched, total = [], [], 0, 0, 0
    for page in pages:
        image = cv2.imread(str(page), cv2.IMREAD_COLOR)
        if image is None:
            continue
        tensor = preprocess(image, params.long_side)[0]
        (maps_a, turn_a), (maps_b, turn_b) = reference._run(tensor), quantized._run(tensor)
        difference = np.abs(maps_a[:, 0] - maps_b[:, 0])
        mean_diffs.append(float(difference.mean()))
        max_diffs.append(float(difference.max()))
        same_turn += int(np.argmax(turn_a) == np.argmax(turn_b))
        (found_a,), (found_b,) = reference([image]), quantized([image])
        quads_a = [d.quad.points for d in found_a.detections]
        matched += len(match_regions(quads_a, [d.quad.points for d in found_b.detections], iou))
        total += len(quads_a)
    n = max(len(mean_diffs), 1)
    return {"pages": len(mean_diffs), "kernel_mean_abs_diff": round(float(np.mean(mean_diffs or [0.0])), 5),
            "kernel_max_abs_diff": round(max(max_diffs, default=0.0), 4), "orientation_agreement": same_turn / n,
            "fp32_quads": total, f"quads_matched_at_iou_{iou}": round(matched / max(total, 1), 4)}


def export_detector(checkpoint: Path, out: Path, quantization: Quantization = "none",
                    calibration: list[Path] | None = None, metrics: dict | None = None,
                    params: DetectParams | None = None) -> Path:
    """Write out/detector/{detector.onnx, record.json}; returns the record path."""
    model, meta = load_model(checkpoint)
    folder = out / "detector"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "detector.onnx"
    train_config = meta["train_config"]
    params = params or DetectParams.model_validate(train_config["params"])
    if quantization == "static-int8":
        if not calibration:
            raise ValueError("static int8 needs calibration pages")
        fp32 = export_onnx(model, folder / "detector.fp32.onnx")
        try:
            quantize_static(fp32, target, calibration, params.long_side)
            metrics = {**(metrics or {}), "int8_check": int8_check(fp32, target, calibration, params)}
        finally:
            fp32.unlink()
    else:
        export_onnx(model, target)
    entry = file_entry(folder, target)
    record = DetectorRecord(
        version=hashlib.sha256(entry.sha256.encode()).hexdigest()[:12],
        created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        architecture=meta["model_config"],
        parameters=count_parameters(model),
        files={"model": entry},
        params=params,
        quantization=quantization,
        training=TrainingInfo(
            command=str(meta.get("command", "susik train detector")),
            config=train_config,
            step=int(meta["step"]),
            best_metric=float(meta["best_f1"]),
            data_versions={str(train_config["train_pages"]): str(meta["data_version"])},
            sources=_sources(train_config),
            averaged_from=list(meta.get("averaged_from", [])),
        ),
        metrics=metrics or {},
    )
    path = folder / RECORD_NAME
    path.write_text(record.model_dump_json(indent=2) + "\n")
    (folder / "MODEL_CARD.md").write_text(model_card(record), encoding="utf-8")
    return path


def model_card(record: DetectorRecord) -> str:
    """The detector's model card, generated from its record so the two cannot disagree."""
    arch, params = record.architecture, record.params
    lines = [
        f"# {record.name} — model card",
        "",
        f"Version `{record.version}`, exported {record.created}. Generated from `{RECORD_NAME}`.",
        "",
        "## What it does",
        ("Finds every formula (display and inline, printed and handwritten) on a photo of a worksheet or "
         "notebook page and returns it as a quad (clockwise from the formula's own top-left) and a polygon in the "
         "original image's pixels, with its kind; also predicts the page's orientation (0/90/180/270). Ordinary "
         "text lines are not formulas."),
        "",
        "## Architecture",
        (f"- DB-style segmentation net: plain-conv + inverted-residual backbone (widths {arch.get('widths')}, "
         f"depths {arch.get('depths')}), FPN-lite at stride 4, transposed conv to stride 2; heads: shrunk "
         "formula kernel, handwritten probability, page orientation (4-way, pooled deepest features)."),
        (f"- {record.parameters / 1e6:.2f} M parameters; quantisation: {record.quantization}; "
         f"{sum(e.bytes for e in record.files.values()) / 1e6:.2f} MB."),
        (f"- Input: the page downscaled to long side {params.long_side}"
         + (f" (a photo with a short side under {params.min_short_side} px enlarged to it)" if params.min_short_side
            else " (never upscaled)") + f", {record.input}."
         + (f" A close-up, whose letters reach the net over {params.closeup_letters_above:g} px tall "
            "(`detector.letter_height`: the ink's letter-like connected components, 75th percentile), is detected "
            f"at the long side that makes them {params.closeup_letters_to:g} px (at least "
            f"{params.closeup_min_long_side}), as tall as on the whole worksheets the net learnt."
            + (f" So is an image of fewer than {FEWEST_LETTERS} letter-like components over "
               f"{params.closeup_few_letters_above:g} px (one short formula filling the frame)."
               if params.closeup_few_letters_above > 0 else "")
            if params.closeup_letters_above > 0 else "")
         + (f" A page whose letters are over {params.confirm_letters_above:g} px (and no close-up) keeps only the "
            "regions a second pass finds too, the page shrunk until its letters are "
            f"{params.confirm_letters_to:g} px (quads overlapping by IoU {params.confirm_iou:g}): large text that "
            "the net takes for formulas is text at a page's size." if params.confirm_letters_above > 0 else "")),
        (f"- Postprocessing: kernel > {params.kernel_threshold}, blobs with mean probability > "
         f"{params.box_threshold}, grown back by the exact inverse of the training shrink ({params.shrink}); "
         f"handwritten when the mean handwritten probability > {params.handwritten_threshold}"
         + (f"; turns below {params.min_orientation_confidence} confidence read as upright"
            if params.min_orientation_confidence > 0 else "")
         + (f"; pieces of one line joined across gaps up to {params.merge_gap} line heights when their heights "
            f"overlap by {params.merge_overlap} of the shorter (`susik.runtime.line_merge`)" if params.merge_gap > 0
            else "")
         + (f"; the recognizer's crop reaches {params.crop_margin_along} line heights past each end of a region "
            f"and {params.crop_margin_across} above and below it" if params.crop_margin_along or
            params.crop_margin_across else "")
         + (f"; a printed region read less confidently than {params.recrop_below} is read again from "
            f"{'a crop' if len(params.recrop_along) == 1 else 'crops'} reaching "
            f"{', '.join(f'{along:g}' for along in params.recrop_along)} line heights past each end, the surer "
            "reading kept (`susik.Pipeline`)" if params.recrop_below > 0 and params.recrop_along else "") + "."),
        "",
        "## Training",
        (f"- Command: `{record.training.command}`; step {record.training.step}; the run's best held-out F1 "
         f"{round(record.training.best_metric or 0.0, 4)} (in-training evaluation on a subset of the held-out "
         "pages, at the training config's thresholds; the exported step may be another)."),
        "- Data: " + ("synthetic pages (composed worksheet photos with exact quads) and the pages of a manifest "
                      "listed below" if any(" pages of " in source["name"] for source in record.training.sources)
                      else "synthetic pages only (composed worksheet photos with exact quads)") + ".",
    ]
    lines += averaged_lines(record.training.averaged_from, "  ")
    lines += ["", *data_section(record.training.sources)]
    lines += ["", "## Measured", ""]
    if record.metrics:
        lines += [f"- {key}: {json.dumps(value, ensure_ascii=False)}" for key, value in record.metrics.items()]
    else:
        lines += ["- nothing recorded: run `benchmarks/bench_pipeline.py --out FILE`, then export with `--metrics FILE`."]
    lines += ["", "## Files", ""]
    lines += [f"- `{e.path}` — {e.bytes / 1e6:.2f} MB, sha256 `{e.sha256}`" for e in record.files.values()]
    return "\n".join(lines) + "\n"


def _sources(train_config: dict) -> list[dict[str, str]]:
    generate = train_config.get("generate_train") or {}
    sources = [{"name": "synthetic pages (susik.data.compose, Nanum fonts, TeX fonts)", "license": "generated"}]
    if generate.get("corpus"):
        sources.append({"name": f"printed formulas rendered from {generate['corpus']} + K-12 generator",
                        "license": "corpus licence unknown; research use"})
    if generate.get("handwritten"):
        sources.append({"name": f"handwriting from {generate['handwritten']} (CROHME)",
                        "license": "CC BY-NC-SA 3.0 (believed): non-commercial, share-alike"})
    pages = _manifest_sources(Path(str(train_config["train_pages"])))
    if not generate:  # pages the run did not make (another run's caches, labelled photos): as each page says
        return sources + pages
    # real photos mixed into the pages the run made (scripts/photo_detector_pages.py) say what they are
    return sources + [page for page in pages if not page["name"].startswith((SYNTHETIC_PAGES, "pages of "))]


def _manifest_sources(manifest: Path) -> list[dict[str, str]]:
    if not manifest.is_file():
        return [{"name": f"pages of {manifest} (not found at export)", "license": "unknown"}]
    counts: dict[tuple[str, str], int] = {}
    with manifest.open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                page = json.loads(line)
                key = (str(page.get("source", "unknown")), str(page.get("license", "unknown")))
                counts[key] = counts.get(key, 0) + 1
    return [{"name": f"{source}: {count} pages of {manifest}", "license": license}
            for (source, license), count in sorted(counts.items())]
