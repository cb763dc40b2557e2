"""Tables and comparison plots over many runs (a sweep), read from their run directories.

    python -m benchmark.report results/reference/study_maze [--out DIR]

Finds every finished run directory below the given folders (a folder holding eval.json and no
INCOMPLETE marker), groups the runs by model, and writes to ``--out`` (default: the first folder),
for puzzle runs:

    runs.csv          one row per run and test size: accuracy at the training depth, best, final,
                      steps to 90% and 99% training accuracy, parameters, folded accuracy
    summary.csv/.md   mean and standard deviation over seeds per model and test size
    curves.png        mean extrapolation curve per model (band: min..max over seeds), per test size
    accuracy_vs_size.png  accuracy against test size per model, at three budgets: each run's best
                      iteration, the training depth and the last iteration scored (eval.iters)
    overthinking.csv/.md  per test size and model: the peak accuracy, its iteration, the accuracy
                      at the last iteration and the drop from the peak (mean over seeds)

and for classification runs (``python -m benchmark task=digits|cifar10|cifar100``), in files of
their own, whatever else the folders hold:

    classification_runs.csv         one row per run: task, model, seed, parameters, top-1 accuracy
                                     and error, images/s, accuracy after folding its banks
    classification_summary.csv/.md  mean and standard deviation over seeds per task and model
    classification_curves.png        top-1 test error per epoch per model (band: min..max over seeds)

Run directories that still hold the INCOMPLETE marker (interrupted, diverged or crashed; see
``benchmark.training.state``) are left out of the tables and listed, one line each.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from tasks.fileio import check_writable_dir, write_atomic, write_text  # noqa: E402
from benchmark.config.schema import CommandParser, ConfigError, exit_on_user_error  # noqa: E402
from benchmark.analysis.plots import plot_accuracy_vs_size, read_metrics, save_figure  # noqa: E402
from benchmark.infra.results import (  # noqa: E402
    BankFoldResult,
    ClassificationResult,
    EvalResult,
    FoldResult,
    ORACLE_LABEL,
    ResultFormatError,
    RunInfo,
)
from benchmark.analysis.formatting import percent_mean_sd, reached  # noqa: E402
from benchmark.infra.rundir import RunDir, finished_runs, incomplete_runs as incomplete_run_dirs  # noqa: E402


def find_runs(folders: list[Path]) -> list[Path]:
    """The finished run directories below ``folders``: eval.json written, no INCOMPLETE marker."""
    return [run.path for run in finished_runs(folders)]


def incomplete_runs(folders: list[Path]) -> list[Path]:
    """The run directories below ``folders`` that never finished (their INCOMPLETE marker is still there)."""
    return [run.path for run in incomplete_run_dirs(folders)]


def is_classification_run(run_dir: Path) -> bool:
    """Whether ``run_dir``'s eval.json is a classification run's (else a puzzle run's; either is read in full)."""
    return RunDir(run_dir).is_classification()


def steps_to_accuracy(metrics: list[dict], threshold: float = 0.99) -> int | None:
    """The first logged step whose training accuracy reaches ``threshold`` (None: never)."""
    hit = reached(metrics, threshold, key="train_acc")
    return None if hit is None else hit["step"]


def read_run(run_dir: Path) -> tuple[EvalResult, RunInfo]:
    """A run directory's evaluation and the run information its eval.json must carry."""
    result = EvalResult.read(RunDir(run_dir).eval)
    if result.run is None:
        raise ResultFormatError(f"{RunDir(run_dir).eval} has no run information (task, model, seed): it is not a run's own eval.json.")
    return result, result.run


def run_rows(run_dir: Path) -> list[dict]:
    """One row per test size of one run."""
    result, info = read_run(run_dir)
    fold_path = RunDir(run_dir).fold
    folding = FoldResult.read(fold_path) if fold_path.exists() else None
    folded = folding.evaluation.summary if folding else {}
    metrics = read_metrics(run_dir)
    steps = steps_to_accuracy(metrics)
    steps_90 = steps_to_accuracy(metrics, 0.9)
    rows = []
    for size, s in result.summary.items():
        row = dict(
            run=str(run_dir), task=info.task, model=info.model, seed=info.seed, parameters=info.parameters, size=size,
            train_size=info.train_size, at_train_depth=s.at_train_depth, best=s.best, best_iter=s.best_iter, final=s.final,
            final_iter=s.final_iter, steps_to_99=steps, steps_to_90=steps_90, final_train_acc=info.final_train_acc,
            train_seconds=info.seconds.train,
        )
        if s.chosen_iter is not None:  # protocol 1: the iteration chosen on validation, the TEST accuracy there
            row.update(chosen=s.chosen, chosen_iter=s.chosen_iter)
        if size in folded:
            row.update(folded_best=folded[size].best, folded_final=folded[size].final,
                       folded_loops=folding.report.num_loops, folded_parameters=folding.report.parameters_after)
        rows.append(row)
    return rows


def curves_frame(run_dirs: list[Path]) -> pd.DataFrame:
    """Long table (model, seed, size, iteration, accuracy) of every run's accuracy curves."""
    rows = []
    for run_dir in run_dirs:
        result, info = read_run(run_dir)
        for size, accs in result.accuracy.items():
            rows += [dict(model=info.model, seed=info.seed, size=size, iteration=t + 1, accuracy=a) for t, a in enumerate(accs)]
    return pd.DataFrame(rows)


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    metrics = ["at_train_depth", "best", "final", "final_train_acc", "steps_to_90", "steps_to_99"] + [
        c for c in ("folded_best", "chosen") if c in runs]
    grouped = runs.groupby(["model", "size"])
    summary = grouped[metrics].agg(["mean", "std"])
    summary.columns = [f"{m}_{stat}" for m, stat in summary.columns]
    summary["seeds"] = grouped["seed"].nunique()
    summary["reached_90"] = grouped["steps_to_90"].apply(lambda s: int(s.notna().sum()))
    summary["reached_99"] = grouped["steps_to_99"].apply(lambda s: int(s.notna().sum()))
    summary["parameters"] = grouped["parameters"].first()
    return summary.reset_index()


def markdown_table(summary: pd.DataFrame) -> str:
    pct = percent_mean_sd

    def steps(mean: float, reached: int, seeds: int) -> str:
        return f"- (0/{seeds})" if pd.isna(mean) else f"{mean:.0f} ({reached}/{seeds})"

    # Protocol 1 runs (validation data) add the TEST accuracy at the iteration chosen on validation;
    # "best" is the oracle, chosen on the test set itself, and labelled so.
    validated = "chosen_mean" in summary

    def chosen(r: Any) -> str:
        return f"{pct(r.chosen_mean, r.chosen_std)} | " if not pd.isna(r.chosen_mean) else "- (no validation data) | "

    lines = ["| model | params | size | seeds | @train depth % | " + ("val-chosen % (test acc.) | " if validated else "")
             + f"best % = {ORACLE_LABEL} | final % | final train acc % "
             "| steps to 90% / 99% train (runs reaching it) |", "|---|---|---|---|---|" + ("---|" if validated else "") + "---|---|---|---|"]
    for r in summary.itertuples():
        lines.append(f"| {r.model} | {r.parameters:,} | {r.size} | {r.seeds} | {pct(r.at_train_depth_mean, r.at_train_depth_std)} | "
                     + (chosen(r) if validated else "") +
                     f"{pct(r.best_mean, r.best_std)} | {pct(r.final_mean, r.final_std)} | "
                     f"{pct(r.final_train_acc_mean, r.final_train_acc_std)} | "
                     f"{steps(r.steps_to_90_mean, r.reached_90, r.seeds)} / {steps(r.steps_to_99_mean, r.reached_99, r.seeds)} |")
    return "\n".join(lines)


def plot_curves(frame: pd.DataFrame, path: Path, train_iters: int | None = None) -> Path:
    sizes = sorted(frame["size"].unique())
    fig, axes = plt.subplots(1, len(sizes), figsize=(4.5 * len(sizes), 3.8), squeeze=False)
    for ax, size in zip(axes[0], sizes):
        sns.lineplot(data=frame[frame["size"] == size], x="iteration", y="accuracy", hue="model", errorbar=("pi", 100), ax=ax)
        if train_iters:
            ax.axvline(train_iters, color="grey", linestyle="--", linewidth=1)
        ax.set(title=f"test size {size}", ylim=(-0.02, 1.02), xlabel="test-time iterations", ylabel="exact-match accuracy")
    # One legend, outside the last panel: with many models, a legend inside covers the curves.
    for ax in axes[0][:-1]:
        ax.get_legend().remove()
    sns.move_legend(axes[0][-1], "upper left", bbox_to_anchor=(1.02, 1), title="model (band: min..max)")
    return save_figure(fig, path)


ORACLE_BUDGET = f"at its best iteration, {ORACLE_LABEL}"
CHOSEN_BUDGET = "at the iteration chosen on validation"


def budget_frame(run_dirs: list[Path]) -> pd.DataFrame:
    """Long table (model, seed, size, train_size, budget, iterations, accuracy): every run's accuracy
    per test size at three budgets: its best iteration (the oracle, chosen on test), the training
    depth and the last iteration scored (eval.iters); runs with validation data (protocol 1) also
    at the iteration chosen on validation, first. A fixed budget's label names its iteration
    count when all runs share it."""
    rows = []
    for run_dir in run_dirs:
        result, info = read_run(run_dir)
        for size, s in result.summary.items():
            common = dict(model=info.model, seed=info.seed, size=size, train_size=info.train_size)
            if s.chosen_iter is not None:
                rows.append(dict(common, budget=CHOSEN_BUDGET, iterations=s.chosen_iter, accuracy=s.chosen))
            rows += [dict(common, budget=ORACLE_BUDGET, iterations=s.best_iter, accuracy=s.best),
                     dict(common, budget="at the training depth", iterations=s.train_depth, accuracy=s.at_train_depth),
                     dict(common, budget="at eval.iters", iterations=s.final_iter, accuracy=s.final)]
    frame = pd.DataFrame(rows)
    for budget in ("at the training depth", "at eval.iters"):
        counts = frame.loc[frame["budget"] == budget, "iterations"].unique()
        if len(counts) == 1:
            frame.loc[frame["budget"] == budget, "budget"] = f"{budget} ({counts[0]} iterations)"
    return frame


def overthinking_table(run_dirs: list[Path]) -> pd.DataFrame:
    """Per test size and model: the peak accuracy (mean, std over seeds), its iteration (median,
    min, max), the last iteration scored, the accuracy there and the drop from the peak
    (``SizeSummary.drop``; mean, std). A drop above 0: the model overthinks at that size."""
    frame = pd.DataFrame([dict(size=size, model=info.model, seed=info.seed, peak=s.best, peak_iter=s.best_iter,
                               last_iter=s.final_iter, last=s.final, drop=s.drop)
                          for result, info in map(read_run, run_dirs) for size, s in result.summary.items()])
    grouped = frame.groupby(["size", "model"])
    table = grouped[["peak", "last", "drop"]].agg(["mean", "std"])
    table.columns = [f"{m}_{stat}" for m, stat in table.columns]
    table = table.assign(seeds=grouped["seed"].nunique(), peak_iter_median=grouped["peak_iter"].median(),
                         peak_iter_min=grouped["peak_iter"].min(), peak_iter_max=grouped["peak_iter"].max(),
                         last_iter=grouped["last_iter"].max())
    return table.reset_index()[["size", "model", "seeds", "peak_mean", "peak_std", "peak_iter_median", "peak_iter_min",
                                "peak_iter_max", "last_iter", "last_mean", "last_std", "drop_mean", "drop_std"]]


def overthinking_markdown(table: pd.DataFrame) -> str:
    pct = percent_mean_sd

    lines = [f"| size | model | seeds | peak % = {ORACLE_LABEL} | peak iteration: median (min..max) | last iteration | at last % "
             "| drop from peak (points) |", "|---|---|---|---|---|---|---|---|"]
    for r in table.itertuples():
        lines.append(f"| {r.size} | {r.model} | {r.seeds} | {pct(r.peak_mean, r.peak_std)} | {r.peak_iter_median:g} "
                     f"({r.peak_iter_min}..{r.peak_iter_max}) | {r.last_iter} | {pct(r.last_mean, r.last_std)} | "
                     f"{pct(r.drop_mean, r.drop_std)} |")
    return "\n".join(lines)


def report(folders: list[Path], out: Path) -> pd.DataFrame | None:
    """Write the puzzle runs' tables and plot to ``out``; returns their summary (None: only classification
    runs, which ``report_classification`` tabulates)."""
    run_dirs = find_runs(folders)
    if not run_dirs:
        unfinished = len(incomplete_runs(folders))
        raise ValueError(f"no finished run directories (folders with eval.json) under {', '.join(map(str, folders))}"
                         + (f" ({unfinished} incomplete)." if unfinished else "."))
    run_dirs = [run_dir for run_dir in run_dirs if not is_classification_run(run_dir)]
    if not run_dirs:
        return None
    runs = pd.DataFrame([row for run_dir in run_dirs for row in run_rows(run_dir)])
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "runs.csv", lambda handle: runs.to_csv(handle, index=False))
    summary = summarise(runs)
    write_atomic(out / "summary.csv", lambda handle: summary.to_csv(handle, index=False))
    write_text(out / "summary.md", markdown_table(summary) + "\n")
    train_iters = EvalResult.read(RunDir(run_dirs[0]).eval).train_iters
    plot_curves(curves_frame(run_dirs), out / "curves.png", train_iters)
    plot_accuracy_vs_size(budget_frame(run_dirs), out / "accuracy_vs_size.png")
    overthinking = overthinking_table(run_dirs)
    write_atomic(out / "overthinking.csv", lambda handle: overthinking.to_csv(handle, index=False))
    write_text(out / "overthinking.md", overthinking_markdown(overthinking) + "\n")
    return summary


