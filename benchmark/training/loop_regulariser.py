"""The loop-inducing regulariser: a training loss that pulls same-role bank layers parallel.

Added to the task loss (``train.loop_weight``), it asks a template-shared network to become
foldable into loops (``benchmark.analysis.folding``); Savarese & Maire (ICLR 2019) suggest such a term.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from benchmark.models.recurrent import CONVS_PER_BLOCK
from benchmark.analysis.similarity import EPS, bank_owners, find_banks


def loop_pairs(model: nn.Module) -> dict[str, list[tuple[int, int]]]:
    """The pairs of bank layers that ``loop_penalty`` pulls together, per learned bank.

    - bank of a ``RecurrentConvNet`` with depth D > 1: slot c of position p with slot c of
      position p + 1 (layers 4p + c and 4p + 4 + c). These layers do the same job one iteration
      apart, so parallel rows make neighbouring positions one block: exactly what ``fold``
      turns into a loop that runs longer at test time.
    - bank of a ``RecurrentConvNet`` with depth 1: the two residual blocks of the block, slot by
      slot (layers 0-2 and 1-3). Conv 0 and conv 1 of one residual block play different roles
      (one feeds a ReLU, the other the skip sum), so they are not paired; the two residual
      blocks compute the same thing, so pairing them asks for "one residual block run twice".
    - any other learned bank: neighbouring layers (i, i + 1), the paper's notion of a loop.

    Fixed-identity banks have nothing to learn and are left out.
    """
    owners = bank_owners(model)
    pairs = {}
    for name, bank in find_banks(model).items():
        if not bank.learns_coefficients:
            continue
        depth = owners[name].depth if name in owners else None
        if depth is None:
            pairs[name] = [(i, i + 1) for i in range(bank.num_layers - 1)]
        elif depth > 1:
            pairs[name] = [(i, i + CONVS_PER_BLOCK) for i in range(bank.num_layers - CONVS_PER_BLOCK)]
        else:
            pairs[name] = [(c, c + 2) for c in range(CONVS_PER_BLOCK - 2)]
    return {name: p for name, p in pairs.items() if p}


def _pair_cosines(model: nn.Module) -> torch.Tensor | None:
    """Signed cosines ``(pairs,)`` of every ``loop_pairs`` pair of every learned bank, concatenated."""
    banks, cosines = find_banks(model), []
    for name, pairs in loop_pairs(model).items():
        a = banks[name].coefficients  # (L, k)
        i, j = (torch.tensor(idx, device=a.device) for idx in zip(*pairs))
        ai, aj = a[i], a[j]  # (pairs, k)
        cosines.append((ai * aj).sum(1) / (ai.norm(dim=1) * aj.norm(dim=1)).clamp_min(EPS))
    return torch.cat(cosines) if cosines else None


# The forms of ``loop_penalty`` (``train.loop_form``), as functions of the pairs' cos^2.
# "squared", 1 - cos^2 = sin^2: a quadratic pull on every pair alike; no pair reaches exactly
# parallel (the pull vanishes near it) and every pair pays, so a stack that needs a few breaks
# between its loops pays for them all the time. "abs", |sin| smoothed over ABS_EPS: the pull
# stays about 1 near parallel, so pairs that can be parallel end there (to within about
# ABS_EPS, a fold that changes nothing), and a pair that must differ costs at most 1 however
# different it is: the total-variation (L1) form of the same idea, which keeps loops with breaks.
LOOP_FORMS = ("squared", "abs")
ABS_EPS = 1e-3


def loop_penalty(model: nn.Module, form: str = "squared") -> torch.Tensor:
    """The loop-inducing regulariser: the mean over pairs (i, j) of a distance from parallel.

    ``form`` "squared": ``1 - cos^2(a_i, a_j)``; "abs": ``sqrt(1 - cos^2 + eps^2) - eps`` with
    eps = ``ABS_EPS`` (|sin| made smooth; see ``LOOP_FORMS``). The pairs are those of
    ``loop_pairs`` (same-role layers one step apart) over every learned bank of ``model``. Why
    this shape:

    - it depends only on the directions of the rows, like the LSM (cos^2 = LSM^2), so it neither
      shrinks nor grows the weights and leaves their scale to the task loss; a pair is free to
      end up anti-parallel (a negative scale folds just as exactly);
    - it lies in [0, 1] (0 exactly when every pair is parallel), so ``train.loop_weight`` reads
      as a fraction of the task loss whatever the depth;
    - it is smooth everywhere, unlike 1 - |cos|, whose kink at cos = 0 gives a useless gradient.
      (Exactly orthogonal rows are a saddle of either form: the task loss moves them off it.)

    Returns a 0-d tensor (a constant 0 when the model has no learned bank). Use it as
    ``loss + weight * loop_penalty(model)``, e.g. ``fit(..., regulariser=lambda m: w * loop_penalty(m))``.
    """
    if form not in LOOP_FORMS:
        raise ValueError(f"the loop penalty's form must be one of {', '.join(LOOP_FORMS)}, got {form!r}.")
    cos = _pair_cosines(model)
    if cos is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        return torch.zeros((), device=device)
    sin2 = (1.0 - cos.square()).clamp_min(0.0)
    if form == "squared":
        return sin2.mean()
    return ((sin2 + ABS_EPS**2).sqrt() - ABS_EPS).mean()


def training_regulariser(train: Any) -> Callable[[nn.Module], torch.Tensor] | None:
    """The loss term a run adds for ``train`` (a ``TrainConfig`` or its DictConfig):
    ``train.loop_weight * loop_penalty(model, train.loop_form)``, or None when the weight is 0.
    The one place a training step (``benchmark.pipelines.algorithmic``, ``benchmark.analysis.study.step_costs``) builds it."""
    weight, form = float(train.loop_weight), str(train.loop_form)
    if weight <= 0:
        return None
    return lambda model: weight * loop_penalty(model, form)


def loop_similarity(model: nn.Module) -> float:
    """Mean |cos| over the ``loop_pairs`` of ``model`` (1: every pair parallel; NaN: no pairs)."""
    with torch.no_grad():
        cos = _pair_cosines(model)
    return float("nan") if cos is None else float(cos.abs().mean())


__all__ = ["LOOP_FORMS", "loop_pairs", "loop_penalty", "loop_similarity", "training_regulariser"]
