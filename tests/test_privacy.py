"""Consent, retention and purges end to end: the HTTP app, `susik online export`, `susik data purge`, and the
schema migration of a database from before consent was asked (real SQLite files)."""

import time

import cv2
import numpy as np
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import text
from typer.testing import CliRunner

from susik.cli import app
from susik.data.manifest import CropSample, read_manifest, write_manifest
from susik.data.version import dataset_version
from susik.serve import Settings, create_app
from susik.serve.fakes import fake_pipelines, sample_photo
from susik.serve.online import exported_request_id
from susik.serve.privacy import purge_expired
from susik.serve.store import FeedbackStore
from susik.serve.store.db import alembic_config, make_engine

runner = CliRunner()


def _upload(client, photo: bytes, consent: bool) -> str:
    """One user's photo (two regions with the fake models) and a correction of each region."""
    form = {"consent": str(consent).lower(), "source": "web"}
    response = client.post("/v1/recognize", files={"file": ("p.jpg", photo, "image/jpeg")}, data=form)
    assert response.status_code == 200, response.text
    request_id = response.json()["request_id"]
    for region in (0, 1):
        verdict = {"request_id": request_id, "region": region, "latex": f"x^{{{region + 2}}}"}
        assert client.post("/v1/feedback", json=verdict).status_code == 201
    return request_id


def _files(folder):
    return [path for path in folder.rglob("*") if path.is_file()]


def test_purge_erases_a_users_photo_and_every_sample_derived_from_it(tmp_path, monkeypatch):
    data = tmp_path / "data"
    monkeypatch.setenv("SUSIK_DATA_DIR", str(data))
    photos = {"alice": sample_photo(320, 240), "bob": sample_photo(360, 240), "carol": sample_photo(400, 240)}
    with TestClient(create_app(Settings(data_dir=data), pipeline_factory=lambda _: fake_pipelines())) as client:
        ids = {name: _upload(client, photo, consent=name != "carol") for name, photo in photos.items()}
    alice = ids["alice"]

    exported = runner.invoke(app, ["online", "export", "--out", str(tmp_path / "ds")])
    assert exported.exit_code == 0, exported.output
    samples = list(read_manifest(tmp_path / "ds" / "manifest.jsonl"))
    assert sorted(exported_request_id(s) for s in samples) == sorted([alice] * 2 + [ids["bob"]] * 2)  # no carol
    assert {(s.source, s.license) for s in samples} == {
        ("susik-online:web:fake-1", Settings().collection_license)
    }
    before = dataset_version(tmp_path / "ds").digest
    (tmp_path / "ds" / "images" / f"{alice}-7.png").write_bytes(b"a crop of an older export")
    # a training set merging the export (absolute paths) with other data
    train = tmp_path / "train"
    train.mkdir()
    cv2.imwrite(str(train / "synth.png"), np.full((32, 64), 255, np.uint8))
    merged = [s.model_copy(update={"image": str(tmp_path / "ds" / s.image)}) for s in samples]
    write_manifest(train / "manifest.jsonl", [*merged, CropSample(image="synth.png", latex="y", source="synth",
                                                                   license="CC0")])

    purged = runner.invoke(app, ["data", "purge", "--request-id", alice, "--dataset", str(train)])
    assert purged.exit_code == 0, purged.output
    assert "removed 2 samples" in purged.output

    store = FeedbackStore.open(Settings().database_url(), data / "images")
    try:
        row = store.request(alice)
        assert (row.image_path, row.consent, row.license, row.status) == (None, False, None, "done")
        assert [r.request_id for r in store.labelled_regions()] == [ids["bob"]] * 2
        assert len(store.feedback_facts()) == 6  # the metrics of all three users stay
        (export,) = store.exports()
    finally:
        store.close()
    # the next version of the export lacks alice, and is what a fresh export of the store gives now
    after = dataset_version(tmp_path / "ds")
    assert after.digest != before and after.n_samples == 2 and export.digest == after.digest
    assert runner.invoke(app, ["online", "export", "--out", str(tmp_path / "fresh")]).exit_code == 0
    assert dataset_version(tmp_path / "fresh").digest == after.digest
    kept = list(read_manifest(train / "manifest.jsonl"))
    assert [exported_request_id(s) for s in kept] == [ids["bob"], ids["bob"], None]
    assert (train / "synth.png").is_file()
    # nowhere: no file holds alice's photo, is named after her request, or mentions it (hash caches too)
    outside_store = _files(tmp_path / "ds") + _files(train) + _files(tmp_path / "fresh")
    assert all(photos["alice"] != path.read_bytes() for path in _files(tmp_path))
    assert not [path for path in _files(tmp_path) if alice in path.name]
    assert not [path for path in outside_store if alice.encode() in path.read_bytes()]
    assert any(photos["bob"] == path.read_bytes() for path in _files(data / "images"))


