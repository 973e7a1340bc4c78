"""The feedback store: requests (with their images on disk), predictions and user feedback."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import ColumnElement, Engine, func, select, update
from sqlalchemy.orm import sessionmaker

from susik.latex import normalize
from susik.serve.store.db import make_engine, migrate
from susik.serve.store.images import save_image, sha256_hex
from susik.serve.store.models import ExportRow, FeedbackRow, RequestRow


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
    latency_ms: float | None = None  # arrival -> result ready (decode, store, queue, inference); None if failed


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
    confidence: float | None = None  # what the service said beside the prediction (None: an old page without it)


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
    source: str  # the client that uploaded it
    license: str  # what the user's consent granted


@dataclass(frozen=True)
class ImagePurge:
    requests: tuple[str, ...]  # requests whose image (and, for a user's purge, consent) was removed
    files_deleted: int  # image files gone from disk (identical uploads share one file)


def _latency_ms(timings: dict | None) -> float | None:
    """The server's time to a result from a stored request's timings (the final response write excluded)."""
    parts = ("decode", "store", "wait", "total")
    if not timings or any(part not in timings for part in parts):
        return None
    return round(sum(timings[part] for part in parts), 2)


def _chunks(items: list[str], size: int = 500) -> Iterator[list[str]]:
    """Bounded IN lists: SQLite caps the bound parameters of one statement."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


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

    def receive(
        self,
        request_id: str,
        model_version: str,
        mode: str,
        data: bytes,
        image_format: str,
        *,
        consent: bool = False,
        source: str = "api",
        license: str | None = None,
    ) -> None:
        """Record the upload before any inference runs, committed, so a crash mid-request loses nothing.

        The image bytes are kept only when the user consented to training on them; without consent the
        record holds the result and timings, never the photo.
        """
        digest = sha256_hex(data)
        relative = save_image(self.image_dir, data, image_format, digest) if consent else None
        row = RequestRow(
            id=request_id,
            created_at=datetime.now(UTC),
            model_version=model_version,
            mode=mode,
            status="received",
            image_sha256=digest,
            image_path=relative,
            consent=consent,
            source=source,
            license=license if consent else None,
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

    def purge_requests(self, request_ids: Collection[str]) -> ImagePurge:
        """A user's withdrawal: the requests keep their metrics but lose image, consent and licence, so no
        later export can hold them. `requests` lists those found (with or without an image)."""
        return self._forget_images(RequestRow.id.in_(list(request_ids)), consent=False, license=None)

    def purge_images(self, received_before: datetime) -> ImagePurge:
        """Retention: delete the images received before the cutoff, and any image kept without consent
        (rows from before consent was asked)."""
        expired = (RequestRow.created_at < received_before) | RequestRow.consent.is_(False)
        return self._forget_images(expired & RequestRow.image_path.is_not(None))

    def _forget_images(self, where: ColumnElement[bool], **values: object) -> ImagePurge:
        with self._sessions.begin() as session:
            rows = session.execute(select(RequestRow.id, RequestRow.image_path).where(where)).all()
            ids = [request_id for request_id, _ in rows]
            for chunk in _chunks(ids):
                session.execute(
                    update(RequestRow).where(RequestRow.id.in_(chunk)).values(image_path=None, **values)
                )
            paths = sorted({path for _, path in rows if path})
            shared: set[str] = set()  # identical uploads share one file: it goes with the last row using it
            for chunk in _chunks(paths):
                in_use = select(RequestRow.image_path).where(RequestRow.image_path.in_(chunk))
                shared.update(session.scalars(in_use))
        deleted = 0
        for relative in [path for path in paths if path not in shared]:
            try:
                (self.image_dir / relative).unlink()
                deleted += 1
            except FileNotFoundError:  # another replica's purge got there first
                pass
        return ImagePurge(tuple(sorted(ids)), deleted)

    def record_export(self, folder: Path, digest: str, n_samples: int) -> None:
        """Remember a dataset folder written from this store (one row per folder, newest version)."""
        path = str(Path(folder).resolve())
        with self._sessions.begin() as session:
            row = session.scalars(select(ExportRow).where(ExportRow.path == path)).first()
            if row is None:
                row = ExportRow(path=path)
                session.add(row)
            row.created_at, row.digest, row.n_samples = datetime.now(UTC), digest, n_samples

    def exports(self) -> list[ExportRow]:
        with self._sessions() as session:
            return list(session.scalars(select(ExportRow).order_by(ExportRow.id)))

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
                select(
                    RequestRow.model_version,
                    RequestRow.mode,
                    RequestRow.status,
                    RequestRow.page,
                    RequestRow.timings_ms,
                )
            )
            return [
                RequestFacts(version, mode, status, len(page["regions"]) if page else 0, _latency_ms(timings))
                for version, mode, status, page, timings in rows
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
                    page["regions"][row.region].get("confidence"),
                )
                for row, version, mode, page in rows
            ]

    def labelled_regions(self) -> Iterator[CorrectedRegion]:
        """The newest verdict per region that gives a label (a correction, or an acceptance as predicted), of
        uploads whose users consented and whose image is still kept."""
        with self._sessions() as session:
            newest = (
                select(func.max(FeedbackRow.id))
                .where((FeedbackRow.latex.is_not(None)) | (FeedbackRow.accepted.is_(True)))
                .group_by(FeedbackRow.request_id, FeedbackRow.region)
            )
            rows = session.execute(
                select(FeedbackRow, RequestRow)
                .join(RequestRow, FeedbackRow.request_id == RequestRow.id)
                .where(
                    FeedbackRow.id.in_(newest),
                    RequestRow.consent.is_(True),
                    RequestRow.image_path.is_not(None),
                )
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
                    request.source,
                    request.license or "unknown",
                )
