"""The CUDA path: skipped where no GPU is present (CI has none); run with `pytest -m gpu` on a GPU."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmark.evaluation.extrapolation import accuracy_per_iteration
from benchmark.models.recurrent import RecurrentConvNet
from benchmark.pipelines.algorithmic import run
from tasks.maze import MazeTask
from tasks.prefix_sums import PrefixSumsTask

from conftest import TINY

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_auto_device_trains_on_the_gpu_and_agrees_with_the_cpu(make_cfg):
    results = run(make_cfg("device=auto", "size.train=5", "size.test=[7]", "train.epochs=3"))
    assert "cuda" in results.evaluation.run.device
    from benchmark.infra.checkpoint import load_checkpoint

    model, _ = load_checkpoint(results.run_dir / "model.pt", map_location="cpu")
    data = MazeTask().dataset(7, 16, seed=1)
    on_cpu = accuracy_per_iteration(model, MazeTask(), data, 5, 8, torch.device("cpu"))
    on_gpu = accuracy_per_iteration(model.cuda(), MazeTask(), data, 5, 8, torch.device("cuda"))
    assert on_cpu == pytest.approx(on_gpu, abs=1 / 16)  # at most one sample flips on rounding


def test_a_gpu_run_resolves_auto_to_bf16_and_logs_the_peak_memory(make_cfg):
    results = run(make_cfg("device=cuda", "task=prefix_sums", "train.epochs=2"))
    config = (results.run_dir / "config.yaml").read_text()
    assert "precision: " + ("bf16" if torch.cuda.is_bf16_supported() else "fp32") in config
    records = [json.loads(line) for line in (results.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert records and all(r["peak_memory_mb"] > 0 for r in records)  # the allocator's peak, logged on CUDA only


@pytest.mark.parametrize("task", [MazeTask(), PrefixSumsTask()], ids=["2d", "1d"])
def test_bf16_on_the_gpu_is_within_the_cpu_tolerance_of_fp32(task):
    """The tolerance of tests/test_precision.py (5% of the logits' spread, 97% of the argmax), on CUDA."""
    torch.manual_seed(0)
    model = RecurrentConvNet(task.spec, name="shared", width=16, templates=2).cuda()
    x = task.dataset(9 if task.spec.dims == 2 else 16, 16, seed=0).tensors[0].cuda()
    with torch.no_grad():
        reference = model(x, 10)
        model.precision = "bf16"
        low = model(x, 10)
    assert low.dtype == torch.float32 and not torch.equal(low, reference)
    assert (low - reference).abs().max() <= 0.05 * reference.std()
    assert (low.argmax(1) == reference.argmax(1)).float().mean() >= 0.97


def test_torchrun_on_the_gpu_joins_an_nccl_group_and_writes_one_run(tmp_path):
    """One process per GPU (this machine may have one): nccl's group is made, used and torn down."""
    overrides = ["task=prefix_sums", *TINY, "device=cuda", "model.width=8", "run_id=nccl",
                 f"results_dir={tmp_path / 'runs'}", f"cache_dir={tmp_path / 'cache'}"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    n = torch.cuda.device_count()
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
                           "-m", "benchmark", *overrides], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "device cuda:0" in done.stdout and done.stdout.count("results in") == 1
    runs = [p.parent for p in (tmp_path / "runs").rglob("config.yaml")]
    assert [p.name for p in runs] == ["nccl"] and (runs[0] / "eval.json").exists()
