"""Where a shortest-path model goes wrong: ``python -m benchmark.analysis.shortest_path_failures RUN_DIR --size 24 --n 200``.

Rebuilds the run's own first ``n`` test grids of side ``size`` (its test seed), unrolls the
model for ``--iters`` iterations (default: the run's ``eval.iters``) and looks at the
predictions of the iteration with the best exact match on these grids. Prints three small
tables:

- the wrong cells: cells of the target the model left out ("missing": on every cheapest path,
  or only on some of tied routes) and cells it marked that are on no cheapest path ("extra":
  next to a path cell or further, and how much dearer the cheapest route through them is than
  the cheapest route: a small excess means the model mistook a near-tie for a tie), and how many
  of them lie within 2 steps of the start or goal;
- exact match and wrong cells per sample by start-goal Manhattan distance;
- exact match of grids with a unique cheapest path against grids with tied routes.

The distances come from the task's own Dijkstra (``tasks.shortest_path``), so the analysis
uses the cost convention of the targets (a path costs the cells it enters).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import numpy as np
import torch


from benchmark.config.schema import ConfigError, exit_on_user_error
from benchmark.evaluation.rescore import failure_script_parser, load_test_set
from tasks.shortest_path import _INF, ShortestPathTask, _dijkstra, _inner, _padded

NEAR_END = 2  # a wrong cell within this Manhattan distance of the start or the goal is "near an end"
MOVES = ((1, 0), (-1, 0), (0, 1), (0, -1))


def _path_counts(on_path: np.ndarray, dist: np.ndarray, cost: np.ndarray, src: tuple[int, int]) -> np.ndarray:
    """The number of cheapest paths from ``src`` to each cell of ``on_path`` that stay on it:
    ``(n, n)`` of Python ints (exact: on open grids the counts pass 2**53, and their products are
    compared). ``dist``: entering-cost distances from ``src``. A cell's cheapest-path
    predecessors are its neighbours ``u`` with ``dist[u] + cost[v] == dist[v]``."""
    counts = np.zeros(on_path.shape, dtype=object)
    counts[src] = 1
    n_r, n_c = on_path.shape
    for flat in np.argsort(np.where(on_path, dist, _INF), axis=None, kind="stable"):
        r, c = divmod(int(flat), n_c)
        if not on_path[r, c] or (r, c) == src:
            continue
        for dr, dc in MOVES:
            q = (r + dr, c + dc)
            if 0 <= q[0] < n_r and 0 <= q[1] < n_c and on_path[q] and dist[q] + cost[r, c] == dist[r, c]:
                counts[r, c] += counts[q]
    return counts


@dataclass
class Grid:
    """One test grid's geometry: what the analysis needs beside the model's prediction."""

    free: np.ndarray  # bool (n, n)
    target: np.ndarray  # bool (n, n): on some cheapest path
    every_path: np.ndarray  # bool (n, n): on every cheapest path (the others lie on tied routes only)
    excess: np.ndarray  # int (n, n): cost of the cheapest route through the cell minus the cheapest route
    near_end: np.ndarray  # bool (n, n): within NEAR_END steps of the start or the goal
    manhattan: int  # start-goal Manhattan distance
    tied: bool  # more than one cheapest path


def grid_geometry(task: ShortestPathTask, inputs: np.ndarray) -> Grid:
    free, cost, start, goal = task.decode(inputs)
    n = free.shape[0]
    flat = _padded(free, cost)
    d_s = _inner(_dijkstra(flat, n + 2, (start[0] + 1) * (n + 2) + start[1] + 1), n, n)
    d_t = _inner(_dijkstra(flat, n + 2, (goal[0] + 1) * (n + 2) + goal[1] + 1), n, n)
    reached = free & (d_s < _INF) & (d_t < _INF)
    # The cheapest route through v (the module's convention: d_t counts v but not the goal).
    through = np.where(reached, np.where(reached, d_s + d_t, 0) - cost + cost[goal], _INF)
    total = int(d_s[goal])
    target = reached & (through == total)
    n_paths = _path_counts(target, d_s, cost, start) * _path_counts(target, d_t, cost, goal)
    rows, cols = np.indices(free.shape)
    near = np.minimum(np.abs(rows - start[0]) + np.abs(cols - start[1]), np.abs(rows - goal[0]) + np.abs(cols - goal[1])) <= NEAR_END
    return Grid(free=free, target=target, every_path=target & (n_paths == n_paths[goal]), excess=through - total,
                near_end=near, manhattan=abs(start[0] - goal[0]) + abs(start[1] - goal[1]), tied=bool(n_paths[goal] > 1))


@torch.inference_mode()
def predictions(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor, task: ShortestPathTask, iters: int,
                batch_size: int = 100) -> tuple[np.ndarray, int, list[float]]:
    """Bool ``(N, n, n)`` predictions at the best iteration of 1..iters on these samples, that
    iteration, and the exact-match curve over 1..iters."""
    model.eval()
    per_iter = []  # per batch: bool (iters, b, n, n)
    for lo in range(0, len(inputs), batch_size):
        x = inputs[lo : lo + batch_size]
        per_iter.append(torch.stack([logits.argmax(1).bool() for logits in model.iter_logits(x, iters)]))
    preds = torch.cat(per_iter, dim=1)  # (iters, N, n, n)
    curve = [float(task.score(inputs, targets, p.long()).double().mean()) for p in preds]
    best = int(np.argmax(curve))  # the first best
    return preds[best].numpy(), best + 1, curve


@dataclass
class Report:
    samples: int = 0
    best_iter: int = 0
    exact: int = 0
    wrong_fraction: list[float] = field(default_factory=list)  # per failed sample: wrong / free cells
    cells: dict[str, int] = field(default_factory=dict)  # kind of wrong cell -> count
    excess: list[int] = field(default_factory=list)  # of every extra cell
    by_distance: dict[str, list[tuple[bool, int]]] = field(default_factory=dict)  # bin -> (correct, wrong cells)
    by_ties: dict[str, list[bool]] = field(default_factory=dict)
    path_cells_near_end: float = 0.0  # the share of target cells near start/goal, to compare with the wrong ones


def _distance_bin(d: int, size: int) -> str:
    edges = (size // 2, size, 3 * size // 2, 2 * size)
    for lo, hi in zip(edges, edges[1:]):
        if d < hi:
            return f"{lo}-{hi - 1}"
    return f">={edges[-1]}"


def analyse(task: ShortestPathTask, inputs: torch.Tensor, predicted: np.ndarray, size: int) -> Report:
    report = Report(samples=len(inputs))
    kinds = ("missing, on every cheapest path", "missing, on tied routes only", "extra, next to a path cell", "extra, further away")
    report.cells = {k: 0 for k in (*kinds, "wrong cells near start/goal", "wrong cells far from both")}
    target_near = target_cells = 0  # how many path cells lie near an end: the base rate of "near start/goal"
    for x, pred in zip(inputs.numpy(), predicted):
        g = grid_geometry(task, x)
        missing, extra = g.target & ~pred & g.free, pred & ~g.target & g.free
        wrong = missing | extra
        correct = not wrong.any()
        report.exact += correct
        padded = np.pad(g.target, 1)
        beside_path = padded[:-2, 1:-1] | padded[2:, 1:-1] | padded[1:-1, :-2] | padded[1:-1, 2:]
        report.cells[kinds[0]] += int((missing & g.every_path).sum())
        report.cells[kinds[1]] += int((missing & ~g.every_path).sum())
        report.cells[kinds[2]] += int((extra & beside_path).sum())
        report.cells[kinds[3]] += int((extra & ~beside_path).sum())
        report.cells["wrong cells near start/goal"] += int((wrong & g.near_end).sum())
        report.cells["wrong cells far from both"] += int((wrong & ~g.near_end).sum())
        target_near, target_cells = target_near + int((g.target & g.near_end).sum()), target_cells + int(g.target.sum())
        report.excess += [int(e) for e in g.excess[extra] if e < _INF // 2]  # cells cut off from start or goal have none
        if not correct:
            report.wrong_fraction.append(float(wrong.sum()) / float(g.free.sum()))
        report.by_distance.setdefault(_distance_bin(g.manhattan, size), []).append((correct, int(wrong.sum())))
        report.by_ties.setdefault("tied routes" if g.tied else "one cheapest path", []).append(correct)
    report.path_cells_near_end = target_near / max(1, target_cells)
    return report


def _pct(a: float, b: float) -> str:
    return f"{100.0 * a / b:.1f}%" if b else "-"


def format_report(report: Report, size: int) -> str:
    lines = [f"{report.samples} grids of side {size}, best iteration {report.best_iter}: "
             f"exact match {_pct(report.exact, report.samples)}"]
    if report.wrong_fraction:
        lines.append(f"failed grids: {len(report.wrong_fraction)}, wrong cells per failed grid "
                     f"(fraction of its free cells): median {100 * np.median(report.wrong_fraction):.1f}%, "
                     f"max {100 * max(report.wrong_fraction):.1f}%")
    total = sum(v for k, v in report.cells.items() if k.startswith(("missing", "extra")))
    lines += ["", "| wrong cells | count | share |", "|---|---|---|"]
    lines += [f"| {k} | {v} | {_pct(v, total)} |" for k, v in report.cells.items()]
    lines.append(f"(of the target's path cells, {100 * report.path_cells_near_end:.1f}% lie within {NEAR_END} steps of start or goal)")
    if report.excess:
        ex = np.asarray(report.excess)
        lines.append(f"extra cells: route through them dearer by median {np.median(ex):.0f}, "
                     f"{_pct(int((ex <= 2).sum()), len(ex))} by at most 2")
    lines += ["", "| start-goal Manhattan distance | grids | exact match | wrong cells per grid |", "|---|---|---|---|"]
    for name in sorted(report.by_distance, key=lambda s: int(s.split("-")[0].lstrip(">="))):
        rows = report.by_distance[name]
        lines.append(f"| {name} | {len(rows)} | {_pct(sum(c for c, _ in rows), len(rows))} | {np.mean([w for _, w in rows]):.2f} |")
    lines += ["", "| cheapest paths | grids | exact match |", "|---|---|---|"]
    for name, rows in sorted(report.by_ties.items()):
        lines.append(f"| {name} | {len(rows)} | {_pct(sum(rows), len(rows))} |")
    return "\n".join(lines)


def run(argv: list[str] | None = None) -> Report:
    parser = failure_script_parser("benchmark.analysis.shortest_path_failures", __doc__.splitlines()[0], ShortestPathTask,
                                   "grid side of the test grids", "grids", "eval.iters")
    args = parser.parse_args(argv)
    if args.n < 1 or (args.iters is not None and args.iters < 1):
        raise ConfigError(f"--n and --iters must be positive integers, got {args.n} and {args.iters}.")
    model, task, cfg, data = load_test_set(args.run_dir, ShortestPathTask, args.size, args.n)
    iters = args.iters if args.iters is not None else int(cfg["eval"]["iters"])
    inputs, targets = data.tensors
    predicted, best, _ = predictions(model, inputs, targets, task, iters)
    report = analyse(task, inputs, predicted, args.size)
    report.best_iter = best
    print(format_report(report, args.size))
    return report


if __name__ == "__main__":
    exit_on_user_error(run, sys.argv[1:])
