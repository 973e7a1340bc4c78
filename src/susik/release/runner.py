"""Running dvc.yaml: DVC set up offline (local cache, no remote, no analytics), `dvc repro` streamed to a log
with a progress bar, and which stages ran, which were unchanged and which failed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from susik.release.profile import ReleaseError

_RAN = re.compile(r"^Running stage '([^']+)'")
# "didn't change": nothing to do; "is cached": an output was touched and DVC restored it from its cache.
_SKIPPED = re.compile(r"^Stage '([^']+)' (?:didn't change, skipping|is cached - skipping run)")
_FAILED = re.compile(r"failed to reproduce '([^']+)'")


def stage_count(dvc_yaml: dict[str, Any], params: dict[str, Any]) -> int:
    """How many stages `dvc repro` will visit: a `foreach: ${name}` stage counts once per entry."""
    total = 0
    for stage in dvc_yaml.get("stages", {}).values():
        over = stage.get("foreach")
        if isinstance(over, str) and over.startswith("${") and over.endswith("}"):
            found: Any = params
            for key in over[2:-1].split("."):
                found = found.get(key, {}) if isinstance(found, dict) else {}
            total += len(found) if isinstance(found, (dict, list)) else 1
        else:
            total += len(over) if isinstance(over, (dict, list)) else 1
    return total


def _dvc(args: list[str], repo: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, env=env, capture_output=True,
                          text=True, check=False)


def environment() -> dict[str, str]:
    """DVC offline without analytics; `susik` in stage commands is this installation's."""
    env = dict(os.environ)
    env["DVC_NO_ANALYTICS"] = "1"
    env["PYTHONUNBUFFERED"] = "1"  # stage names as they start, for the progress bar and the log
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def ensure_dvc(repo: Path, env: dict[str, str]) -> None:
    """`dvc init` where there is no .dvc/ yet (without git if the folder is not a git work tree), and
    .dvcignore set to leave out the files susik keeps beside datasets."""
    if not (repo / ".dvc").is_dir():
        _init_dvc(repo, env)
    _ignore_in_outputs(repo)


def _init_dvc(repo: Path, env: dict[str, str]) -> None:
    in_git = subprocess.run(["git", "rev-parse", "--is-inside-work-tree"], cwd=repo, capture_output=True,
                            text=True, check=False).stdout.strip() == "true"
    init = ["init", "--quiet", *([] if in_git else ["--no-scm"])]
    for args in (init, ["config", "core.analytics", "false"]):
        done = _dvc(args, repo, env)
        if done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines()[-1]
            raise ReleaseError(f"dvc {' '.join(args)}: {last}")


# `susik data version` caches image hashes in DATASET/.susik-hashes.json, and training and eval version their
# data: without this, reading a stage's output would change it, and DVC would re-run everything after it.
DVC_IGNORED = (".susik-hashes.json",)


def _ignore_in_outputs(repo: Path) -> None:
    path = repo / ".dvcignore"
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    missing = [pattern for pattern in DVC_IGNORED if pattern not in lines]
    if missing:
        path.write_text("\n".join([*lines, *missing]) + "\n", encoding="utf-8")


@dataclass(frozen=True)
class ReproOutcome:
    ran: dict[str, float]  # stage -> seconds, in the order they ran
    skipped: list[str]  # unchanged, or restored from DVC's cache
    failed: str | None  # the stage that failed, if one did
    code: int  # dvc's exit status


def repro(repo: Path, env: dict[str, str], total: int, log_path: Path, console: Console,
          force: bool = False) -> ReproOutcome:
    """Run `dvc repro` in `repo`, every line of its output (and of the stages') into `log_path`, with a
    progress bar of `total` stages on `console`."""
    ran: dict[str, float] = {}
    skipped: list[str] = []
    failed = None
    current, since = None, time.perf_counter()
    columns = (TextColumn("release"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[stage]}"))
    command = [sys.executable, "-m", "dvc", "repro", *(["--force"] if force else [])]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w", encoding="utf-8", buffering=1) as log, \
            Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("stages", total=total, stage="")
        process = subprocess.Popen(command, cwd=repo, env=env, text=True, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT)
        assert process.stdout is not None
        for line in process.stdout:
            log.write(line)
            if (started := _RAN.match(line)) or (unchanged := _SKIPPED.match(line)):
                if current is not None:  # the stage that was running is done
                    ran[current] = round(time.perf_counter() - since, 2)
                    bar.advance(task)
                    current = None
                if started:
                    current, since = started.group(1), time.perf_counter()
                    bar.update(task, stage=f"running {current}")
                else:
                    skipped.append(unchanged.group(1))
                    bar.advance(task)
            elif match := _FAILED.search(line):
                failed = match.group(1)
        code = process.wait()
    if code != 0:
        failed = failed or current
    elif current is not None:
        ran[current] = round(time.perf_counter() - since, 2)
    return ReproOutcome(ran, skipped, failed, code)
