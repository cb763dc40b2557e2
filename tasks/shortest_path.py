"""Weighted shortest paths on grids with loops: mark every cell on some cheapest route.

Each puzzle is an ``n x n`` grid. Every cell is an obstacle independently with probability
``obstacle_density``; free cells get an integer cost drawn uniformly from
``[cost_min, cost_max]``. Because obstacles are scattered at random (rather than carved as a
perfect maze), the free cells form a graph with many loops, so several routes usually join
start and goal, and with integer costs several of them often tie.

Moves are between 4-neighbouring free cells. **Cost convention**: the cost of a path is the
sum of the costs of the cells it *enters*, that is of every cell on it except the start (the
goal included). A cell ``v`` lies on some cheapest path from ``s`` to ``t`` iff
``d(s, v) + d(v, t) == d(s, t)`` under that convention (equivalently, with ``D`` the
symmetric sum over every cell of a path, both ends included:
``D(s, v) + D(v, t) - cost(v) == D(s, t)``). With ``cost_min == cost_max`` every free cell
costs the same and the task is plain breadth-first search.

Start and goal are distinct free cells joined by a path: the start is a random free cell whose
connected component holds at least half of the free cells, the goal a random cell of that
component at Manhattan distance at least ``n // 2`` from the start; a grid that admits no such
pair is redrawn. Free cells unreachable from the start may remain; they are on no path. With
``unique_path`` only start-goal pairs whose cheapest route is unique are kept (up to 20 goals
are tried per grid, then the grid is redrawn): the target is then a single route, as in a maze,
but on a grid with loops. Such grids are rarer as the side grows (generation: about 1,000 grids
per second of side 8, 100 of side 16, 4 of side 32 on one core).

Input float32 ``(4, n, n)``:

- channel 0: 1 on free cells, 0 on obstacles;
- channel 1: 1 on the start cell, 0 elsewhere;
- channel 2: 1 on the goal cell, 0 elsewhere;
- channel 3: ``cost / cost_max`` on free cells (in ``(0, 1]``; 1 everywhere free when costs are
  unit), 0 on obstacles.

Target int64 ``(n, n)``: 1 on every cell that lies on at least one cheapest start-goal path
(start and goal included), 0 elsewhere, computed by the exact solver
``shortest_path_mask`` (Dijkstra from the start and from the goal). Only free cells are scored
(``valid``); a prediction is correct iff it equals that mask on every free cell.
"""

from __future__ import annotations

from dataclasses import dataclass
from heapq import heappop, heappush
from typing import Sequence

import numpy as np
import torch
from gymnasium import spaces

from tasks.base import Task, TaskError, TaskSpec, is_integer, is_number
from tasks.registry import register_task

_INF = 1 << 62
_MAX_COST = 1_000_000  # costs stay exact through the float32 ``cost / cost_max`` channel
_MAX_DENSITY = 0.4  # beyond ~0.41 the free cells stop percolating and grids fall apart
_MAX_ATTEMPTS = 1000
_GOALS_PER_GRID = 20  # goals tried per drawn grid when unique_path asks for a single cheapest route


def _dijkstra(cost: list[int], width: int, src: int) -> list[int]:
    """Entering-cost distances from ``src`` on a padded flat grid (cost 0 marks blocked cells).

    ``cost`` is the row-major flattening of a grid padded with a blocked border, so the four
    neighbours of an inner cell ``u`` are ``u +- 1`` and ``u +- width`` without bound checks.
    Unreached cells keep ``_INF``.
    """
    dist = [_INF] * len(cost)
    dist[src] = 0
    heap = [(0, src)]
    offsets = (1, -1, width, -width)
    while heap:
        d, u = heappop(heap)
        if d != dist[u]:  # a stale entry: u was settled with a smaller distance
            continue
        for o in offsets:
            v = u + o
            c = cost[v]
            if c:
                nd = d + c
                if nd < dist[v]:
                    dist[v] = nd
                    heappush(heap, (nd, v))
    return dist


def _padded(free: np.ndarray, cost: np.ndarray) -> list[int]:
    """The flat padded cost list ``_dijkstra`` expects (0 on obstacles and on the border)."""
    h, w = free.shape
    grid = np.zeros((h + 2, w + 2), dtype=np.int64)
    grid[1:-1, 1:-1] = np.where(free, cost, 0)
    return grid.ravel().tolist()


def _inner(dist: list[int], h: int, w: int) -> np.ndarray:
    """The ``(h, w)`` interior of a padded flat distance list, as int64."""
    return np.asarray(dist, dtype=np.int64).reshape(h + 2, w + 2)[1:-1, 1:-1]


def _check_cell(name: str, cell: Sequence[int], free: np.ndarray) -> tuple[int, int]:
    r, c = (int(x) for x in cell)
    if not (0 <= r < free.shape[0] and 0 <= c < free.shape[1]) or not free[r, c]:
        raise ValueError(f"the {name} {(r, c)} must be a free cell inside the {free.shape} grid.")
    return r, c


