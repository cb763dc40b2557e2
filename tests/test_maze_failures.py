"""benchmark.analysis.maze_failures: the counts on hand-made mazes whose answers are known, the
command on the reference maze run (its solved count recomputed from the model), and its refusals."""

from __future__ import annotations

import importlib
from collections import deque
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.config.schema import data_seeds, exit_on_user_error
from benchmark.evaluation.rescore import load_run
from tasks.maze import MazeTask

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "results" / "reference" / "checkpoints"
RUN = REFERENCE / "maze" / "train9_test15" / "shared" / "20261127-073436-seed0"
TASK = MazeTask()

# A 9x9-pixel compact maze (size 7): the path runs along the top row from S to G; a branch leaves
# it at (1, 3), runs down to a junction at (5, 3) and splits into two dead ends, left and right.
LAYOUT = [
    "#########",
    "#S.....G#",
    "###.#####",
    "###.#####",
    "###.#####",
    "#.....###",
    "#.###.###",
    "#.###.###",
    "#########",
]


def maze_from(layout: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The task's input (3, w, w) and target (w, w) of a drawn maze: the open pixels lit in every
    channel, the start with channels 0 and 2 off, the goal with 1 and 2 off; the target is every
    pixel of the straight top-row path from S to G."""
    grid = np.array([list(row) for row in layout])
    x = np.repeat((grid != "#")[None].astype(np.float32), 3, axis=0)
    (s,), (t,) = zip(*np.nonzero(grid == "S")), zip(*np.nonzero(grid == "G"))
    x[0][s] = x[2][s] = 0.0
    x[1][t] = x[2][t] = 0.0
    y = np.zeros(grid.shape, dtype=np.int64)
    y[1, s[1] : t[1] + 1] = 1
    TASK.check_arrays(len(layout) - 2, x[None], y[None])  # a well-formed maze sample
    return x, y


@pytest.fixture(scope="module")
def failures():
    return importlib.import_module("benchmark.analysis.maze_failures")


def test_analysis_counts_an_unpruned_branch_that_stops_at_a_junction(failures):
    x, y = maze_from(LAYOUT)
    predicted = y.astype(bool).copy()
    predicted[1, 6] = False  # a missing path pixel
    predicted[2:6, 3] = True  # the branch's stem and its junction left unpruned: (2,3), (3,3), (4,3), (5,3)
    predicted[7, 5] = True  # an island: the right dead end's tip, its neighbour (6,5) pruned
    predicted[0, 0] = predicted[8, 8] = True  # walls: never scored
    inputs, targets = torch.from_numpy(np.stack([x, x])), torch.from_numpy(np.stack([y, y]))
    report = failures.analyse(TASK, inputs, targets, np.stack([predicted, y.astype(bool)]))
    assert (report.mazes, report.solved, report.extra, report.missing) == (2, 1, 5, 1)
    assert (report.extra_attached, report.extra_detached) == (4, 1)
    # Pruning stopped at the junction (5,3) (open neighbours (4,3), (5,2), (5,4)) and at the island (degree 1).
    assert (report.stop_cells, report.stop_junctions, report.extra_junctions) == (2, 1, 1)
    # 19 open pixels per maze, 2 of them junctions: (1,3) on the path and (5,3).
    assert (report.open_cells, report.open_junctions) == (38, 4)
    # On the maze-cell pixels (odd row and column) alone: 10 per maze; stop cells (5,3) and (7,5);
    # extra (3,3), (5,3), (7,5).
    assert (report.open_on_cells, report.open_on_cells_junctions) == (20, 4)
    assert (report.stop_on_cells, report.stop_on_cells_junctions, report.extra_on_cells, report.extra_on_cells_junctions) == (2, 1, 3, 1)
    assert report.not_fixed is None
    # One more iteration: a wall pixel flickering is no change; an open pixel is.
    following = np.stack([predicted, y.astype(bool)])
    following[1, 0, 0] = True
    assert failures.analyse(TASK, inputs, targets, np.stack([predicted, y.astype(bool)]), following).not_fixed == 0
    following[1, 5, 1] = True
    assert failures.analyse(TASK, inputs, targets, np.stack([predicted, y.astype(bool)]), following).not_fixed == 1
    text = failures.format_report(report)
    assert "| extra, attached to the path (unpruned branch) | 4 | 80.0% of extra |" in text
    assert "| stop cells: extra, beside a pruned open cell | 2 | 50.0% | 10.5% |" in text  # 4 / 38 open pixels
    assert "| extra cells | 5 | 20.0% | 10.5% |" in text
    assert "at a junction 50.0% of 2 stop cells, 33.3% of 3 extra cells, base rate 20.0%" in text


def test_a_whole_unpruned_branch_has_no_stop_cell(failures):
    """On a generated maze (a tree): predicting the path plus everything behind one side exit of
    it leaves that whole subtree extra, attached, and with no pruned neighbour anywhere."""
    x, y = TASK.generate(15, 1, seed=3)
    open_, path = TASK.valid(torch.from_numpy(x))[0].numpy(), y[0].astype(bool)
    exits = [(r + dr, c + dc) for r, c in zip(*np.nonzero(path)) for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1))
             if open_[r + dr, c + dc] and not path[r + dr, c + dc]]
    assert exits, "the path of this maze has a side branch"
    branch, queue = {exits[0]}, deque([exits[0]])
    while queue:
        r, c = queue.popleft()
        for q in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
            if open_[q] and not path[q] and q not in branch:
                branch.add(q)
                queue.append(q)
    predicted = path.copy()
    predicted[tuple(np.array(sorted(branch)).T)] = True
    report = failures.analyse(TASK, torch.from_numpy(x), torch.from_numpy(y), predicted[None])
    assert (report.solved, report.extra, report.missing) == (0, len(branch), 0)
    assert (report.extra_attached, report.extra_detached, report.stop_cells) == (len(branch), 0, 0)


def _flood_fill(mask: np.ndarray) -> np.ndarray:
    """An independent 4-connected labelling: breadth-first search from each unlabelled pixel."""
    from collections import deque

    labels = np.zeros(mask.shape, dtype=np.int64)
    for start in zip(*np.nonzero(mask)):
        if labels[start]:
            continue
        labels[start] = labels.max() + 1
        queue = deque([start])
        while queue:
            r, c = queue.popleft()
            for q in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
                if 0 <= q[0] < mask.shape[0] and 0 <= q[1] < mask.shape[1] and mask[q] and not labels[q]:
                    labels[q] = labels[start]
                    queue.append(q)
    return labels


def test_the_regions_are_the_4_connected_ones(failures):
    rng = np.random.default_rng(0)
    for _ in range(20):
        mask = rng.random((11, 13)) < 0.5
        assert np.array_equal(_flood_fill(mask) > 0, mask)
        a, b = _flood_fill(mask), failures.components(mask)
        assert a.max() == b.max()
        # The same partition, whatever the numbering: label pairs correspond one to one.
        pairs = set(zip(a[mask].tolist(), b[mask].tolist()))
        assert len(pairs) == a.max()


def _solved_by_the_model(task: MazeTask, size: int, n: int, iters: int) -> tuple[int, int]:
    """Solved mazes and wrong open pixels after ``iters`` iterations, from the model's forward pass."""
    model, _, cfg, _ = load_run(RUN, "cpu")
    inputs, targets = task.dataset(size, n, seed=data_seeds(cfg["seed"]).test).tensors
    with torch.no_grad():
        predicted = model.eval()(inputs, iters).argmax(1)
    wrong = (predicted != targets) & task.valid(inputs)
    return int(task.score(inputs, targets, predicted).sum()), int(wrong.sum())


@pytest.mark.parametrize("generator", [None, "prim", "dfs,prim"])
def test_the_command_on_the_reference_run_agrees_with_the_model(failures, capsys, generator):
    before = sorted(p.name for p in RUN.iterdir())
    extra_args = [] if generator is None else ["--generator", generator]
    report = failures.run([str(RUN), "--size", "15", "--n", "5", "--iters", "30", *extra_args])
    _, ckpt, _, _ = load_run(RUN, "cpu")
    task = ckpt.task if generator is None else MazeTask(**{**asdict(ckpt.task.options), "generator": generator.split(",")})
    solved, wrong = _solved_by_the_model(task, 15, 5, 30)
    assert (report.mazes, report.solved, report.extra + report.missing, report.iters) == (5, solved, wrong, 30)
    assert report.extra == report.extra_attached + report.extra_detached and report.stop_on_cells <= report.stop_cells <= report.extra
    assert 0 <= report.not_fixed <= 5 and report.open_cells > 0
    out = capsys.readouterr().out
    name = {None: "dfs (the run's own)", "prim": "prim", "dfs,prim": "dfs+prim"}[generator]
    assert out.startswith(f"5 mazes of size 15 (generator {name}), prediction after iteration 30, the last: solved {solved} of 5")
    assert "| wrong cells | count | share |" in out and "| cells | count | share at a junction | base rate (all open cells) |" in out
    assert sorted(p.name for p in RUN.iterdir()) == before  # nothing written


@pytest.mark.parametrize("args, message", [
    (["--size", "15", "--generator", "bogus"], "maze generator must be one of"),
    (["--size", "15", "--generator", "prim,"], "maze generator must be one of"),
    (["--size", "15", "--n", "0"], "--n and --iters must be positive integers"),
    (["--size", "15", "--iters", "0"], "--n and --iters must be positive integers"),
    (["--size", "14"], "maze size must be an odd integer"),
])
def test_the_command_refuses_bad_options(failures, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        exit_on_user_error(failures.run, [str(RUN), *args])
    captured = capsys.readouterr()
    assert exit_info.value.code == 2 and captured.err.count("\n") == 1 and message in captured.err and captured.out == ""


def test_the_command_refuses_what_is_not_a_maze_run(failures, capsys, tmp_path):
    (prefix_run,) = (REFERENCE / "prefix_sums" / "train32_test512" / "recurrent").iterdir()
    for run_dir, message in ((tmp_path, "has no model.pt"), (prefix_run, "give a maze run")):
        with pytest.raises(SystemExit) as exit_info:
            exit_on_user_error(failures.run, [str(run_dir), "--size", "15"])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and err.count("\n") == 1 and message in err
    assert list(tmp_path.iterdir()) == []
