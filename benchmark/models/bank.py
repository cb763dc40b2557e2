"""The template bank: soft parameter sharing (Savarese & Maire, ICLR 2019).

Every layer's weight is a learned linear mix of a few shared templates,

    W_i = sum_j alpha[i, j] * T_j        T: (k, *shape) templates, alpha: (layers, k)

With k equal to the number of layers and alpha the identity, the layers are independent (an
ordinary unshared network); with k = 1 every layer is the same weight up to a scalar.

``fold_bank`` rewrites a trained bank whose rows are (nearly) parallel as a ``FoldedBank``: one
weight per group of parallel layers and a scale per layer.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import nn

from benchmark.infra.results import BankFold  # the report of a fold: a result that others read and write

# How learned coefficients start (``TemplateBank(coefficient_init=...)``):
# - "orthogonal": the paper's init, an orthogonal (L, k) matrix. With L > k its k columns are
#   orthonormal, so the squared row norms sum to k and average k / L: an 80 x 2 bank's rows have
#   norm about sqrt(2 / 80) = 0.16, and every mixed weight starts about 6x smaller (in std) than
#   one Kaiming template. The paper's Wide ResNets hide this behind a batch norm after every
#   conv; the networks here have no normalisation.
# - "orthogonal_unit": the same orthogonal directions, the whole matrix scaled so that the rows
#   have unit norm on average (mean squared norm 1). Each mixed weight W_i = sum_j a_ij T_j of
#   independent Kaiming templates then has on average the variance of one Kaiming template,
#   the scale an unshared layer starts at. For L <= k the rows are already orthonormal.
COEFFICIENT_INITS = ("orthogonal", "orthogonal_unit")


class TemplateBank(nn.Module):
    """``num_layers`` weights of one shape, mixed from ``num_templates`` shared templates.

    Args:
        num_layers: how many layers draw their weight from this bank (rows of ``coefficients``).
        num_templates: k, the number of templates.
        shape: the weight shape of one layer, e.g. ``(out, in, 3, 3)``.
        learn_coefficients: if False the coefficients are the fixed identity (requires
            k == num_layers), which makes every layer an ordinary, unshared weight; the same code
            then serves the unshared baselines.
        layers_per_block: how many consecutive layers make one block of the owning network (4 per
            position of a ``RecurrentConvNet``, 2 per block of a Wide ResNet stage); only read
            by the layer-similarity record and its heatmap, to draw the block boundaries.
        coefficient_init: how learned coefficients start, one of ``COEFFICIENT_INITS``:
            "orthogonal" (the paper's) or "orthogonal_unit" (the same directions, rows of unit
            norm on average; see ``COEFFICIENT_INITS``).

    Templates are initialised each on its own with Kaiming normal (fan-in, ReLU gain); learned
    coefficients orthogonally, one row per layer, as in the paper (``coefficient_init``
    "orthogonal"), or scaled to unit rows ("orthogonal_unit"). The coefficients carry no
    normalisation, no softmax and no bias. ``coefficients`` must be excluded from weight decay
    (see ``no_decay_parameters``): decaying them hurts.
    """

    def __init__(self, num_layers: int, num_templates: int, shape: tuple[int, ...], learn_coefficients: bool = True,
                 layers_per_block: int | None = None, coefficient_init: str = "orthogonal"):
        super().__init__()
        if num_layers < 1 or num_templates < 1:
            raise ValueError(f"a template bank needs at least one layer and one template, got {num_layers} and {num_templates}.")
        if coefficient_init not in COEFFICIENT_INITS:
            raise ValueError(f"coefficient_init must be one of {', '.join(COEFFICIENT_INITS)}, got {coefficient_init!r}.")
        self.num_layers, self.num_templates, self.shape = num_layers, num_templates, tuple(shape)
        self.layers_per_block = layers_per_block
        self.templates = nn.Parameter(torch.empty(num_templates, *shape))  # (k, *shape)
        for template in self.templates.data:
            nn.init.kaiming_normal_(template, nonlinearity="relu")
        if learn_coefficients:
            self.coefficients = nn.Parameter(torch.empty(num_layers, num_templates))  # (L, k)
            nn.init.orthogonal_(self.coefficients)
            if coefficient_init == "orthogonal_unit":
                with torch.no_grad():  # squared entries sum to min(L, k): mean squared row norm -> 1
                    self.coefficients.mul_((num_layers / min(num_layers, num_templates)) ** 0.5)
        else:
            if num_templates != num_layers:
                raise ValueError(f"fixed identity coefficients need as many templates as layers, got {num_templates} for {num_layers}.")
            self.register_buffer("coefficients", torch.eye(num_layers))

    @property
    def learns_coefficients(self) -> bool:
        return isinstance(self.coefficients, nn.Parameter)

    def weights(self) -> torch.Tensor:
        """All layers' weights ``(L, *shape)`` in one batched contraction."""
        return torch.einsum("lk,k...->l...", self.coefficients, self.templates)

    def extra_repr(self) -> str:
        return f"layers={self.num_layers}, templates={self.num_templates}, shape={self.shape}, learned={self.learns_coefficients}"