def test_purge_command_needs_something_to_do_and_purges_expired_photos(tmp_path, monkeypatch):
    monkeypatch.setenv("SUSIK_DATA_DIR", str(tmp_path))
    missing = runner.invoke(app, ["data", "purge", "--expired"])
    assert missing.exit_code == 1 and "no database" in missing.output
    store = FeedbackStore.open(Settings().database_url(), tmp_path / "images")
    store.receive("r1", "v1", "page", sample_photo(), "JPEG", consent=True, license="L")
    store.close()
    nothing = runner.invoke(app, ["data", "purge"])
    assert nothing.exit_code == 1 and "--request-id" in nothing.output
    monkeypatch.setenv("SUSIK_RETENTION_DAYS", "30")
    kept = runner.invoke(app, ["data", "purge", "--expired"])
    assert kept.exit_code == 0 and "photos of 0 requests older than 30 days" in kept.output
    assert len(_files(tmp_path / "images")) == 1
    monkeypatch.setenv("SUSIK_RETENTION_DAYS", "1e-9")  # 86 µs: the photo above is older
    gone = runner.invoke(app, ["data", "purge", "--expired"])
    assert gone.exit_code == 0 and "photos of 1 requests" in gone.output and not _files(tmp_path / "images")


def test_the_server_deletes_expired_photos_on_its_own(tmp_path):
    settings = Settings(data_dir=tmp_path, retention_days=2 / 86400, purge_interval_s=0.1)
    with TestClient(create_app(settings, pipeline_factory=lambda _: fake_pipelines())) as client:
        request_id = _upload(client, sample_photo(), consent=True)
        store = client.app.state.serve.store
        assert store.request(request_id).image_path is not None
        deadline = time.monotonic() + 15
        while store.request(request_id).image_path is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert store.request(request_id).image_path is None and not _files(settings.image_dir)
        assert store.request(request_id).consent is True  # expired, not withdrawn: the record is intact


def test_migration_upgrades_a_database_from_before_consent(tmp_path):
    url = f"sqlite:///{tmp_path / 'susik.db'}"
    engine = make_engine(url)
    config = alembic_config()
    with engine.connect() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
        connection.execute(text(
            "INSERT INTO requests (id, created_at, model_version, mode, status, image_sha256, image_path) "
            "VALUES ('old', '2026-01-01 00:00:00.000000', 'v0', 'page', 'done', 'ab12', 'ab/ab12.jpg')"
        ))
        connection.commit()
    engine.dispose()
    legacy = tmp_path / "images" / "ab" / "ab12.jpg"
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(b"a photo stored before consent was asked")

    store = FeedbackStore.open(url, tmp_path / "images")  # migrates to the newest revision
    try:
        row = store.request("old")
        assert (row.image_path, row.consent, row.source, row.license) == ("ab/ab12.jpg", False, "api", None)
        store.receive("new", "v1", "crop", sample_photo(), "JPEG")  # no image: the column is nullable now
        assert purge_expired(store, retention_days=None).requests == ("old",) and not legacy.exists()
        with store.engine.connect() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0001")
            connection.commit()
            paths = dict(connection.execute(text("SELECT id, image_path FROM requests")).all())
        assert paths == {"old": "", "new": ""}
    finally:
        store.close()
