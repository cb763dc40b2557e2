from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.config.schema import data_seeds, exit_on_user_error
from benchmark.evaluation.extrapolation import accuracy_per_iteration
from benchmark.evaluation.rescore import load_run
from tasks.base import TaskError
from tasks.shortest_path import ShortestPathTask, is_single_path, shortest_path_mask

import importlib

MOVES = ((1, 0), (-1, 0), (0, 1), (0, -1))


# ---------------------------------------------------------------- independent reference solvers
def bellman_ford(free, cost, start):
    """Node-weighted distances, both ends included (D(start) = cost[start]), relaxed to a fixpoint."""
    big = np.iinfo(np.int64).max // 4
    c = np.where(free, cost, 0).astype(np.int64)
    d = np.full(free.shape, big, dtype=np.int64)
    d[start] = c[start]
    while True:
        best = d.copy()
        best[1:, :] = np.minimum(best[1:, :], d[:-1, :] + c[1:, :])
        best[:-1, :] = np.minimum(best[:-1, :], d[1:, :] + c[:-1, :])
        best[:, 1:] = np.minimum(best[:, 1:], d[:, :-1] + c[:, 1:])
        best[:, :-1] = np.minimum(best[:, :-1], d[:, 1:] + c[:, :-1])
        best[~free] = big
        best = np.minimum(best, big)
        if np.array_equal(best, d):
            return d, big
        d = best


def neighbours(free, cell):
    r, c = cell
    for dr, dc in MOVES:
        q = (r + dr, c + dc)
        if 0 <= q[0] < free.shape[0] and 0 <= q[1] < free.shape[1] and free[q]:
            yield q


def reference_mask(free, cost, start, goal):
    """Walk back from the goal along tight edges (D(v) == D(u) + cost(v)) of the distance field."""
    d, big = bellman_ford(free, cost, start)
    assert d[goal] < big
    mask = np.zeros(free.shape, dtype=bool)
    stack = [goal]
    mask[goal] = True
    while stack:
        v = stack.pop()
        for u in neighbours(free, v):
            if not mask[u] and d[u] + cost[v] == d[v]:
                mask[u] = True
                stack.append(u)
    return mask


def brute_force_mask(free, cost, start, goal):
    """Enumerate every simple path (tiny grids only): the union of the cheapest ones."""
    best, cells = [None], [set()]

    def dfs(v, seen, total):
        if best[0] is not None and total > best[0]:
            return
        if v == goal:
            if best[0] is None or total < best[0]:
                best[0], cells[0] = total, set(seen)
            elif total == best[0]:
                cells[0] |= seen
            return
        for u in neighbours(free, v):
            if u not in seen:
                seen.add(u)
                dfs(u, seen, total + int(cost[u]))
                seen.remove(u)

    dfs(start, {start}, 0)
    mask = np.zeros(free.shape, dtype=bool)
    for cell in cells[0]:
        mask[cell] = True
    return mask, best[0]


def count_shortest_paths(free, cost, start, goal):
    d, _ = bellman_ford(free, cost, start)
    order = sorted(zip(*np.nonzero(free)), key=lambda v: d[v])
    ways = {start: 1}
    for v in order:
        if v == start:
            continue
        ways[v] = sum(ways.get(u, 0) for u in neighbours(free, v) if d[u] + cost[v] == d[v])
    return ways[goal]


def components_and_edges(free, start):
    seen, stack, edges = {start}, [start], 0
    while stack:
        v = stack.pop()
        for u in neighbours(free, v):
            edges += 1
            if u not in seen:
                seen.add(u)
                stack.append(u)
    return seen, edges // 2


@pytest.fixture
def task():
    return ShortestPathTask()


# ---------------------------------------------------------------- tests
def test_spec_and_options(task):
    assert task.name == "shortest_path"
    assert (task.spec.dims, task.spec.in_channels, task.spec.num_classes) == (2, 4, 2)
    assert asdict(task.options) == {"obstacle_density": 0.25, "cost_min": 1, "cost_max": 9, "unique_path": False}
    assert asdict(ShortestPathTask(0.1, 2, 5).options) == {"obstacle_density": 0.1, "cost_min": 2, "cost_max": 5,
                                                           "unique_path": False}


