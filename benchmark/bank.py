"""The template bank: soft parameter sharing (Savarese & Maire, ICLR 2019).

Every layer's weight is a learned linear mix of a few shared templates,

    W_i = sum_j alpha[i, j] * T_j        T: (k, *shape) templates, alpha: (layers, k)

With k equal to the number of layers and alpha the identity, the layers are independent (an
ordinary unshared network); with k = 1 every layer is the same weight up to a scalar.
"""

from __future__ import annotations

import torch
from torch import nn


class TemplateBank(nn.Module):
    """``num_layers`` weights of one shape, mixed from ``num_templates`` shared templates.

    Args:
        num_layers: how many layers draw their weight from this bank (rows of ``coefficients``).
        num_templates: k, the number of templates.
        shape: the weight shape of one layer, e.g. ``(out, in, 3, 3)``.
        learn_coefficients: if False the coefficients are the fixed identity (requires
            k == num_layers), which makes every layer an ordinary, unshared weight; the same code
            then serves the unshared baselines.

    Templates are initialised each on its own with Kaiming normal (fan-in, ReLU gain); learned
    coefficients orthogonally, one row per layer, as in the paper. The coefficients carry no
    normalisation, no softmax and no bias. ``coefficients`` must be excluded from weight decay
    (see ``no_decay_parameters``): decaying them hurts.
    """

    def __init__(self, num_layers: int, num_templates: int, shape: tuple[int, ...], learn_coefficients: bool = True):
        super().__init__()
        if num_layers < 1 or num_templates < 1:
            raise ValueError(f"a template bank needs at least one layer and one template, got {num_layers} and {num_templates}.")
        self.num_layers, self.num_templates, self.shape = num_layers, num_templates, tuple(shape)
        self.templates = nn.Parameter(torch.empty(num_templates, *shape))  # (k, *shape)
        for template in self.templates.data:
            nn.init.kaiming_normal_(template, nonlinearity="relu")
        if learn_coefficients:
            self.coefficients = nn.Parameter(torch.empty(num_layers, num_templates))  # (L, k)
            nn.init.orthogonal_(self.coefficients)
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


def no_decay_parameters(module: nn.Module) -> set[str]:
    """Names of the parameters that weight decay must skip: every bank's coefficients."""
    return {name for name, _ in module.named_parameters() if name.endswith("coefficients")}
