"""Path-independence measures (benchmark.evaluation.path_independence): a contraction reaches one
fixed point from every start (residual -> 0, alignment -> 1), a 2-cycle does not; the numbers of a
sample do not depend on batching; the command checks its input and writes its JSON atomically."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from benchmark.evaluation.path_independence import _test_task, alignment, auc, main, measure, residual
from benchmark.models.recurrent import RecurrentConvNet
from tasks.maze import MazeTask
from tasks.prefix_sums import PrefixSumsTask

TASK = MazeTask()
DATA = TASK.dataset(7, 6, seed=0)


class _Toy(nn.Module):
    """A two-channel state iterated by ``step``; the logits are the state (class = larger channel)."""

    iteration_limit = None
    precision = "fp32"

    def target(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x[:, 0], 1 - x[:, 0]], dim=1)  # (N, 2, H, W): never a tie between the classes

    def initial_state(self, x: torch.Tensor) -> torch.Tensor:
        return 0.25 * (1 + x[:, :2])

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return h

    def run(self, x: torch.Tensor, iters: int, state: torch.Tensor | None = None, start: int = 0) -> torch.Tensor:
        h = self.initial_state(x) if state is None else state
        for _ in range(iters):
            h = self.step(h, x)
        return h


class Contraction(_Toy):
    def step(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * h + 0.5 * self.target(x)  # the fixed point target(x), reached from anywhere


class TwoCycle(_Toy):
    def step(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return 1 + x[:, :2] - h  # h, c - h, h, ...: a 2-cycle from every start but c / 2


def test_a_contraction_is_path_independent():
    report = measure(Contraction(), TASK, DATA, 7, iters=60, scales=(0.5, 5.0), starts=3)
    assert max(report.residual) < 1e-6
    for scale in (0.5, 5.0):
        assert min(report.alignment[scale]) > 1 - 1e-5
        assert report.same_answer[scale] == (1.0,) * 6
        assert report.solved_from_starts[scale] == tuple(float(s) for s in report.solved)
    summary = report.summary()
    assert summary["residual_median"] < 1e-6 and summary["noise"]["0.5"]["alignment"] > 1 - 1e-5


def test_a_two_cycle_is_not():
    report = measure(TwoCycle(), TASK, DATA, 7, iters=60, scales=(1.0,), starts=3)
    assert min(report.residual) > 0.3  # ||c - 2 h|| stays of the order of ||h||
    assert max(report.alignment[1.0]) < 0.99  # after an even T each start is back where it began


def test_an_unperturbed_start_is_the_models_own():
    torch.manual_seed(0)
    model = RecurrentConvNet(TASK.spec, width=4)
    report = measure(model, TASK, DATA, 7, iters=5, scales=(0.0,), starts=2)
    assert min(report.alignment[0.0]) > 1 - 1e-6 and report.same_answer[0.0] == (1.0,) * 6


def test_a_samples_numbers_do_not_depend_on_the_batch_or_on_n():
    torch.manual_seed(0)
    model = RecurrentConvNet(TASK.spec, width=4)
    whole = measure(model, TASK, DATA, 7, iters=6, scales=(1.0,), starts=2, batch_size=6, seed=3)
    pieces = measure(model, TASK, DATA, 7, iters=6, scales=(1.0,), starts=2, batch_size=4, seed=3)
    head = measure(model, TASK, TASK.dataset(7, 4, seed=0), 7, iters=6, scales=(1.0,), starts=2, batch_size=4, seed=3)
    np.testing.assert_allclose(whole.residual, pieces.residual, rtol=1e-5)
    np.testing.assert_allclose(whole.alignment[1.0], pieces.alignment[1.0], rtol=1e-5)
    np.testing.assert_allclose(whole.alignment[1.0][:4], head.alignment[1.0], rtol=1e-5)
    assert all(0.0 <= a <= 1.0 + 1e-6 for a in whole.alignment[1.0])  # states are never negative
    other = measure(model, TASK, DATA, 7, iters=6, scales=(1.0,), starts=2, batch_size=6, seed=4)
    assert other.alignment != whole.alignment  # the seed chooses the starts


def test_residual_alignment_and_auc_by_hand():
    h = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    torch.testing.assert_close(residual(h, h + torch.tensor([[0.0, 5.0], [0.0, 0.0]])), torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(alignment(h, torch.tensor([[6.0, 8.0], [0.0, 2.0]])), torch.tensor([1.0, 0.0]))
    assert auc(np.array([0.9, 0.8, 0.1, 0.8]), np.array([True, True, False, False])) == pytest.approx(0.875)  # one tie
    assert auc(np.array([1.0, 2.0]), np.array([True, True])) is None


def test_the_generator_swap_needs_a_task_with_one():
    assert _test_task(TASK, ["prim"]).options.generator == "prim"
    assert _test_task(TASK, ["kruskal", "dfs"]).options.generator == ("dfs", "kruskal")
    assert _test_task(TASK, None) is TASK
    with pytest.raises(Exception, match="--generator needs a task with a generator option"):
        _test_task(PrefixSumsTask(), ["prim"])


def test_the_command_on_a_run(make_cfg, tmp_path, capsys):
    from benchmark.pipelines.algorithmic import run

    run_dir = run(make_cfg("task=maze", "size.train=5", "size.test=[7]", "model.width=4", "run_id=pi")).run_dir
    capsys.readouterr()
    out = tmp_path / "pi.json"
    main([str(run_dir), "--sizes", "7", "9", "--n", "5", "--iters", "8", "--starts", "2", "--noise", "0.5", "2",
          "--generator", "prim", "--device", "cpu", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "on prim mazes" in printed and f"written {out}" in printed
    doc = json.loads(out.read_text())
    assert (doc["iters"], doc["starts"], doc["noise"], doc["options"]["generator"]) == (8, 2, [0.5, 2.0], "prim")
    assert set(doc["sizes"]) == {"7", "9"} and set(doc["sizes"]["9"]["summary"]["noise"]) == {"0.5", "2.0"}
    samples = doc["sizes"]["7"]["samples"]
    assert len(samples["residual"]) == 5 and len(samples["alignment"]["2.0"]) == 5
    # The numbers are measure's on the run's own test seed with the generator swapped.
    from benchmark.evaluation.rescore import load_run

    model, ckpt, cfg, _ = load_run(run_dir, "cpu")
    task = MazeTask(generator="prim")
    again = measure(model, task, task.dataset(7, 5, seed=2 * cfg["seed"] + 1), 7, 8, (0.5, 2.0), 2)
    assert samples["residual"] == pytest.approx(list(again.residual))

    for argv, message in (
        (["--n", "0"], "--n must be a positive integer"),
        (["--noise", "-1"], "--noise scales must be finite numbers >= 0"),
        (["--noise", "nan"], "--noise scales must be finite numbers >= 0"),
        (["--out", str(tmp_path / "pi.txt")], "--out must name a .json file"),
        (["--generator", "bfs"], "maze generator must be one of"),
        (["--sizes", "8"], "odd integer"),
    ):
        args = [str(run_dir), "--sizes", "7", "--n", "2", "--iters", "2", "--out", str(tmp_path / "refused.json"), *argv]
        with pytest.raises(SystemExit) as exit_:
            main(args)
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and message in err and err.count("\n") == 1, (argv, err)
        assert not (tmp_path / "refused.json").exists()
    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path / "nothing"), "--sizes", "7"])
    assert exit_.value.code == 2 and "is not a directory" in capsys.readouterr().err


def test_the_command_on_a_one_dimensional_run_and_on_damaged_ones(tmp_path, capsys):
    import shutil
    from pathlib import Path

    reference = Path(__file__).resolve().parents[1] / "results/reference/checkpoints/prefix_sums/train32_test512/shared/20261127-001511-seed0"
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir, ignore=shutil.ignore_patterns("*.png"))
    before = sorted(p.name for p in run_dir.iterdir())
    main([str(run_dir), "--sizes", "32", "--n", "3", "--iters", "4", "--starts", "1", "--device", "cpu"])
    assert "acc@T" in capsys.readouterr().out and sorted(p.name for p in run_dir.iterdir()) == before  # nothing written
    for argv, message in ((["--generator", "prim"], "--generator needs a task with a generator option"),
                          (["--out", "/proc/1/pi.json"], "cannot write the path-independence results")):
        with pytest.raises(SystemExit) as exit_:
            main([str(run_dir), "--sizes", "32", "--n", "2", "--iters", "2", "--device", "cpu", *argv])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and message in err and err.count("\n") == 1, err
    (run_dir / "model.pt").write_bytes((run_dir / "model.pt").read_bytes()[:100])
    with pytest.raises(SystemExit) as exit_:
        main([str(run_dir), "--sizes", "32", "--n", "2", "--iters", "2", "--device", "cpu"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "model.pt" in err and err.count("\n") == 1, err
