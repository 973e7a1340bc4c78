"""Alembic environment: runs on the connection the store hands in, or on `sqlalchemy.url` from the CLI."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from susik.serve.store.models import Base


def _run(connection) -> None:
    # render_as_batch: SQLite cannot ALTER most things in place; batch mode copies the table instead.
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    with create_engine(context.config.get_main_option("sqlalchemy.url")).connect() as fresh:
        _run(fresh)
