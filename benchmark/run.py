"""One run: compose -> task -> data -> model -> training -> evaluation -> reports on disk.

``run(cfg)`` is importable and returns its metrics, so tests call it without a subprocess;
``python -m benchmark`` is a thin Hydra wrapper around it.
"""

from __future__ import annotations

import json
import logging
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from benchmark import evaluate as evaluation
from benchmark.checkpoint import checkpoint_fields, save_checkpoint
from benchmark.config import DEVICE_PATTERN, ConfigError, check_config, data_seeds, size_name
from benchmark.sharing import analyse_run, loop_penalty
from benchmark.train import fit
from tasks.base import Task, TaskError

log = logging.getLogger(__name__)


def pick_device(name: str) -> torch.device:
    """``auto``: CUDA when present, else the CPU; ``cpu``, ``cuda`` or ``cuda:N`` (anything else is refused)."""
    if not isinstance(name, str) or DEVICE_PATTERN.fullmatch(name) is None:
        raise ConfigError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}.")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was asked for but CUDA is not available; use device=auto or device=cpu.")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device {name!r} was asked for but this machine has {torch.cuda.device_count()} CUDA device(s).")
    return device


def _instantiate(node: DictConfig, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` with the project's own user errors (a task's bad option) as one sentence.

    Only ``TaskError`` and ``ConfigError`` are user errors; any other exception from a
    constructor is a bug and keeps its traceback.
    """
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        if isinstance(err.__cause__, (TaskError, ConfigError)):
            raise ConfigError(str(err.__cause__)) from err
        raise


def build_task(cfg: DictConfig) -> Task:
    task = _instantiate(cfg.task)
    if not isinstance(task, Task):
        raise ConfigError(f"task._target_ must build a tasks.base.Task, got {type(task).__name__}.")
    return task


def build_model(cfg: DictConfig, task: Task) -> torch.nn.Module:
    return _instantiate(cfg.model, spec=task.spec)


def new_run_dir(cfg: DictConfig, task_name: str) -> Path:
    """``<results_dir>/<task>/<size>/<model>/<run_id>``, made unique if it already exists.

    Every part was checked by ``check_config`` to be a single safe directory name, so the run
    directory always lies inside ``results_dir``.
    """
    parent = Path(cfg.results_dir).expanduser() / task_name / size_name(cfg.size) / cfg.model.name
    parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", *(f"-{i}" for i in range(1, 1000))):
        try:
            path = parent / f"{cfg.run_id}{suffix}"
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise ConfigError(f"could not find a free run directory under {parent}.")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def run(cfg: DictConfig) -> dict:
    """Train and evaluate one model as ``cfg`` says; write the run directory; return eval results.

    Everything a user can get wrong is checked before anything is generated or written.
    """
    check_config(cfg)  # the config alone, before anything is built
    task = build_task(cfg)
    device = pick_device(cfg.device)
    seed_everything(cfg.seed)
    model = build_model(cfg, task)
    check_config(cfg, task, model)  # sizes, cache paths, iteration_limit: still before any write
    checkpoint_fields(model, cfg)  # an unregistered model or task class fails here, not after training

    run_dir = new_run_dir(cfg, task.name)
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    log.info("run directory: %s", run_dir)
    cache = cfg.cache_dir if cfg.cache_dir else None
    train_seed, test_seed = data_seeds(cfg.seed)
    t0 = time.perf_counter()
    train_data = task.dataset(cfg.size.train, cfg.size.n_train, seed=train_seed, cache_dir=cache)
    test_sizes = sorted({cfg.size.train, *cfg.size.test})
    test_sets = {s: task.dataset(s, cfg.size.n_test, seed=test_seed, cache_dir=cache) for s in test_sizes}
    generation_s = time.perf_counter() - t0

    n_params = sum(p.numel() for p in model.parameters())
    print(f"{task.name} / {model.name}: {n_params:,} parameters, training on size {cfg.size.train} "
          f"({len(train_data)} samples), device {device}", flush=True)
    weight = cfg.train.loop_weight
    regulariser = (lambda m: weight * loop_penalty(m)) if weight > 0 else None
    t0 = time.perf_counter()
    records = fit(model, task, train_data, cfg.train, device, metrics_path=run_dir / "metrics.jsonl",
                  seed=cfg.seed, regulariser=regulariser, progress=cfg.progress)
    train_s = time.perf_counter() - t0
    save_checkpoint(model, cfg, run_dir / "model.pt")

    t0 = time.perf_counter()
    results = evaluation.evaluate(model, task, test_sets, cfg.eval.iters, cfg.train.iters, cfg.eval.batch_size, device)
    eval_s = time.perf_counter() - t0
    results.update(
        task=task.name, model=model.name, parameters=n_params, seed=cfg.seed, train_size=cfg.size.train, device=str(device),
        final_train_acc=records[-1]["train_acc"] if records else None,
        seconds=dict(generation=round(generation_s, 2), train=round(train_s, 2), eval=round(eval_s, 2)),
    )
    (run_dir / "eval.json").write_text(json.dumps(results, indent=1))
    print(evaluation.format_table(results, title=f"accuracy ({task.name}, {model.name}, trained {cfg.train.iters} iterations)"))
    # Layer similarity for every model with a bank; folding and the folded model's accuracy for
    # those that learned their coefficients (lsm.json, fold.json).
    sharing = analyse_run(model, task, test_sets, cfg.eval.iters, cfg.train.iters, cfg.eval.batch_size, device,
                          cfg.eval.fold_threshold, run_dir, before=results)
    if sharing["fold"]:
        report = sharing["fold"]["report"]
        if not report["merged"]:
            print(f"fold: no layers parallel within |cos| >= {cfg.eval.fold_threshold}; nothing folded (see lsm.json)")
        else:
            print(evaluation.format_table(sharing["fold"], title=f"folded into {report['num_loops']} loop(s), "
                                          f"{report['block_weights_after']} distinct block weights of {report['block_weights_before']}"))
        results["fold"] = sharing["fold"]["summary"]

    from benchmark import plot  # imported late: matplotlib is slow to import and only needed here

    plot.plot_run(run_dir)
    print(f"results in {run_dir}", flush=True)
    results["run_dir"] = str(run_dir)
    return results


def main(cfg: DictConfig) -> dict | None:
    """Hydra entry: user errors end with one sentence on stderr and exit status 2."""
    try:
        return run(cfg)
    except (ConfigError, TaskError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
