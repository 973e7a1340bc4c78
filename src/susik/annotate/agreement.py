"""Inter-annotator agreement on pages labeled by two or more people, and per-annotator throughput.

For each page, each annotator's last save counts. Two annotators' regions are matched greedily by region IoU
(of the polygons where both have one, else of the quads; highest first, IoU >= `match_iou`); agreement is then: matched share (F1 of the matching), mean IoU of the
matched pairs, the share of matched pairs with the same kind, and the LaTeX normalised token edit distance
(`susik.eval.metrics`, 0 = identical after normalisation) with the exact-match share.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from itertools import combinations

from shapely.geometry import Polygon

from susik.annotate.store import Event
from susik.data.manifest import PageRegion
from susik.eval.metrics import score_sample


@dataclass(frozen=True)
class PairAgreement:
    regions_a: int
    regions_b: int
    ious: tuple[float, ...]  # matched pairs
    same_kind: int
    edit: tuple[float, ...]  # normalised LaTeX edit distance per matched pair


@dataclass(frozen=True)
class Throughput:
    annotator: str
    items: int  # distinct pages saved
    saves: int
    regions: int  # regions in their last save of each page
    seconds: float

    @property
    def items_per_hour(self) -> float:
        return self.items / self.seconds * 3600 if self.seconds else 0.0


def region_iou(a: PageRegion, b: PageRegion) -> float:
    both = a.polygon is not None and b.polygon is not None  # a quad is only a polygon's bounding rectangle
    shape_a, shape_b = (a.polygon, b.polygon) if both else (a.quad, b.quad)
    pa, pb = Polygon(shape_a).buffer(0), Polygon(shape_b).buffer(0)  # buffer(0) repairs a self-crossing shape
    union = pa.union(pb).area
    return pa.intersection(pb).area / union if union > 0 else 0.0


def compare(a: tuple[PageRegion, ...], b: tuple[PageRegion, ...], match_iou: float = 0.5) -> PairAgreement:
    candidates = sorted(
        ((region_iou(ra, rb), i, j) for i, ra in enumerate(a) for j, rb in enumerate(b)), reverse=True
    )
    used_a, used_b, ious, same_kind, edit = set(), set(), [], 0, []
    for iou, i, j in candidates:
        if iou < match_iou:
            break
        if i in used_a or j in used_b:
            continue
        used_a.add(i)
        used_b.add(j)
        ious.append(iou)
        same_kind += a[i].kind == b[j].kind
        edit.append(score_sample(a[i].latex, b[j].latex).norm_distance)
    return PairAgreement(len(a), len(b), tuple(ious), same_kind, tuple(edit))


def last_saves(events: list[Event]) -> dict[str, dict[str, Event]]:
    """image -> annotator -> that annotator's last save of the image."""
    latest: dict[str, dict[str, Event]] = defaultdict(dict)
    for event in events:
        if event.type == "save":
            latest[event.image][event.annotator] = event
    return latest


def agreement_report(events: list[Event], match_iou: float = 0.5) -> dict:
    pairs = []
    for by_annotator in last_saves(events).values():
        for first, second in combinations(sorted(by_annotator), 2):
            pairs.append(compare(by_annotator[first].regions, by_annotator[second].regions, match_iou))
    matched = sum(len(pair.ious) for pair in pairs)
    drawn = sum(pair.regions_a + pair.regions_b for pair in pairs)
    ious = [iou for pair in pairs for iou in pair.ious]
    edits = [value for pair in pairs for value in pair.edit]
    return {
        "doubly_labeled_pages": sum(1 for saves in last_saves(events).values() if len(saves) > 1),
        "pairs": len(pairs),
        "match_iou": match_iou,
        "region_f1": 2 * matched / drawn if drawn else None,
        "mean_iou": sum(ious) / len(ious) if ious else None,
        "kind_agreement": sum(pair.same_kind for pair in pairs) / matched if matched else None,
        "latex_exact": sum(1 for value in edits if value == 0) / len(edits) if edits else None,
        "latex_norm_edit_distance": sum(edits) / len(edits) if edits else None,
        "annotators": [
            {**asdict(entry), "items_per_hour": round(entry.items_per_hour, 2)}
            for entry in throughput(events)
        ],
    }


def throughput(events: list[Event]) -> list[Throughput]:
    seconds: dict[str, float] = defaultdict(float)
    saves: dict[str, int] = defaultdict(int)
    for event in events:
        if event.type == "save":
            seconds[event.annotator] += event.seconds
            saves[event.annotator] += 1
    pages: dict[str, list[Event]] = defaultdict(list)
    for by_annotator in last_saves(events).values():
        for annotator, event in by_annotator.items():
            pages[annotator].append(event)
    return [
        Throughput(
            name, len(pages[name]), saves[name], sum(len(e.regions) for e in pages[name]), seconds[name]
        )
        for name in sorted(seconds)
    ]
