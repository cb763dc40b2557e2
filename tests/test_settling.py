"""``benchmark.evaluation.settling``: where predictions settle (fixed points and 2-cycles), for one sample
(``settle_point``) and for a batch on the device (``SettleDetector``, dropping samples with ``keep``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmark.evaluation.settling import SettleDetector, Settling, settle_point


def _seq(*values: int) -> list[np.ndarray]:
    return [np.array([v, v % 2]) for v in values]  # distinct values give distinct arrays


@pytest.mark.parametrize("values,k,expected", [
    ((1, 2, 3, 3, 3, 3), 3, Settling(3, 1)),  # fixed point from iteration 3, confirmed by 3 repeats
    ((1, 2, 3, 3, 3, 3), 4, Settling()),  # only 3 repeats: not settled
    ((5, 5, 5, 5, 5), 4, Settling(1, 1)),  # fixed from the start
    ((1, 1, 1, 2, 2, 2, 2), 3, Settling(4, 1)),  # a change resets the count
    ((1, 2, 3, 2, 3, 2, 3), 3, Settling(2, 2)),  # a 2-cycle entered at iteration 2
    ((1, 2, 1, 2, 2, 2, 2), 3, Settling(4, 1)),  # a broken 2-cycle, then a fixed point
    ((1, 2, 3) * 4, 2, Settling()),  # a 3-cycle is not settled
    ((1, 1, 2, 2, 1, 1, 2, 2), 2, Settling()),  # pairs: never 2 repeats, never alternating
    ((1, 1, 2, 2, 1, 1, 2, 2), 1, Settling(1, 1)),
])
def test_settle_point_on_hand_made_sequences(values, k, expected):
    assert settle_point(_seq(*values), k) == expected


def test_frames_shown_stop_at_the_settled_state():
    assert Settling(3, 1).frames(50) == 3
    assert Settling(2, 2).frames(50) == 3  # both states of the cycle
    assert Settling().frames(50) == 50
    assert Settling(2, 2).describe() == "settled into a 2-cycle at iteration 2" and Settling().describe() == "not settled"
    with pytest.raises(ValueError):
        settle_point(_seq(1), 0)


def _oracle(values: list[int], k: int) -> Settling:
    """The first iteration T whose last k+1 predictions are equal (fixed point from T-k) or whose
    last k+2 alternate between two different ones (2-cycle from T-k-1)."""
    for t in range(1, len(values) + 1):
        fixed = values[max(0, t - k - 1):t]
        cycle = values[max(0, t - k - 2):t]
        if len(fixed) == k + 1 and len(set(fixed)) == 1:
            return Settling(t - k, 1)
        if len(cycle) == k + 2 and cycle[0] != cycle[1] and all(v == cycle[i % 2] for i, v in enumerate(cycle)):
            return Settling(t - k - 1, 2)
    return Settling()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 2), max_size=14), st.integers(1, 4))
def test_settle_point_matches_a_window_oracle(values, k):
    assert settle_point([np.array([v]) for v in values], k) == _oracle(values, k)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 3), st.integers(1, 16), st.data())
def test_a_batch_settles_as_each_sample_alone_and_dropping_samples_changes_nothing(k, length, data):
    """Every sample of a batch (each its own random sequence of 2-D predictions) is confirmed at
    the iteration, and with the period, the oracle gives for it alone; samples are dropped with
    ``keep`` as they settle, as the evaluator does, and randomly kept ones are unaffected."""
    n = data.draw(st.integers(1, 6))
    values = [data.draw(st.lists(st.integers(0, 2), min_size=length, max_size=length)) for _ in range(n)]
    grids = torch.tensor(values)[:, :, None, None] * torch.tensor([[1, 0], [0, 1]])  # (n, T, 2, 2)
    detector, running, found = SettleDetector(k), torch.arange(n), {}
    for t in range(1, length + 1):
        periods = detector.push(grids[running, t - 1])  # (running,)
        for i, p in zip(running.tolist(), periods.tolist()):
            if p:
                found[i] = Settling(detector.first_iteration(p), p)
        keep = torch.nonzero(periods == 0).squeeze(1)
        running = running[keep]
        detector.keep(keep)
    for i in range(n):
        assert found.get(i, Settling()) == _oracle(values[i], k)
