"""Dataset spec (kinds × conditions × quantities × answers), its planner and the coverage report."""

from susik.spec.dataset import (
    CONDITIONS,
    PAGE_KINDS,
    CropPlan,
    CropSpec,
    DatasetSpec,
    PagePlan,
    PageSpec,
    SpecError,
    load_spec,
    missing_answers,
    plan_crops,
    plan_pages,
)

__all__ = [
    "CONDITIONS", "PAGE_KINDS", "CropPlan", "CropSpec", "DatasetSpec", "PagePlan", "PageSpec", "SpecError",
    "load_spec", "missing_answers", "plan_crops", "plan_pages",
]
