"""The torch detector on tiny configs: shapes, targets, a few training steps, checkpoints, ONNX export."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from susik.eval.detect_match import polygon_iou
from susik.models.detector import DetectorConfig, FormulaDetector, count_parameters
from susik.models.detector_data import (
    PageRecord,
    SampleConfig,
    draw_targets,
    end_zones,
    make_sample,
    read_pages,
)
from susik.models.train_detector import (
    Batch,
    LossWeights,
    TrainDetectorConfig,
    detector_loss,
    learning_rate,
    load_model,
    make_batch,
    train,
    train_step,
)
from susik.runtime.detector import DetectParams, OnnxDetector, postprocess

TINY = DetectorConfig(widths=(8, 8, 8, 16, 16), depths=(0, 1, 1, 1, 1), fpn=8, head=8)


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_forward_shapes_and_size_of_the_default_net():
    model = FormulaDetector(TINY).eval()
    maps, orientation = model(torch.zeros(2, 3, 64, 96))
    assert maps.shape == (2, 2, 32, 48) and orientation.shape == (2, 4)
    assert count_parameters(FormulaDetector()) < 1_000_000


def test_targets_round_trip_through_postprocessing():
    quad = np.array([[40, 60], [240, 60], [240, 84], [40, 84]], float)
    tilted = np.array([[30, 150], [200, 120], [204, 150], [34, 180]], float)
    kernel, mask, hand, kind_mask, *_ = draw_targets([quad, tilted], (False, True), 256, 0.5)
    assert mask.all() and kind_mask.sum() > kernel.sum() > 0
    page = postprocess(kernel, hand, np.eye(4)[0], 1.0, (256, 256), DetectParams())
    assert len(page.detections) == 2
    for detection, truth, kind in zip(page.detections, [quad, tilted], ["printed", "handwritten"], strict=True):
        assert polygon_iou(detection.quad.points, truth) > 0.85
        assert detection.kind == kind


def test_end_zones_cover_each_end_of_a_tilted_formula():
    along = np.array([np.cos(0.3), np.sin(0.3)])
    across = np.array([-along[1], along[0]])
    start = np.array([50.0, 40.0])
    quad = np.array([start, start + 200 * along, start + 200 * along + 20 * across, start + 20 * across])
    zones = end_zones(quad)
    assert len(zones) == 2
    spans = sorted(((zone - start) @ along).min().round(3) for zone in zones)
    widths = [np.ptp((zone - start) @ along).round(3) for zone in zones]
    assert spans == [-10.0, 180.0] and widths == [30.0, 30.0]  # a line height in, half a line height out
    assert all(np.ptp((zone - start) @ across).round(3) == 20.0 for zone in zones)


def test_the_start_zone_comes_first_whichever_way_the_formula_runs():
    quad = np.array([[50, 40], [250, 40], [250, 60], [50, 60]], float)
    for points, start_x in ((quad, 50.0), (np.roll(quad, 2, axis=0), 250.0)):  # upright; turned half round
        start_zone, end_zone = end_zones(points, inside=2.0)
        assert abs(start_zone[:, 0].mean() - start_x) < abs(end_zone[:, 0].mean() - start_x)
        assert np.ptp(start_zone[:, 0]).round(3) == 50.0  # two line heights in, half a line height out


def test_start_zones_are_drawn_for_printed_formulas_only():
    quad = np.array([[8, 24], [120, 24], [120, 40], [8, 40]], float)
    *_, printed_starts = draw_targets([quad], (False,), 128, 0.5)
    *_, handwritten_starts = draw_targets([quad], (True,), 128, 0.5)
    assert printed_starts[:, :18].sum() > 0 and printed_starts[:, 25:].sum() == 0
    assert handwritten_starts.sum() == 0


def test_end_weight_makes_a_missed_formula_end_cost_more():
    quad = np.array([[8, 24], [120, 24], [120, 40], [8, 40]], float)
    targets = draw_targets([quad], (False,), 128, 0.5)
    kernel, ends = targets[0], targets[4]
    assert ends[:, :10].sum() > 0 and ends[:, 25:50].sum() == 0  # near the start, not in the middle
    logits = torch.from_numpy(np.where(kernel > 0, 4.0, -4.0).astype(np.float32))
    logits[:, :10] = -4.0  # the kernel misses the formula's first glyph
    batch = Batch(torch.zeros(1, 3, 128, 128), *(torch.from_numpy(m[None]) for m in targets), torch.tensor([0]))
    maps = torch.stack([logits, torch.zeros_like(logits)])[None]

    def kernel_loss(ends_weight: float, starts_weight: float = 1.0) -> float:
        weights = LossWeights(kernel_ends=ends_weight, kernel_starts=starts_weight)
        return float(detector_loss(maps, torch.zeros(1, 4), batch, weights)["bce"])

    assert kernel_loss(4.0) > 2.5 * kernel_loss(1.0)
    assert kernel_loss(4.0, 3.0) > 2.0 * kernel_loss(4.0)  # the missed glyph lies in the start zone too


def _page_file(tmp_path: Path) -> Path:
    image = np.full((200, 300, 3), 235, np.uint8)
    cv2.rectangle(image, (30, 40), (150, 60), (20, 20, 20), -1)
    cv2.imwrite(str(tmp_path / "page.jpg"), image)
    region = {"quad": [[28, 38], [152, 38], [152, 62], [28, 62]], "polygon": [[28, 38], [152, 38], [152, 62], [28, 62]],
              "latex": "x", "kind": "printed"}
    record = {"image": "page.jpg", "width": 300, "height": 200, "orientation": 0, "regions": [region],
              "conditions": ["clean"], "source": "test", "license": "test"}
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(json.dumps(record) + "\n")
    return manifest


def test_quarter_turned_samples_carry_their_orientation_and_targets(tmp_path):
    (page,) = read_pages(_page_file(tmp_path))
    config = SampleConfig(size=320, scale=(1.0, 1.0), quarter_turn_share=1.0, gray_share=0.0)
    seen = set()
    for seed in range(8):
        sample = make_sample(page, config, np.random.default_rng(seed))
        seen.add(sample.orientation)
        ys, xs = np.nonzero(sample.kernel)
        tall = np.ptp(ys) > np.ptp(xs)
        assert tall == (sample.orientation in (1, 3))  # a wide formula stands upright on a 90/270 page
        # the kernel sits on the dark bar in the image
        image = sample.image.mean(axis=0)
        assert image[ys * 2, xs * 2].mean() < image.mean() - 1.0
    assert len(seen) >= 2


def test_zoomed_samples_show_formulas_larger(tmp_path):
    (page,) = read_pages(_page_file(tmp_path))

    def kernel_width(config: SampleConfig) -> int:
        sample = make_sample(page, config, np.random.default_rng(0))
        return int(np.ptp(np.nonzero(sample.kernel)[1]))

    plain = SampleConfig(size=320, scale=(1.0, 1.0), quarter_turn_share=0.0, focus_share=1.0)
    zoomed = plain.model_copy(update={"zoom_share": 1.0, "zoom": (2.0, 2.0)})
    assert abs(kernel_width(zoomed) - 2 * kernel_width(plain)) <= 2
    # no zoom drawn at share 0: an older config's samples come out as before
    never = plain.model_copy(update={"zoom": (2.0, 2.0)})
    assert np.array_equal(make_sample(page, never, np.random.default_rng(1)).image,
                          make_sample(page, plain, np.random.default_rng(1)).image)


def test_alone_samples_fill_the_crop_with_one_formula_and_label_nothing_on_the_grey(tmp_path):
    (page,) = read_pages(_page_file(tmp_path))
    plain = SampleConfig(size=320, scale=(1.0, 1.0), quarter_turn_share=0.0, focus_share=1.0, gray_share=0.0)
    alone = plain.model_copy(update={"alone_share": 1.0, "alone_margin": (0.5, 0.5), "alone_fill": (0.9, 0.9)})
    for seed in range(4):
        sample = make_sample(page, alone, np.random.default_rng(seed))
        ys, xs = np.nonzero(sample.kind_mask)
        # the 124 px formula with half a line height (12 px) each side: a 149 px window scaled to 90% of 320 px
        assert abs(np.ptp(xs) * 2 - 124 * 0.9 * 320 / 149) <= 4
        assert sample.kernel.any() and not sample.kernel[sample.kind_mask == 0].any()
        image = sample.image.mean(axis=0)
        assert image[ys * 2, xs * 2].mean() < image.max() - 2.0  # the label sits on the ink, not the paper
    # a neighbour the window cuts keeps its label only inside the window
    record = json.loads(_page_file(tmp_path).read_text())
    wide = {**record["regions"][0], "quad": [[28, 38], [152, 38], [152, 62], [28, 62]]}
    neighbour = {**wide, "polygon": [[150, 100], [290, 100], [290, 124], [150, 124]]}
    record["regions"] = [{**wide, "polygon": wide["quad"]}, neighbour]
    (tmp_path / "two.jsonl").write_text(json.dumps(record) + "\n")
    (two,) = read_pages(tmp_path / "two.jsonl")
    for seed in range(6):
        sample = make_sample(two, alone.model_copy(update={"alone_margin": (2.0, 2.0)}), np.random.default_rng(seed))
        grey = sample.image.mean(axis=0)
        flat = np.abs(grey - grey[0, 0]) < 1e-6
        ys, xs = np.nonzero(sample.kind_mask)
        assert not flat[ys * 2, xs * 2].all()
        assert not (flat[ys * 2, xs * 2] & flat[ys * 2 + 1, xs * 2 + 1]).sum() > 0.05 * len(ys)
    # no draw at share 0: an older config's samples come out as before
    never = plain.model_copy(update={"alone_fill": (0.5, 0.5)})
    assert np.array_equal(make_sample(page, never, np.random.default_rng(1)).image,
                          make_sample(page, plain, np.random.default_rng(1)).image)


def test_a_few_steps_reduce_the_loss_and_checkpoints_resume(tmp_path):
    manifest = _page_file(tmp_path)
    config = TrainDetectorConfig(
        model=TINY, train_pages=manifest, val_pages=manifest, sample=SampleConfig(size=96, scale=(0.5, 0.6)),
        batch_size=2, steps=4, lr=1e-2, warmup=1, log_every=2, eval_every=2, eval_pages=1, out=tmp_path / "run",
    )
    torch.manual_seed(0)
    model = FormulaDetector(TINY)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    batch = make_batch(read_pages(manifest), config, 0)
    first = train_step(model, optimizer, batch, config.loss)["loss"]
    for _ in range(10):
        last = train_step(model, optimizer, batch, config.loss)["loss"]
    assert last < 0.8 * first

    logs = []
    best = train(config, log=logs.append)
    assert best.is_file() and (tmp_path / "run" / "last.pt").is_file()
    assert any("eval" in entry for entry in logs)
    resumed = []
    train(config.model_copy(update={"steps": 6}), resume=tmp_path / "run" / "last.pt", log=resumed.append)
    assert resumed[0]["step"] == 4 and resumed[-1]["step"] == 6
    model, meta = load_model(tmp_path / "run" / "last.pt")
    assert meta["step"] == 6 and DetectorConfig.model_validate(meta["model_config"]) == TINY


def test_init_warm_starts_a_new_run_from_another_runs_weights(tmp_path):
    manifest = _page_file(tmp_path)
    config = TrainDetectorConfig(
        model=TINY, train_pages=manifest, val_pages=None, sample=SampleConfig(size=96, scale=(0.5, 0.6)),
        batch_size=2, steps=2, lr=1e-2, warmup=1, log_every=1, eval_every=2, out=tmp_path / "first",
    )
    train(config, log=lambda entry: None)
    first, _ = load_model(tmp_path / "first" / "last.pt")
    logs = []
    second = config.model_copy(update={"out": tmp_path / "second", "steps": 1, "lr": 1e-9})
    train(second, log=logs.append, init=tmp_path / "first" / "last.pt")
    assert logs[0] == {"init": str(tmp_path / "first" / "last.pt"), "its_step": 2}
    warm, meta = load_model(tmp_path / "second" / "last.pt")
    assert meta["step"] == 1  # a new run: its own step count and schedule
    moved = dict(warm.named_parameters())
    for name, weight in first.named_parameters():  # a near-zero rate barely moves the inherited weights
        assert torch.allclose(moved[name], weight, atol=1e-5), name
    other = config.model_copy(update={"model": DetectorConfig(widths=(8, 8, 8, 16, 24), depths=(0, 1, 1, 1, 1),
                                                              fpn=8, head=8), "out": tmp_path / "third"})
    with pytest.raises(ValueError, match="another architecture"):
        train(other, log=lambda entry: None, init=tmp_path / "first" / "last.pt")
    with pytest.raises(ValueError, match="not both"):
        train(second, resume=tmp_path / "first" / "last.pt", init=tmp_path / "first" / "last.pt")


def test_loss_is_finite_on_a_page_without_formulas():
    model = FormulaDetector(TINY)
    page = PageRecord(cv2.imencode(".jpg", np.full((64, 64, 3), 200, np.uint8))[1].tobytes(), 0, (), ())
    sample = make_sample(page, SampleConfig(size=64), np.random.default_rng(0))
    batch = Batch(*(torch.from_numpy(getattr(sample, name)[None]) for name in
                    ("image", "kernel", "kernel_mask", "handwritten", "kind_mask", "ends", "starts")),
                  torch.tensor([0]))
    maps, orientation = model(batch.images)
    losses = detector_loss(maps, orientation, batch, TrainDetectorConfig(train_pages=Path("x")).loss)
    assert all(torch.isfinite(value) for value in losses.values())


def test_learning_rate_warms_up_then_decays():
    config = TrainDetectorConfig(train_pages=Path("x"), steps=100, warmup=10, lr=1.0)
    rates = [learning_rate(step, config) for step in range(100)]
    assert rates[0] == pytest.approx(0.1) and rates[9] == pytest.approx(1.0)
    assert rates[50] < rates[10] and rates[99] < 0.05


def test_tiny_random_model_exports_to_onnx_and_matches_torch(tmp_path):
    from susik.runtime.detect_export import export_onnx

    torch.manual_seed(0)
    model = FormulaDetector(TINY).eval()
    path = export_onnx(model, tmp_path / "detector.onnx")
    x = np.random.default_rng(0).normal(size=(1, 3, 96, 128)).astype(np.float32)
    detector = OnnxDetector(path, threads=1)
    maps, orientation = detector._run(x)
    with torch.no_grad():
        want_maps, want_orientation = model(torch.from_numpy(x))
    assert np.abs(maps - torch.sigmoid(want_maps).numpy()).max() < 1e-4
    assert np.abs(orientation - torch.softmax(want_orientation, 1).numpy()).max() < 1e-5
    # any page size works through the predictor (downscale + pad to 32)
    assert len(detector([np.zeros((50, 70, 3), np.uint8), np.zeros((900, 400), np.uint8)])) == 2


def test_export_writes_a_hash_checked_record_that_loads(tmp_path):
    from susik.models.registry import IntegrityError
    from susik.models.train_detector import save_checkpoint
    from susik.runtime.detect_export import export_detector
    from susik.runtime.detector import load_detector_record

    config = TrainDetectorConfig(model=TINY, train_pages=Path("pages.jsonl"), params=DetectParams(long_side=320))
    model = FormulaDetector(TINY)
    optimizer = torch.optim.AdamW(model.parameters())
    save_checkpoint(tmp_path / "best.pt", model, optimizer, 7, 0.5, config, "abc", "susik train detector --x")
    path = export_detector(tmp_path / "best.pt", tmp_path / "models", metrics={"f1": 0.5})
    record = load_detector_record(path.parent)
    assert record.params.long_side == 320 and record.training.step == 7 and record.training.command.endswith("--x")
    assert record.architecture["widths"] == list(TINY.widths) and record.metrics == {"f1": 0.5}
    assert "0.5" in (path.parent / "MODEL_CARD.md").read_text()
    assert OnnxDetector.load(path.parent).params.long_side == 320
    (path.parent / "detector.onnx").write_bytes(b"tampered")
    with pytest.raises(IntegrityError):
        OnnxDetector.load(path.parent)


def test_pages_the_run_did_not_make_carry_their_own_licences_into_the_record(tmp_path):
    from susik.models.train_detector import save_checkpoint
    from susik.runtime.detect_export import export_detector
    from susik.runtime.detector import load_detector_record

    pages = tmp_path / "pages.jsonl"
    page = {"image": "a.jpg", "regions": [], "source": "crohme-pages", "license": "CC BY-NC-SA 3.0"}
    pages.write_text("\n".join(json.dumps(page | {"image": f"{i}.jpg"}) for i in range(3)) + "\n")
    config = TrainDetectorConfig(model=TINY, train_pages=pages, params=DetectParams(long_side=320))
    save_checkpoint(tmp_path / "last.pt", FormulaDetector(TINY), torch.optim.AdamW(FormulaDetector(TINY).parameters()),
                    1, 0.5, config, "abc", "susik train detector")
    sources = load_detector_record(export_detector(tmp_path / "last.pt", tmp_path / "models").parent).training.sources
    assert sources[-1] == {"name": f"crohme-pages: 3 pages of {pages}", "license": "CC BY-NC-SA 3.0"}
    pages.unlink()
    sources = load_detector_record(export_detector(tmp_path / "last.pt", tmp_path / "again").parent).training.sources
    assert sources[-1]["license"] == "unknown"


def test_photos_mixed_into_the_generated_pages_are_named_with_their_licence(tmp_path):
    from susik.models.detector_data import SYNTHETIC_PAGES, GenerateConfig
    from susik.models.train_detector import save_checkpoint
    from susik.runtime.detect_export import export_detector
    from susik.runtime.detector import load_detector_record

    pages = tmp_path / "pages.jsonl"
    made = {"image": "a.jpg", "regions": [], "source": SYNTHETIC_PAGES, "license": "synthetic"}
    photo = {"image": "/p.jpg", "regions": [], "source": "hme100k", "license": "research use only"}
    pages.write_text("\n".join(json.dumps(page) for page in (made, made, photo)) + "\n")
    config = TrainDetectorConfig(model=TINY, train_pages=pages, params=DetectParams(long_side=320),
                                 generate_train=GenerateConfig(n=2, corpus=Path("corpus.txt")))
    save_checkpoint(tmp_path / "last.pt", FormulaDetector(TINY), torch.optim.AdamW(FormulaDetector(TINY).parameters()),
                    1, 0.5, config, "abc", "susik train detector")
    sources = load_detector_record(export_detector(tmp_path / "last.pt", tmp_path / "models").parent).training.sources
    names = [source["name"] for source in sources]
    assert names[0].startswith("synthetic pages") and any("corpus.txt" in name for name in names)
    assert sources[-1] == {"name": f"hme100k: 1 pages of {pages}", "license": "research use only"}
    assert not any(name.startswith(SYNTHETIC_PAGES) for name in names)  # the generated pages are named once


@pytest.mark.skipif(__import__("shutil").which("latex") is None, reason="needs TeX (latex + dvipng)")
def test_page_cache_follows_the_plan_and_is_downscaled(tmp_path):
    from susik.models.detector_data import GenerateConfig, generate_pages

    spec = Path(__file__).resolve().parents[1] / "specs" / "dataset.yaml"
    config = GenerateConfig(n=2, seed=3, spec=spec, long_side=400, workers=1)
    manifest = generate_pages(config, tmp_path / "cache")
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert len(records) == 2
    for record in records:
        image = cv2.imread(str(tmp_path / "cache" / record["image"]))
        assert max(image.shape[:2]) == 400 == max(record["width"], record["height"])
        assert record["regions"] and all(r["kind"] == "printed" for r in record["regions"])
        quads = np.array([r["quad"] for r in record["regions"]])
        assert quads.min() >= -1 and quads[..., 0].max() <= record["width"] and quads[..., 1].max() <= record["height"]


def test_page_cache_keeps_choice_labels_out_of_regions(tmp_path):
    """Corpus lines that start with `\\text { C. }` give regions holding the formula alone."""
    from susik.models.detector_data import GenerateConfig, generate_pages

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\\text { C. } x+1\n\\text { (2) } y=3\n")
    spec = Path(__file__).resolve().parents[1] / "specs" / "dataset.yaml"
    config = GenerateConfig(n=2, seed=3, spec=spec, corpus=corpus, generated_ratio=0.0, long_side=400, workers=1)
    manifest = generate_pages(config, tmp_path / "cache")
    latex = {r["latex"] for line in manifest.read_text().splitlines() for r in json.loads(line)["regions"]}
    assert latex and latex <= {"x+1", "y=3"}


def test_page_licence_names_every_source_with_its_licence(tmp_path):
    from susik.data.synth import CORPUS_LICENSE, GENERATED_LICENSE
    from susik.models.detector_data import GenerateConfig, license_note

    handwriting = tmp_path / "train.jsonl"
    handwriting.write_text(json.dumps({"image": "a.png", "latex": "x", "license": "CC BY-NC-SA 3.0"}) + "\n")
    note = license_note(GenerateConfig(corpus=tmp_path / "corpus.txt", generated_ratio=0.5, handwritten=handwriting))
    assert GENERATED_LICENSE in note and CORPUS_LICENSE in note and "train.jsonl: CC BY-NC-SA 3.0" in note
    only_generated = license_note(GenerateConfig())
    assert GENERATED_LICENSE in only_generated and CORPUS_LICENSE not in only_generated
    assert "handwriting" not in only_generated


def test_averaged_detector_checkpoints_hold_the_mean_and_export(tmp_path):
    from typer.testing import CliRunner

    from susik.cli import app
    from susik.models.train_detector import save_checkpoint
    from susik.runtime.detect_export import export_detector
    from susik.runtime.detector import load_detector_record

    config = TrainDetectorConfig(model=TINY, train_pages=tmp_path / "pages.jsonl", params=DetectParams(long_side=320))
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = FormulaDetector(TINY)
        paths.append(tmp_path / f"{seed}.pt")
        save_checkpoint(paths[-1], model, torch.optim.AdamW(model.parameters()), 10 + seed, 0.5, config, "v",
                        f"susik train detector #{seed}")
    out = tmp_path / "avg.pt"
    args = ["train", "average-detector", *map(str, paths), "--out", str(out), "--weight", "3", "--weight", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    states = [torch.load(p, weights_only=False)["model"] for p in paths]
    averaged = torch.load(out, weights_only=False)
    name = next(k for k, v in states[0].items() if v.is_floating_point() and v.numel() > 1)
    assert torch.allclose(averaged["model"][name], 0.75 * states[0][name] + 0.25 * states[1][name])
    assert [entry["weight"] for entry in averaged["averaged_from"]] == [0.75, 0.25]
    record = load_detector_record(export_detector(out, tmp_path / "models").parent)
    assert record.training.command.startswith("susik train average-detector") and record.training.step == 10
    bad = CliRunner().invoke(app, ["train", "average-detector", str(paths[0]), str(tmp_path / "pages.jsonl"),
                                   "--out", str(tmp_path / "x.pt")])
    assert bad.exit_code == 1 and "error:" in bad.output
