"""`susik serve`, `susik online report|export`, `susik bench`, `susik plan`."""

from __future__ import annotations

import importlib.util
import json
import tempfile
from functools import partial
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from susik.serve.settings import Settings

console = Console()
online_app = typer.Typer(
    help="Online evaluation: what users' feedback says, and the dataset it yields.", no_args_is_help=True
)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def serve(
    host: Annotated[str, typer.Option(help="interface; 0.0.0.0 exposes it to the network")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    backend: Annotated[str, typer.Option(help="local (one uvicorn process) or ray (extra scale)")] = "local",
    replicas: Annotated[int, typer.Option(help="Ray Serve replicas, each with its own models")] = 1,
    replica_cpus: Annotated[float, typer.Option(help="CPUs Ray reserves per replica")] = 1.0,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
) -> None:
    """Serve the API (docs at /docs) and the web page on the bundled models; settings from SUSIK_* env."""
    try:
        settings = Settings()
    except ValueError as error:
        raise _fail(f"bad SUSIK_* setting: {error}") from None
    if backend == "ray":
        if importlib.util.find_spec("ray") is None:
            raise _fail("Ray Serve is not installed: pip install 'susik[scale]'")
        from susik.serve.ray_backend import serve_on_ray

        serve_on_ray(settings, host, port, replicas, replica_cpus)
        return
    if backend != "local":
        raise _fail(f"--backend is local or ray, not {backend!r}")
    import uvicorn

    from susik.serve.app import create_app

    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level)


def _open_store(db: str | None):
    from susik.serve.store import FeedbackStore

    settings = Settings(**({"db_url": db} if db else {}))
    url = settings.database_url()
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        raise _fail(f"no database at {url.removeprefix('sqlite:///')} (set SUSIK_DATA_DIR or --db)")
    return FeedbackStore.open(url, settings.image_dir)


DbOption = Annotated[
    str | None, typer.Option("--db", help="SQLAlchemy URL; default from SUSIK_DB_URL/SUSIK_DATA_DIR")
]


VersionOption = Annotated[str | None, typer.Option(help="model version as stored, e.g. recognizer@v3")]


@online_app.command("report")
def online_report_command(
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    champion: VersionOption = None,
    challenger: VersionOption = None,
) -> None:
    """Correction rate and latency per model version (95% intervals) and slice, edit distance of corrections,
    display latency, VOC; challenger against champion (default: the registry's aliases when
    SUSIK_MODEL_SOURCE=registry)."""
    from susik.serve.online import online_report

    if (champion is None) != (challenger is None):
        raise _fail("give both --champion and --challenger, or neither")
    if champion is None:
        champion, challenger = _registry_pair()
    store = _open_store(db)
    try:
        report = online_report(
            store.request_facts(), store.feedback_facts(), champion=champion, challenger=challenger
        )
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False, indent=2))
        return
    if not report["model_versions"]:
        console.print("no requests recorded yet")
        return
    table = Table(title="online evaluation")
    for column in (
        "model version",
        "slice",
        "requests",
        "feedback",
        "regions w/ verdict",
        "correction rate [95% CI]",
        "edit dist.",
        "server p50 [95% CI]/p95 ms",
        "display p50/p95 ms",
    ):
        table.add_column(column)
    fmt = lambda value: "-" if value is None else str(value)
    ci = lambda pair: "" if pair is None else f" [{pair[0]}, {pair[1]}]"
    for version, row in report["model_versions"].items():
        table.add_row(
            version,
            "all",
            str(row["requests"]),
            str(row["feedback"]),
            str(row["regions_with_feedback"]),
            fmt(row["correction_rate"]) + ci(row["correction_rate_ci95"]),
            fmt(row["mean_edit_distance"]),
            f"{fmt(row['latency_ms_p50'])}{ci(row['latency_ms_p50_ci95'])}/{fmt(row['latency_ms_p95'])}",
            f"{fmt(row['display_ms_p50'])}/{fmt(row['display_ms_p95'])}",
        )
        for axis, slices in row["slices"].items():
            for name, stats in slices.items():
                table.add_row(
                    "",
                    f"{axis}={name}",
                    "",
                    "",
                    str(stats["regions_with_feedback"]),
                    fmt(stats["correction_rate"]),
                    fmt(stats["mean_edit_distance"]),
                    "",
                    "",
                )
    console.print(table)
    for version, row in report["model_versions"].items():
        if row["confidence"] is not None:
            c = row["confidence"]
            console.print(f"{version}: served confidence on {c['n']} regions with a verdict: mean {c['mean_confidence']} "
                          f"against {c['uncorrected_rate']} left uncorrected; AUROC {c['auroc']}, ECE {c['ece']}")
    if "comparison" in report:
        _print_comparison(report["comparison"])
    for version, row in report["model_versions"].items():
        for item in row["voc"][:10]:
            console.print(f"[dim]{version} {item['at'][:16]}[/dim] {item['comment']}")


