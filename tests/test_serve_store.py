"""The feedback store on SQLite always, and on a throwaway PostgreSQL server when it is installed."""

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text, update

from susik.data.manifest import read_manifest
from susik.serve.fakes import sample_photo
from susik.serve.online import export_dataset
from susik.serve.store import FeedbackStore, ImagePurge, RegionOutOfRange, UnknownRequest
from susik.serve.store.db import make_engine, migrate
from susik.serve.store.models import Base, RequestRow

PAGE = {
    "width": 640,
    "height": 480,
    "orientation": 0,
    "timings_ms": {"total": 12.0},
    "regions": [
        {
            "quad": [[64, 72], [576, 72], [576, 168], [64, 168]],
            "polygon": [],
            "latex": "x^{2}+1",
            "confidence": 0.9,
            "kind": "printed",
        },
        {
            "quad": [[64, 288], [576, 288], [576, 384], [64, 384]],
            "polygon": [],
            "latex": "y=a",
            "confidence": 0.4,
            "kind": "handwritten",
        },
    ],
}


def _postgres_bin() -> Path | None:
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True) + ["/usr/local/bin"]:
        if all((Path(folder) / tool).exists() for tool in ("initdb", "pg_ctl", "postgres")):
            return Path(folder)
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_server():
    """A PostgreSQL server of our own on 127.0.0.1 (trust auth, no fsync), torn down after the module."""
    binaries = _postgres_bin()
    if binaries is None:
        pytest.skip("no PostgreSQL server binaries (Debian: apt-get install postgresql)")
    prefix, owner = [], None
    if os.geteuid() == 0:  # postgres refuses to run as root
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
        prefix = ["runuser", "-u", "postgres", "--"]
    folder = Path(tempfile.mkdtemp(prefix="susik-pg-"))
    if owner is not None:
        os.chown(folder, owner.pw_uid, owner.pw_gid)
    port = _free_port()

    def run(*args):
        return subprocess.run([*prefix, *map(str, args)], check=True, capture_output=True, timeout=60)

    try:
        run(binaries / "initdb", "-D", folder / "db", "-A", "trust", "-U", "postgres", "--no-sync",
            "-E", "UTF8", "--locale", "C")
        run(binaries / "pg_ctl", "-D", folder / "db", "-l", folder / "log", "-w", "-t", "30",
            "-o", f"-h 127.0.0.1 -p {port} -k {folder} -F", "start")  # -F: no fsync, a throwaway server
    except subprocess.CalledProcessError as error:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.fail(f"could not start PostgreSQL: {error.stderr.decode(errors='replace')[-500:]}")
    yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    subprocess.run([*prefix, str(binaries / "pg_ctl"), "-D", str(folder / "db"), "-m", "immediate", "stop"],
                   capture_output=True, timeout=60)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'susik.db'}"
    server = request.getfixturevalue("postgres_server")
    import psycopg

    name = f"susik_{request.node.name.split('[')[0][-40:]}".lower()
    with psycopg.connect(
        server.replace("postgresql+psycopg", "postgresql") + "/postgres", autocommit=True
    ) as db:
        db.execute(f'DROP DATABASE IF EXISTS "{name}"')
        db.execute(f'CREATE DATABASE "{name}"')
    return f"{server}/{name}"


@pytest.fixture
def store(database_url, tmp_path):
    store = FeedbackStore.open(database_url, tmp_path / "images")
    yield store
    store.close()


def test_request_lifecycle_feedback_and_facts(store):
    photo = sample_photo()
    store.receive("r1", "v1", "page", photo, "JPEG", consent=True, license="L")
    row = store.request("r1")
    assert (row.status, row.page) == ("received", None)
    assert (store.image_dir / row.image_path).read_bytes() == photo
    with pytest.raises(UnknownRequest):  # no feedback on a prediction nobody has seen
        store.add_feedback("r1", 0, latex="x")

    store.complete("r1", PAGE)
    store.receive("r2", "v2", "crop", photo, "JPEG")
    store.fail("r2", "timeout")
    assert store.request("r1").page == PAGE and store.request("r1").timings_ms == {"total": 12.0}
    assert (store.request("r2").status, store.request("r2").error) == ("failed", "timeout")

    assert store.add_feedback("r1", 0, latex="x^2+1", display_ms=420.0).corrected is False
    assert store.add_feedback("r1", 1, latex="y=2", comment="2 not a").corrected is True
    with pytest.raises(RegionOutOfRange):
        store.add_feedback("r1", 2, latex="x")
    with pytest.raises(UnknownRequest):
        store.add_feedback("nope", 0, accepted=True)

    facts = sorted(store.request_facts(), key=lambda f: f.model_version)
    assert [(f.model_version, f.mode, f.status, f.n_regions) for f in facts] == [
        ("v1", "page", "done", 2),
        ("v2", "crop", "failed", 0),
    ]
    feedback = store.feedback_facts()
    assert [(f.region, f.kind, f.predicted_latex, f.corrected, f.display_ms, f.confidence) for f in feedback] == [
        (0, "printed", "x^{2}+1", False, 420.0, 0.9),
        (1, "handwritten", "y=a", True, None, 0.4),
    ]


def test_labelled_regions_take_the_newest_verdict_per_region(store):
    store.receive("r1", "v1", "page", sample_photo(), "JPEG", consent=True, license="L")
    store.complete("r1", PAGE)
    store.add_feedback("r1", 0, latex="x^3+1")
    store.add_feedback("r1", 0, latex="x^2+7")  # the user changed their mind
    store.add_feedback(
        "r1", 1, accepted=False, comment="wrong"
    )  # a rejection without a label gives no sample
    labelled = list(store.labelled_regions())
    assert [(r.region, r.latex, r.kind) for r in labelled] == [(0, "x^2+7", "printed")]
    store.add_feedback("r1", 1, accepted=True)
    assert [(r.region, r.latex) for r in store.labelled_regions()] == [(0, "x^2+7"), (1, "y=a")]


