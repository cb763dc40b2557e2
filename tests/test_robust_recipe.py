"""The robust maze recipe, ``train=robust`` (docs/robust_maze.md): what it composes to, and that
its committed reference checkpoint solves big mazes of generators it never trained on, where the
main command's checkpoint does not.

The mazes are validation-seeded (``10**12 + k``, the seeds of ``--validation`` ladders), never the
frozen test splits the README reports."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from benchmark.config.schema import check_config
from benchmark.evaluation.rescore import load_run
from tasks.maze import MazeTask
from tests.conftest import compose_config

CHECKPOINTS = Path(__file__).resolve().parents[1] / "results" / "reference" / "checkpoints" / "maze"
ROBUST = CHECKPOINTS / "train15_test15" / "shared" / "20261207-054649-seed0"
MAIN = CHECKPOINTS / "train9_test15" / "shared" / "20261127-073436-seed0"


def test_train_robust_composes_the_recipe_and_the_command_line_still_wins():
    cfg = compose_config("task=maze", "train=robust")
    check_config(cfg)
    assert list(cfg.task.generator) == ["dfs", "prim"] and cfg.size.train == 15
    assert cfg.train.iters == 30 and cfg.train.progressive_min_iters == 15
    default = compose_config("task=maze")
    # Everything else is the default recipe's: the same steps, detached iterations, model.
    for key in ("epochs", "batch_size", "lr", "detach_extra", "alpha", "ema_horizon"):
        assert cfg.train[key] == default.train[key], key
    assert cfg.model == default.model and cfg.size.test == default.size.test
    mine = compose_config("task=maze", "train=robust", "size.train=9", "task.generator=kruskal")
    assert mine.size.train == 9 and mine.task.generator == "kruskal" and mine.train.progressive_min_iters == 15


def test_the_robust_checkpoint_was_trained_by_train_robust():
    run = compose_config("task=maze", "train=robust")
    model, ckpt, cfg, _ = load_run(ROBUST, "cpu", "fp32")
    assert list(ckpt.task.options.generator) == list(run.task.generator) and cfg["size"]["train"] == run.size.train
    for key in ("iters", "progressive_min_iters"):
        assert cfg["train"][key] == run.train[key], key


def _solved(run_dir: Path, generator: str, size: int, n: int, iters: int) -> torch.Tensor:
    model, *_ = load_run(run_dir, "cpu", "fp32")  # float32: the same sums on any CPU
    model.eval()
    task = MazeTask(generator=generator)
    x, y = task.dataset(size, n, seed=10**12 + 29).tensors
    with torch.inference_mode():
        return task.score(x, y, model(x, iters).argmax(1))


@pytest.mark.parametrize("generator", ["kruskal", "wilson", "division"])
def test_the_robust_checkpoint_solves_held_out_generators_at_33(generator):
    # Held out: the recipe trains on dfs and prim only. 150 iterations: its 33x33 mazes settle
    # by about iteration 50 (the validation ladder's mean iterations run).
    assert _solved(ROBUST, generator, 33, 6, 150).all()


def test_the_main_checkpoint_fails_where_the_robust_one_does_not():
    # The contrast that makes the test above mean something: Prim mazes at 33x33.
    assert _solved(ROBUST, "prim", 33, 8, 150).all()
    assert not _solved(MAIN, "prim", 33, 8, 300).all()
