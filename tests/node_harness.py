"""Shared piece of the Node tests of the browser's JavaScript: a harness script run over JSON cases."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

WEB = Path(__file__).parents[1] / "src/susik/serve/web"
NODE = shutil.which("node")


def node_runner(folder: Path, modules: Sequence[str], harness: str) -> Callable[[list[dict]], list]:
    """Copy `modules` of serve/web and `harness` (an ES module reading cases from stdin, writing answers as
    JSON) into `folder`; the returned function runs the harness on a list of cases."""
    for name in modules:
        shutil.copy(WEB / name, folder / name)
    (folder / "package.json").write_text('{"type": "module"}')
    (folder / "harness.js").write_text(harness)

    def call(cases: list[dict]) -> list:
        done = subprocess.run([NODE, "harness.js"], cwd=folder, input=json.dumps(cases), capture_output=True,
                              text=True, timeout=120, check=True)
        return json.loads(done.stdout)

    return call
