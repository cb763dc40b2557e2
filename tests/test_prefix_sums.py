import numpy as np
import pytest
import torch

from tasks.base import TaskError
from tasks.prefix_sums import PrefixSumsTask


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
