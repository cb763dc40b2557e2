"""The progressive loss of Deep Thinking networks (Bansal et al., 2022).

    L = (1 - alpha) * CE(logits after iters) + alpha * CE(progressive)

Progressive term: run n iterations without gradient, detach the features, run k more with
gradient, score the output. The reference draws n ~ U[0, m-1] and then k ~ U[1, m-n], which makes
the total n + k pile up near m. Here the total t = n + k is drawn uniformly from [1, m] and n
uniformly from [0, t-1], so every iteration count is trained equally often.

The loss is averaged over the positions the task marks valid (maze walls do not count).

Path independence (``TrainConfig.init_noise``, off at 0): with ``init_noise`` = s > 0, half the
batches (a coin from the loss's own generator) start their iterations from a perturbed state
``perturbed_state(initial_state(x), s)`` instead of ``initial_state(x)``; the n detached and k
trained iterations then run from there, so the loss asks for the answer from a start the model
did not choose. Anil et al., "Path Independent Equilibrium Models Can Better Exploit Test-Time
Computation" (NeurIPS 2022), found that training from random initial states, instead of the
usual fixed one, makes a network reach the same state from anywhere (path independence) and that
this goes with solving harder instances by iterating longer. Their equilibrium models start from
zeros, so their random start is noise; here the start is the projection of the input, so the
random start is that state plus Gaussian noise at s times its own spread, which keeps the
option's meaning at any width and precision. Half the batches keep the model's own start,
because that is the start every evaluation uses. The scale, the coin and the ReLU of
``perturbed_state`` are this implementation's choices.
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


def perturbed_state(h: torch.Tensor, scale: float, generator: torch.Generator) -> torch.Tensor:
    """``relu(h + scale * std(h_i) * z)``: features ``h`` ``(N, w, *S)`` with Gaussian noise ``z``
    (drawn on the CPU from ``generator``, so a CUDA run draws what a CPU run draws), each sample
    at its own standard deviation so that one sample's start does not depend on the others in its
    batch. The ReLU keeps the start among the states the block can produce: every iteration
    ends in one, so a state of the model is never negative."""
    z = torch.randn(h.shape, generator=generator, dtype=torch.float32).to(h.device)
    h32 = h.float()
    spread = h32.flatten(1).std(dim=1).view(-1, *(1,) * (h.dim() - 1))
    return (h32 + scale * spread * z).relu_().to(h.dtype)


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
    init_noise: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The loss of one batch, ``(1 - alpha) * CE(after iters) + alpha * CE(progressive)``.

    inputs ``(N, C, *S)``, targets ``(N, *S)``. The progressive term runs n iterations without
    gradient, detaches, and k more with gradient (``draw_progressive_split``, which draws from
    ``generator``; ``min_iters`` the least n + k); each term is skipped when its weight is 0. With
    ``init_noise`` > 0, a coin from ``generator`` (drawn after the split, only then) starts half
    the batches' progressive term from ``perturbed_state`` (the module docstring).
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
            state = model.initial_state(inputs)
            if init_noise > 0 and bool(torch.randint(0, 2, (1,), generator=generator)):
                state = perturbed_state(state, init_noise, generator)
            if n > 0:
                state = model.run(inputs, n, state=state)
        state = model.run(inputs, k, state=state.detach(), start=n)
        loss = loss + alpha * masked_cross_entropy(model.logits(state), targets, valid)
    return loss, logits_full


__all__ = ["draw_progressive_split", "masked_cross_entropy", "perturbed_state", "progressive_loss"]
