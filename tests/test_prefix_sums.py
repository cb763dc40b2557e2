from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmark.config.schema import data_seeds, exit_on_user_error
from benchmark.evaluation.extrapolation import accuracy_per_iteration
from benchmark.evaluation.rescore import load_run
from tasks.base import TaskError
from tasks.prefix_sums import PrefixSumsTask

import importlib


@pytest.fixture
def task():
    return PrefixSumsTask()


def test_spec(task):
    assert task.name == "prefix_sums"
    assert (task.spec.dims, task.spec.in_channels, task.spec.num_classes) == (1, 1, 2)


def test_determinism(task):
    x1, y1 = task.generate(40, 16, seed=7)
    x2, y2 = task.generate(40, 16, seed=7)
    x3, _ = task.generate(40, 16, seed=8)
    assert x1.tobytes() == x2.tobytes() and y1.tobytes() == y2.tobytes()
    assert x1.tobytes() != x3.tobytes()
    # Each item is regenerable alone.
    x0, y0 = task.sample(40, np.random.default_rng(np.random.SeedSequence([7, 3])))
    assert np.array_equal(x0, x1[3]) and np.array_equal(y0, y1[3])


@pytest.mark.parametrize("size", [1, 2, 7, 32, 33, 257])
def test_shapes_and_values(task, size):
    x, y = task.generate(size, 5, seed=0)
    assert x.shape == (5, 1, size) and x.dtype == np.float32
    assert y.shape == (5, size) and y.dtype == np.int64
    assert set(np.unique(x)) <= {-0.5, 0.5}
    assert set(np.unique(y)) <= {0, 1}
    assert task.shape(size) == (size,)
    assert all(task.observation_space(size).contains(xi) for xi in x)
    assert all(task.solution_space(size).contains(yi) for yi in y)


@given(st.integers(1, 40), st.integers(0, 10_000))
@settings(max_examples=30, deadline=None)
def test_a_truncated_string_is_a_string_of_that_length(size, seed):
    """The length curriculum cuts batches with ``truncate``: a prefix's targets are its own running parity."""
    task = PrefixSumsTask()
    assert task.truncates
    x, y = (torch.from_numpy(a) for a in task.generate(40, 4, seed=seed))
    cut_x, cut_y = task.truncate(x, y, size)
    assert cut_x.shape == (4, 1, size) and cut_y.shape == (4, size)
    bits = (cut_x[:, 0] > 0).long()
    assert torch.equal(cut_y, torch.cumsum(bits, dim=1) % 2)
    assert task.score(cut_x, cut_y, cut_y).all()


def test_targets_match_python_loop(task):
    x, y = task.generate(97, 50, seed=3)
    for xi, yi in zip(x, y):
        bits = [int(v > 0) for v in xi[0]]
        acc, expected = 0, []
        for b in bits:
            acc ^= b
            expected.append(acc)
        assert yi.tolist() == expected
    assert 0.3 < (x > 0).mean() < 0.7  # the bits are not constant


def test_score_accepts_truth_rejects_corruption(task):
    x, y = task.generate(64, 20, seed=1)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    assert task.score(xt, yt, yt.clone()).all()
    bad = yt.clone()
    bad[torch.arange(20), torch.arange(20) % 64] ^= 1  # flip one bit in every sample
    assert not task.score(xt, yt, bad).any()
    assert task.valid(xt).all()


@pytest.mark.parametrize("size", [0, -3, 2.0, "8", True, None])
def test_check_size_rejects(task, size):
    with pytest.raises(TaskError, match=r"integer >= 1"):
        task.check_size(size)


def test_check_size_accepts(task):
    for size in (1, 5, 64, np.int64(9)):
        task.check_size(size)
    with pytest.raises(TaskError):
        task.generate(0, 3, seed=0)


# ---------------------------------------------------------------- benchmark.analysis.prefix_sums_failures
REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "results" / "reference" / "checkpoints"


@pytest.fixture(scope="module")
def failures():
    return importlib.import_module("benchmark.analysis.prefix_sums_failures")


def test_failure_analysis_finds_a_window_models_reach(failures):
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 2, (400, 32))
    window = np.where(np.arange(32) < 10, targets, rng.integers(0, 2, (400, 32)))  # right on bits 0-9, chance after
    report = failures.analyse(window, targets)
    assert report.reach == 10 and min(report.by_position[:10]) == 1.0 and max(report.by_position[10:]) < 0.6
    assert min(report.solved_prefix) >= 10 and report.string_acc < 0.01
    perfect = failures.analyse(targets, targets)
    assert perfect.reach is None and perfect.string_acc == perfect.bit_acc == 1.0 and set(perfect.solved_prefix) == {32}
    first_bit_wrong = targets.copy()
    first_bit_wrong[0, 0] ^= 1
    report = failures.analyse(first_bit_wrong, targets, reach_acc=1.0)
    assert report.solved_prefix[0] == 0 and report.solved_prefix[1:] == [32] * 399 and report.reach == 0
    assert report.string_acc == 399 / 400


def test_failure_script_on_the_reference_checkpoint_agrees_with_evaluate(failures, capsys):
    (run_dir,) = (REFERENCE / "prefix_sums" / "train32_test512" / "recurrent").iterdir()
    report = failures.run([str(run_dir), "--size", "32", "--n", "40", "--reach-iters", "2", "30"])
    model, ckpt, cfg, _ = load_run(run_dir, "cpu")
    data = ckpt.task.dataset(32, 40, seed=data_seeds(cfg["seed"])[1])
    curve = accuracy_per_iteration(model, ckpt.task, data, 30, 40, torch.device("cpu"))
    assert report.iters == cfg["train"]["iters"] == 30 and report.string_acc == curve[29] == 1.0 and report.reach is None
    out = capsys.readouterr().out
    # A learned loop carries the parity along: after 2 iterations it reaches only the first bits.
    assert "| 30 | none | 100.0% |" in out and "| 2 | none |" not in out


@pytest.mark.parametrize("args, message", [
    (["--size", "32", "--reach-acc", "1.5"], "--reach-acc must lie in (0, 1]"),
    (["--size", "32", "--reach-iters", "0"], "must be positive integers"),
])
def test_failure_script_refuses_bad_options(failures, capsys, args, message):
    (run_dir,) = (REFERENCE / "prefix_sums" / "train32_test512" / "recurrent").iterdir()
    with pytest.raises(SystemExit) as exit_info:
        exit_on_user_error(failures.run, [str(run_dir), *args])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and message in err


def test_failure_script_refuses_other_tasks(failures, capsys):
    (run_dir,) = (REFERENCE / "maze" / "train9_test15" / "shared").iterdir()
    with pytest.raises(SystemExit) as exit_info:
        exit_on_user_error(failures.run, [str(run_dir), "--size", "32"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "give a prefix_sums run" in err
