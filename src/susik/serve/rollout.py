"""Rollout by alias: which models serve a request, the challenger's canary share, and the watcher that
follows the registry's aliases and swaps to a newly promoted model without downtime.

The champion and the challenger sit in one frozen `Serving` that is replaced whole (a single reference
assignment, atomic in Python). A request takes the current one once, at its start, and keeps it to its end:
requests in flight finish on the model they started with while new ones get the new model. Nothing pauses,
and no model is unloaded under a request: an old one is freed when the last request holding it is done.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from susik.serve.app import Pipelines

log = logging.getLogger("susik.serve.rollout")


class ModelSource(Protocol):
    """Where versions come from: the registry in production, a dictionary in tests."""

    def aliases(self) -> Mapping[str, str]:
        """alias (`champion`, `challenger`) -> version, for the aliases that are set."""
        ...

    def load(self, version: str) -> Pipelines: ...


@dataclass(frozen=True)
class Serving:
    champion: Pipelines
    challenger: Pipelines | None = None


class CanaryRouter:
    """Sends `share` of the requests to the challenger, spread evenly and exactly: each request adds `share`
    to a credit, and the request that brings it to 1 goes to the challenger (no randomness to seed)."""

    def __init__(self, share: float) -> None:
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"canary share must be within 0..1, got {share}")
        self.share = share
        self._credit = 0.0
        self._lock = threading.Lock()

    def pick(self, serving: Serving) -> Pipelines:
        if serving.challenger is None or self.share == 0.0:
            return serving.champion
        with self._lock:
            self._credit += self.share
            if self._credit < 1.0 - 1e-9:
                return serving.champion
            self._credit -= 1.0
        return serving.challenger


class Rollout:
    """The models being served now, and (after `follow`) a thread that keeps them in step with a source."""

    def __init__(self, canary_share: float = 0.0) -> None:
        self.serving: Serving | None = None
        self.problem: str | None = "models not loaded"  # why nothing serves, or why the newest load failed
        self._router = CanaryRouter(canary_share)
        self._source: ModelSource | None = None
        self._versions: tuple[str, str | None] | None = None
        self._loaded: dict[str, Pipelines] = {}
        self._refreshing = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def route(self) -> Pipelines | None:
        """The models for one request; the caller keeps this reference until the request is done."""
        serving = self.serving  # read once: a swap after this line does not touch this request
        return None if serving is None else self._router.pick(serving)

    def swap(self, serving: Serving) -> None:
        self.serving, self.problem = serving, None

    def follow(self, source: ModelSource, poll_s: float) -> None:
        """Load what the source's aliases point at now, then check again every `poll_s` seconds."""
        self._source = source
        self.refresh()
        self._thread = threading.Thread(target=self._watch, args=(poll_s,), name="susik-rollout", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def refresh(self) -> bool:
        """Swap to the source's current champion and challenger; True when they changed. A failure (registry
        unreachable, broken artifact) keeps the models that serve now and is retried on the next poll."""
        if self._source is None:
            raise RuntimeError("refresh needs a source: call follow() first")
        with self._refreshing:
            try:
                aliases = self._source.aliases()
                champion = aliases.get("champion")
                if champion is None:
                    raise LookupError("no version has the champion alias")
                challenger = aliases.get("challenger")
                challenger = None if challenger == champion else challenger
                if (champion, challenger) == self._versions:
                    self.problem = None  # the registry answers again and nothing moved
                    return False
                # A version already loaded (the challenger being promoted) is reused: that swap loads nothing.
                loaded = {
                    version: self._loaded.get(version) or self._source.load(version)
                    for version in (champion, challenger)
                    if version is not None
                }
            except Exception as error:  # noqa: BLE001 - registry, download and runtime fail in many ways
                self.problem = f"cannot load the registry's models: {type(error).__name__}: {error}"
                log.warning(self.problem)
                return False
            # Versions no alias points at any more are dropped here; requests holding one finish on it.
            self._loaded, self._versions = loaded, (champion, challenger)
            self.swap(Serving(loaded[champion], loaded[challenger] if challenger else None))
            log.info("serving champion %s, challenger %s", champion, challenger)
            return True

    def _watch(self, poll_s: float) -> None:
        while not self._stop.wait(poll_s):
            self.refresh()
