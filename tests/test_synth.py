import shutil

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from susik.cli import app
from susik.data.manifest import read_manifest
from susik.data.synth import SynthConfig, synthesize, write_pages
from susik.spec.dataset import load_spec

pytestmark = pytest.mark.skipif(shutil.which("latex") is None, reason="needs TeX (scripts/setup.sh installs it)")
SPEC = "specs/dataset.yaml"


def _pages(seed, n=3):
    config = SynthConfig(chunk_pages=2)
    return [page for chunk in synthesize(load_spec(SPEC).pages, n, seed, config, workers=1) for page in chunk.pages]


def test_synth_is_deterministic_per_seed_and_varies_across_seeds():
    first, again, other = _pages(5), _pages(5), _pages(6)
    assert [p.image.tobytes() for p, *_ in first] == [p.image.tobytes() for p, *_ in again]
    assert [p.image.tobytes() for p, *_ in first] != [p.image.tobytes() for p, *_ in other]


def test_synth_writes_valid_page_manifest_with_quads_on_ink(tmp_path):
    written, _ = write_pages(synthesize(load_spec(SPEC).pages, 4, 1, SynthConfig(chunk_pages=2), workers=1),
                             tmp_path, jpeg_quality=95)
    assert written == 4
    samples = list(read_manifest(tmp_path / "manifest.jsonl"))
    assert len(samples) == 4
    for sample in samples:
        image = cv2.imread(str(tmp_path / sample.image), cv2.IMREAD_GRAYSCALE)
        assert image.shape == (sample.height, sample.width)
        assert sample.regions and sample.license and sample.source.startswith("susik-synth")
        for region in sample.regions:
            quad = np.asarray(region.quad, np.float32)
            mask = np.zeros_like(image)
            cv2.fillPoly(mask, [quad.astype(np.int32)], 255)
            inside = image[mask > 0]
            # a formula region holds ink: its darkest pixels are much darker than its median (the paper)
            assert np.percentile(inside, 2) < 0.75 * np.median(inside), region.latex


def test_synth_command_reports_bad_spec_in_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("pages: {colour: red}\n")
    result = CliRunner().invoke(app, ["synth", "--spec", str(bad), "--n", "1", "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "error" in result.output


def test_synth_draws_choice_labels_as_text_outside_regions(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\\text { C. } x+1\n\\text { (2) } y=3\n")
    config = SynthConfig(chunk_pages=2, corpus=corpus, generated_ratio=0.0)
    pages = [page for chunk in synthesize(load_spec(SPEC).pages, 2, 4, config, workers=1) for page in chunk.pages]
    latex = {region.latex for page, *_ in pages for region in page.regions}
    assert latex and latex <= {"x+1", "y=3"}
