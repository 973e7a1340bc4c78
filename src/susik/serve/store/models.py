"""Tables of the feedback store. Alembic migrations (serve/migrations) create them; keep both in step."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, Text, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class RequestRow(Base):
    """One upload. Written as `received` before inference so a crash never loses it, then completed."""

    __tablename__ = "requests"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    model_version: Mapped[str] = mapped_column(String(128), index=True)
    mode: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16))  # received | done | failed
    image_sha256: Mapped[str] = mapped_column(String(64), index=True)
    # relative to the image folder; None: never kept (no consent) or deleted (retention, purge)
    image_path: Mapped[str | None] = mapped_column(String(255), nullable=True)
    consent: Mapped[bool] = mapped_column(Boolean, server_default=false())  # the photo may train models
    source: Mapped[str] = mapped_column(String(32), server_default="api")  # the client: api, web, ...
    license: Mapped[str | None] = mapped_column(String(255), nullable=True)  # what consent granted
    page: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    timings_ms: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class FeedbackRow(Base):
    """A user's verdict on one region: a corrected LaTeX, an acceptance, and/or a comment (VOC)."""

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    region: Mapped[int] = mapped_column(Integer)
    predicted_latex: Mapped[str] = mapped_column(Text)  # copied so reports need no JSON digging
    latex: Mapped[str | None] = mapped_column(Text, nullable=True)
    accepted: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    corrected: Mapped[bool] = mapped_column(Boolean)  # latex given and different after normalisation
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    display_ms: Mapped[float | None] = mapped_column(Float, nullable=True)


class ExportRow(Base):
    """A dataset folder `susik online export` wrote: purges find users' samples there again."""

    __tablename__ = "exports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    path: Mapped[str] = mapped_column(Text)  # absolute
    digest: Mapped[str] = mapped_column(String(80))  # the dataset version, updated when a purge rewrites it
    n_samples: Mapped[int] = mapped_column(Integer)
