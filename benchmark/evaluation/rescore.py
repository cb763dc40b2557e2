"""``python -m benchmark.evaluate RUN_DIR ...``: re-score a finished run's checkpoint.

    python -m benchmark.evaluate RUN_DIR --sizes 33 59 --iters 300 --n 200
    python -m benchmark.evaluate RUN_DIR --data mazes.npz --iters 300
    python -m benchmark.evaluate RUN_DIR --sizes 33 59 --iters 1000 --halt 20 [--compare-halting] [--histogram FILE.png]
    python -m benchmark.evaluate RUN_DIR --sizes 9 --iters 20 --n 4000 --fold     # the folded model

``--sizes`` regenerates test sets of the run's task (its first ``n`` samples are the run's own
test samples); ``--data`` scores an external ``.npz`` file holding exactly the arrays ``inputs``
(float, ``(N, C, *S)``) and ``targets`` (integer, ``(N, *S)``) in the task's format, e.g. mazes
from another generator. Either writes the per-iteration table and JSON of ``eval.json`` into
the run directory, under a name holding every setting that changes the numbers, so reruns with
other settings never overwrite each other.

``--halt K`` stops each sample once its prediction has been a fixed point or a 2-cycle for K
iterations (``benchmark.evaluation.extrapolation.settle_and_score``) and writes where each sample settled into
the JSON. ``--compare-halting`` also evaluates every size without halting, one after the other
in this process, and prints the time each took, their ratio and whether the accuracy curves
agree; ``--histogram FILE.png`` draws the settling iterations per size. ``--fold`` scores the
model folded into explicit loops (``benchmark.analysis.folding.fold`` at the run's ``eval.fold_threshold``,
or at ``--fold-threshold T``) instead, e.g. on enough samples to measure a small fold change
against the unfolded scores.

Every check runs before anything is computed or written; a user error ends with one sentence
on stderr and exit status 2. Nothing read from the run directory chooses code: the checkpoint
names registered classes only, and ``config.yaml`` is read as plain YAML.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import NoReturn

import numpy as np
import torch

from benchmark.infra import precision
from benchmark.models import registry
from benchmark.models.contract import FoldableModel, IterativeModel
from benchmark.infra.checkpoint import Checkpoint, load_checkpoint
from benchmark.config.schema import ConfigError, EvalConfig, data_seeds, exit_on_user_error
from benchmark.evaluation.extrapolation import evaluate, format_halting, format_table
from benchmark.analysis.folding import fold
from benchmark.infra.results import DataSource, EvalResult, Reevaluation, ResultFormatError
from benchmark.infra.rundir import RunDir
from tasks.base import Task, TaskError
from tasks.fileio import check_writable_dir, npz_arrays


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """argparse's own errors (unknown flags, non-integers) as one line and exit 2."""
        self.exit(2, f"error: {message}.\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m benchmark.evaluate", description="Evaluate a run's checkpoint on other test sizes or on an external dataset.")
    parser.add_argument("run_dir", type=Path, help="a finished run's directory (model.pt and config.yaml)")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--sizes", type=int, nargs="+", help="test sizes of the run's task, generated from the run's test seed")
    what.add_argument("--data", type=Path, help="an .npz file with arrays 'inputs' and 'targets' in the task's format")
    what.add_argument("--splits", nargs="+", metavar="NAME",
                      help="ladders or splits of configs/splits.yaml, or .npz files, scored into one ladder_<name>.json "
                           "(benchmark.evaluation.ladder; defaults there: --n 50 per split, --halt 20)")
    parser.add_argument("--validation", action="store_true",
                        help="with --splits: draw every split again from its validation seed (10^12 + its seed), "
                             "never a test split's samples: for choosing a recipe or an iteration count")
    parser.add_argument("--iters", type=int, default=100, help="test-time iterations (all of 1..iters are scored)")
    parser.add_argument("--n", type=int, default=1000, help="test samples per size (with --sizes)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--halt", type=int, default=0, metavar="K",
                        help="stop a sample once its prediction is unchanged (or a 2-cycle) for K iterations (0: never)")
    parser.add_argument("--compare-halting", action="store_true",
                        help="with --halt: also evaluate without halting and print the time of each and their ratio")
    parser.add_argument("--histogram", type=Path, default=None, metavar="FILE.png",
                        help="with --halt: a histogram of the settling iterations per size")
    parser.add_argument("--fold-threshold", type=float, default=None, metavar="T",
                        help="with --fold: fold at layer similarity |cos| >= T (0 < T <= 1) instead of the run's eval.fold_threshold")
    parser.add_argument("--fold", action="store_true",
                        help="score the model folded into explicit loops (benchmark.analysis.folding, at the run's "
                             "eval.fold_threshold) instead; the file name ends in _folded")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present, else the CPU), cpu, cuda or cuda:N")
    parser.add_argument("--precision", default=None, choices=precision.PRECISIONS,
                        help="fp32, bf16 or auto (bf16 where native); default: the precision the run trained in")
    return parser


