"""The feedback store: requests (with their images on disk), predictions and user feedback."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import sessionmaker

from susik.latex import normalize
from susik.serve.store.db import make_engine, migrate
from susik.serve.store.images import save_image, sha256_hex
from susik.serve.store.models import FeedbackRow, RequestRow


class UnknownRequest(LookupError):
    pass


class RegionOutOfRange(ValueError):
    pass


@dataclass(frozen=True)
class RequestFacts:
    model_version: str
    mode: str
    status: str
    n_regions: int


@dataclass(frozen=True)
class FeedbackFacts:
    request_id: str
    region: int
    model_version: str
    mode: str
    kind: str
    predicted_latex: str
    latex: str | None
    accepted: bool | None
    corrected: bool
    comment: str | None
    display_ms: float | None
    created_at: datetime


@dataclass(frozen=True)
class CorrectedRegion:
    """A region whose LaTeX a user confirmed or corrected: a labelled sample for the next dataset."""

    request_id: str
    region: int
    image_path: Path
    quad: list[list[float]]
    kind: str
    latex: str
    model_version: str


def is_correction(predicted: str, latex: str | None) -> bool:
    """A correction changes what renders; whitespace or brace edits are not corrections."""
    return latex is not None and normalize(latex) != normalize(predicted)


class FeedbackStore:
    def __init__(self, engine: Engine, image_dir: Path) -> None:
        self.engine = engine
        self.image_dir = image_dir
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def open(cls, url: str, image_dir: Path) -> FeedbackStore:
        engine = make_engine(url)
        migrate(engine)
        image_dir.mkdir(parents=True, exist_ok=True)
        return cls(engine, image_dir)

    def close(self) -> None:
        self.engine.dispose()

    def receive(self, request_id: str, model_version: str, mode: str, data: bytes, image_format: str) -> None:
        """Keep the upload before any inference runs, committed, so a crash mid-request loses nothing."""
        digest = sha256_hex(data)
        relative = save_image(self.image_dir, data, image_format, digest)
        row = RequestRow(
            id=request_id,
            created_at=datetime.now(UTC),
            model_version=model_version,
            mode=mode,
            status="received",
            image_sha256=digest,
            image_path=relative,
        )
        with self._sessions.begin() as session:
            session.add(row)

    def complete(self, request_id: str, page: dict) -> None:
        with self._sessions.begin() as session:
            session.execute(
                update(RequestRow)
                .where(RequestRow.id == request_id)
                .values(status="done", page=page, timings_ms=page.get("timings_ms"))
            )

    def fail(self, request_id: str, error: str) -> None:
        with self._sessions.begin() as session:
            session.execute(
                update(RequestRow).where(RequestRow.id == request_id).values(status="failed", error=error)
            )

    def add_feedback(
        self,
        request_id: str,
        region: int,
        *,
        latex: str | None = None,
        accepted: bool | None = None,
        comment: str | None = None,
        display_ms: float | None = None,
    ) -> FeedbackRow:
        with self._sessions.begin() as session:
            request = session.get(RequestRow, request_id)
            if request is None or request.status != "done":
                raise UnknownRequest(request_id)
            regions = request.page["regions"]
            if not 0 <= region < len(regions):
                raise RegionOutOfRange(f"region {region} not in 0..{len(regions) - 1}")
            predicted = regions[region]["latex"]
            row = FeedbackRow(
                request_id=request_id,
                created_at=datetime.now(UTC),
                region=region,
                predicted_latex=predicted,
                latex=latex,
                accepted=accepted,
                corrected=is_correction(predicted, latex),
                comment=comment,
                display_ms=display_ms,
            )
            session.add(row)
        return row

    def request(self, request_id: str) -> RequestRow | None:
        with self._sessions() as session:
            return session.get(RequestRow, request_id)

    def feedback_for(self, request_id: str) -> list[FeedbackRow]:
        with self._sessions() as session:
            return list(
                session.scalars(
                    select(FeedbackRow).where(FeedbackRow.request_id == request_id).order_by(FeedbackRow.id)
                )
            )

    def request_facts(self) -> list[RequestFacts]:
        with self._sessions() as session:
            rows = session.execute(
                select(RequestRow.model_version, RequestRow.mode, RequestRow.status, RequestRow.page)
            )
            return [
                RequestFacts(version, mode, status, len(page["regions"]) if page else 0)
                for version, mode, status, page in rows
            ]

    def feedback_facts(self) -> list[FeedbackFacts]:
        with self._sessions() as session:
            rows = session.execute(
                select(FeedbackRow, RequestRow.model_version, RequestRow.mode, RequestRow.page)
                .join(RequestRow, FeedbackRow.request_id == RequestRow.id)
                .order_by(FeedbackRow.id)
            )
            return [
                FeedbackFacts(
                    row.request_id,
                    row.region,
                    version,
                    mode,
                    page["regions"][row.region].get("kind", "printed"),
                    row.predicted_latex,
                    row.latex,
                    row.accepted,
                    row.corrected,
                    row.comment,
                    row.display_ms,
                    row.created_at,
                )
                for row, version, mode, page in rows
            ]

    def labelled_regions(self) -> Iterator[CorrectedRegion]:
        """The newest verdict per region that gives a label: a correction, or an acceptance as predicted."""
        with self._sessions() as session:
            newest = (
                select(func.max(FeedbackRow.id))
                .where((FeedbackRow.latex.is_not(None)) | (FeedbackRow.accepted.is_(True)))
                .group_by(FeedbackRow.request_id, FeedbackRow.region)
            )
            rows = session.execute(
                select(FeedbackRow, RequestRow)
                .join(RequestRow, FeedbackRow.request_id == RequestRow.id)
                .where(FeedbackRow.id.in_(newest))
                .order_by(FeedbackRow.id)
            )
            for feedback, request in rows:
                region = request.page["regions"][feedback.region]
                yield CorrectedRegion(
                    request.id,
                    feedback.region,
                    self.image_dir / request.image_path,
                    region["quad"],
                    region.get("kind", "printed"),
                    feedback.latex if feedback.latex is not None else feedback.predicted_latex,
                    request.model_version,
                )
