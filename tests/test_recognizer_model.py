"""Recognizer torch module and training loop, on tiny configs and drawn crops."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from recognizer_helpers import ALPHABET, draw_crop, random_text, tiny_config, vocab

from susik.latex import Vocabulary
from susik.models.recognizer import NEG_INF, Recognizer, RecognizerConfig, fold_batchnorm, memory_padding
from susik.models.train_recognizer import (
    BucketedBatches,
    Tracker,
    TrainConfig,
    confidence_auroc,
    fit,
    load_checkpoint,
    load_config,
    model_from_checkpoint,
    uses_bf16,
)
from susik.runtime.preprocess import pad_batch, preprocess

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _source(seed: int, worker: int, workers: int):
    rng = np.random.default_rng([seed, worker])
    while True:
        text = random_text(rng, 1, 6)
        yield draw_crop(text, scale=float(rng.uniform(0.7, 1.2))), text


def _tiny_train_config(**changes) -> TrainConfig:
    words = vocab()
    model = tiny_config(len(words)).model_copy(update={"vocab_size": None})
    base = {"model": model, "batch_size": 8, "steps": 12, "epoch_steps": 6, "bucket_batches": 2, "num_workers": 0,
            "mlflow": False, "eval_batch_size": 8, "eval_max_tokens": 12, "optim": {"lr": 3e-3, "warmup": 0.1}}
    return TrainConfig(**{**base, **changes})


def _inputs(model: Recognizer, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    config = model.config.preprocess
    batch, widths = pad_batch([preprocess(draw_crop(t), config) for t in texts], config)
    return torch.from_numpy(batch), torch.from_numpy(widths)


# --- config -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"channels": (16,), "blocks": (1, 1), "strides": ((2, 2), (2, 2))}, "one entry per stage"),
        ({"d_model": 30, "heads": 4}, "divisible"),
        ({"preprocess": {"height": 32, "width_multiple": 4}}, "width_multiple"),
        ({"preprocess": {"height": 36, "width_multiple": 8}}, "height"),
        ({"unknown_field": 1}, "Extra inputs"),
    ],
)
def test_config_rejects_inconsistent_architectures(changes, message):
    with pytest.raises(ValidationError, match=message):
        tiny_config(20, **changes)


def test_model_needs_a_vocabulary_size():
    with pytest.raises(ValueError, match="vocab_size"):
        Recognizer(RecognizerConfig())


def test_default_architecture_fits_the_size_budget():
    model = Recognizer(RecognizerConfig(vocab_size=600))
    parameters = sum(p.numel() for p in model.parameters())
    assert parameters <= 20_000_000
    assert model.config.total_stride == (16, 16)


@pytest.mark.parametrize("name", ["small", "tiny", "gpu", "cpu_stage7", "cpu_stage8"])
def test_bundled_training_configs_validate(name):
    config = load_config(REPO / "configs" / f"recognizer_{name}.yaml")
    model = Recognizer(config.model.model_copy(update={"vocab_size": 600}))
    parameters = sum(p.numel() for p in model.parameters())
    assert parameters <= 10_500_000  # int8 files of about a byte a weight stay near 10 MB


def test_training_config_rejects_unknown_keys(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("steps: 10\nlearning_rate: 0.1\n")
    with pytest.raises(ValidationError, match="learning_rate"):
        load_config(path)


# --- module contracts ---------------------------------------------------------------------------------------


def test_cached_steps_reproduce_teacher_forcing():
    torch.manual_seed(0)
    model = Recognizer(tiny_config(len(vocab()))).eval()
    images, widths = _inputs(model, ["12+3", "x=7-45"])
    tokens = torch.randint(4, len(vocab()), (2, 9))
    with torch.no_grad():
        forced = model(images, widths, tokens)
        memory, pad = model.encode(images, widths)
        cross = model.decoder.cross_kv(memory)
        past = model.decoder.empty_cache(2)
        stepped = []
        for position in range(tokens.shape[1]):
            logits, past = model.decoder.step(
                tokens[:, position : position + 1], torch.tensor([position]), pad.float() * NEG_INF, past, cross
            )
            stepped.append(logits)
    assert len(past) == 2 * model.config.layers and past[0].shape[2] == tokens.shape[1]
    torch.testing.assert_close(torch.stack(stepped, dim=1), forced, atol=1e-5, rtol=1e-4)


def test_padding_does_not_change_a_crops_output():
    torch.manual_seed(1)
    model = Recognizer(tiny_config(len(vocab()))).eval()
    alone_images, alone_widths = _inputs(model, ["1+2"])
    batch_images, batch_widths = _inputs(model, ["1+2", "12345678=9x"])
    assert batch_images.shape[3] > alone_images.shape[3]
    tokens = torch.randint(4, len(vocab()), (1, 5))
    with torch.no_grad():
        alone = model(alone_images, alone_widths, tokens)
        batched = model(batch_images, batch_widths, tokens.expand(2, -1))[:1]
    torch.testing.assert_close(batched, alone, atol=1e-4, rtol=1e-4)


def test_memory_padding_marks_only_columns_beyond_the_width():
    pad = memory_padding(torch.tensor([16, 40]), feature_height=2, feature_width=4, stride_w=8)
    expected_first = [False, False, True, True] * 2
    expected_second = [False] * 4 * 2
    assert pad.tolist() == [expected_first, expected_second]


def test_batchnorm_folding_keeps_outputs():
    torch.manual_seed(2)
    model = Recognizer(tiny_config(len(vocab())))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    model.eval()
    images, _ = _inputs(model, ["7x+1"])
    with torch.no_grad():
        before = model.encoder(images)
        fold_batchnorm(model)
        after = model.encoder(images)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-4)


def test_greedy_stops_at_eos_and_reports_probabilities():
    torch.manual_seed(3)
    model = Recognizer(tiny_config(len(vocab()))).eval()
    images, widths = _inputs(model, ["1", "22"])
    with torch.no_grad():
        model.decoder.head.bias.fill_(0.0)
        model.decoder.head.bias[vocab().eos_id] = 50.0  # the model always says EOS first
        ids, probs = model.greedy(images, widths, vocab().bos_id, vocab().eos_id, max_len=10)
    assert ids.shape == (2, 1) and (ids == vocab().eos_id).all()
    assert ((probs > 0.99) & (probs <= 1.0)).all()


# --- data ---------------------------------------------------------------------------------------------------


def test_bucketed_batches_group_similar_widths_and_skip_unusable_labels():
    words = vocab()
    config = tiny_config(len(words))

    def source(seed, worker, workers):
        rng = np.random.default_rng(seed)
        for index in range(40):
            text = random_text(rng, 1, 12)
            yield draw_crop(text), text if index % 10 else ""  # every 10th label is empty: skipped

    batches = list(BucketedBatches(source, words, config, batch_size=4, bucket_batches=9, seed=0))
    assert sum(b.images.shape[0] for b in batches) == 36
    for batch in batches:
        assert batch.images.shape[3] % config.preprocess.width_multiple == 0
        assert batch.images.shape[3] - int(batch.widths.min()) < 60  # sorted pool: little padding
        assert (batch.tokens[:, 0] == words.bos_id).all()
        ends = (batch.tokens == words.eos_id).sum(dim=1)
        assert (ends == 1).all()


def test_confidence_auroc():
    assert confidence_auroc([0.9, 0.8, 0.2, 0.1], [True, True, False, False]) == 1.0
    assert confidence_auroc([0.1, 0.2, 0.8, 0.9], [True, True, False, False]) == 0.0
    assert confidence_auroc([0.5, 0.5], [True, False]) == 0.5
    assert confidence_auroc([0.3, 0.4], [True, True]) is None


# --- training -----------------------------------------------------------------------------------------------


def test_fit_learns_checkpoints_and_resumes(tmp_path):
    words = vocab()
    rng = np.random.default_rng(42)
    validation = [(draw_crop(t), t) for t in (random_text(rng, 1, 4) for _ in range(6))]
    config = _tiny_train_config()
    result = fit(config, _source, validation, words, tmp_path / "run", log=lambda _: None,
                 provenance={"command": "susik train recognizer --init stage1.pt"})
    assert result.step == 12 and len(result.history) == 2
    assert result.history[-1]["loss"] < result.history[0]["loss"]  # it learns something
    assert "val_exp_rate" in result.history[0]

    checkpoint = load_checkpoint(result.last)
    for key in ("model", "optimizer", "scheduler", "step", "best_metric", "model_config", "vocab",
                "train_config", "data_versions", "command"):
        assert key in checkpoint, key
    assert checkpoint["step"] == 12 and checkpoint["vocab"] == words.tokens
    assert result.best is not None and result.best.is_file()
    model, restored = model_from_checkpoint(checkpoint)
    assert restored.tokens == words.tokens and not model.training

    longer = config.model_copy(update={"steps": 18})
    resumed = fit(longer, _source, validation, words, tmp_path / "run", resume=True, log=lambda _: None,
                  provenance={"command": "susik train recognizer --resume"})
    assert resumed.step == 18 and len(resumed.history) == 3
    # The record names the command that started the run, not the --resume that finished it.
    assert load_checkpoint(resumed.last)["command"] == "susik train recognizer --init stage1.pt"
    assert load_checkpoint(resumed.last)["scheduler"]["last_epoch"] == 18


@pytest.mark.parametrize("precision, device, amx, expected", [
    ("fp32", "cuda", True, False), ("bf16", "cpu", False, True), ("auto", "cuda", False, True),
    ("auto", "cpu", True, True), ("auto", "cpu", False, False),
])
def test_bf16_autocast_where_it_pays(monkeypatch, precision, device, amx, expected):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    assert uses_bf16(precision, torch.device(device)) is expected


def test_bf16_training_learns_and_keeps_fp32_weights(tmp_path):
    result = fit(_tiny_train_config(precision="bf16"), _source, [], vocab(), tmp_path / "run", log=lambda _: None)
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    weights = load_checkpoint(result.last)["model"]
    assert all(w.dtype == torch.float32 for w in weights.values() if w.is_floating_point())


def test_keep_epochs_leaves_each_evaluations_weights_for_averaging(tmp_path):
    from susik.models.averaging import average_checkpoints

    result = fit(_tiny_train_config(keep_epochs=True), _source, [], vocab(), tmp_path / "run", log=lambda _: None)
    snapshots = sorted((tmp_path / "run").glob("step_*.pt"))
    assert [p.name for p in snapshots] == ["step_000006.pt", "step_000012.pt"]
    first, last = (load_checkpoint(p) for p in snapshots)
    assert "optimizer" not in last and last["step"] == 12
    for name, weight in load_checkpoint(result.last)["model"].items():
        assert torch.equal(last["model"][name], weight), name
    averaged = average_checkpoints([first, last], [1, 1], [p.name for p in snapshots])
    name = "decoder.head.weight"
    assert not torch.equal(first["model"][name], last["model"][name])  # the run moved between epochs
    assert torch.allclose(averaged["model"][name], (first["model"][name] + last["model"][name]) / 2)
    assert not list((tmp_path / "run").glob("*.tmp"))
    fit(_tiny_train_config(steps=6), _source, [], vocab(), tmp_path / "plain", log=lambda _: None)
    assert not list((tmp_path / "plain").glob("step_*.pt"))  # off by default


def test_resume_refuses_another_architecture(tmp_path):
    config = _tiny_train_config(steps=6)
    fit(config, _source, [], vocab(), tmp_path / "run", log=lambda _: None)
    wider = config.model_copy(update={"model": config.model.model_copy(update={"ffn": 128})})
    with pytest.raises(ValueError, match="another model config"):
        fit(wider, _source, [], vocab(), tmp_path / "run", resume=True, log=lambda _: None)


def test_init_warm_starts_a_fresh_schedule_from_another_runs_weights(tmp_path):
    config = _tiny_train_config(steps=6)
    first = fit(config, _source, [], vocab(), tmp_path / "first", log=lambda _: None)
    trained = load_checkpoint(first.last)
    # A different vocabulary object on purpose: the warm start takes the checkpoint's, not the caller's.
    # A learning rate too small to move anything: the second run ends where the first one did.
    frozen = config.model_copy(update={"optim": config.optim.model_copy(update={"lr": 1e-12})})
    second = fit(frozen, _source, [], Vocabulary(["<pad>", "<bos>", "<eos>", "<unk>"]), tmp_path / "second",
                 init=first.last, log=lambda _: None)
    restarted = load_checkpoint(second.last)
    assert restarted["step"] == 6 and restarted["vocab"] == trained["vocab"]
    assert restarted["scheduler"]["last_epoch"] == 6  # a schedule of its own, not a continuation
    for name, weight in trained["model"].items():
        if "running_" in name or "num_batches" in name:
            continue  # batch-norm statistics move without any learning rate
        assert torch.allclose(restarted["model"][name].float(), weight.float(), atol=1e-6), name
    wider = config.model_copy(update={"model": config.model.model_copy(update={"ffn": 128})})
    with pytest.raises(ValueError, match="--init needs the same"):
        fit(wider, _source, [], vocab(), tmp_path / "third", init=first.last, log=lambda _: None)


def test_fit_reports_a_source_without_usable_samples(tmp_path):
    def empty(seed, worker, workers):
        return iter([(draw_crop("1"), "")])

    with pytest.raises(ValueError, match="no usable sample"):
        fit(_tiny_train_config(steps=2), empty, [], vocab(), tmp_path / "run", log=lambda _: None)


class _FakeMlflow(types.ModuleType):
    def __init__(self) -> None:
        super().__init__("mlflow")
        self.calls: list[tuple] = []

    def set_tracking_uri(self, uri):
        self.calls.append(("uri", uri))

    def set_experiment(self, name):
        self.calls.append(("experiment", name))

    def start_run(self, run_id=None):
        self.calls.append(("start", run_id))
        return types.SimpleNamespace(info=types.SimpleNamespace(run_id=run_id or "run-1"))

    def log_params(self, params):
        self.calls.append(("params", len(params)))

    def log_metrics(self, metrics, step):
        self.calls.append(("metrics", step, sorted(metrics)))

    def end_run(self):
        self.calls.append(("end",))


def test_training_logs_to_mlflow_and_resumes_the_same_run(tmp_path, monkeypatch):
    fake = _FakeMlflow()
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    config = _tiny_train_config(steps=6, mlflow=True)
    fit(config, _source, [], vocab(), tmp_path / "runs" / "a", log=lambda _: None)
    assert fake.calls[0] == ("uri", f"sqlite:///{(tmp_path / 'runs').resolve()}/mlflow.db")
    assert ("start", None) in fake.calls and ("end",) in fake.calls
    assert any(call[0] == "metrics" and call[1] == 6 and "loss" in call[2] for call in fake.calls)
    fake.calls.clear()
    fit(config.model_copy(update={"steps": 12}), _source, [], vocab(), tmp_path / "runs" / "a", resume=True,
        log=lambda _: None)
    assert ("start", "run-1") in fake.calls
    assert not any(call[0] == "params" for call in fake.calls)


def test_training_goes_on_when_mlflow_cannot_be_imported(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import raises ImportError
    lines: list[str] = []
    tracker = Tracker(True, "sqlite:///x.db", "recognizer", lines.append)
    assert tracker.start(None, {"a": 1}) is None
    tracker.metrics({"loss": 1.0}, 1)
    assert lines and "mlflow unavailable" in lines[0]


def test_alphabet_tokens_are_single_latex_tokens():
    # The drawn texts are their own labels: each character must be one normalised token.
    from susik.latex import normalize

    assert normalize("".join(ALPHABET)) == ALPHABET