def _device(name: str) -> torch.device:
    from benchmark.pipelines.algorithmic import pick_device  # the one place devices are chosen and refused

    return pick_device(name)


def _run_config(run_dir: Path) -> dict:
    """The few plain fields of ``config.yaml`` this command needs: task target and options, seed, train.iters."""
    path = RunDir(run_dir).config
    try:
        cfg = RunDir(run_dir).read_config()
    except ResultFormatError as err:
        raise ConfigError(str(err)) from err
    ok = (isinstance(cfg, dict) and isinstance(cfg.get("task"), dict) and isinstance(cfg.get("train"), dict)
          and all(isinstance(v, int) and not isinstance(v, bool) for v in (cfg.get("seed"), cfg["train"].get("iters"))))
    if not ok or cfg["seed"] < 0 or cfg["train"]["iters"] < 1:
        raise ConfigError(f"{path} is not a run's config: it needs a task, an integer seed >= 0 and train.iters >= 1.")
    return cfg


def _fold_threshold(cfg: dict, run_dir: Path, needed: bool) -> float | None:
    """The run's own ``eval.fold_threshold`` (the default when its config has none), a number in
    (0, 1]; a value that is not is one sentence when ``needed`` (no ``--fold-threshold``), else None."""
    eval_cfg = cfg.get("eval") if isinstance(cfg.get("eval"), dict) else {}
    value = eval_cfg.get("fold_threshold", EvalConfig.fold_threshold)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 < value <= 1.0:
        return float(value)
    if needed:
        raise ConfigError(f"{RunDir(run_dir).config} has eval.fold_threshold {value!r}, not a number in (0, 1]: "
                          f"give --fold-threshold T with 0 < T <= 1.")
    return None


def _check_same_task(ckpt: Checkpoint, cfg: dict, run_dir: Path) -> None:
    """The checkpoint's task (name and options) must be the one the run directory's config names."""
    task_cfg = dict(cfg["task"])
    target = task_cfg.pop("_target_", None)
    name = registry.name_of_path("task", target)
    if (name, task_cfg) != (ckpt.task_name, ckpt.task_args):
        raise ConfigError(f"{RunDir(run_dir).model} was trained on task {ckpt.task_name} {ckpt.task_args} but "
                          f"{RunDir(run_dir).config} names task {name} {task_cfg}: the checkpoint is not this run's.")


def _size_of(task: Task, shape: tuple[int, ...]) -> int:
    """The size whose spatial shape is ``shape`` (the smallest, if several share it)."""
    for size in range(1, max(shape, default=0) + 1):
        try:
            task.check_size(size)
        except TaskError:
            continue
        if tuple(task.shape(size)) == tuple(shape):
            return size
    raise ConfigError(f"--data: no {task.name} size has puzzles of spatial shape {tuple(shape)}.")


