"""What ``python -m benchmark.bench`` measures: the scales, the settings (models and fast paths)
compared, the models they build, their training step and evaluation, and the interleaved timer."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from benchmark.config.schema import TrainConfig
from benchmark.evaluation.extrapolation import accuracy_per_iteration
from benchmark.models.recurrent import RecurrentConvNet
from benchmark.training.losses import progressive_loss
from benchmark.training.optim import make_optimizer
from benchmark.training.step import train_step
from tasks.base import Task

BASELINE = "recurrent, plain"


@dataclass(frozen=True)
class Scale:
    """How much work one measurement does (the defaults: the settings of the fast-path measurements in docs/speed.md)."""

    width: int = 32
    train_size: int = 9
    train_batch: int = 50
    train_iters: int = 20
    alpha: float = 0.01  # Deep Thinking's maze recipe; the full term then runs every step
    train_steps: int = 1  # optimizer steps per measurement
    eval_size: int = 15
    eval_n: int = 32  # short measurements, many repeats: load that drifts hits every setting alike
    eval_iters: int = 100
    eval_batch: int = 32
    memory_size: int = 33
    memory_n: int = 8
    memory_iters: tuple[int, int] = (100, 1000)
    repeats: int = 7
    compile: bool = True  # measure torch.compile (its first call compiles for tens of seconds)
    # Halting (a trained model's evaluation with and without ``halt_after``): sizes, mazes per size,
    # iterations, K (as in the README's halting table), repeats (each costs tens of seconds).
    halt_sizes: tuple[int, ...] = (33, 59)
    halt_n: int = 4
    halt_iters: int = 1000
    halt_after: int = 20
    halt_repeats: int = 2


QUICK = Scale(width=8, train_batch=8, train_iters=3, eval_n=4, eval_iters=5, eval_batch=4, memory_size=15, memory_n=2,
              memory_iters=(5, 50), repeats=2, compile=False, halt_sizes=(11, 13), halt_n=2, halt_iters=40, halt_after=5)
# The committed reference maze model (README, "Try it without training: the reference checkpoints"): a trained model whose
# predictions settle, for the halting rows when no --checkpoint is given.
DEFAULT_CHECKPOINTS = Path(__file__).resolve().parents[2] / "results/reference/checkpoints/maze/train9_test15/shared"


@dataclass(frozen=True)
class Setting:
    """One row of the table: a model and the fast paths it runs with.

    ``before``: the evaluator as it was before the fast paths (``torch.no_grad``, one host sync per
    iteration: ``evaluate_before``); ``fuse_recall`` and ``channels_last``: the model's
    attributes (``IteratedBlockNet``); ``compile``: ``use_compile``; ``eval_batch``: None for the
    scale's. ``versus``: the row its ratios divide by.
    """

    name: str
    model: str = "recurrent"
    before: bool = False
    fuse_recall: bool = True
    channels_last: bool = True
    compile: bool = False
    eval_batch: int | None = None
    precision: str = "fp32"  # or "bf16": the model's autocast (``benchmark.infra.precision``)
    versus: str = BASELINE

    def train_key(self) -> tuple:
        """Settings that train identically share one training measurement."""
        return self.model, self.fuse_recall, self.channels_last, self.compile, self.precision


def settings(scale: Scale, bf16: bool = False) -> list[Setting]:
    """The rows: each model plain, each fast path alone, and each model as it runs now; with
    ``bf16`` (only where the device has it natively: elsewhere it is emulated, slower, and never
    chosen by ``precision=auto``) each model as it runs now in bf16 autocast.

    Plain: the fast paths that can be switched off (fused recall, channels-last, the new
    evaluator) off; the in-place activations of ``_iterate`` (the same sums: 1.05x evaluation,
    1.06x training in an A/B of the two forms) are always on.
    """
    plain = dict(before=True, fuse_recall=False, channels_last=False)
    rows = [
        Setting(BASELINE, **plain),
        Setting("shared k=2, plain", model="shared", **plain),
        Setting("recurrent, fused recall only", **{**plain, "fuse_recall": True}),
        Setting("recurrent, new evaluator only", **{**plain, "before": False}),
        Setting("recurrent, channels-last only", **{**plain, "channels_last": True}),
        Setting("recurrent, now"),
        Setting("recurrent, now, eval batch / 4", eval_batch=max(1, scale.eval_batch // 4), versus="recurrent, now"),
        Setting("shared k=2, now", model="shared", versus="shared k=2, plain"),
    ]
    if bf16:
        rows += [Setting("recurrent, now, bf16", precision="bf16", versus="recurrent, now"),
                 Setting("shared k=2, now, bf16", model="shared", precision="bf16", versus="shared k=2, now")]
    if scale.compile:
        rows.append(Setting("recurrent, now + compile", compile=True, versus="recurrent, now"))
    return rows


MEMORY_SETTINGS = (BASELINE, "recurrent, now")


def build_model(task: Task, setting: Setting, scale: Scale, seed: int = 0) -> RecurrentConvNet:
    """The setting's model, the same initial weights for the same model name."""
    torch.manual_seed(seed)
    model = RecurrentConvNet(task.spec, name=setting.model, width=scale.width, templates=None if setting.model == "recurrent" else 2)
    model.fuse_recall, model.channels_last, model.precision = setting.fuse_recall, setting.channels_last, setting.precision
    model.use_compile(setting.compile)
    return model


