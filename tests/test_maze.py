"""Tests of the maze task: geometry, perfect mazes, the unique path, renderings, scoring, cache."""

from __future__ import annotations

from collections import deque
from dataclasses import asdict

import numpy as np
import pytest
import torch

from tasks.base import TaskError
from tasks.maze import MazeTask

SIZES = [3, 9, 13, 15, 21]


def decode(x: np.ndarray):
    """Compact (3, W, W) input -> open bool grid, start (r, c), goal (r, c)."""
    open_ = x.max(axis=0) > 0
    green = (x[0] == 0) & (x[1] == 1) & (x[2] == 0)
    red = (x[0] == 1) & (x[1] == 0) & (x[2] == 0)
    assert green.sum() == 1 and red.sum() == 1
    return open_, tuple(np.argwhere(green)[0]), tuple(np.argwhere(red)[0])


def neighbours(grid: np.ndarray, rc):
    r, c = rc
    for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        rr, cc = r + dr, c + dc
        if 0 <= rr < grid.shape[0] and 0 <= cc < grid.shape[1] and grid[rr, cc]:
            yield rr, cc


def bfs_path(open_: np.ndarray, start, goal) -> np.ndarray:
    """Independent oracle: a shortest path by breadth-first search, as a mask."""
    prev = {start: None}
    queue = deque([start])
    while queue:
        v = queue.popleft()
        if v == goal:
            break
        for u in neighbours(open_, v):
            if u not in prev:
                prev[u] = v
                queue.append(u)
    mask = np.zeros(open_.shape, dtype=np.int64)
    v = goal
    while v is not None:
        mask[v] = 1
        v = prev[v]
    return mask


def e2h_from_compact(a: np.ndarray) -> np.ndarray:
    """pad(kron(a, ones(2, 2)), 1) over the last two axes."""
    k = np.kron(a, np.ones((2, 2), dtype=a.dtype))
    pad = [(0, 0)] * (a.ndim - 2) + [(1, 1), (1, 1)]
    return np.pad(k, pad)


# ---------------------------------------------------------------------------- options, sizes
def test_spec_and_options():
    assert MazeTask.name == "maze"
    assert (MazeTask.spec.dims, MazeTask.spec.in_channels, MazeTask.spec.num_classes) == (2, 3, 2)
    defaults = {"generator": "dfs", "percolation": 0.0, "start": "random", "goal": "random"}
    assert asdict(MazeTask().options) == {"rendering": "compact", **defaults}
    assert asdict(MazeTask("e2h").options) == {"rendering": "e2h", **defaults}


def test_bad_rendering():
    with pytest.raises(TaskError, match="compact.*e2h"):
        MazeTask("big")


@pytest.mark.parametrize("size", [8, 2, 1, 0, -3, 9.0, "9", True, None])
def test_check_size_rejects(size):
    with pytest.raises(TaskError, match="odd integer >= 3"):
        MazeTask().check_size(size)


@pytest.mark.parametrize("size", [3, 9, 59, 101])
def test_check_size_accepts(size):
    MazeTask().check_size(size)


def test_generate_rejects_bad_size():
    with pytest.raises(TaskError):
        MazeTask().generate(10, 2, 0)


@pytest.mark.parametrize("size,compact,e2h", [(9, 11, 24), (13, 15, 32), (15, 17, 36), (59, 61, 124)])
def test_shape(size, compact, e2h):
    assert MazeTask().shape(size) == (compact, compact)
    assert MazeTask("e2h").shape(size) == (e2h, e2h)


@pytest.mark.parametrize("rendering", ["compact", "e2h"])
@pytest.mark.parametrize("size", SIZES)
def test_generate_shapes_and_values(rendering, size):
    task = MazeTask(rendering)
    x, y = task.generate(size, 3, seed=0)
    h, w = task.shape(size)
    assert x.shape == (3, 3, h, w) and x.dtype == np.float32
    assert y.shape == (3, h, w) and y.dtype == np.int64
    assert set(np.unique(x)) <= {0.0, 1.0} and set(np.unique(y)) <= {0, 1}
    assert task.observation_space(size).contains(x[0])
    assert task.solution_space(size).contains(y[0])
    # Outer border is wall, in both renderings.
    walls = x.max(axis=1) == 0
    assert walls[:, 0, :].all() and walls[:, -1, :].all() and walls[:, :, 0].all() and walls[:, :, -1].all()


# ---------------------------------------------------------------------------- maze structure
@pytest.mark.parametrize("size", SIZES + [59])
def test_perfect_maze_and_unique_path(size):
    task = MazeTask()
    m = (size + 1) // 2
    xs, ys = task.generate(size, 20, seed=7)
    for x, y in zip(xs, ys):
        open_, start, goal = decode(x)
        assert start != goal
        # Cells at (odd, odd) are open; units at (even, even) are always wall.
        assert open_[1::2, 1::2].all() and open_[1::2, 1::2].shape == (m, m)
        assert not open_[0::2, 0::2].any()
        assert start[0] % 2 == 1 and start[1] % 2 == 1 and goal[0] % 2 == 1 and goal[1] % 2 == 1
        # A tree: edges (adjacent open pairs) = vertices - 1, and connected.
        v = int(open_.sum())
        e = int((open_[1:, :] & open_[:-1, :]).sum() + (open_[:, 1:] & open_[:, :-1]).sum())
        assert e == v - 1
        seen = {start}
        queue = deque([start])
        while queue:
            for u in neighbours(open_, queue.popleft()):
                if u not in seen:
                    seen.add(u)
                    queue.append(u)
        assert len(seen) == v
        # The target is a simple path start -> goal through open units.
        path = y.astype(bool)
        assert not (path & ~open_).any()
        assert path[start] and path[goal]
        for rc in map(tuple, np.argwhere(path)):
            deg = sum(1 for _ in neighbours(path, rc))
            assert deg == (1 if rc in (start, goal) else 2)
        reached = {start}
        queue = deque([start])
        while queue:
            for u in neighbours(path, queue.popleft()):
                if u not in reached:
                    reached.add(u)
                    queue.append(u)
        assert goal in reached and len(reached) == int(path.sum())
        # Independent oracle: BFS on the grid finds exactly the target.
        np.testing.assert_array_equal(bfs_path(open_, start, goal), y)


