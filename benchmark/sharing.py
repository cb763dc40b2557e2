"""What a template-shared network learned to share: layer similarity, a loop regulariser, folding.

    LSM[i, j] = |<a_i, a_j>| / (||a_i|| ||a_j||)        a_i: the coefficient row of bank layer i

Rows with LSM close to 1 mix the same weight up to a scalar: those layers have become "the same
layer". ``fold`` turns such a trained ``RecurrentConvNet`` into a ``FoldedNet`` with explicit
loops and fewer distinct weights; ``analyse_run`` writes ``lsm.json`` and ``fold.json`` for a
run and scores the folded network on the same test sets (Savarese & Maire, ICLR 2019, Sec. 3).

Layout of ``RecurrentConvNet``'s bank (see ``benchmark.model``): position p holds the layers
4p .. 4p+3, its *slots* c = 0..3 (residual block b = c // 2, conv c % 2); iteration t runs
position min(t, depth - 1).
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from benchmark.bank import TemplateBank
from benchmark.evaluate import evaluate
from benchmark.model import CONVS_PER_BLOCK, IteratedBlockNet, RecurrentConvNet
from tasks.base import Task, TaskSpec

_EPS = 1e-12  # guards the norm of an all-zero coefficient row
_ROUNDING = 1e-6  # |cos| of exactly parallel rows may round to just below 1


# ---------------------------------------------------------------------------- layer similarity
def layer_similarity(coefficients: torch.Tensor) -> torch.Tensor:
    """The layer similarity matrix ``(L, L)`` of a bank's coefficients ``(L, k)``.

    ``LSM[i, j] = |<a_i, a_j>| / (||a_i|| ||a_j||)``: symmetric, in [0, 1], blind to the sign and
    size of a row. A zero row (the zero weight) is similar to no other layer (0) but still to
    itself (the diagonal is 1). Differentiable, so it can be used inside a loss.
    """
    if coefficients.dim() != 2:
        raise ValueError(f"coefficients must be a 2-D (layers, templates) matrix, got shape {tuple(coefficients.shape)}.")
    unit = coefficients / coefficients.norm(dim=1, keepdim=True).clamp_min(_EPS)  # (L, k)
    lsm = (unit @ unit.T).abs().clamp(max=1.0)  # (L, L); rounding can exceed 1 by an ulp
    eye = torch.eye(len(coefficients), dtype=torch.bool, device=coefficients.device)
    return torch.where(eye, torch.ones_like(lsm), lsm)


def _bank_owners(model: nn.Module) -> dict[str, RecurrentConvNet]:
    """The ``RecurrentConvNet`` each bank path of ``model`` belongs to (its position layout)."""
    return {f"{name}.bank" if name else "bank": m for name, m in model.named_modules() if isinstance(m, RecurrentConvNet)}


def find_banks(model: nn.Module) -> dict[str, TemplateBank]:
    """Every ``TemplateBank`` inside ``model``, keyed by module path (``"bank"`` for a bare bank)."""
    return {name or "bank": module for name, module in model.named_modules() if isinstance(module, TemplateBank)}


def model_lsm(model: nn.Module) -> dict[str, np.ndarray]:
    """The LSM (float64 ``(L, L)``) of every bank in ``model``; a fixed-identity bank gives the identity."""
    return {name: layer_similarity(bank.coefficients.detach().double()).cpu().numpy() for name, bank in find_banks(model).items()}


# ---------------------------------------------------------------------------- loop regulariser
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
    owners = _bank_owners(model)
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
    """Signed cosines of every ``loop_pairs`` pair of every learned bank, concatenated."""
    banks, cosines = find_banks(model), []
    for name, pairs in loop_pairs(model).items():
        a = banks[name].coefficients  # (L, k)
        i, j = (torch.tensor(idx, device=a.device) for idx in zip(*pairs))
        ai, aj = a[i], a[j]  # (pairs, k)
        cosines.append((ai * aj).sum(1) / (ai.norm(dim=1) * aj.norm(dim=1)).clamp_min(_EPS))
    return torch.cat(cosines) if cosines else None


def loop_penalty(model: nn.Module) -> torch.Tensor:
    """The loop-inducing regulariser: ``mean over pairs (i, j) of 1 - cos^2(a_i, a_j)``.

    The pairs are those of ``loop_pairs`` (same-role layers one step apart) over every learned
    bank of ``model``. Why this form:

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
    cos = _pair_cosines(model)
    if cos is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        return torch.zeros((), device=device)
    return (1.0 - cos.square()).mean()


