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
import logging
import math
import time
from pathlib import Path
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from benchmark.bank import no_decay_parameters
from benchmark.config import TrainConfig
from tasks.base import Task

log = logging.getLogger(__name__)


def masked_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over valid positions; logits (N, classes, *S), targets/valid (N, *S)."""
    per_position = F.cross_entropy(logits, targets, reduction="none")
    return (per_position * valid).sum() / valid.sum().clamp_min(1)


def draw_progressive_split(iters: int, generator: torch.Generator, detach_extra: int = 0) -> tuple[int, int]:
    """(n, k): n detached iterations then k with gradient.

    n + k is uniform on [1, iters], then ``detach_extra`` > 0 adds U[0, detach_extra] more
    detached iterations in front: the model then also learns to hold a solved state beyond
    iters (against "overthinking"), at the price of cheap no-grad iterations only.
    """
    total = int(torch.randint(1, iters + 1, (1,), generator=generator))
    n = int(torch.randint(0, total, (1,), generator=generator))
    extra = int(torch.randint(0, detach_extra + 1, (1,), generator=generator)) if detach_extra > 0 else 0
    return n + extra, total - n


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
) -> list[dict]:
    """Train ``model`` on ``data``; append one JSON line per logged step to ``metrics_path``.

    Returns the logged records. ``regulariser`` is an optional callable ``model -> loss`` added
    to the objective (the loop-inducing regulariser of ``benchmark.sharing``).
    """
    generator = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(data, batch_size=cfg.batch_size, shuffle=True, drop_last=True, generator=generator)
    if len(loader) == 0:
        raise ValueError(f"train.batch_size ({cfg.batch_size}) is larger than the training set ({len(data)} samples).")
    optimizer = make_optimizer(model, cfg)
    total = cfg.epochs * len(loader)
    warmup = min(cfg.warmup_steps, total)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, total, warmup))
    m = cfg.iters
    # A fixed-depth model (feed-forward) has no iterations past its depth to learn holding in.
    detach_extra = cfg.detach_extra if getattr(model, "iteration_limit", None) is None else 0
    model.to(device).train()
    records: list[dict] = []
    metrics_file = open(metrics_path, "a") if metrics_path else None
    step, seen, batches, correct_window, count_window, loss_window = 0, 0, 0, 0, 0, 0.0
    start = time.perf_counter()
    bar = tqdm(total=total, desc="train", unit="step", disable=not progress, dynamic_ncols=True)
    try:
        for epoch in range(cfg.epochs):
            for inputs, targets in loader:
                inputs, targets = inputs.to(device), targets.to(device)
                valid = task.valid(inputs)
                loss = torch.zeros((), device=device)
                logits_full = None
                if cfg.alpha < 1:
                    logits_full = model(inputs, m)
                    loss = loss + (1 - cfg.alpha) * masked_cross_entropy(logits_full, targets, valid)
                if cfg.alpha > 0:
                    n, k = draw_progressive_split(m, generator, detach_extra)
                    with torch.no_grad():
                        state = model.run(inputs, n) if n > 0 else model.initial_state(inputs)
                    state = model.run(inputs, k, state=state.detach(), start=n)
                    logits_prog = model.head(state)
                    loss = loss + cfg.alpha * masked_cross_entropy(logits_prog, targets, valid)
                if regulariser is not None:
                    loss = loss + regulariser(model)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.clip > 0:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
                optimizer.step()
                scheduler.step()
                step += 1
                seen += len(inputs)
                batches += 1
                loss_window += loss.item()
                log_now = step % cfg.log_every == 0 or step == total
                # Training accuracy at iters: free when the full term was computed; with
                # alpha = 1 it costs an extra pass, so it is then measured on logged steps only.
                if logits_full is not None or log_now:
                    with torch.no_grad():
                        if logits_full is None:
                            logits_full = model(inputs, m)
                        correct_window += int(task.score(inputs, targets, logits_full.argmax(1)).sum())
                    count_window += len(inputs)
                bar.update()
                if log_now:
                    elapsed = time.perf_counter() - start
                    record = dict(
                        step=step, epoch=epoch + 1, samples=seen, loss=loss_window / batches,
                        train_acc=correct_window / max(1, count_window), lr=scheduler.get_last_lr()[0],
                        seconds=round(elapsed, 3), samples_per_s=round(seen / elapsed, 1),
                    )
                    records.append(record)
                    if metrics_file:
                        metrics_file.write(json.dumps(record) + "\n")
                        metrics_file.flush()
                    bar.set_postfix(loss=f"{record['loss']:.4f}", acc=f"{record['train_acc']:.3f}", sps=record["samples_per_s"])
                    batches, correct_window, count_window, loss_window = 0, 0, 0, 0.0
    finally:
        bar.close()
        if metrics_file:
            metrics_file.close()
    model.eval()
    return records
