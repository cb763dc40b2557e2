"""The CUDA path: skipped where no GPU is present (CI has none); run with `pytest -m gpu` on a GPU."""

import pytest
import torch

from benchmark.evaluate import accuracy_per_iteration
from benchmark.run import run
from tasks.maze import MazeTask

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_auto_device_trains_on_the_gpu_and_agrees_with_the_cpu(make_cfg):
    results = run(make_cfg("device=auto", "size.train=5", "size.test=[7]", "train.epochs=3"))
    assert "cuda" in results.evaluation.run.device
    from benchmark.checkpoint import load_checkpoint

    model, _ = load_checkpoint(results.run_dir / "model.pt", map_location="cpu")
    data = MazeTask().dataset(7, 16, seed=1)
    on_cpu = accuracy_per_iteration(model, MazeTask(), data, 5, 8, torch.device("cpu"))
    on_gpu = accuracy_per_iteration(model.cuda(), MazeTask(), data, 5, 8, torch.device("cuda"))
    assert on_cpu == pytest.approx(on_gpu, abs=1 / 16)  # at most one sample flips on rounding
