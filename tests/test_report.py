"""Tables and plots over several runs, and redrawing a run's plots from disk alone."""

import json

import pandas as pd
import pytest

from benchmark import plot, report
from benchmark.run import run


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Two seeds of two models, tiny, the way a multirun would leave them."""
    from hydra import compose, initialize_config_module

    from conftest import TINY

    root = tmp_path_factory.mktemp("sweep")
    with initialize_config_module(config_module="configs", version_base="1.3"):
        for variant in ("recurrent", "shared_k1"):
            for seed in (0, 1):
                cfg = compose("config", overrides=[f"results_dir={root}", f"cache_dir={root / 'cache'}", *TINY,
                                                   f"model={variant}", f"seed={seed}", "size.train=5", "size.test=[7]",
                                                   "model.width=8"])
                run(cfg)
    return root


def test_report_tabulates_every_run_and_summarises_over_seeds(sweep, tmp_path):
    summary = report.report([sweep], tmp_path)
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert len(runs) == 2 * 2 * 2  # models x seeds x sizes (the training size is tested too)
    assert set(summary["model"]) == {"recurrent", "shared_k1"} and (summary["seeds"] == 2).all()
    # The summary is the mean over seeds of what the runs' eval.json files say.
    for model in ("recurrent", "shared_k1"):
        best = [json.loads(p.read_text())["summary"]["7"]["best"] for p in sweep.rglob(f"{model}/*/eval.json")]
        row = summary[(summary["model"] == model) & (summary["size"] == 7)].iloc[0]
        assert row["best_mean"] == pytest.approx(sum(best) / len(best))
    assert "folded_best" in runs  # the shared model was folded
    assert (tmp_path / "curves.png").stat().st_size > 0 and "| model |" in (tmp_path / "summary.md").read_text()


def test_steps_to_accuracy():
    metrics = [dict(step=10, train_acc=0.5), dict(step=20, train_acc=0.995), dict(step=30, train_acc=1.0)]
    assert report.steps_to_accuracy(metrics) == 20
    assert report.steps_to_accuracy(metrics[:1]) is None


def test_plots_are_redrawn_from_a_run_directory_alone(sweep, capsys):
    run_dir = next(sweep.rglob("shared_k1/*/eval.json")).parent
    for png in run_dir.glob("*.png"):
        png.unlink()
    plot.main([str(run_dir)])
    drawn = {p.name for p in run_dir.glob("*.png")}
    assert {"extrapolation.png", "training.png", "lsm.png", "extrapolation_folded.png"} <= drawn


def test_report_refuses_a_folder_without_runs(tmp_path):
    with pytest.raises(SystemExit):
        report.main([str(tmp_path)])
