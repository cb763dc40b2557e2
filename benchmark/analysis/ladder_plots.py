"""The plots of a ladder result (``benchmark.infra.ladder.LadderResult``), drawn with seaborn:
the heatmap (rows: the options that vary between the splits, columns: sizes; accuracy at the
chosen iteration) and the per-iteration accuracy curves (one panel per size, one line per row)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from benchmark.analysis.formatting import percent_mean_sd
from benchmark.analysis.plots import plt, save_figure, sns
from benchmark.infra.ladder import LadderResult


def _title(result: LadderResult) -> str:
    ladder = result.ladder if len(result.ladder) <= 60 else result.ladder[:57] + "..."
    return f"{result.task} / {result.model} on {ladder}"


def plot_ladder_heatmap(result: LadderResult, path: Path) -> Path:
    table = pd.DataFrame(result.table()).T  # rows x sizes
    table = table[sorted(table.columns)]
    label = max(len(str(r)) for r in table.index)
    fig, ax = plt.subplots(figsize=(1.1 * len(table.columns) + 0.085 * label + 2.6, 0.5 * len(table) + 1.7))
    sns.heatmap(table, annot=True, fmt=".0%", vmin=0, vmax=1, cmap="viridis", cbar_kws=dict(label="exact-match accuracy"),
                linewidths=0.5, ax=ax)
    samples = sorted({s.samples for s in result.splits})
    counts = f"{samples[0]}" if len(samples) == 1 else f"{samples[0]}-{samples[-1]}"
    halting = f", halting after {result.halt_after}" if result.halt_after else ""
    ax.set(xlabel="size", ylabel=", ".join(result.varying) or "")
    ax.set_title(f"{_title(result)}\naccuracy at iteration {result.chosen_iteration} ({result.pick}), "
                 f"{counts} samples per split{halting}", fontsize=9)
    ax.tick_params(axis="y", rotation=0)
    return save_figure(fig, path)


def plot_ladder_curves(result: LadderResult, path: Path) -> Path:
    """One panel per size, one line per row; the legend in a panel of its own (the last)."""
    frame = pd.DataFrame([dict(row=score.row(result.varying), size=score.size, iteration=t + 1, accuracy=acc)
                          for score in result.splits for t, acc in enumerate(score.accuracy)])
    sizes = sorted(frame["size"].unique())
    rows = list(dict.fromkeys(frame["row"]))
    palette = dict(zip(rows, sns.color_palette("tab10", len(rows))))
    fig, axes = plt.subplots(1, len(sizes) + 1, figsize=(3.2 * len(sizes) + 2.8, 3.3), sharey=True)
    for ax, size in zip(axes, sizes):
        sns.lineplot(data=frame[frame["size"] == size], x="iteration", y="accuracy", hue="row", palette=palette,
                     hue_order=rows, legend=False, ax=ax)
        ax.axvline(result.train_iters, color="grey", linestyle="--", linewidth=1)
        ax.set(ylim=(-0.02, 1.02), title=f"size {size}", xlabel="test-time iterations", ylabel="exact-match accuracy")
    legend = axes[-1]
    legend.axis("off")
    legend.legend(handles=[plt.Line2D([], [], color=palette[r], label=r) for r in rows]
                  + [plt.Line2D([], [], color="grey", linestyle="--", label=f"training depth {result.train_iters}")],
                  title=", ".join(result.varying) or None, loc="center left", fontsize=8, title_fontsize=8, frameon=False)
    fig.suptitle(_title(result), fontsize=9)
    return save_figure(fig, path)


__all__ = ["ladder_recipes_markdown", "ladder_seeds_markdown", "ladder_settled_markdown", "ladder_seeds_stats", "plot_ladder_curves", "plot_ladder_heatmap"]


def ladder_seeds_stats(results: list[LadderResult]) -> pd.DataFrame:
    """Over several runs' results on the same ladder (seeds of one recipe): per (row, size), in the
    ladder's row order, the ``mean``, ``std`` (sample sd; NaN for one run) and ``count`` of the
    accuracy at each run's chosen iteration. The one aggregation the seeds table and the README's
    headline table (``benchmark.analysis.headline``) share."""
    ladders = {(r.ladder, r.chosen_iteration, r.pick) for r in results}
    if len(ladders) != 1:
        raise ValueError(f"the results must be one ladder at one chosen iteration, got {sorted(ladders)}.")
    frame = pd.DataFrame([dict(row=row, size=size, accuracy=acc) for r in results
                          for row, by_size in r.table().items() for size, acc in by_size.items()])
    return frame.groupby(["row", "size"], sort=False)["accuracy"].agg(["mean", "std", "count"])


def ladder_seeds_markdown(results: list[LadderResult]) -> str:
    """One Markdown table over several runs' results on the same ladder (seeds of one recipe):
    per row and size, the mean ± sd (over the runs) of the accuracy at each run's chosen iteration."""
    stats = ladder_seeds_stats(results)
    sizes = sorted(stats.index.get_level_values("size").unique())
    varying = ", ".join(results[0].varying) or "split"
    lines = [f"| {varying} | " + " | ".join(f"{s}x{s}" for s in sizes) + " |", "|---|" + "---|" * len(sizes)]
    lines += [f"| {row} | " + " | ".join(cells) + " |" for row, cells in _stats_rows(stats, sizes)]
    return "\n".join(lines) + "\n"


def _stats_rows(stats: pd.DataFrame, sizes: list[int]) -> list[tuple[str, list[str]]]:
    """Per ladder row of ``ladder_seeds_stats``, in order: its cells ``mean ± sd`` at ``sizes``
    (an sd of 0 for one run, empty where the row has no split of that size)."""
    return [(row, [percent_mean_sd(*stats.loc[(row, size), ["mean", "std"]]) if (row, size) in stats.index else ""
                   for size in sizes])
            for row in dict.fromkeys(stats.index.get_level_values("row"))]