def _registry_pair() -> tuple[str | None, str | None]:
    """The registry's champion and challenger as stored model versions, when the server follows the registry."""
    settings = Settings()
    if settings.model_source != "registry":
        return None, None
    from susik.eval.tracking import TrackingError, alias_versions
    from susik.serve.registry_source import version_label

    try:
        aliases = alias_versions(settings.registry_model, settings.tracking_uri)
    except TrackingError as error:
        raise _fail(str(error)) from None
    if "champion" not in aliases or "challenger" not in aliases:
        return None, None
    return tuple(version_label(settings.registry_model, aliases[alias]) for alias in ("champion", "challenger"))


def _print_comparison(comparison: dict) -> None:
    console.print(
        f"challenger [bold]{comparison['challenger']}[/bold] against champion {comparison['champion']}: "
        f"[bold]{comparison['verdict']}[/bold]"
    )
    for name, metric in (("correction rate", "correction_rate"), ("server p50 ms", "latency_ms_p50")):
        block = comparison[metric]
        if block["difference"] is None:
            console.print(f"  {name}: {block['verdict']} ({block['why']})")
            continue
        low, high = block["ci95"]
        console.print(
            f"  {name}: {block['challenger']} vs {block['champion']}, difference {block['difference']:+} "
            f"[{low:+}, {high:+}] -> {block['verdict']}",
            markup=False,
        )
    console.print(f"[dim]{comparison['method']}[/dim]")


@online_app.command("export")
def online_export_command(
    out: Annotated[Path, typer.Option(help="folder for manifest.jsonl + images/ (a new crop dataset)")],
    db: DbOption = None,
) -> None:
    """Turn corrected and confirmed regions of consented uploads into a versioned crop dataset."""
    from susik.runtime.image_io import ImageLoadError
    from susik.serve.online import export_dataset

    store = _open_store(db)
    try:
        regions = list(store.labelled_regions())
        with _progress() as progress:
            task = progress.add_task("exporting", total=len(regions))
            version = export_dataset(regions, out, on_item=lambda: progress.advance(task))
        store.record_export(out, version.digest, version.n_samples)  # `susik data purge` looks here
    except (ImageLoadError, OSError) as error:
        raise _fail(str(error)) from None
    finally:
        store.close()
    console.print(f"{version.n_samples} samples -> {out / 'manifest.jsonl'}  version {version.digest}")


