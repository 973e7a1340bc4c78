"""Serving: the FastAPI app and web page, the feedback store, online evaluation, batching, capacity."""

from susik.serve.app import Pipelines, create_app
from susik.serve.settings import Settings

__all__ = ["Pipelines", "Settings", "create_app"]