def ladder_recipes_markdown(recipes: dict[str, list[LadderResult]], sizes: list[int] | None = None) -> str:
    """One Markdown table comparing recipes on the same ladder: a row per (recipe, ladder row), in
    the order given, a column per size (``sizes``, default every size), each cell the mean ± sd
    over that recipe's runs (``ladder_seeds_stats``) and, in the recipe's first row, the seeds."""
    if len({(r.ladder, r.chosen_iteration, r.pick) for results in recipes.values() for r in results}) != 1:
        raise ValueError("the recipes' results must be one ladder at one chosen iteration.")
    stats = {name: ladder_seeds_stats(results) for name, results in recipes.items()}
    first = next(iter(recipes.values()))[0]
    sizes = sizes or sorted({size for s in stats.values() for size in s.index.get_level_values("size")})
    varying = ", ".join(first.varying) or "split"
    lines = [f"| recipe | {varying} | " + " | ".join(f"{s}x{s}" for s in sizes) + " |", "|---|---|" + "---|" * len(sizes)]
    for name, table in stats.items():
        runs = len(recipes[name])
        for i, (row, cells) in enumerate(_stats_rows(table, sizes)):
            label = f"{name} ({runs} seed{'s' if runs > 1 else ''})" if i == 0 else ""
            lines.append(f"| {label} | {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def ladder_settled_markdown(results: list[LadderResult], sizes: list[int] | None = None) -> str:
    """One Markdown table of how each run's answers ended: a row per (run, ladder row), a column per
    size (``sizes``, default every size), each cell the accuracy at the chosen iteration and, where
    any, how many of the split's samples never settled (their answer never stayed unchanged, or
    between two answers, for ``halt_after`` iterations: still changing at the last iteration) and
    how many settled into a 2-cycle. A wrong answer that settled is a wrong fixed point; a wrong
    answer that never settled is dynamics that did not converge. Needs ladders scored with halting."""
    if any(r.halt_after == 0 for r in results):
        raise ValueError("settling is recorded only by ladders scored with halting (--halt K): "
                         + ", ".join(r.run for r in results if r.halt_after == 0) + " had none.")
    sizes = sizes or sorted({s.size for r in results for s in r.splits})
    varying = ", ".join(results[0].varying) or "split"
    lines = [f"| run | {varying} | " + " | ".join(f"{s}x{s}" for s in sizes) + " |", "|---|---|" + "---|" * len(sizes)]
    for result in results:
        cells: dict[str, dict[int, str]] = {}
        for score, acc in zip(result.splits, result.chosen().values()):
            counts = score.settled or {}
            notes = [f"{counts[k]} {label}" for k, label in (("none", "unsettled"), ("2-cycle", "in 2-cycles")) if counts.get(k)]
            cells.setdefault(score.row(result.varying), {})[score.size] = f"{100 * acc:.0f}%" + (f" ({', '.join(notes)})" if notes else "")
        for i, (row, by_size) in enumerate(cells.items()):
            label = Path(result.run).name if i == 0 else ""
            lines.append(f"| {label} | {row} | " + " | ".join(by_size.get(size, "") for size in sizes) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """``python -m benchmark.analysis.ladder_plots FILE.json ... [--out FILE.md]``: the seeds table;
    ``--recipe NAME FILE.json ... [--recipe ...] [--sizes 15 33 59]``: recipes side by side;
    ``--settled FILE.json ... [--sizes 33 59]``: each run's accuracy and how its answers settled."""
    from benchmark.config.errors import CommandParser, exit_on_user_error
    from tasks.fileio import write_text

    parser = CommandParser(prog="python -m benchmark.analysis.ladder_plots", description="Mean and sd over runs (seeds) of ladder results (ladder_*.json).")
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--recipe", nargs="+", action="append", metavar=("NAME", "FILE"),
                        help="a recipe's name and its runs' ladder results; repeat it to compare recipes")
    parser.add_argument("--settled", action="store_true",
                        help="a row per run: accuracy and the samples that never settled or settled into a 2-cycle")
    parser.add_argument("--sizes", nargs="+", type=int, help="the sizes (columns) of a --recipe or --settled table (default: all)")
    parser.add_argument("--out", type=Path, help="write the Markdown table there (default: print it)")
    args = parser.parse_args(argv)
    if bool(args.files) == bool(args.recipe) or any(len(r) < 2 for r in args.recipe or ()):
        parser.error("give ladder result files, or --recipe NAME FILE ... (a name and at least one file each), not both")
    if args.settled and args.recipe:
        parser.error("--settled takes ladder result files, not --recipe")
    if args.recipe and len({name for name, *_ in args.recipe}) < len(args.recipe):
        parser.error("each --recipe needs a name of its own")

    def run() -> None:
        try:
            if args.recipe:
                table = ladder_recipes_markdown({name: [LadderResult.read(Path(f)) for f in files]
                                                 for name, *files in args.recipe}, args.sizes)
            elif args.settled:
                table = ladder_settled_markdown([LadderResult.read(path) for path in args.files], args.sizes)
            else:
                table = ladder_seeds_markdown([LadderResult.read(path) for path in args.files])
        except ValueError as err:
            from benchmark.config.schema import ConfigError

            raise ConfigError(str(err)) from err
        if args.out is None:
            print(table, end="")
        else:
            write_text(args.out, table)
            print(f"written {args.out}")

    exit_on_user_error(run)


if __name__ == "__main__":
    main()