# ---------------------------------------------------------------------------- classification runs
def classification_row(run_dir: Path) -> dict:
    """One classification run's row: its eval.json, and its fold.json when its banks were folded."""
    result = ClassificationResult.read(RunDir(run_dir).eval)
    row = dict(run=str(run_dir), task=result.task, model=result.model, seed=result.seed, parameters=result.parameters,
               unshared_parameters=result.unshared_parameters, epochs=len(result.curve), accuracy=result.accuracy,
               error=result.error, images_per_s=result.images_per_s, train_seconds=result.seconds.train)
    fold_path = RunDir(run_dir).fold
    if fold_path.exists():
        fold = BankFoldResult.read(fold_path)
        row.update(folded_accuracy=fold.accuracy_after, fold_delta=fold.delta, folded_parameters=fold.parameters_after,
                   merged_layers=fold.merged_layers)
    return row


FOLD_COLUMNS = ["folded_accuracy", "fold_delta", "folded_parameters", "merged_layers"]  # NaN: nothing to fold


def summarise_classification(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and sample standard deviation over seeds per task and model; ``folded``: runs that were folded."""
    grouped = runs.groupby(["task", "model"])
    summary = grouped[["accuracy", "error", "images_per_s", "folded_accuracy", "fold_delta"]].agg(["mean", "std"])
    summary.columns = [f"{m}_{stat}" for m, stat in summary.columns]
    summary["seeds"] = grouped["seed"].nunique()
    summary["folded"] = grouped["folded_accuracy"].count()
    summary["parameters"] = grouped["parameters"].first()
    summary["unshared_parameters"] = grouped["unshared_parameters"].first()
    summary["saving"] = 1.0 - summary["parameters"] / summary["unshared_parameters"]
    return summary.reset_index()


def classification_markdown(summary: pd.DataFrame) -> str:
    def pct(mean: float, std: float) -> str:
        return percent_mean_sd(mean, std, 2)

    lines = ["| task | model | params | saving | seeds | top-1 accuracy % | top-1 error % | images/s "
             "| accuracy after folding % (runs folded) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in summary.itertuples():
        saving = "-" if pd.isna(r.saving) else f"{100 * r.saving:.1f}%"
        speed = f"{r.images_per_s_mean:,.0f} ± {0 if pd.isna(r.images_per_s_std) else r.images_per_s_std:,.0f}"
        lines.append(f"| {r.task} | {r.model} | {r.parameters:,} | {saving} | {r.seeds} | {pct(r.accuracy_mean, r.accuracy_std)} | "
                     f"{pct(r.error_mean, r.error_std)} | {speed} | {pct(r.folded_accuracy_mean, r.folded_accuracy_std)} "
                     f"({r.folded}/{r.seeds}) |")
    return "\n".join(lines)


def plot_classification_curves(run_dirs: list[Path], path: Path) -> Path:
    """Top-1 test error against epochs, one line per model (band: min..max over seeds), one panel per task."""
    frame = pd.DataFrame([dict(task=result.task, model=result.model, seed=result.seed, epoch=score.epoch,
                               error=1.0 - score.test_acc)
                          for result in (ClassificationResult.read(RunDir(d).eval) for d in run_dirs) for score in result.curve])
    tasks = sorted(frame["task"].unique())
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.8), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        sns.lineplot(data=frame[frame["task"] == task], x="epoch", y="error", hue="model", errorbar=("pi", 100), ax=ax)
        ax.set(title=task, ylim=(0, None), ylabel="top-1 test error")
    return save_figure(fig, path)


def report_classification(folders: list[Path], out: Path) -> pd.DataFrame | None:
    """Write the classification runs' tables and plot to ``out``; returns their summary (None: no such runs)."""
    run_dirs = [run_dir for run_dir in find_runs(folders) if is_classification_run(run_dir)]
    if not run_dirs:
        return None
    runs = pd.DataFrame([classification_row(run_dir) for run_dir in run_dirs]).reindex(
        columns=["run", "task", "model", "seed", "parameters", "unshared_parameters", "epochs", "accuracy", "error",
                 "images_per_s", "train_seconds", *FOLD_COLUMNS]).astype(
        {c: "Int64" for c in ("unshared_parameters", "folded_parameters", "merged_layers")})  # counts stay integers beside NaN
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "classification_runs.csv", lambda handle: runs.to_csv(handle, index=False))
    summary = summarise_classification(runs)
    write_atomic(out / "classification_summary.csv", lambda handle: summary.to_csv(handle, index=False))
    write_text(out / "classification_summary.md", classification_markdown(summary) + "\n")
    plot_classification_curves(run_dirs, out / "classification_curves.png")
    return summary


