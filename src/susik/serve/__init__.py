"""Serving: the FastAPI app and web page, the feedback store, online evaluation, batching, capacity.

The app is imported on first use, not with the package: every `susik` command imports `susik.serve.settings`,
and loading FastAPI and SQLAlchemy for `susik recognize` would cost ~1 s of start-up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from susik.serve.settings import Settings

if TYPE_CHECKING:
    from susik.serve.app import Pipelines, create_app

__all__ = ["Pipelines", "Settings", "create_app"]


def __getattr__(name: str) -> Any:
    if name in ("Pipelines", "create_app"):
        from susik.serve import app

        return getattr(app, name)
    raise AttributeError(f"module 'susik.serve' has no attribute {name!r}")
