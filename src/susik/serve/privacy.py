"""What users may ask of their uploads: images kept only for the retention period, and a purge of a user's
requests from the store and from every dataset exported from it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from susik.data.manifest import Sample
from susik.data.purge import SampleRemoval, remove_samples
from susik.serve.online import crop_request_id, exported_request_id
from susik.serve.store import FeedbackStore, ImagePurge

log = logging.getLogger("susik.serve")
_NO_RETENTION = datetime(1970, 1, 1, tzinfo=UTC)  # cutoff when images are kept for good: none is expired


@dataclass(frozen=True)
class PurgeReport:
    store: ImagePurge
    unknown: tuple[str, ...]  # requested ids the store has no record of (datasets were still searched)
    datasets: tuple[SampleRemoval, ...]
    stray_files: int  # crops of these requests in export folders that no manifest listed any more


def purge_requests(
    store: FeedbackStore,
    request_ids: Collection[str],
    datasets: Iterable[Path] = (),
    on_dataset: Callable[[], None] | None = None,
) -> PurgeReport:
    """Erase the requests' images and every sample derived from them: in the store (image, consent), in
    each dataset `susik online export` wrote from it (re-versioned; the store keeps the new version) and in
    `datasets`, further dataset folders or manifests that may hold exported samples."""
    ids = set(request_ids)
    purged = store.purge_requests(ids)

    def derived(sample: Sample) -> bool:
        return exported_request_id(sample) in ids

    removals, stray = [], 0
    exports = [Path(row.path) for row in store.exports() if Path(row.path).is_dir()]  # gone: nothing left
    for folder in exports:
        removal = remove_samples(folder, derived)
        store.record_export(folder, removal.version.digest, removal.version.n_samples)
        stray += _delete_crops(folder / "images", ids)
        removals.append(removal)
        if on_dataset is not None:
            on_dataset()
    for dataset in datasets:
        if Path(dataset).resolve() not in exports:  # recorded paths are absolute
            removals.append(remove_samples(dataset, derived))
        if on_dataset is not None:
            on_dataset()
    unknown = tuple(sorted(ids - set(purged.requests)))
    return PurgeReport(purged, unknown, tuple(removals), stray)


def _delete_crops(folder: Path, ids: set[str]) -> int:
    """Crops a re-export into the same folder left behind outside its manifest."""
    if not folder.is_dir():
        return 0
    found = [file for file in folder.glob("*.png") if crop_request_id(file.name) in ids]
    for file in found:
        file.unlink()
    return len(found)


def purge_expired(
    store: FeedbackStore, retention_days: float | None, now: datetime | None = None
) -> ImagePurge:
    """Delete the stored images older than the retention period (None: no period), and any image kept
    without consent."""
    now = now or datetime.now(UTC)
    return store.purge_images(now - timedelta(days=retention_days) if retention_days else _NO_RETENTION)


async def purge_periodically(store: FeedbackStore, retention_days: float | None, interval_s: float) -> None:
    """The server's retention loop: at start, then every `interval_s`; a failed round is logged, not fatal."""
    while True:
        try:
            purged = await asyncio.to_thread(purge_expired, store, retention_days)
            if purged.requests:
                log.info("retention: deleted the images of %d requests", len(purged.requests))
        except Exception:
            log.exception("retention purge failed; retrying in %g s", interval_s)
        await asyncio.sleep(interval_s)
