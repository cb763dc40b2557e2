"""One recurrent convolutional network for every model under test, 1-D or 2-D.

    input x (N, C, *S)
      -> projection conv + ReLU                              h (N, w, *S)
      -> iteration t = 0, 1, ..., T-1, at block position p = min(t, depth - 1):
           recall: u = ReLU(conv_p([h, x]))  (input concatenated to the features; computed
                   as conv_p,h(h) + conv_p,x(x) with the x term once per position: ``fuse_recall``)
           two residual blocks, their 4 convs = bank layers 4p .. 4p+3
      -> head: conv w->w, ReLU, conv w->w/2, ReLU, conv w/2->classes   logits (N, classes, *S)

The settings of one class give every model of the suite (see ``configs/model/``):

- ``shared``: depth 1, the block's 4 convs mixed from k < 4 templates with learned
  coefficients, the block reused every iteration (soft sharing *inside* the recurrent block);
- ``recurrent``: depth 1, ``templates: null`` (each conv its own weight): the Deep Thinking
  recall network, one block reused every iteration;
- ``shared_depth``: depth D > 1, all 4D convs mixed from one bank (soft sharing *over* depth);
- ``feedforward`` (``baselines/``): depth D, ``templates: null``: D unshared blocks.

What an extra iteration uses: iteration t runs the block at position min(t, depth - 1), so an
iteration past the trained depth reuses the last position's weights (for depth 1, the one block
every iteration used). A model whose every position has its own unshared weights (feed-forward,
depth > 1) has no weights for an extra iteration: ``iteration_limit`` is its depth.

All convolutions are 3 (x 3), stride 1, zero padding, no bias and no normalisation, so a model
trained on small inputs runs unchanged on bigger ones.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.models.bank import TemplateBank
from benchmark.models.contract import register_model
from benchmark.infra.precision import autocast
from tasks.base import TaskSpec

CONVS_PER_BLOCK = 4  # two residual basic blocks of two convs each, as in Deep Thinking networks
# How the recall convs start (``RecurrentConvNet(recall_init=...)``). The recall conv is the one
# conv of an iteration outside a residual sum, so a deep stack multiplies its gains. "default":
# PyTorch's conv init (uniform, std 1/sqrt(3 fan_in), about 0.4 of Kaiming's): in a 20-position
# depth-wise model at init, the gradient reaching the recall conv of position p falls about 10x
# every 3 positions (measured: 5e-3 at position 18, 7e-11 at position 0 with the paper's
# coefficients). "kaiming": normal, fan-in, ReLU gain, which keeps the features' scale through
# the recall; the same model's recall gradients then span 8e-4 .. 4e-2. "kaiming_loop": Kaiming
# for every position but the last, which keeps the default. The last position is the one a
# model iterates past its depth (``depth_k2_tail`` trains it as a loop of 21 iterations), and a
# Kaiming recall makes that loop expansive: at init its features grew 11x over those iterations
# (prefix sums, width 32) and 480x after training, where the default's loop contracts to a
# fixed point, as a hard-recurrent block's does.
RECALL_INITS = ("default", "kaiming", "kaiming_loop")


class IteratedBlockNet(nn.Module):
    """The machinery every network here shares: projection, a block iterated over positions, head.

    Subclasses set ``projection``, ``head`` and ``depth`` (block positions) and supply
    ``position_weights`` (each position's block and recall weights) and ``iteration_limit``. Iteration
    t runs position min(t, depth - 1).
    """

    def __init__(self, spec: TaskSpec, name: str):
        super().__init__()
        if spec.dims not in (1, 2):
            raise ValueError(f"the network supports 1-D and 2-D tasks, got dims={spec.dims}.")
        self.spec, self.name = spec, name
        self._conv = F.conv1d if spec.dims == 1 else F.conv2d

    depth: int
    projection: nn.Module
    head: nn.Module

    @property
    def iteration_limit(self) -> int | None:
        """The most iterations this model has weights for (``None``: any number)."""
        raise NotImplementedError

    def position_weights(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Block weights ``(depth, 4, w, w, *kernel)`` and recall weights ``(depth, w, w + C, *kernel)`` or None."""
        raise NotImplementedError

    def check_iters(self, iters: int) -> None:
        if iters < 1:
            raise ValueError(f"the number of iterations must be at least 1, got {iters}.")
        if self.iteration_limit is not None and iters > self.iteration_limit:
            raise ValueError(f"model '{self.name}' has weights for at most {self.iteration_limit} iterations and cannot run {iters} iterations.")

    def initial_state(self, x: torch.Tensor) -> torch.Tensor:
        with self._autocast(x):
            return F.relu(self.projection(self._layout(x)))  # (N, w, *S)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """The head on features ``h`` ``(N, w, *S)``: float32 logits ``(N, classes, *S)`` whatever the precision."""
        with self._autocast(h):
            return self.head(h).float()

    def _autocast(self, x: torch.Tensor):
        return autocast(x.device.type, self.precision)

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        """2-D inputs in NHWC layout when ``channels_last``: every feature map and the logits follow."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def states(self, x: torch.Tensor, iters: int, state: torch.Tensor | None = None, start: int = 0) -> Iterator[torch.Tensor]:
        """The features ``(N, w, *S)`` after each of iterations ``start .. start + iters - 1``.

        Starts from ``state`` if given, else from ``initial_state(x)``. The one iteration loop
        that ``run`` and ``iter_logits`` share; only the current state is kept, so under
        ``torch.no_grad()`` or ``torch.inference_mode()`` memory does not grow with ``iters``.
        """
        x = self._layout(x)
        h = self.initial_state(x) if state is None else state
        block, recall = self.position_weights()  # mixed once for all iterations
        p_now, weights = -1, None
        for t in range(start, start + iters):
            p = min(t, self.depth - 1)
            # The autocast context is entered per step, never held across a yield (it is thread
            # state: held, it would leak into the caller's code between iterations).
            with self._autocast(x):
                if p != p_now:  # positions only grow with t: keep one position's tensors at a time
                    p_now, weights = p, self._position(x, block[p], None if recall is None else recall[p], h.shape[1])
                h = self._step(h, *weights)
            yield h

    def run(self, x: torch.Tensor, iters: int, state: torch.Tensor | None = None, start: int = 0) -> torch.Tensor:
        """The features after iterations ``start .. start + iters - 1``, from ``state`` if given."""
        h = self.initial_state(x) if state is None else state
        for h in self.states(x, iters, h, start):
            pass
        return h

    def forward(self, x: torch.Tensor, iters: int) -> torch.Tensor:
        """Logits ``(N, classes, *S)`` after ``iters`` iterations."""
        self.check_iters(iters)
        return self.logits(self.run(x, iters))

    def iter_logits(self, x: torch.Tensor, iters: int) -> Iterator[torch.Tensor]:
        """Logits ``(N, classes, *S)`` after each of iterations 1..iters, from one unrolled pass."""
        self.check_iters(iters)
        for h in self.states(x, iters):
            yield self.logits(h)

    def _position(self, x: torch.Tensor, block: torch.Tensor, recall: torch.Tensor | None, width: int) -> tuple:
        """What ``_step`` needs at one position: ``(x, recall_h, x_term, block)``.

        Fused recall: conv([h, x], W) = conv(h, W[:, :w]) + conv(x, W[:, w:]) (zero padding is
        per channel), and x does not change across iterations, so the input's term ``x_term``
        ``(N, w, *S)`` is computed once per position instead of a concatenation and a (w + C)-
        channel conv every iteration (exact in the maths; float sums grouped differently).
        """
        if recall is None or not self.fuse_recall:
            return x, recall, None, block
        return x, recall[:, :width].contiguous(), self._conv(x, recall[:, width:].contiguous(), padding=1), block

    def _iterate(self, h: torch.Tensor, x: torch.Tensor, recall: torch.Tensor | None, x_term: torch.Tensor | None,
                 block: torch.Tensor) -> torch.Tensor:
        """One iteration: recall conv + ReLU, two residual blocks of ``block`` ``(4, w, w, *kernel)``.

        ``recall`` is the whole ``(w, w + C, *k)`` weight when ``x_term`` is None (concatenating
        form), else its feature part ``(w, w, *k)`` with the input's term precomputed (fused).
        """
        # In place on each conv's fresh output (a conv keeps its input, not its output, for
        # backward): the same sums, one allocation fewer each; 1.05x evaluation, 1.06x training.
        if recall is not None:
            h = (self._conv(torch.cat([h, x], dim=1), recall, padding=1) if x_term is None
                 else self._conv(h, recall, padding=1).add_(x_term)).relu_()
        for b in range(0, CONVS_PER_BLOCK, 2):
            out = self._conv(h, block[b], padding=1).relu_()
            h = self._conv(out, block[b + 1], padding=1).add_(h).relu_()  # residual: relu(h + conv(out))
        return h

    # Fast paths, measured by ``python -m benchmark.bench`` (one thread of a 2-core Xeon,
    # recurrent model, medians of 7 paired ratios against the plain form): fused recall 1.06x
    # training, 1.09x evaluation; channels-last 1.19x and 1.34x (oneDNN's NHWC convolutions; cuDNN
    # prefers NHWC too); both with the new evaluator 1.30x and 1.35x. False gives the plain form,
    # the reference that the tests and the bench compare against.
    fuse_recall: bool = True  # the input's recall term once per position (``_position``)
    # "fp32" or "bf16" (``benchmark.infra.precision``; set by the run from ``precision=``, not saved in
    # checkpoints): bf16 autocast of every conv, float32 weights and logits. With it the state
    # between iterations is bf16.
    precision: str = "fp32"
    channels_last: bool = True  # NHWC feature maps for 2-D tasks (``_layout``)
    _compiled_step = None  # set by ``use_compile``

    def _step(self, h: torch.Tensor, x: torch.Tensor, recall: torch.Tensor | None, x_term: torch.Tensor | None,
              block: torch.Tensor) -> torch.Tensor:
        """``_iterate``, compiled when ``use_compile`` asked for it."""
        if self._compiled_step is not None:
            return self._compiled_step(h, x, recall, x_term, block)
        return self._iterate(h, x, recall, x_term, block)

    def use_compile(self, enabled: bool = True) -> None:
        """Run each iteration through ``torch.compile`` (``enabled=False``: eagerly again).

        Where no compiler works (none installed, an unsupported Python or platform) the first
        iteration warns in one line and the model runs eagerly from then on; the outputs are the
        same up to float rounding either way. The module itself is not wrapped, so its
        ``state_dict`` keys (and checkpoints) do not change. Off by default: on the CPU it
        measured 0.95x training and 1.05x evaluation throughput (``python -m benchmark.bench``),
        after tens of seconds of compiling per input shape.
        """
        self._compiled_step = CompiledFunction(self._iterate) if enabled else None


class CompiledFunction:
    """``fn`` compiled by ``torch.compile`` on first use, falling back to ``fn`` if that fails.

    A compiler can fail when asked (``torch.compile`` raises) or when first run (no C++
    compiler for the generated kernels, an unsupported Python): either way one warning line
    names the reason and every later call runs ``fn`` eagerly.
    """

    def __init__(self, fn):
        self.fn, self.compiled = fn, None
        try:
            self.compiled = torch.compile(fn)
        except Exception as err:  # noqa: BLE001: any failure of the optional compiler means "run eagerly"
            self._fall_back(err)

    def _fall_back(self, err: Exception) -> None:
        self.compiled = None
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        warnings.warn(f"torch.compile is not available here ({reason[:200]}); running eagerly.", RuntimeWarning, stacklevel=3)

    def __call__(self, *args):
        if self.compiled is not None:
            try:
                return self.compiled(*args)
            except Exception as err:  # noqa: BLE001: a real error in fn raises again below, eagerly
                self._fall_back(err)
        return self.fn(*args)


@register_model("recurrent_conv", former_paths=("benchmark.model.RecurrentConvNet",))
class RecurrentConvNet(IteratedBlockNet):
    """A template-shared recurrent conv network (see the module docstring for the variants).

    Satisfies ``benchmark.models.contract.FoldableModel``; its ``kind`` is "shared" with a learned
    bank (``templates`` k), else "recurrent" at depth 1 and "unshared" past it.

    Args:
        spec: the task's spec (dimensionality, input channels, classes).
        name: the label of this variant in result paths and tables.
        width: channels of the features.
        depth: distinct block positions; iterations past it reuse the last one.
        templates: k, templates in the bank of block convs; ``None`` gives every conv its own
            weight (the bank's coefficients become a fixed identity).
        recall: concatenate the input to the features at every iteration.
        coefficient_init: how the bank's learned coefficients start
            (``benchmark.models.bank.COEFFICIENT_INITS``): "orthogonal", the paper's, or
            "orthogonal_unit", rows of unit norm on average. Ignored when ``templates`` is None.
        recall_init: how the recall convs start (``RECALL_INITS``): "default", PyTorch's conv
            init, "kaiming" (normal, fan-in, ReLU gain), or "kaiming_loop" (Kaiming but the last
            position). See ``RECALL_INITS`` for why a deep stack needs Kaiming and a loop does not.
        block_scale: None keeps the block convs as the bank initialised them; a number s
            rescales the templates so that the mixed block weights' root-mean-square std is s
            times a Kaiming template's (the same rule for shared and unshared banks; ``_rescale_blocks``).
        compile: run each iteration through ``torch.compile`` (``use_compile``; falls back to
            eager execution with a one-line warning where no compiler works).
    """

    def __init__(
        self,
        spec: TaskSpec,
        name: str = "shared",
        width: int = 32,
        depth: int = 1,
        templates: int | None = 2,
        recall: bool = True,
        compile: bool = False,
        coefficient_init: str = "orthogonal",
        recall_init: str = "default",
        block_scale: float | None = None,
    ):
        super().__init__(spec, name)
        for key, value, least in (("width", width, 2), ("depth", depth, 1), ("templates", 1 if templates is None else templates, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ValueError(f"model.{key} must be an integer >= {least}, got {value!r}.")
        self.width, self.depth, self.recall = width, depth, recall
        conv_nd = nn.Conv1d if spec.dims == 1 else nn.Conv2d

        def conv(c_in: int, c_out: int) -> nn.Module:
            return conv_nd(c_in, c_out, 3, padding=1, bias=False)

        if recall_init not in RECALL_INITS:
            raise ValueError(f"model.recall_init must be one of {', '.join(RECALL_INITS)}, got {recall_init!r}.")
        if block_scale is not None and not (isinstance(block_scale, (int, float)) and 0 < block_scale < float("inf")):
            raise ValueError(f"model.block_scale must be a positive number or null, got {block_scale!r}.")
        self.projection = conv(spec.in_channels, width)
        # The recall conv changes the channel count, so it cannot come from the w->w bank.
        self.recall_convs = nn.ModuleList(conv(width + spec.in_channels, width) for _ in range(depth)) if recall else None
        if recall and recall_init != "default":
            for c in self.recall_convs[: depth - 1 if recall_init == "kaiming_loop" else depth]:
                nn.init.kaiming_normal_(c.weight, nonlinearity="relu")
        layers = depth * CONVS_PER_BLOCK
        self.bank = TemplateBank(
            num_layers=layers,
            num_templates=layers if templates is None else templates,
            shape=(width, width, *(3,) * spec.dims),
            learn_coefficients=templates is not None,
            layers_per_block=CONVS_PER_BLOCK,
            coefficient_init=coefficient_init,
        )
        if block_scale is not None:
            self._rescale_blocks(block_scale)
        self.head = nn.Sequential(
            conv(width, width), nn.ReLU(), conv(width, width // 2), nn.ReLU(), conv(width // 2, spec.num_classes)
        )
        if compile:
            self.use_compile()

    @torch.no_grad()
    def _rescale_blocks(self, scale: float) -> None:
        """Scale the templates so the mixed block weights' RMS std is ``scale`` x Kaiming's.

        W_i = sum_j a_ij T_j with independent Kaiming templates has variance ||a_i||^2 var(T),
        so the mean variance over layers is mean_i ||a_i||^2 var(T); the templates are scaled by
        scale / sqrt(mean_i ||a_i||^2). An unshared bank (identity rows) is scaled by ``scale``
        itself; a shared one keeps its coefficients (and so its layer similarity) untouched.
        """
        rms_row = self.bank.coefficients.detach().square().sum(1).mean().sqrt()
        self.bank.templates.mul_(scale / rms_row)

    @property
    def kind(self) -> str:
        """"shared" (a bank with learned coefficients), "recurrent" (one unshared block) or "unshared"."""
        return self._kind(self.bank.learns_coefficients, self.depth)

    @classmethod
    def config_kind(cls, node) -> str:
        """The kind of the model a config node (``templates``, ``depth``) builds, without building it."""
        return cls._kind(node.get("templates", 2) is not None, int(node.get("depth", 1)))

    @staticmethod
    def _kind(learned: bool, depth: int) -> str:
        return "shared" if learned else "recurrent" if depth == 1 else "unshared"

    @property
    def iteration_limit(self) -> int | None:
        """The most iterations this model has weights for (``None``: any number).

        A model whose every position has its own unshared weights (depth > 1) has none for an
        extra iteration; shared and single-position models reuse their last position.
        """
        unshared = not self.bank.learns_coefficients
        return self.depth if unshared and self.depth > 1 else None

    def position_weights(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        block = self.bank.weights().view(self.depth, CONVS_PER_BLOCK, *self.bank.shape)  # one batched mix
        recall = None if self.recall_convs is None else torch.stack([c.weight for c in self.recall_convs])
        return block, recall
