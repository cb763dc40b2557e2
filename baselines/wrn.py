"""The unshared Wide ResNet baseline: the shared network's code with every convolution its own weight."""

from __future__ import annotations

from benchmark.models.contract import register_model
from benchmark.models.wide_resnet import WideResNet
from tasks.base import TaskSpec


@register_model("wrn")
class UnsharedWideResNet(WideResNet):
    """WRN-``depth``-``widen``: ``WideResNet`` with ``templates=None``.

    The same layers in the same order as the shared SWRN of that depth and width, so the
    comparison isolates weight sharing. WRN-28-10 has 36,479,194 parameters with 10 classes.
    """

    def __init__(self, spec: TaskSpec, name: str = "wrn", depth: int = 28, widen: int = 10, dropout: float = 0.0):
        super().__init__(spec, name=name, depth=depth, widen=widen, templates=None, dropout=dropout)

    @classmethod
    def config_kind(cls, node) -> str:
        return "unshared"  # its config has no templates key: every conv its own weight
