"""Seconds per training step of each model of a study, measured side by side in one process.

A study's own wall seconds compare models only when the machine was quiet; this measures every
model's real training step again, interleaved, so that load drifts hit all alike.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from benchmark.analysis.study_tables import _steps, _table
from benchmark.infra.rundir import RunDir

if TYPE_CHECKING:
    from benchmark.analysis.study import StudyRun


def step_costs(runs: list[StudyRun], steps: int = 5, repeats: int = 3, threads: int = 1) -> pd.DataFrame:
    """Seconds per training step of each (task, model), measured in this process, interleaved.

    The runs' own wall seconds are only comparable when the machine was quiet; a study whose jobs
    shared the cores with other work is timed again here: for the first run of each model, its
    own training step (``benchmark.training.step.train_step`` on ``progressive_loss`` with the run's alpha, iterations,
    detached extra iterations, initial-state noise, loop regulariser, clipping, optimizer and precision) on
    ``train.batch_size`` samples of its training size, ``steps`` steps per measurement after one
    warm-up step, the models interleaved within each of ``repeats`` rounds (A B C A B C) so that
    load drifts hit all alike. The medians then turn steps to target into seconds at equal load.
    """
    import torch

    from benchmark.infra.checkpoint import load_checkpoint
    from benchmark.config.schema import TrainConfig
    from benchmark.training.loop_regulariser import training_regulariser
    from benchmark.training.losses import progressive_loss
    from benchmark.training.optim import make_optimizer
    from benchmark.training.step import train_step

    torch.set_num_threads(threads)
    first: dict[tuple[str, str], StudyRun] = {}
    for r in sorted(runs, key=lambda r: (r.task, r.model, r.seed)):
        first.setdefault((r.task, r.model), r)
    steppers = {}
    for key, r in first.items():
        cfg = OmegaConf.create(RunDir(r.run_dir).read_config())
        model, ckpt = load_checkpoint(RunDir(r.run_dir).model, map_location="cpu")
        model.precision = cfg.get("precision", "fp32")
        train = TrainConfig(**OmegaConf.to_container(cfg.train, resolve=True))
        detach_extra = train.detach_extra if model.iteration_limit is None else 0  # as fit does
        x, y = ckpt.task.dataset(r.train_size, train.batch_size, seed=0).tensors
        optimizer, generator = make_optimizer(model, train), torch.Generator().manual_seed(0)

        def step(model=model, train=train, x=x, y=y, optimizer=optimizer, generator=generator, task=ckpt.task,
                 detach_extra=detach_extra, regulariser=training_regulariser(train)) -> None:
            train_step(model, lambda: progressive_loss(model, task, x, y, train.iters, train.alpha, generator, detach_extra,
                                                       train.progressive_min_iters, train.init_noise),
                       optimizer, clip=train.clip, regulariser=regulariser)

        model.train()
        step()  # warm-up: oneDNN picks its kernels on the first call
        steppers[key] = step
    times: dict[tuple[str, str], list[float]] = {key: [] for key in steppers}
    for _ in range(repeats):
        for key, step in steppers.items():
            start = time.perf_counter()
            for _ in range(steps):
                step()
            times[key].append((time.perf_counter() - start) / steps)
    return pd.DataFrame([dict(task=task, model=model, seconds_per_step=float(np.median(t)), repeats=t, threads=threads)
                         for (task, model), t in times.items()])


def step_cost_markdown(costs: pd.DataFrame, speed: pd.DataFrame) -> str:
    merged = speed.merge(costs, on=["task", "model"])
    return _table(["task", "model", "seconds per step (median)", "steps to target: median", "seconds to target at that cost: median"],
                  ([r.task, r.model, f"{r.seconds_per_step:.3f}", _steps(r.steps_median),
                    _steps(r.steps_median) if not math.isfinite(r.steps_median) else f"{r.steps_median * r.seconds_per_step:.0f}"]
                   for r in merged.itertuples()))
