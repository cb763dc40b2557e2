"""Tables and comparison plots over many runs (a sweep), read from their run directories.

    python -m benchmark.report results/reference/sharing_maze [--out DIR]

Finds every finished run directory below the given folders (a folder holding eval.json and no
INCOMPLETE marker), groups the runs by model, and writes to ``--out`` (default: the first folder):

    runs.csv          one row per run and test size: accuracy at the training depth, best, final,
                      steps to 90% and 99% training accuracy, parameters, folded accuracy
    summary.csv/.md   mean and standard deviation over seeds per model and test size
    curves.png        mean extrapolation curve per model (band: min..max over seeds), per test size

Run directories that still hold the INCOMPLETE marker (interrupted, diverged or crashed; see
``benchmark.train_state``) are left out of the tables and listed, one line each.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from benchmark.fileio import write_atomic, write_text  # noqa: E402
from benchmark.plot import read_metrics, save_figure  # noqa: E402
from benchmark.results import EvalResult, FoldResult, ResultFormatError, RunInfo  # noqa: E402
from benchmark.train_state import INCOMPLETE  # noqa: E402


def find_runs(folders: list[Path]) -> list[Path]:
    """The finished run directories below ``folders``: eval.json written, no INCOMPLETE marker."""
    return sorted({p.parent for folder in folders for p in Path(folder).rglob("eval.json")} - set(incomplete_runs(folders)))


def incomplete_runs(folders: list[Path]) -> list[Path]:
    """The run directories below ``folders`` that never finished (their INCOMPLETE marker is still there)."""
    return sorted({p.parent for folder in folders for p in Path(folder).rglob(INCOMPLETE)})


def steps_to_accuracy(metrics: list[dict], threshold: float = 0.99) -> int | None:
    """The first logged step whose training accuracy reaches ``threshold`` (None: never)."""
    return next((m["step"] for m in metrics if m.get("train_acc", 0.0) >= threshold), None)


def read_run(run_dir: Path) -> tuple[EvalResult, RunInfo]:
    """A run directory's evaluation and the run information its eval.json must carry."""
    result = EvalResult.read(run_dir / "eval.json")
    if result.run is None:
        raise ResultFormatError(f"{run_dir / 'eval.json'} has no run information (task, model, seed): it is not a run's own eval.json.")
    return result, result.run


def run_rows(run_dir: Path) -> list[dict]:
    """One row per test size of one run."""
    result, info = read_run(run_dir)
    fold_path = run_dir / "fold.json"
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
        c for c in ("folded_best",) if c in runs]
    grouped = runs.groupby(["model", "size"])
    summary = grouped[metrics].agg(["mean", "std"])
    summary.columns = [f"{m}_{stat}" for m, stat in summary.columns]
    summary["seeds"] = grouped["seed"].nunique()
    summary["reached_90"] = grouped["steps_to_90"].apply(lambda s: int(s.notna().sum()))
    summary["reached_99"] = grouped["steps_to_99"].apply(lambda s: int(s.notna().sum()))
    summary["parameters"] = grouped["parameters"].first()
    return summary.reset_index()


def markdown_table(summary: pd.DataFrame) -> str:
    def pct(mean: float, std: float) -> str:
        return "-" if pd.isna(mean) else f"{100 * mean:.1f} ± {0 if pd.isna(std) else 100 * std:.1f}"

    def steps(mean: float, reached: int, seeds: int) -> str:
        return f"- (0/{seeds})" if pd.isna(mean) else f"{mean:.0f} ({reached}/{seeds})"

    lines = ["| model | params | size | seeds | @train depth % | best % | final % | final train acc % "
             "| steps to 90% / 99% train (runs reaching it) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in summary.itertuples():
        lines.append(f"| {r.model} | {r.parameters:,} | {r.size} | {r.seeds} | {pct(r.at_train_depth_mean, r.at_train_depth_std)} | "
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
    return save_figure(fig, path)


def report(folders: list[Path], out: Path) -> pd.DataFrame:
    run_dirs = find_runs(folders)
    if not run_dirs:
        unfinished = len(incomplete_runs(folders))
        raise ValueError(f"no finished run directories (folders with eval.json) under {', '.join(map(str, folders))}"
                         + (f" ({unfinished} incomplete)." if unfinished else "."))
    runs = pd.DataFrame([row for run_dir in run_dirs for row in run_rows(run_dir)])
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "runs.csv", lambda handle: runs.to_csv(handle, index=False))
    summary = summarise(runs)
    write_atomic(out / "summary.csv", lambda handle: summary.to_csv(handle, index=False))
    write_text(out / "summary.md", markdown_table(summary) + "\n")
    train_iters = EvalResult.read(run_dirs[0] / "eval.json").train_iters
    plot_curves(curves_frame(run_dirs), out / "curves.png", train_iters)
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Tabulate and plot a set of benchmark runs.")
    parser.add_argument("folders", nargs="+", type=Path, help="folders searched recursively for run directories")
    parser.add_argument("--out", type=Path, help="where to write the tables and plots (default: the first folder)")
    args = parser.parse_args(argv)
    for run_dir in incomplete_runs(args.folders):
        print(f"incomplete run, not tabulated (interrupted, diverged or crashed; resume=<it> continues it): {run_dir}",
              file=sys.stderr)
    try:
        summary = report(args.folders, args.out or args.folders[0])
    except ValueError as err:
        parser.error(str(err))
    print(markdown_table(summary))


if __name__ == "__main__":
    main()
