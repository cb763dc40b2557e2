"""Layer similarity: which layers of a template bank have become "the same layer".

    LSM[i, j] = |<a_i, a_j>| / (||a_i|| ||a_j||)        a_i: the coefficient row of bank layer i

Rows with LSM close to 1 mix the same weight up to a scalar (Savarese & Maire, ICLR 2019,
Sec. 3). A model may hold several banks (the shared Wide ResNets have one per stage): every
function here finds them all by module path.

Layout of a ``RecurrentConvNet``'s bank (see ``benchmark.models.recurrent``): position p holds the layers
4p .. 4p+3, its *slots* c = 0..3 (residual block b = c // 2, conv c % 2); iteration t runs
position min(t, depth - 1).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from benchmark.models.bank import TemplateBank
from benchmark.models.contract import FoldableModel
from benchmark.infra.results import BankSimilarity, SimilarityRecord

EPS = 1e-12  # guards the norm of an all-zero coefficient row


def layer_similarity(coefficients: torch.Tensor) -> torch.Tensor:
    """The layer similarity matrix ``(L, L)`` of a bank's coefficients ``(L, k)``.

    ``LSM[i, j] = |<a_i, a_j>| / (||a_i|| ||a_j||)``: symmetric, in [0, 1], blind to the sign and
    size of a row. A zero row (the zero weight) is similar to no other layer (0) but still to
    itself (the diagonal is 1). Differentiable, so it can be used inside a loss.
    """
    if coefficients.dim() != 2:
        raise ValueError(f"coefficients must be a 2-D (layers, templates) matrix, got shape {tuple(coefficients.shape)}.")
    unit = coefficients / coefficients.norm(dim=1, keepdim=True).clamp_min(EPS)  # (L, k)
    lsm = (unit @ unit.T).abs().clamp(max=1.0)  # (L, L); rounding can exceed 1 by an ulp
    eye = torch.eye(len(coefficients), dtype=torch.bool, device=coefficients.device)
    return torch.where(eye, torch.ones_like(lsm), lsm)


def find_banks(model: nn.Module) -> dict[str, TemplateBank]:
    """Every ``TemplateBank`` inside ``model``, keyed by module path (``"bank"`` for a bare bank)."""
    return {name or "bank": module for name, module in model.named_modules() if isinstance(module, TemplateBank)}


def bank_owners(model: nn.Module) -> dict[str, FoldableModel]:
    """The model with ``RecurrentConvNet``'s position layout (``benchmark.models.contract.FoldableModel``)
    each bank path of ``model`` belongs to."""
    return {f"{name}.bank" if name else "bank": m for name, m in model.named_modules() if isinstance(m, FoldableModel)}


def model_lsm(model: nn.Module) -> dict[str, np.ndarray]:
    """The LSM (float64 ``(L, L)``) of every bank in ``model``; a fixed-identity bank gives the identity."""
    return {name: layer_similarity(bank.coefficients.detach().double()).cpu().numpy() for name, bank in find_banks(model).items()}


def similarity_record(model: nn.Module) -> SimilarityRecord:
    """What a run writes to ``lsm.json``: per bank, its LSM, its coefficients and how to read them."""
    banks = {}
    for name, bank in find_banks(model).items():
        coefficients = bank.coefficients.detach().double()
        banks[name] = BankSimilarity(
            lsm=layer_similarity(coefficients).cpu().tolist(),
            coefficients=coefficients.cpu().tolist(),
            learned=bank.learns_coefficients,
            layers_per_position=bank.layers_per_block,
        )
    return SimilarityRecord(banks)


__all__ = ["EPS", "bank_owners", "find_banks", "layer_similarity", "model_lsm", "similarity_record"]
