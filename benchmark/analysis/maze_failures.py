"""Where a maze model goes wrong: ``python -m benchmark.analysis.maze_failures RUN_DIR --size 33 --n 40 [--generator prim]``.

Rebuilds the run's own first ``n`` test mazes of side ``size`` (its test seed), or with
``--generator NAME`` (a name of ``tasks.maze_generators``, or several comma-separated for a
mixture) the mazes of that seed made by that generator instead, runs the model ``--iters``
iterations (default: the run's ``eval.iters``) from its own initial state and looks at the
prediction of the **last** iteration (not the best one: the question is where the dynamics
end). On the open pixels of each maze (walls are not scored), with the target path ``y`` and
the prediction ``p``, it counts:

- the solved mazes (no wrong open pixel);
- the wrong pixels: **extra** (open, predicted on the path, not on it: dead-end pixels left
  unpruned) and **missing** (on the path, predicted off it);
- of the extra pixels, those **attached** to the path (their 4-connected region of predicted
  open pixels holds a pixel of the true path: a branch hanging off the answer) and those
  **detached** from it (islands);
- where pruning stopped: the **stop cells**, extra pixels with an open 4-neighbour predicted off
  the path (pruned), and the share of them at a junction (degree >= 3: three or more open
  4-neighbours in the input), beside the same share among all extra pixels and the base rate,
  the share of all open pixels with degree >= 3; and the same three shares on the maze-cell
  pixels alone (a passage pixel between two cells always has degree 2, which lowers the base
  rate over all pixels);
- the mazes not at a fixed point: their prediction on the open pixels changes in one more
  iteration.

Degrees are counted on the compact rendering's pixels (one per cell or passage), so the command
refuses ``e2h`` runs.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import torch
from scipy.ndimage import label

from benchmark.config.schema import ConfigError, exit_on_user_error
from benchmark.evaluation.rescore import failure_script_parser, load_test_set
from benchmark.models.contract import IterativeModel
from tasks.maze import MazeTask

JUNCTION = 3  # an open pixel with at least this many open 4-neighbours is a junction


def degrees(open_: np.ndarray) -> np.ndarray:
    """Per pixel of a bool ``(h, w)`` mask: how many of its 4-neighbours are open (int)."""
    p = np.pad(open_, 1).astype(np.int64)
    return p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:]


def components(mask: np.ndarray) -> np.ndarray:
    """The 4-connected regions of a 2-D bool mask: 0 off it, 1, 2, ... per region."""
    return label(mask)[0]  # the default structure of a 2-D label is the 4-neighbour cross


@dataclass
class Report:
    mazes: int = 0
    solved: int = 0
    extra: int = 0  # open, predicted on the path, not on it
    missing: int = 0  # on the path, predicted off it
    extra_attached: int = 0  # extra, in a region of predicted pixels that holds a true path pixel
    extra_detached: int = 0
    extra_junctions: int = 0  # extra with degree >= JUNCTION
    stop_cells: int = 0  # extra with an open 4-neighbour predicted off the path
    stop_junctions: int = 0
    open_cells: int = 0
    open_junctions: int = 0
    # The same on maze-cell pixels alone (odd row and column; passage pixels have degree 2).
    stop_on_cells: int = 0
    stop_on_cells_junctions: int = 0
    extra_on_cells: int = 0
    extra_on_cells_junctions: int = 0
    open_on_cells: int = 0
    open_on_cells_junctions: int = 0
    not_fixed: int | None = None  # mazes whose prediction changes in one more iteration (None: not measured)
    size: int | None = None
    generator: str = ""
    iters: int | None = None


def analyse(task: MazeTask, inputs: torch.Tensor, targets: torch.Tensor, predicted: np.ndarray,
            following: np.ndarray | None = None) -> Report:
    """Count the failures (module docstring) of ``predicted`` ``(N, w, w)`` (1 or True: on the
    path) against ``targets`` on the mazes ``inputs`` ``(N, 3, w, w)``; ``following``: the
    predictions one iteration later, for the fixed-point count."""
    open_all = task.valid(inputs).numpy()
    report = Report(mazes=len(inputs))
    cell = np.zeros(open_all.shape[1:], dtype=bool)
    cell[1::2, 1::2] = True  # the compact rendering's maze cells; the pixels between them are passages or walls
    for open_, y, p in zip(open_all, targets.numpy().astype(bool), np.asarray(predicted).astype(bool)):
        p = p & open_
        extra, missing = p & ~y, y & ~p & open_
        report.solved += not (extra.any() or missing.any())
        report.extra += int(extra.sum())
        report.missing += int(missing.sum())
        regions = components(p)
        on_answer = np.setdiff1d(np.unique(regions[p & y]), [0])
        attached = extra & np.isin(regions, on_answer)
        report.extra_attached += int(attached.sum())
        report.extra_detached += int((extra & ~attached).sum())
        junction = open_ & (degrees(open_) >= JUNCTION)
        stop = extra & (degrees(open_ & ~p) > 0)
        report.extra_junctions += int((extra & junction).sum())
        report.stop_cells += int(stop.sum())
        report.stop_junctions += int((stop & junction).sum())
        report.open_cells += int(open_.sum())
        report.open_junctions += int(junction.sum())
        report.stop_on_cells += int((stop & cell).sum())
        report.stop_on_cells_junctions += int((stop & cell & junction).sum())
        report.extra_on_cells += int((extra & cell).sum())
        report.extra_on_cells_junctions += int((extra & cell & junction).sum())
        report.open_on_cells += int((open_ & cell).sum())
        report.open_on_cells_junctions += int((junction & cell).sum())
    if following is not None:
        changed = (np.asarray(following).astype(bool) != np.asarray(predicted).astype(bool)) & open_all
        report.not_fixed = int(changed.reshape(len(changed), -1).any(axis=1).sum())
    return report


@torch.inference_mode()
def predictions(model: torch.nn.Module, inputs: torch.Tensor, iters: int, batch_size: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Bool ``(N, w, w)`` predictions after ``iters`` iterations from the model's own initial
    state, and after one iteration more."""
    model.eval()
    last, following = [], []
    for lo in range(0, len(inputs), batch_size):
        x = inputs[lo : lo + batch_size]
        h = model.run(x, iters, state=model.initial_state(x))
        last.append(model.logits(h).argmax(1).bool())
        following.append(model.logits(model.run(x, 1, state=h, start=iters)).argmax(1).bool())
    return torch.cat(last).numpy(), torch.cat(following).numpy()