def check_runs(folders: list[Path]) -> None:
    """Read and check every file of every finished run the report reads (eval.json, fold.json,
    metrics.jsonl), so that a damaged one is one sentence before any table or plot is written."""
    for run_dir in find_runs(folders):
        if is_classification_run(run_dir):
            classification_row(run_dir)
        else:
            run_rows(run_dir)


def run(argv: list[str] | None = None) -> None:
    """Parse, check every run and the output folder, then write the tables and plots. Raises
    ``ConfigError`` (or another ``USER_ERRORS``) before anything is written."""
    parser = CommandParser(prog="python -m benchmark.report", description="Tabulate and plot a set of benchmark runs.")
    parser.add_argument("folders", nargs="+", type=Path, help="folders searched recursively for run directories")
    parser.add_argument("--out", type=Path, help="where to write the tables and plots (default: the first folder)")
    args = parser.parse_args(argv)
    for run_dir in incomplete_runs(args.folders):
        print(f"incomplete run, not tabulated (interrupted, diverged or crashed; resume=<it> continues it): {run_dir}",
              file=sys.stderr)
    out = args.out or args.folders[0]
    try:
        check_runs(args.folders)
    except ResultFormatError:
        raise
    except ValueError as err:  # a table of damaged numbers (pandas): the files, not the program
        raise ResultFormatError(str(err).splitlines()[0] if str(err) else type(err).__name__) from err
    check_writable_dir(out, "the report")
    try:
        summary = report(args.folders, out)
        classification = report_classification(args.folders, out)
    except ResultFormatError:
        raise
    except ValueError as err:
        raise ConfigError(str(err)) from err
    if summary is not None:
        print(markdown_table(summary))
        print("\noverthinking (peak accuracy against the last iteration scored):\n" + (out / "overthinking.md").read_text(), end="")
    if classification is not None:
        print(classification_markdown(classification))


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: user errors (a damaged run file, an output folder that cannot be
    written, no runs) end with one sentence on stderr and exit status 2, before anything is written."""
    exit_on_user_error(run, argv)


if __name__ == "__main__":
    main()