def _external_data(task: Task, path: Path) -> tuple[int, torch.utils.data.TensorDataset, str]:
    """``(size, dataset, sha256)`` of an external ``.npz`` file, checked against the task's format.

    Its file type, size and array headers are checked first (``tasks.fileio.npz_arrays``), so a
    pipe, a device or a small file declaring huge arrays is refused before anything is read."""
    try:
        npz_arrays(path)
    except ValueError as err:
        raise ConfigError(f"--data {err}") from err
    try:
        raw = path.read_bytes()
        with np.load(path, allow_pickle=False) as f:
            keys = set(f.files)
            if keys != {"inputs", "targets"}:
                raise ConfigError(f"--data {path} must hold exactly the arrays 'inputs' and 'targets', got {sorted(keys)}.")
            inputs, targets = f["inputs"], f["targets"]
    except ConfigError:
        raise
    except Exception as err:  # missing, a directory, not an npz, pickled objects: all unreadable
        raise ConfigError(f"--data {path} is not a readable .npz file of arrays 'inputs' and 'targets' ({type(err).__name__}).") from err
    spec = task.spec
    if inputs.ndim != 2 + spec.dims or inputs.shape[0] < 1 or inputs.shape[1] != spec.in_channels:
        raise ConfigError(f"--data inputs must be (N >= 1, {spec.in_channels}, {', '.join('S' * spec.dims)}) "
                          f"for task {task.name}, got shape {inputs.shape}.")
    if not np.issubdtype(inputs.dtype, np.floating) or not np.issubdtype(targets.dtype, np.integer):
        raise ConfigError(f"--data inputs must be floats and targets integers, got {inputs.dtype} and {targets.dtype}.")
    size = _size_of(task, inputs.shape[2:])
    try:
        # Casting cannot hide a bad value: out-of-int64 targets do not occur for class indices,
        # and float64 inputs outside float32 become infinite, which check_arrays refuses.
        with np.errstate(over="ignore"):
            inputs32 = inputs.astype(np.float32)
        task.check_arrays(size, inputs32, targets.astype(np.int64))
    except TaskError as err:
        raise ConfigError(f"--data {path}: {err}") from err
    data = torch.utils.data.TensorDataset(torch.from_numpy(inputs32), torch.from_numpy(targets.astype(np.int64)))
    return size, data, hashlib.sha256(raw).hexdigest()


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:40] or "data"


def _precision_tag(model: torch.nn.Module, cfg: dict) -> str:
    """The file-name part for the precision: empty when it is the one the run trained in (fp32
    for runs from before the option), else ``_fp32`` or ``_bf16``."""
    used = model.precision if isinstance(model, IterativeModel) else "fp32"
    return "" if used == cfg.get("precision", "fp32") else f"_{used}"


def load_run(run_dir: Path, device_name: str, precision_name: str | None = None) -> tuple[torch.nn.Module, Checkpoint, dict, torch.device]:
    """A finished run's model (on the CPU), checkpoint, plain config and the device asked for;
    every way the directory can be wrong is a ``ConfigError`` of one sentence.

    The model runs in ``precision_name`` (``auto``, ``fp32``, ``bf16``; resolved for the device),
    or with None in the precision the run recorded (fp32 for runs from before the option)."""
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir} is not a directory: give the directory of a finished run.")
    if not RunDir(run_dir).model.is_file():
        raise ConfigError(f"{run_dir} has no {RunDir.MODEL}: give the directory of a finished run.")
    device = _device(device_name)
    cfg = _run_config(run_dir)
    model, ckpt = load_checkpoint(RunDir(run_dir).model, map_location="cpu")
    _check_same_task(ckpt, cfg, run_dir)
    if precision_name is None:
        precision_name = cfg.get("precision", "fp32")
    if precision_name not in precision.PRECISIONS:
        raise ConfigError(f"the precision must be one of {', '.join(precision.PRECISIONS)}, got {precision_name!r}.")
    if isinstance(model, IterativeModel):
        model.precision = precision.resolve(precision_name, device)
    return model, ckpt, cfg, device


def failure_script_parser(script: str, description: str, task_type: type[Task], size_help: str, puzzles: str,
                          iters_default: str) -> argparse.ArgumentParser:
    """For the failure scripts: the parser of their common arguments, a run directory of a
    ``task_type`` task, ``--size``, ``--n`` of its own test ``puzzles`` and ``--iters`` (None:
    the run's ``iters_default`` setting); its errors are one line and exit status 2."""
    parser = _Parser(prog=f"python -m {script}", description=description)
    parser.add_argument("run_dir", type=Path, help=f"a finished {task_type.name} run (model.pt and config.yaml)")
    parser.add_argument("--size", type=int, required=True, help=size_help)
    parser.add_argument("--n", type=int, default=200, help=f"test {puzzles} (the run's own first n of that size)")
    parser.add_argument("--iters", type=int, default=None, help=f"test-time iterations (default: the run's {iters_default})")
    return parser


def with_generator(task: Task, generator: Sequence[str] | None) -> Task:
    """The run's task, or with ``generator`` (maze generator names: one, or several for a
    mixture) a copy of it with that generator and every other option kept; a task without a
    generator option is a ``ConfigError``, an unknown name a ``TaskError``, each one sentence."""
    if generator is None:
        return task
    if "generator" not in {f.name for f in fields(task.options)}:
        raise ConfigError(f"--generator needs a task with a generator option (maze), and the run's task is {task.name}.")
    return type(task)(**{**asdict(task.options), "generator": list(generator)})  # one name in a list is that name


