"""What watches a training loop: the metrics window, the non-finite-loss guard, Ctrl-C."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from benchmark.infra import distributed
from tasks.base import Task


class MetricsWindow:
    """Training loss and accuracy summed over the steps since the last record.

    The sums stay on the device (float64 loss, int64 counts: the same numbers as summing
    ``loss.item()`` on the host), so a step costs no host sync; ``record`` syncs once.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.reset()

    def reset(self) -> None:
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self.correct = torch.zeros((), dtype=torch.long, device=self.device)
        self.batches = self.count = 0

    def add_loss(self, loss: torch.Tensor) -> None:
        self.loss_sum += loss.detach().double()
        self.batches += 1

    def add_predictions(self, task: Task, inputs: torch.Tensor, targets: torch.Tensor, logits: torch.Tensor) -> None:
        """Count the exactly solved samples of a batch; logits ``(N, classes, *S)``."""
        self.correct += task.score(inputs, targets, logits.argmax(1)).sum()
        self.count += len(inputs)

    def _counts_over_ranks(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(solved, scored) samples summed over the ranks of data-parallel training, as () int64
        tensors (each rank scored its own slice of the batches; the loss is the global batch's
        on every rank already, see ``distributed.average_gradients``). One collective."""
        counts = distributed.sum_over_ranks(torch.stack([self.correct, torch.tensor(self.count, device=self.device)]))
        return counts[0], counts[1]

    def gather_to_main(self) -> None:
        """Move every rank's counts into rank 0's window (the others start again from zero), so
        that the window rank 0 saves in the training state is the whole run's. Call on every rank."""
        if distributed.active():
            correct, count = self._counts_over_ranks()
            main = distributed.is_main()
            self.correct, self.count = (correct, int(count)) if main else (torch.zeros_like(correct), 0)

    def state_dict(self) -> dict:
        """The open window, as the training state saves it."""
        return dict(loss_sum=self.loss_sum, correct=self.correct, batches=self.batches, count=self.count)

    def load_state_dict(self, state: dict, main: bool = True) -> None:
        """Continue the window ``state_dict`` saved; ``main`` False (a rank other than 0 of
        data-parallel training): the counts start from zero, rank 0 holds every rank's."""
        self.loss_sum, self.correct = state["loss_sum"].to(self.device), state["correct"].to(self.device)
        self.batches, self.count = state["batches"], state["count"]
        if not main:
            self.correct, self.count = torch.zeros_like(self.correct), 0

    def record(self, step: int, epoch: int, samples: int, **extra: float) -> dict:
        """One metrics record: where training stands, the window's mean loss and accuracy, ``extra``.

        Syncs with the device once (and, data-parallel, sums the counts over ranks: call it on
        every rank), then starts a new window.
        """
        correct, count = self._counts_over_ranks()
        loss, correct, count = float(self.loss_sum) / max(1, self.batches), int(correct), int(count)
        record = dict(step=step, epoch=epoch, samples=samples, loss=loss, train_acc=correct / max(1, count), **extra)
        self.reset()
        return record


class NonFiniteLoss(RuntimeError):
    """Training met a NaN or infinite loss; the message is one sentence naming the step and value."""

    def __init__(self, quantity: str, step: int, value: float, last_good: tuple[int, Path] | None):
        kept = (f"the last good training state (step {last_good[0]}) is kept in {last_good[1]}" if last_good
                else "no training state had been saved yet")
        super().__init__(f"training stopped: the {quantity} was {value} at step {step}, so nothing after it was saved "
                         f"({kept}); lower train.lr or check the data.")
        self.step, self.value = step, value


class FiniteGuard:
    """The first step whose loss is NaN or infinite, tracked on the device.

    ``observe`` adds a few scalar kernels per step and never waits for the device, so the hot loop
    keeps running ahead of the GPU; ``check`` syncs once and raises ``NonFiniteLoss``. Callers
    check wherever the host syncs anyway (logged steps, epoch ends) and before every checkpoint,
    so a saved state is always finite, and the reported step is the first bad one even when it
    lies between two checks.
    """

    def __init__(self, device: torch.device, quantity: str = "training loss"):
        self.quantity = quantity
        self.first = torch.full((), -1, dtype=torch.long, device=device)  # () first bad step, -1: none yet
        self.value = torch.zeros((), device=device)  # () the loss at that step

    def observe(self, loss: torch.Tensor, step: int) -> None:
        loss = loss.detach().float()
        new = torch.isfinite(loss).logical_not() & (self.first < 0)
        self.first = torch.where(new, step, self.first)
        self.value = torch.where(new, loss, self.value)

    def check(self, last_good: tuple[int, Path] | None = None) -> None:
        """Raise ``NonFiniteLoss`` if any observed loss was not finite (one host sync)."""
        first = int(self.first)
        if first >= 0:
            raise NonFiniteLoss(self.quantity, first, float(self.value), last_good)


class StopRequest:
    """Ctrl-C (SIGINT) while training: the first press asks the loop to stop at the end of the
    current step (so the saved state is a whole step); a second press interrupts at once."""

    def __init__(self) -> None:
        self.requested = False

    @contextmanager
    def installed(self) -> Iterator[StopRequest]:
        if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
            yield self
            return

        def handle(signum: int, frame: Any) -> None:
            if self.requested:
                raise KeyboardInterrupt
            self.requested = True

        previous = signal.signal(signal.SIGINT, handle)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)


__all__ = ["FiniteGuard", "MetricsWindow", "NonFiniteLoss", "StopRequest"]
