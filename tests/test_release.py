"""The release pipeline: its pure parts, its steps, and (slow) the tiny profile end to end with DVC in a
fresh git repository: everything runs once, nothing runs again, and a change re-runs only its downstream."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from susik.cli import app
from susik.data.manifest import read_manifest
from susik.data.page_crops import write_page_crops
from susik.release.commands import promotion_decision
from susik.release.profile import ReleaseError, load_profile, merge, training_configs
from susik.release.runner import stage_count

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "release_tiny.yaml"
runner = CliRunner()


def test_merge_lays_mappings_over_each_other_and_replaces_the_rest():
    base = {"model": {"width": 8, "depth": 2}, "steps": 100, "data": {"sources": [1, 2]}}
    merged = merge(base, {"model": {"width": 16}, "steps": 4, "data": {"sources": [3]}})
    assert merged == {"model": {"width": 16, "depth": 2}, "steps": 4, "data": {"sources": [3]}}
    assert base["model"]["width"] == 8  # the base is not changed


def test_the_tiny_profile_validates_and_dvc_yaml_has_a_stage_per_step():
    profile = load_profile(TINY)
    assert profile.registry.alias == "champion"
    assert set(profile.recognizer.sources) == {"synth", "real", "composed", "corrections"}
    dvc_yaml = yaml.safe_load((REPO / "dvc.yaml").read_text())
    # synth, crops x2 (train, val); import x1; handwriting x1; register, promote x2 (recognizer, detector);
    # 9 single stages
    assert stage_count(dvc_yaml, profile.model_dump(mode="json")) == 2 + 2 + 1 + 1 + 2 + 2 + 9


@pytest.mark.parametrize("change, message", [
    ({"recognizer": {"sources": {"nowhere": {"weight": 1.0}}}}, "unknown data: nowhere"),
    ({"imports": {"synth": {"source": "folder", "src": "x"}}}, "may not be named synth"),
    ({"handwriting": {"real": {"glyphs": "real", "count": 1}}}, "share a name with imports"),
    ({"handwriting": {"composed": {"glyphs": "nowhere", "count": 1}}}, "glyphs names no import: nowhere"),
    ({"gate": {"requirements": "specs/requirements.yaml", "typo": 1}}, "gate.typo"),
])
def test_a_bad_profile_is_one_clear_error(tmp_path, change, message):
    raw = merge(yaml.safe_load(TINY.read_text()), change)
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ReleaseError, match=message):
        load_profile(tmp_path / "p.yaml")


def _crop_manifest(path: Path, count: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [{"image": f"{i}.png", "latex": "x", "source": "t", "license": "CC0"} for i in range(count)]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_training_configs_point_into_the_pipeline_and_drop_empty_sources(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # the profile names its base configs from the repository root
    data = tmp_path / "data"
    _crop_manifest(data / "crops/train/manifest.jsonl", 3)
    _crop_manifest(data / "import/real/manifest.jsonl", 2)
    _crop_manifest(data / "handwriting/composed/manifest.jsonl", 4)
    _crop_manifest(data / "corrections/manifest.jsonl", 0)  # nobody corrected anything yet
    profile = load_profile(TINY)
    recognizer, detector = training_configs(profile, data)
    sources = recognizer["data"]["sources"]
    assert [(Path(s["manifest"]), s["weight"], s["augment"]) for s in sources] == [
        (data / "crops/train/manifest.jsonl", 1.0, "none"),
        (data / "import/real/manifest.jsonl", 0.5, "handwritten"),
        (data / "handwriting/composed/manifest.jsonl", 0.5, "handwritten")]
    assert Path(recognizer["data"]["val_manifest"]) == data / "crops/val/manifest.jsonl"
    assert recognizer["steps"] == 4 and recognizer["data"]["val_limit"] == 8 and recognizer["mlflow"] is False
    assert recognizer["model"]["d_model"] == 64  # from the base config, untouched by the override
    assert Path(detector["train_pages"]) == data / "pages/train/manifest.jsonl"
    assert detector["generate_train"] is None and detector["steps"] == 4 and detector["model"]["fpn"] == 8
    _crop_manifest(data / "import/real/manifest.jsonl", 0)
    _crop_manifest(data / "handwriting/composed/manifest.jsonl", 0)
    (data / "crops/train/manifest.jsonl").write_text("")
    with pytest.raises(ReleaseError, match="nothing to train on"):
        training_configs(profile, data)


def test_promotion_needs_a_passed_gate():
    assert promotion_decision({"passed": True, "failed": []}) == (True, "gate passed")
    promote, why = promotion_decision({"passed": False, "failed": ["exp_rate", "le1"]})
    assert not promote and why == "gate failed: 2 requirement(s): exp_rate, le1"
    assert promotion_decision({}) == (False, "gate failed")  # a report without a verdict promotes nothing


def test_promote_step_records_why_it_did_not_promote(tmp_path):
    registered = tmp_path / "recognizer.json"
    registered.write_text(json.dumps({"name": "recognizer", "version": "3", "run_id": "r", "folder": "m"}))
    gate = tmp_path / "gate.json"
    gate.write_text(json.dumps({"passed": False, "failed": ["exp_rate"]}))
    receipt = tmp_path / "promotion.json"
    # no MLflow store exists at this URI: a failed gate must not even open one
    result = runner.invoke(app, ["release", "promote", str(registered), "--gate", str(gate), "--receipt",
                                 str(receipt), "--tracking-uri", f"sqlite:///{tmp_path / 'none' / 'm.db'}"])
    assert result.exit_code == 0, result.output
    assert json.loads(receipt.read_text()) == {
        "name": "recognizer", "version": "3", "alias": "champion", "promoted": False,
        "reason": "gate failed: 1 requirement(s): exp_rate", "previous": None}
    assert not (tmp_path / "none").exists()


def test_release_names_a_missing_input_in_one_line_before_running_anything(tmp_path):
    shutil.copy(REPO / "dvc.yaml", tmp_path)
    for folder in ("specs", "configs"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    result = runner.invoke(app, ["release", "--config", str(TINY), "--repo", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.strip() == "error: imports.real.src: fixtures/real does not exist"
    assert not (tmp_path / ".dvc").exists() and not (tmp_path / "release").exists()
    result = runner.invoke(app, ["release", "--repo", str(tmp_path)])
    assert result.exit_code == 1 and "--config PROFILE is required" in result.output


def test_page_crops_cut_each_quad_upright(tmp_path):
    page = np.full((200, 300, 3), 255, np.uint8)
    cv2.rectangle(page, (50, 40), (170, 80), (0, 0, 0), -1)  # a 120 x 40 dark formula box
    cv2.imwrite(str(tmp_path / "p.png"), page)
    region = {"quad": [[50, 40], [170, 40], [170, 80], [50, 80]], "latex": "x+1", "kind": "printed"}
    line = {"image": "p.png", "width": 300, "height": 200, "orientation": 0, "regions": [region, region],
            "conditions": ["blur"], "source": "synth", "license": "CC0"}
    (tmp_path / "pages.jsonl").write_text(json.dumps(line) + "\n")
    assert write_page_crops(tmp_path / "pages.jsonl", tmp_path / "crops", height=16) == 2
    crops = list(read_manifest(tmp_path / "crops" / "manifest.jsonl"))
    assert [(c.latex, c.kind, c.conditions, c.license) for c in crops] == [
        ("x+1", "printed", ("blur",), "CC0")] * 2
    image = cv2.imread(str(tmp_path / "crops" / crops[0].image), cv2.IMREAD_GRAYSCALE)
    assert image.shape == (32, 96)  # at most twice `height` high, the quad's 3:1 aspect kept
    assert image.mean() < 10  # the dark box, nothing of the white page around it


def test_page_crops_margin_takes_in_some_page_and_repeats_itself_and_handwriting_loses_mbox(tmp_path):
    page = np.full((200, 300, 3), 255, np.uint8)
    cv2.rectangle(page, (50, 40), (170, 80), (0, 0, 0), -1)
    cv2.imwrite(str(tmp_path / "p.png"), page)
    quad = [[50, 40], [170, 40], [170, 80], [50, 80]]
    region = {"quad": quad, "latex": r"\mbox { x } + 1", "kind": "handwritten"}
    line = {"image": "p.png", "width": 300, "height": 200, "orientation": 0, "regions": [region] * 3,
            "conditions": [], "source": "synth", "license": "CC0"}
    (tmp_path / "pages.jsonl").write_text(json.dumps(line) + "\n")
    shapes = []
    for name in ("a", "b"):
        write_page_crops(tmp_path / "pages.jsonl", tmp_path / name, height=16, margin=0.5)
        images = [cv2.imread(str(tmp_path / name / f"images/p000000_r{r:02d}.png"), cv2.IMREAD_GRAYSCALE)
                  for r in range(3)]
        shapes.append([i.shape for i in images])
        # white page shows around the box: a quad grows by up to half a line height on each side
        assert max((i > 128).mean() for i in images) > 0.2
    assert shapes[0] == shapes[1]  # same pages, same draws
    labels = {c.latex for c in read_manifest(tmp_path / "a" / "manifest.jsonl")}
    assert labels == {"x  + 1"}  # CROHME's \mbox wrapper taken off a handwritten label
    assert len(set(shapes[0])) > 1  # each region draws its own margin


def test_page_crops_run_on_reach_past_one_end_into_the_text_beside_the_formula(tmp_path):
    page = np.full((200, 400, 3), 255, np.uint8)
    cv2.rectangle(page, (150, 40), (250, 60), (0, 0, 0), -1)  # the formula: 100 x 20
    cv2.rectangle(page, (100, 45), (140, 55), (128, 128, 128), -1)  # grey "text" before it
    cv2.rectangle(page, (260, 45), (300, 55), (128, 128, 128), -1)  # and after it
    cv2.imwrite(str(tmp_path / "p.png"), page)
    region = {"quad": [[150, 40], [250, 40], [250, 60], [150, 60]], "latex": "x", "kind": "printed"}
    line = {"image": "p.png", "width": 400, "height": 200, "orientation": 0, "regions": [region] * 40,
            "conditions": [], "source": "synth", "license": "CC0"}
    (tmp_path / "pages.jsonl").write_text(json.dumps(line) + "\n")
    write_page_crops(tmp_path / "pages.jsonl", tmp_path / "crops", height=16, run_on=3.0)
    images = [cv2.imread(str(tmp_path / "crops" / f"images/p000000_r{r:02d}.png"), cv2.IMREAD_GRAYSCALE)
              for r in range(40)]
    plain = [i for i in images if i.shape == (20, 100)]  # the quad itself (below twice `height`: kept)
    longer = [i for i in images if i.shape[0] == 20 and i.shape[1] > 100]
    assert plain and longer and len(plain) + len(longer) == 40  # about half run on; none is cut shorter
    grey = [((i > 100) & (i < 160)).mean(axis=0) > 0.2 for i in longer]  # columns that show the grey text
    assert any(g[: g.size // 3].any() and not g[-g.size // 3 :].any() for g in grey)  # run on at the start
    assert any(g[-g.size // 3 :].any() and not g[: g.size // 3].any() for g in grey)  # or at the end
    assert {c.latex for c in read_manifest(tmp_path / "crops" / "manifest.jsonl")} == {"x"}


# --- the tiny profile end to end --------------------------------------------------------------------------


def _release_repo(root: Path) -> Path:
    """A fresh git repository holding what the tiny profile reads, with its two stand-in inputs."""
    (root / "specs").mkdir(parents=True)
    (root / "configs").mkdir()
    shutil.copy(REPO / "dvc.yaml", root)
    for name in ("dataset.yaml", "requirements.yaml"):
        shutil.copy(REPO / "specs" / name, root / "specs")
    for name in ("release_tiny.yaml", "recognizer_tiny.yaml", "detector_small.yaml"):
        shutil.copy(REPO / "configs" / name, root / "configs")
    result = runner.invoke(app, ["release", "tiny-inputs", "--repo", str(root)])
    assert result.exit_code == 0, result.output
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    return root


def _release(repo: Path) -> tuple[dict, float]:
    started = time.perf_counter()
    profile = repo / "configs/release_tiny.yaml"
    result = runner.invoke(app, ["release", "--config", str(profile), "--repo", str(repo)])
    seconds = time.perf_counter() - started
    assert result.exit_code == 0, result.output + (repo / "release/repro.log").read_text()[-3000:]
    return json.loads((repo / "release/last_run.json").read_text()), seconds


@pytest.mark.slow  # every stage of the lifecycle, twice DVC at rest, once after a change: minutes under load
def test_tiny_release_runs_once_skips_when_unchanged_and_reruns_only_downstream(tmp_path):
    pytest.importorskip("dvc")
    pytest.importorskip("torch")
    repo = _release_repo(tmp_path / "repo")

    first, _ = _release(repo)
    all_stages = {*first["ran"], *first["skipped"]}
    assert set(first["ran"]) == all_stages and len(all_stages) == 19 and not first["skipped"]
    release = repo / "release"
    assert len(list(read_manifest(release / "data/import/real/manifest.jsonl"))) == 6
    sources = yaml.safe_load((release / "configs/recognizer.yaml").read_text())["data"]["sources"]
    assert [s["manifest"] for s in sources] == [  # not the corrections: there are none
        "release/data/crops/train/manifest.jsonl", "release/data/import/real/manifest.jsonl",
        "release/data/handwriting/composed/manifest.jsonl"]
    composed = list(read_manifest(release / "data/handwriting/composed/manifest.jsonl"))
    assert len(composed) == 6 and {sample.kind for sample in composed} == {"handwritten"}
    for name in ("encoder.onnx", "decoder.onnx", "record.json"):
        assert (release / "models/recognizer" / name).is_file()
    # the export stage calibrates the confidence; a tiny model reading nothing right leaves nothing to fit
    assert "no calibration fitted, record unchanged" in (release / "repro.log").read_text()
    assert json.loads((release / "models/recognizer/record.json").read_text())["decode"]["calibration"] is None
    val_crops = len(list(read_manifest(release / "data/crops/val/manifest.jsonl")))
    assert json.loads((release / "eval/recognizer/metrics.json").read_text())["n"] == val_crops > 0
    assert (release / "eval/detector/report.html").is_file()
    # a tiny model fails the gate: the verdict is recorded, nothing is promoted, nothing crashed
    gate = json.loads((release / "gate/report.json").read_text())
    assert gate["passed"] is False and "exp_rate" in gate["failed"]
    for model in ("recognizer", "detector"):
        registered = json.loads((release / f"registry/{model}.json").read_text())
        assert registered["version"] == "1"
        promotion = json.loads((release / f"registry/{model}.promotion.json").read_text())
        assert promotion["promoted"] is False and promotion["reason"].startswith("gate failed")
    from susik.eval.tracking import list_versions

    versions = list(list_versions(f"sqlite:///{release / 'store/mlflow.db'}"))
    registered = sorted((v.name, v.version, v.aliases) for v in versions)
    assert registered == [("detector", "1", ()), ("recognizer", "1", ())]  # registered, no alias moved

    again, seconds = _release(repo)
    assert again["ran"] == {} and set(again["skipped"]) == all_stages
    assert seconds < 30, f"a run with nothing changed took {seconds:.1f} s"

    profile = yaml.safe_load((repo / "configs/release_tiny.yaml").read_text())
    profile["gate"]["args"] = "--n 6"
    (repo / "configs/release_tiny.yaml").write_text(yaml.safe_dump(profile))
    changed, _ = _release(repo)
    assert set(changed["ran"]) == {"gate", "promote@recognizer", "promote@detector"}

    requirements = (repo / "specs/requirements.yaml").read_text()
    (repo / "specs/requirements.yaml").write_text(requirements.replace("qps: 5", "qps: 4"))
    changed, _ = _release(repo)
    assert set(changed["ran"]) == {"gate", "promote@recognizer", "promote@detector"}