def test_migrations_match_the_models_and_rerun_as_no_ops(store):
    migrate(store.engine)
    with store.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0002"


def test_replicas_starting_together_migrate_one_at_a_time(database_url):
    engines = [make_engine(database_url) for _ in range(4)]
    start, errors = threading.Barrier(len(engines)), []

    def replica(engine):
        start.wait()
        try:
            migrate(engine)
        except Exception as error:  # noqa: BLE001 - collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=replica, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for engine in engines:
        engine.dispose()
    assert errors == []


def test_sqlite_runs_in_wal_mode(tmp_path):
    store = FeedbackStore.open(f"sqlite:///{tmp_path / 'nested' / 'susik.db'}", tmp_path / "images")
    with store.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    store.close()


def test_export_writes_a_versioned_crop_dataset(store, tmp_path):
    store.receive("r1", "v1", "page", sample_photo(), "JPEG", consent=True, source="web", license="L")
    store.complete("r1", PAGE)
    store.add_feedback("r1", 1, latex=r"y=\alpha")
    store.add_feedback("r1", 0, accepted=True)
    first = export_dataset(store.labelled_regions(), tmp_path / "export-a")
    samples = list(read_manifest(tmp_path / "export-a" / "manifest.jsonl"))
    assert [(s.latex, s.kind, s.source, s.license) for s in samples] == [
        (r"y=\alpha", "handwritten", "susik-online:web:v1", "L"),
        ("x^{2}+1", "printed", "susik-online:web:v1", "L"),
    ]
    crop = tmp_path / "export-a" / samples[0].image
    assert crop.is_file() and crop.stat().st_size > 100
    second = export_dataset(store.labelled_regions(), tmp_path / "export-b")
    assert first.digest == second.digest and first.n_samples == 2 and first.digest.startswith("sha256:")


def test_photos_are_kept_only_with_consent_and_purges_spare_shared_files(store):
    photo, other = sample_photo(), sample_photo(360, 240)
    store.receive("a", "v1", "page", photo, "JPEG", consent=True, source="web", license="L")
    store.receive("b", "v1", "page", photo, "JPEG", consent=True, license="L")  # same bytes: one file
    store.receive("c", "v1", "page", other, "JPEG")  # no consent: the record, never the photo
    file = store.image_dir / store.request("a").image_path
    assert (store.request("a").source, store.request("b").source) == ("web", "api")
    assert (store.request("c").image_path, store.request("c").license) == (None, None)
    assert [path for path in store.image_dir.rglob("*") if path.is_file()] == [file]

    purged = store.purge_requests({"a", "c", "nope"})
    assert purged.requests == ("a", "c") and purged.files_deleted == 0 and file.is_file()  # b still uses it
    row = store.request("a")
    assert (row.image_path, row.consent, row.license, row.status) == (None, False, None, "received")
    assert store.purge_requests(["b"]).files_deleted == 1 and not file.exists()
    assert store.purge_requests(["b"]) == ImagePurge(("b",), 0)  # again: nothing left to delete


def test_retention_deletes_old_photos_and_any_kept_without_consent(store):
    store.receive("old", "v1", "page", sample_photo(), "JPEG", consent=True, license="L")
    store.receive("new", "v1", "page", sample_photo(360, 240), "JPEG", consent=True, license="L")
    later = datetime.now(UTC)
    store.receive("newest", "v1", "page", sample_photo(400, 240), "JPEG", consent=True, license="L")
    with store.engine.begin() as connection:  # "old" arrived a year ago; "new" before consent was asked
        connection.execute(
            update(RequestRow).where(RequestRow.id == "old").values(created_at=later - timedelta(days=365))
        )
        connection.execute(update(RequestRow).where(RequestRow.id == "new").values(consent=False))
    files = {key: store.image_dir / store.request(key).image_path for key in ("old", "new", "newest")}
    assert store.purge_images(received_before=later - timedelta(days=30)).requests == ("new", "old")
    assert [key for key, file in files.items() if file.exists()] == ["newest"]
    assert store.request("old").consent is True  # retention is no withdrawal: the metrics row is as it was
    assert store.purge_images(received_before=later - timedelta(days=30)).requests == ()
    soon = datetime.now(UTC) + timedelta(seconds=1)
    assert store.purge_images(received_before=soon).requests == ("newest",)


def test_labelled_regions_come_only_from_consented_kept_photos_with_their_licence(store):
    for key, consent in (("yes", True), ("no", False)):
        store.receive(key, "v1", "page", sample_photo(), "JPEG", consent=consent, source="web", license="L")
        store.complete(key, PAGE)
        store.add_feedback(key, 0, latex="x^3")
    assert [(r.request_id, r.source, r.license) for r in store.labelled_regions()] == [("yes", "web", "L")]
    store.purge_requests(["yes"])
    assert list(store.labelled_regions()) == []
    assert len(store.feedback_facts()) == 2  # the metrics stay


def test_exports_are_recorded_once_per_folder(store, tmp_path):
    store.record_export(tmp_path / "ds", "sha256:a", 3)
    store.record_export(tmp_path / "other", "sha256:b", 1)
    store.record_export(tmp_path / "ds", "sha256:c", 2)
    assert [(row.path, row.digest, row.n_samples) for row in store.exports()] == [
        (str((tmp_path / "ds").resolve()), "sha256:c", 2),
        (str((tmp_path / "other").resolve()), "sha256:b", 1),
    ]
