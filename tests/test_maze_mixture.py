"""A mixture of maze generators (``task.generator=[dfs,kruskal]``): each maze's generator drawn
uniformly from the list, from that maze's own stream; carried by the cache key, the gymnasium
environment and the checkpoint; single names unchanged (their hash test is
tests/test_maze_generators.py::test_defaults_are_byte_identical_to_the_historical_mazes)."""

from __future__ import annotations

import copy
import json
from dataclasses import asdict

import gymnasium
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from scipy.stats import binomtest, chisquare

import tasks.env  # noqa: F401  (registers the environments)
from benchmark.config.schema import ConfigError
from benchmark.infra.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from benchmark.models.recurrent import RecurrentConvNet
from tasks.base import TaskError
from tasks.maze import MazeTask
from test_maze_generators import check_maze, one_sentence

PAIR = ["dfs", "kruskal"]


def dead_end_shares(x: np.ndarray) -> np.ndarray:
    """Per compact maze, the share of cells with exactly one open neighbour (the generators' fingerprint)."""
    open_ = x.max(axis=1) > 0
    o = np.pad(open_, ((0, 0), (1, 1), (1, 1))).astype(np.int64)
    degree = (o[:, :-2, 1:-1] + o[:, 2:, 1:-1] + o[:, 1:-1, :-2] + o[:, 1:-1, 2:])[:, 1::2, 1::2]
    return (degree == 1).mean(axis=(1, 2))


def drawn(task: MazeTask, n: int, seed: int) -> list[str]:
    """The generator of each of the first n mazes of ``seed``, through the task's own hook."""
    return [task.draw_generator(np.random.default_rng(np.random.SeedSequence([seed, i]))) for i in range(n)]


# ---------------------------------------------------------------------------- what is drawn
def test_a_two_generator_mixture_is_half_each_by_the_mazes_own_fingerprint():
    # At size 31 (256 cells) one maze's dead-end share tells dfs (about 0.11) from Kruskal (0.30):
    # no maze of 2,000 of either generator alone falls on the wrong side of 0.2.
    task = MazeTask(generator=PAIR)
    x, _ = task.generate(31, 400, seed=0)
    share = dead_end_shares(x)
    looks_dfs = share < 0.2
    assert [("dfs" if d else "kruskal") for d in looks_dfs] == drawn(task, 400, seed=0)
    assert binomtest(int(looks_dfs.sum()), 400, 0.5).pvalue > 1e-3, int(looks_dfs.sum())
    # Each part keeps its generator's fingerprint (docs/maze_generators.md: 0.108 and 0.302 at 31).
    assert 0.09 < share[looks_dfs].mean() < 0.13 and 0.29 < share[~looks_dfs].mean() < 0.32


def test_a_three_generator_mixture_is_uniform():
    names = drawn(MazeTask(generator=["prim", "dfs", "wilson"]), 3000, seed=1)
    counts = [names.count(g) for g in ("dfs", "wilson", "prim")]
    assert sum(counts) == 3000 and chisquare(counts).pvalue > 1e-3, counts


def test_a_mixture_maze_is_the_drawn_generators_maze_from_the_rest_of_its_stream():
    task = MazeTask(generator=["wilson", "prim", "division"], start="dead_end", percolation=0.1)
    x, y = task.generate(13, 12, seed=5)
    for i in range(12):
        rng = np.random.default_rng(np.random.SeedSequence([5, i]))
        name = task.draw_generator(rng)
        xi, yi = MazeTask(generator=name, start="dead_end", percolation=0.1).sample(13, rng)
        np.testing.assert_array_equal(x[i], xi)
        np.testing.assert_array_equal(y[i], yi)
        check_maze(x[i], y[i], "compact", 0.1, "dead_end", "random")


def test_a_single_name_draws_nothing_more():
    rng = np.random.default_rng(0)
    state = copy.deepcopy(rng.bit_generator.state)
    assert MazeTask(generator="prim").draw_generator(rng) == "prim" and rng.bit_generator.state == state


# ---------------------------------------------------------------------------- reproducible datasets
@pytest.mark.parametrize("rendering", ["compact", "e2h"])
def test_mixtures_are_deterministic_and_their_prefixes_are_smaller_datasets(rendering):
    task = MazeTask(rendering=rendering, generator=PAIR)
    a, b, c = task.generate(15, 20, seed=4), task.generate(15, 20, seed=4), task.generate(15, 20, seed=5)
    assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes()
    assert a[0].tobytes() != c[0].tobytes()
    head = task.generate(15, 7, seed=4)
    np.testing.assert_array_equal(a[0][:7], head[0])
    np.testing.assert_array_equal(a[1][:7], head[1])
    for xi, yi in zip(*a):
        check_maze(xi, yi, rendering, 0.0, "random", "random")