def test_determinism(task):
    x1, y1 = task.generate(10, 12, seed=5)
    x2, y2 = task.generate(10, 12, seed=5)
    x3, _ = task.generate(10, 12, seed=6)
    x4, _ = ShortestPathTask(obstacle_density=0.3).generate(10, 12, seed=5)
    assert x1.tobytes() == x2.tobytes() and y1.tobytes() == y2.tobytes()
    assert x1.tobytes() != x3.tobytes() and x1.tobytes() != x4.tobytes()
    x0, y0 = task.sample(10, np.random.default_rng(np.random.SeedSequence([5, 4])))
    assert np.array_equal(x0, x1[4]) and np.array_equal(y0, y1[4])


@pytest.mark.parametrize("size", [4, 5, 9, 16, 24])
def test_shapes_and_layout(task, size):
    x, y = task.generate(size, 6, seed=1)
    assert x.shape == (6, 4, size, size) and x.dtype == np.float32
    assert y.shape == (6, size, size) and y.dtype == np.int64
    assert task.shape(size) == (size, size)
    for xi, yi in zip(x, y):
        free = xi[0] == 1
        assert set(np.unique(xi[0])) <= {0.0, 1.0}
        assert xi[1].sum() == 1 and xi[2].sum() == 1
        assert (xi[1] * xi[0]).sum() == 1 and (xi[2] * xi[0]).sum() == 1  # start and goal are free
        assert not np.array_equal(xi[1], xi[2])
        assert np.all(xi[3][~free] == 0) and np.all(xi[3][free] > 0) and np.all(xi[3] <= 1)
        assert set(np.unique(yi)) <= {0, 1} and np.all(yi[~free] == 0)
        assert yi[xi[1] == 1].item() == 1 and yi[xi[2] == 1].item() == 1
        assert task.observation_space(size).contains(xi) and task.solution_space(size).contains(yi)


def test_start_goal_connected_and_far(task):
    for size in (4, 7, 12):
        x, _ = task.generate(size, 30, seed=2)
        for xi in x:
            free, cost, start, goal = task.decode(xi)
            seen, _ = components_and_edges(free, start)
            assert goal in seen and start != goal
            assert abs(start[0] - goal[0]) + abs(start[1] - goal[1]) >= size // 2
            assert 2 * len(seen) >= free.sum()


@pytest.mark.parametrize("options", [{}, {"cost_min": 1, "cost_max": 1}, {"obstacle_density": 0.4, "cost_max": 3}])
def test_targets_match_bellman_ford(options):
    task = ShortestPathTask(**options)
    x, y = task.generate(11, 40, seed=9)
    for xi, yi in zip(x, y):
        free, cost, start, goal = task.decode(xi)
        assert np.all(cost[free] >= task.options.cost_min) and np.all(cost[free] <= task.options.cost_max)
        assert np.array_equal(reference_mask(free, cost, start, goal), yi.astype(bool))
        assert np.array_equal(task.solve(xi), yi)  # the input alone determines the target


@pytest.mark.parametrize("options", [{"cost_max": 1}, {"cost_max": 9}])
def test_unique_path_grids_have_exactly_one_cheapest_route(options):
    """Checked by brute force (every cheapest path enumerated), not by the generator's own test."""
    task = ShortestPathTask(unique_path=True, **options)
    x, y = task.generate(5, 20, seed=3)
    for xi, yi in zip(x, y):
        free, cost, start, goal = task.decode(xi)
        mask, _ = brute_force_mask(free, cost, start, goal)
        assert count_shortest_paths(free, cost, start, goal) == 1 and np.array_equal(mask, yi.astype(bool))
    # Without the option, the same sizes do have ties, which is what the option removes.
    plain = ShortestPathTask(**options)
    counts = [count_shortest_paths(*plain.decode(xi)) for xi in plain.generate(5, 20, seed=3)[0]]
    assert max(counts) > 1
    assert np.array_equal(plain.generate(6, 4, seed=1)[0], ShortestPathTask(unique_path=False, **options).generate(6, 4, seed=1)[0])


