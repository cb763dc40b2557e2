"""The hooks of ``benchmark.training.trainer.Trainer``: everything a run does beside the optimizer step.

A hook overrides the moments it needs (``Hook``'s methods, called in the order the hooks were
given, each with the trainer, whose attributes say where training stands); ``fit`` installs:

- ``DistributedHook``   data-parallel training: this rank's slice of each batch, the gradients averaged, Ctrl-C agreed on
- ``CurriculumHook``    the length curriculum: each batch cut to the step's size (``curriculum_size``)
- ``WeightAverageHook`` the exponential moving average of the weights the run keeps (``train.ema_horizon``)
- ``ProbeHook``         the probe accuracy at each record, and the early stop at ``train.stop_at_acc``
- ``MetricsLogHook``    every record into metrics.jsonl and to an ``on_record`` callback
- ``CheckpointHook``    resume from a training state, and save it (``benchmark.training.state``)
- ``ProgressBarHook``   the tqdm bar
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from tqdm import tqdm

from benchmark.config.schema import TrainConfig
from benchmark.infra import distributed
from benchmark.training.average import WeightAverage, check_average, ema_decay
from benchmark.training.state import TrainState, save_train_state
from tasks.base import Task
from tasks.fileio import write_text

if TYPE_CHECKING:
    from benchmark.training.trainer import Trainer


class Hook:
    """A no-op at every moment of the loop; subclasses override what they need."""

    def on_start(self, t: Trainer) -> None:
        """Before the first step (after the model is on its device)."""

    def state_dict(self, t: Trainer) -> dict[str, Any]:
        """Entries of the training state's ``loop`` that this hook needs to continue."""
        return {}

    def load_state_dict(self, t: Trainer, loop: dict[str, Any]) -> None:
        """Continue from a saved ``loop`` (``resume``)."""

    def batch_indices(self, t: Trainer, indices: torch.Tensor) -> torch.Tensor:
        """The sample indices of the global batch that this process trains on."""
        return indices

    def batch(self, t: Trainer, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch step ``t.step`` trains on."""
        return inputs, targets

    def after_backward(self, t: Trainer, loss: torch.Tensor) -> torch.Tensor:
        """After backward, before clipping: may rewrite the gradients; returns the loss to report."""
        return loss

    def after_step(self, t: Trainer) -> None:
        """Right after the optimizer and scheduler stepped (``t.step`` not yet counted)."""

    def stop_requested(self, t: Trainer, requested: bool) -> bool:
        """Whether the loop stops after this step (Ctrl-C); may make ranks agree."""
        return requested

    def on_log(self, t: Trainer, extra: dict[str, Any]) -> None:
        """At a logged step, before the record is made: add fields to ``extra``, set ``t.reached``."""

    def on_record(self, t: Trainer, record: dict[str, Any]) -> None:
        """At a logged step, with the new record (already in ``t.records``)."""

    def on_step_end(self, t: Trainer) -> None:
        """At the end of every step (counted, logged)."""

    def on_end(self, t: Trainer) -> None:
        """After the last step, training done (not after an exception)."""

    def close(self, t: Trainer) -> None:
        """Always, last (also after an exception)."""


# ---------------------------------------------------------------------------- data-parallel
class DistributedHook(Hook):
    """Under torchrun (``benchmark.infra.distributed``), every rank draws the same global batches
    of ``batch_size`` and trains on its own contiguous 1/N of each; the gradients are averaged
    before clipping, so every rank steps on identical gradients and the weights stay identical.

    Not DistributedDataParallel: it averages gradients only of what ran through its own forward,
    while the progressive loss calls model.run and model.logits and leaves the projection without
    gradient whenever it detaches (DDP would then need find_unused_parameters, a graph walk per
    step). One all-reduce of the gradients, weighted by each rank's scored positions, is the same
    arithmetic as one process on the global batch.
    """

    def __init__(self, batch_size: int):
        self.ranks, self.rank = distributed.world_size(), distributed.rank()
        if batch_size % self.ranks:
            raise ValueError(f"train.batch_size ({batch_size}) must be divisible by the {self.ranks} processes training it.")
        self.share = batch_size // self.ranks  # this rank's slice of each global batch

    def on_start(self, t: Trainer) -> None:
        distributed.broadcast_parameters(t.model)

    def batch_indices(self, t: Trainer, indices: torch.Tensor) -> torch.Tensor:
        return indices[self.rank * self.share : (self.rank + 1) * self.share]

    def after_backward(self, t: Trainer, loss: torch.Tensor) -> torch.Tensor:
        return distributed.average_gradients(t.model.parameters(), loss, t.task.valid(t.inputs).sum())

    def stop_requested(self, t: Trainer, requested: bool) -> bool:
        # Ranks must agree on stopping; agreeing costs a collective and a host sync, so Ctrl-C
        # is honoured at the next logged step only.
        return t.log_now and distributed.any_rank(requested, t.device)


# ---------------------------------------------------------------------------- length curriculum
def curriculum_size(step: int, full: int, start: int, steps: int) -> int:
    """The training size of step ``step`` (0-based) under the length curriculum: ``start`` at
    step 0, growing linearly (rounded down) to ``full`` at step ``steps``, and ``full`` from then
    on; ``steps`` 0: always ``full``."""
    if step >= steps:
        return full
    return start + (full - start) * step // steps


class CurriculumHook(Hook):
    """Step s trains on the batch cut by ``task.truncate`` to ``curriculum_size(s, size, start,
    steps)`` (and so does its training-accuracy record; the probe stays at ``size``): a function
    of the step alone, so a resumed run cuts as an uninterrupted one."""

    def __init__(self, size: int | None, start: int, steps: int):
        if size is None:
            raise ValueError("the length curriculum (train.curriculum_steps > 0) needs the training size: pass size.")
        self.size, self.start, self.steps = size, start, steps

    def batch(self, t: Trainer, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cut = curriculum_size(t.step, self.size, self.start, self.steps)
        return t.task.truncate(inputs, targets, cut) if cut != self.size else (inputs, targets)


# ---------------------------------------------------------------------------- probe and early stop
class _Probe:
    """The accuracy at ``iters`` of the model on the first ``cfg.probe_size`` training samples
    (a fixed set, the same at every check): the stopping criterion of ``train.stop_at_acc``.

    A fixed set measured at log steps rather than the running training accuracy, because the
    progressive loss (alpha 1) computes no logits at the training depth: its running accuracy
    would cost an extra pass every step or rest on a single batch per record.
    """

    def __init__(self, task: Task, data: torch.utils.data.Dataset, cfg: TrainConfig, device: torch.device):
        n = min(cfg.probe_size, len(data))
        inputs, targets = data[:n]  # TensorDataset slices: (n, C, *S), (n, *S)
        self.task, self.inputs, self.targets, self.batch = task, inputs.to(device), targets.to(device), cfg.batch_size * 4

    @torch.no_grad()
    def accuracy(self, model: nn.Module, iters: int) -> float:
        was_training = model.training
        model.eval()
        correct = torch.zeros((), dtype=torch.long, device=self.inputs.device)
        for lo in range(0, len(self.inputs), self.batch):
            x, y = self.inputs[lo : lo + self.batch], self.targets[lo : lo + self.batch]
            correct += self.task.score(x, y, model(x, iters).argmax(1)).sum()
        model.train(was_training)
        return round(int(correct) / len(self.inputs), 4)


class WeightAverageHook(Hook):
    """The model ends with the ``WeightAverage`` of its weights over training (decay
    ``ema_decay(horizon, t.total)``) instead of its last weights; at the end, a warning when the
    average scores well below the last weights on the training probe (``check_average``)."""

    def __init__(self, horizon: float):
        self.horizon = horizon
        self.average: WeightAverage | None = None
        self.probe: _Probe | None = None  # the ProbeHook's, when there is one

    def on_start(self, t: Trainer) -> None:
        self.average = WeightAverage(t.model, ema_decay(self.horizon, t.total))

    def state_dict(self, t: Trainer) -> dict[str, Any]:
        return dict(average=self.average.state_dict())

    def load_state_dict(self, t: Trainer, loop: dict[str, Any]) -> None:
        self.average.load_state_dict(loop.get("average"))

    def after_step(self, t: Trainer) -> None:
        self.average.update(t.model)

    def kept(self, model: nn.Module) -> Any:
        """A context in which ``model`` holds the weights the run would keep: the average."""
        return self.average.swapped_in(model)

    def on_end(self, t: Trainer) -> None:
        check_average(self.average, t.model, self.probe or _Probe(t.task, t.data, t.cfg, t.device), t.cfg, warn=t.main)
        self.average.copy_to(t.model)


class ProbeHook(Hook):
    """``probe_acc`` in every record: the accuracy on the probe of the weights the run would keep
    if it stopped there (the average, with ``average``); rank 0's decides. Reaching ``stop_at_acc``
    ends the run, only from step ``cfg.curriculum_steps`` on: a run that stops has then trained
    on its own size (its first probe record at the target is what the study counts as steps to it)."""

    def __init__(self, probe: _Probe, stop_at_acc: float, iters: int, curriculum_steps: int,
                 average: WeightAverageHook | None = None):
        self.probe, self.stop_at_acc, self.iters, self.curriculum_steps = probe, stop_at_acc, iters, curriculum_steps
        self.average = average
        if average is not None:
            average.probe = probe

    def on_log(self, t: Trainer, extra: dict[str, Any]) -> None:
        # Measured before the clock is read: its cost counts as training time.
        with self.average.kept(t.model) if self.average is not None else nullcontext():
            accuracy = self.probe.accuracy(t.model, self.iters)
        extra["probe_acc"] = distributed.broadcast_object(accuracy)
        t.reached = extra["probe_acc"] >= self.stop_at_acc and t.step >= self.curriculum_steps


# ---------------------------------------------------------------------------- records
class MetricsLogHook(Hook):
    """Rank 0 rewrites ``path`` (one JSON line per record) and calls ``on_record`` with each new record."""

    def __init__(self, path: Path | None, on_record: Callable[[dict], None] | None = None):
        self.path, self.callback = path, on_record

    def on_record(self, t: Trainer, record: dict[str, Any]) -> None:
        if self.path is not None and t.main:
            write_text(self.path, "".join(json.dumps(r, allow_nan=False) + "\n" for r in t.records))
        if self.callback is not None and t.main:
            self.callback(record)


class ProgressBarHook(Hook):
    """A tqdm bar over the run's steps (rank 0 only), with the last record's loss and accuracy."""

    def __init__(self, enabled: bool):
        self.enabled, self.bar = enabled, None

    def on_start(self, t: Trainer) -> None:
        self.bar = tqdm(total=t.total, initial=t.step, desc="train", unit="step", disable=not (self.enabled and t.main),
                        dynamic_ncols=True)

    def on_record(self, t: Trainer, record: dict[str, Any]) -> None:
        self.bar.set_postfix(loss=f"{record['loss']:.4f}", acc=f"{record['train_acc']:.3f}", sps=record["samples_per_s"])

    def on_step_end(self, t: Trainer) -> None:
        self.bar.update()

    def close(self, t: Trainer) -> None:
        if self.bar is not None:
            self.bar.close()


# ---------------------------------------------------------------------------- training state
class CheckpointHook(Hook):
    """Resume from ``resume`` (a state read by ``read_train_state``), and save the training state
    to ``path`` every ``every`` steps (0: never in between), at the end, at an early stop and on
    Ctrl-C. Only rank 0 writes; every rank must save together (the metrics window is gathered).

    A resumed run's weights, metrics and every random draw are those of an uninterrupted run:
    a state saved after step s continues inside the epoch that step belongs to (``Trainer.epochs``).
    """

    def __init__(self, path: Path | None, every: int, resume: TrainState | None = None):
        self.path, self.every, self.resume = path, every, resume

    def on_start(self, t: Trainer) -> None:
        if self.resume is None:
            return
        state, loop = self.resume, self.resume.loop
        t.model.load_state_dict(state.model)
        t.optimizer.load_state_dict(state.optimizer)
        t.scheduler.load_state_dict(state.scheduler)
        t.step, t.seen, t.trained_s, t.records = state.step, loop["seen"], loop["seconds"], list(loop["records"])
        # The saved counts are every rank's together (gather_to_main): rank 0 holds them.
        t.window.load_state_dict(loop["window"], main=t.main)
        for hook in t.hooks:
            hook.load_state_dict(t, loop)
        t.saved = (t.step, self.path) if self.path is not None else None
        t.resume_rng = (loop["epoch_rng"], state.rng)

    def on_step_end(self, t: Trainer) -> None:
        if self.path is not None and (t.step == t.total or t.stopping or t.reached
                                      or (self.every > 0 and t.step % self.every == 0)):
            self.save(t)

    def save(self, t: Trainer) -> None:
        t.guard.check(t.saved)  # never save weights trained on a non-finite loss
        t.window.gather_to_main()
        if t.main:
            loop = dict(epoch_rng=t.epoch_rng, seen=t.seen, seconds=t.elapsed(), records=t.records, window=t.window.state_dict(),
                        average=None)  # the layout the file has always had; WeightAverageHook fills it in
            for hook in t.hooks:
                loop.update(hook.state_dict(t))
            save_train_state(self.path, t.step, t.model, t.optimizer, t.scheduler, t.generator, loop)
        t.saved = (t.step, self.path)


__all__ = ["CheckpointHook", "CurriculumHook", "DistributedHook", "Hook", "MetricsLogHook", "ProbeHook", "ProgressBarHook",
           "WeightAverageHook", "curriculum_size"]
