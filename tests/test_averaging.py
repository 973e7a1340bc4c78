"""Checkpoint averaging: the weighted mean of recognizer weights, its provenance, and `susik train average`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from recognizer_helpers import checkpoint_of, confident_model, tiny_config, vocab
from typer.testing import CliRunner

from susik.cli import app
from susik.models.averaging import average_checkpoints, average_states
from susik.models.train_recognizer import load_checkpoint, model_from_checkpoint


def _checkpoint(seed: int, source: str, **changes: object) -> dict:
    words = vocab()
    checkpoint = checkpoint_of(confident_model(tiny_config(len(words), **changes), seed=seed), words)
    checkpoint.update({
        "step": 100 * (seed + 1), "command": f"susik train recognizer --seed {seed}",
        "sources": [{"manifest": f"{source}.jsonl", "name": source, "license": "CC0"}],
        "data_versions": {f"{source}.jsonl": f"sha256:{seed}"},
        "optimizer": {"state": {}}, "history": [{"step": 1}], "mlflow_run_id": "abc",
    })
    return checkpoint


def test_average_states_is_the_weighted_mean_and_keeps_integer_buffers() -> None:
    first = {"w": torch.tensor([0.0, 4.0]), "count": torch.tensor(3)}
    second = {"w": torch.tensor([2.0, 0.0]), "count": torch.tensor(9)}
    averaged = average_states([first, second], [1.0, 3.0])
    assert torch.allclose(averaged["w"], torch.tensor([1.5, 1.0]))
    assert averaged["count"].item() == 9  # from the heaviest, not 7.5
    assert averaged["w"].dtype == torch.float32


@pytest.mark.parametrize(("states", "weights", "message"), [
    ([], [], "nothing to average"),
    ([{"w": torch.zeros(2)}], [1.0, 1.0], "2 weights for 1"),
    ([{"w": torch.zeros(2)}, {"w": torch.zeros(2)}], [1.0, -1.0], "non-negative"),
    ([{"w": torch.zeros(2)}, {"w": torch.zeros(2)}], [0.0, 0.0], "positive sum"),
    ([{"w": torch.zeros(2)}, {"v": torch.zeros(2)}], [1.0, 1.0], "other parameters"),
    ([{"w": torch.zeros(2)}, {"w": torch.zeros(3)}], [1.0, 1.0], "shape"),
])
def test_average_states_refuses_what_cannot_be_averaged(states: list, weights: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        average_states(states, weights)


def test_averaged_checkpoint_carries_every_source_and_drops_the_run_state() -> None:
    first, second = _checkpoint(0, "crohme"), _checkpoint(1, "synthetic")
    averaged = average_checkpoints([first, second], [0.25, 0.75], ["a.pt", "b.pt"])
    name = "decoder.head.weight"
    expected = 0.25 * first["model"][name] + 0.75 * second["model"][name]
    assert torch.allclose(averaged["model"][name], expected, atol=1e-6)
    assert {s["name"] for s in averaged["sources"]} == {"crohme", "synthetic"}
    assert averaged["data_versions"] == {"crohme.jsonl": "sha256:0", "synthetic.jsonl": "sha256:1"}
    assert [(a["checkpoint"], a["weight"], a["step"]) for a in averaged["averaged_from"]] == [
        ("a.pt", 0.25, 100), ("b.pt", 0.75, 200)]
    assert averaged["averaged_from"][0]["command"] == "susik train recognizer --seed 0"
    assert averaged["step"] == 200 and averaged["best_metric"] is None
    assert not {"optimizer", "history", "mlflow_run_id"} & set(averaged)
    model, _ = model_from_checkpoint(averaged)  # loads as a recognizer
    assert torch.allclose(model.state_dict()[name], expected, atol=1e-6)


def test_checkpoints_of_other_architectures_or_vocabularies_are_refused() -> None:
    with pytest.raises(ValueError, match="shape|architecture"):
        average_checkpoints([_checkpoint(0, "a"), _checkpoint(1, "a", d_model=48)], [1, 1], ["a.pt", "b.pt"])
    other = _checkpoint(1, "a")
    other["vocab"] = list(reversed(other["vocab"]))
    with pytest.raises(ValueError, match="b.pt: another vocabulary"):
        average_checkpoints([_checkpoint(0, "a"), other], [1, 1], ["a.pt", "b.pt"])


def test_a_setting_an_older_checkpoint_leaves_out_counts_as_its_default() -> None:
    older = _checkpoint(0, "a")
    del older["model_config"]["preprocess"]["flatten"]  # written before the setting existed
    averaged = average_checkpoints([older, _checkpoint(1, "a")], [1, 1], ["a.pt", "b.pt"])
    assert averaged["model_config"]["preprocess"]["flatten"] == 0.5  # spelt out from now on
    unflattened = _checkpoint(1, "a")
    unflattened["model_config"]["preprocess"]["flatten"] = 0.0  # another input: not averaged
    with pytest.raises(ValueError, match="b.pt: another architecture"):
        average_checkpoints([_checkpoint(0, "a"), unflattened], [1, 1], ["a.pt", "b.pt"])


def test_cli_writes_an_averaged_checkpoint_and_names_its_inputs(tmp_path: Path) -> None:
    paths = []
    for seed in (0, 1):
        paths.append(tmp_path / f"c{seed}.pt")
        torch.save(_checkpoint(seed, "drawn"), paths[-1])
    out = tmp_path / "soup" / "soup.pt"
    result = CliRunner().invoke(app, ["train", "average", *map(str, paths), "--out", str(out),
                                      "--weight", "1", "--weight", "3"])
    assert result.exit_code == 0, result.output
    averaged = load_checkpoint(out)
    assert averaged["command"].startswith("susik train average")
    assert "--weight 1 --weight 3" in averaged["command"]
    assert [a["weight"] for a in averaged["averaged_from"]] == [0.25, 0.75]
    assert not out.with_name("soup.pt.tmp").exists()


def test_cli_gives_a_clear_error_for_a_file_that_is_no_checkpoint(tmp_path: Path) -> None:
    good = tmp_path / "good.pt"
    torch.save(_checkpoint(0, "drawn"), good)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    out = tmp_path / "soup.pt"
    result = CliRunner().invoke(app, ["train", "average", str(good), str(junk), "--out", str(out)])
    assert result.exit_code == 1
    assert "error: not a torch checkpoint" in result.output
    assert not out.exists()
    result = CliRunner().invoke(app, ["train", "average", str(good), str(tmp_path / "gone.pt"), "--out", str(out)])
    assert result.exit_code == 1 and "cannot read a checkpoint" in result.output


def test_an_exported_average_names_every_checkpoint_in_it_down_to_the_runs(tmp_path: Path) -> None:
    import numpy as np
    from recognizer_helpers import draw_crop, random_text

    from susik.models.registry import load_record
    from susik.runtime.export import export_recognizer

    inner = average_checkpoints([_checkpoint(0, "a"), _checkpoint(1, "b")], [1, 1], ["a.pt", "b.pt"])
    inner["command"] = "susik train average a.pt b.pt --out inner.pt"
    outer = average_checkpoints([inner, _checkpoint(2, "c")], [2, 1], ["inner.pt", "c.pt"])
    outer["command"] = "susik train average inner.pt c.pt --out outer.pt --weight 2 --weight 1"
    assert [a["checkpoint"] for a in outer["averaged_from"][0]["averaged_from"]] == ["a.pt", "b.pt"]
    rng = np.random.default_rng(0)
    calibration = [draw_crop(random_text(rng)) for _ in range(8)]
    export_recognizer(outer, tmp_path, calibration)
    record = load_record(tmp_path / "recognizer")
    assert [a["checkpoint"] for a in record.training.averaged_from] == ["inner.pt", "c.pt"]
    card = (tmp_path / "recognizer" / "MODEL_CARD.md").read_text()
    assert "- A weight average of:" in card
    assert "0.333333 x `c.pt` (step 300): `susik train recognizer --seed 2`" in card
    assert "    - 0.5 x `b.pt` (step 200): `susik train recognizer --seed 1`" in card  # nested one level deeper
