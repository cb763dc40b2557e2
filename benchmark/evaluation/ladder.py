"""``python -m benchmark.evaluate RUN_DIR --splits LADDER|SPLIT|FILE.npz ...``: a checkpoint on a ladder.

    python -m benchmark.evaluate RUN_DIR --splits maze_ood                       # generator x size
    python -m benchmark.evaluate RUN_DIR --splits maze_loops maze_dead_end_33    # ladders and splits mixed
    python -m benchmark.evaluate RUN_DIR --splits maze_ood other_lib_15.npz      # plus mazes made elsewhere
    python -m benchmark.evaluate RUN_DIR --splits maze_ood --n 1000 --iters 1000 --halt 20   # whole splits

Each name is a ladder or a split of ``configs/splits.yaml`` (``benchmark.evaluation.splits``) or a
``.npz`` file of arrays ``inputs`` and ``targets`` in the run's task format, checked as ``--data``
checks it (``rescore._external_data``). Every split is scored through the halting machinery of
``--halt`` (``benchmark.evaluation.extrapolation.settle_and_score``): each sample stops once its
answer is a fixed point or a 2-cycle for K iterations, so settled sizes cost what settling costs.

Defaults (a flag given on the command line wins): the first ``LADDER_N`` = 50 samples of each
split (``--n N`` scores up to the split's count: the first N samples of a split are the split
generated with count N), ``--halt LADDER_HALT`` = 20 (``--halt 0``: no halting), ``--iters 100``.
The optional splits (99x99 mazes) join a ladder only when named.

Writes into the run directory, through ``RunDir.ladder``: ``ladder_<name>.json``
(``benchmark.infra.ladder.LadderResult``), the heatmap ``ladder_<name>.png`` (rows: the options
that vary between the splits, e.g. the generator; columns: sizes; the accuracy at the chosen
iteration, ``final``: the last iteration scored, with halting each sample's settled answer) and
``ladder_<name>_curves.png`` (accuracy per iteration, one panel per size, one line per row).
``<name>`` holds the names asked for and every setting that changes the numbers
(``maze_ood_iters100_n50_halt20``). An unknown name, a split of another task or format than the
run's, or a flag that does not apply is one sentence, exit status 2, before anything is computed
or written.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from benchmark.config.schema import ConfigError
from benchmark.evaluation.extrapolation import settle_and_score
from benchmark.evaluation.splits import load_manifest
from benchmark.infra.ladder import LadderResult, SplitScore
from benchmark.infra.rundir import RunDir
from benchmark.models.contract import ScoredModel
from tasks.base import Task
from tasks.fileio import check_writable_dir

MAX_LABEL = 120  # longer ladder labels (many split names) become a count and a digest; the JSON lists every split
LADDER_N = 50  # samples per split by default: the maze_ood ladder in under 5 minutes on two CPU cores
LADDER_HALT = 20  # halting patience by default (docs/evaluation.md measured K = 20)
# Options that set the format of the data, not the puzzles: a split must share them with the run.
FORMAT_OPTIONS = {"maze": ("rendering",)}


def _given(argv: list[str] | None) -> set[str]:
    """The destinations of the flags given on the command line (not left at their default)."""
    from benchmark.evaluation.rescore import _parser

    parser = _parser()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    for group in parser._mutually_exclusive_groups:
        group.required = False
    return set(vars(parser.parse_args(sys.argv[1:] if argv is None else argv)))


def _check_format(split_task: Task, run_task: Task, name: str) -> None:
    for key in FORMAT_OPTIONS.get(run_task.name, ()):
        ours, theirs = getattr(split_task.options, key), getattr(run_task.options, key)
        if ours != theirs:
            raise ConfigError(f"split {name} is made with {key}={ours} but the run was trained with {key}={theirs}: "
                              f"give a run of the splits' format.")


def run_ladder(args: argparse.Namespace, argv: list[str] | None = None) -> LadderResult:
    """``--splits``: check everything, score every split, write the JSON and both plots; returns the result."""
    from benchmark.evaluation.rescore import _external_data, _precision_tag, _safe, load_run

    given = _given(argv)
    n = args.n if "n" in given else LADDER_N
    halt = args.halt if "halt" in given else LADDER_HALT
    for flag, value in (("--iters", args.iters), ("--n", n), ("--batch-size", args.batch_size)):
        if value < 1:
            raise ConfigError(f"{flag} must be a positive integer, got {value}.")
    if halt < 0:
        raise ConfigError(f"--halt must be an integer >= 0 (0: no halting), got {halt}.")
    extra = [flag for flag, dest in (("--fold", "fold"), ("--fold-threshold", "fold_threshold"),
                                     ("--compare-halting", "compare_halting"), ("--histogram", "histogram")) if dest in given]
    if extra:
        raise ConfigError(f"--splits scores the model as trained and draws its own plots; {' and '.join(extra)} "
                          f"belong with --sizes or --data.")
    names = [a for a in args.splits if not a.endswith(".npz")]
    files = [Path(a) for a in args.splits if a.endswith(".npz")]
    validation = bool(getattr(args, "validation", False))
    if validation and files:
        raise ConfigError("--validation draws each frozen split again from its validation seed; an .npz file has no "
                          "seed to draw from: give ladder or split names only.")
    manifest = load_manifest()
    splits = manifest.resolve(names)  # an unknown name: one sentence, before anything is loaded
    if validation:  # same axes, other samples: for choosing a recipe without the test splits
        splits = [split.validation() for split in splits]
    tasks = {s.name: s.check() for s in splits}
    if args.run_dir.is_dir():
        check_writable_dir(args.run_dir, "the ladder results")
    model, ckpt, cfg, device = load_run(args.run_dir, args.device, args.precision)
    for split in splits:
        if split.task != ckpt.task_name:
            raise ConfigError(f"split {split.name} is a {split.task} split but {args.run_dir} was trained on "
                              f"{ckpt.task_name}: give a ladder of the run's task.")
        _check_format(tasks[split.name], ckpt.task, split.name)
    external = {path: _external_data(ckpt.task, path) for path in files}  # each file checked before any scoring

    label = "-".join(_safe(a) for a in names) + "_validation" * validation + "".join(
        f"{'-' if names or i else ''}data-{_safe(p.stem)}-{external[p][2][:12]}" for i, p in enumerate(files))
    if len(label) > MAX_LABEL:  # many names: a file name must stay under the file system's 255 bytes
        digest = hashlib.sha256(label.encode()).hexdigest()[:12]
        label = f"{len(names) + len(files)}-splits-{digest}" + "_validation" * validation
    stem = f"{label}_iters{args.iters}_n{n}_halt{halt}{_precision_tag(model, cfg)}"
    limit = model.iteration_limit if isinstance(model, ScoredModel) else None
    iters = args.iters if limit is None else min(args.iters, limit)
    model = model.to(device)
    jobs: list[tuple[str, Task, torch.utils.data.TensorDataset, dict]] = []
    for split in splits:
        jobs.append((split.name, tasks[split.name], split.dataset(n), dict(
            task=split.task, options=asdict(tasks[split.name].options), size=split.size, seed=split.seed, sha256=split.sha256)))
    for path, (size, data, digest) in external.items():
        first = torch.utils.data.TensorDataset(*(t[:n] for t in data.tensors))
        jobs.append((f"data-{_safe(path.stem)}-{digest[:12]}", ckpt.task, first, dict(
            task=ckpt.task_name, options=asdict(ckpt.task.options), size=size, seed=None, sha256=digest,
            source="file", file=str(path))))

    print(f"{args.run_dir}: {len(jobs)} split(s), up to {n} samples each, {iters} iterations, "
          f"halting after {halt or 'never'}", flush=True)
    scores, start = [], time.perf_counter()
    for name, task, data, info in jobs:
        t0 = time.perf_counter()
        curve, halting = settle_and_score(model, task, data, iters, args.batch_size, device, halt)
        settled = run = None
        if halting is not None:
            settled = {kind: halting.kind.count(kind) for kind in ("fixed", "2-cycle", "none")}
            steps = halting.iterations_run(halt, iters)
            run = sum(steps) / len(steps)
        scores.append(SplitScore(name=name, samples=len(data), accuracy=tuple(curve), settled=settled,
                                 mean_iterations_run=run, **info))
        print(f"  {name:<32} {len(data):>5} x {info['size']:<5} {curve[-1]:>7.1%} at {iters}"
              f"{'' if run is None else f', {run:.0f} iterations run'}  ({time.perf_counter() - t0:.1f} s)", flush=True)
    result = LadderResult(ladder=label, run=str(args.run_dir), task=ckpt.task_name,
                          model=ckpt.model_args.get("name", ckpt.model_name), iterations=iters,
                          train_iters=cfg["train"]["iters"], halt_after=halt, splits=tuple(scores))
    rundir = RunDir(args.run_dir)
    print(format_ladder(result))
    print(f"({len(jobs)} splits in {time.perf_counter() - start:.1f} s)")
    print(f"written {rundir.write_ladder(stem, result)}")
    from benchmark.analysis.ladder_plots import plot_ladder_curves, plot_ladder_heatmap  # matplotlib only when drawing

    print(f"written {plot_ladder_heatmap(result, rundir.ladder(stem, '.png'))}")
    print(f"written {plot_ladder_curves(result, rundir.ladder(stem, '_curves.png'))}")
    return result


def format_ladder(result: LadderResult) -> str:
    """The heatmap's numbers as a text table: one row per row of the ladder, one column per size."""
    table = result.table()
    sizes = sorted({size for row in table.values() for size in row})
    width = max(12, *(len(r) for r in table))
    lines = [f"accuracy at iteration {result.chosen_iteration} ({result.pick}; trained with {result.train_iters})",
             f"{'':<{width}}" + "".join(f"{s:>8}" for s in sizes)]
    for row, accs in table.items():
        lines.append(f"{row:<{width}}" + "".join(f"{accs[s]:>8.1%}" if s in accs else f"{'':>8}" for s in sizes))
    return "\n".join(lines)


__all__ = ["FORMAT_OPTIONS", "LADDER_HALT", "LADDER_N", "format_ladder", "run_ladder"]