def _pct(a: float, b: float, of: str = "") -> str:
    return f"{100.0 * a / b:.1f}%{of}" if b else "-"


def format_report(report: Report) -> str:
    lines = [f"{report.mazes} mazes of size {report.size} (generator {report.generator}), prediction after iteration "
             f"{report.iters}, the last: solved {report.solved} of {report.mazes} ({_pct(report.solved, report.mazes)})"]
    if report.not_fixed is not None:
        lines.append(f"not at a fixed point: {report.not_fixed} of {report.mazes} mazes (the prediction on open pixels "
                     f"changes in iteration {report.iters + 1 if report.iters is not None else 'T+1'})")
    wrong = report.extra + report.missing
    lines += ["", "| wrong cells | count | share |", "|---|---|---|",
              f"| extra: open, predicted path, off the path | {report.extra} | {_pct(report.extra, wrong, ' of wrong')} |",
              f"| missing: on the path, predicted off it | {report.missing} | {_pct(report.missing, wrong, ' of wrong')} |",
              f"| extra, attached to the path (unpruned branch) | {report.extra_attached} | "
              f"{_pct(report.extra_attached, report.extra, ' of extra')} |",
              f"| extra, detached from the path (island) | {report.extra_detached} | "
              f"{_pct(report.extra_detached, report.extra, ' of extra')} |"]
    base = _pct(report.open_junctions, report.open_cells)
    lines += ["", f"where pruning stopped (junction: >= {JUNCTION} open 4-neighbours in the input)", "",
              "| cells | count | share at a junction | base rate (all open cells) |", "|---|---|---|---|",
              f"| stop cells: extra, beside a pruned open cell | {report.stop_cells} | "
              f"{_pct(report.stop_junctions, report.stop_cells)} | {base} |",
              f"| extra cells | {report.extra} | {_pct(report.extra_junctions, report.extra)} | {base} |", "",
              f"on maze-cell pixels alone (passage pixels, always of degree 2, left out): at a junction "
              f"{_pct(report.stop_on_cells_junctions, report.stop_on_cells)} of {report.stop_on_cells} stop cells, "
              f"{_pct(report.extra_on_cells_junctions, report.extra_on_cells)} of {report.extra_on_cells} extra cells, "
              f"base rate {_pct(report.open_on_cells_junctions, report.open_on_cells)}"]
    return "\n".join(lines)


def run(argv: list[str] | None = None) -> Report:
    parser = failure_script_parser("benchmark.analysis.maze_failures", __doc__.splitlines()[0], MazeTask,
                                   "side of the test mazes (odd)", "mazes", "eval.iters")
    parser.add_argument("--generator", default=None, metavar="NAME[,NAME...]",
                        help="test on the mazes of this generator instead, same seed (several, comma-separated: a mixture)")
    args = parser.parse_args(argv)
    if args.n < 1 or (args.iters is not None and args.iters < 1):
        raise ConfigError(f"--n and --iters must be positive integers, got {args.n} and {args.iters}.")
    generator = None if args.generator is None else [name.strip() for name in args.generator.split(",")]
    model, task, cfg, data = load_test_set(args.run_dir, MazeTask, args.size, args.n, generator)
    if task.options.rendering != "compact":
        raise ConfigError(f"{args.run_dir} renders its mazes '{task.options.rendering}': this analysis counts open "
                          f"neighbours pixel by pixel and needs the compact rendering.")
    if not isinstance(model, IterativeModel):
        raise ConfigError(f"the maze failure analysis needs an iterative model, and {args.run_dir} holds {type(model).__name__}.")
    iters = args.iters if args.iters is not None else int(cfg["eval"]["iters"])
    try:
        model.check_iters(iters + 1)  # the fixed-point check runs one iteration more
    except ValueError as err:
        raise ConfigError(f"{str(err).rstrip('.')}; this analysis runs --iters + 1 iterations, so give fewer.") from err
    inputs, targets = data.tensors
    last, following = predictions(model, inputs, iters)
    report = analyse(task, inputs, targets, last, following)
    g = task.options.generator
    report.size, report.iters = args.size, iters
    report.generator = (g if isinstance(g, str) else "+".join(g)) + (" (the run's own)" if generator is None else "")
    print(format_report(report))
    return report


if __name__ == "__main__":
    exit_on_user_error(run, sys.argv[1:])
