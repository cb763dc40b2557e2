"""One optimizer step, the one every training loop of the suite takes.

``fit`` (``benchmark.training.trainer``), the classification epochs
(``benchmark.pipelines.classification``), the speed benchmark (``benchmark.devtools.bench``) and
the study's step timer (``benchmark.analysis.study.step_costs``) all call ``train_step``: the
forward pass and loss (the caller's ``loss_fn``), the regulariser, backward, an optional gradient
reduction (data-parallel averaging), clipping, the optimizer step and the per-step scheduler.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn


def train_step(
    model: nn.Module,
    loss_fn: Callable[[], tuple[torch.Tensor, Any]],
    optimizer: torch.optim.Optimizer,
    scheduler: Any = None,
    clip: float = 0.0,
    regulariser: Callable[[nn.Module], torch.Tensor] | None = None,
    after_backward: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, Any]:
    """One step on one batch; returns ``(loss, aux)`` as ``loss_fn`` gave them (plus the regulariser).

    ``loss_fn()`` runs the forward pass and returns ``(loss, aux)``: a 0-d loss and whatever the
    caller wants back (logits, or None). ``regulariser(model)`` is added to the loss. After
    ``backward``, ``after_backward(loss)`` may rewrite the gradients (e.g. average them over
    ranks) and returns the loss to report. Gradients are clipped to norm ``clip`` when it is > 0;
    ``scheduler`` (None: none, or one stepped per epoch by the caller) steps after the optimizer.
    """
    loss, aux = loss_fn()
    if regulariser is not None:
        loss = loss + regulariser(model)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if after_backward is not None:
        loss = after_backward(loss)
    if clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return loss, aux


__all__ = ["train_step"]
