"""Mazes: find the unique path from start to goal (easy-to-hard data, Schwarzschild et al. 2021).

Each puzzle is a perfect maze carved by randomized depth-first search (the recursive
backtracker, run iteratively) on a grid of ``(size + 1) // 2`` cells per side, with a start
and a goal cell drawn at random (distinct). Because the maze is a tree, the path between
them is unique; the target marks it, both endpoints included.

Geometry. A maze of odd ``size`` n has a walls-included grid of ``n + 2`` units per side:
the outer wall, cell ``(r, c)`` at unit ``(2r + 1, 2c + 1)``, and the passage between two
adjacent cells at the unit between them.

Colours (input float32 ``(3, H, W)``, RGB): wall ``(0, 0, 0)``, open ``(1, 1, 1)``, start
green ``(0, 1, 0)``, goal red ``(1, 0, 0)``. Target int64 ``(H, W)``: 1 on every pixel of
the path's units, 0 elsewhere. Only open pixels are scored (``valid``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from itertools import permutations

import numpy as np
import torch

from tasks.base import Task, TaskError, TaskSpec, is_integer

RENDERINGS = ("compact", "e2h")

# The 24 orders in which a cell may try its four neighbours (up, down, left, right).
_ORDERS = tuple(permutations(range(4)))


class _Geometry:
    """Per-size tables shared by every maze of that size (built once, cached)."""

    def __init__(self, size: int) -> None:
        m = (size + 1) // 2  # cells per side
        w = size + 2  # units per side
        self.m, self.w, self.cells = m, w, m * m
        # Flat index of each cell's unit in the (w, w) grid.
        self.unit = [(2 * (i // m) + 1) * w + 2 * (i % m) + 1 for i in range(m * m)]
        self.unit_np = np.array(self.unit, dtype=np.intp)
        # For every cell and every order, its in-grid neighbours in that order.
        nbrs = []
        for i in range(m * m):
            r, c = divmod(i, m)
            by_dir = (
                i - m if r > 0 else -1,
                i + m if r < m - 1 else -1,
                i - 1 if c > 0 else -1,
                i + 1 if c < m - 1 else -1,
            )
            for order in _ORDERS:
                nbrs.append(tuple(by_dir[d] for d in order if by_dir[d] >= 0))
        self.nbrs = nbrs
        # All cell units are open in a perfect maze (every cell is reached by the DFS).
        cells_open = np.zeros(w * w, dtype=np.uint8)
        cells_open[self.unit_np] = 1
        self.cells_open = cells_open
        # Upper bounds of the random draws of one maze (see _carve).
        self.bounds = np.array([24] * (m * m) + [m * m, m * m, m * m - 1], dtype=np.int64)


@lru_cache(maxsize=64)
def _geometry(size: int) -> _Geometry:
    return _Geometry(size)


def _carve(g: _Geometry, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int, int]:
    """One maze: flat ``open`` and ``path`` uint8 masks over the (w, w) unit grid, start, goal units.

    All randomness is drawn up front: a neighbour order per cell (a uniformly random
    permutation; taking the first unvisited neighbour in it is the same as picking one
    uniformly among the unvisited, as the recursive backtracker does), the DFS root, start
    and goal.
    """
    n = g.cells
    draws = rng.integers(0, g.bounds).tolist()  # one call: n orders, then root, start, goal
    root, start, goal = draws[n:]
    if goal >= start:  # goal was drawn from n - 1 values: uniform over the cells other than start
        goal += 1

    # Iterative randomized DFS; parent[] is the spanning tree, i.e. the maze.
    nbrs = g.nbrs
    visited = bytearray(n)
    parent = [-1] * n
    visited[root] = 1
    stack = [root]
    iters = [iter(nbrs[root * 24 + draws[root]])]
    while iters:
        for nxt in iters[-1]:
            if not visited[nxt]:
                break
        else:
            iters.pop()
            stack.pop()
            continue
        visited[nxt] = 1
        parent[nxt] = stack[-1]
        stack.append(nxt)
        iters.append(iter(nbrs[nxt * 24 + draws[nxt]]))

    # The unique path: goal up to the common ancestor, then down to start.
    on_goal_side = {}
    v, k = goal, 0
    while v >= 0:
        on_goal_side[v] = k
        v, k = parent[v], k + 1
    up = []
    v = start
    while v not in on_goal_side:
        up.append(v)
        v = parent[v]
    down = []
    u = goal
    while u != v:
        down.append(u)
        u = parent[u]
    path_cells = up + [v] + down[::-1]  # start ... goal

    unit = g.unit
    # Passages: the unit halfway between a cell and its parent (flat indices average exactly).
    par = np.array(parent, dtype=np.intp)
    child = np.flatnonzero(par >= 0)
    u_np = g.unit_np
    open_ = g.cells_open.copy()
    open_[(u_np[child] + u_np[par[child]]) >> 1] = 1

    pu = [unit[c] for c in path_cells]
    path = np.zeros(g.w * g.w, dtype=np.uint8)
    path[pu] = 1
    path[[(a + b) >> 1 for a, b in zip(pu, pu[1:])]] = 1
    return open_, path, unit[start], unit[goal]


@dataclass(frozen=True)
class MazeOptions:
    """``rendering``: ``compact`` (one pixel per grid unit) or ``e2h`` (the published layout)."""

    rendering: str = "compact"

    def __post_init__(self) -> None:
        if self.rendering not in RENDERINGS:
            raise TaskError(f"maze rendering must be 'compact' or 'e2h', got {self.rendering!r}.")


class MazeTask(Task):
    """Find the path through a perfect maze, at either of two renderings.

    ``rendering="compact"`` (the default) draws one pixel per unit: ``(n + 2, n + 2)``.
    ``rendering="e2h"`` reproduces the published easy-to-hard images: each unit as 2x2
    pixels plus a one-pixel wall border, ``(2n + 6, 2n + 6)`` (9 -> 24, 59 -> 124). The two
    carry exactly the same information (``e2h == pad(kron(compact, ones((2, 2))), 1)`` for
    input and target), and the compact one has about a quarter of the pixels, so a
    convolutional model costs about 1/4 of the compute on it; that is why it is the default.
    """

    name = "maze"
    spec = TaskSpec(dims=2, in_channels=3, num_classes=2)
    Options = MazeOptions
    options: MazeOptions

    def check_size(self, size: int) -> None:
        if not is_integer(size) or size < 3 or size % 2 == 0:
            raise TaskError(f"maze size must be an odd integer >= 3 (9, 11, 13, ...), got {size!r}.")

    def shape(self, size: int) -> tuple[int, int]:
        w = int(size) + 2
        return (w, w) if self.options.rendering == "compact" else (2 * w + 2, 2 * w + 2)

    def sample(self, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        g = _geometry(int(size))
        open_, path, s, t = _carve(g, rng)
        w = g.w
        x = np.empty((3, w * w), dtype=np.float32)
        x[:] = open_
        x[0, s] = x[2, s] = 0.0  # start: green
        x[1, t] = x[2, t] = 0.0  # goal: red
        x = x.reshape(3, w, w)
        y = path.reshape(w, w)
        if self.options.rendering == "compact":
            return x, y.astype(np.int64)
        big = 2 * w + 2
        xi = np.zeros((3, big, big), dtype=np.float32)
        xi[:, 1:-1, 1:-1] = np.broadcast_to(x[:, :, None, :, None], (3, w, 2, w, 2)).reshape(3, 2 * w, 2 * w)
        yi = np.zeros((big, big), dtype=np.int64)
        yi[1:-1, 1:-1] = np.broadcast_to(y[:, None, :, None], (w, 2, w, 2)).reshape(2 * w, 2 * w)
        return xi, yi

    def valid(self, inputs: torch.Tensor) -> torch.Tensor:
        """Open pixels (any channel lit); walls are not scored."""
        return (inputs > 0).any(dim=1)
