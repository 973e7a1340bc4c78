"""`susik release` and the pipeline's steps: the model lifecycle as one DVC pipeline (dvc.yaml at the root).

    synth (dataset spec) -> page crops -> import real crops -> handwriting composed from their glyphs
    + exported user corrections -> configure
    -> train recognizer / detector -> export + int8 -> eval on the fixed validation sets -> gate
    -> register -> promote (only when the gate passed)

`susik release --config PROFILE` checks the profile (configs/release_tiny.yaml, configs/release.yaml), copies
it to release/params.yaml (the file dvc.yaml reads its sizes and paths from), sets DVC up when the folder has
none (local cache only, no remote, analytics off) and runs `dvc repro`. DVC keys every stage by the hashes of
its dependencies, its parameters and its command, so an unchanged stage is skipped and a changed spec or
profile re-runs only what lies downstream of it. Everything the pipeline writes lies under release/.

The subcommands are the pipeline's own steps, called from dvc.yaml; the rest are existing `susik` commands.
A failed gate is a verdict, not an error: the gate stage records its report and the promote stage writes
why it did not promote, so the pipeline finishes and a re-run after a better model picks up from there.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from susik.release.profile import ReleaseError, check_inputs, load_profile, read_yaml, training_configs
from susik.release.runner import ensure_dvc, environment, repro, stage_count

_out = Console(soft_wrap=True, highlight=False)
_err = Console(stderr=True, soft_wrap=True, highlight=False)

PARAMS = Path("release/params.yaml")  # what dvc.yaml's `vars` reads: the profile of the last `susik release`
LOG = Path("release/repro.log")
SUMMARY = Path("release/last_run.json")


def promotion_decision(gate_report: dict[str, Any]) -> tuple[bool, str]:
    """(promote?, why) from a `susik gate --report` JSON."""
    if gate_report.get("passed") is True:
        return True, "gate passed"
    failed = gate_report.get("failed") or []
    if not failed:
        return False, "gate failed"
    return False, f"gate failed: {len(failed)} requirement(s): {', '.join(failed)}"


def release(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option(
        help="release profile YAML (configs/release_tiny.yaml, configs/release.yaml)")] = None,
    repo: Annotated[Path, typer.Option(help="the project folder holding dvc.yaml")] = Path("."),
    force: Annotated[bool, typer.Option(help="re-run every stage, changed or not")] = False,
) -> None:
    """Run the release pipeline (dvc.yaml) for a profile; unchanged stages are skipped. Steps: see below."""
    if ctx.invoked_subcommand is not None:
        return
    if config is None:
        _fail("--config PROFILE is required (e.g. configs/release_tiny.yaml)")
    started = time.perf_counter()
    try:
        profile = load_profile(config)
        if not (repo / "dvc.yaml").is_file():
            raise ReleaseError(f"{repo}: no dvc.yaml (run from the repository root or pass --repo)")
        check_inputs(profile, repo)
        env = environment()
        ensure_dvc(repo, env)
        # Defaults written out: dvc.yaml interpolates every value, stated in the profile or not.
        values = profile.model_dump(mode="json")
        header = f"# written by `susik release --config {config}`; edit the profile, not this file\n"
        text = header + yaml.safe_dump(values, sort_keys=False)
        params = repo / PARAMS
        params.parent.mkdir(parents=True, exist_ok=True)
        if not params.is_file() or params.read_text(encoding="utf-8") != text:  # untouched: no hash check
            params.write_text(text, encoding="utf-8")
        total = stage_count(read_yaml(repo / "dvc.yaml"), values)
        outcome = repro(repo, env, total, repo / LOG, _err, force=force)
    except ReleaseError as error:
        _fail(str(error))
    seconds = time.perf_counter() - started
    summary = {"config": str(config), "ran": outcome.ran, "skipped": outcome.skipped,
               "failed": outcome.failed, "seconds": round(seconds, 2)}
    (repo / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if outcome.code != 0:
        log = (repo / LOG).read_text(encoding="utf-8").splitlines()
        errors = [line for line in log if line.startswith("ERROR")]
        where = f"stage {outcome.failed} failed" if outcome.failed else "dvc repro failed"
        _fail(f"{where}: {errors[-1] if errors else f'exit {outcome.code}'} (full output: {repo / LOG})")
    _print_summary(repo, outcome.ran, outcome.skipped, seconds)


def _print_summary(repo: Path, ran: dict[str, float], skipped: list[str], seconds: float) -> None:
    table = Table(title=f"release: {len(ran)} stage(s) ran, {len(skipped)} unchanged, {seconds:.1f} s")
    table.add_column("stage")
    table.add_column("status")
    for stage, stage_seconds in ran.items():
        table.add_row(stage, f"[green]ran[/] {stage_seconds:.1f} s")
    for stage in skipped:
        table.add_row(stage, "[dim]unchanged[/]")
    _out.print(table)
    gate = repo / "release/gate/report.json"
    if gate.is_file():
        promote, why = promotion_decision(json.loads(gate.read_text(encoding="utf-8")))
        _out.print(f"gate: {why}" + ("" if promote else " -> not promoted"), markup=False)
    for receipt in sorted((repo / "release/registry").glob("*.promotion.json")):
        outcome = json.loads(receipt.read_text(encoding="utf-8"))
        done = f"{outcome['alias']} now" if outcome["promoted"] else f"not promoted ({outcome['reason']})"
        _out.print(f"{outcome['name']} version {outcome['version']}: {done}", markup=False)


def _fail(message: str) -> None:
    _err.print(f"error: {message}", markup=False)
    raise typer.Exit(1)


# --- the pipeline's steps -----------------------------------------------------------------------------------

release_app = typer.Typer(
    help="The release pipeline (dvc.yaml): `susik release --config PROFILE` runs it; the commands are its "
    "steps.",
    invoke_without_command=True)
release_app.callback()(release)


@release_app.command("crops")
def crops_step(
    pages: Annotated[Path, typer.Argument(help="a page dataset folder or manifest (from `susik synth`)")],
    out: Annotated[Path, typer.Option(help="crop dataset folder: manifest.jsonl + images/")],
    height: Annotated[int, typer.Option(min=16, help="crops are at most twice this high")] = 64,
    margin: Annotated[float, typer.Option(min=0, help="grow each quad by a random share of its line height "
                                          "below this, as the pipeline widens detected quads")] = 0.0,
    run_on: Annotated[float, typer.Option(min=0, help="half the regions also run on past one end by up to this "
                                          "many line heights, as a detected region sometimes does")] = 0.0,
) -> None:
    """Cut every labelled formula of a page dataset into an upright crop (recognizer data)."""
    from susik.data.manifest import ManifestError, find_manifest
    from susik.data.page_crops import write_page_crops
    from susik.runtime.image_io import ImageLoadError

    try:
        manifest = find_manifest(pages)
        total = sum(1 for line in manifest.open(encoding="utf-8") if line.strip())
        columns = (TextColumn("crops"), BarColumn(), MofNCompleteColumn())
        with Progress(*columns, console=_err, transient=True) as bar:
            task = bar.add_task("pages", total=total)
            count = write_page_crops(manifest, out, height=height, margin=margin, run_on=run_on,
                                     on_page=lambda: bar.advance(task))
    except (ManifestError, ImageLoadError, OSError, ValueError) as error:
        _fail(str(error).splitlines()[0])
    _out.print(f"{count} crops from {total} pages -> {out / 'manifest.jsonl'}")


@release_app.command("configure")
def configure_step(
    params: Annotated[Path, typer.Option(help="the release profile")] = PARAMS,
    out: Annotated[Path, typer.Option(help="folder for recognizer.yaml and detector.yaml")] = Path(
        "release/configs"),
) -> None:
    """Write the training configs: the profile's base configs pointed at the pipeline's datasets."""
    try:
        recognizer, detector = training_configs(load_profile(params))
    except ReleaseError as error:
        _fail(str(error))
    out.mkdir(parents=True, exist_ok=True)
    for name, body in (("recognizer", recognizer), ("detector", detector)):
        (out / f"{name}.yaml").write_text(yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
    sources = ", ".join(source["manifest"] for source in recognizer["data"]["sources"])
    _out.print(f"wrote {out / 'recognizer.yaml'} (sources: {sources}) and {out / 'detector.yaml'}")


UriOpt = Annotated[str | None, typer.Option("--tracking-uri",
                                            help="MLflow store (default $SUSIK_TRACKING_URI)")]


@release_app.command("register")
def register_step(
    folder: Annotated[Path, typer.Argument(help="an exported model folder (record.json + ONNX)")],
    receipt: Annotated[Path, typer.Option(help="JSON written with the registered name and version")],
    eval_dir: Annotated[Path | None, typer.Option(
        "--eval", help="eval folder whose metrics.json to attach")] = None,
    name: Annotated[str | None, typer.Option(help="registered name (default: the record's name)")] = None,
    tracking_uri: UriOpt = None,
) -> None:
    """Register a model folder as a new version and write a receipt naming it (for the promote step)."""
    from susik.eval.tracking import TrackingError, flatten_metrics, register_model

    record = folder / "record.json"
    if not record.is_file():
        _fail(f"{folder}: no record.json (export a model first)")
    raw = json.loads(record.read_text(encoding="utf-8"))
    metrics = {}
    if eval_dir is not None:
        metrics = flatten_metrics(json.loads((eval_dir / "metrics.json").read_text(encoding="utf-8")))
    try:
        row = register_model(name or raw.get("name", folder.name), folder, metrics=metrics,
                             params={"record_version": raw.get("version", ""), "release": "susik release"},
                             uri=tracking_uri)
    except TrackingError as error:
        _fail(str(error))
    receipt.parent.mkdir(parents=True, exist_ok=True)
    receipt.write_text(json.dumps({"name": row.name, "version": row.version, "run_id": row.run_id,
                                   "folder": str(folder)}, indent=2) + "\n", encoding="utf-8")
    _out.print(f"registered {row.name} version {row.version}")


@release_app.command("promote")
def promote_step(
    registered: Annotated[Path, typer.Argument(help="a receipt of the register step")],
    gate: Annotated[Path, typer.Option(help="the gate report (susik gate --report)")],
    receipt: Annotated[Path, typer.Option(help="JSON written with what was promoted, or why not")],
    alias: Annotated[Literal["champion", "challenger"], typer.Option(help="the alias to move")] = "champion",
    tracking_uri: UriOpt = None,
) -> None:
    """Point the alias at the registered version if the gate passed; otherwise record why not (exit 0)."""
    from susik.eval.tracking import TrackingError, promote

    version = json.loads(registered.read_text(encoding="utf-8"))
    promote_it, why = promotion_decision(json.loads(gate.read_text(encoding="utf-8")))
    outcome = {"name": version["name"], "version": version["version"], "alias": alias, "promoted": promote_it,
               "reason": why, "previous": None}
    if promote_it:
        try:
            outcome["previous"] = promote(version["name"], version["version"], alias, tracking_uri)
        except TrackingError as error:
            _fail(str(error))
    receipt.parent.mkdir(parents=True, exist_ok=True)
    receipt.write_text(json.dumps(outcome, indent=2) + "\n", encoding="utf-8")
    _out.print(f"{version['name']} version {version['version']}: "
               + (f"{alias} now" if promote_it else f"not promoted: {why}"), markup=False)


TINY_CROPS = ("x+1", "2y=4", "a-b", "7x", "3+4=7", "x=2")


def write_tiny_inputs(root: Path) -> None:
    """The tiny profile's two stand-in inputs under `root/fixtures`: a folder of drawn crops with .txt labels
    (for `susik data import folder`) and a serving store without feedback (for `susik online export`)."""
    import cv2
    import numpy as np

    from susik.serve.store import FeedbackStore

    real = root / "fixtures" / "real"
    real.mkdir(parents=True, exist_ok=True)
    for index, text in enumerate(TINY_CROPS):
        image = np.full((40, 24 * len(text) + 20), 255, np.uint8)
        cv2.putText(image, text, (8, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.9, 0, 2, cv2.LINE_AA)
        cv2.imwrite(str(real / f"c{index}.png"), image)
        (real / f"c{index}.txt").write_text(text, encoding="utf-8")
    FeedbackStore.open(f"sqlite:///{root / 'fixtures' / 'feedback.db'}", root / "fixtures" / "images").close()


@release_app.command("tiny-inputs")
def tiny_inputs_step(
    repo: Annotated[Path, typer.Option(help="the project folder holding dvc.yaml")] = Path("."),
) -> None:
    """Write what configs/release_tiny.yaml reads besides specs/: fixtures/real and fixtures/feedback.db."""
    write_tiny_inputs(repo)
    fixtures = repo / "fixtures"
    _out.print(f"wrote {fixtures / 'real'} ({len(TINY_CROPS)} crops) and {fixtures / 'feedback.db'}")
