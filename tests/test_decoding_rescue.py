"""The rescue of unsure readings re-reads them with beam search a few crops per call, and reads them as one
beam search of them all would."""

import numpy as np

from susik.runtime.decoding import RESCUED_TOGETHER, DecodeConfig, beam_search, greedy_with_rescue

VOCAB, EOS = 9, 2


def _fake_decoder(seed: int, rows_seen: list[int]):
    """A decoder step whose logits depend on each row's own tokens so far and its crop (a cross row), so batch
    composition cannot change a reading; it records the rows of every call."""
    table = np.random.default_rng(seed).normal(0, 1.0, (211, VOCAB)).astype(np.float32)

    def step(tokens, position, cross_bias, past, cross):
        rows_seen.append(tokens.shape[0])
        history = np.concatenate([past[0], tokens[:, :, None, None].astype(np.float32)], axis=2)
        keys = [(int(c[0, 0, 0]) * 31 + int(h[0, :, 0].sum() * 7 + h.shape[1])) % 211 for c, h in zip(cross[0], history)]
        logits = table[keys].copy()
        logits[:, EOS] += np.float32(0.6 * position[0])
        return logits, (history,)

    return step, lambda rows: (np.zeros((rows, 1, 0, 1), dtype=np.float32),)


def test_unsure_crops_are_re_read_a_few_at_a_time_and_as_one_search_reads_them():
    crops = 3 * RESCUED_TOGETHER + 1
    cross = (np.arange(crops, dtype=np.float32).reshape(crops, 1, 1, 1),)
    bias, lengths = np.zeros((crops, 1), dtype=np.float32), [12] * crops
    config = DecodeConfig(rescue_below=1.0, rescue_beam=3)  # no reading is fully sure: every crop is re-read

    rows_seen: list[int] = []
    step, empty = _fake_decoder(0, rows_seen)
    rescued = greedy_with_rescue(step, empty, cross, bias, lengths, 1, EOS, config, banned=(0, 1))
    greedy_rows = rows_seen.count(crops)
    assert greedy_rows >= 1 and max(rows_seen[greedy_rows:]) == 3 * RESCUED_TOGETHER

    step, empty = _fake_decoder(0, [])
    wide = config.model_copy(update={"beam": 3})
    assert rescued == beam_search(step, empty, cross, bias, lengths, 1, EOS, wide, banned=(0, 1))
