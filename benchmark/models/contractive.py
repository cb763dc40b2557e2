"""Hard recurrence whose iteration is a contraction of the features (``model=contractive``).

Bear et al., "Rethinking Deep Thinking: Stable Learning of Algorithms using Lipschitz
Constraints" (NeurIPS 2024, "DT-L"): if the map h -> f(h, x) that one iteration applies has a
Lipschitz constant c < 1 in h, every start converges to the same fixed point, at a known rate.
On the robust maze recipe about half of hard recurrence's wrong answers in its failed seeds are
answers that never settle (docs/robust_maze.md); this model removes that failure by construction.
Whether its fixed point is the right answer is what a training run measures.

One iteration, with the recall network's layout (``benchmark.models.recurrent``):

    u = ReLU(R_h * h + R_x * x)                         ||R_h|| <= c
    two blocks b: h <- (1 - a_b) h + a_b ReLU(W_2b+1 * ReLU(W_2b * u))    ||W|| <= 1, a_b in (0, 1)

(u is h after the recall.) ReLU is 1-Lipschitz and each block is a convex combination of
1-Lipschitz maps, so the iteration's Lipschitz constant in h is at most c. ``||W||`` is the
operator norm of a stride-1, zero-padded convolution: each weight is divided by an upper bound
of it (``conv_operator_bound``) where the bound exceeds 1 (c for the recall's feature part), so
a weight already inside the ball is left as it is. The learned a_b (a sigmoid, 0.5 at start)
replace the residual sums, whose Lipschitz constant is 1 + ||branch|| > 1 (DT-L's "parametric
linear interpolation"). The projection, the recall's input part and the head are unconstrained:
they do not act on h between iterations.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from benchmark.models.contract import register_model
from benchmark.models.recurrent import CONVS_PER_BLOCK, RecurrentConvNet
from tasks.base import TaskSpec

FREQUENCIES = 16  # per spatial dimension, where a kernel's frequency response is sampled


def conv_operator_bound(weight: torch.Tensor, dims: int, points: int = FREQUENCIES) -> torch.Tensor:
    """An upper bound of the l2 operator norm of each stride-1, zero-padded 3-tap convolution in
    ``weight`` ``(*batch, out, in, *(3,) * dims)``: shape ``batch``.

    The convolution is bounded by the largest singular value of its kernel's frequency response
    over all frequencies (a zero-padded convolution is a restriction of a circular one of any
    larger period). That response is a trigonometric polynomial of degree 1 in each frequency,
    sampled here on ``points`` frequencies per dimension (an FFT) and widened by 1/cos(pi/points)
    per dimension, which covers what the samples miss for such a polynomial
    (tests/test_contractive.py checks it against a 256-point grid and against power iteration
    on the zero-padded operator).
    """
    kernel_dims = tuple(range(-dims, 0))
    # A real kernel's response at -w is the conjugate of that at w (the same singular values), so
    # half the frequencies of the last dimension are all of them (rfftn).
    response = torch.fft.rfftn(weight, s=(points,) * dims, dim=kernel_dims)  # (*batch, out, in, *points')
    response = response.movedim(-dims - 2, -1).movedim(-dims - 2, -1)  # (*batch, *points, out, in)
    sampled = torch.linalg.matrix_norm(response, ord=2).flatten(-dims).amax(-1)
    return sampled / math.cos(math.pi / points) ** dims


@register_model("contractive_conv")
class ContractiveConvNet(RecurrentConvNet):
    """One unshared block reused every iteration (as ``model=recurrent``), constrained so that an
    iteration is a contraction of the features with Lipschitz constant at most ``lipschitz``.

    Args:
        spec: the task's spec.
        name: the label in result paths and tables.
        width: channels of the features.
        depth, recall: 1 and True, the only values (the schema's fields; a loop with the input recalled).
        lipschitz: c in (0, 1), the bound of one iteration's Lipschitz constant in the features.
        compile: run each iteration through ``torch.compile`` (``RecurrentConvNet.use_compile``).
    """

    def __init__(self, spec: TaskSpec, name: str = "contractive", width: int = 32, depth: int = 1, recall: bool = True,
                 lipschitz: float = 0.9, compile: bool = False):
        if isinstance(lipschitz, bool) or not isinstance(lipschitz, (int, float)) or not 0 < lipschitz < 1:
            raise ValueError(f"model.lipschitz must be a number between 0 and 1 (exclusive), got {lipschitz!r}.")
        if depth != 1 or recall is not True:
            raise ValueError(f"a contractive model has one block position with recall (model.depth 1, model.recall true), "
                             f"got depth {depth!r} and recall {recall!r}.")
        super().__init__(spec, name, width=width, depth=1, templates=None, recall=True, compile=compile)
        self.lipschitz = float(lipschitz)
        # The blocks' interpolation weights a_b = sigmoid(mix[b]), one per residual block.
        self.mix = nn.Parameter(torch.zeros(CONVS_PER_BLOCK // 2))

    @classmethod
    def config_kind(cls, node) -> str:
        return "recurrent"

    def position_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        block, recall = super().position_weights()  # (1, 4, w, w, *k), (1, w, w + C, *k)
        dims, w = self.spec.dims, self.width
        shape = (*block.shape[:2], *(1,) * (dims + 2))
        block = block / conv_operator_bound(block, dims).clamp(min=1.0).view(shape)
        features, inputs = recall[:, :, :w], recall[:, :, w:]
        gain = conv_operator_bound(features, dims).clamp(min=self.lipschitz) / self.lipschitz
        return block, torch.cat([features / gain.view(-1, *(1,) * (dims + 2)), inputs], dim=2)

    def _iterate(self, h: torch.Tensor, x: torch.Tensor, recall: torch.Tensor, x_term: torch.Tensor | None,
                 block: torch.Tensor) -> torch.Tensor:
        """One iteration (the module docstring's map); ``recall`` and ``x_term`` as in ``RecurrentConvNet._iterate``."""
        h = (self._conv(torch.cat([h, x], dim=1), recall, padding=1) if x_term is None
             else self._conv(h, recall, padding=1).add_(x_term)).relu_()
        mix = torch.sigmoid(self.mix)
        for b in range(0, CONVS_PER_BLOCK, 2):
            branch = self._conv(self._conv(h, block[b], padding=1).relu_(), block[b + 1], padding=1).relu_()
            h = torch.lerp(h, branch, mix[b // 2].to(h.dtype))
        return h


__all__ = ["ContractiveConvNet", "conv_operator_bound"]
