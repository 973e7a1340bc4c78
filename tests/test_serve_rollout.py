"""Rollout by alias on fake models: swaps under load, canary routing, the per-version verdict, rollback."""

from __future__ import annotations

import gc
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest
from fastapi.testclient import TestClient

from susik.eval.tracking import rollback_target
from susik.serve import Settings, create_app
from susik.serve.fakes import fake_pipelines, sample_photo
from susik.serve.online import online_report
from susik.serve.rollout import CanaryRouter, Serving
from susik.serve.store import FeedbackFacts, RequestFacts
from susik.serve.store.models import RequestRow

CROP = sample_photo(240, 80)


class DictSource:
    """A registry in a dictionary: alias -> version; version "n" reads every crop as "vn"."""

    def __init__(self, delay_s: float = 0.0, **aliases: str) -> None:
        self.aliases_now = dict(aliases)
        self.delay_s = delay_s
        self.loads: list[str] = []
        self.broken: set[str] = set()

    def aliases(self) -> dict[str, str]:
        return dict(self.aliases_now)

    def load(self, version: str):
        if version in self.broken:
            raise OSError(f"artifact of version {version} is corrupt")
        self.loads.append(version)
        return fake_pipelines(latex=f"v{version}", delay_s=self.delay_s, model_version=f"fake@v{version}")


def make_client(tmp_path, source: DictSource, **overrides) -> TestClient:
    settings = Settings(
        data_dir=tmp_path / "data", **{"registry_poll_s": 600, **overrides}
    )  # refresh by hand
    return TestClient(
        create_app(settings, source_factory=lambda _settings: source), raise_server_exceptions=False
    )


def crop(client: TestClient):
    return client.post("/v1/recognize", files={"file": ("c.jpg", CROP, "image/jpeg")}, data={"mode": "crop"})


def test_promotion_under_concurrent_requests_fails_none_and_each_finishes_on_its_model(tmp_path):
    source = DictSource(delay_s=0.02, champion="1")
    with make_client(tmp_path, source) as client:
        rollout = client.app.state.serve.rollout
        old = weakref.ref(rollout.serving.champion)
        answers: list[tuple[int, str, str, str]] = []
        some_done = threading.Event()

        def send() -> None:
            for _ in range(12):
                response = crop(client)
                body = response.json()
                answers.append(
                    (
                        response.status_code,
                        body.get("model_version"),
                        body.get("regions", [{}])[0].get("latex"),
                        body.get("request_id"),
                    )
                )
                if len(answers) >= 8:
                    some_done.set()

        with ThreadPoolExecutor(4) as pool:
            running = [pool.submit(send) for _ in range(4)]
            assert some_done.wait(30)  # the promotion lands while all four clients are sending
            source.aliases_now["champion"] = "2"
            assert rollout.refresh() is True
            for future in running:
                future.result()

        assert [status for status, *_ in answers] == [200] * 48
        served = {version for _, version, _, _ in answers}
        assert served == {"fake@v1", "fake@v2"}
        # each request reports the model that really read it, and is stored under that version
        store = client.app.state.serve.store
        for _, version, latex, request_id in answers:
            assert version == f"fake@{latex}"
            assert store.request(request_id).model_version == version
        assert crop(client).json()["model_version"] == "fake@v2"
        assert source.loads == ["1", "2"]
        crop(client)  # the batcher's worker lets go of the last batch that held the old model
        gc.collect()
        assert old() is None, "the replaced model is freed once no request holds it"


def test_a_request_in_inference_finishes_on_the_old_model(tmp_path):
    source = DictSource(delay_s=0.4, champion="1")
    with make_client(tmp_path, source) as client:
        reading = client.app.state.serve.rollout.serving.champion.crop.recognizer.batches
        with ThreadPoolExecutor(1) as pool:
            slow = pool.submit(crop, client)
            while not reading:  # until v1's recognizer has the crop
                threading.Event().wait(0.01)
            source.aliases_now["champion"] = "2"
            client.app.state.serve.rollout.refresh()
            fresh = crop(client).json()
            held = slow.result().json()
        assert (held["model_version"], held["regions"][0]["latex"]) == ("fake@v1", "v1")
        assert (fresh["model_version"], fresh["regions"][0]["latex"]) == ("fake@v2", "v2")