def test_a_mixture_is_a_set_and_a_list_of_one_is_that_name():
    ab, ba = MazeTask(generator=["dfs", "kruskal"]), MazeTask(generator=("kruskal", "dfs"))
    assert ab.options == ba.options and ab.options.generator == ("dfs", "kruskal")
    assert ab.cache_key(9, 10, 0) == ba.cache_key(9, 10, 0)
    assert ab.generate(9, 6, seed=0)[0].tobytes() == ba.generate(9, 6, seed=0)[0].tobytes()
    one = MazeTask(generator=["prim"])
    assert one.options == MazeTask(generator="prim").options and one.cache_key(9, 10, 0) == MazeTask(generator="prim").cache_key(9, 10, 0)
    # A single name stays a string in the options, so the cache keys of existing datasets are unchanged.
    assert asdict(MazeTask().options)["generator"] == "dfs"


def test_the_mixture_is_part_of_the_cache_key(tmp_path):
    keys = {MazeTask(generator=g).cache_key(9, 10, 0) for g in ("dfs", "kruskal", ("dfs", "kruskal"), ("dfs", "prim"))}
    assert len(keys) == 4
    task = MazeTask(generator=PAIR)
    first = task.dataset(9, 8, seed=0, cache_dir=tmp_path).tensors[0]
    again = MazeTask(generator=PAIR).dataset(9, 8, seed=0, cache_dir=tmp_path).tensors[0]
    assert len(list(tmp_path.glob("*.npz"))) == 1 and torch.equal(first, again)


# ---------------------------------------------------------------------------- refusals
@pytest.mark.parametrize("generator", [[], ["dfs", "dfs"], ["dfs", "bfs"], ["dfs", 1], [["dfs"]], {"dfs": 1}, b"dfs", 3])
def test_bad_mixtures_are_refused_in_one_sentence_naming_the_generators(generator):
    with pytest.raises(TaskError, match="maze generator must be one of 'dfs', 'kruskal', 'wilson', 'prim', 'division' "
                                        r"or a list of distinct ones \(a mixture\)") as err:
        MazeTask(generator=generator)
    one_sentence(err)


# ---------------------------------------------------------------------------- gymnasium, config, checkpoint
def test_gymnasium_make_takes_a_mixture():
    env = gymnasium.make("algoreason/Maze-v0", size=15, generator=["kruskal", "dfs"])
    assert env.unwrapped.task.options.generator == ("dfs", "kruskal")
    assert env.spec.kwargs["generator"] == ["kruskal", "dfs"]
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)


def test_the_checkpoint_carries_the_list_and_refuses_junk_in_its_place(tmp_path):
    cfg = OmegaConf.create({"model": {"_target_": "benchmark.models.recurrent.RecurrentConvNet", "name": "shared", "width": 4},
                            "task": {"_target_": "tasks.maze.MazeTask", "generator": ["dfs", "kruskal"]}})
    model = RecurrentConvNet(MazeTask.spec, name="shared", width=4)
    path = tmp_path / "model.pt"
    save_checkpoint(model, cfg, path)
    raw = torch.load(path, weights_only=True)
    assert raw["task"] == {"name": "maze", "args": {"generator": ["dfs", "kruskal"]}}
    ckpt, _ = read_checkpoint(path)
    assert ckpt.task_args == {"generator": ["dfs", "kruskal"]} and ckpt.task.options.generator == ("dfs", "kruskal")
    for junk, message in ((["dfs", 1], "must be str | tuple[str, ...]"), ([["dfs"]], "a list of those"),
                          (["dfs", "bfs"], "or a list of distinct ones"), ({"_target_": "os.system"}, "nested _target_"),
                          (7, "must be str | tuple[str, ...]")):
        crafted = copy.deepcopy(raw)
        crafted["task"]["args"]["generator"] = junk
        torch.save(crafted, tmp_path / "crafted.pt")
        with pytest.raises(ConfigError) as err:
            load_checkpoint(tmp_path / "crafted.pt")
        assert message in str(err.value) and "\n" not in str(err.value), (junk, str(err.value))


def test_a_run_on_a_mixture_saves_it_and_rescores_from_its_checkpoint(make_cfg, tmp_path):
    from benchmark.evaluation.rescore import run as rescore
    from benchmark.pipelines.algorithmic import run

    results = run(make_cfg("task=maze", "task.generator=[kruskal,dfs]", "size.train=5", "size.test=[7]", "model.width=4",
                           "run_id=mix"))
    saved = OmegaConf.load(results.run_dir / "config.yaml")
    assert list(saved.task.generator) == ["kruskal", "dfs"]
    _, ckpt = load_checkpoint(results.run_dir / "model.pt")
    assert ckpt.task_args["generator"] == ["kruskal", "dfs"] and ckpt.task.options.generator == ("dfs", "kruskal")
    again = rescore([str(results.run_dir), "--sizes", "7", "--iters", "5", "--n", "16", "--device", "cpu"])
    assert again.accuracy[7] == pytest.approx(results.evaluation.accuracy[7])
    assert json.loads((results.run_dir / "eval_sizes7_iters5_n16.json").read_text())["accuracy"]["7"] == pytest.approx(again.accuracy[7])


def test_a_bad_mixture_on_the_command_line_is_one_sentence_and_writes_nothing(tmp_path):
    from test_cli import _cli

    proc = _cli(tmp_path, "task=maze", "task.generator=[dfs,bfs]")
    assert proc.returncode == 2, proc.stderr
    assert "maze generator must be one of 'dfs'" in proc.stderr and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "results").exists()
