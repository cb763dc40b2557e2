"""Maze generators: spanning trees of a ``rows x cols`` grid of cells, as open-passage masks.

Every generator takes a ``Grid`` (the per-shape tables, built once by ``grid(rows, cols)``) and a
``numpy.random.Generator`` and returns a uint8 **edge mask**: one entry per interior wall of the
cell grid, 1 where the wall is open (a passage), 0 where it stands. Edges are numbered

- ``r * (cols - 1) + c`` for the wall between cells ``(r, c)`` and ``(r, c + 1)`` (the
  ``grid.horizontal`` first ones), then
- ``grid.horizontal + r * cols + c`` for the wall between cells ``(r, c)`` and ``(r + 1, c)``,

with cell ``(r, c)`` numbered ``r * cols + c``; ``grid.ea[e] < grid.eb[e]`` are the two cells of
edge ``e``. Every generator here returns a spanning tree (a perfect maze: every cell reachable,
``cells - 1`` open passages, no loop); the maze task opens more walls afterwards for loops.

The generators (``GENERATORS``):

- ``dfs``: randomized depth-first search (the recursive backtracker, run iteratively) from a
  uniformly random root. Long winding corridors, few dead ends (about 10% of the cells).
- ``kruskal``: randomized Kruskal: the walls in a uniformly random order, each opened when it
  joins two cells not yet connected (union-find). About 30% dead ends.
- ``wilson``: Wilson's algorithm (loop-erased random walks from every cell not yet in the tree
  to the tree grown from a random root): a **uniform spanning tree**, every spanning tree of the
  grid equally likely. About 29% dead ends.
- ``prim``: randomized Prim, the *frontier-cell* variant (Jamis Buck's "Prim's algorithm"):
  from a random cell, repeatedly take a uniformly random frontier cell (a cell outside the maze
  next to it) and open the wall to one of its in-maze neighbours, chosen uniformly. Many short
  dead ends (about 36% of the cells), short corridors radiating from the first cell.
- ``division``: recursive division: start with no interior walls, split every chamber at least
  two cells wide and tall by a straight wall at a uniformly random position with one passage at
  a uniformly random place (across the longer side, either side with equal chance for a square
  chamber) until every chamber is one cell wide. Long straight walls, a visible box structure;
  about 26% dead ends.

(Measured shares, dead ends and shortest paths, per generator and size: docs/maze_generators.md.)

Randomness: ``dfs`` draws everything up front in one ``integers`` call (the stream the maze
datasets were always made with: see ``dfs_with_ends``); ``kruskal`` one permutation; ``prim``
one root then ``2 (cells - 1)`` floats; ``division`` ``3 cells`` floats up front (enough for every
wall); ``wilson`` a root, then its walk steps in batches (a walk's length is not known ahead).
Uniform choices among 2, 3 or 4 neighbours use an integer in ``[0, 12)`` modulo the count
(exactly uniform); other choices use ``int(u * k)`` for a float ``u`` in ``[0, 1)`` (bias below
``k / 2**53``).
"""

from __future__ import annotations

from functools import lru_cache
from itertools import permutations
from typing import Callable

import numpy as np

# The 24 orders in which a cell may try its four neighbours (up, down, left, right).
_ORDERS = tuple(permutations(range(4)))


