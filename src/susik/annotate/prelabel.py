"""Pre-annotation: the current model proposes regions and LaTeX for pages nobody has labeled yet.

Proposals go to the sidecar log (type `prelabel`, with model version and per-region confidence), never to
the manifest: they become labels only when an annotator saves them.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import cv2
import numpy as np

from susik.annotate.store import Dataset, Event
from susik.data.manifest import PageRegion
from susik.results import Page

ReadPages = Callable[[list[np.ndarray]], list[Page]]


def prelabel(
    dataset: Dataset, read_pages: ReadPages, model_version: str, on_item: Callable[[], None] | None = None
) -> int:
    """Propose labels for every `new` page; returns how many pages got proposals."""
    proposals = []
    for item in dataset.items():
        if item.status != "new":
            continue
        image = cv2.imread(str(dataset.folder / item.sample.image), cv2.IMREAD_COLOR)
        if image is not None:
            (page,) = read_pages([image])
            regions = tuple(
                PageRegion(
                    quad=region.quad.points,
                    polygon=region.polygon or None,
                    latex=region.latex,
                    kind=region.kind,
                )
                for region in page.regions
            )
            proposals.append(
                Event(
                    type="prelabel",
                    image=item.sample.image,
                    at=time.time(),
                    regions=regions,
                    orientation=page.orientation,
                    model_version=model_version,
                    scores=tuple(round(region.confidence, 4) for region in page.regions),
                )
            )
        if on_item:
            on_item()
    dataset.add_prelabels(proposals)
    return len(proposals)