def test_is_single_path_tells_a_route_from_a_union_of_routes():
    route = np.zeros((3, 3), bool)
    route[0, :] = route[:, 2] = True  # (0,0) -> (0,2) -> (2,2)
    assert is_single_path(route, (0, 0), (2, 2))
    assert not is_single_path(route, (0, 0), (0, 2))  # the goal must end the route
    square = route.copy()
    square[:, 0] = square[2, :] = True  # both ways round the 3x3 ring
    assert not is_single_path(square, (0, 0), (2, 2))


def test_targets_match_brute_force_on_tiny_grids():
    for options in ({}, {"cost_max": 1}, {"cost_max": 2}):
        task = ShortestPathTask(**options)
        for size in (4, 5):
            x, y = task.generate(size, 15, seed=size)
            for xi, yi in zip(x, y):
                free, cost, start, goal = task.decode(xi)
                mask, _ = brute_force_mask(free, cost, start, goal)
                assert np.array_equal(mask, yi.astype(bool))


def test_grids_have_loops_and_tied_routes():
    x, _ = ShortestPathTask().generate(12, 40, seed=4)
    surplus = []
    for xi in x:
        free, _, start, _ = ShortestPathTask().decode(xi)
        nodes, edges = components_and_edges(free, start)
        surplus.append(edges - (len(nodes) - 1))  # independent cycles of the start's component
    assert min(surplus) >= 0 and np.mean(surplus) > 5 and np.mean(np.array(surplus) > 0) > 0.9
    # With unit costs, ties between several cheapest routes are common.
    unit = ShortestPathTask(cost_min=1, cost_max=1)
    x, _ = unit.generate(10, 30, seed=4)
    counts = [count_shortest_paths(*unit.decode(xi)) for xi in x]
    assert np.mean(np.array(counts) > 1) > 0.5


def test_hand_made_tied_routes():
    free = np.ones((3, 3), dtype=bool)
    free[1, 1] = False
    cost = np.ones((3, 3), dtype=np.int64)
    mask = shortest_path_mask(free, cost, (0, 0), (2, 2))
    assert np.array_equal(mask, free)  # both routes around the obstacle tie: all 8 cells
    cost[1, 0] = 2  # the left route now costs one more: only the top-right route remains
    expected = np.array([[1, 1, 1], [0, 0, 1], [0, 0, 1]], dtype=bool)
    assert np.array_equal(shortest_path_mask(free, cost, (0, 0), (2, 2)), expected)
    # The start's cost does not count (cells are paid on entry): raising it changes nothing.
    cost[0, 0] = 9
    assert np.array_equal(shortest_path_mask(free, cost, (0, 0), (2, 2)), expected)
    # A detour through an expensive corridor versus a cheap longer one, plus a dead end.
    free = np.array(
        [[1, 1, 1, 1],
         [1, 0, 0, 1],
         [1, 1, 1, 1],
         [1, 0, 0, 0]], dtype=bool)  # fmt: skip
    cost = np.array(
        [[1, 5, 5, 1],
         [1, 1, 1, 1],
         [1, 1, 1, 1],
         [1, 1, 1, 1]])  # fmt: skip
    mask = shortest_path_mask(free, cost, (0, 0), (0, 3))
    expected = np.array(
        [[1, 0, 0, 1],
         [1, 0, 0, 1],
         [1, 1, 1, 1],
         [0, 0, 0, 0]], dtype=bool)  # fmt: skip
    assert np.array_equal(mask, expected)
    assert np.array_equal(mask, brute_force_mask(free, cost, (0, 0), (0, 3))[0])


def test_solver_errors():
    free = np.array([[1, 0, 1], [1, 0, 1]], dtype=bool)
    cost = np.ones((2, 3), dtype=np.int64)
    with pytest.raises(ValueError, match="cannot be reached"):
        shortest_path_mask(free, cost, (0, 0), (1, 2))
    with pytest.raises(ValueError, match="free cell"):
        shortest_path_mask(free, cost, (0, 1), (1, 0))
    with pytest.raises(ValueError, match="at least 1"):
        shortest_path_mask(free, np.zeros((2, 3), dtype=np.int64), (0, 0), (1, 0))


