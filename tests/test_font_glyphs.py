"""Handwriting fonts as extra writers of a glyph bank (`susik.data.font_glyphs`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import matplotlib
import numpy as np
import pytest
from PIL import ImageFont
from typer.testing import CliRunner

from susik.cli import app
from susik.data import font_glyphs
from susik.data.font_glyphs import add_font_writers, font_glyph, installed_handwriting_fonts
from susik.data.glyphs import GlyphBank
from susik.data.handwriting import HandwritingConfig, Writer
from susik.data.handwriting_set import HandwrittenSetConfig, write_handwritten_set

# Any outline font stands in for a handwriting one; matplotlib (an MLflow dependency) ships DejaVu Sans.
DEJAVU = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"


def _square_bank() -> GlyphBank:
    """A bank whose one real writer (0) wrote every symbol as a filled square."""
    bank = GlyphBank()
    square = np.zeros((20, 20), np.uint8)
    for symbol in "x+=12":
        bank.add(symbol, square.copy(), 0)
    return bank


def test_a_font_glyph_is_pen_ink_cut_to_its_ink_and_a_missing_one_is_none():
    font = ImageFont.truetype(str(DEJAVU), 64)
    missing = font_glyphs._mask(font, font_glyphs._NOT_A_CHARACTER)
    glyph = font_glyph(font, "x", missing)
    assert glyph is not None and glyph.dtype == np.uint8
    assert (glyph < 128).any() and (glyph > 200).any()
    dark_rows, dark_cols = np.flatnonzero((glyph < 128).any(axis=1)), np.flatnonzero((glyph < 128).any(axis=0))
    assert dark_rows[0] <= 1 and dark_cols[0] <= 1  # cut to its ink
    assert dark_rows[-1] >= glyph.shape[0] - 2 and dark_cols[-1] >= glyph.shape[1] - 2
    assert font_glyph(font, "中", missing) is None  # DejaVu has no CJK: its missing-glyph box is no glyph
    assert font_glyph(font, " ", missing) is None  # no ink


def test_pen_strokes_replace_a_fonts_heavy_stems():
    font = ImageFont.truetype(str(DEJAVU), 64)
    glyph = font_glyph(font, "l", None)  # one stem: 8 px wide in DejaVu Sans at 64 px
    assert glyph is not None
    widest_ink_run = max(int((row < 128).sum()) for row in glyph)
    assert widest_ink_run <= 5


def test_font_writers_join_the_bank_numbered_below_zero():
    bank = _square_bank()
    added = add_font_writers(bank, [DEJAVU, DEJAVU], symbols=["x", "+", r"\alpha", "no such symbol"])
    assert added == {"DejaVuSans.ttf": 3}  # one name: the second copy reports over the first
    assert bank.font_writer_ids == [-2, -1] and bank.writer_ids == [0]
    assert bank.count("x") == 3 and bank.count(r"\alpha") == 2 and bank.count("=") == 1
    add_font_writers(bank, [DEJAVU], symbols=["x"])  # more fonts number on below the ones held
    assert bank.font_writer_ids == [-3, -2, -1]


def test_a_file_that_is_no_font_is_named(tmp_path: Path):
    bad = tmp_path / "broken.ttf"
    bad.write_bytes(b"not a font")
    with pytest.raises(OSError, match="broken.ttf"):
        add_font_writers(GlyphBank(), [bad])


def test_a_formula_in_a_fonts_hand_takes_that_fonts_glyphs_where_it_has_them():
    bank = _square_bank()
    add_font_writers(bank, [DEJAVU], symbols=["x"])
    in_font = Writer(bank, HandwritingConfig(font_writer=1.0), np.random.default_rng(0))
    assert in_font.writer == -1
    glyph = bank.pick("x", np.random.default_rng(0), in_font.writer)
    assert (glyph > 200).any()  # the font's x, not the square
    assert np.array_equal(bank.pick("=", np.random.default_rng(0), in_font.writer), np.zeros((20, 20), np.uint8))
    plain = Writer(bank, HandwritingConfig(font_writer=0.0, one_writer=1.0), np.random.default_rng(0))
    assert plain.writer == 0


def test_a_bank_without_fonts_draws_as_before():
    """The font draw happens only where the bank has fonts, so older banks and seeds write the same sets."""
    bank = _square_bank()
    config = HandwritingConfig(font_writer=0.7)
    rng, same = np.random.default_rng(5), np.random.default_rng(5)
    Writer(bank, config, rng)
    Writer(bank, HandwritingConfig(), same)
    assert rng.random() == same.random()


def test_a_set_with_font_writers_says_so_in_its_licence(tmp_path: Path):
    bank = _square_bank()
    config = HandwrittenSetConfig(count=3, relabel_share=1.0, writing=HandwritingConfig(font_writer=0.5))
    plain = write_handwritten_set(bank, [], ["x + 1", "2 = x"], tmp_path / "plain" / "m.jsonl", config=config)
    add_font_writers(bank, [DEJAVU], symbols=["x", "1"])
    fonts = write_handwritten_set(bank, [], ["x + 1", "2 = x"], tmp_path / "fonts" / "m.jsonl", config=config)
    assert plain.written == fonts.written == 3
    licences = {folder: {json.loads(line)["license"]
                         for line in (tmp_path / folder / "m.jsonl").read_text().splitlines()}
                for folder in ("plain", "fonts")}
    assert all("fonts" not in text for text in licences["plain"])
    assert all("CC BY-NC-SA" in text and "SIL OFL" in text for text in licences["fonts"])


def test_installed_fonts_are_found_by_name(tmp_path: Path):
    assert installed_handwriting_fonts(tmp_path) == []
    (tmp_path / "deep" / "er").mkdir(parents=True)
    shutil.copy(DEJAVU, tmp_path / "deep" / "er" / "dkg.ttf")
    shutil.copy(DEJAVU, tmp_path / "Breip.ttf")
    shutil.copy(DEJAVU, tmp_path / "DejaVuSans.ttf")  # not a handwriting font
    assert [path.name for path in installed_handwriting_fonts(tmp_path)] == ["Breip.ttf", "dkg.ttf"]


def _glyph_manifest(folder: Path) -> Path:
    folder.mkdir()
    lines = []
    for number, text in enumerate(["1+2", "x=1", "2+x"]):
        canvas = np.full((80, 34 * len(text) + 20), 255, np.uint8)
        for at, char in enumerate(text):
            cv2.putText(canvas, char, (10 + 34 * at, 55), cv2.FONT_HERSHEY_SIMPLEX, 1.2, 0, 2, cv2.LINE_AA)
        cv2.imwrite(str(folder / f"{number}.png"), canvas)
        lines.append(json.dumps({"image": f"{number}.png", "latex": " ".join(text), "source": "test",
                                 "license": "test", "kind": "handwritten"}))
    (folder / "m.jsonl").write_text("\n".join(lines) + "\n")
    return folder / "m.jsonl"


def test_the_command_adds_given_fonts_and_refuses_to_find_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    manifest = _glyph_manifest(tmp_path / "glyphs")
    out = tmp_path / "out" / "m.jsonl"
    result = CliRunner().invoke(app, ["data", "handwriting", "--glyphs", str(manifest), "--out", str(out),
                                      "--count", "4", "--font", str(DEJAVU), "--font-share", "1.0"])
    assert result.exit_code == 0, result.output
    assert "font writers: 1 fonts" in result.output and "DejaVuSans.ttf:" in result.output
    assert len(out.read_text().splitlines()) == 4
    monkeypatch.setattr(font_glyphs, "FONT_ROOT", tmp_path / "no fonts here")
    result = CliRunner().invoke(app, ["data", "handwriting", "--glyphs", str(manifest), "--out", str(out),
                                      "--count", "4", "--handwriting-fonts"])
    assert result.exit_code != 0
    assert "none of susik's handwriting fonts is installed" in result.output


def test_a_saved_bank_keeps_its_font_writers(tmp_path: Path):
    """A device run carries the bank, not the fonts: a bank saved with font writers writes the same set."""
    manifest = _glyph_manifest(tmp_path / "glyphs")
    bank = tmp_path / "bank.npz"

    def write(out: Path, *options: str) -> list[tuple[str, str, np.ndarray]]:
        result = CliRunner().invoke(app, ["data", "handwriting", "--glyphs", str(manifest), "--out", str(out),
                                          "--count", "5", "--seed", "2", "--font-share", "1.0", *options])
        assert result.exit_code == 0, result.output
        records = [json.loads(line) for line in out.read_text().splitlines()]
        return [(r["latex"], r["license"], cv2.imread(str(out.parent / r["image"]), cv2.IMREAD_GRAYSCALE))
                for r in records]

    with_fonts = write(tmp_path / "a" / "m.jsonl", "--font", str(DEJAVU), "--save-bank", str(bank))
    assert GlyphBank.load(bank).font_writer_ids == [-1]
    from_bank = write(tmp_path / "b" / "m.jsonl", "--bank", str(bank))
    for (latex, license, image), (latex_again, license_again, image_again) in zip(with_fonts, from_bank, strict=True):
        assert latex == latex_again and license == license_again and "SIL OFL" in license
        assert np.array_equal(image, image_again)
