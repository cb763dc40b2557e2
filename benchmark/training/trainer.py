"""Training with the progressive loss of Deep Thinking networks (Bansal et al., 2022).

    L = (1 - alpha) * CE(logits after iters) + alpha * CE(progressive)

Progressive term: run n iterations without gradient, detach the features, run k more with
gradient, score the output. The reference draws n ~ U[0, m-1] and then k ~ U[1, m-n], which makes
the total n + k pile up near m. Here the total t = n + k is drawn uniformly from [1, m] and n
uniformly from [0, t-1], so every iteration count is trained equally often.

The loss is averaged over the positions the task marks valid (maze walls do not count).
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import get_ema_multi_avg_fn
from tqdm import tqdm

from benchmark.infra import distributed
from benchmark.models.bank import no_decay_parameters
from benchmark.config.schema import ConfigError, TrainConfig
from tasks.fileio import write_text
from benchmark.training.state import RunInterrupted, restore_rng, save_train_state
from tasks.base import Task


def masked_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over valid positions; logits (N, classes, *S), targets/valid (N, *S)."""
    per_position = F.cross_entropy(logits, targets, reduction="none")
    return (per_position * valid).sum() / valid.sum().clamp_min(1)


def draw_progressive_split(iters: int, generator: torch.Generator, detach_extra: int = 0,
                           min_iters: int = 1) -> tuple[int, int]:
    """(n, k): n detached iterations then k with gradient.

    n + k is uniform on [min_iters, iters], then ``detach_extra`` > 0 adds U[0, detach_extra] more
    detached iterations in front: the model then also learns to hold a solved state beyond
    iters (against "overthinking"), at the price of cheap no-grad iterations only. ``min_iters``
    above 1 asks for answers only from that iteration on (``TrainConfig.progressive_min_iters``).
    """
    total = int(torch.randint(min_iters, iters + 1, (1,), generator=generator))
    n = int(torch.randint(0, total, (1,), generator=generator))
    extra = int(torch.randint(0, detach_extra + 1, (1,), generator=generator)) if detach_extra > 0 else 0
    return n + extra, total - n


