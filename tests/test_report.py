"""Tables and plots over several runs, and redrawing a run's plots from disk alone."""

import json
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch

from benchmark.analysis import plots as plot, report
from benchmark.evaluation.extrapolation import evaluate
from tasks.fileio import write_text
from benchmark.infra.results import EvalResult, FoldReport, FoldResult, RunInfo, Timing
from benchmark.pipelines.algorithmic import run
from known_answer import EIGHT_BITS, TASK, KnownAnswerNet, bit_strings


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
        best = [EvalResult.read(p).summary[7].best for p in sweep.rglob(f"{model}/*/eval.json")]
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


def _known_run(root: Path, seed: int, hold: int, final_train_acc: float, metrics: list[tuple[int, float]],
               folded_hold: int | None = None) -> Path:
    """A run directory as a run leaves it, with the known-answer model's evaluation in it."""
    run_dir = root / "prefix_sums" / "train8_test6" / "stub" / f"seed{seed}"
    run_dir.mkdir(parents=True)
    test_sets = {8: bit_strings(*EIGHT_BITS), 6: bit_strings("000000", "111111")}
    before = evaluate(KnownAnswerNet(hold), TASK, test_sets, 7, 3, 2, torch.device("cpu"))
    info = RunInfo(task="prefix_sums", model="stub", parameters=1234, seed=seed, train_size=8, device="cpu",
                   final_train_acc=final_train_acc, seconds=Timing(generation=0.0, train=1.0, eval=0.0))
    replace(before, run=info).write(run_dir / "eval.json")
    write_text(run_dir / "metrics.jsonl", "".join(json.dumps(dict(step=s, train_acc=a)) + "\n" for s, a in metrics))
    if folded_hold is not None:
        after = evaluate(KnownAnswerNet(folded_hold), TASK, test_sets, 7, 3, 2, torch.device("cpu"))
        FoldResult.compare(before, after, "stub-folded", FoldReport(threshold=0.99, positions=1)).write(run_dir / "fold.json")
    return run_dir


def test_report_table_of_runs_with_known_answers(tmp_path):
    """Two seeds whose curves, training logs and fold are known: every figure of the table is too."""
    _known_run(tmp_path, 0, hold=5, final_train_acc=0.95, metrics=[(10, 0.5), (20, 0.92), (30, 0.995)], folded_hold=3)
    _known_run(tmp_path, 1, hold=3, final_train_acc=0.85, metrics=[(10, 0.4), (20, 0.85), (30, 0.91)])
    summary = report.report([tmp_path], tmp_path / "out")
    lines = (tmp_path / "out" / "summary.md").read_text().splitlines()
    # Size 8: at iteration 3 both 75%; best 100% and 75%; final 50% and 25% (sample std 17.7).
    # Size 6 ("000000" solved from iteration 1, "111111" from 7): 50% at 1..hold, then 0% until
    # iteration 7 solves the other one: 50% at 3, best 50% at iteration 1, final 50%.
    assert lines[2:] == [
        "| stub | 1,234 | 6 | 2 | 50.0 ± 0.0 | 50.0 ± 0.0 | 50.0 ± 0.0 | 90.0 ± 7.1 | 25 (2/2) / 30 (1/2) |",
        "| stub | 1,234 | 8 | 2 | 75.0 ± 0.0 | 87.5 ± 17.7 | 37.5 ± 17.7 | 90.0 ± 7.1 | 25 (2/2) / 30 (1/2) |",
    ]
    runs = pd.read_csv(tmp_path / "out" / "runs.csv").sort_values(["seed", "size"])
    assert runs["best_iter"].tolist() == [1, 5, 1, 3]
    assert runs["folded_best"].tolist()[:2] == [0.5, 0.75] and runs["folded_best"].iloc[2:].isna().all()
    assert summary.loc[summary["size"] == 8, "folded_best_mean"].item() == 0.75