@torch.no_grad()
def evaluate_before(model: nn.Module, task: Task, data: torch.utils.data.TensorDataset, iters: int, batch_size: int,
                    device: torch.device) -> list[float]:
    """The evaluator as it was before the fast paths (no_grad, ``int(...)`` per iteration): the baseline."""
    model.eval()
    correct = torch.zeros(iters, dtype=torch.long)
    inputs_all, targets_all = data.tensors
    for lo in range(0, len(inputs_all), batch_size):
        inputs = inputs_all[lo : lo + batch_size].to(device)
        targets = targets_all[lo : lo + batch_size].to(device)
        for t, logits in enumerate(model.iter_logits(inputs, iters)):
            correct[t] += int(task.score(inputs, targets, logits.argmax(1)).sum())
    return (correct.double() / max(1, len(inputs_all))).tolist()


def run_evaluation(model: nn.Module, task: Task, data, iters: int, batch: int, setting: Setting, device: torch.device,
                   halt_after: int = 0) -> list[float]:
    """The setting's evaluator; halting (``halt_after`` > 0) is the new evaluator's."""
    if setting.before and not halt_after:
        return evaluate_before(model, task, data, iters, batch, device)
    return accuracy_per_iteration(model, task, data, iters, batch, device, halt_after)


class Trainer:
    """Optimizer steps as ``benchmark.training.trainer.fit`` takes them (``train_step``), on a fixed list of batches."""

    def __init__(self, model: nn.Module, task: Task, batches: list, scale: Scale, setting: Setting, device: torch.device):
        self.model, self.task, self.batches, self.device = model, task, batches, device
        self.cfg = TrainConfig(batch_size=scale.train_batch, lr=1e-3, weight_decay=2e-4, alpha=scale.alpha,
                               iters=scale.train_iters, detach_extra=0, clip=1.0)
        self.optimizer = make_optimizer(model, self.cfg)
        self.generator = torch.Generator().manual_seed(0)
        self.next = 0

    def steps(self, n: int) -> int:
        """Take ``n`` steps; the samples they trained on."""
        self.model.train()
        seen = 0
        for _ in range(n):
            inputs, targets = self.batches[self.next % len(self.batches)]
            self.next += 1
            inputs, targets = inputs.to(self.device), targets.to(self.device)
            train_step(self.model, lambda x=inputs, y=targets: progressive_loss(self.model, self.task, x, y, self.cfg.iters,
                                                                                self.cfg.alpha, self.generator),
                       self.optimizer, clip=self.cfg.clip)
            seen += len(inputs)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return seen


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleave(measures: dict[str, dict[str, Callable[[], float]]], repeats: int, log=print) -> dict[str, dict[str, list[float]]]:
    """``repeats`` rounds of every measurement (``measures[row][key]()``: one figure, e.g. samples/s),
    in the same order each round (A B C A B C), so that load that drifts hits every row alike."""
    out = {row: {key: [] for key in fns} for row, fns in measures.items()}
    for r in range(repeats):
        log(f"repeat {r + 1}/{repeats} ...")
        for row, fns in measures.items():
            for key, fn in fns.items():
                out[row][key].append(fn())
    return out


def training_batches(task: Task, scale: Scale) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Four training batches of the scale's size (the same for every row)."""
    train_x, train_y = task.dataset(scale.train_size, scale.train_batch * 4, seed=0).tensors
    return [(train_x[i : i + scale.train_batch], train_y[i : i + scale.train_batch]) for i in range(0, len(train_x), scale.train_batch)]
