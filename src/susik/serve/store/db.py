"""Engine creation and schema migration. SQLite runs in WAL mode so readers never block the writer."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text

MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"
SQLITE_BUSY_TIMEOUT_S = 30.0


def make_engine(url: str) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    database = url.split("///", 1)[-1]
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _pragmas(connection, _record) -> None:
        cursor = connection.cursor()
        # WAL + synchronous=NORMAL: a commit survives the process being killed (not a power cut), and
        # costs no fsync per transaction.
        _switch_to_wal(cursor)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine


def _switch_to_wal(cursor: sqlite3.Cursor, patience_s: float = SQLITE_BUSY_TIMEOUT_S) -> None:
    """`PRAGMA journal_mode=WAL`, retried: switching a fresh file needs it to itself and SQLite answers "database
    is locked" at once, without its busy timeout, while replicas starting together all connect (6 of 60 trials
    of four at once failed). Once the file is in WAL mode the pragma only reads it."""
    deadline = time.monotonic() + patience_s
    pause = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.2)


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (a no-op when it is there already).

    Replicas starting together migrate one at a time: each takes the database's write lock before alembic
    reads the current revision, so none creates a table another has just created.
    """
    config = alembic_config()
    with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        elif connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(7106)"))  # any constant shared by replicas
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
        connection.commit()