class Grid:
    """Tables of a ``rows x cols`` cell grid shared by every maze of that shape (build with ``grid``)."""

    def __init__(self, rows: int, cols: int) -> None:
        if rows < 1 or cols < 1:
            raise ValueError(f"a maze grid needs at least one row and one column of cells, got {rows} x {cols}.")
        n = rows * cols
        self.rows, self.cols, self.cells = rows, cols, n
        self.horizontal = rows * (cols - 1)
        self.edges = self.horizontal + (rows - 1) * cols
        ea = [r * cols + c for r in range(rows) for c in range(cols - 1)]
        eb = [a + 1 for a in ea]
        ea_v = [r * cols + c for r in range(rows - 1) for c in range(cols)]
        self.ea_list = ea + ea_v
        self.eb_list = eb + [a + cols for a in ea_v]
        self.ea = np.array(self.ea_list, dtype=np.intp)
        self.eb = np.array(self.eb_list, dtype=np.intp)
        # Each cell's in-grid neighbours and the walls to them, in the order up, down, left, right.
        nb, ne = [], []
        by_dir_all = []
        for i in range(n):
            r, c = divmod(i, cols)
            by_dir = (
                (i - cols, self.horizontal + i - cols) if r > 0 else None,
                (i + cols, self.horizontal + i) if r < rows - 1 else None,
                (i - 1, i - r - 1) if c > 0 else None,
                (i + 1, i - r) if c < cols - 1 else None,
            )
            by_dir_all.append(by_dir)
            nb.append(tuple(p[0] for p in by_dir if p is not None))
            ne.append(tuple(p[1] for p in by_dir if p is not None))
        self.nb, self.ne = nb, ne
        self.deg = [len(t) for t in nb]
        self.adj = [tuple(zip(a, b)) for a, b in zip(nb, ne)]  # (neighbour, wall) pairs
        # dfs: for every cell and every order, its in-grid neighbours in that order.
        self.orders = [
            tuple(by_dir[d][0] for d in order if by_dir[d] is not None) for by_dir in by_dir_all for order in _ORDERS
        ]
        # dfs's draws: an order per cell, the root; with the ends, a start and a goal (other than the start).
        self.dfs_bounds = np.array([24] * n + [n], dtype=np.int64)
        self.dfs_bounds_ends = np.array([24] * n + [n, n, n - 1], dtype=np.int64)

    def parent_to_mask(self, parent: list[int]) -> np.ndarray:
        """The edge mask of a spanning tree given by a parent list (-1 at the root)."""
        par = np.asarray(parent, dtype=np.intp)
        child = np.flatnonzero(par >= 0)
        a = np.minimum(child, par[child])
        b = np.maximum(child, par[child])
        # Horizontal neighbours differ by 1 (only when there are columns to move along).
        horizontal = (b - a == 1) if self.cols > 1 else np.zeros(a.shape, dtype=bool)
        edge = np.where(horizontal, a - a // self.cols, self.horizontal + a)
        mask = np.zeros(self.edges, dtype=np.uint8)
        mask[edge] = 1
        return mask

    def degrees(self, mask: np.ndarray) -> np.ndarray:
        """Open passages per cell (int64 ``(cells,)``)."""
        on = mask.view(bool)
        return np.bincount(self.ea[on], minlength=self.cells) + np.bincount(self.eb[on], minlength=self.cells)


@lru_cache(maxsize=64)
def grid(rows: int, cols: int) -> Grid:
    """The (cached) tables of a ``rows x cols`` cell grid."""
    return Grid(rows, cols)


# ---------------------------------------------------------------------------- depth-first search
def _dfs_parent(g: Grid, root: int, orders: list[int]) -> list[int]:
    """Randomized iterative DFS from ``root``, taking each cell's neighbours in its drawn order.

    Taking the first unvisited neighbour in a uniformly random permutation is the same as picking
    one uniformly among the unvisited, as the recursive backtracker does."""
    nbrs = g.orders
    visited = bytearray(g.cells)
    parent = [-1] * g.cells
    visited[root] = 1
    stack = [root]
    iters = [iter(nbrs[root * 24 + orders[root]])]
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
        iters.append(iter(nbrs[nxt * 24 + orders[nxt]]))
    return parent


def dfs_with_ends(g: Grid, rng: np.random.Generator) -> tuple[np.ndarray, list[int], int, int]:
    """A dfs maze with a uniformly random start and goal (distinct) drawn in the same single call.

    This is the maze task's historical stream: one ``integers`` call draws a neighbour order per
    cell, the root, the start and the goal. Returns the edge mask, the parent list, start, goal.
    """
    n = g.cells
    draws = rng.integers(0, g.dfs_bounds_ends).tolist()
    root, start, goal = draws[n:]
    if goal >= start:  # goal was drawn from n - 1 values: uniform over the cells other than start
        goal += 1
    parent = _dfs_parent(g, root, draws)
    return g.parent_to_mask(parent), parent, start, goal


def dfs(g: Grid, rng: np.random.Generator) -> np.ndarray:
    """Randomized depth-first search (recursive backtracker) from a uniformly random root."""
    draws = rng.integers(0, g.dfs_bounds).tolist()
    return g.parent_to_mask(_dfs_parent(g, draws[g.cells], draws))


# ---------------------------------------------------------------------------- Kruskal
def kruskal(g: Grid, rng: np.random.Generator) -> np.ndarray:
    """Randomized Kruskal: walls in a random order, opened when they join two components."""
    n = g.cells
    order = rng.permutation(g.edges).tolist()
    ea, eb = g.ea_list, g.eb_list
    parent = list(range(n))
    mask = bytearray(g.edges)
    joined = 1
    for e in order:
        a = ea[e]
        while parent[a] != a:  # find with path halving
            parent[a] = a = parent[parent[a]]
        b = eb[e]
        while parent[b] != b:
            parent[b] = b = parent[parent[b]]
        if a != b:
            parent[a] = b
            mask[e] = 1
            joined += 1
            if joined == n:
                break
    return np.frombuffer(mask, dtype=np.uint8).copy()


# ---------------------------------------------------------------------------- Wilson
def wilson(g: Grid, rng: np.random.Generator) -> np.ndarray:
    """Wilson's algorithm: a uniform spanning tree by loop-erased random walks.

    From every cell not yet in the tree (in index order), walk at random until the tree is hit,
    remembering only the last exit from each cell (that erases the loops), then add the walk's
    loop-erased path. The order of the starting cells and the root do not affect uniformity.
    """
    n = g.cells
    nb, ne, deg = g.nb, g.ne, g.deg
    in_tree = bytearray(n)
    choice = [0] * n
    mask = bytearray(g.edges)
    in_tree[int(rng.integers(n))] = 1
    batch = max(64, 4 * n)
    buf = b""
    k = 0
    for i in range(n):
        if in_tree[i]:
            continue
        u = i
        while not in_tree[u]:
            if k == len(buf):
                buf = rng.integers(0, 12, size=batch, dtype=np.uint8).tobytes()
                k = 0
            j = buf[k] % deg[u]  # 12 is a multiple of 2, 3 and 4: exactly uniform
            k += 1
            choice[u] = j
            u = nb[u][j]
        u = i
        while not in_tree[u]:
            in_tree[u] = 1
            j = choice[u]
            mask[ne[u][j]] = 1
            u = nb[u][j]
    return np.frombuffer(mask, dtype=np.uint8).copy()


# ---------------------------------------------------------------------------- Prim
def prim(g: Grid, rng: np.random.Generator) -> np.ndarray:
    """Randomized Prim, frontier-cell variant: grow from a random cell by joining a uniformly
    random frontier cell to a uniformly random in-maze neighbour of it."""
    n = g.cells
    nb, ne = g.nb, g.ne
    root = int(rng.integers(n))
    u = rng.random(2 * (n - 1)).tolist()
    in_maze = bytearray(n)
    seen = bytearray(n)  # in the maze or on the frontier
    mask = bytearray(g.edges)
    in_maze[root] = seen[root] = 1
    frontier = list(nb[root])
    for v in frontier:
        seen[v] = 1
    k = 0
    while frontier:
        j = int(u[k] * len(frontier))
        c = frontier[j]
        frontier[j] = frontier[-1]
        frontier.pop()
        inside = [x for x, v in enumerate(nb[c]) if in_maze[v]]
        mask[ne[c][inside[int(u[k + 1] * len(inside))]]] = 1
        k += 2
        in_maze[c] = 1
        for v in nb[c]:
            if not seen[v]:
                seen[v] = 1
                frontier.append(v)
    return np.frombuffer(mask, dtype=np.uint8).copy()


# ---------------------------------------------------------------------------- recursive division
def division(g: Grid, rng: np.random.Generator) -> np.ndarray:
    """Recursive division: split chambers by straight walls with one passage each."""
    rows, cols, h0 = g.rows, g.cols, g.horizontal
    mask = bytearray(b"\x01") * g.edges
    u = rng.random(3 * g.cells).tolist()  # at most cells - 1 walls, at most 3 draws each
    k = 0
    stack = [(0, 0, rows, cols)]
    while stack:
        r0, c0, h, w = stack.pop()
        if h < 2 or w < 2:
            continue
        if h == w:
            across_rows = u[k] < 0.5
            k += 1
        else:
            across_rows = h > w  # a wall across the longer side
        if across_rows:  # a wall between rows r0 + s - 1 and r0 + s, passage in column c0 + p
            s = 1 + int(u[k] * (h - 1))
            p = int(u[k + 1] * w)
            first = h0 + (r0 + s - 1) * cols + c0
            mask[first:first + w] = bytes(w)
            mask[first + p] = 1
            stack.append((r0, c0, s, w))
            stack.append((r0 + s, c0, h - s, w))
        else:  # a wall between columns c0 + s - 1 and c0 + s, passage in row r0 + p
            s = 1 + int(u[k] * (w - 1))
            p = int(u[k + 1] * h)
            first = r0 * (cols - 1) + c0 + s - 1
            mask[first:first + h * (cols - 1):cols - 1] = bytes(h)
            mask[first + p * (cols - 1)] = 1
            stack.append((r0, c0, h, s))
            stack.append((r0, c0 + s, h, w - s))
        k += 2
    return np.frombuffer(mask, dtype=np.uint8).copy()


GENERATORS: dict[str, Callable[[Grid, np.random.Generator], np.ndarray]] = {
    "dfs": dfs,
    "kruskal": kruskal,
    "wilson": wilson,
    "prim": prim,
    "division": division,
}


def percolate(mask: np.ndarray, p: float, rng: np.random.Generator) -> None:
    """Open every closed wall of ``mask`` independently with probability ``p``, in place.

    Draws one float per closed wall (none when ``p`` is 0)."""
    if p > 0:
        closed = np.flatnonzero(mask == 0)
        mask[closed[rng.random(closed.size) < p]] = 1


__all__ = ["GENERATORS", "Grid", "grid", "dfs", "dfs_with_ends", "kruskal", "wilson", "prim", "division", "percolate"]
