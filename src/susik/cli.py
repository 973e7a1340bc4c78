"""The `susik` command line. Each command lives beside the code it drives; this file only registers them."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="susik",
    help="susik (수식): phone photos of school math -> formula regions and LaTeX.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

# --- command registrations (one import + one line each) ---
from susik.data.commands import data_app  # noqa: E402

app.add_typer(data_app, name="data")
