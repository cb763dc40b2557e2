"""One run: compose -> task -> data -> model -> training -> evaluation -> reports on disk.

``run(cfg)`` is importable and returns its metrics, so tests call it without a subprocess;
``python -m benchmark`` is a thin Hydra wrapper around it.
"""

from __future__ import annotations

import logging
import os
import random
import shlex
import sys
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from benchmark.models.contract import FoldableModel
from benchmark.infra import distributed, precision
from benchmark.infra.checkpoint import checkpoint_fields, save_checkpoint
from benchmark.config.schema import DEVICE_PATTERN, USER_ERRORS, ConfigError, check_config, data_seeds, n_validation, quiet_interrupts, size_name
from benchmark.evaluation.extrapolation import evaluate, format_table
from benchmark.analysis.folding import fold
from benchmark.training.loop_regulariser import training_regulariser
from benchmark.infra.results import EvalResult, FoldResult, RunInfo, Timing, code_version
from benchmark.infra.rundir import RunDir
from benchmark.analysis.similarity import similarity_record
from benchmark.training.trainer import NonFiniteLoss, fit
from benchmark.training.state import (RunInterrupted, check_resume, read_train_state)
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


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the system has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def job_threads(threads: int | None, launcher: DictConfig | None = None, multirun: bool = False,
                cores: int | None = None) -> int | None:
    """The CPU threads a job should use; None: leave torch's default (one per core).

    ``threads``: the run's ``threads`` setting, which always wins. Otherwise, in a sweep
    (``multirun``) whose ``launcher`` (Hydra's ``hydra.launcher`` node) runs jobs side by side on
    this machine, the cores are shared out: the joblib launcher with ``n_jobs`` = N gives each job
    max(1, cores // N) (N < 0 counts back from all cores, as joblib does: -1 is one job per core);
    the submitit launchers with ``cpus_per_task`` set give each job that many (a SLURM job gets
    those cores, however many the node has). Jobs that together ask for more threads than there
    are cores run many times slower than one after the other.
    """
    if threads is not None:
        return threads
    if not multirun or launcher is None:
        return None
    cores = cores or available_cores()
    if str(launcher.get("_target_", "")).endswith("JoblibLauncher"):
        n_jobs = launcher.get("n_jobs") or 1
        jobs = n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)
        return max(1, cores // jobs)
    if launcher.get("cpus_per_task") is not None:
        return int(launcher.cpus_per_task)
    return None


def apply_threads(cfg: DictConfig) -> int:
    """Set torch's intra- and inter-op threads as ``job_threads`` decides for this job; returns
    the intra-op thread count the job now has. Called once the config is checked, before any work."""
    launcher, multirun = None, False
    if HydraConfig.initialized():
        hydra_cfg = HydraConfig.get()
        launcher, multirun = hydra_cfg.launcher, hydra_cfg.mode == RunMode.MULTIRUN
    threads = job_threads(cfg.get("threads"), launcher, multirun)
    if threads is not None:
        torch.set_num_threads(threads)
        if torch.get_num_interop_threads() != threads:
            try:
                torch.set_num_interop_threads(threads)
            except RuntimeError:  # torch allows it once per process, before any inter-op work (a reused worker)
                log.debug("inter-op threads stay at %d", torch.get_num_interop_threads())
        log.info("CPU threads: %d%s", threads, "" if cfg.get("threads") is not None else " (cores shared among the sweep's parallel jobs)")
    return torch.get_num_threads()


def instantiate_user(node: DictConfig, **kwargs: Any) -> Any:
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
    task = instantiate_user(cfg.task)
    if not isinstance(task, Task):
        raise ConfigError(f"task._target_ must build a tasks.base.Task, got {type(task).__name__}.")
    return task


def resolve_precision(cfg: DictConfig, device: torch.device) -> str:
    """Replace ``cfg.precision`` ``auto`` by what it means on ``device`` (``benchmark.infra.precision``),
    so that config.yaml records the precision the run really used; returns it."""
    with open_dict(cfg):
        cfg.precision = precision.resolve(cfg.precision, device)
    log.info("precision: %s", cfg.precision)
    return cfg.precision


def build_model(cfg: DictConfig, task: Task) -> torch.nn.Module:
    return instantiate_user(cfg.model, spec=task.spec)


def new_run_dir(cfg: DictConfig, task_name: str, size: str | None = None) -> Path:
    """``<results_dir>/<task>/<size>/<model>/<run_id>``, made unique if it already exists.

    Every part was checked by ``check_config`` to be a single safe directory name, so the run
    directory always lies inside ``results_dir``. ``size`` is the size part of the path
    (default: ``size_name(cfg.size)``, the puzzle sizes; an image task passes its own label).
    """
    parent = Path(cfg.results_dir).expanduser() / task_name / (size or size_name(cfg.size)) / cfg.model.name
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


class TensorBoardLog:
    """``logger=tensorboard``: every number of each metrics record, as a TensorBoard scalar of the
    same name at the record's ``step``, in ``<run dir>/tensorboard/`` (metrics.jsonl, written as
    before, stays the source of truth; these event files are a view for TensorBoard users).

    ``purge_step``: when a run resumes from a training state saved after step s, records after s
    are logged again, so TensorBoard is told to hide what the interrupted process logged from
    step s + 1 on. Each record is flushed at once; the writer closes when this object is dropped.
    """

    def __init__(self, log_dir: Path, purge_step: int | None = None):
        from torch.utils.tensorboard import SummaryWriter  # the optional tensorboard package: imported only when asked for

        self.writer = SummaryWriter(str(log_dir), purge_step=purge_step)
        weakref.finalize(self, self.writer.close)

    def __call__(self, record: dict[str, Any]) -> None:
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(key, value, global_step=record["step"])
        self.writer.flush()


def metrics_logger(cfg: DictConfig, run_dir: Path, resumed_step: int | None = None) -> Callable[[dict], None] | None:
    """What a pipeline calls with each metrics record besides writing metrics.jsonl, as ``cfg.logger`` says
    (None: nothing). ``resumed_step``: the step of the training state a resumed run continues from."""
    if cfg.get("logger", "none") == "tensorboard":
        return TensorBoardLog(run_dir / "tensorboard", None if resumed_step is None else resumed_step + 1)
    return None


@dataclass(frozen=True)
class RunResult:
    """What ``run`` returns: where the run wrote, its evaluation, and its fold (None: nothing to fold)."""

    run_dir: Path
    evaluation: EvalResult
    fold: FoldResult | None


def run(cfg: DictConfig) -> RunResult | None:
    """Train and evaluate one model as ``cfg`` says; write the run directory; return its results.

    Everything a user can get wrong is checked before anything is generated or written. Under
    torchrun (``benchmark.infra.distributed``) every rank trains its share and rank 0 alone writes,
    evaluates and returns the results; the other ranks return None.
    """
    check_config(cfg)  # the config alone, before anything is built
    apply_threads(cfg)
    device = distributed.rank_device(pick_device(cfg.device))  # under torchrun: cuda:LOCAL_RANK, or the CPU
    joined = distributed.init(device)  # torchrun's process group (nothing without torchrun)
    try:
        return _run(cfg, device)
    finally:
        if joined:
            distributed.teardown()


def _run(cfg: DictConfig, device: torch.device) -> RunResult | None:
    """``run`` once the device is known (and, under torchrun, the process group joined); None on
    ranks other than 0, which train and stop before evaluation."""
    resolve_precision(cfg, device)
    resume_dir = check_resume(cfg)
    task = build_task(cfg)
    seed_everything(cfg.seed)
    model = build_model(cfg, task)
    model.precision = cfg.precision
    check_config(cfg, task, model)  # sizes, cache paths, iteration_limit: still before any write
    checkpoint_fields(model, cfg)  # an unregistered model or task class fails here, not after training

    state = None
    if resume_dir is not None:
        run_dir = resume_dir
        if RunDir(run_dir).state.exists():  # killed before the first state: training starts again there
            # The trainer's loader drops the last partial batch: epochs x (n_train // batch_size) steps in all.
            total = cfg.train.epochs * (cfg.size.n_train // cfg.train.batch_size)
            state = read_train_state(RunDir(run_dir).state, total_steps=total, model=model)
    elif distributed.is_main():  # rank 0 alone makes and writes the run directory
        run_dir = new_run_dir(cfg, task.name)
        RunDir(run_dir).write_config(OmegaConf.to_yaml(cfg, resolve=True))
        RunDir(run_dir).mark_incomplete(INCOMPLETE_NOTE)
    run_dir = distributed.broadcast_object(run_dir if distributed.is_main() else None) if resume_dir is None else run_dir
    log.info("run directory: %s", run_dir)
    try:
        result = _train_and_report(cfg, task, model, device, run_dir, state)
    except KeyboardInterrupt as err:
        if isinstance(err, RunInterrupted):
            raise
        raise RunInterrupted(run_dir, None) from err
    if result is not None:
        RunDir(run_dir).mark_complete()
    return result


INCOMPLETE_NOTE = "This run has not finished (interrupted, diverged or crashed); python -m benchmark ... resume=<this directory> continues it."


def _train_and_report(cfg: DictConfig, task: Task, model: torch.nn.Module, device: torch.device, run_dir: Path,
                      state: dict | None) -> RunResult | None:
    """Everything of ``run`` after the run directory exists: data, training (from ``state`` when
    resuming), model.pt, evaluation, folding, plots. Under torchrun, ranks other than 0 train
    (writing nothing) and return None."""
    cache = cfg.cache_dir if cfg.cache_dir else None
    seeds = data_seeds(cfg.seed)
    train_seed, test_seed = seeds
    main = distributed.is_main()
    t0 = time.perf_counter()
    with distributed.main_first():  # rank 0 fills the cache, the other ranks then read it
        train_data = task.dataset(cfg.size.train, cfg.size.n_train, seed=train_seed, cache_dir=cache)
    test_sizes = sorted({cfg.size.train, *cfg.size.test}) if main else []
    test_sets = {s: task.dataset(s, cfg.size.n_test, seed=test_seed, cache_dir=cache) for s in test_sizes}
    # Validation (docs/protocol.md): other seeds than the test sets; the iteration reported is chosen on it.
    n_val = n_validation(cfg.size)
    val_sets = {s: task.dataset(s, n_val, seed=seeds.validation, cache_dir=cache) for s in test_sizes} if n_val > 0 else None
    generation_s = time.perf_counter() - t0

    n_params = sum(p.numel() for p in model.parameters())
    if main:
        print(f"{task.name} / {model.name}: {n_params:,} parameters, training on size {cfg.size.train} "
              f"({len(train_data)} samples), device {device}"
              + (f", {distributed.world_size()} processes" if distributed.active() else ""), flush=True)
    regulariser = training_regulariser(cfg.train)
    t0 = time.perf_counter()
    if state is not None and main:
        print(f"resuming {run_dir} from step {state.step}", flush=True)
    records = fit(model, task, train_data, cfg.train, device, metrics_path=RunDir(run_dir).metrics, seed=cfg.seed,
                  regulariser=regulariser, progress=cfg.progress, state_path=RunDir(run_dir).state, resume=state,
                  on_record=metrics_logger(cfg, run_dir, state.step if state is not None else None) if main else None,
                  size=cfg.size.train)
    train_s = time.perf_counter() - t0
    if not main:
        return None
    save_checkpoint(model, cfg, RunDir(run_dir).model)

    def score(m: torch.nn.Module, validation: dict | None = None) -> EvalResult:
        return evaluate(m, task, test_sets, cfg.eval.iters, cfg.train.iters, cfg.eval.batch_size, device, cfg.eval.halt_after,
                        validation_sets=validation)

    t0 = time.perf_counter()
    # The run's own model is scored on validation too (the protocol's choice of iteration); the
    # folded model of analyse_sharing on the test sets only, so validation costs one more pass, not two.
    evaluation = score(model, val_sets)
    eval_s = time.perf_counter() - t0
    evaluation = replace(evaluation, run=RunInfo(
        task=task.name, model=model.name, parameters=n_params, seed=cfg.seed, train_size=cfg.size.train, device=str(device),
        final_train_acc=records[-1]["train_acc"] if records else None,
        seconds=Timing(generation=round(generation_s, 2), train=round(train_s, 2), eval=round(eval_s, 2)),
        precision=str(cfg.precision), code_version=code_version(),
    ))
    RunDir(run_dir).write_eval(evaluation)
    print(format_table(evaluation, title=f"accuracy ({task.name}, {model.name}, trained {cfg.train.iters} iterations)"))
    folding = analyse_sharing(model, evaluation, score, cfg.eval.fold_threshold, run_dir)

    from benchmark.analysis import plots as plot  # imported late: matplotlib is slow to import and only needed here

    plot.plot_run(run_dir)
    print(f"results in {run_dir}", flush=True)
    return RunResult(run_dir=run_dir, evaluation=evaluation, fold=folding)


def analyse_sharing(model: torch.nn.Module, before: EvalResult, score: Callable[[torch.nn.Module], EvalResult],
                    threshold: float, run_dir: Path) -> FoldResult | None:
    """Write ``lsm.json`` for every model; fold one that learned its coefficients and write ``fold.json``.

    ``before`` is the model's own evaluation; ``score`` evaluates a model on the run's test sets
    (up to the run's ``eval.iters``, so the folded loops run past the training depth). Returns
    the fold's result, or None when the model has no learned bank to fold.
    """
    RunDir(run_dir).write_lsm(similarity_record(model))
    if not isinstance(model, FoldableModel) or not model.bank.learns_coefficients:
        return None
    folded, report = fold(model, threshold)
    if not report.merged and model.iteration_limit == folded.iteration_limit:
        # Every weight kept its own tensor with scale 1: the folded network computes exactly what
        # the original does, so its accuracy is the original's and need not be measured again.
        after = replace(before, run=None)
        print(f"fold: no layers parallel within |cos| >= {threshold}; nothing folded (see lsm.json)")
    else:
        after = score(folded)
        print(format_table(after, title=f"folded into {report.num_loops} loop(s), "
                                        f"{report.block_weights_after} distinct block weights of {report.block_weights_before}"))
    result = FoldResult.compare(before, after, folded.name, report)
    RunDir(run_dir).write_fold(result)
    return result


EXIT_USER_ERROR, EXIT_DIVERGED, EXIT_INTERRUPTED = 2, 3, 130  # 130: the shell's status for Ctrl-C (128 + SIGINT)


def resume_command(run_dir: Path) -> str:
    """The command line that continues ``run_dir``: this process's overrides plus ``resume=``."""
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    kept = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in ("resume", "run_id")]
    return shlex.join(["python", "-m", "benchmark", *kept, f"resume={run_dir}"])


def run_or_exit(run_fn: Callable[[DictConfig], Any], cfg: DictConfig) -> Any:
    """``run_fn(cfg)``, the way the command line ends it: a user error is one sentence and exit
    status 2; a non-finite loss one sentence and 3; Ctrl-C one line saying how to resume and 130."""
    say = print if distributed.is_main() else (lambda *args, **kwargs: None)  # under torchrun, rank 0 speaks for all
    try:
        return run_fn(cfg)
    except USER_ERRORS as err:  # a bad option, a damaged file read, a place that cannot be written
        say(f"error: {err}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except NonFiniteLoss as err:
        say(f"error: {err}", file=sys.stderr)
        sys.exit(EXIT_DIVERGED)
    except RunInterrupted as err:
        quiet_interrupts()
        saved = f"training state saved at step {err.step}" if err.step is not None else "run directory kept"
        say(f"interrupted ({saved}); resume with: {resume_command(err.run_dir)}", file=sys.stderr, flush=True)
        sys.exit(EXIT_INTERRUPTED)
    except KeyboardInterrupt:
        quiet_interrupts()
        say("interrupted before the run directory was made; nothing was written.", file=sys.stderr, flush=True)
        sys.exit(EXIT_INTERRUPTED)


def main(cfg: DictConfig) -> RunResult | None:
    """Hydra entry (``run_or_exit``): user errors end with one sentence on stderr and exit status 2."""
    return run_or_exit(run, cfg)
