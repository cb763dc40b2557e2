"""The progressive loss of Deep Thinking networks (Bansal et al., 2022).

    L = (1 - alpha) * CE(logits after iters) + alpha * CE(progressive)

Progressive term: run n iterations without gradient, detach the features, run k more with
gradient, score the output. The reference draws n ~ U[0, m-1] and then k ~ U[1, m-n], which makes
the total n + k pile up near m. Here the total t = n + k is drawn uniformly from [1, m] and n
uniformly from [0, t-1], so every iteration count is trained equally often.

The loss is averaged over the positions the task marks valid (maze walls do not count).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tasks.base import Task


def masked_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over valid positions; logits (N, classes, *S), targets/valid (N, *S)."""
    per_position = F.cross_entropy(logits, targets, reduction="none")
    return (per_position * valid).sum() / valid.sum().clamp_min(1)


def draw_progressive_split(iters: int, generator: torch.Generator, detach_extra: int = 0,
                           min_iters: int = 1) -> tuple[int, int]:
    """(n, k): n detached iterations then k with gradient.

    n + k is uniform on [min_iters, iters], then ``detach_extra`` > 0 adds U[0, detach_extra] more
    detached iterations in front: the model then also learns to hold a solved state beyond
    iters (against "overthinking"), at the price of cheap no-grad iterations only. ``min_iters``
    above 1 asks for answers only from that iteration on (``TrainConfig.progressive_min_iters``).
    """
    total = int(torch.randint(min_iters, iters + 1, (1,), generator=generator))
    n = int(torch.randint(0, total, (1,), generator=generator))
    extra = int(torch.randint(0, detach_extra + 1, (1,), generator=generator)) if detach_extra > 0 else 0
    return n + extra, total - n


def progressive_loss(
    model: nn.Module,
    task: Task,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    iters: int,
    alpha: float,
    generator: torch.Generator,
    detach_extra: int = 0,
    min_iters: int = 1,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The loss of one batch, ``(1 - alpha) * CE(after iters) + alpha * CE(progressive)``.

    inputs ``(N, C, *S)``, targets ``(N, *S)``. The progressive term runs n iterations without
    gradient, detaches, and k more with gradient (``draw_progressive_split``, which draws from
    ``generator``; ``min_iters`` the least n + k); each term is skipped when its weight is 0.
    Returns ``(loss, logits)``: a 0-d tensor, and the logits ``(N, classes, *S)`` after ``iters``
    iterations when the full term computed them (None otherwise).
    """
    valid = task.valid(inputs)  # (N, *S)
    loss = torch.zeros((), device=inputs.device)
    logits_full = None
    if alpha < 1:
        logits_full = model(inputs, iters)
        loss = loss + (1 - alpha) * masked_cross_entropy(logits_full, targets, valid)
    if alpha > 0:
        n, k = draw_progressive_split(iters, generator, detach_extra, min_iters)
        with torch.no_grad():
            state = model.run(inputs, n) if n > 0 else model.initial_state(inputs)
        state = model.run(inputs, k, state=state.detach(), start=n)
        loss = loss + alpha * masked_cross_entropy(model.logits(state), targets, valid)
    return loss, logits_full


__all__ = ["draw_progressive_split", "masked_cross_entropy", "progressive_loss"]