def load_test_set(run_dir: Path, task_type: type[Task], size: int, n: int,
                  generator: Sequence[str] | None = None) -> tuple[torch.nn.Module, Task, dict, torch.utils.data.TensorDataset]:
    """For the failure scripts: a finished run of a ``task_type`` task (on the CPU), its task
    (``with_generator`` another maze generator, if one is given), its plain config and the first
    ``n`` test puzzles of ``size`` of that task (the run's test seed: without ``generator`` its own);
    a run of another task, an unknown generator or a size the task refuses is one sentence."""
    model, ckpt, cfg, _ = load_run(run_dir, "cpu")
    if not isinstance(ckpt.task, task_type):
        raise ConfigError(f"{run_dir} was trained on {ckpt.task_name}: give a {task_type.name} run.")
    task = with_generator(ckpt.task, generator)
    try:
        task.check_size(size)
    except TaskError as err:
        raise ConfigError(str(err)) from err
    return model, task, cfg, task.dataset(size, n, seed=data_seeds(cfg["seed"])[1])


def run(argv: list[str] | None = None) -> dict:
    """Parse, check everything, evaluate, write; returns the results written. Raises ``ConfigError``."""
    args = _parser().parse_args(argv)
    if args.splits is not None:  # a ladder of frozen splits: its own checks, defaults and files
        from benchmark.evaluation.ladder import run_ladder

        return run_ladder(args, argv)
    if args.validation:
        raise ConfigError("--validation belongs with --splits (the frozen splits' validation counterparts); "
                          "--sizes already scores the run's own validation seeds in training runs.")
    for flag, value in (("--iters", args.iters), ("--n", args.n), ("--batch-size", args.batch_size)):
        if value < 1:
            raise ConfigError(f"{flag} must be a positive integer, got {value}.")
    if args.halt < 0:
        raise ConfigError(f"--halt must be an integer >= 0 (0: no halting), got {args.halt}.")
    if args.fold_threshold is not None and not (args.fold and 0.0 < args.fold_threshold <= 1.0):
        raise ConfigError(f"--fold-threshold needs --fold and a value in (0, 1], got {args.fold_threshold}"
                          f"{'' if args.fold else ' without --fold'}.")
    if args.halt == 0 and (args.compare_halting or args.histogram is not None):
        raise ConfigError("--compare-halting and --histogram need halting: give --halt K with K >= 1.")
    if args.histogram is not None and (args.histogram.suffix.lower() != ".png" or not args.histogram.parent.is_dir()):
        raise ConfigError(f"--histogram must name a .png file in an existing directory, got {args.histogram}.")
    # The results must have a place to go before anything is loaded or computed: a run directory
    # that cannot be written (read-only, a full disk's quota aside) is refused now, not after the work.
    if args.run_dir.is_dir():
        check_writable_dir(args.run_dir, "the evaluation results")
    if args.histogram is not None:
        check_writable_dir(args.histogram.parent, "the histogram")
    model, ckpt, cfg, device = load_run(args.run_dir, args.device, args.precision)
    task = ckpt.task
    if args.fold and not (isinstance(model, FoldableModel) and model.bank.learns_coefficients):  # as in the run (run.py): no learned bank, no fold
        raise ConfigError(f"--fold needs a model whose template bank learns its mixing coefficients "
                          f"(shared, depth_k2, ...); {args.run_dir} holds model '{ckpt.model_args.get('name')}'.")
    if args.fold:
        own = _fold_threshold(cfg, args.run_dir, needed=args.fold_threshold is None)
        threshold = own if args.fold_threshold is None else args.fold_threshold

    if args.data is not None:
        size, data, digest = _external_data(task, args.data)
        test_sets = {size: data}
        name = f"eval_data-{_safe(args.data.stem)}-{digest[:12]}_iters{args.iters}{_precision_tag(model, cfg)}.json"
        title = f"{args.run_dir} on {args.data} ({len(data)} samples of size {size})"
    else:
        for size in args.sizes:
            try:
                task.check_size(size)
            except TaskError as err:
                raise ConfigError(str(err)) from err
        sizes = list(dict.fromkeys(args.sizes))
        # Test data as the run made it: its first n samples are the run's own test samples.
        test_sets = {s: task.dataset(s, args.n, seed=data_seeds(cfg["seed"])[1]) for s in sizes}
        name = f"eval_sizes{'-'.join(map(str, sizes))}_iters{args.iters}_n{args.n}{_precision_tag(model, cfg)}.json"
        title = f"{args.run_dir} ({args.n} samples per size)"

    if args.fold:
        # Fold at the threshold the run itself folded with, so this re-scores the run's own fold
        # on other or more samples (e.g. enough to resolve a fold change of 0.05 points).
        # --fold-threshold folds at another threshold, under a name that says which.
        model, report = fold(model, threshold)
        name = name.removesuffix(".json") + ("_folded.json" if threshold == own else f"_folded{threshold:g}.json")
        title += f", folded into {report.num_loops} loop(s)"
    if args.halt:
        name = name.removesuffix(".json") + f"_halt{args.halt}.json"
    model = model.to(device)
    if args.compare_halting:
        results = compare_halting(model, task, test_sets, args.iters, cfg["train"]["iters"], args.batch_size, device, args.halt)
    else:
        results = evaluate(model, task, test_sets, args.iters, cfg["train"]["iters"], args.batch_size, device, args.halt)
    source = None if args.data is None else DataSource(file=str(args.data), sha256=digest, samples=len(test_sets[size]))
    results = replace(results, reevaluation=Reevaluation(
        task=ckpt.task_name, model=ckpt.model_args.get("name", ckpt.model_name), data=source))
    results.write(args.run_dir / name)
    print(format_table(results, title=title))
    if results.halting is not None:
        print(format_halting(results))
    print(f"written {args.run_dir / name}")
    if args.histogram is not None:
        from benchmark.analysis.plots import plot_settling  # imported late: matplotlib only when drawing

        print(f"written {plot_settling(results, args.histogram)}")
    return results


