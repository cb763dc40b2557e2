"""The committed reference checkpoints (results/reference/checkpoints/): each loads, runs, and
reproduces the spot check committed beside it (``python -m benchmark.evaluate RUN --n 16 ...``,
the run's own first 16 test samples), exactly: the same per-iteration accuracy.

Spot checks are scored in float32 (runs trained in bf16 carry theirs as ``..._n16_fp32.json``,
written with ``--precision fp32``), because float32 sums do not depend on whether the CPU has
native bf16, so the check is exact on any machine."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from benchmark.config.schema import data_seeds
from benchmark.evaluation.extrapolation import evaluate
from benchmark.evaluation.rescore import load_run
from benchmark.infra.results import EvalResult, read_eval

CHECKPOINTS = Path(__file__).resolve().parents[1] / "results" / "reference" / "checkpoints"
RUNS = sorted(path.parent for path in CHECKPOINTS.rglob("model.pt"))


def spot_checks(run_dir: Path) -> list[Path]:
    """The float32 spot check: named without a suffix for fp32 runs, ``_fp32`` for bf16 runs."""
    return [p for p in run_dir.glob("eval_sizes*_n16*.json") if p.stem.endswith(("_n16", "_n16_fp32"))]


def _name(run_dir: Path) -> str:
    return "/".join(run_dir.relative_to(CHECKPOINTS).parts[:-1])


def test_the_reference_checkpoints_are_committed():
    # At least the main command's model; each run directory also carries its spot check.
    assert any(_name(r) == "maze/train9_test15/shared" for r in RUNS)
    for run_dir in RUNS:
        assert len(spot_checks(run_dir)) == 1, run_dir


@pytest.mark.parametrize("run_dir", RUNS, ids=_name)
def test_a_reference_checkpoint_reproduces_its_committed_spot_check(run_dir):
    (spot_path,) = spot_checks(run_dir)
    spot = EvalResult.read(spot_path)
    own = read_eval(run_dir / "eval.json")  # the run's own evaluation loads too
    assert isinstance(own, EvalResult) and own.run is not None and spot.train_iters == own.train_iters
    model, ckpt, cfg, device = load_run(run_dir, "cpu", "fp32")
    task = ckpt.task
    test_sets = {size: task.dataset(size, 16, seed=data_seeds(cfg["seed"])[1]) for size in spot.sizes}
    with torch.no_grad():
        again = evaluate(model, task, test_sets, spot.iterations, spot.train_iters, 16, device)
    assert again.accuracy == spot.accuracy
