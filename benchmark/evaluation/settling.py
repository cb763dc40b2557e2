"""Where a model's predictions *settle*: the one detector of fixed points and 2-cycles.

A sequence of predictions p_1, p_2, ... (one per test-time iteration) has settled once it has
been unchanged for ``k`` consecutive iterations (p_t == p_{t-1}, k times in a row: a fixed point)
or has alternated between two states for ``k`` consecutive iterations (p_t == p_{t-2} != p_{t-1},
k times in a row: a 2-cycle). The animation stops its frames there (``benchmark.animate``) and
the evaluator stops unrolling a sample there (``benchmark.evaluate``, ``halt_after``).

``SettleDetector`` follows a whole batch at once on the batch's device: per sample, the last two
predictions and the lengths of its current runs of repeats and of alternations; no Python loop
over samples and no host copy of a prediction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

FIXED, CYCLE = 1, 2  # the periods of the two settled states


@dataclass(frozen=True)
class Settling:
    """Where a sequence of predictions settled: the first iteration (1-based) of the state it
    stayed in and that state's period (1: a fixed point, 2: a 2-cycle); both None if it never did."""

    iteration: int | None = None
    period: int | None = None

    def frames(self, iters: int) -> int:
        """How many iterations to show: up to the settled state (both states of a 2-cycle), else all."""
        return iters if self.iteration is None else self.iteration + self.period - 1

    def describe(self) -> str:
        if self.iteration is None:
            return "not settled"
        kind = "a fixed point" if self.period == FIXED else "a 2-cycle"
        return f"settled into {kind} at iteration {self.iteration}"


class SettleDetector:
    """Feed the predictions ``(N, *S)`` of iterations 1, 2, ... of a batch; ``push`` returns per
    sample the period (1 or 2) of the state it was confirmed to have settled into at this
    iteration, 0 where it was not (samples already settled keep being tested: drop them with
    ``keep``). A sample confirmed at iteration t with period P settled at ``first_iteration(P)``
    = t - k - (P - 1), the first iteration of its settled state."""

    def __init__(self, k: int) -> None:
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}.")
        self.k, self.t = k, 0
        self.prev: torch.Tensor | None = None  # (N, *S) p_{t-1}
        self.prev2: torch.Tensor | None = None  # (N, *S) p_{t-2}
        self.fixed: torch.Tensor | None = None  # (N,) length of the current run of repeats
        self.cycle: torch.Tensor | None = None  # (N,) length of the current run of alternations

    def push(self, prediction: torch.Tensor) -> torch.Tensor:
        """The periods ``(N,)`` (long: 0, 1 or 2) of the samples confirmed settled at this iteration."""
        self.t += 1
        n = prediction.shape[0]
        if self.prev is None:
            self.fixed = self.cycle = torch.zeros(n, dtype=torch.long, device=prediction.device)
            same = alternates = torch.zeros(n, dtype=torch.bool, device=prediction.device)
        else:
            same = (prediction == self.prev).flatten(1).all(1)  # (N,)
            alternates = torch.zeros_like(same) if self.prev2 is None else (prediction == self.prev2).flatten(1).all(1)
        # A repeat extends the run of repeats and ends any alternation; otherwise an alternation
        # (p_t == p_{t-2}, hence != p_{t-1}) extends the run of alternations; anything else resets both.
        self.fixed = torch.where(same, self.fixed + 1, 0)
        self.cycle = torch.where(~same & alternates, self.cycle + 1, 0)
        self.prev2, self.prev = self.prev, prediction
        return torch.where(self.fixed >= self.k, FIXED, torch.where(self.cycle >= self.k, CYCLE, 0))

    def first_iteration(self, period: int) -> int:
        """The first iteration of a state of ``period`` confirmed at the current iteration."""
        return self.t - self.k - (period - 1)

    def keep(self, index: torch.Tensor) -> None:
        """Follow only the samples at ``index`` ``(M,)`` (long, into the current batch) from now on."""
        for name in ("prev", "prev2", "fixed", "cycle"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.index_select(0, index))


def settle_point(predictions: Iterable[np.ndarray | torch.Tensor], k: int) -> Settling:
    """Where ``predictions`` (those of one sample at iterations 1, 2, ...) settled: see ``SettleDetector``."""
    detector = SettleDetector(k)
    for prediction in predictions:
        period = int(detector.push(torch.as_tensor(prediction)[None])[0])
        if period:
            return Settling(detector.first_iteration(period), period)
    return Settling()


__all__ = ["CYCLE", "FIXED", "SettleDetector", "Settling", "settle_point"]
