"""The feed-forward baseline: the shared network's code with an unshared block at every depth."""

from __future__ import annotations

from benchmark.models.contract import register_model
from benchmark.models.recurrent import RecurrentConvNet
from tasks.base import TaskSpec


@register_model("feedforward")
class FeedForwardNet(RecurrentConvNet):
    """``depth`` residual blocks, each with its own weights (recall included).

    It is ``RecurrentConvNet`` with ``templates=None`` and depth > 1: the same layers in the same
    order, so the comparison with the shared and recurrent models isolates weight sharing. It
    has no weights for iterations past ``depth``; the evaluator scores it up to its depth.
    ``recall_init`` and ``block_scale`` are the shared models' initialisation options (see
    ``RecurrentConvNet``), so a recipe offered to them is offered to this baseline too.
    """

    def __init__(self, spec: TaskSpec, name: str = "feedforward", width: int = 32, depth: int = 20, recall: bool = True,
                 recall_init: str = "default", block_scale: float | None = None):
        super().__init__(spec, name=name, width=width, depth=depth, templates=None, recall=recall, recall_init=recall_init,
                         block_scale=block_scale)

    # The baseline of the depth-wise models: "unshared" at every depth (as the study has always counted it).
    kind = property(lambda self: "unshared", doc='"unshared": every position its own weights.')

    @classmethod
    def config_kind(cls, node) -> str:
        return "unshared"
