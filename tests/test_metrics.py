"""Every metric on hand-computed examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from unembed import metrics as m

EOS = 102


def test_reference_lengths_count_up_to_and_including_first_eos():
    ref = np.array([[5, 6, EOS, 0, 0], [1, 2, 3, 4, 5], [EOS, 0, 0, 0, 0], [7, EOS, 8, EOS, 0]])
    assert m.reference_lengths(ref, EOS).tolist() == [3, 5, 1, 2]


def test_token_accuracy_ignores_positions_after_eos():
    ref = np.array([[5, 6, EOS, 0, 0]])
    pred = np.array([[5, 7, EOS, 9, 9]])  # 5 right, 7 wrong, EOS right; after EOS not counted
    assert m.token_accuracy_per_row(pred, ref, EOS).tolist() == pytest.approx([2 / 3])


def test_token_accuracy_counts_a_missing_eos_as_wrong():
    ref = np.array([[5, 6, EOS, 0]])
    pred = np.array([[5, 6, 8, EOS]])
    assert m.token_accuracy_per_row(pred, ref, EOS)[0] == pytest.approx(2 / 3)


def test_token_accuracy_pooled_over_positions_not_sentences():
    ref = np.array([[5, 6, EOS, 0], [1, 2, 3, EOS]])  # 3 + 4 counted positions
    pred = np.array([[5, 0, 0, 0], [1, 2, 3, EOS]])  # 1 + 4 right
    assert m.token_accuracy(pred, ref, EOS) == pytest.approx(5 / 7)
    assert m.token_accuracy_per_row(pred, ref, EOS).tolist() == pytest.approx([1 / 3, 1.0])


def test_token_accuracy_shape_mismatch():
    with pytest.raises(ValueError, match="shape"):
        m.token_accuracy_per_row(np.zeros((1, 3)), np.zeros((1, 4)), EOS)


def test_exact_match_normalises_whitespace_only():
    assert m.exact_match("the  cat\tsat \n", " the cat sat")
    assert not m.exact_match("The cat sat", "the cat sat")  # case is not normalised
    assert not m.exact_match("the cat sat.", "the cat sat")
    assert m.exact_match("", "   ")


def test_exact_match_rate():
    assert m.exact_match_rate(["a b", "c", "d"], ["a  b", "x", "d "]) == pytest.approx(2 / 3)
    assert m.exact_match_rate([], []) == 0.0
    with pytest.raises(ValueError):
        m.exact_match_rate(["a"], [])


def test_token_f1_on_known_bags():
    # common = min(count) per token: token 2 twice -> 2; P = 2/4, R = 2/3, F1 = 2PR/(P+R) = 4/7
    assert m.token_f1([1, 2, 2, 3], [2, 2, 4]) == pytest.approx(4 / 7)
    assert m.token_f1([1, 2], [2, 1]) == 1.0  # order does not matter
    assert m.token_f1([1, 1], [1]) == pytest.approx(2 / 3)  # P = 1/2, R = 1
    assert m.token_f1([1], [2]) == 0.0
    assert m.token_f1([], []) == 1.0
    assert m.token_f1([], [1]) == 0.0


def test_mean_token_f1_averages_per_sentence():
    assert m.mean_token_f1([[1], [1, 2]], [[1], [3]]) == pytest.approx(0.5)
    assert m.mean_token_f1([], []) == 0.0


def test_bleu_identical_is_100_unrelated_is_low():
    refs = ["the cat sat on the mat today", "a quick brown fox jumps over the lazy dog"]
    assert m.bleu(refs, refs) == pytest.approx(100.0)
    assert m.bleu(["purple elephants dance quietly at midnight", "stock markets fell"], refs) < 5.0
    assert m.sentence_bleu(refs[0], refs[0]) == pytest.approx(100.0)
    assert m.sentence_bleu("nothing in common here", refs[0]) < 10.0


def test_bleu_partial_overlap_in_between():
    score = m.bleu(["the cat sat on the mat yesterday"], ["the cat sat on the mat today"])
    assert 30.0 < score < 100.0


def test_cosine_rowwise():
    a = np.array([[1.0, 0.0], [1.0, 1.0], [3.0, 4.0], [0.0, 0.0]])
    b = np.array([[2.0, 0.0], [-1.0, -1.0], [4.0, -3.0], [1.0, 0.0]])
    assert m.cosine(a, b).tolist() == pytest.approx([1.0, -1.0, 0.0, 0.0])


def test_masked_accuracy_teacher_forced():
    ref = np.array([[5, 6, EOS, 0], [1, 2, 3, EOS]])
    pred = np.array([[5, 9, EOS, 0], [9, 2, 3, 9]])
    masked = np.array([[True, True, False, True], [True, False, True, True]])
    # masked positions: row0 (5 ok, 6 wrong, pad ok), row1 (1 wrong, 3 ok, EOS wrong) -> 3/6
    assert m.masked_accuracy(pred, ref, masked) == pytest.approx(0.5)
    # up to EOS: row0 drops the pad position -> (1 of 2) + (1 of 3) = 2/5
    assert m.masked_accuracy(pred, ref, masked, EOS) == pytest.approx(0.4)
    assert math.isnan(m.masked_accuracy(pred, ref, np.zeros_like(masked)))
    with pytest.raises(ValueError, match="shape"):
        m.masked_accuracy(pred, ref, masked[:, :2])


def test_percentiles():
    assert m.percentiles([4, 1, 3, 2]) == pytest.approx([2.5, 3.85])
    assert m.percentiles([7.0], (50, 95)) == [7.0, 7.0]
    with pytest.raises(ValueError):
        m.percentiles([])
