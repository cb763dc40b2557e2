"""Tests of the maze generators and the maze options: generator, percolation, start, goal.

Every maze is checked against an independent solver written here (breadth-first search over the
open pixels of the rendered input, from the green pixel and from the red one; the target must be
the set of pixels on some shortest path), and the generators' statistical fingerprints (dead-end
and solution-path shares, Wilson's uniformity) tell them apart.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import Counter, deque
from dataclasses import asdict

import gymnasium
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import chi2

import tasks.env  # noqa: F401  (registers the environments)
from tasks import maze_generators as mg
from tasks.base import TaskError, _checksum
from tasks.maze import MazeTask
from tasks.shortest_path import ShortestPathTask

GENERATORS = ["dfs", "kruskal", "wilson", "prim", "division"]
PLACEMENTS = [("random", "random"), ("dead_end", "random"), ("random", "dead_end"), ("dead_end", "dead_end")]

# sha256 of inputs then targets of MazeTask(rendering).generate(15, 50, seed=3), computed with the
# code before the generator options existed (git show 3302be6^:tasks/maze.py).
DEFAULT_DIGESTS = {
    "compact": "78a8805df8f55074d936bf7cc6cd53e06aafb101e230381e447f8a1c3ebed689",
    "e2h": "48b3a41a795b08f43eef48624fddfcbc3181c0888b473b2f0b50e8ddaaaf9408",
}


# ---------------------------------------------------------------------------- the independent solver
def bfs_distances(open_: np.ndarray, src: tuple[int, int]) -> np.ndarray:
    """Pixel steps from ``src`` to every open pixel (4-neighbours), -1 where unreached."""
    dist = np.full(open_.shape, -1, dtype=np.int64)
    dist[src] = 0
    queue = deque([src])
    h, w = open_.shape
    while queue:
        r, c = queue.popleft()
        for rr, cc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
            if 0 <= rr < h and 0 <= cc < w and open_[rr, cc] and dist[rr, cc] < 0:
                dist[rr, cc] = dist[r, c] + 1
                queue.append((rr, cc))
    return dist


def decode(x: np.ndarray):
    """Compact input -> open bool grid, start pixel, goal pixel."""
    open_ = x.max(axis=0) > 0
    green = np.argwhere((x[0] == 0) & (x[1] == 1) & (x[2] == 0))
    red = np.argwhere((x[0] == 1) & (x[1] == 0) & (x[2] == 0))
    assert len(green) == 1 and len(red) == 1
    return open_, tuple(green[0]), tuple(red[0])


def shortest_path_union(x: np.ndarray) -> np.ndarray:
    """int64 mask of the pixels on at least one shortest green-to-red path of a compact input."""
    open_, s, t = decode(x)
    d_s, d_t = bfs_distances(open_, s), bfs_distances(open_, t)
    total = d_s[t]
    assert total > 0
    return ((d_s >= 0) & (d_t >= 0) & (d_s + d_t == total)).astype(np.int64)


def open_neighbours(open_: np.ndarray) -> np.ndarray:
    o = np.pad(open_, 1).astype(np.int64)
    return o[:-2, 1:-1] + o[2:, 1:-1] + o[1:-1, :-2] + o[1:-1, 2:]


def to_compact(x: np.ndarray, y: np.ndarray, rendering: str):
    """The compact puzzle behind an input/target, checking the e2h layout on the way."""
    if rendering == "compact":
        return x, y
    xc, yc = x[:, 1:-1:2, 1:-1:2], y[1:-1:2, 1:-1:2]
    e2h = lambda a: np.pad(np.kron(a, np.ones((2, 2), dtype=a.dtype)), [(0, 0)] * (a.ndim - 2) + [(1, 1), (1, 1)])
    np.testing.assert_array_equal(x, e2h(xc))
    np.testing.assert_array_equal(y, e2h(yc))
    return xc, yc


def check_maze(x: np.ndarray, y: np.ndarray, rendering: str, percolation: float, start: str, goal: str) -> None:
    """Everything a generated maze must satisfy, against the solver above."""
    assert x.dtype == np.float32 and y.dtype == np.int64
    assert set(np.unique(x)) <= {0.0, 1.0} and set(np.unique(y)) <= {0, 1}
    x, y = to_compact(x, y, rendering)
    open_, s, t = decode(x)
    assert s != t and s[0] % 2 == s[1] % 2 == 1 and t[0] % 2 == t[1] % 2 == 1
    # Other open pixels are white; the outer wall and the (even, even) units are wall; cells open.
    white = open_.copy()
    white[s] = white[t] = False
    assert (x[:, white] == 1).all()
    assert not open_[0].any() and not open_[-1].any() and not open_[:, 0].any() and not open_[:, -1].any()
    assert not open_[0::2, 0::2].any() and open_[1::2, 1::2].all()
    # Connected; a spanning tree without percolation.
    assert (bfs_distances(open_, s)[open_] >= 0).all()
    vertices = int(open_.sum())
    edges = int((open_[1:] & open_[:-1]).sum() + (open_[:, 1:] & open_[:, :-1]).sum())
    if percolation == 0:
        assert edges == vertices - 1
    else:
        assert edges >= vertices - 1
    degree = open_neighbours(open_)
    if start == "dead_end":
        assert degree[s] == 1
    if goal == "dead_end":
        assert degree[t] == 1
    np.testing.assert_array_equal(y, shortest_path_union(x))


# ---------------------------------------------------------------------------- every option combination
@pytest.mark.parametrize("start,goal", PLACEMENTS)
@pytest.mark.parametrize("percolation", [0.0, 0.1])
@pytest.mark.parametrize("rendering", ["compact", "e2h"])
@pytest.mark.parametrize("generator", GENERATORS)
def test_every_option_gives_valid_mazes(generator, rendering, percolation, start, goal):
    task = MazeTask(rendering=rendering, generator=generator, percolation=percolation, start=start, goal=goal)
    for size in (3, 9, 15):
        x, y = task.generate(size, 8, seed=size)
        h, w = task.shape(size)
        assert x.shape == (8, 3, h, w) and y.shape == (8, h, w)
        task.check_arrays(size, x, y)
        for xi, yi in zip(x, y):
            check_maze(xi, yi, rendering, percolation, start, goal)


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    size=st.integers(1, 15).map(lambda k: 2 * k + 1),
    seed=st.integers(0, 2**32 - 1),
    generator=st.sampled_from(GENERATORS),
    percolation=st.one_of(st.just(0.0), st.floats(0.0, 0.6)),
    placement=st.sampled_from(PLACEMENTS),
    rendering=st.sampled_from(["compact", "e2h"]),
)
def test_property_mazes_match_the_independent_solver(size, seed, generator, percolation, placement, rendering):
    start, goal = placement
    task = MazeTask(rendering=rendering, generator=generator, percolation=percolation, start=start, goal=goal)
    x, y = task.generate(size, 2, seed)
    task.check_arrays(size, x, y)
    for xi, yi in zip(x, y):
        check_maze(xi, yi, rendering, percolation, start, goal)
    # Each sample is reproducible alone, from its own seed.
    x1, y1 = task.sample(size, np.random.default_rng(np.random.SeedSequence([seed, 1])))
    np.testing.assert_array_equal(x1, x[1])
    np.testing.assert_array_equal(y1, y[1])


@pytest.mark.parametrize("generator", GENERATORS)
def test_percolation_makes_loops_and_tied_shortest_paths(generator):
    x, y = MazeTask(generator=generator, percolation=0.3).generate(15, 100, seed=1)
    looped = tied = 0
    for xi, yi in zip(x, y):
        open_, s, t = decode(xi)
        edges = int((open_[1:] & open_[:-1]).sum() + (open_[:, 1:] & open_[:, :-1]).sum())
        looped += edges > open_.sum() - 1
        # More marked pixels than one shortest path has: several shortest paths tie, all marked.
        tied += int(yi.sum()) > bfs_distances(open_, s)[t] + 1
        np.testing.assert_array_equal(yi, shortest_path_union(xi))
    assert looped == 100 and tied >= 10


# ---------------------------------------------------------------------------- perfect mazes
@pytest.mark.parametrize("generator", GENERATORS)
@pytest.mark.parametrize("size", [3, 5, 15, 31])
def test_without_percolation_every_generator_gives_a_perfect_maze(generator, size):
    x, y = MazeTask(generator=generator).generate(size, 20, seed=2)
    m = (size + 1) // 2
    for xi, yi in zip(x, y):
        open_, s, _ = decode(xi)
        assert open_[1::2, 1::2].all()  # every cell open
        passages = int(open_[1::2, 2:-1:2].sum() + open_[2:-1:2, 1::2].sum())
        assert passages == m * m - 1  # a spanning tree: cells - 1 passages ...
        assert (bfs_distances(open_, s)[open_] >= 0).all()  # ... joining every cell, so no loop
        path = yi.astype(bool)  # the unique path: a simple chain
        degree = open_neighbours(path)[path]
        assert (degree <= 2).all() and (degree == 1).sum() == 2


@pytest.mark.parametrize("name", GENERATORS)
@pytest.mark.parametrize("rows,cols", [(1, 1), (1, 6), (6, 1), (2, 3), (3, 7), (7, 4)])
def test_generators_give_spanning_trees_of_rectangular_grids(name, rows, cols):
    g = mg.grid(rows, cols)
    rng = np.random.default_rng(0)
    for _ in range(10):
        mask = mg.GENERATORS[name](g, rng)
        assert mask.dtype == np.uint8 and mask.shape == (g.edges,) and set(np.unique(mask)) <= {0, 1}
        assert int(mask.sum()) == g.cells - 1
        parent = list(range(g.cells))

        def find(a):
            while parent[a] != a:
                a = parent[a]
            return a

        for e in np.flatnonzero(mask):
            parent[find(g.ea_list[e])] = find(g.eb_list[e])
        assert len({find(i) for i in range(g.cells)}) == 1


def test_edge_numbering():
    g = mg.grid(3, 4)
    assert (g.horizontal, g.edges) == (9, 17)
    assert (g.ea_list[0], g.eb_list[0]) == (0, 1) and (g.ea_list[8], g.eb_list[8]) == (10, 11)
    assert (g.ea_list[9], g.eb_list[9]) == (0, 4) and (g.ea_list[16], g.eb_list[16]) == (7, 11)
    for i in range(g.cells):
        for v, e in g.adj[i]:
            assert {g.ea_list[e], g.eb_list[e]} == {i, v}


def test_percolate_draws_nothing_at_zero():
    rng = np.random.default_rng(5)
    state = rng.bit_generator.state
    mask = np.zeros(10, dtype=np.uint8)
    mg.percolate(mask, 0.0, rng)
    assert rng.bit_generator.state == state and not mask.any()
    mg.percolate(mask, 0.5, rng)
    assert 0 < mask.sum() < 10


# ---------------------------------------------------------------------------- fingerprints
def fingerprint(generator: str, size: int = 31, n: int = 200, seed: int = 0) -> tuple[float, float]:
    """Share of cells that are dead ends, share of cells on the solution path."""
    x, y = MazeTask(generator=generator).generate(size, n, seed)
    open_ = x.max(axis=1) > 0
    o = np.pad(open_, ((0, 0), (1, 1), (1, 1))).astype(np.int64)
    degree = (o[:, :-2, 1:-1] + o[:, 2:, 1:-1] + o[:, 1:-1, :-2] + o[:, 1:-1, 2:])[:, 1::2, 1::2]
    return float((degree == 1).mean()), float(y[:, 1::2, 1::2].mean())


# Measured at size 31 (16 x 16 cells), 200 mazes, seed 0 (docs/maze_generators.md): dfs 0.108 dead
# ends, kruskal 0.302, wilson 0.291, prim 0.350, division 0.271; over seeds 0..11 the dead-end
# share varies by about 0.001 (sd) and the path share by about 0.004, so every band is at least
# 4 sd wide on each side. The dead-end bands do not overlap: a generator secretly replaced by
# another fails.
DEAD_END_BANDS = {"dfs": (0.08, 0.15), "kruskal": (0.296, 0.315), "wilson": (0.283, 0.2955),
                  "prim": (0.335, 0.37), "division": (0.255, 0.282)}
PATH_BANDS = {"dfs": (0.17, 0.30), "kruskal": (0.08, 0.12), "wilson": (0.08, 0.13),
              "prim": (0.055, 0.09), "division": (0.09, 0.135)}


@pytest.mark.parametrize("generator", GENERATORS)
def test_fingerprints(generator):
    dead, path = fingerprint(generator)
    lo, hi = DEAD_END_BANDS[generator]
    assert lo <= dead <= hi, (generator, dead)
    lo, hi = PATH_BANDS[generator]
    assert lo <= path <= hi, (generator, path)


def spanning_trees_3x3() -> list[frozenset]:
    """Every spanning tree of the 3 x 3 cell grid, as sets of passage pixels of the size-5 maze."""
    cells = [(r, c) for r in range(3) for c in range(3)]
    walls = [((r, c), (r, c + 1)) for r in range(3) for c in range(2)] + [((r, c), (r + 1, c)) for r in range(2) for c in range(3)]
    trees = []
    for chosen in itertools.combinations(walls, 8):  # 8 = cells - 1 passages; a tree iff no cycle
        parent = {v: v for v in cells}

        def find(v):
            while parent[v] != v:
                v = parent[v]
            return v

        acyclic = True
        for a, b in chosen:
            ra, rb = find(a), find(b)
            if ra == rb:
                acyclic = False
                break
            parent[ra] = rb
        if acyclic:
            trees.append(frozenset((a[0] + b[0] + 1, a[1] + b[1] + 1) for a, b in chosen))
    return trees


def tree_counts(generator: str, n: int, seed: int) -> np.ndarray:
    trees = spanning_trees_3x3()
    index = {t: i for i, t in enumerate(trees)}
    x, _ = MazeTask(generator=generator).generate(5, n, seed)  # 3 x 3 cells
    open_ = x.max(axis=1) > 0
    passage = np.zeros((7, 7), dtype=bool)
    passage[1::2, 2:-1:2] = passage[2:-1:2, 1::2] = True
    counts = Counter(index[frozenset(map(tuple, np.argwhere(o & passage)))] for o in open_)
    return np.array([counts[i] for i in range(len(trees))])


def chi_square_uniform(counts: np.ndarray) -> float:
    expected = counts.sum() / len(counts)
    return float(((counts - expected) ** 2 / expected).sum())


def test_wilson_is_a_uniform_spanning_tree():
    assert len(spanning_trees_3x3()) == 192  # the number of spanning trees of the 3 x 3 grid
    critical = chi2.ppf(0.999, 191)  # 257.1
    assert chi_square_uniform(tree_counts("wilson", 8000, seed=0)) < critical
    # The test has the power to tell: Kruskal and depth-first search are not uniform.
    assert chi_square_uniform(tree_counts("kruskal", 8000, seed=0)) > critical
    assert chi_square_uniform(tree_counts("dfs", 8000, seed=0)) > critical


# ---------------------------------------------------------------------------- seeds, defaults
@pytest.mark.parametrize("generator", GENERATORS)
def test_same_seed_same_bytes(generator):
    task = MazeTask(generator=generator, percolation=0.1, start="dead_end")
    a, b, c = task.generate(15, 5, seed=4), task.generate(15, 5, seed=4), task.generate(15, 5, seed=5)
    assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes()
    assert a[0].tobytes() != c[0].tobytes()


def test_different_generators_give_different_mazes():
    mazes = {g: MazeTask(generator=g).generate(15, 5, seed=0)[0].tobytes() for g in GENERATORS}
    assert len(set(mazes.values())) == len(GENERATORS)


@pytest.mark.parametrize("rendering", ["compact", "e2h"])
def test_defaults_are_byte_identical_to_the_historical_mazes(rendering):
    x, y = MazeTask(rendering).generate(15, 50, seed=3)
    digest = hashlib.sha256()
    digest.update(x.tobytes())
    digest.update(y.tobytes())
    assert digest.hexdigest() == DEFAULT_DIGESTS[rendering]
    explicit = MazeTask(rendering=rendering, generator="dfs", percolation=0, start="random", goal="random")
    assert explicit.generate(15, 50, seed=3)[0].tobytes() == x.tobytes()


def test_placements_vary_and_are_dead_ends():
    x, _ = MazeTask(generator="kruskal", start="dead_end", goal="dead_end").generate(15, 50, seed=0)
    starts, goals = set(), set()
    for xi in x:
        open_, s, t = decode(xi)
        assert open_neighbours(open_)[s] == 1 and open_neighbours(open_)[t] == 1
        starts.add(s)
        goals.add(t)
    assert len(starts) > 20 and len(goals) > 20


# ---------------------------------------------------------------------------- refusals
def one_sentence(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert msg.endswith(".") and "\n" not in msg and ". " not in msg, msg
    return msg


@pytest.mark.parametrize(
    "options,match",
    [
        (dict(generator="bfs"), "generator must be one of 'dfs', 'kruskal'"),
        (dict(generator=None), "generator must be one of"),
        (dict(generator=["dfs", "dfs"]), "generator must be one of"),
        (dict(percolation=1.0), r"percolation must be a number in \[0, 1\)"),
        (dict(percolation=-0.1), "percolation must be a number"),
        (dict(percolation=1.5), "percolation must be a number"),
        (dict(percolation="0.1"), "percolation must be a number"),
        (dict(percolation=True), "percolation must be a number"),
        (dict(percolation=float("nan")), "percolation must be a number"),
        (dict(percolation=float("inf")), "percolation must be a number"),
        (dict(start="corner"), "start must be 'random' or 'dead_end'"),
        (dict(goal=1), "goal must be 'random' or 'dead_end'"),
        (dict(rendering=True), "rendering must be 'compact' or 'e2h'"),
        (dict(generatr="dfs"), "maze takes the options rendering, generator, percolation, start, goal"),
    ],
)
def test_bad_options_are_refused_in_one_sentence(options, match):
    with pytest.raises(TaskError, match=match) as err:
        MazeTask(**options)
    one_sentence(err)


def test_percolation_is_a_plain_float():
    assert asdict(MazeTask(percolation=np.float64(0.25)).options)["percolation"] == 0.25
    assert type(MazeTask(percolation=0).options.percolation) is float
    assert MazeTask(percolation=0).cache_key(9, 10, 0) == MazeTask().cache_key(9, 10, 0)


def test_every_new_option_changes_the_cache_key():
    base = MazeTask().cache_key(9, 10, 0)
    for change in (dict(generator="wilson"), dict(percolation=0.1), dict(start="dead_end"), dict(goal="dead_end")):
        assert MazeTask(**change).cache_key(9, 10, 0) != base, change


def test_dead_ends_that_cannot_be_placed_are_refused():
    task = MazeTask(generator="kruskal", percolation=1 - 1e-9, start="dead_end")
    with pytest.raises(TaskError, match="start 'dead_end' cannot be placed") as err:
        task.generate(15, 1, seed=0)
    one_sentence(err)
    with pytest.raises(TaskError, match="start and goal 'dead_end' cannot be placed"):
        MazeTask(percolation=1 - 1e-9, start="dead_end", goal="dead_end").generate(15, 1, seed=0)


def test_dead_ends_are_redrawn_when_loops_remove_them():
    # At size 3 (2 x 2 cells) a percolated wall closes the only loop and leaves no dead end: half
    # of these mazes are redrawn, and every puzzle that comes out still has its dead ends.
    task = MazeTask(percolation=0.5, start="dead_end", goal="dead_end")
    x, y = task.generate(3, 40, seed=0)
    for xi, yi in zip(x, y):
        check_maze(xi, yi, "compact", 0.5, "dead_end", "dead_end")


# ---------------------------------------------------------------------------- input range checks
@pytest.mark.parametrize("bad", [7.0, -1e30, 1e30])
@pytest.mark.parametrize("task,size", [(MazeTask(), 9), (MazeTask("e2h"), 9), (ShortestPathTask(), 6)])
def test_check_arrays_refuses_out_of_range_inputs(task, size, bad):
    x, y = task.generate(size, 3, seed=0)
    task.check_arrays(size, x, y)
    x[1, 0, 2, 2] = bad
    with pytest.raises(TaskError, match=r"inputs must be finite and lie in \[0.0, 1.0\]") as err:
        task.check_arrays(size, x, y)
    one_sentence(err)


@pytest.mark.parametrize("bad", [0.5, 1e-7, np.float32(0.999)])
def test_check_arrays_refuses_maze_inputs_that_are_not_0_or_1(bad):
    task = MazeTask()
    x, y = task.generate(9, 3, seed=0)
    x[2, 1, 3, 3] = bad
    with pytest.raises(TaskError, match="inputs must hold only 0 or 1") as err:
        task.check_arrays(9, x, y)
    one_sentence(err)


def test_cache_files_with_out_of_range_maze_inputs_are_regenerated(tmp_path):
    task = MazeTask(generator="prim")
    path = task.cache_path(tmp_path, 9, 4, 0)
    good = task.dataset(9, 4, seed=0, cache_dir=tmp_path).tensors[0].numpy().copy()
    with np.load(path) as f:
        x, y = f["inputs"].copy(), f["targets"]
    x[0, 0, 1, 1] = 7.0
    np.savez(path, inputs=x, targets=y, checksum=_checksum(x, y))  # a consistent digest: only the range check catches it
    again = task.dataset(9, 4, seed=0, cache_dir=tmp_path).tensors[0].numpy()
    np.testing.assert_array_equal(again, good)


# ---------------------------------------------------------------------------- gymnasium
def test_gymnasium_make_passes_the_maze_options():
    env = gymnasium.make("algoreason/Maze-v0", size=15, generator="kruskal", percolation=0.1, start="dead_end")
    options = asdict(env.unwrapped.task.options)
    assert options == {"rendering": "compact", "generator": "kruskal", "percolation": 0.1, "start": "dead_end", "goal": "random"}
    assert env.observation_space.shape == (3, 17, 17)
    assert float(env.observation_space.low.min()) == 0.0 and float(env.observation_space.high.max()) == 1.0
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    check_maze(obs, shortest_path_union(obs), "compact", 0.1, "dead_end", "random")
    _, reward, terminated, _, info = env.step(shortest_path_union(obs))
    assert reward == 1.0 and terminated and info["correct"]
