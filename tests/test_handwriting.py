"""Glyph bank and composed handwriting (`susik.data.glyphs`, `susik.data.handwriting`, `..._set`)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from susik.cli import app
from susik.data.glyphs import GlyphBank, build_glyph_bank, column_groups, formula_cuts, visible_symbols
from susik.data.handwriting import HandwritingConfig, Unsupported, handwritten_tokens, write_formula
from susik.data.handwriting_set import HandwrittenSetConfig, swap_symbols, write_handwritten_set
from susik.latex import normalize


def _canvas(text: str, spacing: int = 34) -> np.ndarray:
    """A one-line 'handwritten' canvas: each character drawn in its own column with a Hershey stroke font."""
    canvas = np.full((80, spacing * len(text) + 20), 255, np.uint8)
    for at, char in enumerate(text):
        cv2.putText(canvas, char, (10 + spacing * at, 55), cv2.FONT_HERSHEY_SIMPLEX, 1.2, 0, 2, cv2.LINE_AA)
    return canvas


def _samples() -> list[tuple[np.ndarray, str]]:
    texts = ["1+2=3", "4-5=x", "a+b", "y=6", "7+8=9", "0-1"]
    return [(_canvas(text), " ".join(text)) for text in texts]


def test_one_line_labels_give_their_symbols_left_to_right():
    assert visible_symbols(normalize(r"x^{2}+\sin y \ldots")) == ["x", "2", "+", "s", "i", "n", "y", ".", ".", "."]
    assert visible_symbols(normalize(r"\frac{1}{2}")) is None  # not written on one line


def test_stacked_strokes_are_one_symbol_and_side_by_side_ones_are_not():
    canvas = np.full((60, 120), 255, np.uint8)
    cv2.line(canvas, (10, 25), (40, 25), 0, 2)  # '=': two bars in the same columns
    cv2.line(canvas, (10, 35), (40, 35), 0, 2)
    cv2.line(canvas, (60, 10), (60, 50), 0, 2)  # '1'
    cv2.line(canvas, (80, 30), (110, 30), 0, 2)  # '-'
    groups = column_groups(canvas)
    assert len(groups) == 3
    assert [int(np.flatnonzero(mask.any(axis=0))[0]) for mask in groups] == sorted(
        int(np.flatnonzero(mask.any(axis=0))[0]) for mask in groups)
    assert groups[0].any(axis=1)[25] and groups[0].any(axis=1)[35]


def test_the_bank_cuts_matching_formulas_and_skips_the_others():
    samples = [*_samples(), (_canvas("12"), "1 2 3")]  # three symbols, two groups: skipped
    bank = build_glyph_bank(samples)
    assert bank.formulas_seen == 7 and bank.formulas_used == 6
    assert bank.count("1") == 2 and bank.count("=") == 4 and bank.count("x") == 1
    glyph = bank.pick("=", np.random.default_rng(0))
    assert glyph.dtype == np.uint8 and glyph.shape[1] > glyph.shape[0]  # a flat symbol, cropped to its ink
    assert (glyph < 128).any()


def _fraction_canvas() -> np.ndarray:
    """'x =' then a fraction: '1-2' over a bar over '3'."""
    canvas = np.full((140, 260), 255, np.uint8)
    for char, x, y in [("x", 10, 80), ("=", 50, 80), ("1", 110, 50), ("-", 145, 50), ("2", 180, 50),
                       ("3", 145, 125)]:
        cv2.putText(canvas, char, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 1.2, 0, 2, cv2.LINE_AA)
    cv2.line(canvas, (100, 70), (220, 70), 0, 2)  # the bar
    return canvas


def test_fractions_with_one_line_parts_give_their_symbols():
    cuts = formula_cuts(_fraction_canvas(), normalize(r"x=\frac{1-2}{3}"))
    assert [symbol for symbol, _ in cuts] == ["1", "-", "2", "3", "x", "="]
    rows = {symbol: np.flatnonzero(mask.any(axis=1)) for symbol, mask in cuts}
    assert rows["1"][-1] < 70 < rows["3"][0]  # the numerator over the bar, the denominator under it
    columns = {symbol: np.flatnonzero(mask.any(axis=0)) for symbol, mask in cuts}
    assert columns["-"][-1] - columns["-"][0] < 40  # the numerator's minus, not the bar
    assert formula_cuts(_fraction_canvas(), normalize(r"x=\frac{1-2}{3 4}")) == []  # a symbol short: skipped
    assert formula_cuts(_fraction_canvas(), normalize(r"\frac{1-2}{3} x=")) == []  # the fraction is not first


def _integral_canvas(second_height: int) -> np.ndarray:
    """A tall S-curve (an integral) with a small 0 and 1 at its right and an x `second_height` tall."""
    canvas = np.full((120, 160), 255, np.uint8)
    curve = np.array([[40, 10], [34, 14], [30, 30], [30, 90], [26, 106], [20, 110]], np.int32)
    cv2.polylines(canvas, [curve], False, 0, 2)
    cv2.circle(canvas, (50, 104), 4, 0, 2)  # lower limit
    cv2.line(canvas, (52, 12), (52, 24), 0, 2)  # upper limit
    cv2.line(canvas, (80, 60 - second_height // 2), (100, 60 + second_height // 2), 0, 2)
    cv2.line(canvas, (100, 60 - second_height // 2), (80, 60 + second_height // 2), 0, 2)
    return canvas


def test_a_big_operator_is_cut_as_the_clearly_tallest_stroke():
    bank = build_glyph_bank([(_integral_canvas(20), r"\int_{0}^{1} x"),
                             (_integral_canvas(90), r"\int_{0}^{1} x"),  # x nearly as tall: skipped
                             (_integral_canvas(20), r"\int_{0}^{1} x + \int x")])  # two operators: skipped
    assert bank.count(r"\int") == 1 and bank.formulas_used == 1
    glyph = bank.pick(r"\int", np.random.default_rng(0))
    assert glyph.shape[0] > 90 and glyph.shape[1] < 30  # the curve alone, not its limits


def test_a_sum_has_its_limits_under_and_over_it_and_an_integral_beside_it():
    bank = build_glyph_bank([*_samples(), (_integral_canvas(20), r"\int_{0}^{1} x")])
    bank.add(r"\sum", cv2.rotate(_integral_canvas(20)[5:115, 15:45], cv2.ROTATE_90_CLOCKWISE), 99)
    upright = HandwritingConfig(slant=0.0)
    plain = write_formula(normalize(r"\sum"), bank, np.random.default_rng(1), upright)
    limited = write_formula(normalize(r"\sum_{1}^{2}"), bank, np.random.default_rng(1), upright)
    assert np.ptp(_ink_rows(limited)) > 1.4 * np.ptp(_ink_rows(plain))  # taller: limits stacked
    assert limited.shape[1] < 1.3 * plain.shape[1]  # not wider: nothing beside it
    beside = write_formula(normalize(r"\int_{0}^{1} x"), bank, np.random.default_rng(1), upright)
    alone = write_formula(normalize(r"\int"), bank, np.random.default_rng(1), upright)
    assert beside.shape[1] > 1.5 * alone.shape[1]


def test_outliers_of_a_symbol_are_dropped_by_aspect():
    bank = GlyphBank()
    for writer in range(10):
        bank.add("1", np.zeros((40, 8), np.uint8), writer)
    bank.add("1", np.zeros((8, 40), np.uint8), 99)  # a flat cut labelled '1' is a wrong cut
    assert bank.drop_outliers() == 1 and bank.count("1") == 10


def test_handwritten_labels_drop_font_switches_and_fold_printed_variants():
    tokens = handwritten_tokens(normalize(r"\mathrm{A} \leqslant x~\text{and}"))
    assert tokens == ["A", r"\leq", "x", "a", "n", "d"]


def _ink_rows(image: np.ndarray) -> np.ndarray:
    return np.flatnonzero((image < 128).any(axis=1))


def test_a_fraction_is_written_taller_than_its_row_and_a_superscript_above_its_base():
    bank = build_glyph_bank(_samples())
    rng = np.random.default_rng(3)
    row = write_formula(normalize("1+2"), bank, rng)
    fraction = write_formula(normalize(r"\frac{1+2}{3}"), bank, rng)
    assert np.ptp(_ink_rows(fraction)) > 1.6 * np.ptp(_ink_rows(row))
    assert fraction.dtype == np.uint8 and fraction.ndim == 2

    plain = write_formula(normalize("x"), bank, np.random.default_rng(5))
    raised = write_formula(normalize("x^{2}"), bank, np.random.default_rng(5))
    assert raised.shape[1] > plain.shape[1]
    sup_columns = raised[:, plain.shape[1]:]  # right of the base: the script
    base_columns = raised[:, :plain.shape[1] - 4]
    assert _ink_rows(sup_columns)[0] < _ink_rows(base_columns)[0]  # the script starts higher


def test_each_copy_of_a_glyph_is_bent_anew_and_a_writer_slants_the_whole_formula():
    bank = build_glyph_bank(_samples())  # one drawing of x
    fixed = {"x_height": (24.0, 24.0), "pen": (2.0, 2.0), "size_jitter": 0.0, "baseline_jitter": 0.0}
    unbent = HandwritingConfig(**fixed, slant=0.0, glyph_rotation=0.0, glyph_stretch=0.0, elastic=0.0)
    copies = [write_formula(["x"], bank, np.random.default_rng(seed), unbent) for seed in range(4)]
    assert all(np.array_equal(copies[0], copy) for copy in copies[1:])

    bent = HandwritingConfig(**fixed, slant=0.0)
    copies = [write_formula(["x"], bank, np.random.default_rng(seed), bent) for seed in range(4)]
    assert len({copy.tobytes() for copy in copies}) == 4
    inks = [int((copy < 128).sum()) for copy in copies]
    assert max(inks) < 1.6 * min(inks)  # bent, not broken or smeared

    slanted = HandwritingConfig(**fixed, slant=0.5, glyph_rotation=0.0, glyph_stretch=0.0, elastic=0.0)
    widths = {write_formula(["1"], bank, np.random.default_rng(seed), slanted).shape[1] for seed in range(6)}
    assert len(widths) > 2  # the shear widens each formula by its own amount


def test_roots_and_spelled_functions_are_written():
    bank = build_glyph_bank([*_samples(), (_canvas("sin"), r"\sin")])
    image = write_formula(normalize(r"\sqrt{x}+\sin 2"), bank, np.random.default_rng(0))
    assert (image < 128).sum() > 100


def test_what_the_bank_cannot_write_is_unsupported():
    bank = build_glyph_bank(_samples())
    with pytest.raises(Unsupported, match=r"\\pi"):
        write_formula(normalize(r"2\pi"), bank, np.random.default_rng(0))
    with pytest.raises(Unsupported):
        write_formula(normalize(r"\int_0^1 x"), bank, np.random.default_rng(0))


def test_swapping_keeps_structure_and_maps_each_letter_consistently():
    tokens = normalize(r"\frac{x+1}{x-12}")
    swapped = swap_symbols(tokens, np.random.default_rng(1), ["a", "b"], chance=1.0)
    assert len(swapped) == len(tokens)
    assert [t for t in swapped if not (t.isalnum() and len(t) == 1)] == [
        t for t in tokens if not (t.isalnum() and len(t) == 1)]
    letters = {swapped[i] for i, t in enumerate(tokens) if t == "x"}
    assert len(letters) == 1 and letters <= {"a", "b"}
    assert swap_symbols(tokens, np.random.default_rng(1), ["a"], chance=0.0) == tokens


def test_a_set_is_written_with_source_licence_and_without_excluded_formulas(tmp_path: Path):
    bank = build_glyph_bank(_samples())
    out = tmp_path / "hw" / "manifest.jsonl"
    config = HandwrittenSetConfig(count=12, relabel_share=0.5)
    stats = write_handwritten_set(bank, ["1+2", "x=3", r"\int x"], ["1 + 2", "y = 6"], out, config=config,
                                  seed=0, exclude=["x=3"])
    assert stats.written == 12 and stats.failed == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 12
    for record in records:
        assert record["kind"] == "handwritten" and record["source"] == "crohme-glyphs"
        assert "CC BY-NC-SA" in record["license"]
        assert record["latex"] != "x=3"
        assert cv2.imread(str(out.parent / record["image"]), cv2.IMREAD_GRAYSCALE) is not None


def test_a_set_the_bank_cannot_write_fails_clearly(tmp_path: Path):
    bank = build_glyph_bank(_samples())
    config = HandwrittenSetConfig(count=2, relabel_share=0.0, attempts=3)
    stats = write_handwritten_set(bank, [r"\pi"], [], tmp_path / "m.jsonl", config=config)
    assert stats.written == 0 and stats.failed == 2


def _glyph_manifest(folder: Path) -> Path:
    """The sample canvases as PNGs with their crop manifest (what `--glyphs` reads)."""
    folder.mkdir()
    lines = []
    for number, (canvas, label) in enumerate(_samples()):
        cv2.imwrite(str(folder / f"{number}.png"), canvas)
        lines.append(json.dumps({"image": f"{number}.png", "latex": label, "source": "test", "license": "test",
                                 "kind": "handwritten"}))
    manifest = folder / "m.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def test_the_command_writes_a_manifest(tmp_path: Path):
    out = tmp_path / "out" / "manifest.jsonl"
    result = CliRunner().invoke(app, ["data", "handwriting", "--glyphs", str(_glyph_manifest(tmp_path / "glyphs")),
                                      "--out", str(out), "--count", "5"])
    assert result.exit_code == 0, result.output
    assert "wrote 5 handwritten crops" in result.output
    assert len(out.read_text().splitlines()) == 5


def test_a_saved_bank_writes_the_same_set_without_the_glyph_images(tmp_path: Path):
    manifest = _glyph_manifest(tmp_path / "glyphs")
    bank = tmp_path / "bank" / "bank.npz"

    def write(out: Path, *options: str) -> list[tuple[str, np.ndarray]]:
        result = CliRunner().invoke(app, ["data", "handwriting", "--glyphs", str(manifest), "--out", str(out),
                                          "--count", "6", "--seed", "3", *options])
        assert result.exit_code == 0, result.output
        records = [json.loads(line) for line in out.read_text().splitlines()]
        return [(r["latex"], cv2.imread(str(out.parent / r["image"]), cv2.IMREAD_GRAYSCALE)) for r in records]

    cut = write(tmp_path / "cut" / "m.jsonl", "--save-bank", str(bank))
    assert bank.is_file() and not list(bank.parent.glob("*.partial*"))
    for png in manifest.parent.glob("*.png"):
        png.unlink()  # a device run carries the bank and the labels, not the canvases
    loaded = write(tmp_path / "loaded" / "m.jsonl", "--bank", str(bank))
    assert len(cut) == len(loaded) == 6
    for (latex, image), (latex_again, image_again) in zip(cut, loaded, strict=True):
        assert latex == latex_again and image is not None and np.array_equal(image, image_again)


def test_a_file_that_is_no_bank_is_refused(tmp_path: Path):
    path = tmp_path / "bad.npz"
    np.savez(path, pixels=np.zeros(5, np.uint8), shapes=np.array([[2, 2]], np.int32), symbols=np.array(["a"]),
             writers=np.array([0]), formulas=np.array([1, 1]))
    with pytest.raises(ValueError, match="not a bank"):
        GlyphBank.load(path)


def test_drawn_symbols_accents_and_borrowed_glyphs_need_no_glyph_of_their_own():
    bank = build_glyph_bank([*_samples(), (_canvas("o|"), "o |"), (_canvas("1.5"), "1 . 5")])
    rng = np.random.default_rng(2)
    plain = write_formula(normalize("a"), bank, np.random.default_rng(2))
    barred = write_formula(normalize(r"\overline{a}"), bank, np.random.default_rng(2))
    assert barred.shape[0] > plain.shape[0]  # the bar sits above the letter
    for latex in (r"\triangle a \perp b", r"\overrightarrow{ab}", r"a \mid b", r"30^{\circ}", "a:b", r"\angle a",
                  r"\because a \therefore b", r"aD \cong Db \Rightarrow a", r"\square"):
        image = write_formula(normalize(latex), bank, rng)
        assert (image < 128).sum() > 50, latex


def test_a_letter_no_writer_wrote_is_drawn_until_the_bank_has_it():
    bank = build_glyph_bank(_samples())
    upright = HandwritingConfig(slant=0.0, glyph_rotation=0.0, glyph_stretch=0.0, elastic=0.0, size_jitter=0.0)
    drawn = write_formula(["D"], bank, np.random.default_rng(4), upright)
    block = np.zeros((30, 6), np.uint8)  # a 'D' glyph unlike any drawing: a solid bar
    bank.add("D", block, writer=99)
    written = write_formula(["D"], bank, np.random.default_rng(4), upright)
    assert not np.array_equal(drawn, written)
    assert written.shape[1] < drawn.shape[1]  # the narrow glyph, not the drawn bowl
