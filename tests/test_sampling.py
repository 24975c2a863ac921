"""Contract tests, parametrised over every strategy."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from conftest import random_denoiser
from unembed.sampling import STRATEGIES, denoise, reveal_counts, reveal_counts_rows

L = 16


@pytest.fixture(scope="module")
def model():
    return random_denoiser(0)


class CountingModel(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.cfg, self.calls = inner, inner.cfg, 0

    def forward(self, *a):
        self.calls += 1
        return self.inner(*a)

    def logits(self, h):
        return self.inner.logits(h)


@given(n=st.integers(0, 200), steps=st.integers(1, 64))
def test_reveal_counts_sum_and_spread(n, steps):
    c = reveal_counts(n, steps)
    assert len(c) == steps and sum(c) == n and max(c) - min(c) <= 1


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("num_steps", [1, 2, 3, 5, 7, 8, 16])
def test_no_mask_left_and_exact_forward_passes(model, strategy, num_steps):
    counting = CountingModel(model)
    cond = torch.randn(3, 8)
    states = list(denoise(counting, cond, strategy=strategy, num_steps=num_steps))
    assert len(states) == num_steps == counting.calls
    assert [s.step for s in states] == list(range(1, num_steps + 1))
    assert not states[-1].masked.any() and states[-1].done
    assert states[0].masked.any() or num_steps == 1 or strategy == "two-stage"
    for s in states:
        assert s.ids.shape == (3, L) and ((s.confidence >= 0) & (s.confidence <= 1)).all()
        assert not (s.revealed & s.masked).any()  # a position revealed this step holds a token


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_seeded_and_reproducible(model, strategy):
    cond = torch.randn(4, 8)
    run = lambda seed: [
        s.ids
        for s in denoise(
            model,
            cond,
            strategy=strategy,
            num_steps=6,  # noqa: E731
            generator=torch.Generator().manual_seed(seed),
            temperature=1.0,
        )
    ]
    a, b = run(1), run(1)
    assert all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_states_are_not_mutated_later(model, strategy):
    states = list(denoise(model, torch.randn(2, 8), strategy=strategy, num_steps=4))
    snapshot = [s.ids.clone() for s in states]
    assert all(torch.equal(s.ids, c) for s, c in zip(states, snapshot))
    assert states[0].masked.sum() > states[-1].masked.sum()


def test_confidence_commits_once_and_reveals_even_counts(model):
    states = list(denoise(model, torch.randn(2, 8), strategy="confidence", num_steps=5))
    prev = None
    for s, k in zip(states, reveal_counts(L, 5)):
        assert (s.revealed.sum(1) == k).all()
        if prev is not None:
            kept = ~prev.masked
            assert torch.equal(s.ids[kept], prev.ids[kept])
        prev = s


def test_remask_remasks_and_two_stage_refines(model):
    rem = list(denoise(model, torch.randn(2, 8), strategy="remask", num_steps=12, remask_ratio=0.2))
    assert any(s.remasked.any() for s in rem[:-1]) and not rem[-1].remasked.any()
    # the count is each row's own: a short row batched with a long one does not switch it off
    lengths = torch.tensor([2, 15])
    rem = list(denoise(model, torch.randn(2, 8), strategy="remask", num_steps=8, remask_ratio=0.2, lengths=lengths))
    per_row = torch.stack([s.remasked.sum(1) for s in rem])
    assert per_row[:, 1].sum() > 0 and per_row[:, 0].sum() == 0
    two = list(denoise(model, torch.randn(2, 8), strategy="two-stage", num_steps=6, refine_ratio=0.25))
    assert not two[2].masked.any()  # the draft is complete after ceil(6/2) steps
    assert two[3].remasked.sum(1).eq(4).all()  # then 25% of 16 positions go back to masks


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(strategy="beam"), "unknown strategy"),
        (dict(num_steps=0), "num_steps"),
        (dict(num_steps=17), "num_steps"),
    ],
)
def test_bad_arguments(model, bad, message):
    with pytest.raises(ValueError, match=message):
        list(denoise(model, torch.randn(1, 8), **bad))
    with pytest.raises(ValueError, match="cond must be"):
        list(denoise(model, torch.randn(1, 9)))


@given(n=st.lists(st.integers(0, 200), min_size=1, max_size=6), steps=st.integers(1, 40))
def test_reveal_counts_rows_matches_reveal_counts(n, steps):
    rows = reveal_counts_rows(torch.tensor(n), steps)
    assert rows.shape == (len(n), steps)
    assert [r.tolist() for r in rows] == [reveal_counts(k, steps) for k in n]


@pytest.fixture(scope="module")
def length_model():
    return random_denoiser(1, overrides=("model.length_head=16",))


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("num_steps", [1, 3, 8, 16])
def test_length_first_keeps_passes_and_fixes_the_end(length_model, strategy, num_steps):
    """EOS at each row's length, padding after, never re-masked; same pass count; no mask left."""
    counting = CountingModel(length_model)
    lengths = torch.tensor([0, 3, 9, 15])
    states = list(denoise(counting, torch.randn(4, 8), strategy=strategy, num_steps=num_steps, lengths=lengths))
    assert len(states) == num_steps == counting.calls
    pos = torch.arange(L)[None]
    for s in states:
        assert (s.ids[pos == lengths[:, None]] == 1).all()  # eos_id
        assert (s.ids[pos > lengths[:, None]] == 0).all()  # pad_id
        assert not (s.remasked & (pos >= lengths[:, None])).any()
    assert not states[-1].masked.any()
    assert states[0].revealed[pos >= lengths[:, None]].all()  # shown with the first pass