def bench(
    url: Annotated[
        str | None, typer.Option(help="a running server; default: start one on a free port")
    ] = None,
    fake: Annotated[
        bool, typer.Option(help="started server uses stand-in models (measures the HTTP stack)")
    ] = False,
    mode: Annotated[str, typer.Option(help="page or crop")] = "crop",
    images: Annotated[
        list[Path] | None, typer.Argument(help="images to send; default: a generated photo")
    ] = None,
    requests: Annotated[int, typer.Option(help="requests per concurrency level")] = 200,
    concurrency: Annotated[str, typer.Option(help="comma-separated concurrency levels")] = "1,2,4,8",
    out: Annotated[Path, typer.Option(help="JSON results (input of `susik plan`)")] = Path(
        "bench-serve.json"
    ),
) -> None:
    """Latency p50/p95 per stage and end to end, throughput against concurrency, the server's peak memory."""
    from susik.serve.bench import free_port, machine, peak_rss_mb, run_level, start_server
    from susik.serve.fakes import sample_photo

    if mode not in ("page", "crop"):
        raise _fail("--mode is page or crop")
    try:
        levels = [int(level) for level in concurrency.split(",")]
        payloads = (
            [path.read_bytes() for path in images]
            if images
            else [sample_photo(480, 160 if mode == "crop" else 360)]
        )
    except (ValueError, OSError) as error:
        raise _fail(str(error)) from None
    server, scratch = None, None
    try:
        if url is None:
            scratch = tempfile.TemporaryDirectory(prefix="susik-bench-")
            port = free_port()
            server = start_server(port, Path(scratch.name), fake)
            url = f"http://127.0.0.1:{port}"
        import httpx

        version = httpx.get(f"{url}/readyz", timeout=10).json().get("model_version")
        run_level(url, mode, payloads, 1, 5)  # warm-up: first calls allocate and load lazily
        results = []
        with _progress() as progress:
            for level in levels:
                task = progress.add_task(f"concurrency {level}", total=requests)
                advance = partial(progress.advance, task)
                results.append(run_level(url, mode, payloads, level, requests, advance))
        report = {
            "url": url,
            "mode": mode,
            "model_version": version,
            "fake_models": fake and server is not None,
            "machine": machine(),
            "levels": results,
            "server_peak_rss_mb": peak_rss_mb(server.pid) if server else None,
        }
    except RuntimeError as error:
        raise _fail(str(error)) from None
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        if scratch is not None:
            scratch.cleanup()
    out.write_text(json.dumps(report, indent=2))
    table = Table(title=f"{mode} @ {url} ({version})")
    for column in ("concurrency", "rps", "p50 ms", "p95 ms", "errors", "stage p50 ms"):
        table.add_column(column)
    for row in results:
        stages = ", ".join(f"{name} {values['p50']}" for name, values in row["stages_ms"].items())
        table.add_row(
            str(row["concurrency"]),
            str(row["rps"]),
            str(row["latency_ms"]["p50"]),
            str(row["latency_ms"]["p95"]),
            str(sum(row["errors"].values())),
            stages,
        )
    console.print(table)
    console.print(f"server peak RSS: {report['server_peak_rss_mb']} MB; results -> {out}")


def plan_command(
    qps: Annotated[float, typer.Option(help="target requests per second at peak")],
    p95: Annotated[float, typer.Option(help="latency SLO: p95 in seconds")],
    bench_file: Annotated[Path, typer.Option("--bench", help="`susik bench` results")] = Path(
        "bench-serve.json"
    ),
    gpu_mem: Annotated[float | None, typer.Option(help="GPU memory per GPU, GB")] = None,
    model_mem: Annotated[float | None, typer.Option(help="GPU memory one model replica takes, GB")] = None,
    gpus_per_machine: Annotated[int, typer.Option(help="GPUs per machine")] = 1,
    replicas_per_machine: Annotated[
        int, typer.Option(help="CPU replicas per machine (cores / bench cores)")
    ] = 1,
    utilisation: Annotated[float, typer.Option(help="planned peak utilisation of a replica")] = 0.75,
) -> None:
    """Machines (and models per GPU) needed for a target QPS at a p95 SLO, from measured throughput."""
    from susik.serve.capacity import Level, plan, replica_capacity

    try:
        measured = json.loads(bench_file.read_text())
        levels = [
            Level(
                row["concurrency"],
                row["rps"],
                (row["latency_ms"]["p95"] or float("inf")) / 1000,
                row["error_rate"],
            )
            for row in measured["levels"]
        ]
        result = plan(
            qps,
            replica_capacity(levels, p95),
            utilisation=utilisation,
            replicas_per_machine=replicas_per_machine,
            gpu_mem_gb=gpu_mem,
            model_mem_gb=model_mem,
            gpus_per_machine=gpus_per_machine,
        )
    except (OSError, KeyError, ValueError) as error:
        raise _fail(str(error)) from None
    console.print(
        f"one replica sustains {result.replica_rps:g} req/s at p95 <= {p95:g} s "
        f"({measured['mode']}, {measured['machine']['cpus']} CPUs, model {measured.get('model_version')})"
    )
    if result.models_per_gpu is not None:
        console.print(
            f"models per GPU: {result.models_per_gpu} ({gpu_mem:g} GB GPU / {model_mem:g} GB per model)"
        )
        console.print(
            "[yellow]the per-replica throughput is the bench file's; for a GPU plan, run `susik bench` "
            "on the GPU machine[/yellow]"
        )
    machines = f"{result.machines} machine{'s' if result.machines != 1 else ''}"
    console.print(
        f"{qps:g} req/s at {utilisation:.0%} utilisation -> {result.replicas} replicas, "
        f"{result.replicas_per_machine} per machine -> [bold]{machines}[/bold]"
    )
