"""Folding: a trained ``RecurrentConvNet`` rewritten with explicit loops and fewer distinct weights.

Bank layers whose coefficient rows are parallel (layer similarity, ``benchmark.analysis.similarity``,
close to 1) mix the same weight up to a scalar, so each can be replaced by ``s * W_rep``: one
shared weight and a scale. ``fold`` finds the loops (runs of positions parallel slot by slot),
keeps one weight per distinct direction, shares parallel recall convs the same way, and builds a
``FoldedNet`` that the evaluator and the trainer use like the original (Savarese & Maire, ICLR
2019, Sec. 3: trained shared networks convert into networks with real loops).

Layout of a ``RecurrentConvNet``'s bank: position p holds the layers 4p .. 4p+3, its *slots*
c = 0..3; iteration t runs position min(t, depth - 1).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from benchmark.models.bank import ROUNDING, greedy_groups
from benchmark.models.contract import FoldableModel
from benchmark.models.recurrent import CONVS_PER_BLOCK, IteratedBlockNet
from benchmark.infra.results import FoldedLoop, FoldReport
from benchmark.analysis.similarity import EPS, layer_similarity
from tasks.base import TaskSpec



class FoldedNet(IteratedBlockNet):
    """A ``RecurrentConvNet`` rewritten with explicit loops: a few distinct weights and a scale each.

    Position p (= iteration p) runs its block conv c with ``block_scales[p, c] *
    block_weights[block_index[p, c]]`` and its recall conv with ``recall_scales[p] *
    recall_weights[recall_index[p]]``. A conv is linear, so scaling its weight equals scaling its
    output (and is cheaper: a ``(w, w, 3, 3)`` tensor instead of an ``(N, w, *S)`` one). Iteration
    t runs position min(t, positions - 1): iterations past the trained depth are spent in the
    last loop with its last scales, just as the original reuses its last position.

    The projection and head are copies of the original's modules. It satisfies
    ``benchmark.models.contract.IterativeModel``, the interface the evaluator and the trainer use;
    its kind is "recurrent" (each loop one block reused). It is built by ``fold``, never
    registered: a checkpoint cannot name it.
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

    kind = property(lambda self: "recurrent", doc='"recurrent": every loop is one block reused.')

    @classmethod
    def config_kind(cls, node) -> str:
        return "recurrent"

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
class SharedWeights:
    """Convs rewritten as ``scales[i] * weights[index[i]]``: a few distinct weights and a scale per conv.

    ``index`` and ``scales`` (float64) have one entry per conv: ``(positions, 4)`` for the block
    convs, ``(positions,)`` for the recall convs. ``max_error``: the largest relative error
    ``||W - s W_rep|| / ||W||`` of the rewrite.
    """

    weights: torch.Tensor  # (G, *conv shape)
    index: torch.Tensor
    scales: torch.Tensor
    max_error: float


def _cluster(vectors: torch.Tensor, order: list[int], threshold: float, reps: list[int] | None = None) -> list[int]:
    """Greedy grouping of rows of ``vectors`` (float64 ``(n, d)``) by |cos| >= threshold (``greedy_groups``)."""
    return greedy_groups(layer_similarity(vectors), order, threshold, reps)


def _scale(v: torch.Tensor, rep: torch.Tensor) -> float:
    """s with v = s * rep when they are parallel: <v, rep> / ||rep||^2 (0 for a zero rep)."""
    norm2 = float(rep.square().sum())
    return 0.0 if norm2 <= EPS else float((v * rep).sum()) / norm2


def _relative_error(weight: torch.Tensor, scale: float, rep: torch.Tensor) -> float:
    """``||weight - scale * rep|| / ||weight||`` (0 for a zero weight folded onto anything zero)."""
    norm = float(weight.double().norm())
    return float((weight.double() - scale * rep.double()).norm()) / max(norm, EPS)


def find_loops(lsm: torch.Tensor, depth: int, threshold: float) -> list[list[int]]:
    """The loops of a bank's LSM ``(4D, 4D)``: maximal runs of consecutive positions whose every
    slot c is parallel to slot c of the run's first position (``LSM[4q + c, 4p + c] >= threshold``)."""
    slots = CONVS_PER_BLOCK
    loops, start = [], 0
    while start < depth:
        end = start + 1
        while end < depth and all(lsm[slots * end + c, slots * start + c] >= threshold - ROUNDING for c in range(slots)):
            end += 1
        loops.append(list(range(start, end)))
        start = end
    return loops


def share_block_weights(coefficients: torch.Tensor, mixed: torch.Tensor, loops: list[list[int]], threshold: float) -> SharedWeights:
    """One weight per distinct direction among the loops' first positions, and a scale per conv.

    ``coefficients``: the bank's rows, float64 ``(4D, k)``; ``mixed``: its weights ``(4D, w, w,
    *kernel)``. A loop keeps the mixed weights of its first position; slots of that position
    parallel to each other (or to a weight an earlier loop kept) share one weight. Every
    position's conv becomes ``s * W_rep`` with ``s = <a, a_rep> / ||a_rep||^2``: exact when the
    rows are parallel, whatever the sign (the scale multiplies a conv, before its ReLU).
    """
    depth, slots = len(coefficients) // CONVS_PER_BLOCK, CONVS_PER_BLOCK
    reps: list[int] = []  # the bank layer of each distinct weight
    index = torch.zeros(depth, slots, dtype=torch.long)
    scales = torch.ones(depth, slots, dtype=torch.float64)
    errors = [0.0]
    for positions in loops:
        first = [slots * positions[0] + c for c in range(slots)]
        groups = _cluster(coefficients, first, threshold, reps)
        for p in positions:
            for c, g in enumerate(groups):
                layer, rep = slots * p + c, reps[g]
                index[p, c] = g
                scales[p, c] = _scale(coefficients[layer], coefficients[rep]) if layer != rep else 1.0
                errors.append(_relative_error(mixed[layer], float(scales[p, c]), mixed[rep]))
    return SharedWeights(mixed[reps].clone(), index, scales, max(errors))