def shortest_path_mask(
    free: np.ndarray, cost: np.ndarray, start: Sequence[int], goal: Sequence[int]
) -> np.ndarray:
    """Bool ``(H, W)``: the cells lying on at least one cheapest path from ``start`` to ``goal``.

    ``free`` is a bool ``(H, W)`` grid (True where a cell can be entered), ``cost`` an integer
    ``(H, W)`` grid whose values on free cells are >= 1 (values on obstacles are ignored),
    ``start`` and ``goal`` are ``(row, col)`` free cells. Moves go between 4-neighbours; a path
    costs the sum of the costs of the cells it enters (every cell but the start). The mask
    includes start and goal. Exact (integer Dijkstra from both ends). Raises ``ValueError``
    for malformed arguments or when the goal cannot be reached from the start.
    """
    free = np.asarray(free, dtype=bool)
    cost = np.asarray(cost)
    if free.ndim != 2 or cost.shape != free.shape:
        raise ValueError(f"free and cost must be 2-D grids of one shape, got {free.shape} and {cost.shape}.")
    if not np.issubdtype(cost.dtype, np.integer):
        raise ValueError(f"cost must be an integer array, got dtype {cost.dtype}.")
    if np.any(cost[free] < 1):
        raise ValueError("every free cell must cost at least 1.")
    h, w = free.shape
    (sr, sc), (tr, tc) = _check_cell("start", start, free), _check_cell("goal", goal, free)
    flat = _padded(free, cost)
    s, t = (sr + 1) * (w + 2) + sc + 1, (tr + 1) * (w + 2) + tc + 1
    d_s = _dijkstra(flat, w + 2, s)
    if d_s[t] == _INF:
        raise ValueError(f"the goal {(tr, tc)} cannot be reached from the start {(sr, sc)}.")
    d_t = _dijkstra(flat, w + 2, t)
    return _mask(_inner(d_s, h, w), _inner(d_t, h, w), cost, (tr, tc), free)


def _mask(d_s: np.ndarray, d_t: np.ndarray, cost: np.ndarray, goal: tuple[int, int], free: np.ndarray) -> np.ndarray:
    # d_t counts cells entered walking *from* the goal, so the leg v -> t costs
    # d_t[v] - cost[v] + cost[t] (it enters t but not v).
    reached = (d_s < _INF) & (d_t < _INF) & free
    total = d_s[goal]
    through = d_s + d_t - cost.astype(np.int64) + int(cost[goal])
    return reached & (through == total)


def is_single_path(mask: np.ndarray, start: tuple[int, int], goal: tuple[int, int]) -> bool:
    """True when the marked cells form one simple start-goal path: start and goal have one marked
    4-neighbour each, every other marked cell two. (A cheapest path that runs beside itself also
    fails the test: such grids are merely left out when unique routes are asked for.)"""
    m = np.pad(mask.astype(np.int8), 1)
    degree = (m[:-2, 1:-1] + m[2:, 1:-1] + m[1:-1, :-2] + m[1:-1, 2:])[mask]
    ends = np.zeros_like(mask)
    ends[start] = ends[goal] = True
    return bool(np.all(degree == np.where(ends[mask], 1, 2)))


@dataclass(frozen=True)
class ShortestPathOptions:
    """``obstacle_density`` in ``[0, 0.4]``; integer costs ``1 <= cost_min <= cost_max <= 1000000``;
    ``unique_path``: only grids whose cheapest route is unique (no ties to mark)."""

    obstacle_density: float = 0.25
    cost_min: int = 1
    cost_max: int = 9
    unique_path: bool = False

    def __post_init__(self) -> None:
        if not (is_number(self.obstacle_density) and 0.0 <= float(self.obstacle_density) <= _MAX_DENSITY):
            raise TaskError(
                f"shortest_path obstacle_density must be a number in [0, {_MAX_DENSITY}], got {self.obstacle_density!r}."
            )
        if not (is_integer(self.cost_min) and is_integer(self.cost_max) and 1 <= self.cost_min <= self.cost_max <= _MAX_COST):
            raise TaskError(
                f"shortest_path costs must be integers with 1 <= cost_min <= cost_max <= {_MAX_COST}, "
                f"got cost_min={self.cost_min!r} and cost_max={self.cost_max!r}."
            )
        if not isinstance(self.unique_path, (bool, np.bool_)):
            raise TaskError(f"shortest_path unique_path must be true or false, got {self.unique_path!r}.")
        # Plain Python values, so equal options give equal cache keys (0.25 == np.float64(0.25)).
        object.__setattr__(self, "unique_path", bool(self.unique_path))
        object.__setattr__(self, "obstacle_density", float(self.obstacle_density))
        object.__setattr__(self, "cost_min", int(self.cost_min))
        object.__setattr__(self, "cost_max", int(self.cost_max))