def test_report_lists_incomplete_runs_and_leaves_them_out_of_the_tables(tmp_path, capsys):
    """A run directory still holding the INCOMPLETE marker (interrupted, diverged, crashed) is
    named on one line and not tabulated, even when it got as far as writing eval.json."""
    from benchmark.training.state import INCOMPLETE

    _known_run(tmp_path, 0, hold=5, final_train_acc=0.95, metrics=[(10, 0.995)])
    unfinished = _known_run(tmp_path, 1, hold=3, final_train_acc=0.85, metrics=[(10, 0.4)])
    write_text(unfinished / INCOMPLETE, "not finished\n")
    no_eval = tmp_path / "prefix_sums" / "train8_test6" / "stub" / "killed"
    no_eval.mkdir()
    write_text(no_eval / INCOMPLETE, "not finished\n")
    report.main([str(tmp_path), "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        f"incomplete run, not tabulated (interrupted, diverged or crashed; resume=<it> continues it): {d}"
        for d in sorted([unfinished, no_eval])]
    runs = pd.read_csv(tmp_path / "out" / "runs.csv")
    assert set(runs["seed"]) == {0} and "| stub |" in captured.out
    (tmp_path / "prefix_sums" / "train8_test6" / "stub" / "seed0" / "eval.json").unlink()  # now only incomplete runs
    with pytest.raises(ValueError, match=r"no finished run directories .* \(2 incomplete\)\."):
        report.report([tmp_path], tmp_path / "out")


def test_report_reproduces_the_committed_reference_tables(tmp_path, monkeypatch):
    """The reference tables are what `python -m benchmark.report` makes of the committed runs."""
    root = Path(__file__).resolve().parent.parent
    monkeypatch.chdir(root)  # runs.csv names each run by the path it was found under
    report.report([Path("results/reference/study_maze")], tmp_path)
    for name in ("runs.csv", "summary.csv", "summary.md"):
        assert (tmp_path / name).read_bytes() == (root / "results/reference/study_maze" / name).read_bytes(), name


# ---------------------------------------------------------------------------- classification runs
def _classification_run(root: Path, model: str, seed: int, tests: list[float], parameters: int, unshared: int,
                        images_per_s: float, folded: float | None = None) -> Path:
    """A classification run directory with known figures: test accuracy per epoch, and after folding."""
    from benchmark.infra.results import BankFold, BankFoldResult, ClassificationResult, ClassificationTiming, EpochScore

    run_dir = root / "digits" / "full" / model / f"seed{seed}"
    run_dir.mkdir(parents=True)
    curve = tuple(EpochScore(epoch=e + 1, test_acc=a) for e, a in enumerate(tests))
    ClassificationResult(task="digits", model=model, seed=seed, parameters=parameters, unshared_parameters=unshared,
                         curve=curve, images_per_s=images_per_s, seconds=ClassificationTiming(train=2.0, analysis=0.5, total=3.0),
                         device="cpu").write(run_dir / "eval.json")
    if folded is not None:
        bank = BankFold(threshold=0.99, layers=2, distinct=1, index=[0, 0], scales=[1.0, 0.5], parameters_before=10,
                        parameters_after=6, max_relative_error=0.0)
        BankFoldResult(threshold=0.99, banks={"stages.0.bank": bank}, parameters_before=parameters,
                       parameters_after=parameters - 4, accuracy_before=tests[-1], accuracy_after=folded).write(run_dir / "fold.json")
    return run_dir


def test_report_tables_classification_runs_beside_puzzle_runs(tmp_path, capsys):
    """Digits runs of wrn and swrn over two seeds with known figures, in a folder that holds a puzzle run too."""
    _classification_run(tmp_path, "wrn-16-2", 0, [0.5, 0.96], 1000, 1000, 800.0)
    _classification_run(tmp_path, "wrn-16-2", 1, [0.5, 0.98], 1000, 1000, 900.0)
    _classification_run(tmp_path, "swrn-16-2-1", 0, [0.25, 0.95], 400, 1000, 1000.0, folded=0.9)
    _classification_run(tmp_path, "swrn-16-2-1", 1, [0.25, 0.97], 400, 1000, 1200.0, folded=0.97)
    _known_run(tmp_path, 0, hold=5, final_train_acc=0.95, metrics=[(10, 0.5), (20, 0.92), (30, 0.995)])
    report.main([str(tmp_path), "--out", str(tmp_path / "out")])
    out = tmp_path / "out"

    # The puzzle run's tables hold the puzzle run alone.
    puzzle = pd.read_csv(out / "runs.csv")
    assert set(puzzle["model"]) == {"stub"} and len(puzzle) == 2  # two test sizes
    # Classification: mean ± sample std over the seeds; the errors are of the last epoch.
    lines = (out / "classification_summary.md").read_text().splitlines()
    assert lines[0].startswith("| task | model | params | saving | seeds | top-1 accuracy % | top-1 error % | images/s |")
    assert lines[2:] == [
        "| digits | swrn-16-2-1 | 400 | 60.0% | 2 | 96.00 ± 1.41 | 4.00 ± 1.41 | 1,100 ± 141 | 93.50 ± 4.95 (2/2) |",
        "| digits | wrn-16-2 | 1,000 | 0.0% | 2 | 97.00 ± 1.41 | 3.00 ± 1.41 | 850 ± 71 | - (0/2) |",
    ]
    runs = pd.read_csv(out / "classification_runs.csv").sort_values(["model", "seed"])
    assert runs["accuracy"].tolist() == [0.95, 0.97, 0.96, 0.98] and runs["epochs"].tolist() == [2, 2, 2, 2]
    assert runs["error"].tolist() == pytest.approx([0.05, 0.03, 0.04, 0.02])
    assert runs["fold_delta"].iloc[:2].tolist() == pytest.approx([-0.05, 0.0]) and runs["fold_delta"].iloc[2:].isna().all()
    assert runs["folded_parameters"].iloc[:2].tolist() == [396, 396] and runs["merged_layers"].iloc[:2].tolist() == [1, 1]
    stdout = capsys.readouterr().out
    assert "| stub | 1,234 |" in stdout and lines[2] in stdout  # both kinds' tables printed
    assert (out / "classification_curves.png").stat().st_size > 0 and (out / "curves.png").stat().st_size > 0


def test_report_of_classification_runs_alone_writes_no_puzzle_tables(tmp_path):
    _classification_run(tmp_path, "wrn-16-2", 0, [0.9], 1000, 1000, 800.0)
    assert report.report([tmp_path], tmp_path / "out") is None
    summary = report.report_classification([tmp_path], tmp_path / "out")
    assert summary[["model", "seeds", "accuracy_mean"]].values.tolist() == [["wrn-16-2", 1, 0.9]]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "classification_curves.png", "classification_runs.csv", "classification_summary.csv", "classification_summary.md"]


