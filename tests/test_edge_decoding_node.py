"""The browser's decoding (serve/web/edge-core.js: greedy, beam search, the rescue of unsure readings) against
the Python it ports (susik.runtime.decoding), under Node, on a fake decoder whose logits depend only on the
tokens a row has read so far: both sides see the same float32 logits, so they must choose the same tokens."""

import json

import numpy as np
import pytest
from node_harness import NODE, node_runner

from susik.runtime.decoding import (
    DecodeConfig,
    Hypothesis,
    beam_search,
    greedy,
    greedy_with_rescue,
    max_length,
)

pytestmark = pytest.mark.skipif(NODE is None, reason="needs Node.js")
PAD, BOS, EOS = 0, 1, 2
VOCAB, TABLE_ROWS, MODULUS = 12, 97, 1_000_003
HARNESS = """
import { readFileSync } from "node:fs";
import * as core from "./edge-core.js";
const hash = (history) => history.reduce((h, t) => (h * 31 + t + 1) % MODULUS, 7) % TABLE_ROWS;
function fake(c, rows) {
  let histories = Array.from({ length: rows }, () => []);
  return {
    async step(tokens, position) {
      const logits = new Float32Array(rows * VOCAB);
      tokens.forEach((token, r) => {
        histories[r].push(token);
        const row = c.table[hash(histories[r])].slice();
        if (position >= c.eos_after) row[2] += Math.fround(c.eos_push * (position - c.eos_after + 1));
        logits.set(row, r * VOCAB);
      });
      return logits;
    },
    reorder(sources) { histories = sources.map((s) => histories[s].slice()); },
  };
}
const cases = JSON.parse(readFileSync(0, "utf8"));
const answers = [];
for (const c of cases) {
  const h = await core.decodeCrop((rows) => fake(c, rows), c.max_len, c.decode);
  answers.push({ tokens: h.tokens, probs: h.probs, stop: h.stop });
}
process.stdout.write(JSON.stringify(answers));
""".replace("MODULUS", str(MODULUS)).replace("TABLE_ROWS", str(TABLE_ROWS)).replace("VOCAB", str(VOCAB))


def _hash(history: list[int]) -> int:
    value = 7
    for token in history:
        value = (value * 31 + token + 1) % MODULUS
    return value % TABLE_ROWS


def _fake(table: np.ndarray, eos_after: int, eos_push: float):
    """(step, empty_cache) with the harness's logits; the cache holds each row's tokens so far."""

    def step(tokens, position, cross_bias, past, cross):
        history = np.concatenate([past[0], tokens[:, :, None, None].astype(np.float32)], axis=2)
        logits = np.stack([table[_hash([int(t) for t in row[0, :, 0]])] for row in history]).astype(np.float32)
        if position[0] >= eos_after:
            logits[:, EOS] += np.float32(eos_push * (position[0] - eos_after + 1))
        return logits, (history,)

    return step, lambda rows: (np.zeros((rows, 1, 0, 1), dtype=np.float32),)


def _python(case: dict, table: np.ndarray) -> Hypothesis:
    config = DecodeConfig(**case["decode"])
    step, empty = _fake(table, case["eos_after"], case["eos_push"])
    search = beam_search if config.beam > 1 else greedy_with_rescue if config.rescue_below > 0 else greedy
    cross = (np.zeros((1, 1, 1, 1), dtype=np.float32),)
    return search(step, empty, cross, np.zeros((1, 1), dtype=np.float32), [case["max_len"]], BOS, EOS, config,
                  banned=(PAD, BOS))[0]


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    return node_runner(tmp_path_factory.mktemp("decoding"), ("edge-core.js",), HARNESS)


def _cases(decode: dict, count: int, seed: int) -> tuple[list[dict], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    cases, tables = [], []
    for number in range(count):
        # Flat logits make greedy unsure and let beams part ways; some cases run into the length guard.
        table = (rng.normal(0, 1.2, (TABLE_ROWS, VOCAB))).astype(np.float32)
        config = DecodeConfig(**decode)
        cases.append({"table": table.tolist(), "eos_after": int(rng.integers(3, 12)), "eos_push": 0.8,
                      "max_len": max_length(16 * int(rng.integers(1, 6)), config) if number % 4 else 6,
                      "decode": config.model_dump()})
        tables.append(table)
    return cases, tables


@pytest.mark.parametrize("decode", [{}, {"beam": 3}, {"beam": 5, "length_penalty": 1.0},
                                    {"rescue_below": 0.9, "rescue_beam": 3},
                                    {"rescue_below": 0.5, "rescue_beam": 4, "repeat_span": 4}],
                         ids=["greedy", "beam3", "beam5", "rescue", "rescue-loops"])
def test_the_browser_decodes_as_the_server(node, decode):
    cases, tables = _cases(decode, 24, seed=len(json.dumps(decode)))
    answers = node(cases)
    ours = [_python(case, table) for case, table in zip(cases, tables)]
    assert [(a["tokens"], a["stop"]) for a in answers] == [(list(h.tokens), h.stop) for h in ours]
    for answer, hypothesis in zip(answers, ours):
        assert np.allclose(answer["probs"], hypothesis.probs, rtol=1e-9, atol=0)
    greedy_readings = [_python({**case, "decode": DecodeConfig().model_dump()}, table)
                       for case, table in zip(cases, tables)]
    if decode:  # the cases are hard enough that the wider search reads some of them otherwise
        assert sum(h.tokens != g.tokens for h, g in zip(ours, greedy_readings)) >= 3
    assert {h.stop for h in ours} >= {"eos"}


CONFIDENCE_HARNESS = """
import { readFileSync } from "node:fs";
import * as core from "./edge-core.js";
const cases = JSON.parse(readFileSync(0, "utf8"));
process.stdout.write(JSON.stringify(cases.map((c) => core.reportedConfidence(c.hypothesis, c.decode))));
"""


def test_the_browser_reports_the_servers_calibrated_confidence(tmp_path):
    from susik.runtime.decoding import ConfidenceCalibration, reported_confidence

    node = node_runner(tmp_path, ("edge-core.js",), CONFIDENCE_HARNESS)
    rng = np.random.default_rng(3)
    calibration = ConfidenceCalibration(geomean=0.111, minimum=1.8, bias=-1.423, fitted_on="drawn")
    hypotheses = [Hypothesis(tuple(range(n)), tuple(float(p) for p in rng.uniform(0.2, 1.0, n + 1)), "eos")
                  for n in rng.integers(1, 30, 20)]
    hypotheses += [Hypothesis((3,), (1.0, 1.0), "eos"), Hypothesis((3, 3), (0.9, 0.9), "repetition"),
                   Hypothesis((), (), "empty")]
    cases = [{"hypothesis": {"tokens": list(h.tokens), "probs": list(h.probs), "stop": h.stop},
              "decode": config.model_dump()}
             for config in (DecodeConfig(), DecodeConfig(calibration=calibration)) for h in hypotheses]
    ours = [reported_confidence(h, config) for config in (DecodeConfig(), DecodeConfig(calibration=calibration))
            for h in hypotheses]
    assert np.allclose(node(cases), ours, rtol=1e-12, atol=1e-15)
    assert ours[:len(hypotheses)] != ours[len(hypotheses):]  # the map changes what is reported