@register_task("shortest_path", env_id="algoreason/ShortestPath-v0", env_size=12)
class ShortestPathTask(Task):
    """Mark every cell on some cheapest start-goal path of a weighted grid with obstacles.

    Options: ``obstacle_density`` in ``[0, 0.4]`` (probability that a cell is an obstacle),
    ``cost_min`` and ``cost_max`` integers with ``1 <= cost_min <= cost_max <= 1000000``
    (``cost_min == cost_max`` gives unit costs, i.e. breadth-first search), ``unique_path``
    (only grids with a single cheapest route; default false). Sizes are grid
    sides ``n >= 4``. See the module docstring for the cost convention and channel layout.
    """

    name = "shortest_path"
    spec = TaskSpec(dims=2, in_channels=4, num_classes=2)

    Options = ShortestPathOptions
    options: ShortestPathOptions

    def check_size(self, size: int) -> None:
        if not is_integer(size) or size < 4:
            raise TaskError(f"shortest_path sizes are grid sides, an integer >= 4, got {size!r}.")

    def shape(self, size: int) -> tuple[int, int]:
        return (int(size), int(size))

    def sample(self, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        n = int(size)
        w = n + 2
        min_dist = n // 2
        rows, cols = np.divmod(np.arange(n * n), n)
        for _ in range(_MAX_ATTEMPTS):
            free = rng.random((n, n)) >= self.options.obstacle_density
            cost = rng.integers(self.options.cost_min, self.options.cost_max + 1, size=(n, n), dtype=np.int64)
            free_idx = np.flatnonzero(free)
            if free_idx.size < 2:
                continue
            sr, sc = divmod(int(free_idx[rng.integers(free_idx.size)]), n)
            flat = _padded(free, cost)
            d_s = _inner(_dijkstra(flat, w, (sr + 1) * w + sc + 1), n, n)
            reach = (d_s < _INF).ravel()
            if 2 * int(reach.sum()) < free_idx.size:  # the start sits in a small pocket
                continue
            far = np.flatnonzero(reach & (np.abs(rows - sr) + np.abs(cols - sc) >= min_dist))
            if far.size == 0:
                continue
            # With unique_path, a few goals are tried on each grid before the grid is redrawn
            # (most grids with loops have tied routes to most goals: 92% of 16x16 ones at 25%).
            for _ in range(_GOALS_PER_GRID if self.options.unique_path else 1):
                tr, tc = divmod(int(far[rng.integers(far.size)]), n)
                d_t = _inner(_dijkstra(flat, w, (tr + 1) * w + tc + 1), n, n)
                target = _mask(d_s, d_t, cost, (tr, tc), free)
                if not self.options.unique_path or is_single_path(target, (sr, sc), (tr, tc)):
                    break
            else:
                continue
            break
        else:  # unreachable for densities <= 0.4 in practice
            raise RuntimeError(f"could not draw a connected shortest_path grid of side {n} in {_MAX_ATTEMPTS} tries.")

        inputs = np.zeros((4, n, n), dtype=np.float32)
        inputs[0] = free
        inputs[1, sr, sc] = 1.0
        inputs[2, tr, tc] = 1.0
        inputs[3] = np.where(free, cost.astype(np.float32) / np.float32(self.options.cost_max), np.float32(0.0))
        return inputs, target.astype(np.int64)

    def decode(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[int, int], tuple[int, int]]:
        """Recover ``(free, cost, start, goal)`` from one float ``(4, n, n)`` input of this task."""
        x = np.asarray(inputs, dtype=np.float32)
        free = x[0] > 0.5
        cost = np.where(free, np.rint(x[3].astype(np.float64) * self.options.cost_max), 0).astype(np.int64)
        start = tuple(int(v) for v in np.unravel_index(int(np.argmax(x[1])), free.shape))
        goal = tuple(int(v) for v in np.unravel_index(int(np.argmax(x[2])), free.shape))
        return free, cost, start, goal  # type: ignore[return-value]

    def solve(self, inputs: np.ndarray) -> np.ndarray:
        """The exact target int64 ``(n, n)`` of one input, recomputed from the input alone."""
        return shortest_path_mask(*self.decode(inputs)).astype(np.int64)

    def valid(self, inputs: torch.Tensor) -> torch.Tensor:
        """Free cells only (obstacles are never on a path and are not scored)."""
        return inputs[:, 0] > 0.5

    def observation_space(self, size: int) -> spaces.Box:
        """Every channel lies in ``[0, 1]``."""
        return spaces.Box(0.0, 1.0, shape=(self.spec.in_channels, *self.shape(size)), dtype=np.float32)


__all__ = ["ShortestPathTask", "shortest_path_mask"]
