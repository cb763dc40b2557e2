"""The maze track end to end, through Hydra's command line and through ``run(cfg)``."""

import json
import os
import subprocess
import sys

import pytest
import torch

from benchmark.infra.checkpoint import load_checkpoint
from benchmark.evaluation.extrapolation import accuracy_per_iteration
from benchmark.evaluation.extrapolation import main as evaluate_main
from benchmark.pipelines.algorithmic import run
from tasks.maze import MazeTask

from conftest import PUZZLE_MODELS, TINY


def _cli(tmp_path, *overrides):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "benchmark", f"results_dir={tmp_path / 'results'}", f"cache_dir={tmp_path / 'cache'}",
           *TINY, *overrides]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)


def test_command_line_run_writes_a_complete_run_directory(tmp_path):
    proc = _cli(tmp_path, "task=maze", "size=train9_test15", "run_id=first")
    assert proc.returncode == 0, proc.stderr
    run_dir = tmp_path / "results" / "maze" / "train9_test15" / "shared" / "first"
    for name in ("config.yaml", "metrics.jsonl", "eval.json", "model.pt", "extrapolation.png", "training.png"):
        assert (run_dir / name).is_file(), name
    results = json.loads((run_dir / "eval.json").read_text())
    assert set(results["accuracy"]) == {"9", "15"}
    assert all(len(acc) == 5 for acc in results["accuracy"].values())
    assert "oracle iter" in proc.stdout and "15" in proc.stdout  # the printed table
    assert not list(tmp_path.glob("*.log")) and not (tmp_path / "outputs").exists()  # Hydra wrote nothing of its own

    # Accuracy comes from real predictions: rebuild the model from its checkpoint alone and rescore.
    model, _ = load_checkpoint(run_dir / "model.pt")
    test_set = MazeTask().dataset(15, 16, seed=1, cache_dir=tmp_path / "cache")
    rescored = accuracy_per_iteration(model, MazeTask(), test_set, 5, 8, torch.device("cpu"))
    assert rescored == pytest.approx(results["accuracy"]["15"])
    # The second run finds its data in the cache instead of regenerating it: one training set, and
    # a test and a validation set of each test size (9 and 15).
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 5

    # Re-evaluation of the checkpoint from the command line reproduces the run's own figures.
    evaluate_main([str(run_dir), "--sizes", "15", "--iters", "5", "--n", "16", "--device", "cpu"])
    again = json.loads((run_dir / "eval_sizes15_iters5_n16.json").read_text())
    assert again["accuracy"]["15"] == pytest.approx(results["accuracy"]["15"])
    with pytest.raises(SystemExit):
        evaluate_main([str(run_dir), "--sizes", "8"])  # an even maze size


@pytest.mark.parametrize(
    "override,message",
    [
        ("size.train=8", "odd integer"),
        ("size.test=[9,2]", "odd integer"),
        ("size.n_train=-5", "size.n_train must be a positive integer"),
        ("task.rendering=fancy", "compact"),
        ("train.alpha=2", "train.alpha must lie in [0, 1]"),
        ("train.progressive_min_iters=0", "train.progressive_min_iters must be an integer from 1 to train.iters"),
    ],
)
def test_bad_input_is_one_sentence_and_writes_nothing(tmp_path, override, message):
    proc = _cli(tmp_path, override)
    assert proc.returncode == 2
    assert message in proc.stderr and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("override,message", [("model=nope", "available options in 'model': contractive, depth_k1, "),
                                              ("size=train9_testX", "available options in 'size': full, "),
                                              ("train.epochs=many", "train.epochs=many"), ("train.lrr=1", "train.lrr"),
                                              ("train.lr=abc", "could not be converted to Float")])
def test_options_that_do_not_compose_are_one_sentence_and_exit_2(tmp_path, override, message):
    proc = _cli(tmp_path, override)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("model", PUZZLE_MODELS)
def test_every_model_config_runs(make_cfg, model):
    cfg = make_cfg(f"model={model}", "size.test=[7]", "size.train=5", "model.width=8")
    results = run(cfg)
    expected_iters = 3 if model.startswith("feedforward") else 5  # a feed-forward net is scored at its own depth
    assert results.evaluation.iterations == expected_iters
    assert all(0.0 <= a <= 1.0 for acc in results.evaluation.accuracy.values() for a in acc)


def test_free_test_sizes_and_run_directory_naming(make_cfg):
    cfg = make_cfg("size.test=[7,11]", "size.train=5", "model.width=8", "run_id=x")
    results = run(cfg)
    assert str(results.run_dir).endswith(os.path.join("maze", "train5_test7-11", "shared", "x"))
    assert set(results.evaluation.accuracy) == {5, 7, 11}
    again = run(cfg)  # the same run id is never overwritten
    assert str(again.run_dir).endswith("x-1")