def test_length_first_confidence_spreads_the_words_over_all_passes(length_model):
    lengths = torch.tensor([4, 12])
    states = list(denoise(length_model, torch.randn(2, 8), strategy="confidence", num_steps=4, lengths=lengths))
    words = [(s.revealed & (torch.arange(L)[None] < lengths[:, None])).sum(1).tolist() for s in states]
    assert words == [[1, 3], [1, 3], [1, 3], [1, 3]]


def test_bad_lengths(length_model):
    for bad in (torch.tensor([16]), torch.tensor([-1]), torch.tensor([1, 2])):
        with pytest.raises(ValueError, match="lengths"):
            list(denoise(length_model, torch.randn(1, 8), lengths=bad))


@pytest.mark.parametrize("strategy", ["confidence", "two-stage"])
def test_compact_rows_do_not_depend_on_their_batch(length_model, strategy):
    """Compact passes attend only to each row's own sentence: a row decodes the same alone or
    batched with longer and shorter ones (what lets the server and invert batch freely)."""
    cond, lengths = torch.randn(4, 8), torch.tensor([2, 9, 5, 15])
    together = list(denoise(length_model, cond, strategy=strategy, num_steps=4, lengths=lengths))[-1].ids
    for i in range(4):
        alone = list(denoise(length_model, cond[i : i + 1], strategy=strategy, num_steps=4, lengths=lengths[i : i + 1]))
        assert torch.equal(alone[-1].ids[0], together[i])


def test_compact_runs_passes_on_the_sentence_only(length_model):
    """Each pass of a compact decode computes positions up to the longest row's EOS, no further."""
    widths = []

    class Widths(CountingModel):
        def forward(self, ids, *a):
            widths.append(ids.shape[1])
            return self.inner(ids, *a)

    lengths = torch.tensor([3, 6])
    list(denoise(Widths(length_model), torch.randn(2, 8), num_steps=4, lengths=lengths))
    assert widths == [7, 7, 7, 7]
    widths.clear()
    list(denoise(Widths(length_model), torch.randn(2, 8), num_steps=4, lengths=lengths, compact=False))
    assert widths == [L] * 4


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("with_length", [False, True])
def test_a_generator_per_row_decodes_each_row_as_alone(length_model, strategy, with_length):
    """With one generator per row, random strategies batch: each row is what it is alone."""
    cond, lengths = torch.randn(3, 8), torch.tensor([4, 15, 8])
    seeds = [5, 6, 7]
    kw = {"strategy": strategy, "num_steps": 5, "remask_ratio": 0.25}  # a ratio at which remask fires
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    together = list(denoise(length_model, cond, generator=gens, lengths=lengths if with_length else None, **kw))
    for i, s in enumerate(seeds):
        ln = lengths[i : i + 1] if with_length else None
        alone = list(
            denoise(length_model, cond[i : i + 1], generator=torch.Generator().manual_seed(s), lengths=ln, **kw)
        )
        assert torch.equal(alone[-1].ids[0], together[-1].ids[i])


def test_a_generator_per_row_needs_one_per_row(length_model):
    with pytest.raises(ValueError, match="one generator per row"):
        list(denoise(length_model, torch.randn(2, 8), generator=[torch.Generator()]))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_vocabulary_projection_in_chunks_changes_nothing(model, strategy, monkeypatch):
    """The arg-max path projects at most HEAD_ROWS masked positions at a time (so a big batch's
    logits stay in cache); in fp32 the decode is identical to projecting them all at once."""
    from unembed import sampling

    cond = torch.randn(6, 8)
    whole = list(denoise(model, cond, strategy=strategy, num_steps=4, generator=torch.Generator().manual_seed(3)))
    rows = []

    class Rows(CountingModel):
        def logits(self, h):
            rows.append(h.shape[0])
            return self.inner.logits(h)

    monkeypatch.setattr(sampling, "HEAD_ROWS", 5)
    chunked = list(
        denoise(Rows(model), cond, strategy=strategy, num_steps=4, generator=torch.Generator().manual_seed(3))
    )
    assert max(rows) == 5 and sum(rows) > 5 * 4
    for a, b in zip(whole, chunked, strict=True):
        assert torch.equal(a.ids, b.ids) and torch.allclose(a.confidence, b.confidence)
