"""The feedback store: SQLAlchemy tables, Alembic migrations, content-addressed images."""

from susik.serve.store.repository import (
    CorrectedRegion,
    FeedbackFacts,
    FeedbackStore,
    ImagePurge,
    RegionOutOfRange,
    RequestFacts,
    UnknownRequest,
    is_correction,
)

__all__ = [
    "CorrectedRegion",
    "FeedbackFacts",
    "FeedbackStore",
    "ImagePurge",
    "RegionOutOfRange",
    "RequestFacts",
    "UnknownRequest",
    "is_correction",
]
