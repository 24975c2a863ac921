"""Decoder tokenizer: the encoder's own tokenizer, fixed-length targets and back.

A target is ``L`` ids: the sentence's tokens (no [CLS]), one end-of-sentence id, then padding.
Training masks padding like any other position, so the model learns where sentences end
(it faces exactly that at inference, where every position starts masked).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Specials:
    vocab_size: int
    mask_id: int
    pad_id: int
    eos_id: int


def specials_of(hf_tokenizer) -> Specials:
    """Special ids of a HF tokenizer; a mask id is added past the vocabulary if it has none."""
    n = len(hf_tokenizer)
    eos = hf_tokenizer.sep_token_id
    if eos is None:
        eos = hf_tokenizer.pad_token_id if hf_tokenizer.pad_token_id is not None else hf_tokenizer.eos_token_id
    if eos is None:
        raise ValueError("tokenizer has no sep, pad or eos token to end sentences with")
    pad = hf_tokenizer.pad_token_id if hf_tokenizer.pad_token_id is not None else eos
    mask = hf_tokenizer.mask_token_id
    if mask is None:
        mask = n
    return Specials(vocab_size=max(n, mask + 1), mask_id=int(mask), pad_id=int(pad), eos_id=int(eos))


class DecoderTokenizer:
    """texts <-> int32 [B, L] targets with EOS and PAD."""

    def __init__(self, hf_tokenizer, seq_len: int):
        if seq_len < 2:
            raise ValueError("seq_len must be at least 2")
        self.hf = hf_tokenizer
        self.seq_len = seq_len
        self.specials = specials_of(hf_tokenizer)

    @property
    def reach(self) -> int:
        """Tokens the decoder writes before its EOS (L-1): a longer text is cut there."""
        return self.seq_len - 1

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """texts -> int32 [B, L]; longer texts are cut to L-1 tokens before the EOS."""
        s, L = self.specials, self.seq_len
        out = np.full((len(texts), L), s.pad_id, dtype=np.int32)
        if not texts:
            return out
        ids = self.hf(list(texts), add_special_tokens=False, truncation=True, max_length=L - 1)["input_ids"]
        for row, toks in zip(out, ids):
            row[: len(toks)] = toks
            row[len(toks)] = s.eos_id
        return out

    def is_cut(self, texts: Sequence[str]) -> list[bool]:
        """Whether each text has more tokens than ``encode`` keeps (L-1). Tokenised only up to L
        tokens, so a text of any length costs little and draws no over-length warning."""
        ids = self.hf(list(texts), add_special_tokens=False, truncation=True, max_length=self.seq_len)["input_ids"]
        return [len(x) > self.seq_len - 1 for x in ids]

    def count(self, texts: Sequence[str], cap: int = 1 << 20) -> list[int]:
        """Tokens of each whole text (no specials), counted up to ``cap`` (no over-length warning)."""
        return [
            len(x) for x in self.hf(list(texts), add_special_tokens=False, truncation=True, max_length=cap)["input_ids"]
        ]

    def fit(self, texts: Sequence[str]) -> tuple[list[str], list[int]]:
        """Cut each text after its first L-1 tokens (by character offsets, so case is kept).

        Returns (texts that fit, full token counts). Vectors are made from the cut text, so the
        target the decoder learns is exactly what the vector encodes.
        """
        enc = self.hf(list(texts), add_special_tokens=False, return_offsets_mapping=True)
        out, counts = [], []
        for text, ids, offsets in zip(texts, enc["input_ids"], enc["offset_mapping"]):
            counts.append(len(ids))
            out.append(text if len(ids) <= self.seq_len - 1 else text[: offsets[self.seq_len - 2][1]].rstrip())
        return out, counts

    def lengths(self, ids: np.ndarray) -> np.ndarray:
        """[B, L] -> [B] positions counted by token accuracy: up to and including the first EOS."""
        ids = np.asarray(ids)
        is_eos = ids == self.specials.eos_id
        first = np.where(is_eos.any(1), is_eos.argmax(1), ids.shape[1] - 1)
        return first + 1

    def content(self, row: Sequence[int]) -> list[int]:
        """Ids before the first EOS, without special tokens."""
        s = self.specials
        out = []
        for i in row:
            i = int(i)
            if i == s.eos_id:
                break
            if i not in (s.pad_id, s.mask_id):
                out.append(i)
        return out

    def decode(self, row: Sequence[int]) -> str:
        return self.hf.decode(self.content(row), skip_special_tokens=True, clean_up_tokenization_spaces=True).strip()

    def decode_batch(self, ids: np.ndarray) -> list[str]:
        return [self.decode(r) for r in np.asarray(ids)]

    def token_strings(self, row: Sequence[int]) -> list[str]:
        """One display string per position (for the UI); mask shown as [MASK]."""
        s = self.specials
        out = []
        for i in row:
            i = int(i)
            if i == s.mask_id:
                out.append("[MASK]")
            elif i >= len(self.hf):
                out.append("<?>")
            else:
                out.append(self.hf.convert_ids_to_tokens(i))
        return out