def compare_halting(model: torch.nn.Module, task: Task, test_sets: dict[int, torch.utils.data.TensorDataset], iters: int,
                    train_iters: int, batch_size: int, device: torch.device, halt_after: int) -> EvalResult:
    """``evaluate`` with halting, each size timed against the same samples evaluated without
    halting just before it in this process; prints one row per size and returns the halting result.

    Both the wall-clock time and this process's CPU time are measured: on a shared machine the
    CPU-time ratio is the steadier one (other jobs stretch wall time, not this process's CPU
    time); on a GPU only the wall time counts.
    """
    rows, halted = [], []
    header = (f"{'size':>6} {'without s':>10} {'with s':>8} {'ratio':>6} {'CPU ratio':>10} {'mean iters run':>15} "
              f"{'acc@T without':>14} {'acc@T with':>11} {'curves':>8}")
    for size, data in test_sets.items():
        timed = []
        for k in (0, halt_after):
            wall, cpu = time.perf_counter(), time.process_time()
            result = evaluate(model, task, {size: data}, iters, train_iters, batch_size, device, k)
            timed.append((result, time.perf_counter() - wall, time.process_time() - cpu))
        (plain, wall_plain, cpu_plain), (halt, wall_halt, cpu_halt) = timed
        run = halt.halting[size].iterations_run(halt_after, halt.iterations)
        differ = max(abs(a - b) for a, b in zip(plain.accuracy[size], halt.accuracy[size]))
        rows.append(f"{size:>6} {wall_plain:>10.2f} {wall_halt:>8.2f} {wall_plain / wall_halt:>5.2f}x "
                    f"{cpu_plain / max(cpu_halt, 1e-9):>9.2f}x {sum(run) / len(run):>15.1f} "
                    f"{plain.accuracy[size][-1]:>14.2%} {halt.accuracy[size][-1]:>11.2%} "
                    f"{'equal' if differ == 0 else f'{differ:.1%}':>8}")
        print(rows[-1] if len(rows) > 1 else "\n".join([header, "-" * len(header), rows[-1]]), flush=True)
        halted.append(halt)
    print(f"(time without / with halting after {halt_after}: the same samples, one after the other, T = {halted[0].iterations}; "
          f"curves: equal at every iteration, or the largest difference)")
    return replace(halted[0], accuracy={s: r.accuracy[s] for r in halted for s in r.accuracy},
                   halting={s: r.halting[s] for r in halted for s in r.halting})


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: user errors end with one sentence on stderr and exit status 2."""
    exit_on_user_error(run, argv)