def test_report_reads_what_classification_runs_write(make_cfg, tmp_path):
    """Real digits runs (tiny): the table's figures are those of their eval.json and fold.json."""
    from benchmark.pipelines.classification import run as classify

    base = ["task=digits", "model.widen=1", "model.depth=16", "train.epochs=1", "size.n_train=128", "size.n_test=64",
            "progress=false"]
    results = {model: classify(make_cfg(*base, f"model={model}", tiny=False)) for model in ("wrn", "swrn")}
    runs_dir = tmp_path / "results"
    report.report_classification([runs_dir], tmp_path / "out")
    runs = pd.read_csv(tmp_path / "out" / "classification_runs.csv").set_index("model")
    for result in results.values():
        row = runs.loc[result.model]
        assert (row["parameters"], row["unshared_parameters"]) == (result.parameters, result.unshared_parameters)
        assert (row["accuracy"], row["images_per_s"]) == (pytest.approx(result.accuracy), pytest.approx(result.images_per_s))
    swrn = runs.loc["swrn-16-1-1"]
    fold = json.loads((Path(swrn["run"]) / "fold.json").read_text())
    assert swrn["folded_accuracy"] == pytest.approx(fold["accuracy_after"]) and pd.isna(runs.loc["wrn-16-1", "folded_accuracy"])

    # python -m benchmark.plot redraws a classification run's plots from its directory alone.
    run_dir = Path(swrn["run"])
    for png in run_dir.glob("*.png"):
        png.unlink()
    plot.main([str(run_dir)])
    assert sorted(p.name for p in run_dir.glob("*.png")) == ["lsm.png", "training.png"]


