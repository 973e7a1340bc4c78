"""The dataset spec: loading and validation, the sample planner, the answers check."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from susik.data.manifest import CropSample, PageSample
from susik.spec.dataset import (
    CONDITIONS,
    ROTATIONS,
    DatasetSpec,
    SpecError,
    allocate,
    load_spec,
    missing_answers,
    plan_crops,
    plan_pages,
)

SHIPPED = Path(__file__).resolve().parents[1] / "specs" / "dataset.yaml"


def _raw() -> dict:
    return {
        "pages": {
            "total": 1000,
            "min_per_cell": 20,
            "kinds": {"printed": 0.5, "handwritten": 0.3, "mixed": 0.2},
            "conditions": {"clean": 0.2, "shadow": 0.4, "blur": 0.4, "rotation90": 0.1, "rotation180": 0.1,
                           "jpeg": 0.5},
            "conditions_per_sample": {"min": 1, "max": 3},
            "formulas_per_page": {"min": 1, "max": 5},
            "distractor_lines": {"min": 0, "max": 2},
        },
        "crops": {
            "total": 100,
            "min_per_cell": 5,
            "kinds": {"printed": 0.5, "handwritten": 0.5},
            "conditions": {"clean": 0.5, "blur": 0.5},
            "conditions_per_sample": {"min": 1, "max": 1},
        },
        "answers": {"detector": {"region": ["quad", "polygon"]}, "recognizer": {"region": ["latex"],
                                                                                "crop": ["latex"]},
                    "orientation": {"page": ["orientation"]}},
    }


def _write(tmp_path: Path, raw: dict) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


@pytest.fixture
def spec(tmp_path: Path) -> DatasetSpec:
    return load_spec(_write(tmp_path, _raw()))


def test_shipped_spec_loads_with_every_condition():
    spec = load_spec(SHIPPED)
    assert set(spec.pages.conditions) == set(CONDITIONS)
    assert set(spec.pages.kinds) == {"printed", "handwritten", "mixed"}
    assert len(spec.pages.required()) == 3 * len(CONDITIONS)
    assert 1 <= spec.pages.mean_conditions() <= spec.pages.conditions_per_sample.max
    assert set(spec.answers) == {"detector", "recognizer", "orientation"}


def test_required_scales_with_total_and_has_a_floor(spec: DatasetSpec):
    required = spec.pages.required()
    assert required[("printed", "shadow")] == round(1000 * 0.5 * 0.4)
    assert required[("mixed", "rotation90")] == 20  # 1000 × 0.2 × 0.1 = 20
    assert spec.pages.required(100)[("mixed", "rotation90")] == 20  # the floor, above 100 × 0.02 = 2
    assert required[("printed", "crumple")] == 0  # share 0: nothing required
    assert spec.pages.required(2000)[("printed", "shadow")] == 400


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: r.update(colour="red"), "colour: unknown key"),
        (lambda r: r["pages"].update(colour="red"), "pages.colour: unknown key"),
        (lambda r: r["pages"]["conditions"].update(shadw=0.1), "pages.conditions.shadw"),
        (lambda r: r["pages"]["kinds"].update(printed=0.6), "shares sum to 1.1, not 1"),
        (lambda r: r["pages"]["kinds"].update(typed=0.0), "pages.kinds.typed"),
        (lambda r: r["crops"]["kinds"].update(mixed=0.0), "crops.kinds.mixed"),
        (lambda r: r["pages"]["conditions"].update(blur=1.5), "blur: share 1.5"),
        (lambda r: r["pages"]["conditions"].update(blur=0.9), "exceeds the non-clean share"),
        (lambda r: r["pages"]["conditions"].update(rotation90=0.5, rotation180=0.4), "exclude each other"),
        (lambda r: r["pages"].update(conditions_per_sample={"min": 1, "max": 1}), "outside conditions_per"),
        (lambda r: r["pages"].update(formulas_per_page={"min": 3, "max": 2}), "min (3) is greater than max"),
        (lambda r: r["pages"].update(total=0), "pages.total"),
        (lambda r: r["answers"].update(detector={"region": ["box"]}), "answers.detector.region.0"),
        (lambda r: r["answers"].update(ranker={"page": ["orientation"]}), "answers.ranker"),
        (lambda r: r.pop("crops"), "crops: Field required"),
    ],
)
def test_spec_rejects_unknown_keys_and_bad_values(tmp_path: Path, edit, message: str):
    raw = _raw()
    edit(raw)
    with pytest.raises(SpecError) as caught:
        load_spec(_write(tmp_path, raw))
    assert str(caught.value).startswith(str(tmp_path / "spec.yaml"))
    assert message in str(caught.value)


def test_spec_errors_name_the_file_for_unreadable_or_broken_yaml(tmp_path: Path):
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("pages:\n  total: 3\n kinds: [\n", encoding="utf-8")
    with pytest.raises(SpecError, match=r"broken\.yaml:\d+: not valid YAML"):
        load_spec(broken)
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n", encoding="utf-8")
    with pytest.raises(SpecError, match="must be a mapping"):
        load_spec(listed)


def test_allocate_sums_exactly_and_stays_within_one_of_each_quota():
    weights = [0.5, 0.3, 0.2, 0.0, 0.123]
    for seed in range(50):
        counts = allocate(17, weights, np.random.default_rng(seed))
        quotas = 17 * np.array(weights) / sum(weights)
        assert counts.sum() == 17
        assert np.all(np.abs(counts - quotas) < 1)
        assert counts[3] == 0


def test_allocate_is_unbiased():
    weights = [0.45, 0.35, 0.2]
    runs = np.array([allocate(3, weights, np.random.default_rng(seed)) for seed in range(4000)])
    np.testing.assert_allclose(runs.mean(axis=0), 3 * np.array(weights), atol=0.04)


def test_page_plan_is_deterministic_per_seed(spec: DatasetSpec):
    first = plan_pages(spec.pages, 200, np.random.default_rng(7))
    assert first == plan_pages(spec.pages, 200, np.random.default_rng(7))
    assert first != plan_pages(spec.pages, 200, np.random.default_rng(8))


def test_page_plan_follows_the_proportions(spec: DatasetSpec):
    n = 2000
    plans = plan_pages(spec.pages, n, np.random.default_rng(0))
    assert len(plans) == n
    kinds = Counter(plan.kind for plan in plans)
    for kind, share in spec.pages.kinds.items():
        assert abs(kinds[kind] - n * share) < 1
    cells = Counter((plan.kind, condition) for plan in plans for condition in plan.conditions)
    for kind, condition in spec.pages.cells():
        expected = n * spec.pages.cell_share(kind, condition)
        assert abs(cells[(kind, condition)] - expected) <= 2, (kind, condition)


def test_page_plan_matches_proportions_in_expectation_at_small_n(spec: DatasetSpec):
    runs = 400
    cells: Counter = Counter()
    for seed in range(runs):
        for plan in plan_pages(spec.pages, 3, np.random.default_rng(seed)):
            cells.update((plan.kind, condition) for condition in plan.conditions)
    for kind, condition in spec.pages.cells():
        expected = 3 * spec.pages.cell_share(kind, condition)
        assert abs(cells[(kind, condition)] / runs - expected) < 0.12, (kind, condition)


def test_page_plan_respects_the_combination_rules(spec: DatasetSpec):
    plans = plan_pages(spec.pages, 1000, np.random.default_rng(3))
    sizes = Counter(len(plan.conditions) for plan in plans)
    assert set(sizes) <= {1, 2, 3} and sizes[2] and sizes[3]  # pages combine conditions, variously
    for plan in plans:
        assert len(set(plan.conditions)) == len(plan.conditions)
        assert "clean" not in plan.conditions or plan.conditions == ("clean",)
        turned = [name for name in plan.conditions if name in ROTATIONS]
        assert len(turned) <= 1
        assert plan.orientation == (ROTATIONS[turned[0]] if turned else 0)
        assert 1 <= plan.n_formulas <= 5 and 0 <= plan.n_distractors <= 2
        if plan.kind == "mixed":
            assert plan.n_formulas >= 2


def test_crop_plan_uses_crop_kinds_and_conditions(spec: DatasetSpec):
    plans = plan_crops(spec.crops, 100, np.random.default_rng(1))
    assert Counter(plan.kind for plan in plans) == {"printed": 50, "handwritten": 50}
    assert Counter(plan.conditions for plan in plans) == {("clean",): 50, ("blur",): 50}
    assert plan_crops(spec.crops, 0, np.random.default_rng(1)) == []


def _page(**changes) -> PageSample:
    raw = {
        "image": "p.png", "width": 100, "height": 50, "orientation": 0, "conditions": ["blur"],
        "source": "synth", "license": "CC0",
        "regions": [{"quad": [[0, 0], [10, 0], [10, 5], [0, 5]], "polygon": [[0, 0], [10, 0], [10, 5]],
                     "latex": "x", "kind": "printed"}],
    }
    raw.update(changes)
    return PageSample.model_validate(raw)


def test_missing_answers_names_the_model_and_the_gap(spec: DatasetSpec):
    assert missing_answers(_page(), spec.answers) == []
    region = {"quad": [[0, 0], [10, 0], [10, 5], [0, 5]], "latex": "", "kind": "handwritten"}
    gaps = missing_answers(_page(regions=[_page().regions[0].model_dump(), region]), spec.answers)
    assert gaps == ["detector: region 1 has no polygon", "recognizer: region 1 has no latex"]
    turned = missing_answers(_page(conditions=["rotation90"]), spec.answers)
    assert turned == ["orientation: page orientation 0 disagrees with rotation90"]
    assert missing_answers(_page(conditions=["rotation90"], orientation=90), spec.answers) == []
    crop = CropSample(image="c.png", latex="", source="s", license="l")
    assert missing_answers(crop, spec.answers) == ["recognizer: crop has no latex"]
