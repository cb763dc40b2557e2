"""One pre-activation Wide ResNet for image classification, shared (SWRN-d-w-k) or unshared (WRN-d-w).

Layout (Zagoruyko & Komodakis; the shared variant as in Savarese & Maire, ICLR 2019):

    x (N, C, H, W)
      -> stem: conv3x3 C -> 16                                       (N, 16, H, W)
      -> 3 stages of n = (depth - 4) / 6 pre-activation basic blocks, widths 16w, 32w, 64w,
         strides 1, 2, 2:
           block: o = ReLU(BN(x)); y = conv3x3(o, stride); y = conv3x3(dropout(ReLU(BN(y))))
                  out = y + (conv1x1(o, stride) if width or stride changes else x)
      -> ReLU(BN), global average pool, linear                       logits (N, classes)

Sharing: the first block of every stage (the one that changes width or stride, with its 1x1
shortcut) is ordinary. The other n - 1 blocks of a stage take both their convolutions from the
stage's ``TemplateBank`` (2(n - 1) layers of shape (c, c, 3, 3), one einsum per forward), mixed
from ``templates`` = k templates with learned coefficients; ``templates=None`` gives each of
them its own weight (fixed identity coefficients: the unshared WRN, the same code). The stem,
every batch norm and the classifier are unshared. A depth-10 network (n = 1) has no bank.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.models.bank import TemplateBank
from benchmark.models.contract import register_model
from benchmark.config.schema import ConfigError
from tasks.base import TaskSpec

STEM_WIDTH = 16  # the stem's channels; stage widths are 16w, 32w, 64w
STAGE_STRIDES = (1, 2, 2)


def blocks_per_stage(depth: int) -> int:
    """n = (depth - 4) / 6 for a depth of the layout (10, 16, 22, 28, ...); ``ConfigError`` otherwise."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
        raise ConfigError(f"model.depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, 34, 40, ...), got {depth!r}.")
    return (depth - 4) // 6


class PreActBlock(nn.Module):
    """An ordinary pre-activation basic block with its own convolutions (and 1x1 shortcut when needed)."""

    def __init__(self, c_in: int, c_out: int, stride: int, dropout: float):
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm2d(c_in), nn.BatchNorm2d(c_out)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False) if (c_in != c_out or stride != 1) else None
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = F.relu(self.bn1(x))
        y = F.relu(self.bn2(self.conv1(o)))
        y = self.conv2(F.dropout(y, self.dropout, self.training))
        return y + (x if self.shortcut is None else self.shortcut(o))


class Stage(nn.Module):
    """One stage: an ordinary first block, then ``blocks - 1`` blocks whose convs come from ``bank``.

    ``bank`` is anything with a ``weights()`` method returning ``(2 (blocks - 1), c, c, 3, 3)``:
    a ``TemplateBank`` when built, a ``FoldedBank`` after ``benchmark.models.bank.fold_bank``.
    Shared block b uses bank layers 2b (first conv) and 2b + 1 (second conv).
    """

    def __init__(self, c_in: int, c_out: int, stride: int, blocks: int, templates: int | None, dropout: float):
        super().__init__()
        self.first = PreActBlock(c_in, c_out, stride, dropout)
        shared = blocks - 1
        self.norms = nn.ModuleList(nn.BatchNorm2d(c_out) for _ in range(2 * shared))  # 2 per shared block
        self.bank = None
        if shared:
            layers = 2 * shared
            self.bank = TemplateBank(layers, layers if templates is None else templates, (c_out, c_out, 3, 3),
                                     learn_coefficients=templates is not None, layers_per_block=2)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first(x)
        if self.bank is None:
            return x
        weights = self.bank.weights()  # (2 (n - 1), c, c, 3, 3): every shared conv of the stage in one mix
        for b in range(len(weights) // 2):
            y = F.conv2d(F.relu(self.norms[2 * b](x)), weights[2 * b], padding=1)
            y = F.dropout(F.relu(self.norms[2 * b + 1](y)), self.dropout, self.training)
            x = x + F.conv2d(y, weights[2 * b + 1], padding=1)
        return x


@register_model("wide_resnet", former_paths=("benchmark.wide_resnet.WideResNet",))
class WideResNet(nn.Module):
    """A pre-activation Wide ResNet WRN-``depth``-``widen``, its stages' repeated blocks mixed from banks.

    Args:
        spec: the task's spec (2-D images: ``in_channels``, ``num_classes``).
        name: the label of this model in result paths and tables.
        depth: 6n + 4 (n blocks per stage), e.g. 16, 28.
        widen: the widening factor w (stage widths 16w, 32w, 64w).
        templates: k, templates per stage bank (learned coefficients); ``None``: every conv unshared.
        dropout: dropout probability between the two convs of every block (0: off).

    Parameter counts with 10 classes on 3-channel images: WRN-28-10 36,479,194; SWRN-28-10-1
    12,287,212; SWRN-28-10-2 17,125,630 (see tests/test_wide_resnet.py for the formula).
    """

    def __init__(self, spec: TaskSpec, name: str = "swrn", depth: int = 28, widen: int = 10,
                 templates: int | None = 1, dropout: float = 0.0):
        super().__init__()
        blocks = blocks_per_stage(depth)
        if spec.dims != 2:
            raise ConfigError(f"a Wide ResNet classifies 2-D images, but the task has dims={spec.dims}.")
        for key, value in (("widen", widen), ("templates", 1 if templates is None else templates)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"model.{key} must be an integer >= 1, got {value!r}.")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"model.dropout must lie in [0, 1), got {dropout!r}.")
        self.spec, self.name = spec, name
        self.depth, self.widen, self.templates, self.dropout = depth, widen, templates, dropout
        widths = [STEM_WIDTH * widen * 2**s for s in range(len(STAGE_STRIDES))]  # 16w, 32w, 64w
        self.stem = nn.Conv2d(spec.in_channels, STEM_WIDTH, 3, padding=1, bias=False)
        self.stages = nn.ModuleList(
            Stage(c_in, c_out, stride, blocks, templates, dropout)
            for c_in, c_out, stride in zip([STEM_WIDTH, *widths[:-1]], widths, STAGE_STRIDES)
        )
        self.norm = nn.BatchNorm2d(widths[-1])
        self.classifier = nn.Linear(widths[-1], spec.num_classes)
        for module in self.modules():  # ordinary convs: Kaiming normal, as the bank's templates
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, classes)`` of images ``(N, C, H, W)``."""
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        x = F.relu(self.norm(x))  # (N, 64w, H/4, W/4)
        return self.classifier(x.mean(dim=(2, 3)))

    @property
    def kind(self) -> str:
        """"shared" (the stages' repeated blocks mixed from banks of k templates) or "unshared" (``templates`` None)."""
        return self._kind(self.templates, self.depth)

    @classmethod
    def config_kind(cls, node) -> str:
        """The kind of the network a config node (``templates``, ``depth``) builds, without building it."""
        return cls._kind(node.get("templates", 1), int(node.get("depth", 28)))

    @staticmethod
    def _kind(templates: int | None, depth: int) -> str:
        return "unshared" if templates is None or blocks_per_stage(depth) < 2 else "shared"  # depth 10: no bank

    def unshared_parameter_count(self) -> int:
        """Parameters of the unshared WRN of the same depth, width and task (built on the meta device)."""
        with torch.device("meta"):
            plain = WideResNet(self.spec, depth=self.depth, widen=self.widen, templates=None)
        return sum(p.numel() for p in plain.parameters())


__all__ = ["PreActBlock", "Stage", "WideResNet", "blocks_per_stage"]