def loop_similarity(model: nn.Module) -> float:
    """Mean |cos| over the ``loop_pairs`` of ``model`` (1: every pair parallel; NaN: no pairs)."""
    with torch.no_grad():
        cos = _pair_cosines(model)
    return float("nan") if cos is None else float(cos.abs().mean())


# ---------------------------------------------------------------------------- folding
class FoldedNet(IteratedBlockNet):
    """A ``RecurrentConvNet`` rewritten with explicit loops: a few distinct weights and a scale each.

    Position p (= iteration p) runs its block conv c with ``block_scales[p, c] *
    block_weights[block_index[p, c]]`` and its recall conv with ``recall_scales[p] *
    recall_weights[recall_index[p]]``. A conv is linear, so scaling its weight equals scaling its
    output (and is cheaper: a ``(w, w, 3, 3)`` tensor instead of an ``(N, w, *S)`` one). Iteration
    t runs position min(t, positions - 1): iterations past the trained depth are spent in the
    last loop with its last scales, just as the original reuses its last position.

    The projection and head are copies of the original's modules. The interface is the one the
    evaluator and the trainer use: ``forward``, ``iter_logits``, ``run``, ``initial_state``,
    ``head``, ``check_iters``, ``iteration_limit``, ``name``, ``spec``.
    """

    def __init__(
        self,
        spec: TaskSpec,
        name: str,
        projection: nn.Module,
        head: nn.Module,
        block_weights: torch.Tensor,
        block_index: torch.Tensor,
        block_scales: torch.Tensor,
        recall_weights: torch.Tensor | None = None,
        recall_index: torch.Tensor | None = None,
        recall_scales: torch.Tensor | None = None,
        iteration_limit: int | None = None,
    ):
        super().__init__(spec, name)
        positions = len(block_index)
        if block_index.shape != (positions, CONVS_PER_BLOCK) or block_scales.shape != block_index.shape:
            raise ValueError(f"block_index and block_scales must both be (positions, {CONVS_PER_BLOCK}), "
                             f"got {tuple(block_index.shape)} and {tuple(block_scales.shape)}.")
        if (recall_weights is None) != (recall_index is None) or (recall_index is None) != (recall_scales is None):
            raise ValueError("recall_weights, recall_index and recall_scales must be given together or not at all.")
        self.depth, self._iteration_limit = positions, iteration_limit
        self.projection, self.head = projection, head
        self.block_weights = nn.Parameter(block_weights)  # (G, w, w, *kernel): the distinct block weights
        self.block_scales = nn.Parameter(block_scales)  # (positions, 4)
        self.register_buffer("block_index", block_index.long())  # (positions, 4) into block_weights
        if recall_weights is None:
            self.recall_weights = self.recall_scales = self.recall_index = None
        else:
            self.recall_weights = nn.Parameter(recall_weights)  # (R, w, w + C, *kernel)
            self.recall_scales = nn.Parameter(recall_scales)  # (positions,)
            self.register_buffer("recall_index", recall_index.long())  # (positions,) into recall_weights

    @property
    def iteration_limit(self) -> int | None:
        """The most iterations this network has weights for (``None``: its last loop runs on)."""
        return self._iteration_limit

    def position_weights(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Every position's scaled weights: block ``(P, 4, w, w, *k)``, recall ``(P, w, w + C, *k)`` or None."""
        def scaled(weights: torch.Tensor, index: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
            return scales.reshape(*scales.shape, *(1,) * (weights.dim() - 1)) * weights[index]

        block = scaled(self.block_weights, self.block_index, self.block_scales)
        recall = None if self.recall_weights is None else scaled(self.recall_weights, self.recall_index, self.recall_scales)
        return block, recall


@dataclass
class FoldReport:
    """What ``fold`` did; ``to_dict()`` is JSON-ready.

    ``loops``: one dict per loop, in order: ``positions`` (the block positions, i.e. the trained
    iterations, it covers), ``block_weights`` (per slot, the index of the distinct weight the
    loop uses), ``block_scales`` (per position, per slot), ``recall_weights`` (per position, the
    index of its recall weight) and ``recall_scales``. ``max_relative_error``: the largest
    ``||W - s W_rep|| / ||W||`` over every folded conv (0 up to rounding when rows are parallel).
    Parameter counts are of the modules themselves (shared tensors once, scales included).
    """

    threshold: float
    positions: int
    loops: list[dict] = field(default_factory=list)
    block_weights_before: int = 0
    block_weights_after: int = 0
    recall_weights_before: int = 0
    recall_weights_after: int = 0
    parameters_before: int = 0
    parameters_after: int = 0
    extendable: bool = False
    max_relative_error: float = 0.0

    @property
    def num_loops(self) -> int:
        return len(self.loops)

    @property
    def merged(self) -> bool:
        """Whether any two convs now share a weight (if not, the fold computes the original)."""
        return (self.block_weights_after, self.recall_weights_after) != (self.block_weights_before, self.recall_weights_before)

    def to_dict(self) -> dict[str, Any]:
        return dict(asdict(self), num_loops=self.num_loops, merged=self.merged)


def _cluster(vectors: torch.Tensor, order: list[int], threshold: float, reps: list[int] | None = None) -> list[int]:
    """Greedy grouping of rows of ``vectors`` (float64 ``(n, d)``) by |cos| >= threshold.

    Visits ``order``; each row joins the first group whose representative (its first member) it
    is parallel to, else starts a group. ``reps`` (the representatives so far) is extended in
    place. Returns the group index of each visited row. Comparing with the representative, not
    with the last member, keeps every member within acos(threshold) of it: no drift along a chain.
    """
    reps = [] if reps is None else reps
    lsm = layer_similarity(vectors)
    groups = []
    for i in order:
        group = next((g for g, r in enumerate(reps) if lsm[i, r] >= threshold - _ROUNDING), None)
        if group is None:
            reps.append(i)
            group = len(reps) - 1
        groups.append(group)
    return groups


def _scale(v: torch.Tensor, rep: torch.Tensor) -> float:
    """s with v = s * rep when they are parallel: <v, rep> / ||rep||^2 (0 for a zero rep)."""
    norm2 = float(rep.square().sum())
    return 0.0 if norm2 <= _EPS else float((v * rep).sum()) / norm2


@torch.no_grad()
def fold(model: RecurrentConvNet, threshold: float = 0.99) -> tuple[FoldedNet, FoldReport]:
    """Fold a trained ``RecurrentConvNet`` into a ``FoldedNet`` with explicit loops.

    Loops. Consecutive positions p, p+1, ... form one loop when every one of them is parallel
    to the loop's first position slot by slot: ``LSM[4q + c, 4p + c] >= threshold`` for all 4
    slots c. The loop keeps one weight per slot, the mixed weight of its first position, and
    each position's conv becomes ``s * W_rep`` with ``s = <a, a_rep> / ||a_rep||^2``: exact when
    the rows are parallel (any sign: the scale multiplies a conv, before its ReLU).

    Within a loop. Slots of the loop's first position that are parallel to each other (or to a
    weight an earlier loop kept) share one distinct weight as well: e.g. the depth-1 ``shared``
    model whose LSM shows 3 of its 4 convs to be the same layer keeps 2 distinct weights.

    Recall convs. They are not in the bank and every position has its own, independently
    initialised one, so their weights almost never line up; requiring them to be parallel would
    forbid every loop. Loops are therefore decided by the bank alone, and recall convs are kept
    per position, except that recall weights parallel to an earlier one (|cos| of the flattened
    weights >= threshold) are shared with a scale, by the same rule. Folding is thus exact when
    the bank rows are exactly parallel, whatever the recall convs are.

    Extra iterations. Iteration t runs position min(t, depth - 1), as in the original, so
    iterations past the trained depth are spent in the last loop, with its last scales and last
    recall conv: with exactly parallel rows the folded network equals the original at every
    iteration count. It can run on (``iteration_limit`` None) when the original could or when its
    last loop spans at least two positions.

    Returns ``(folded, report)``; the folded network lives on the model's device and dtype.
    """
    if not isinstance(model, RecurrentConvNet):
        raise TypeError(f"fold needs a benchmark.model.RecurrentConvNet, got {type(model).__name__}.")
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"the fold threshold must lie in (0, 1], got {threshold}.")
    depth, slots = model.depth, CONVS_PER_BLOCK
    coefficients = model.bank.coefficients.detach().double()  # (4D, k)
    lsm = layer_similarity(coefficients)
    mixed = model.bank.weights().detach()  # (4D, w, w, *kernel)

    # Loops: maximal runs of positions parallel, slot by slot, to the run's first position.
    loops, start = [], 0
    while start < depth:
        end = start + 1
        while end < depth and all(lsm[slots * end + c, slots * start + c] >= threshold - _ROUNDING for c in range(slots)):
            end += 1
        loops.append(list(range(start, end)))
        start = end

    # Distinct block weights: the loops' first positions, slot by slot, grouped by parallelism.
    reps: list[int] = []  # bank layer of each distinct weight
    block_index = torch.zeros(depth, slots, dtype=torch.long)
    block_scales = torch.ones(depth, slots, dtype=torch.float64)
    errors = [0.0]
    for positions in loops:
        first = [slots * positions[0] + c for c in range(slots)]
        groups = _cluster(coefficients, first, threshold, reps)
        for p in positions:
            for c, g in enumerate(groups):
                layer, rep = slots * p + c, reps[g]
                block_index[p, c] = g
                block_scales[p, c] = _scale(coefficients[layer], coefficients[rep]) if layer != rep else 1.0
                errors.append(_relative_error(mixed[layer], float(block_scales[p, c]), mixed[rep]))
    block_weights = mixed[reps].clone()  # (G, w, w, *kernel)

    recall = None
    if model.recall_convs is not None:
        recall_stack = torch.stack([conv.weight.detach() for conv in model.recall_convs])  # (D, w, w + C, *kernel)
        flat = recall_stack.flatten(1).double()  # (D, w * (w + C) * kernel)
        recall_reps: list[int] = []
        groups = _cluster(flat, list(range(depth)), threshold, recall_reps)
        recall_index = torch.tensor(groups, dtype=torch.long)
        recall_scales = torch.tensor([1.0 if p == recall_reps[g] else _scale(flat[p], flat[recall_reps[g]])
                                      for p, g in enumerate(groups)], dtype=torch.float64)
        errors += [_relative_error(recall_stack[p], float(recall_scales[p]), recall_stack[recall_reps[g]]) for p, g in enumerate(groups)]
        recall = (recall_stack[recall_reps].clone(), recall_index, recall_scales)

    extendable = model.iteration_limit is None or len(loops[-1]) > 1
    dtype, device = mixed.dtype, mixed.device
    folded = FoldedNet(
        model.spec, f"{model.name}-folded", copy.deepcopy(model.projection), copy.deepcopy(model.head),
        block_weights, block_index.to(device), block_scales.to(device, dtype),
        *((recall[0], recall[1].to(device), recall[2].to(device, dtype)) if recall else (None, None, None)),
        iteration_limit=None if extendable else depth,
    )
    folded.train(model.training)
    report = FoldReport(
        threshold=threshold, positions=depth,
        loops=[dict(
            positions=positions,
            block_weights=block_index[positions[0]].tolist(),
            block_scales=[block_scales[p].tolist() for p in positions],
            recall_weights=[int(recall[1][p]) for p in positions] if recall else [],
            recall_scales=[float(recall[2][p]) for p in positions] if recall else [],
        ) for positions in loops],
        block_weights_before=model.bank.num_layers, block_weights_after=len(reps),
        recall_weights_before=depth if recall else 0, recall_weights_after=len(recall[0]) if recall else 0,
        parameters_before=sum(p.numel() for p in model.parameters()),
        parameters_after=sum(p.numel() for p in folded.parameters()),
        extendable=extendable, max_relative_error=max(errors),
    )
    return folded, report


def _relative_error(weight: torch.Tensor, scale: float, rep: torch.Tensor) -> float:
    """``||weight - scale * rep|| / ||weight||`` (0 for a zero weight folded onto anything zero)."""
    norm = float(weight.double().norm())
    return float((weight.double() - scale * rep.double()).norm()) / max(norm, _EPS)


# ---------------------------------------------------------------------------- one run's analysis
def lsm_record(model: nn.Module) -> dict[str, dict]:
    """The content of ``lsm.json``: per bank, its LSM, its coefficients and how to read them."""
    record, owners = {}, _bank_owners(model)
    for name, bank in find_banks(model).items():
        coefficients = bank.coefficients.detach().double()
        record[name] = dict(
            lsm=layer_similarity(coefficients).cpu().tolist(),
            coefficients=coefficients.cpu().tolist(),
            learned=bank.learns_coefficients,
            layers_per_position=CONVS_PER_BLOCK if name in owners else None,
        )
    return record


def _compare(before: dict, after: dict) -> dict[str, dict]:
    """Per test size: accuracy at the training depth and at the best iteration, before and after."""
    keys = ("at_train_depth", "best", "best_iter")
    out = {}
    for size, b in before["summary"].items():
        a = after["summary"].get(size)
        if a is None:
            continue
        out[size] = dict(before={k: b[k] for k in keys}, after={k: a[k] for k in keys},
                         delta_at_train_depth=a["at_train_depth"] - b["at_train_depth"], delta_best=a["best"] - b["best"])
    return out


def analyse_run(
    model: nn.Module,
    task: Task,
    test_sets: dict[int, torch.utils.data.TensorDataset],
    eval_iters: int,
    train_iters: int,
    batch_size: int,
    device: torch.device,
    threshold: float,
    run_dir: str | Path,
    before: dict | None = None,
) -> dict:
    """Write ``lsm.json`` and, when the model learned its coefficients, fold it and write ``fold.json``.

    ``lsm.json``: ``{bank: {"lsm", "coefficients", "learned", "layers_per_position"}}``.
    ``fold.json``: the folded model's ``evaluate`` result (``iterations``, ``train_iters``,
    ``accuracy``, ``summary``: the format of ``eval.json``, on the same test sets and up to the
    same ``eval_iters``, so its loops run past the training depth) plus ``model``, ``report``
    (``FoldReport.to_dict()``) and ``comparison`` (per size, accuracy before/after at the training
    depth and at the best iteration). ``before`` is the original model's ``evaluate`` result;
    if omitted it is computed here.

    Returns ``{"lsm": ..., "fold": ... or None}``.
    """
    run_dir = Path(run_dir)
    lsm = lsm_record(model)
    (run_dir / "lsm.json").write_text(json.dumps(lsm))
    result: dict[str, Any] = dict(lsm=lsm, fold=None)
    if not isinstance(model, RecurrentConvNet) or not model.bank.learns_coefficients:
        return result
    folded, report = fold(model, threshold)
    folded.to(device)
    if before is None:
        before = evaluate(model, task, test_sets, eval_iters, train_iters, batch_size, device)
    if not report.merged and model.iteration_limit == folded.iteration_limit:
        # Every weight kept its own tensor with scale 1: the folded network computes exactly what
        # the original does, so its accuracy is the original's and need not be measured again.
        after = {k: before[k] for k in ("iterations", "train_iters", "accuracy", "summary")}
    else:
        after = evaluate(folded, task, test_sets, eval_iters, train_iters, batch_size, device)
    result["fold"] = dict(after, model=folded.name, report=report.to_dict(), comparison=_compare(before, after))
    (run_dir / "fold.json").write_text(json.dumps(result["fold"], indent=1))
    return result


__all__ = ["FoldReport", "FoldedNet", "analyse_run", "find_banks", "fold", "layer_similarity", "lsm_record", "loop_pairs",
           "loop_penalty", "loop_similarity", "model_lsm"]