def test_canary_share_routes_exactly_and_version_is_in_response_store_readyz_and_report(tmp_path):
    source = DictSource(champion="1", challenger="2")
    with make_client(tmp_path, source, canary_share=0.25) as client:
        ready = client.get("/readyz").json()
        assert ready["model_version"] == "fake@v1"
        assert ready["challenger"] == {"model_version": "fake@v2", "share": 0.25}
        bodies = [crop(client).json() for _ in range(40)]
        versions = [body["model_version"] for body in bodies]
        assert versions.count("fake@v2") == 10 and versions.count("fake@v1") == 30
        assert all(body["regions"][0]["latex"] == body["model_version"].split("@")[1] for body in bodies)
        with client.app.state.serve.store._sessions() as session:
            stored = {row.id: row.model_version for row in session.query(RequestRow)}
        assert stored == {body["request_id"]: body["model_version"] for body in bodies}
        for body in bodies[:8]:
            client.post(
                "/v1/feedback", json={"request_id": body["request_id"], "region": 0, "accepted": True}
            )
        report = client.get("/v1/online/report").json()
        assert set(report["model_versions"]) == {"fake@v1", "fake@v2"}
        assert report["model_versions"]["fake@v1"]["latency_ms_p50"] > 0
        comparison = report["comparison"]
        assert (comparison["champion"], comparison["challenger"]) == ("fake@v1", "fake@v2")
        assert comparison["verdict"] in {"better", "worse", "not yet distinguishable"}
        from typer.testing import CliRunner

        from susik.cli import app

        database = client.app.state.serve.settings.database_url()
        command = ["online", "report", "--db", database, "--champion", "fake@v1", "--challenger", "fake@v2"]
        printed = CliRunner().invoke(app, command)
        assert printed.exit_code == 0, printed.output
        assert "challenger fake@v2 against champion fake@v1" in " ".join(printed.output.split())
        assert CliRunner().invoke(app, command[:-2]).exit_code == 1  # a champion without a challenger
        # promoting the challenger swaps to the model already loaded: nothing is read from the registry
        source.aliases_now["champion"] = "2"
        client.app.state.serve.rollout.refresh()
        assert source.loads == ["1", "2"]
        assert client.get("/readyz").json() == {"status": "ready", "model_version": "fake@v2"}
        assert {crop(client).json()["model_version"] for _ in range(8)} == {"fake@v2"}


@pytest.mark.parametrize(
    ("share", "requests", "expected"), [(0.0, 10, 0), (0.1, 50, 5), (1 / 3, 30, 10), (1.0, 7, 7)]
)
def test_canary_router_shares_are_exact(share, requests, expected):
    serving = Serving(fake_pipelines(model_version="a"), fake_pipelines(model_version="b"))
    router = CanaryRouter(share)
    assert sum(router.pick(serving).model_version == "b" for _ in range(requests)) == expected
    assert CanaryRouter(1.0).pick(Serving(serving.champion)).model_version == "a"  # no challenger: champion


def test_no_champion_is_not_ready_until_one_is_promoted_and_a_broken_version_keeps_the_old(tmp_path):
    source = DictSource()
    with make_client(tmp_path, source) as client:
        answer = client.get("/readyz")
        assert answer.status_code == 503 and "champion" in answer.json()["detail"]
        assert crop(client).status_code == 503
        source.aliases_now["champion"] = "1"
        client.app.state.serve.rollout.refresh()
        assert crop(client).json()["model_version"] == "fake@v1"
        source.broken.add("2")
        source.aliases_now["champion"] = "2"
        assert client.app.state.serve.rollout.refresh() is False
        assert crop(client).json()["model_version"] == "fake@v1"
        assert "corrupt" in client.get("/readyz").json()["rollout_problem"]
        source.aliases_now["champion"] = "1"  # rolled back: the problem is gone with the broken version
        client.app.state.serve.rollout.refresh()
        assert "rollout_problem" not in client.get("/readyz").json()


def test_the_watcher_follows_the_source_on_its_own(tmp_path):
    source = DictSource(champion="1")
    with make_client(tmp_path, source, registry_poll_s=0.5) as client:
        source.aliases_now["champion"] = "2"
        for _ in range(40):
            if client.get("/readyz").json()["model_version"] == "fake@v2":
                break
            threading.Event().wait(0.1)
        assert client.get("/readyz").json()["model_version"] == "fake@v2"


# --- the per-version verdict ---

AT = datetime(2026, 1, 1)


def traffic(version: str, n: int, corrected: int, latency_ms: float) -> tuple[list, list]:
    requests = [RequestFacts(version, "crop", "done", 1, latency_ms + index % 7) for index in range(n)]
    feedback = [
        FeedbackFacts(
            f"{version}-{index}",
            0,
            version,
            "crop",
            "printed",
            "x",
            "y" if index < corrected else None,
            None if index < corrected else True,
            index < corrected,
            None,
            None,
            AT,
        )
        for index in range(n)
    ]
    return requests, feedback