def curriculum_size(step: int, full: int, start: int, steps: int) -> int:
    """The training size of step ``step`` (0-based) under the length curriculum: ``start`` at
    step 0, growing linearly (rounded down) to ``full`` at step ``steps``, and ``full`` from then
    on; ``steps`` 0: always ``full``."""
    if step >= steps:
        return full
    return start + (full - start) * step // steps


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW with two groups: the banks' coefficients are excluded from weight decay."""
    skip = no_decay_parameters(model)
    params = dict(model.named_parameters())
    groups = [
        {"params": [p for n, p in params.items() if n not in skip], "weight_decay": cfg.weight_decay},
        {"params": [p for n, p in params.items() if n in skip], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr)


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    """Learning-rate factor: linear warm-up, then cosine decay to 0."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def progressive_loss(
    model: nn.Module,
    task: Task,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    iters: int,
    alpha: float,
    generator: torch.Generator,
    detach_extra: int = 0,
    min_iters: int = 1,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The loss of one batch, ``(1 - alpha) * CE(after iters) + alpha * CE(progressive)``.

    inputs ``(N, C, *S)``, targets ``(N, *S)``. The progressive term runs n iterations without
    gradient, detaches, and k more with gradient (``draw_progressive_split``, which draws from
    ``generator``; ``min_iters`` the least n + k); each term is skipped when its weight is 0.
    Returns ``(loss, logits)``: a 0-d tensor, and the logits ``(N, classes, *S)`` after ``iters``
    iterations when the full term computed them (None otherwise).
    """
    valid = task.valid(inputs)  # (N, *S)
    loss = torch.zeros((), device=inputs.device)
    logits_full = None
    if alpha < 1:
        logits_full = model(inputs, iters)
        loss = loss + (1 - alpha) * masked_cross_entropy(logits_full, targets, valid)
    if alpha > 0:
        n, k = draw_progressive_split(iters, generator, detach_extra, min_iters)
        with torch.no_grad():
            state = model.run(inputs, n) if n > 0 else model.initial_state(inputs)
        state = model.run(inputs, k, state=state.detach(), start=n)
        loss = loss + alpha * masked_cross_entropy(model.logits(state), targets, valid)
    return loss, logits_full


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


def ema_decay(horizon: float, steps: int) -> float:
    """The decay d whose horizon 1 / (1 - d) is ``horizon`` x ``steps`` (0: no averaging, when that is under one step)."""
    return max(0.0, 1.0 - 1.0 / (horizon * steps))


class WeightAverage:
    """An exponential moving average of a model's parameters, the weights a run keeps (``train.ema_horizon``).

    It starts as a copy of the initial weights p_0 and after each step s moves towards the new
    weights: ``a += (1 - d) (p_s - a)``, so after t steps ``a = d^t p_0 + sum_s (1 - d) d^(t - s) p_s``.
    The share d^t of the initial weights is part of the recipe, measured: with d = 0.999 over the
    maze default's 2,500 steps (a share of 8%), seeds 1 and 2 reached 95-99% on 33x33 mazes; the
    bias-corrected average without that share (divided by 1 - d^t, as Adam corrects its moments)
    reached 95% and 74% (README, "Maze track"). A run of fewer steps than the horizon 1 / (1 - d)
    keeps mostly its initial weights, which is why ``fit`` sets d from the run's length
    (``ema_decay``). Buffers are not averaged: the models' buffers are constants.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.params = [p.detach().clone() for p in model.parameters()]
        # torch's own EMA step: one foreach lerp over every parameter (a single fused call per
        # training step rather than one kernel per tensor).
        self._step = get_ema_multi_avg_fn(decay)

    def update(self, model: nn.Module) -> None:
        self._step(self.params, [p.detach() for p in model.parameters()], None)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        for average, p in zip(self.params, model.parameters()):
            p.copy_(average)

    @contextmanager
    def swapped_in(self, model: nn.Module) -> Iterator[None]:
        """``model`` holds the average inside the block, its own weights again after it."""
        live = [p.detach().clone() for p in model.parameters()]
        self.copy_to(model)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, saved in zip(model.parameters(), live):
                    p.copy_(saved)

    def state_dict(self) -> dict[str, Any]:
        return dict(params=list(self.params))

    def load_state_dict(self, state: Any) -> None:
        """Continue from ``state_dict()``'s output; ``ConfigError`` when it does not fit this model."""
        ok = (isinstance(state, dict) and set(state) == {"params"}
              and isinstance(state["params"], list) and len(state["params"]) == len(self.params)
              and all(isinstance(a, torch.Tensor) and a.shape == b.shape for a, b in zip(state["params"], self.params)))
        if not ok:
            raise ConfigError("the training state holds no weight average that fits this model (train.ema_horizon is set); "
                              "delete its train_state.pt to restart that run's training from step 0.")
        for average, saved in zip(self.params, state["params"]):
            average.copy_(saved)


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
    resume: dict[str, Any] | None = None,
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
    stays at ``size``. A function of the step alone, so a resumed run cuts as an uninterrupted one.
    ``cfg.stop_at_acc`` ends a run only from step ``cfg.curriculum_steps`` on.

    ``cfg.ema_horizon`` (not None): the model ends with the ``WeightAverage`` of its weights over
    training (decay ``ema_decay(cfg.ema_horizon, steps)``) instead of its last weights. The records' loss and training accuracy are the live
    weights'; the probe accuracy (``cfg.stop_at_acc``) is the average's, the weights a stop keeps.

    ``data`` is a ``TensorDataset``; its tensors are moved to ``device`` once, and each batch is
    gathered there by index (no host copies per step on a GPU). Under torchrun (a process group
    of N ranks, ``benchmark.infra.distributed``), every rank draws the same global batches of
    ``cfg.batch_size`` and the same progressive splits from the same ``seed``, trains on its own
    contiguous 1/N of each batch, and averages the gradients before clipping: the weights are
    those of one process on the global batch up to rounding. Every rank must call ``fit``; only
    rank 0 writes ``metrics_path``, ``state_path`` and calls ``on_record``.
    """
    generator = torch.Generator().manual_seed(seed)
    ranks, rank = distributed.world_size(), distributed.rank()
    if cfg.batch_size % ranks:
        raise ValueError(f"train.batch_size ({cfg.batch_size}) must be divisible by the {ranks} processes training it.")
    share = cfg.batch_size // ranks  # this rank's slice of each global batch: [rank * share, (rank + 1) * share)
    writes = distributed.is_main()
    # The whole training set lives on the device: (N, C, *S) and (N, *S), moved once (a no-op on
    # the CPU). Batches are drawn as indices by a DataLoader over range(N): the very draws (its
    # base seed, then one permutation per epoch) and order that a DataLoader over the data
    # itself makes, so the weights on the CPU are bit for bit those of loading the samples.
    all_inputs, all_targets = (t.to(device) for t in data.tensors)
    loader = torch.utils.data.DataLoader(range(len(data)), batch_size=cfg.batch_size, shuffle=True, drop_last=True,
                                         generator=generator)
    if len(loader) == 0:
        raise ValueError(f"train.batch_size ({cfg.batch_size}) is larger than the training set ({len(data)} samples).")
    if cfg.curriculum_steps > 0 and size is None:
        raise ValueError("the length curriculum (train.curriculum_steps > 0) needs the training size: pass size.")
    optimizer = make_optimizer(model, cfg)
    total = cfg.epochs * len(loader)
    warmup = min(cfg.warmup_steps, total)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, total, warmup))
    # A fixed-depth model (feed-forward) has no iterations past its depth to learn holding in.
    detach_extra = cfg.detach_extra if getattr(model, "iteration_limit", None) is None else 0
    model.to(device).train()
    distributed.broadcast_parameters(model)
    average = WeightAverage(model, ema_decay(cfg.ema_horizon, total)) if cfg.ema_horizon is not None else None
    records: list[dict] = []
    window = MetricsWindow(device)
    guard = FiniteGuard(device)
    step = seen = 0
    trained_s = 0.0
    saved: tuple[int, Path] | None = None  # (step, path) of the last training state written
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        loop = resume["loop"]
        step, seen, trained_s, records = resume["step"], loop["seen"], loop["seconds"], list(loop["records"])
        window.loss_sum, window.correct = loop["window"]["loss_sum"].to(device), loop["window"]["correct"].to(device)
        window.batches, window.count = loop["window"]["batches"], loop["window"]["count"]
        if average is not None:
            average.load_state_dict(loop.get("average"))
        if not writes:  # the saved counts are every rank's together (gather_to_main): rank 0 holds them
            window.correct, window.count = torch.zeros_like(window.correct), 0
        saved = (step, state_path) if state_path is not None else None
    # A state saved after step s (1-based) continues inside the epoch that step belongs to: its
    # batch order is redrawn from the generator's state at that epoch's start, its first
    # ``skip`` batches are passed over, then the generator is set to the saved state. (Saved
    # after an epoch's last step, the epoch is still open: the loader's next request ends it.)
    first_epoch = (step - 1) // len(loader) if step else 0
    skip = step - first_epoch * len(loader)
    epoch_rng = resume["loop"]["epoch_rng"] if resume is not None else None

    def save_state(epoch_rng: torch.Tensor) -> None:
        nonlocal saved
        guard.check(saved)  # never save weights trained on a non-finite loss
        window.gather_to_main()
        if not writes:
            saved = (step, state_path)
            return
        loop = dict(epoch_rng=epoch_rng, seen=seen, seconds=trained_s + time.perf_counter() - start, records=records,
                    window=dict(loss_sum=window.loss_sum, correct=window.correct, batches=window.batches, count=window.count),
                    average=average.state_dict() if average is not None else None)
        save_train_state(state_path, step, model, optimizer, scheduler, generator, loop)
        saved = (step, state_path)

    probe = _Probe(task, data, cfg, device) if cfg.stop_at_acc is not None else None
    reached = False  # the probe accuracy reached cfg.stop_at_acc: training ends there
    start = time.perf_counter()
    bar = tqdm(total=total, initial=step, desc="train", unit="step", disable=not (progress and writes), dynamic_ncols=True)
    try:
        with StopRequest().installed() as stop:
            for epoch in range(first_epoch, cfg.epochs):
                if epoch == first_epoch and resume is not None:
                    generator.set_state(epoch_rng)
                epoch_rng = generator.get_state()
                batches = iter(loader)
                if epoch == first_epoch and resume is not None:
                    for _ in range(skip):
                        next(batches)
                    restore_rng(resume["rng"], generator)
                for indices in batches:  # (B,) int64 on the host: the global batch
                    mine = indices[rank * share : (rank + 1) * share].to(device)
                    inputs, targets = all_inputs[mine], all_targets[mine]  # (B/N, C, *S), (B/N, *S)
                    if cfg.curriculum_steps > 0:
                        cut = curriculum_size(step, size, cfg.curriculum_start, cfg.curriculum_steps)
                        if cut != size:
                            inputs, targets = task.truncate(inputs, targets, cut)
                    loss, logits = progressive_loss(model, task, inputs, targets, cfg.iters, cfg.alpha, generator, detach_extra,
                                                    cfg.progressive_min_iters)
                    if regulariser is not None:
                        loss = loss + regulariser(model)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if ranks > 1:
                        # Not DistributedDataParallel: it averages gradients only of what ran through
                        # its own forward, while the progressive loss calls model.run and model.logits
                        # and leaves the projection without gradient whenever it detaches (DDP would
                        # then need find_unused_parameters, a graph walk per step). One all-reduce of
                        # the gradients, weighted by each rank's scored positions, is the same
                        # arithmetic as one process on the global batch; every rank then clips and
                        # steps on identical gradients, so the weights stay identical.
                        loss = distributed.average_gradients(model.parameters(), loss, task.valid(inputs).sum())
                    if cfg.clip > 0:
                        nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
                    optimizer.step()
                    scheduler.step()
                    if average is not None:
                        average.update(model)
                    step, seen = step + 1, seen + len(indices)
                    guard.observe(loss, step)
                    log_now = step % cfg.log_every == 0 or step == total
                    stopping = stop.requested
                    if ranks > 1:
                        # Ranks must agree on stopping; agreeing costs a collective and a host sync,
                        # so Ctrl-C is honoured at the next logged step only.
                        stopping = log_now and distributed.any_rank(stop.requested, device)
                    window.add_loss(loss)
                    # Training accuracy at iters: free when the full term computed the logits; with
                    # alpha = 1 it costs an extra pass, so it is then measured on logged steps only.
                    if logits is not None or log_now:
                        with torch.no_grad():
                            window.add_predictions(task, inputs, targets, model(inputs, cfg.iters) if logits is None else logits)
                    bar.update()
                    if log_now:
                        guard.check(saved)  # the host syncs here anyway; no NaN reaches metrics.jsonl
                        extra = {}
                        if probe is not None:  # measured before the clock is read: its cost counts as training time
                            # The weights the run would keep if it stopped here: the average, when there is one.
                            with average.swapped_in(model) if average is not None else nullcontext():
                                accuracy = probe.accuracy(model, cfg.iters)
                            extra["probe_acc"] = distributed.broadcast_object(accuracy)  # rank 0's decides
                            # Not before the curriculum has reached the training size: a run
                            # that stops there has trained on its own size (its first probe
                            # record at the target is what the study counts as steps to it).
                            reached = extra["probe_acc"] >= cfg.stop_at_acc and step >= cfg.curriculum_steps
                        if device.type == "cuda":  # the allocator's peak so far (this rank's GPU)
                            extra["peak_memory_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
                        elapsed = trained_s + time.perf_counter() - start
                        records.append(window.record(step=step, epoch=epoch + 1, samples=seen, lr=scheduler.get_last_lr()[0],
                                                     seconds=round(elapsed, 3), samples_per_s=round(seen / elapsed, 1), **extra))
                        if metrics_path is not None and writes:
                            write_text(metrics_path, "".join(json.dumps(r, allow_nan=False) + "\n" for r in records))
                        if on_record is not None and writes:
                            on_record(records[-1])
                        bar.set_postfix(loss=f"{records[-1]['loss']:.4f}", acc=f"{records[-1]['train_acc']:.3f}",
                                        sps=records[-1]["samples_per_s"])
                    if state_path is not None and (step == total or stopping or reached
                                                   or (cfg.checkpoint_every > 0 and step % cfg.checkpoint_every == 0)):
                        save_state(epoch_rng)
                    if reached:
                        break
                    if stopping:
                        guard.check(saved)
                        if state_path is None:
                            raise KeyboardInterrupt
                        raise RunInterrupted(state_path.parent, step)
                if reached:
                    break
            guard.check(saved)
    finally:
        bar.close()
    if average is not None:
        _check_average(average, model, probe or _Probe(task, data, cfg, device), cfg, warn=writes)
        average.copy_to(model)
    model.eval()
    return records


AVERAGE_GAP = 0.05  # how much lower on the training probe the kept average may score before the run warns


def _check_average(average: WeightAverage, model: nn.Module, probe: _Probe, cfg: TrainConfig, warn: bool) -> None:
    """Warn when the weight average scores well below the last weights on the training probe.

    The average suits a run that learned its task well before its last ``ema_horizon`` of
    steps (the maze default learns in its first quarter); in a much shorter run it mixes in
    weights from before the model learned (a 625-step maze run: 33% on held-out 9x9 mazes against
    97% for the last weights), and this says so instead of leaving it silent.
    """
    last = probe.accuracy(model, cfg.iters)
    with average.swapped_in(model):
        kept = probe.accuracy(model, cfg.iters)
    if warn and kept < last - AVERAGE_GAP:
        warnings.warn(f"the weight average (train.ema_horizon={cfg.ema_horizon}) scores {kept:.1%} on {len(probe.inputs)} "
                      f"training samples against {last:.1%} for the last weights; the run keeps the average: train longer, "
                      f"or set train.ema_horizon=null to keep the last weights.", RuntimeWarning, stacklevel=3)
