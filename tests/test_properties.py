"""Property-based tests of every built-in generator and verifier over random sizes, options and seeds.

For every drawn puzzle: the target is a valid solution by an independent oracle (written here,
sharing no code with the generator), the task's verifier (``score``, and the gymnasium
environment's ``step``) accepts it, rejects every single changed valid position, and ignores
changes at positions that do not count.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.env import TaskEnv
from tasks.maze import MazeTask
from tasks.prefix_sums import PrefixSumsTask
from tasks.shortest_path import ShortestPathTask

from test_maze import bfs_path  # the independent BFS oracle of the maze tests

SETTINGS = settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
seeds = st.integers(0, 2**32 - 1)


# ---------------------------------------------------------------------------- oracles
def maze_oracle(task: MazeTask, x: np.ndarray) -> np.ndarray:
    """Breadth-first search over open pixels from the green to the red one. A perfect maze is a
    tree, so the shortest route is the only one; at the compact rendering it is the target."""
    open_ = (x > 0).any(axis=0)
    (start,) = zip(*np.nonzero((x[0] == 0) & (x[1] == 1)))
    (goal,) = zip(*np.nonzero((x[0] == 1) & (x[1] == 0)))
    return bfs_path(open_, start, goal)


def prefix_sums_oracle(task: PrefixSumsTask, x: np.ndarray) -> np.ndarray:
    parity, out = 0, []
    for value in x[0]:
        parity ^= int(value > 0)
        out.append(parity)
    return np.array(out, dtype=np.int64)


def _relax(free: np.ndarray, cost: np.ndarray, source: tuple[int, int]) -> np.ndarray:
    """Entering-cost distances by Bellman-Ford style relaxation until nothing changes (no heap)."""
    inf = np.iinfo(np.int64).max // 4
    dist = np.full(free.shape, inf, dtype=np.int64)
    dist[source] = 0
    while True:
        padded = np.pad(dist, 1, constant_values=inf)
        best = np.minimum.reduce([padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]])
        new = np.where(free & (best < inf), np.minimum(dist, best + cost), dist)
        if np.array_equal(new, dist):
            return dist
        dist = new


def shortest_path_oracle(task: ShortestPathTask, x: np.ndarray) -> np.ndarray:
    free = x[0] > 0.5
    cost = np.where(free, np.rint(x[3] * task.options.cost_max), 0).astype(np.int64)
    start = tuple(int(v) for v in np.argwhere(x[1] == 1)[0])
    goal = tuple(int(v) for v in np.argwhere(x[2] == 1)[0])
    d_s, d_t = _relax(free, cost, start), _relax(free, cost, goal)
    # d_t enters every cell but the goal when walked backwards: the route through v costs
    # d_s[v] + d_t[v] - cost[v] + cost[goal].
    return (free & (d_s + d_t - cost + cost[goal] == d_s[goal])).astype(np.int64)


# ---------------------------------------------------------------------------- tasks and sizes
def mazes():
    return st.tuples(st.builds(MazeTask, st.just("compact")), st.integers(1, 7).map(lambda k: 2 * k + 1))


def e2h_mazes():
    return st.tuples(st.builds(MazeTask, st.just("e2h")), st.integers(1, 5).map(lambda k: 2 * k + 1))


def prefix_sums():
    return st.tuples(st.builds(PrefixSumsTask), st.integers(1, 48))


@st.composite
def shortest_paths(draw):
    cost_min = draw(st.integers(1, 5))
    task = ShortestPathTask(obstacle_density=draw(st.floats(0.0, 0.4)), cost_min=cost_min,
                            cost_max=draw(st.integers(cost_min, 12)))
    return task, draw(st.integers(4, 11))


# name -> (task and size strategy, oracle: one input (C, *S) -> its target (*S))
TASKS = {
    "maze": (mazes, maze_oracle),
    "maze-e2h": (e2h_mazes, None),  # checked against the compact rendering below
    "prefix_sums": (prefix_sums, prefix_sums_oracle),
    "shortest_path": (shortest_paths, shortest_path_oracle),
}


def _e2h_oracle(task: MazeTask, size: int, seed: int, x: np.ndarray) -> np.ndarray:
    """The e2h target is the compact one blown up 2x2 with a one-pixel border (same puzzle)."""
    _, compact_y = MazeTask("compact").generate(size, len(x), seed)
    return np.pad(np.kron(compact_y, np.ones((1, 2, 2), dtype=np.int64)), ((0, 0), (1, 1), (1, 1)))


# ---------------------------------------------------------------------------- properties
@pytest.mark.parametrize("name", list(TASKS))
@SETTINGS
@given(data=st.data(), seed=seeds, n=st.integers(1, 3))
def test_generated_targets_are_the_oracles_solutions(name, data, seed, n):
    strategy, oracle = TASKS[name]
    task, size = data.draw(strategy())
    x, y = task.generate(size, n, seed)
    task.check_arrays(size, x, y)  # the format every consumer relies on: dtypes, shapes, spaces
    expected = _e2h_oracle(task, size, seed, x) if oracle is None else np.stack([oracle(task, xi) for xi in x])
    np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("name", list(TASKS))
@SETTINGS
@given(data=st.data(), seed=seeds)
def test_verifier_accepts_the_target_and_rejects_every_single_change(name, data, seed):
    task, size = data.draw(TASKS[name][0]())
    x_np, y_np = task.generate(size, 1, seed)
    x, y = torch.from_numpy(x_np), torch.from_numpy(y_np)
    assert task.score(x, y, y).tolist() == [True]

    valid = task.valid(x)[0]  # (*S)
    positions = valid.nonzero()  # (P, dims)
    assert len(positions) > 0
    # One batch of P predictions, each the target with one valid position set to another class.
    shift = data.draw(st.integers(1, task.spec.num_classes - 1))
    wrong = y.repeat(len(positions), *([1] * (y.dim() - 1)))  # (P, *S)
    index = (torch.arange(len(positions)), *positions.T)
    wrong[index] = (wrong[index] + shift) % task.spec.num_classes
    assert not task.score(x.expand(len(positions), *x.shape[1:]), y.expand_as(wrong), wrong).any()

    # Positions that do not count (maze walls, obstacles) may hold anything.
    anything = y.clone()
    anything[0][~valid] = (anything[0][~valid] + shift) % task.spec.num_classes
    assert task.score(x, y, anything).tolist() == [True]


@pytest.mark.parametrize("name", ["maze", "prefix_sums", "shortest_path"])
@SETTINGS
@given(data=st.data(), seed=seeds)
def test_environment_rewards_exactly_the_target(name, data, seed):
    task, size = data.draw(TASKS[name][0]())
    env = TaskEnv(task, size)
    obs, _ = env.reset(seed=seed)
    target = TASKS[name][1](task, obs)
    assert env.observation_space.contains(obs) and env.action_space.contains(target)
    assert env.step(target)[1:4] == (1.0, True, False)
    obs, _ = env.reset(seed=seed)
    valid = task.valid(torch.from_numpy(obs[None]))[0].numpy()
    flip = tuple(np.argwhere(valid)[data.draw(st.integers(0, int(valid.sum()) - 1))])
    wrong = target.copy()
    wrong[flip] = 1 - wrong[flip]
    assert env.step(wrong)[1] == 0.0
