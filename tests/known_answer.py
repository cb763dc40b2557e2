"""A stand-in model whose accuracy per iteration is known in advance, for the evaluator and reports.

``KnownAnswerNet`` serves prefix sums (bits in, running parity out). It solves a string of
``ones`` one-bits exactly at iterations ``ones + 1 .. ones + hold`` and gets its last bit wrong at
every other iteration, so the accuracy after each iteration of a hand-made test set can be
written down before running anything.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from tasks.prefix_sums import PrefixSumsTask

TASK = PrefixSumsTask()


def bit_strings(*rows: str) -> torch.utils.data.TensorDataset:
    """A prefix-sums test set of the given bit strings (inputs ``(N, 1, L)``: bit - 0.5)."""
    bits = torch.tensor([[int(b) for b in row] for row in rows])  # (N, L)
    return torch.utils.data.TensorDataset(bits[:, None].float() - 0.5, bits.cumsum(1) % 2)


class KnownAnswerNet(nn.Module):
    """The evaluator's interface (``iter_logits``, ``iteration_limit``) with scripted answers."""

    def __init__(self, hold: int, iteration_limit: int | None = None, name: str = "stub"):
        super().__init__()
        self.hold, self.iteration_limit, self.name = hold, iteration_limit, name

    def iter_logits(self, x: torch.Tensor, iters: int) -> Iterator[torch.Tensor]:
        bits = (x[:, 0] > 0).long()  # (N, L)
        answer = bits.cumsum(1) % 2  # (N, L)
        wrong = answer.clone()
        wrong[:, -1] ^= 1  # one wrong bit makes the whole sample wrong (exact match)
        first = bits.sum(1) + 1  # (N,): the first iteration that solves the sample
        for t in range(1, iters + 1):
            solved = (first <= t) & (t < first + self.hold)  # (N,)
            prediction = torch.where(solved[:, None], answer, wrong)
            yield F.one_hot(prediction, 2).permute(0, 2, 1).float()  # logits (N, 2, L)


# Four 8-bit strings with 0, 1, 2 and 4 ones: solved from iterations 1, 2, 3 and 5.
EIGHT_BITS = ("00000000", "10000000", "01100000", "11010010")
# hold 5: solved over [1, 5], [2, 6], [3, 7], [5, 9].
CURVE_HOLD_5 = (0.25, 0.5, 0.75, 0.75, 1.0, 0.75, 0.5)
# hold 3: solved over [1, 3], [2, 4], [3, 5], [5, 7].
CURVE_HOLD_3 = (0.25, 0.5, 0.75, 0.5, 0.5, 0.25, 0.25)
