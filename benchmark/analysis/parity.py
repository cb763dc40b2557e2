"""The parity table: shared Wide ResNets against unshared ones, gathered from classification runs.

    python -m benchmark.parity RESULTS_DIR [--out DIR]

Reads every classification run under RESULTS_DIR (its eval.json and fold.json, through
``benchmark.infra.results.ClassificationResult`` and ``BankFoldResult``; puzzle runs are skipped) and writes to DIR (default RESULTS_DIR):

    parity.md   model | parameters | saving | CIFAR-10 error | CIFAR-100 error | digits error | fold
    parity.csv  the same numbers, unformatted (errors as fractions)
    parity.png  top-1 error against parameters, one point per run, one colour per task

One row per model name (``wrn-28-10``, ``swrn-28-10-1``, ...). Errors are the mean and sample
standard deviation over the row's runs (seeds) of each task, in percent. ``parameters`` is the
count of the row's run on the first task present in the order cifar10, cifar100, digits (the
paper quotes 10-class counts; digits images have one channel). ``saving`` is 1 - parameters /
parameters of the unshared network of the same depth and width on the same task. ``fold`` is
the mean test-accuracy change, in points, when the row's runs had their banks folded.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tasks.fileio import write_text
from benchmark.analysis.plots import save_figure
from benchmark.infra.results import BankFoldResult, ClassificationResult, ResultFormatError, read_eval
from benchmark.infra.rundir import RunDir
from benchmark.analysis.settings import run_settings

TASK_LABELS = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "digits": "digits"}  # the paper's columns, then digits


def gather(results_dir: str | Path) -> pd.DataFrame:
    """One row per classification run under ``results_dir``: task, model, seed, parameters, error, fold delta."""
    rows = []
    for path in sorted(Path(results_dir).rglob(RunDir.EVAL)):
        result = read_eval(path)
        if not isinstance(result, ClassificationResult):  # a puzzle run
            continue
        fold_path = RunDir(path.parent).fold
        fold = BankFoldResult.read(fold_path) if fold_path.exists() else None
        rows.append(dict(task=result.task, model=result.model, seed=result.seed, parameters=result.parameters,
                         unshared_parameters=result.unshared_parameters, error=result.error,
                         fold_delta=np.nan if fold is None else fold.delta, run_dir=str(path.parent),
                         setting=run_setting(RunDir(path.parent))))
    runs = pd.DataFrame(rows, columns=["task", "model", "seed", "parameters", "unshared_parameters", "error", "fold_delta",
                                       "run_dir", "setting"])
    return label_settings(runs)


def run_setting(run: RunDir) -> dict[str, Any]:
    """The settings of a run that its error depends on (``train.lr``, ``size.n_train``,
    ``precision``, ...: ``benchmark.analysis.settings.run_settings`` of its size and train groups)."""
    return run_settings(run, ("size", "train"))


def label_settings(runs: pd.DataFrame) -> pd.DataFrame:
    """Give each run its table row: the model's name, or, where runs of one model and task differ
    in their settings (a user's new runs beside the reference runs), the name with what differs,
    so that runs of different recipes are never averaged into one row."""
    labels = []
    for _, run in runs.iterrows():
        others = runs[(runs["model"] == run["model"]) & (runs["task"] == run["task"])]["setting"]
        keys = sorted({k for s in others for k in set(s) | set(run["setting"]) if s.get(k) != run["setting"].get(k)})
        setting = run["setting"]
        differs = ", ".join(f"{k}={setting.get(k, '?')}" for k in keys)
        labels.append(f"{run['model']} ({differs})" if keys else run["model"])
    return runs.assign(row=labels)


def task_order(tasks) -> list[str]:
    """The paper's tasks first (CIFAR-10, CIFAR-100, digits), then any other, by name."""
    present = set(tasks)
    return [t for t in TASK_LABELS if t in present] + sorted(present - set(TASK_LABELS))


def parity_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per model: parameters, unshared_parameters, saving, per task error mean/std/runs, fold_delta.

    Rows are grouped by the unshared network of the same depth and width (smallest first), that
    unshared network first in its group, then the shared ones by size (largest first).
    """
    tasks = task_order(runs["task"])
    rows = []
    for model, group in runs.groupby("row", sort=False):
        reference = group.iloc[group["task"].map(tasks.index).argmin()]  # the first task in the paper's order
        row = dict(model=model, parameters=int(reference["parameters"]))
        unshared = reference["unshared_parameters"]
        row["unshared_parameters"] = None if pd.isna(unshared) else int(unshared)
        row["saving"] = np.nan if pd.isna(unshared) else 1.0 - reference["parameters"] / unshared
        for task in tasks:
            errors = group.loc[group["task"] == task, "error"]
            row.update({f"{task}_error_mean": errors.mean() if len(errors) else np.nan,
                        f"{task}_error_std": errors.std(ddof=1) if len(errors) > 1 else np.nan,
                        f"{task}_runs": len(errors)})
        row["fold_delta"] = group["fold_delta"].mean()  # NaN when no run of the row was folded
        rows.append(row)
    table = pd.DataFrame(rows)
    family = table["unshared_parameters"].fillna(table["parameters"]).to_numpy()
    shared = (table["parameters"] != family).to_numpy()  # k templates can also cost a few parameters more
    order = np.lexsort((-table["parameters"].to_numpy(), shared, family))
    return table.iloc[order].reset_index(drop=True)


def _error_cell(mean: float, std: float, n: int) -> str:
    if n == 0:
        return "—"
    return f"{100 * mean:.2f} ± {100 * std:.2f} ({n})" if n > 1 else f"{100 * mean:.2f} (1)"


def to_markdown(table: pd.DataFrame) -> str:
    """The table in Markdown: errors in percent as ``mean ± std (runs)``, saving in percent, fold in points."""
    tasks = [c.removesuffix("_runs") for c in table if c.endswith("_runs")]
    header = ["model", "parameters", "saving", *(f"{TASK_LABELS.get(t, t)} error (%)" for t in tasks), "fold Δ acc (points)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in table.iterrows():
        cells = [row["model"], f"{row['parameters']:,}", "—" if pd.isna(row["saving"]) else f"{round(100 * row['saving'], 1) + 0.0:.1f}%"]  # + 0.0: no "-0.0%" for a few extra coefficients
        cells += [_error_cell(row[f"{t}_error_mean"], row[f"{t}_error_std"], row[f"{t}_runs"]) for t in tasks]
        cells.append("—" if pd.isna(row["fold_delta"]) else f"{100 * row['fold_delta']:+.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_parity(runs: pd.DataFrame, path: Path) -> Path:
    """Top-1 error (%) against parameters (log scale): per model and task the mean over seeds with
    its standard deviation (each seed faint behind it), one colour per task, unshared networks as
    circles and shared ones as crosses."""
    import matplotlib.pyplot as plt  # (benchmark.plot chose the Agg backend)
    import seaborn as sns

    network = np.where(runs["parameters"] != runs["unshared_parameters"].fillna(runs["parameters"]), "shared", "unshared")
    frame = runs.assign(error_pct=100 * runs["error"], network=network)
    means = frame.groupby(["task", "row", "network"], as_index=False).agg(
        parameters=("parameters", "first"), error_pct=("error_pct", "mean"), spread=("error_pct", "std"))
    hue = dict(hue="task", hue_order=task_order(frame["task"]), style="network", style_order=["unshared", "shared"])
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    sns.scatterplot(data=frame, x="parameters", y="error_pct", **hue, s=20, alpha=0.3, legend=False, ax=ax)
    ax.errorbar(means["parameters"], means["error_pct"], yerr=means["spread"].fillna(0.0), fmt="none", ecolor="grey", linewidth=1)
    sns.scatterplot(data=means, x="parameters", y="error_pct", **hue, s=90, ax=ax)
    for _, row in means.iterrows():
        ax.annotate(row["row"], (row["parameters"], row["error_pct"]), fontsize=8, xytext=(6, 4), textcoords="offset points")
    ax.set(xscale="log", xlabel="parameters", ylabel="top-1 test error (%)",
           title="error against parameters (mean ± std over seeds)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    return save_figure(fig, path)


def write_parity(results_dir: str | Path, out_dir: str | Path | None = None) -> tuple[pd.DataFrame, dict[str, Path]]:
    """Gather, tabulate and write parity.md, parity.csv and parity.png; returns the table and the files."""
    runs = gather(results_dir)
    if runs.empty:
        raise FileNotFoundError(f"no classification runs (eval.json of python -m benchmark task=cifar10|cifar100|digits) under {results_dir}.")
    out = Path(out_dir if out_dir is not None else results_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = parity_table(runs)
    files = dict(markdown=out / "parity.md", csv=out / "parity.csv", plot=out / "parity.png")
    write_text(files["markdown"], to_markdown(table))
    write_text(files["csv"], table.to_csv(index=False))
    plot_parity(runs, files["plot"])
    return table, files


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Gather classification runs into the parity table (Markdown, CSV, plot).")
    parser.add_argument("results_dir", type=Path, help="a folder searched recursively for classification runs")
    parser.add_argument("--out", type=Path, default=None, help="where parity.md/.csv/.png go (default: RESULTS_DIR)")
    args = parser.parse_args(argv)
    try:
        table, files = write_parity(args.results_dir, args.out)
    except (FileNotFoundError, ResultFormatError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(to_markdown(table), end="")
    print("\n".join(str(p) for p in files.values()))


if __name__ == "__main__":
    main()
