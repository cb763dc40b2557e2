"""Plots and tables that read only what runs wrote to disk (eval.json, metrics.jsonl, ...).

    python -m benchmark.plot results/maze/train9_test15/shared/<run-id>    # redraw one run
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from tasks.fileio import atomic_path, check_writable_dir  # noqa: E402
from benchmark.config.schema import CommandParser, ConfigError, exit_on_user_error  # noqa: E402
from benchmark.infra.results import ClassificationResult, EvalResult, FoldResult, ResultFormatError, SimilarityRecord  # noqa: E402
from benchmark.infra.rundir import RunDir  # noqa: E402


def extrapolation_frame(result: EvalResult) -> pd.DataFrame:
    """Long table (size, iteration, accuracy) of one evaluation."""
    rows = [dict(size=size, iteration=t + 1, accuracy=acc) for size, accs in result.accuracy.items() for t, acc in enumerate(accs)]
    return pd.DataFrame(rows)


def plot_extrapolation(result: EvalResult, path: Path, folding: FoldResult | None = None) -> Path:
    """Accuracy against test-time iterations, one line per test size; the training depth dashed.

    With ``folding`` (a run's fold result) the folded model is drawn too, dashed.
    """
    frame = extrapolation_frame(result).assign(model="original")
    title = "" if result.run is None else f"{result.run.task} / {result.run.model}"
    if folding is not None:
        frame = pd.concat([frame, extrapolation_frame(folding.evaluation).assign(model="folded")], ignore_index=True)
        title += f": folded into {folding.report.num_loops} loop(s)"
    fig, ax = plt.subplots(figsize=(6, 4))
    sns.lineplot(data=frame, x="iteration", y="accuracy", hue="size", palette="viridis", ax=ax,
                 **(dict(style="model", style_order=["original", "folded"]) if folding is not None else {}))
    ax.axvline(result.train_iters, color="grey", linestyle="--", linewidth=1, label="training depth")
    ax.set(ylim=(-0.02, 1.02), xlabel="test-time iterations", ylabel="exact-match accuracy", title=title)
    ax.legend(title="test size" if folding is None else None, loc="lower right", fontsize=8)
    return save_figure(fig, path)


def save_figure(fig: plt.Figure, path: Path) -> Path:
    """Write ``fig`` atomically (its format from ``path``'s suffix, PNG by default) and close it."""
    try:
        fig.tight_layout()
        with atomic_path(path) as tmp:  # tmp ends in .tmp, so the format is named explicitly
            fig.savefig(tmp, dpi=120, format=Path(path).suffix.lstrip(".") or "png")
    finally:
        plt.close(fig)
    return path


def plot_training(metrics: list[dict], path: Path) -> Path:
    """Training loss and accuracy against optimisation steps."""
    frame = pd.DataFrame(metrics)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    sns.lineplot(data=frame, x="step", y="loss", ax=axes[0])
    axes[0].set_yscale("log")
    sns.lineplot(data=frame, x="step", y="train_acc", ax=axes[1])
    axes[1].set(ylim=(-0.02, 1.02), ylabel="training accuracy (exact match)")
    return save_figure(fig, path)


def plot_classification_training(metrics: list[dict], path: Path) -> Path:
    """A classification run's training loss, and the top-1 error of every split scored, against epochs.

    ``metrics``: its metrics.jsonl lines (``epoch``, ``loss``, and ``<split>_error`` per split).
    """
    frame = pd.DataFrame(metrics)
    errors = frame.melt(id_vars="epoch", value_vars=[c for c in frame if c.endswith("_error")], var_name="split", value_name="error")
    errors["split"] = errors["split"].str.removesuffix("_error")  # train, val, test
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    sns.lineplot(data=frame, x="epoch", y="loss", ax=axes[0])
    axes[0].set(yscale="log", ylabel="training loss")
    sns.lineplot(data=errors, x="epoch", y="error", hue="split", ax=axes[1])
    axes[1].set(ylabel="top-1 error", ylim=(0, None))
    return save_figure(fig, path)


def accuracy_vs_size_figure(frame: pd.DataFrame) -> plt.Figure:
    """Accuracy against test size, one line per model, one panel per iteration budget.

    ``frame``: long table (model, seed, size, train_size, budget, accuracy), e.g.
    ``benchmark.analysis.report.budget_frame``; the panels follow the order the budgets first appear in.
    A point is the mean over seeds, its bar spans min..max; the models are dodged sideways so
    that bars at one size do not hide each other. Training sizes are marked on the axis.
    """
    budgets = list(dict.fromkeys(frame["budget"]))
    models = sorted(frame["model"].unique())
    # tab10 tells up to 10 models apart; beyond, evenly spaced hues. Markers tell them apart too.
    palette = dict(zip(models, sns.color_palette("tab10" if len(models) <= 10 else "husl", len(models))))
    markers = [MARKERS[i % len(MARKERS)] for i in range(len(models))]
    sizes = sorted(frame["size"].unique())
    train_sizes = set(frame["train_size"].unique())
    fig, axes = plt.subplots(1, len(budgets), figsize=(4.2 * len(budgets) + 2.2, 3.9), squeeze=False, sharey=True)
    for ax, budget in zip(axes[0], budgets):
        sns.pointplot(data=frame[frame["budget"] == budget], x="size", y="accuracy", order=sizes, hue="model", hue_order=models,
                      palette=palette, markers=markers, dodge=0.5 if len(models) > 1 else False, errorbar=("pi", 100),
                      capsize=0.05, err_kws=dict(linewidth=1), markersize=5, linewidth=1.4, ax=ax, legend=ax is axes[0][-1])
        ax.set_xticks(range(len(sizes)), [f"{s}\n(training)" if s in train_sizes else str(s) for s in sizes])
        ax.set(title=budget, ylim=(-0.02, 1.02), xlabel="test size", ylabel="exact-match accuracy")
    axes[0][-1].legend(title="model", bbox_to_anchor=(1.03, 1.0), loc="upper left", fontsize=8, title_fontsize=9, frameon=False)
    return fig


MARKERS = ["o", "s", "D", "^", "v", "P", "X", "*", "<", ">"]


def plot_accuracy_vs_size(frame: pd.DataFrame, path: Path) -> Path:
    """``accuracy_vs_size_figure`` written to ``path``."""
    return save_figure(accuracy_vs_size_figure(frame), path)


def plot_lsm(lsm: dict[str, np.ndarray], path: Path, group_size: dict | int | None = None) -> Path:
    """One heatmap per bank of its layer similarity matrix (values written in when it is small).

    ``lsm``: ``{bank: (L, L) array}``. ``group_size`` (one int, or one per bank) draws a line
    every that many layers, e.g. 4 for the block positions of a ``RecurrentConvNet`` bank.
    """
    names = list(lsm)
    if not names:
        raise ValueError("plot_lsm needs at least one bank's LSM, got none.")
    fig, axes = plt.subplots(1, len(names), figsize=(4.6 * len(names), 4), squeeze=False)
    for ax, name in zip(axes[0], names):
        matrix = np.asarray(lsm[name], dtype=float)  # (L, L)
        small = len(matrix) <= 12  # beyond that the numbers no longer fit in their cells
        sns.heatmap(matrix, vmin=0, vmax=1, cmap="viridis", square=True, annot=small, fmt=".2f",
                    annot_kws={"size": 8}, cbar_kws={"shrink": 0.8, "label": "|cos|"}, ax=ax,
                    xticklabels="auto", yticklabels="auto")
        step = group_size.get(name) if isinstance(group_size, dict) else group_size
        if step and step < len(matrix):
            for edge in range(step, len(matrix), step):
                ax.axhline(edge, color="white", linewidth=0.6)
                ax.axvline(edge, color="white", linewidth=0.6)
        ax.set(title=f"LSM of {name}", xlabel="layer", ylabel="layer")
    return save_figure(fig, path)


def read_metrics(run_dir: Path) -> list[dict]:
    """A run's metrics records (each checked by ``MetricsRecord``) as plain dicts, for data frames."""
    return [record.to_json() for record in RunDir(run_dir).read_metrics()]


def plot_similarity(record: SimilarityRecord, path: Path) -> Path:
    """The heatmaps of a run's ``lsm.json``, one per bank, with lines between its blocks."""
    return plot_lsm({name: bank.lsm for name, bank in record.banks.items()}, path,
                    group_size={name: bank.layers_per_position for name, bank in record.banks.items()})


# The fields each training plot draws: a metrics.jsonl without them cannot be drawn.
_TRAINING_FIELDS = ("step", "loss", "train_acc")
_CLASSIFICATION_FIELDS = ("epoch", "loss")


def run_plots(run_dir: str | Path) -> list[Callable[[], Path]]:
    """Every plot a run directory has the data for, each as a function that draws and writes it.

    Every file the plots need is read and checked here, before any is drawn: a damaged one is a
    ``ResultFormatError`` (one sentence) and nothing is written."""
    run = RunDir(run_dir)
    run_dir = run.path
    plots: list[Callable[[], Path]] = []
    loaded = run.read_eval() if run.eval.exists() else None
    classification = isinstance(loaded, ClassificationResult)
    result = None if classification else loaded  # a puzzle run's accuracy per iteration
    if result is not None:
        plots.append(lambda: plot_extrapolation(result, run_dir / "extrapolation.png"))
    metrics = read_metrics(run_dir)
    if metrics:
        fields = _CLASSIFICATION_FIELDS if classification else _TRAINING_FIELDS
        missing = [f for f in fields if not any(f in m for m in metrics)]
        if missing:
            raise ResultFormatError(f"{run.metrics} has no {', '.join(missing)} field in any record: it is not a run's metrics.jsonl.")
        draw = plot_classification_training if classification else plot_training
        plots.append(lambda: draw(metrics, run_dir / "training.png"))
    record = run.read_lsm()
    if record is not None and record.banks:
        plots.append(lambda: plot_similarity(record, run_dir / "lsm.png"))
    if run.fold.exists() and result is not None:
        folding = FoldResult.read(run.fold)
        plots.append(lambda: plot_extrapolation(result, run_dir / "extrapolation_folded.png", folding=folding))
    return plots


def plot_run(run_dir: str | Path) -> list[Path]:
    """Draw every plot a run directory has the data for; returns the files written."""
    return [draw() for draw in run_plots(run_dir)]


def run(argv: list[str] | None = None) -> list[Path]:
    """Parse, read and check every run directory, refuse one that cannot be written, then draw;
    returns the files written. Raises ``ConfigError`` (or another ``USER_ERRORS``) before writing."""
    parser = CommandParser(prog="python -m benchmark.plot", description="Redraw the plots of run directories.")
    parser.add_argument("run_dirs", nargs="+", type=Path)
    args = parser.parse_args(argv)
    planned = []
    for run_dir in args.run_dirs:
        if not RunDir(run_dir).eval.is_file() and not RunDir(run_dir).metrics.is_file():
            raise ConfigError(f"{run_dir} is not a run directory (it has neither eval.json nor metrics.jsonl).")
        planned.append(run_plots(run_dir))
        check_writable_dir(run_dir, "the plots")
    written = []
    for plots in planned:
        for draw in plots:
            written.append(draw())
            print(written[-1])
    return written


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: user errors (a damaged file, a folder that cannot be written) end with
    one sentence on stderr and exit status 2, before anything is drawn."""
    exit_on_user_error(run, argv)


def plot_settling(result: EvalResult, path: Path) -> Path:
    """Histogram of the iterations at which samples settled (``EvalResult.halting``), one
    outlined histogram per test size on shared bins; the legend counts each size's fixed
    points, 2-cycles and samples that never settled (not drawn: they have no iteration)."""
    frame = pd.DataFrame([dict(size=size, iteration=at) for size, record in (result.halting or {}).items()
                          for at in record.settled_at if at is not None])
    labels = {size: f"{size}: {r.kind.count('fixed')} fixed, {r.kind.count('2-cycle')} 2-cycle, {r.kind.count('none')} never"
              for size, r in (result.halting or {}).items()}
    fig, ax = plt.subplots(figsize=(7, 4.6))
    if not frame.empty:
        frame["size"] = frame["size"].map(labels)
        sns.histplot(data=frame, x="iteration", hue="size", hue_order=[labels[s] for s in labels if labels[s] in set(frame["size"])],
                     element="step", fill=True, alpha=0.25, common_bins=True, bins=30, palette="viridis", ax=ax)
        # Below the axes: inside, it hid the tallest bars of some runs.
        sns.move_legend(ax, "upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, title="test size: samples", frameon=False)
    title = f"where predictions settled (stopped after {result.halt_after} settled iterations, at most {result.iterations})"
    if result.reevaluation is not None:
        title = f"{result.reevaluation.task} / {result.reevaluation.model}: " + title
    ax.set(xlabel="first iteration of the settled state", ylabel="samples")
    ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))  # counts of samples
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path)


def _per_task_figure(frame: pd.DataFrame, path: Path, draw: Callable[..., None], dashed: str, legend_title: str) -> Path:
    """One panel per task of ``frame`` (a long table with ``task`` and ``model`` columns), one
    colour per model across panels; ``draw(ax, part, hue_order=..., palette=..., legend=...)`` draws
    a panel and its grey dashed reference lines (``dashed`` labels them). The legend sits right
    of the last panel, off the curves."""
    tasks = sorted(frame["task"].unique())
    models = sorted(frame["model"].unique())
    palette = dict(zip(models, sns.color_palette("tab10" if len(models) <= 10 else "husl", len(models))))
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.2 * len(tasks) + 2.4, 4.0), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        part = frame[frame["task"] == task]
        draw(ax, part, hue_order=[m for m in models if m in set(part["model"])], palette=palette, legend=ax is axes[0][-1])
    handles, labels = axes[0][-1].get_legend_handles_labels()
    handles.append(matplotlib.lines.Line2D([], [], color="grey", linestyle="--", linewidth=1))
    axes[0][-1].legend(handles, [*labels, dashed], title=legend_title, bbox_to_anchor=(1.03, 1.0),
                       loc="upper left", fontsize=8, title_fontsize=9, frameon=False)
    return save_figure(fig, path)


def plot_study_extrapolation(frame: pd.DataFrame, path: Path) -> Path:
    """Accuracy against test-time iterations, one panel per task (its biggest test size), one line
    per model (mean over seeds, band min..max), the training depth dashed.

    ``frame``: long table (task, size, train_iters, model, seed, iteration, accuracy), e.g.
    ``benchmark.analysis.study.study_curves``.
    """
    def draw(ax: plt.Axes, part: pd.DataFrame, **style: Any) -> None:
        sns.lineplot(data=part, x="iteration", y="accuracy", hue="model", estimator="mean", errorbar=("pi", 100), ax=ax, **style)
        for depth in sorted(part["train_iters"].unique()):
            ax.axvline(depth, color="grey", linestyle="--", linewidth=1)
        ax.set(title=f"{part['task'].iloc[0]}, test size {part['size'].max()}", ylim=(-0.02, 1.02),
               xlabel="test-time iterations", ylabel="exact-match accuracy")

    return _per_task_figure(frame, path, draw, "training depth", "model (band: min..max over seeds)")


def plot_study_training(frame: pd.DataFrame, path: Path) -> Path:
    """Probe accuracy against training steps, one panel per task, one line per run (colour: model),
    the target dashed: how each run reached it, or where it stalled below it.

    ``frame``: long table (task, model, seed, step, probe_acc, target), e.g.
    ``benchmark.analysis.study.training_curves``.
    """
    def draw(ax: plt.Axes, part: pd.DataFrame, **style: Any) -> None:
        sns.lineplot(data=part, x="step", y="probe_acc", hue="model", units="seed", estimator=None, linewidth=1, ax=ax, **style)
        for target in sorted(part["target"].unique()):
            ax.axhline(target, color="grey", linestyle="--", linewidth=1)
        ax.set(title=part["task"].iloc[0], ylim=(-0.02, 1.02), xlabel="training steps", ylabel="probe accuracy (training depth)")

    return _per_task_figure(frame, path, draw, "target", "model (a line per seed)")


if __name__ == "__main__":
    main()