def test_score_accepts_truth_rejects_corruption(task):
    x, y = task.generate(12, 20, seed=3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    assert task.score(xt, yt, yt.clone()).all()
    assert torch.equal(task.valid(xt), xt[:, 0] > 0.5)
    flipped_free, flipped_obstacle = yt.clone(), yt.clone()
    for i in range(20):
        free_cells = torch.nonzero(xt[i, 0] > 0.5)
        obstacle_cells = torch.nonzero(xt[i, 0] < 0.5)
        r, c = free_cells[i % len(free_cells)]
        flipped_free[i, r, c] ^= 1
        r, c = obstacle_cells[i % len(obstacle_cells)]
        flipped_obstacle[i, r, c] ^= 1
    assert not task.score(xt, yt, flipped_free).any()
    assert task.score(xt, yt, flipped_obstacle).all()  # obstacles are not scored


@pytest.mark.parametrize("size", [3, 0, -1, 4.0, "12", False])
def test_check_size_rejects(task, size):
    with pytest.raises(TaskError, match=r"integer >= 4"):
        task.check_size(size)


@pytest.mark.parametrize(
    "options",
    [
        {"obstacle_density": -0.1},
        {"obstacle_density": 0.6},
        {"obstacle_density": "0.2"},
        {"obstacle_density": float("nan")},
        {"cost_min": 0},
        {"cost_min": 5, "cost_max": 4},
        {"cost_max": 2.5},
        {"cost_min": True},
        {"unique_path": "yes"},
        {"unique_path": 1},
    ],
)
def test_bad_options(options):
    with pytest.raises(TaskError, match="shortest_path"):
        ShortestPathTask(**options)


# ---------------------------------------------------------------- benchmark.analysis.shortest_path_failures
REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "results" / "reference" / "checkpoints"


@pytest.fixture(scope="module")
def failures():
    return importlib.import_module("benchmark.analysis.shortest_path_failures")


def encode(free, cost, start, goal, cost_max):
    """The task's input channels for a hand-made grid."""
    x = np.zeros((4, *free.shape), dtype=np.float32)
    x[0], x[1][start], x[2][goal] = free, 1.0, 1.0
    x[3] = np.where(free, cost / cost_max, 0.0)
    return x


def test_failure_analysis_sorts_hand_made_mistakes(failures):
    # The 4x4 grid of test_hand_made_tied_routes: one cheapest route (cost 7) down, across, up.
    free = np.array([[1, 1, 1, 1], [1, 0, 0, 1], [1, 1, 1, 1], [1, 0, 0, 0]], dtype=bool)
    cost = np.array([[1, 5, 5, 1], [1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1]])
    task = ShortestPathTask(cost_max=9)
    x = encode(free, cost, (0, 0), (0, 3), 9)
    g = failures.grid_geometry(task, x)
    assert np.array_equal(g.target, shortest_path_mask(free, cost, (0, 0), (0, 3))) and not g.tied
    assert np.array_equal(g.every_path, g.target)  # a single route: every cell of it is on every cheapest path
    assert (g.excess[0, 1], g.excess[3, 0]) == (4, 2)  # via the top corridor 5+5+1 = 11 vs 7; the dead end 1 out + 1 back
    predicted = g.target.copy()
    predicted[1, 0] = False  # a missing cell of the only route
    predicted[0, 1] = True  # an extra cell beside the start
    report = failures.analyse(task, torch.from_numpy(x[None]), predicted[None], 4)
    assert report.exact == 0 and report.excess == [4]
    assert report.cells == {"missing, on every cheapest path": 1, "missing, on tied routes only": 0, "extra, next to a path cell": 1,
                            "extra, further away": 0, "wrong cells near start/goal": 2, "wrong cells far from both": 0}
    assert report.wrong_fraction == [2 / 11] and report.by_ties == {"one cheapest path": [False]}
    # Two tied routes around an obstacle (unit costs): leaving out one corner is a tied-route miss.
    free = np.ones((3, 3), dtype=bool)
    free[1, 1] = False
    unit = ShortestPathTask(cost_min=1, cost_max=1)
    x = encode(free, np.ones((3, 3)), (0, 0), (2, 2), 1)
    g = failures.grid_geometry(unit, x)
    assert g.tied and np.array_equal(g.target, free)
    assert np.array_equal(g.every_path, np.array([[1, 0, 0], [0, 0, 0], [0, 0, 1]], dtype=bool))
    predicted = free.copy()
    predicted[0, 1] = False
    report = failures.analyse(unit, torch.from_numpy(np.stack([x, x])), np.stack([predicted, free]), 4)
    assert report.exact == 1 and report.cells["missing, on tied routes only"] == 1 and report.cells["missing, on every cheapest path"] == 0
    assert report.by_ties == {"tied routes": [False, True]}


def test_failure_script_on_the_reference_checkpoint_agrees_with_evaluate(failures, capsys):
    (run_dir,) = (REFERENCE / "shortest_path" / "train12_test24" / "shared").iterdir()
    report = failures.run([str(run_dir), "--size", "12", "--n", "12", "--iters", "6"])
    model, ckpt, cfg, _ = load_run(run_dir, "cpu")
    data = ckpt.task.dataset(12, 12, seed=data_seeds(cfg["seed"])[1])
    curve = accuracy_per_iteration(model, ckpt.task, data, 6, 12, torch.device("cpu"))
    assert report.samples == 12 and curve[report.best_iter - 1] == max(curve) and report.exact == round(12 * max(curve))
    # Every wrong cell is counted once as missing or extra, and once as near or far from the ends.
    with torch.no_grad():
        predicted = model(data.tensors[0], report.best_iter).argmax(1)
    inputs, targets = data.tensors
    wrong = int(((predicted != targets) & ckpt.task.valid(inputs)).sum())
    kinds = report.cells
    assert wrong == sum(v for k, v in kinds.items() if k.startswith(("missing", "extra"))) == kinds["wrong cells near start/goal"] + kinds["wrong cells far from both"]
    assert sum(len(rows) for rows in report.by_distance.values()) == 12
    # Ties as an independent count of cheapest paths sees them.
    tied = [count_shortest_paths(*ckpt.task.decode(x)) > 1 for x in inputs.numpy()]
    assert len(report.by_ties.get("tied routes", [])) == sum(tied)
    assert f"best iteration {report.best_iter}" in capsys.readouterr().out


def test_failure_script_refuses_other_tasks(failures, capsys):
    (run_dir,) = (REFERENCE / "maze" / "train9_test15" / "shared").iterdir()
    with pytest.raises(SystemExit) as exit_info:
        exit_on_user_error(failures.run, [str(run_dir), "--size", "12"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "give a shortest_path run" in err


def test_the_unit_cost_option_is_breadth_first_search_with_one_route_on_its_own_sizes():
    from conftest import compose_config

    from benchmark.pipelines.algorithmic import build_task

    unit, weighted = compose_config("task=shortest_path_unit"), compose_config("task=shortest_path")
    task = build_task(unit)
    assert isinstance(task, ShortestPathTask) and asdict(task.options) == {"obstacle_density": 0.25, "cost_min": 1, "cost_max": 1,
                                                                           "unique_path": True}
    assert (unit.size.train, list(unit.size.test), unit.size.n_train) == (8, [16], 40000)
    assert (weighted.size.train, list(weighted.size.test), weighted.task.cost_max) == (12, [24], 9)  # the hard setting stays
    # Its training recipe is the weighted one's but for the detached extra iterations (and 4x the data).
    changed = {k for k in unit.train if unit.train[k] != weighted.train[k]}
    assert changed == {"detach_extra"} and unit.train.detach_extra == 20 and unit.eval == weighted.eval
    # Its model is width 48 (configs/scale/shortest_path_unit_shortest_path_unit.yaml), whatever the
    # model; the command line, another train option and the weighted task keep their own.
    assert unit.model.width == compose_config("task=shortest_path_unit", "model=recurrent").model.width == 48
    assert compose_config("task=shortest_path_unit", "model.width=32").model.width == 32
    assert compose_config("task=shortest_path_unit", "train=shortest_path").model.width == weighted.model.width == 32
    x, y = task.generate(8, 6, seed=0)
    assert np.array_equal(x[:, 3], x[:, 0])  # every free cell costs 1
    for xi, yi in zip(x, y):  # the target is the one breadth-first shortest path
        free, cost, start, goal = task.decode(xi)
        assert np.array_equal(yi.astype(bool), reference_mask(free, cost, start, goal))
        assert count_shortest_paths(free, cost, start, goal) == 1
