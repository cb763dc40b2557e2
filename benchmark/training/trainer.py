"""Training with the progressive loss of Deep Thinking networks (Bansal et al., 2022): ``fit``.

``Trainer`` is the loop: batches drawn from the training set kept on the device, one
``benchmark.training.step.train_step`` per batch (the loss of ``benchmark.training.losses``, the
optimizer and schedule of ``benchmark.training.optim``), the metrics window and the non-finite
guard (``benchmark.training.monitor``). Everything else a run does is a hook
(``benchmark.training.hooks``): data-parallel training, the length curriculum, the weight
average, the probe and its early stop, metrics.jsonl, the training state (save and resume), the
progress bar. ``fit`` builds the hooks a ``TrainConfig`` asks for and runs the trainer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmark.models.contract import ScoredModel
from benchmark.config.schema import TrainConfig
from benchmark.infra import distributed
from benchmark.training.average import AVERAGE_GAP, WeightAverage, ema_decay
from benchmark.training.hooks import (CheckpointHook, CurriculumHook, DistributedHook, Hook, MetricsLogHook, ProbeHook,
                                      ProgressBarHook, WeightAverageHook, _Probe, curriculum_size)
from benchmark.training.losses import draw_progressive_split, masked_cross_entropy, progressive_loss
from benchmark.training.monitor import FiniteGuard, MetricsWindow, NonFiniteLoss, StopRequest
from benchmark.training.optim import make_optimizer, make_scheduler, warmup_cosine
from benchmark.training.state import RunInterrupted, TrainState, restore_rng
from benchmark.training.step import train_step
from tasks.base import Task


class Trainer:
    """Optimizer steps over ``data`` (a ``TensorDataset``), ``cfg.epochs`` epochs, with ``hooks``.

    The whole training set is moved to ``device`` once, ``(N, C, *S)`` and ``(N, *S)``; batches
    are drawn as indices by a DataLoader over ``range(N)`` seeded by ``seed``: the very draws (its
    base seed, then one permutation per epoch) and order that a DataLoader over the data itself
    makes, so the weights on the CPU are bit for bit those of loading the samples. The same
    generator then draws the progressive splits. The attributes below are the loop's state,
    which the hooks read (and some set: ``reached``, ``saved``, the resumed counters).
    """

    def __init__(self, model: nn.Module, task: Task, data: torch.utils.data.TensorDataset, cfg: TrainConfig,
                 device: torch.device, seed: int = 0, regulariser: Callable[[nn.Module], torch.Tensor] | None = None,
                 hooks: Sequence[Hook] = ()):
        self.model, self.task, self.data, self.cfg, self.device = model, task, data, cfg, device
        self.regulariser, self.hooks = regulariser, list(hooks)
        self.generator = torch.Generator().manual_seed(seed)
        self.main = distributed.is_main()  # only rank 0 writes
        self.all_inputs, self.all_targets = (t.to(device) for t in data.tensors)
        self.loader = torch.utils.data.DataLoader(range(len(data)), batch_size=cfg.batch_size, shuffle=True, drop_last=True,
                                                  generator=self.generator)
        if len(self.loader) == 0:
            raise ValueError(f"train.batch_size ({cfg.batch_size}) is larger than the training set ({len(data)} samples).")
        self.optimizer = make_optimizer(model, cfg)
        self.total = cfg.epochs * len(self.loader)
        self.scheduler = make_scheduler(self.optimizer, cfg, self.total)
        # A fixed-depth model (feed-forward) has no iterations past its depth to learn holding in.
        self.detach_extra = cfg.detach_extra if (model.iteration_limit if isinstance(model, ScoredModel) else None) is None else 0
        self.window, self.guard = MetricsWindow(device), FiniteGuard(device)
        self.records: list[dict] = []
        self.step = self.seen = self.epoch = 0
        self.trained_s, self.start = 0.0, time.perf_counter()
        self.saved: tuple[int, Path] | None = None  # (step, path) of the last training state written
        self.resume_rng: tuple[torch.Tensor, dict] | None = None  # (epoch_rng, rng) of a resumed state
        self.epoch_rng: torch.Tensor | None = None  # the generator's state at the current epoch's start
        self.inputs = self.targets = None  # the current batch
        self.log_now = self.stopping = self.reached = False

    def elapsed(self) -> float:
        """Seconds trained, across resumes."""
        return self.trained_s + time.perf_counter() - self.start

    def batches(self) -> Iterator[torch.Tensor]:
        """The global batches as index tensors ``(B,)``, epoch after epoch, from ``self.step`` on.

        A state saved after step s (1-based) continues inside the epoch that step belongs to: its
        batch order is redrawn from the generator's state at that epoch's start, its first batches
        up to s are passed over, then the generator is set to the saved state. (Saved after an
        epoch's last step, the epoch is still open: the loader's next request ends it.)
        """
        first_epoch = (self.step - 1) // len(self.loader) if self.step else 0
        skip = self.step - first_epoch * len(self.loader)
        for epoch in range(first_epoch, self.cfg.epochs):
            self.epoch = epoch
            if self.resume_rng is not None:
                self.generator.set_state(self.resume_rng[0])
            self.epoch_rng = self.generator.get_state()
            batches = iter(self.loader)
            if self.resume_rng is not None:
                for _ in range(skip):
                    next(batches)
                restore_rng(self.resume_rng[1], self.generator)
                self.resume_rng = None
            for indices in batches:
                yield indices
                if self.reached:
                    return

    def loss(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        cfg = self.cfg
        return progressive_loss(self.model, self.task, self.inputs, self.targets, cfg.iters, cfg.alpha, self.generator,
                                self.detach_extra, cfg.progressive_min_iters, cfg.init_noise)

    def after_backward(self, loss: torch.Tensor) -> torch.Tensor:
        for hook in self.hooks:
            loss = hook.after_backward(self, loss)
        return loss

    def train_on(self, indices: torch.Tensor) -> None:
        """One step on the global batch ``indices`` (host int64), and what follows it: counting,
        the metrics window, a record at logged steps, the hooks."""
        cfg, hooks = self.cfg, self.hooks
        mine = indices
        for hook in hooks:
            mine = hook.batch_indices(self, mine)
        mine = mine.to(self.device)
        self.inputs, self.targets = self.all_inputs[mine], self.all_targets[mine]  # (B/N, C, *S), (B/N, *S)
        for hook in hooks:
            self.inputs, self.targets = hook.batch(self, self.inputs, self.targets)
        loss, logits = train_step(self.model, self.loss, self.optimizer, self.scheduler, cfg.clip, self.regulariser,
                                  self.after_backward)
        for hook in hooks:
            hook.after_step(self)
        self.step, self.seen = self.step + 1, self.seen + len(indices)
        self.guard.observe(loss, self.step)
        self.log_now = self.step % cfg.log_every == 0 or self.step == self.total
        self.stopping = self.stop.requested
        for hook in hooks:
            self.stopping = hook.stop_requested(self, self.stopping)
        self.window.add_loss(loss)
        # Training accuracy at iters: free when the full term computed the logits; with alpha = 1
        # it costs an extra pass, so it is then measured on logged steps only.
        if logits is not None or self.log_now:
            with torch.no_grad():
                logits = self.model(self.inputs, cfg.iters) if logits is None else logits
                self.window.add_predictions(self.task, self.inputs, self.targets, logits)
        if self.log_now:
            self.log()
        for hook in hooks:
            hook.on_step_end(self)

    def log(self) -> None:
        self.guard.check(self.saved)  # the host syncs here anyway; no NaN reaches metrics.jsonl
        extra: dict[str, Any] = {}
        for hook in self.hooks:
            hook.on_log(self, extra)
        if self.device.type == "cuda":  # the allocator's peak so far (this rank's GPU)
            extra["peak_memory_mb"] = round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
        elapsed = self.elapsed()
        self.records.append(self.window.record(step=self.step, epoch=self.epoch + 1, samples=self.seen,
                                               lr=self.scheduler.get_last_lr()[0], seconds=round(elapsed, 3),
                                               samples_per_s=round(self.seen / elapsed, 1), **extra))
        for hook in self.hooks:
            hook.on_record(self, self.records[-1])

    def fit(self) -> list[dict]:
        """Train to the end (or the early stop); the records. The model ends in eval mode."""
        self.model.to(self.device).train()
        try:
            for hook in self.hooks:
                hook.on_start(self)
            self.start = time.perf_counter()
            with StopRequest().installed() as self.stop:
                for indices in self.batches():
                    self.train_on(indices)
                    if self.stopping and not self.reached:  # an early stop ends the run as a finished one
                        self.guard.check(self.saved)
                        raise RunInterrupted(self.saved[1].parent, self.step) if self.saved else KeyboardInterrupt
                self.guard.check(self.saved)
            for hook in self.hooks:
                hook.on_end(self)
        finally:
            for hook in self.hooks:
                hook.close(self)
        self.model.eval()
        return self.records


def fit(
    model: nn.Module,
    task: Task,
    data: torch.utils.data.Dataset,
    cfg: TrainConfig,
    device: torch.device,
    metrics_path: Path | None = None,
    seed: int = 0,
    regulariser: Callable[[nn.Module], torch.Tensor] | None = None,
    progress: bool = True,
    state_path: Path | None = None,
    resume: TrainState | None = None,
    on_record: Callable[[dict], None] | None = None,
    size: int | None = None,
) -> list[dict]:
    """Train ``model`` on ``data``; write one JSON line per logged step to ``metrics_path``.

    Returns the logged records. ``seed`` drives the batch order and the progressive draws.
    ``regulariser`` is an optional callable ``model -> loss`` added to the objective (e.g. the
    loop-inducing regulariser of ``benchmark.training.loop_regulariser``).

    With ``state_path``, the training state (``benchmark.training.state``) is saved there every
    ``cfg.checkpoint_every`` steps, at the end, and on Ctrl-C (then ``RunInterrupted`` is raised).
    ``resume``, a state read by ``read_train_state``, continues from its step: the weights, the
    metrics and every random draw are then those of an uninterrupted run. A NaN or infinite loss
    raises ``NonFiniteLoss``; no state is saved after it. ``on_record`` is called with each record
    once it is in metrics.jsonl (e.g. ``benchmark.pipelines.algorithmic.TensorBoardLog``).

    ``size``, the size of the puzzles in ``data``, is needed by the length curriculum
    (``cfg.curriculum_steps`` > 0): step s then trains on the batch cut by ``task.truncate`` to
    ``curriculum_size(s, size, ...)``, and so does its training-accuracy record; the probe
    stays at ``size``. ``cfg.stop_at_acc`` ends a run only from step ``cfg.curriculum_steps`` on.

    ``cfg.ema_horizon`` (not None): the model ends with the ``WeightAverage`` of its weights over
    training (decay ``ema_decay(cfg.ema_horizon, steps)``) instead of its last weights. The
    records' loss and training accuracy are the live weights'; the probe accuracy
    (``cfg.stop_at_acc``) is the average's, the weights a stop keeps.

    Under torchrun (a process group of N ranks, ``benchmark.infra.distributed``), every rank draws
    the same global batches and progressive splits from the same ``seed``, trains on its own
    contiguous 1/N of each batch, and averages the gradients before clipping: the weights are
    those of one process on the global batch up to rounding. Every rank must call ``fit``; only
    rank 0 writes ``metrics_path``, ``state_path`` and calls ``on_record``.
    """
    hooks: list[Hook] = []
    if distributed.world_size() > 1:
        hooks.append(DistributedHook(cfg.batch_size))
    if cfg.curriculum_steps > 0:
        hooks.append(CurriculumHook(size, cfg.curriculum_start, cfg.curriculum_steps))
    average = WeightAverageHook(cfg.ema_horizon) if cfg.ema_horizon is not None else None
    if average is not None:
        hooks.append(average)
    if cfg.stop_at_acc is not None:
        hooks.append(ProbeHook(_Probe(task, data, cfg, device), cfg.stop_at_acc, cfg.iters, cfg.curriculum_steps, average))
    hooks += [MetricsLogHook(metrics_path, on_record), CheckpointHook(state_path, cfg.checkpoint_every, resume),
              ProgressBarHook(progress)]
    return Trainer(model, task, data, cfg, device, seed, regulariser, hooks).fit()


# Kept importable from here (the names this module held before it was split).
__all__ = ["AVERAGE_GAP", "FiniteGuard", "MetricsWindow", "NonFiniteLoss", "StopRequest", "Trainer", "WeightAverage",
           "curriculum_size", "draw_progressive_split", "ema_decay", "fit", "make_optimizer", "masked_cross_entropy",
           "progressive_loss", "train_step", "warmup_cosine"]
