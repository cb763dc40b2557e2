"""Mazes: find the path from start to goal (easy-to-hard data, Schwarzschild et al. 2021).

By default each puzzle is a perfect maze carved by randomized depth-first search (the recursive
backtracker, run iteratively) on a grid of ``(size + 1) // 2`` cells per side, with a start
and a goal cell drawn at random (distinct). Because the maze is a tree, the path between
them is unique; the target marks it, both endpoints included. The defaults reproduce the
maze datasets byte for byte as they have always been generated.

Options (``MazeOptions``; every one is part of the dataset cache key):

- ``rendering``: ``compact`` (one pixel per unit, default) or ``e2h`` (the published layout).
- ``generator``: the algorithm that carves the perfect maze, ``dfs`` (default), ``kruskal``,
  ``wilson`` (a uniform spanning tree), ``prim`` (the frontier-cell variant) or ``division``
  (recursive division); see tasks/maze_generators.py and docs/maze_generators.md. Or a list of
  distinct names, a **mixture**: each puzzle's generator is drawn uniformly from it, as the first
  draw of that puzzle's own stream (``draw_generator``), so puzzle i of a dataset does not depend
  on n. The list is kept in the order of ``GENERATORS`` (``[kruskal, dfs]`` is the same mixture,
  the same bytes and cache key as ``[dfs, kruskal]``), and a list of one name is that name.
- ``percolation``: a float in ``[0, 1)``, default 0. After carving, every interior wall still
  standing between two adjacent cells is opened independently with this probability, which
  adds loops. At 0 nothing is drawn and the maze stays perfect.
- ``start`` / ``goal``: ``random`` (default: a uniformly random cell, the goal other than the
  start) or ``dead_end`` (a uniformly random dead end, a cell with exactly one open neighbour
  after percolation; start and goal are always distinct). A maze with too few dead ends is
  redrawn (up to ``MAX_PLACEMENT_ATTEMPTS`` mazes per puzzle, then ``TaskError``); that only
  happens with percolation, and it conditions the mazes on having the dead ends asked for.

Draw order per puzzle: the mixture's pick of a generator (one integer, only for a list); the
generator's own draws; the percolation floats (one per standing
interior wall, none at 0); the start and goal. The ``dfs`` generator draws a random start and
goal in its own single call (the historical stream); they are used when both ``start`` and
``goal`` are ``random`` and ignored otherwise.

What loops change for a model. With percolation 0 the maze is a tree: there is exactly one
path, and following corridors away from dead ends finds it. With loops several start-goal
routes exist, the target is no longer "the" path but **the union of every shortest start-goal
path**: a unit ``v`` (a cell or a passage) is marked iff ``d(s, v) + d(v, t) == d(s, t)``
(unit steps between 4-neighbouring open units; BFS from the start and from the goal, exact).
Shortest paths may tie, and then the target marks every tie, so a model must compare route
lengths (not merely find some route) and keep all equally short ones; a longer detour around a
loop is not marked. Dead-end filling alone no longer solves the puzzle.

Geometry. A maze of odd ``size`` n has a walls-included grid of ``n + 2`` units per side:
the outer wall, cell ``(r, c)`` at unit ``(2r + 1, 2c + 1)``, and the passage between two
adjacent cells at the unit between them. Units at (even, even) positions are always wall.

Colours (input float32 ``(3, H, W)``, RGB, every value 0 or 1): wall ``(0, 0, 0)``, open
``(1, 1, 1)``, start green ``(0, 1, 0)``, goal red ``(1, 0, 0)``. Target int64 ``(H, W)``: 1 on
every pixel of the marked units, 0 elsewhere. Only open pixels are scored (``valid``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from gymnasium import spaces

from tasks import maze_generators as mg
from tasks.base import Task, TaskError, TaskSpec, is_integer, is_number
from tasks.registry import register_task

RENDERINGS = ("compact", "e2h")
GENERATORS = tuple(mg.GENERATORS)
PLACEMENTS = ("random", "dead_end")
MAX_PLACEMENT_ATTEMPTS = 100  # mazes drawn per puzzle before a dead_end start/goal is given up


class _Geometry:
    """Per-size tables shared by every maze of that size (built once, cached)."""

    def __init__(self, size: int) -> None:
        m = (size + 1) // 2  # cells per side
        w = size + 2  # units per side
        self.m, self.w, self.cells = m, w, m * m
        self.grid = mg.grid(m, m)
        # Flat index of each cell's unit in the (w, w) grid, and of each interior wall's unit.
        self.unit_np = np.array([(2 * (i // m) + 1) * w + 2 * (i % m) + 1 for i in range(m * m)], dtype=np.intp)
        self.edge_unit = (self.unit_np[self.grid.ea] + self.unit_np[self.grid.eb]) >> 1
        # Every cell unit is open in every maze (each generator reaches every cell).
        cells_open = np.zeros(w * w, dtype=np.uint8)
        cells_open[self.unit_np] = 1
        self.cells_open = cells_open


@lru_cache(maxsize=64)
def _geometry(size: int) -> _Geometry:
    return _Geometry(size)


def _bfs(adj: list, mask: bytes, src: int, n: int, stop: int = -1) -> tuple[list[int], list[int]]:
    """Cell distances from ``src`` (-1 where unreached) and the wall each cell was first entered
    through, over the open walls of ``mask``; stops once ``stop`` is reached if given."""
    dist = [-1] * n
    via = [-1] * n
    dist[src] = 0
    queue = [src]
    for u in queue:  # the list grows while it is read: a FIFO queue
        if u == stop:
            break
        du = dist[u] + 1
        for v, e in adj[u]:
            if mask[e] and dist[v] < 0:
                dist[v] = du
                via[v] = e
                queue.append(v)
    return dist, via


def _tree_path(g: _Geometry, parent: list[int], start: int, goal: int) -> np.ndarray:
    """Flat uint8 ``(w * w,)``: the unique path of a tree given by its parent list (dfs's fast
    path): goal up to the common ancestor, then down to the start."""
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
    pu = g.unit_np[up + [v] + down[::-1]]  # start ... goal
    path = np.zeros(g.w * g.w, dtype=np.uint8)
    path[pu] = 1
    path[(pu[1:] + pu[:-1]) >> 1] = 1  # the passage halfway between consecutive cells
    return path


def _target(g: _Geometry, mask: np.ndarray, start: int, goal: int, tree: bool) -> np.ndarray:
    """Flat uint8 ``(w * w,)``: the units on some shortest start-goal path (both ends included).

    On the cell graph (a passage unit joins two cells, so unit distances are twice cell
    distances and a passage is on a shortest path iff its wall is a tight edge). In a tree one
    BFS from the start and the walk back from the goal; with loops a BFS from each end, and a
    cell ``v`` is kept iff ``d(s, v) + d(v, t) == d(s, t)``, an open wall ``(a, b)`` iff
    ``d(s, a) + 1 + d(b, t) == d(s, t)`` either way round.
    """
    grid, n = g.grid, g.cells
    raw = mask.tobytes()
    path = np.zeros(g.w * g.w, dtype=np.uint8)
    if tree:
        _, via = _bfs(grid.adj, raw, start, n, stop=goal)
        cells, walls = [goal], []
        ea, eb = grid.ea_list, grid.eb_list
        v = goal
        while v != start:
            e = via[v]
            walls.append(e)
            v = ea[e] if eb[e] == v else eb[e]
            cells.append(v)
        path[g.unit_np[cells]] = 1
        path[g.edge_unit[walls]] = 1
        return path
    d_s = np.array(_bfs(grid.adj, raw, start, n)[0])
    d_t = np.array(_bfs(grid.adj, raw, goal, n)[0])
    total = d_s[goal]
    on_cell = (d_s >= 0) & (d_s + d_t == total)
    a, b = grid.ea, grid.eb
    on_wall = mask.view(bool) & on_cell[a] & on_cell[b] & (
        (d_s[a] + 1 + d_t[b] == total) | (d_s[b] + 1 + d_t[a] == total))
    path[g.unit_np[on_cell]] = 1
    path[g.edge_unit[on_wall]] = 1
    return path


def _generators(value: object) -> str | tuple[str, ...] | None:
    """``value`` as a generator option: a known name, or a list (any non-string sequence: Hydra
    passes a ListConfig) of distinct known names, kept in ``GENERATORS`` order and a one-name list
    as that name; None for anything else."""
    if isinstance(value, str):
        return value if value in GENERATORS else None
    if isinstance(value, bytes) or not isinstance(value, Sequence):
        return None
    names = list(value)
    if not names or not all(isinstance(n, str) and n in GENERATORS for n in names) or len(set(names)) != len(names):
        return None
    # One canonical order: a mixture is a set of generators, so two spellings of it give one dataset.
    ordered = tuple(g for g in GENERATORS if g in names)
    return ordered[0] if len(ordered) == 1 else ordered


@dataclass(frozen=True)
class MazeOptions:
    """``rendering``: ``compact`` or ``e2h``; ``generator``: ``dfs``, ``kruskal``, ``wilson``, ``prim``
    or ``division``, or a list of distinct ones (a mixture); ``percolation``: a number in ``[0, 1)``;
    ``start`` and ``goal``: ``random`` or ``dead_end``. The defaults give the historical mazes byte for byte."""

    rendering: str = "compact"
    generator: str | tuple[str, ...] = "dfs"
    percolation: float = 0.0
    start: str = "random"
    goal: str = "random"

    def __post_init__(self) -> None:
        if not (isinstance(self.rendering, str) and self.rendering in RENDERINGS):
            raise TaskError(f"maze rendering must be 'compact' or 'e2h', got {self.rendering!r}.")
        generator = _generators(self.generator)
        if generator is None:
            raise TaskError(f"maze generator must be one of {', '.join(map(repr, GENERATORS))} or a list of distinct ones "
                            f"(a mixture), got {self.generator!r}.")
        if not (is_number(self.percolation) and 0.0 <= float(self.percolation) < 1.0):
            raise TaskError(f"maze percolation must be a number in [0, 1), got {self.percolation!r}.")
        for name in ("start", "goal"):
            value = getattr(self, name)
            if not (isinstance(value, str) and value in PLACEMENTS):
                raise TaskError(f"maze {name} must be 'random' or 'dead_end', got {value!r}.")
        # A plain float, so equal options give equal cache keys (0 == 0.0 == np.float64(0)); the
        # generator as a name or a tuple of names in canonical order, for the same reason.
        object.__setattr__(self, "percolation", float(self.percolation))
        object.__setattr__(self, "generator", generator)


@register_task("maze", env_id="algoreason/Maze-v0", env_size=9)
class MazeTask(Task):
    """Mark the shortest start-goal path(s) of a maze, at either of two renderings.

    By default a perfect maze carved by depth-first search with a random start and goal;
    ``generator``, ``percolation`` (loops), ``start`` and ``goal`` change how it is made (see the
    module docstring and docs/maze_generators.md).

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
        mask, parent, s, t = self._carve(g, rng)
        w = g.w
        open_ = g.cells_open.copy()
        open_[g.edge_unit[mask.view(bool)]] = 1
        if parent is not None and self.options.percolation == 0:
            path = _tree_path(g, parent, s, t)
        else:
            path = _target(g, mask, s, t, tree=self.options.percolation == 0)
        s, t = g.unit_np[s], g.unit_np[t]
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

    def draw_generator(self, rng: np.random.Generator) -> str:
        """The generator of one puzzle: the one named, drawing nothing (the historical streams), or
        for a mixture one uniform pick, the puzzle's first draw from its own ``rng``."""
        generator = self.options.generator
        return generator if isinstance(generator, str) else generator[int(rng.integers(len(generator)))]

    def _carve(self, g: _Geometry, rng: np.random.Generator) -> tuple[np.ndarray, list[int] | None, int, int]:
        """The edge mask of one maze (generator, then percolation), dfs's parent list (None for the
        other generators) and the start and goal cells."""
        o = self.options
        n = g.cells
        both_random = o.start == "random" and o.goal == "random"
        # Picked once per puzzle, outside the redraws below: a mixture stays uniform even where a
        # dead-end placement redraws one generator's mazes more often than another's.
        generator = self.draw_generator(rng)
        for _ in range(MAX_PLACEMENT_ATTEMPTS):
            if generator == "dfs":
                mask, parent, s, t = mg.dfs_with_ends(g.grid, rng)  # the historical single draw
            else:
                mask, parent = mg.GENERATORS[generator](g.grid, rng), None
                s = t = -1
            mg.percolate(mask, o.percolation, rng)
            if both_random:
                if s < 0:
                    s, t = rng.integers(0, (n, n - 1)).tolist()
                    t += t >= s
                return mask, parent, s, t
            dead = np.flatnonzero(g.grid.degrees(mask) == 1)
            if o.start == "dead_end":
                if dead.size < (2 if o.goal == "dead_end" else 1):
                    continue
                s = int(dead[rng.integers(dead.size)])
            else:
                s = int(rng.integers(n))
            if o.goal == "dead_end":
                dead = dead[dead != s]
                if dead.size == 0:
                    continue
                t = int(dead[rng.integers(dead.size)])
            else:
                t = int(rng.integers(n - 1))
                t += t >= s
            return mask, parent, s, t
        which = "start and goal" if o.start == o.goal == "dead_end" else ("start" if o.start == "dead_end" else "goal")
        raise TaskError(
            f"maze {which} 'dead_end' cannot be placed: {MAX_PLACEMENT_ATTEMPTS} mazes of size {g.w - 2} at "
            f"percolation {o.percolation} in a row had too few dead ends (cells with one open neighbour); "
            f"lower the percolation or use 'random'."
        )

    def valid(self, inputs: torch.Tensor) -> torch.Tensor:
        """Open pixels (any channel lit); walls are not scored."""
        return (inputs > 0).any(dim=1)

    def observation_space(self, size: int) -> spaces.Box:
        """Every channel lies in ``[0, 1]`` (and holds only 0 or 1: see ``check_arrays``)."""
        return spaces.Box(0.0, 1.0, shape=(self.spec.in_channels, *self.shape(size)), dtype=np.float32)

    def check_arrays(self, size: int, inputs: np.ndarray, targets: np.ndarray) -> None:
        """``Task.check_arrays``, and every input value must be exactly 0 or 1."""
        super().check_arrays(size, inputs, targets)
        if not ((inputs == 0) | (inputs == 1)).all():
            raise TaskError(f"{self.name} inputs must hold only 0 or 1 in every channel (walls, open, start, goal).")