class FoldedBank(nn.Module):
    """A bank rewritten as a few distinct weights, an index and a scale per layer.

    Layer i's weight is ``scales[i] * distinct[index[i]]``. It has ``TemplateBank``'s
    ``weights()`` interface, so it replaces a bank inside a model unchanged (see ``fold_bank``).
    A conv is linear in its weight, so a scaled weight is the same layer up to that scale.
    """

    def __init__(self, distinct: torch.Tensor, index: torch.Tensor, scales: torch.Tensor):
        super().__init__()
        if index.dim() != 1 or scales.shape != index.shape:
            raise ValueError(f"index and scales must both be (layers,), got {tuple(index.shape)} and {tuple(scales.shape)}.")
        self.num_layers, self.shape = len(index), tuple(distinct.shape[1:])
        self.distinct = nn.Parameter(distinct)  # (G, *shape): one weight per group of parallel layers
        self.scales = nn.Parameter(scales)  # (L,)
        self.register_buffer("index", index.long())  # (L,) into distinct

    def weights(self) -> torch.Tensor:
        """All layers' weights ``(L, *shape)``: each its group's weight times its scale."""
        return self.scales.reshape(-1, *(1,) * len(self.shape)) * self.distinct[self.index]

    def extra_repr(self) -> str:
        return f"layers={self.num_layers}, distinct={len(self.distinct)}, shape={self.shape}"


ROUNDING = 1e-6  # |cos| of exactly parallel rows may round to just below 1


def greedy_groups(lsm: torch.Tensor, order: Iterable[int], threshold: float, reps: list[int] | None = None) -> list[int]:
    """Greedy grouping by a similarity matrix ``lsm`` (|cos| between rows): the one rule that
    folding a bank and folding a network's loops share.

    Visits ``order``; each row joins the first group whose representative (its first member) it
    is parallel to (``lsm >= threshold``), else starts a group. ``reps`` (the representatives so
    far) is extended in place. Returns the group index of each visited row. Comparing with the
    representative, not the last member, keeps every member within acos(threshold) of it: no
    drift along a chain.
    """
    reps = [] if reps is None else reps
    groups = []
    for i in order:
        group = next((g for g, r in enumerate(reps) if lsm[i, r] >= threshold - ROUNDING), None)
        if group is None:
            reps.append(i)
            group = len(reps) - 1
        groups.append(group)
    return groups


@torch.no_grad()
def fold_bank(bank: TemplateBank, threshold: float = 0.99) -> tuple[FoldedBank, BankFold]:
    """Group the layers of ``bank`` whose coefficient rows are parallel; keep one weight per group.

    Greedy, in layer order (``greedy_groups``). Member i becomes ``s_i * W_rep`` with ``s_i = <a_i, a_rep> / ||a_rep||^2``, exact when the
    rows are parallel (either sign). Returns the ``FoldedBank`` (on the bank's device and dtype)
    and its ``BankFold`` report.
    """
    from benchmark.analysis.similarity import layer_similarity  # imported here: benchmark.analysis.similarity imports this module (via model)

    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"the fold threshold must lie in (0, 1], got {threshold}.")
    a = bank.coefficients.detach().double()  # (L, k)
    lsm = layer_similarity(a)
    reps: list[int] = []
    index = greedy_groups(lsm, range(len(a)), threshold, reps)
    rep_rows = a[[reps[g] for g in index]]  # (L, k): each layer's representative row
    scales = (a * rep_rows).sum(1) / rep_rows.square().sum(1).clamp_min(1e-300)  # (L,)
    mixed = bank.weights().detach()  # (L, *shape)
    index_t = torch.tensor(index, device=mixed.device)
    folded = FoldedBank(mixed[reps].clone(), index_t, scales.to(mixed))
    rebuilt = folded.weights().double().flatten(1)
    errors = (mixed.double().flatten(1) - rebuilt).norm(dim=1) / mixed.double().flatten(1).norm(dim=1).clamp_min(1e-300)
    report = BankFold(
        threshold=threshold, layers=len(a), distinct=len(reps), index=index, scales=scales.tolist(),
        parameters_before=sum(p.numel() for p in bank.parameters()),
        parameters_after=sum(p.numel() for p in folded.parameters()),
        max_relative_error=float(errors.max()),
    )
    return folded, report


@torch.no_grad()
def fold_model_banks(model: nn.Module, threshold: float = 0.99) -> tuple[nn.Module, dict[str, BankFold]]:
    """A copy of ``model`` with every learned ``TemplateBank`` replaced by its ``fold_bank`` result.

    For models that use their banks only through ``weights()`` (``benchmark.models.wide_resnet``).
    Fixed-identity banks (unshared layers) are left as they are. Returns ``(folded, {bank path:
    BankFold})``; ``model`` itself is untouched.
    """
    folded = copy.deepcopy(model)
    reports = {}
    for name, module in list(folded.named_modules()):
        if name and isinstance(module, TemplateBank) and module.learns_coefficients:
            parent_name, _, attribute = name.rpartition(".")
            replacement, reports[name] = fold_bank(module, threshold)
            setattr(folded.get_submodule(parent_name), attribute, replacement)
    return folded, reports


def no_decay_parameters(module: nn.Module) -> set[str]:
    """Names of the parameters that weight decay must skip: every bank's coefficients."""
    return {name for name, _ in module.named_parameters() if name.endswith("coefficients")}
