"""An example model family from outside algoreason: a shared recurrent network whose block starts
as one residual block run twice.

``CoupledNet`` is ``RecurrentConvNet`` (the engine's iteration loop, template bank, folding) with
one change at initialisation: in every block position the coefficient rows of the second residual
block's two convs start equal to the first's, so the two residual blocks begin as the same layer
(the in-block loop the study's shared models may learn; training is free to separate them).

What makes it a model the engine can train, evaluate, fold and tabulate is the contract of
``benchmark.models.contract``: as a ``RecurrentConvNet`` it has the members of ``FoldableModel``
(and so of ``IterativeModel`` and ``Model``), and it declares its kind itself. What makes its
checkpoints loadable is the ``algoreason.models`` entry point in this package's pyproject.toml.
"""

from __future__ import annotations

import torch

from benchmark.models.recurrent import CONVS_PER_BLOCK, RecurrentConvNet
from tasks.base import TaskSpec


class CoupledNet(RecurrentConvNet):
    """``RecurrentConvNet`` with ``templates`` k >= 1 whose two residual blocks start coupled.

    Takes the arguments of ``benchmark.config.schema.ModelConfig`` (its config lists
    ``defaults: [schema]``), so every option of the shared models is checked the same way.
    """

    def __init__(self, spec: TaskSpec, name: str = "coupled", width: int = 32, depth: int = 1, templates: int | None = 2,
                 recall: bool = True, compile: bool = False, coefficient_init: str = "orthogonal"):
        if templates is None:
            raise ValueError("model.templates must be an integer >= 1 for a coupled network (it shares by construction).")
        super().__init__(spec, name=name, width=width, depth=depth, templates=templates, recall=recall, compile=compile,
                         coefficient_init=coefficient_init)
        with torch.no_grad():
            rows = self.bank.coefficients.view(depth, CONVS_PER_BLOCK, -1)  # (positions, 4 convs, k)
            rows[:, 2:] = rows[:, :2]  # convs 2, 3 (second residual block) = convs 0, 1 (first)

    @property
    def kind(self) -> str:
        """Declared: its convs are mixed from a bank with learned coefficients."""
        return "shared"

    @classmethod
    def config_kind(cls, node) -> str:
        return "shared"