# ---------------------------------------------------------------------------- accuracy against size, overthinking
def test_overthinking_table_of_runs_with_known_answers(tmp_path):
    """Size 8: seed 0 peaks at 100% (iteration 5) and ends at 50%, seed 1 peaks at 75% (iteration 3)
    and ends at 25%: both drop 50 points. Size 6: 50% at iteration 1 and at the last (7): no drop."""
    _known_run(tmp_path, 0, hold=5, final_train_acc=0.95, metrics=[(10, 0.5)])
    _known_run(tmp_path, 1, hold=3, final_train_acc=0.85, metrics=[(10, 0.4)])
    report.report([tmp_path], tmp_path / "out")
    lines = (tmp_path / "out" / "overthinking.md").read_text().splitlines()
    assert lines[0] == ("| size | model | seeds | peak % = oracle (chosen on test) | peak iteration: median (min..max) | last iteration | at last % "
                        "| drop from peak (points) |")
    assert lines[2:] == [
        "| 6 | stub | 2 | 50.0 ± 0.0 | 1 (1..1) | 7 | 50.0 ± 0.0 | 0.0 ± 0.0 |",
        "| 8 | stub | 2 | 87.5 ± 17.7 | 4 (3..5) | 7 | 37.5 ± 17.7 | 50.0 ± 0.0 |",
    ]
    table = pd.read_csv(tmp_path / "out" / "overthinking.csv")
    assert table.columns.tolist() == ["size", "model", "seeds", "peak_mean", "peak_std", "peak_iter_median", "peak_iter_min",
                                      "peak_iter_max", "last_iter", "last_mean", "last_std", "drop_mean", "drop_std"]
    assert table.loc[table["size"] == 8, ["peak_mean", "peak_iter_min", "peak_iter_max", "last_mean", "drop_mean"]].values.tolist() == [
        [0.875, 3, 5, 0.375, 0.5]]


def test_size_summary_drop_is_the_fall_from_the_peak():
    from benchmark.infra.results import SizeSummary

    assert SizeSummary.of([0.2, 0.9, 0.6, 0.7], 2).drop == pytest.approx(0.2)
    assert SizeSummary.of([0.2, 0.5, 0.9], 2).drop == 0.0


def test_accuracy_against_size_at_three_budgets_with_known_answers(tmp_path):
    """Each run at its best iteration, at the training depth (3) and at eval.iters (7), per size."""
    _known_run(tmp_path, 0, hold=5, final_train_acc=0.95, metrics=[(10, 0.5)])
    _known_run(tmp_path, 1, hold=3, final_train_acc=0.85, metrics=[(10, 0.4)])
    run_dirs = report.find_runs([tmp_path])
    frame = report.budget_frame(run_dirs)
    cells = frame.pivot_table(index=["budget", "seed"], columns="size", values="accuracy")
    assert cells.to_dict("index") == {
        ("at eval.iters (7 iterations)", 0): {6: 0.5, 8: 0.5}, ("at eval.iters (7 iterations)", 1): {6: 0.5, 8: 0.25},
        (report.ORACLE_BUDGET, 0): {6: 0.5, 8: 1.0}, (report.ORACLE_BUDGET, 1): {6: 0.5, 8: 0.75},
        ("at the training depth (3 iterations)", 0): {6: 0.5, 8: 0.75}, ("at the training depth (3 iterations)", 1): {6: 0.5, 8: 0.75},
    }
    best = frame[frame["budget"] == report.ORACLE_BUDGET].sort_values(["seed", "size"])
    assert best["iterations"].tolist() == [1, 5, 1, 3]

    # The figure: one panel per budget, in that order; one line per model through its means over seeds.
    other = frame.assign(model="other", accuracy=frame["accuracy"] / 2)
    fig = plot.accuracy_vs_size_figure(pd.concat([frame, other], ignore_index=True))
    assert [ax.get_title() for ax in fig.axes] == [report.ORACLE_BUDGET, "at the training depth (3 iterations)",
                                                  "at eval.iters (7 iterations)"]
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["6", "8\n(training)"]
    means = [line for line in fig.axes[0].lines if len(line.get_ydata()) == 2]  # the lines through the means (bars: more points)
    assert [list(line.get_ydata()) for line in means] == [[0.25, 0.4375], [0.5, 0.875]]  # models sorted: other, stub
    assert means[0].get_color() != means[1].get_color()
    assert [t.get_text() for t in fig.axes[-1].get_legend().get_texts()] == ["other", "stub"]
    report.report([tmp_path], tmp_path / "out")
    assert (tmp_path / "out" / "accuracy_vs_size.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
