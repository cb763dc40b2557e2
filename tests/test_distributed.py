"""Data-parallel training (``torchrun --nproc_per_node=N -m benchmark``): N processes at a global
batch of B give the weights of one process at B, up to rounding; rank 0 alone writes.

The processes are real ones, started by torchrun (``python -m torch.distributed.run``) on the
CPU with the gloo backend, one thread each. float32 throughout (no bf16 autocast, whose rounding
would hide a difference). This file is also the worker script torchrun runs (``__main__``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmark.infra import distributed
from benchmark.config.schema import ConfigError, TrainConfig
from benchmark.training.loop_regulariser import loop_penalty
from benchmark.models.recurrent import RecurrentConvNet
from benchmark.pipelines.algorithmic import run
from benchmark.training.trainer import fit
from tasks.shortest_path import ShortestPathTask

from conftest import TINY, compose_config

ROOT = Path(__file__).resolve().parents[1]
# Differences between the runs are rounding only: the ranks' gradients are summed in another
# order than one process sums its batch (measured: at most 2e-7 in the first test); an unweighted
# mean of the ranks' gradients already moves a weight by 2.6e-2 there.
ATOL = 1e-5


def _train(state_dir: Path | None) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """A few steps on shortest-path grids, whose samples count different numbers of scored cells
    (so the ranks' losses must be weighted to equal the global batch's), with both loss terms,
    clipping and a regulariser: the case where a naive mean over ranks would be wrong."""
    torch.set_num_threads(1)
    task = ShortestPathTask()
    data = task.dataset(6, 48, seed=0)
    cfg = TrainConfig(epochs=2, batch_size=16, lr=1e-2, warmup_steps=2, clip=0.5, alpha=0.5, iters=3, detach_extra=0,
                      log_every=2, checkpoint_every=3)
    torch.manual_seed(0)
    model = RecurrentConvNet(task.spec, width=8, templates=2)
    paths = dict(metrics_path=state_dir / "metrics.jsonl", state_path=state_dir / "train_state.pt") if state_dir else {}
    records = fit(model, task, data, cfg, torch.device("cpu"), seed=4, progress=False,
                  regulariser=lambda m: 0.1 * loop_penalty(m), **paths)
    return model.state_dict(), records


def _torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_two_processes_at_half_the_batch_train_the_weights_of_one_process(tmp_path):
    done = _torchrun(__file__, str(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    expected, expected_records = _train(None)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    for key, value in expected.items():
        torch.testing.assert_close(ranks[0]["weights"][key], value, atol=ATOL, rtol=0)
        assert torch.equal(ranks[0]["weights"][key], ranks[1]["weights"][key]), key  # identical gradients, identical steps
    # The metrics are the global batch's: the loss weighted over ranks, the accuracy counted over both.
    assert [r["step"] for r in ranks[0]["records"]] == [r["step"] for r in expected_records] == [2, 4, 6]
    for got, want in zip(ranks[0]["records"], expected_records):
        assert got["samples"] == want["samples"] and got["train_acc"] == want["train_acc"]
        assert got["loss"] == pytest.approx(want["loss"], abs=ATOL)
    # Only rank 0 wrote: its metrics and training state; rank 1's directory stays empty.
    assert sorted(p.name for p in (tmp_path / "out0").iterdir()) == ["metrics.jsonl", "train_state.pt"]
    assert list((tmp_path / "out1").iterdir()) == []
    assert len((tmp_path / "out0" / "metrics.jsonl").read_text().splitlines()) == 3


def test_torchrun_of_the_command_writes_one_run_directory_with_the_single_process_weights(tmp_path):
    overrides = ["task=prefix_sums", *TINY, "train.batch_size=16", "device=cpu", "threads=1", "precision=fp32",
                 "model.width=8", "run_id=ddp"]
    done = _torchrun("-m", "benchmark", *overrides, f"results_dir={tmp_path / 'two'}", f"cache_dir={tmp_path / 'cache'}",
                     cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = sorted(p.parent for p in (tmp_path / "two").rglob("config.yaml"))
    assert [p.name for p in runs] == ["ddp"]  # one run directory, not one per process
    assert not (runs[0] / "INCOMPLETE").exists() and (runs[0] / "eval.json").exists()
    assert done.stdout.count("results in") == 1  # rank 0 reports; rank 1 stopped after training

    single = run(compose_config(*overrides, f"results_dir={tmp_path / 'one'}", f"cache_dir={tmp_path / 'cache'}"))
    two = torch.load(runs[0] / "model.pt", weights_only=True)["state_dict"]
    one = torch.load(single.run_dir / "model.pt", weights_only=True)["state_dict"]
    assert two.keys() == one.keys()
    for key in one:
        torch.testing.assert_close(two[key], one[key], atol=ATOL, rtol=0)


def test_a_batch_the_processes_cannot_share_equally_is_refused_before_anything_is_written(make_cfg, monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    cfg = make_cfg("task=prefix_sums", "train.batch_size=15")
    with pytest.raises(ConfigError, match=r"^train.batch_size \(15\) must be divisible by the 2 processes torchrun started"):
        run(cfg)
    assert not Path(cfg.results_dir).exists() and not distributed.active()


def test_without_torchrun_there_is_one_process_of_rank_0(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    assert (distributed.launched(), distributed.env_world_size(), distributed.rank(), distributed.is_main()) == (False, 1, 0, True)
    assert distributed.init(torch.device("cpu")) is False and distributed.rank_device(torch.device("cuda")) == torch.device("cuda")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert (distributed.env_world_size(), distributed.rank(), distributed.is_main()) == (2, 1, False)
    assert distributed.rank_device(torch.device("cuda")) == torch.device("cuda", 1)  # each rank its own GPU
    assert distributed.rank_device(torch.device("cpu")) == torch.device("cpu")


if __name__ == "__main__":  # one rank of the first test, started by torchrun
    out = Path(sys.argv[1])
    distributed.init(torch.device("cpu"))
    me = distributed.rank()
    (out / f"out{me}").mkdir()
    weights, records = _train(out / f"out{me}")
    torch.save({"weights": weights, "records": records}, out / f"rank{me}.pt")
    distributed.teardown()