@pytest.mark.parametrize(
    ("champion", "challenger", "verdict", "rate_verdict", "latency_verdict"),
    [
        ((300, 90, 80.0), (300, 30, 80.0), "better", "better", "not yet distinguishable"),
        ((300, 30, 80.0), (300, 90, 80.0), "worse", "worse", "not yet distinguishable"),
        (
            (6, 2, 80.0),
            (6, 1, 80.0),
            "not yet distinguishable",
            "not yet distinguishable",
            "not yet distinguishable",
        ),
        ((300, 30, 80.0), (300, 30, 120.0), "worse", "not yet distinguishable", "worse"),  # slower beyond 10%
        (
            (300, 30, 80.0),
            (300, 30, 84.0),
            "not yet distinguishable",
            "not yet distinguishable",
            "not yet distinguishable",
        ),  # 4 ms slower: within the margin
        ((300, 30, 80.0), (300, 30, 50.0), "better", "not yet distinguishable", "better"),
    ],
)
def test_report_says_better_worse_or_not_yet(champion, challenger, verdict, rate_verdict, latency_verdict):
    requests_a, feedback_a = traffic("a", *champion)
    requests_b, feedback_b = traffic("b", *challenger)
    report = online_report(requests_a + requests_b, feedback_a + feedback_b, champion="a", challenger="b")
    comparison = report["comparison"]
    assert comparison["verdict"] == verdict
    assert comparison["correction_rate"]["verdict"] == rate_verdict
    assert comparison["latency_ms_p50"]["verdict"] == latency_verdict
    low, high = comparison["correction_rate"]["ci95"]
    assert low <= comparison["correction_rate"]["difference"] <= high
    rate_low, rate_high = report["model_versions"]["a"]["correction_rate_ci95"]
    assert rate_low <= champion[1] / champion[0] <= rate_high


def test_a_faster_challenger_nobody_judged_yet_is_not_better():
    requests_a, _ = traffic("a", 300, 0, 80.0)
    requests_b, _ = traffic("b", 300, 0, 40.0)
    comparison = online_report(requests_a + requests_b, [], champion="a", challenger="b")["comparison"]
    assert comparison["latency_ms_p50"]["verdict"] == "better"
    assert comparison["correction_rate"]["difference"] is None
    assert comparison["verdict"] == "not yet distinguishable"


# --- rollback ---


@pytest.mark.parametrize(
    ("history", "current", "expected"),
    [
        (["1", "2", "3"], "3", ("2", ["1", "2"])),
        (["1", "2"], "2", ("1", ["1"])),
        (["2"], "2", None),  # nothing came before
        ([], None, None),
        (["1", "2", "2"], "2", ("1", ["1"])),  # the same version promoted twice is one step
        (["1", "2"], "5", ("2", ["1", "2"])),  # moved elsewhere by hand: the recorded one comes back
    ],
)
def test_rollback_target(history, current, expected):
    assert rollback_target(history, current) == expected


@pytest.mark.slow  # creating the MLflow schema takes ~10 s on a loaded 2-core machine
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_server_follows_the_registry_champion_through_promote_and_rollback(tmp_path, tiny_bundle):
    pytest.importorskip("mlflow")
    from typer.testing import CliRunner

    from susik.cli import app

    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    runner = CliRunner()

    def models(*args: str) -> str:
        result = runner.invoke(app, ["models", *args, "--tracking-uri", uri])
        assert result.exit_code == 0, result.output
        return result.output

    models("register", str(tiny_bundle))
    models("register", str(tiny_bundle))
    models("promote", "recognizer", "1")
    settings = Settings(
        data_dir=tmp_path / "data", model_source="registry", tracking_uri=uri, registry_poll_s=600
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        rollout = client.app.state.serve.rollout
        answer = crop(client)
        assert answer.status_code == 200 and answer.json()["model_version"] == "recognizer@v1"
        page = client.post("/v1/recognize", files={"file": ("p.jpg", sample_photo(), "image/jpeg")})
        assert page.status_code == 200 and page.json()["model_version"] == "recognizer@v1"  # bundled detector
        edge = client.get("/v1/edge/recognizer")  # browsers get the registry's champion too
        assert edge.status_code == 200 and edge.json()["model_version"] == "recognizer@v1"
        assert "champion -> version 2 (was version 1)" in models("promote", "recognizer", "2")
        assert rollout.refresh() and crop(client).json()["model_version"] == "recognizer@v2"
        assert "champion -> version 1 (was version 2)" in models("rollback", "recognizer")
        assert rollout.refresh() and crop(client).json()["model_version"] == "recognizer@v1"
    assert (tmp_path / "data" / "registry" / "recognizer" / "2" / "record.json").is_file()
    result = runner.invoke(app, ["models", "rollback", "recognizer", "--tracking-uri", uri])
    assert result.exit_code == 1 and "no earlier champion" in result.output
