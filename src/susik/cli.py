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
from susik.data.commands import data_app

app.add_typer(data_app, name="data")
from susik.serve.purge_command import purge

data_app.command("purge")(purge)
from susik.data.synth_command import synth

app.command()(synth)
from susik.serve.commands import bench, online_app, plan_command, serve

app.command()(serve)
app.add_typer(online_app, name="online")
app.command()(bench)
app.command("plan")(plan_command)
# `train` and `export` are shared groups: each model adds `train_app.command("<model>")(...)`.
train_app = typer.Typer(help="Train a model from a config in configs/.", no_args_is_help=True)
export_app = typer.Typer(help="Export a trained checkpoint to ONNX under models/.", no_args_is_help=True)
app.add_typer(train_app, name="train")
app.add_typer(export_app, name="export")
from susik.runtime.commands import average_recognizers, export_recognizer, recognize, train_recognizer

app.command()(recognize)
train_app.command("recognizer")(train_recognizer)
train_app.command("average")(average_recognizers)
export_app.command("recognizer")(export_recognizer)
from susik.models.detector_commands import average_detectors, export_detector_command, train_detector
from susik.runtime.predict_command import predict

app.command()(predict)
train_app.command("detector")(train_detector)
train_app.command("average-detector")(average_detectors)
export_app.command("detector")(export_detector_command)
from susik.eval.commands import eval_app, models_app
from susik.eval.gate_command import gate

app.add_typer(eval_app, name="eval")
app.add_typer(models_app, name="models")
app.command()(gate)
from susik.annotate.commands import annotate_app

app.add_typer(annotate_app, name="annotate")
from susik.release.commands import release_app

app.add_typer(release_app, name="release")