def test_start_and_goal_vary():
    xs, _ = MazeTask().generate(9, 50, seed=3)
    starts = {decode(x)[1] for x in xs}
    goals = {decode(x)[2] for x in xs}
    assert len(starts) > 10 and len(goals) > 10


def test_smallest_maze():
    xs, ys = MazeTask().generate(3, 30, seed=0)  # 2x2 cells: path lengths 3, 5 or 7 units
    for x, y in zip(xs, ys):
        open_, start, goal = decode(x)
        assert open_.sum() == 7 and y.sum() in (3, 5, 7)


# ---------------------------------------------------------------------------- determinism, renderings
@pytest.mark.parametrize("rendering", ["compact", "e2h"])
def test_determinism(rendering):
    task = MazeTask(rendering)
    a = task.generate(13, 5, seed=11)
    b = task.generate(13, 5, seed=11)
    c = task.generate(13, 5, seed=12)
    assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes()
    assert a[0].tobytes() != c[0].tobytes()
    # The samples of one dataset differ from each other, and each is reproducible alone.
    assert len({x.tobytes() for x in a[0]}) == 5
    x3, y3 = task.sample(13, np.random.default_rng(np.random.SeedSequence([11, 3])))
    np.testing.assert_array_equal(x3, a[0][3])
    np.testing.assert_array_equal(y3, a[1][3])


@pytest.mark.parametrize("size", [3, 9, 15, 59])
def test_renderings_agree(size):
    xc, yc = MazeTask("compact").generate(size, 4, seed=5)
    xe, ye = MazeTask("e2h").generate(size, 4, seed=5)
    np.testing.assert_array_equal(xe, e2h_from_compact(xc))
    np.testing.assert_array_equal(ye, e2h_from_compact(yc))


# ---------------------------------------------------------------------------- scoring
@pytest.mark.parametrize("rendering", ["compact", "e2h"])
def test_valid_and_score(rendering):
    task = MazeTask(rendering)
    x, y = task.generate(11, 4, seed=2)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    valid = task.valid(x)
    assert valid.dtype == torch.bool and valid.shape == y.shape
    assert torch.equal(valid, x.amax(dim=1) > 0)

    assert task.score(x, y, y.clone()).all()

    # One path pixel flipped in sample 1: only that sample fails.
    pred = y.clone()
    idx = torch.nonzero(y[1])[0]
    pred[1, idx[0], idx[1]] = 0
    assert task.score(x, y, pred).tolist() == [True, False, True, True]

    # An open non-path pixel turned on also fails.
    pred = y.clone()
    idx = torch.nonzero(valid[2] & (y[2] == 0))[0]
    pred[2, idx[0], idx[1]] = 1
    assert task.score(x, y, pred).tolist() == [True, True, False, True]

    # Anything on walls is ignored.
    pred = y.clone()
    pred[~valid] = 1
    assert task.score(x, y, pred).all()


# ---------------------------------------------------------------------------- dataset cache
def test_dataset_cache(tmp_path, monkeypatch):
    task = MazeTask()
    ds = task.dataset(9, 6, seed=4, cache_dir=tmp_path)
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1 and "maze" in files[0].name
    x0, y0 = ds.tensors

    def fail(*args, **kwargs):
        raise AssertionError("generate called although the cache file exists")

    monkeypatch.setattr(task, "generate", fail)
    x1, y1 = task.dataset(9, 6, seed=4, cache_dir=tmp_path).tensors
    assert torch.equal(x0, x1) and torch.equal(y0, y1)
    monkeypatch.undo()

    # The rendering is part of the key: e2h does not read the compact file.
    MazeTask("e2h").dataset(9, 6, seed=4, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 2

    # A corrupted file is regenerated, giving the same arrays, and replaced.
    files[0].write_bytes(b"not an npz file at all")
    x2, y2 = task.dataset(9, 6, seed=4, cache_dir=tmp_path).tensors
    assert torch.equal(x0, x2) and torch.equal(y0, y2)
    with np.load(files[0]) as f:
        np.testing.assert_array_equal(f["inputs"], x0.numpy())
        np.testing.assert_array_equal(f["targets"], y0.numpy())


def test_the_size_is_checked_once_per_dataset(monkeypatch):
    calls = []
    original = MazeTask.check_size
    monkeypatch.setattr(MazeTask, "check_size", lambda self, size: calls.append(size) or original(self, size))
    MazeTask().generate(9, 50, seed=0)
    assert calls == [9]
