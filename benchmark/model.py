"""One recurrent convolutional network for every model under test, 1-D or 2-D.

    input x (N, C, *S)
      -> projection conv + ReLU                              h (N, w, *S)
      -> iteration t = 0, 1, ..., T-1, at block position p = min(t, depth - 1):
           recall: u = ReLU(conv_p([h, x]))  (input concatenated to the features)
           two residual blocks, their 4 convs = bank layers 4p .. 4p+3
      -> head: conv w->w, ReLU, conv w->w/2, ReLU, conv w/2->classes   logits (N, classes, *S)

The settings of one class give every model of the suite (see ``configs/model/``):

- ``shared``: depth 1, the block's 4 convs mixed from k < 4 templates with learned
  coefficients, the block reused every iteration (soft sharing *inside* the recurrent block);
- ``recurrent``: depth 1, ``templates: null`` (each conv its own weight): the Deep Thinking
  recall network, one block reused every iteration;
- ``shared_depth``: depth D > 1, all 4D convs mixed from one bank (soft sharing *over* depth);
- ``feedforward`` (``baselines/``): depth D, ``templates: null``: D unshared blocks.

What an extra iteration uses: iteration t runs the block at position min(t, depth - 1), so an
iteration past the trained depth reuses the last position's weights (for depth 1, the one block
every iteration used). A model whose every position has its own unshared weights (feed-forward,
depth > 1) has no weights for an extra iteration: ``iteration_limit`` is its depth.

All convolutions are 3 (x 3), stride 1, zero padding, no bias and no normalisation, so a model
trained on small inputs runs unchanged on bigger ones.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.bank import TemplateBank
from tasks.base import TaskSpec

CONVS_PER_BLOCK = 4  # two residual basic blocks of two convs each, as in Deep Thinking networks


class IteratedBlockNet(nn.Module):
    """The machinery every network here shares: projection, a block iterated over positions, head.

    Subclasses set ``projection``, ``head`` and ``depth`` (block positions) and supply
    ``position_weights`` (each position's block and recall weights) and ``iteration_limit``. Iteration
    t runs position min(t, depth - 1).
    """

    def __init__(self, spec: TaskSpec, name: str):
        super().__init__()
        if spec.dims not in (1, 2):
            raise ValueError(f"the network supports 1-D and 2-D tasks, got dims={spec.dims}.")
        self.spec, self.name = spec, name
        self._conv = F.conv1d if spec.dims == 1 else F.conv2d

    depth: int
    projection: nn.Module
    head: nn.Module

    @property
    def iteration_limit(self) -> int | None:
        """The most iterations this model has weights for (``None``: any number)."""
        raise NotImplementedError

    def position_weights(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Block weights ``(depth, 4, w, w, *kernel)`` and recall weights ``(depth, w, w + C, *kernel)`` or None."""
        raise NotImplementedError

    def check_iters(self, iters: int) -> None:
        if iters < 1:
            raise ValueError(f"the number of iterations must be at least 1, got {iters}.")
        if self.iteration_limit is not None and iters > self.iteration_limit:
            raise ValueError(f"model '{self.name}' has weights for at most {self.iteration_limit} iterations and cannot run {iters} iterations.")

    def initial_state(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.projection(x))  # (N, w, *S)

    def states(self, x: torch.Tensor, iters: int, state: torch.Tensor | None = None, start: int = 0) -> Iterator[torch.Tensor]:
        """The features ``(N, w, *S)`` after each of iterations ``start .. start + iters - 1``.

        Starts from ``state`` if given, else from ``initial_state(x)``. The one iteration loop
        that ``run`` and ``iter_logits`` share; only the current state is kept, so under
        ``torch.no_grad()`` memory does not grow with ``iters``.
        """
        h = self.initial_state(x) if state is None else state
        block, recall = self.position_weights()  # mixed once for all iterations
        for t in range(start, start + iters):
            h = self._iterate(x, h, t, block, recall)
            yield h

    def run(self, x: torch.Tensor, iters: int, state: torch.Tensor | None = None, start: int = 0) -> torch.Tensor:
        """The features after iterations ``start .. start + iters - 1``, from ``state`` if given."""
        h = self.initial_state(x) if state is None else state
        for h in self.states(x, iters, h, start):
            pass
        return h

    def forward(self, x: torch.Tensor, iters: int) -> torch.Tensor:
        """Logits ``(N, classes, *S)`` after ``iters`` iterations."""
        self.check_iters(iters)
        return self.head(self.run(x, iters))

    def iter_logits(self, x: torch.Tensor, iters: int) -> Iterator[torch.Tensor]:
        """Logits ``(N, classes, *S)`` after each of iterations 1..iters, from one unrolled pass."""
        self.check_iters(iters)
        for h in self.states(x, iters):
            yield self.head(h)

    def _iterate(self, x: torch.Tensor, h: torch.Tensor, t: int, block: torch.Tensor, recall: torch.Tensor | None) -> torch.Tensor:
        """One iteration at position min(t, depth - 1): recall conv + ReLU, two residual blocks."""
        p = min(t, self.depth - 1)
        if recall is not None:
            h = F.relu(self._conv(torch.cat([h, x], dim=1), recall[p], padding=1))
        weights = block[p]  # (4, w, w, *kernel)
        for b in range(0, CONVS_PER_BLOCK, 2):
            out = F.relu(self._conv(h, weights[b], padding=1))
            h = F.relu(h + self._conv(out, weights[b + 1], padding=1))
        return h


class RecurrentConvNet(IteratedBlockNet):
    """A template-shared recurrent conv network (see the module docstring for the variants).

    Args:
        spec: the task's spec (dimensionality, input channels, classes).
        name: the label of this variant in result paths and tables.
        width: channels of the features.
        depth: distinct block positions; iterations past it reuse the last one.
        templates: k, templates in the bank of block convs; ``None`` gives every conv its own
            weight (the bank's coefficients become a fixed identity).
        recall: concatenate the input to the features at every iteration.
    """

    def __init__(
        self,
        spec: TaskSpec,
        name: str = "shared",
        width: int = 32,
        depth: int = 1,
        templates: int | None = 2,
        recall: bool = True,
    ):
        super().__init__(spec, name)
        for key, value, least in (("width", width, 2), ("depth", depth, 1), ("templates", 1 if templates is None else templates, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ValueError(f"model.{key} must be an integer >= {least}, got {value!r}.")
        self.width, self.depth, self.recall = width, depth, recall
        conv_nd = nn.Conv1d if spec.dims == 1 else nn.Conv2d

        def conv(c_in: int, c_out: int) -> nn.Module:
            return conv_nd(c_in, c_out, 3, padding=1, bias=False)

        self.projection = conv(spec.in_channels, width)
        # The recall conv changes the channel count, so it cannot come from the w->w bank.
        self.recall_convs = nn.ModuleList(conv(width + spec.in_channels, width) for _ in range(depth)) if recall else None
        layers = depth * CONVS_PER_BLOCK
        self.bank = TemplateBank(
            num_layers=layers,
            num_templates=layers if templates is None else templates,
            shape=(width, width, *(3,) * spec.dims),
            learn_coefficients=templates is not None,
            layers_per_block=CONVS_PER_BLOCK,
        )
        self.head = nn.Sequential(
            conv(width, width), nn.ReLU(), conv(width, width // 2), nn.ReLU(), conv(width // 2, spec.num_classes)
        )

    @property
    def iteration_limit(self) -> int | None:
        """The most iterations this model has weights for (``None``: any number).

        A model whose every position has its own unshared weights (depth > 1) has none for an
        extra iteration; shared and single-position models reuse their last position.
        """
        unshared = not self.bank.learns_coefficients
        return self.depth if unshared and self.depth > 1 else None

    def position_weights(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        block = self.bank.weights().view(self.depth, CONVS_PER_BLOCK, *self.bank.shape)  # one batched mix
        recall = None if self.recall_convs is None else torch.stack([c.weight for c in self.recall_convs])
        return block, recall
