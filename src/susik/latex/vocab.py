"""Token vocabulary shared by training, the ONNX runtime and metrics."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)


class Vocabulary:
    """A fixed token list; ids 0-3 are the specials, in the order of SPECIALS."""

    def __init__(self, tokens: Iterable[str]) -> None:
        self.tokens: list[str] = list(SPECIALS) + [t for t in tokens if t not in SPECIALS]
        self.index = {token: i for i, token in enumerate(self.tokens)}
        if len(self.index) != len(self.tokens):
            raise ValueError("vocabulary tokens must be unique")

    pad_id, bos_id, eos_id, unk_id = 0, 1, 2, 3

    @classmethod
    def build(cls, token_streams: Iterable[list[str]], min_count: int = 1) -> Vocabulary:
        """Tokens seen at least `min_count` times, most frequent first (ties alphabetical: deterministic)."""
        counts: Counter[str] = Counter()
        for tokens in token_streams:
            counts.update(tokens)
        kept = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
        return cls(kept)

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self.index

    def encode(self, tokens: list[str], add_specials: bool = True) -> list[int]:
        ids = [self.index.get(t, self.unk_id) for t in tokens]
        return [self.bos_id, *ids, self.eos_id] if add_specials else ids

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Tokens up to the first EOS, without specials."""
        out: list[str] = []
        for i in ids:
            if i == self.eos_id:
                break
            if i in (self.pad_id, self.bos_id):
                continue
            out.append(self.tokens[i] if 0 <= i < len(self.tokens) else UNK)
        return out

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps({"tokens": self.tokens[len(SPECIALS):]}, ensure_ascii=False, indent=0))

    @classmethod
    def load(cls, path: Path) -> Vocabulary:
        return cls(json.loads(Path(path).read_text())["tokens"])