def share_recall_weights(recall: torch.Tensor, threshold: float) -> SharedWeights:
    """Recall weights ``(D, w, w + C, *kernel)`` parallel (|cos| of the flattened weights >=
    ``threshold``) to an earlier position's share it with a scale; the others keep their own."""
    flat = recall.flatten(1).double()  # (D, w * (w + C) * kernel)
    reps: list[int] = []
    groups = _cluster(flat, list(range(len(recall))), threshold, reps)
    scales = torch.tensor([1.0 if p == reps[g] else _scale(flat[p], flat[reps[g]]) for p, g in enumerate(groups)],
                          dtype=torch.float64)
    errors = [_relative_error(recall[p], float(scales[p]), recall[reps[g]]) for p, g in enumerate(groups)]
    return SharedWeights(recall[reps].clone(), torch.tensor(groups, dtype=torch.long), scales, max(errors, default=0.0))


def _build(model: FoldableModel, loops: list[list[int]], block: SharedWeights, recall: SharedWeights | None,
           threshold: float) -> tuple[FoldedNet, FoldReport]:
    """The ``FoldedNet`` (on the model's device and dtype) and the ``FoldReport`` of a fold."""
    depth = model.depth
    # It can run on when the original could, or when its last loop spans at least two positions.
    extendable = model.iteration_limit is None or len(loops[-1]) > 1
    dtype, device = block.weights.dtype, block.weights.device
    recall_args = (None, None, None) if recall is None else (recall.weights, recall.index.to(device), recall.scales.to(device, dtype))
    folded = FoldedNet(
        model.spec, f"{model.name}-folded", copy.deepcopy(model.projection), copy.deepcopy(model.head),
        block.weights, block.index.to(device), block.scales.to(device, dtype), *recall_args,
        iteration_limit=None if extendable else depth,
    )
    folded.train(model.training)
    folded.channels_last, folded.fuse_recall, folded.precision = model.channels_last, model.fuse_recall, model.precision
    report = FoldReport(
        threshold=threshold, positions=depth,
        loops=[FoldedLoop(
            positions=positions,
            block_weights=block.index[positions[0]].tolist(),
            block_scales=[block.scales[p].tolist() for p in positions],
            recall_weights=[int(recall.index[p]) for p in positions] if recall else [],
            recall_scales=[float(recall.scales[p]) for p in positions] if recall else [],
        ) for positions in loops],
        block_weights_before=model.bank.num_layers, block_weights_after=len(block.weights),
        recall_weights_before=depth if recall else 0, recall_weights_after=len(recall.weights) if recall else 0,
        parameters_before=sum(p.numel() for p in model.parameters()),
        parameters_after=sum(p.numel() for p in folded.parameters()),
        extendable=extendable, max_relative_error=max(block.max_error, recall.max_error if recall else 0.0),
    )
    return folded, report


@torch.no_grad()
def fold(model: FoldableModel, threshold: float = 0.99) -> tuple[FoldedNet, FoldReport]:
    """Fold a trained ``RecurrentConvNet`` into a ``FoldedNet`` with explicit loops.

    Loops (``find_loops``). Consecutive positions p, p+1, ... form one loop when every one of
    them is parallel to the loop's first position slot by slot.

    Within a loop (``share_block_weights``). The loop keeps one weight per slot, the mixed weight
    of its first position, and slots parallel to each other (or to a weight an earlier loop
    kept) share one distinct weight as well: e.g. the depth-1 ``shared`` model whose LSM shows 3
    of its 4 convs to be the same layer keeps 2 distinct weights.

    Recall convs (``share_recall_weights``). They are not in the bank and every position has its
    own, independently initialised one, so their weights almost never line up; requiring them to
    be parallel would forbid every loop. Loops are therefore decided by the bank alone, and
    recall convs are kept per position, except those parallel to an earlier one, shared with a
    scale by the same rule. Folding is thus exact when the bank rows are exactly parallel,
    whatever the recall convs are.

    Extra iterations. Iteration t runs position min(t, depth - 1), as in the original, so
    iterations past the trained depth are spent in the last loop, with its last scales and last
    recall conv: with exactly parallel rows the folded network equals the original at every
    iteration count. It can run on (``iteration_limit`` None) when the original could or when its
    last loop spans at least two positions.

    Returns ``(folded, report)``; the folded network lives on the model's device and dtype.
    """
    if not isinstance(model, FoldableModel):
        raise TypeError(f"fold needs a benchmark.models.contract.FoldableModel (the layout of "
                        f"benchmark.models.recurrent.RecurrentConvNet), got {type(model).__name__}.")
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"the fold threshold must lie in (0, 1], got {threshold}.")
    coefficients = model.bank.coefficients.detach().double()  # (4D, k)
    loops = find_loops(layer_similarity(coefficients), model.depth, threshold)
    block = share_block_weights(coefficients, model.bank.weights().detach(), loops, threshold)
    recall = None
    if model.recall_convs is not None:
        recall = share_recall_weights(torch.stack([conv.weight.detach() for conv in model.recall_convs]), threshold)
    return _build(model, loops, block, recall, threshold)


__all__ = ["FoldedNet", "SharedWeights", "find_loops", "fold", "share_block_weights", "share_recall_weights"]
