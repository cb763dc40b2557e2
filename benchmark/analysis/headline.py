"""The README's "Headline results" table, built only from files committed under ``results/``.

    python -m benchmark.headline [--results DIR] [--write README.md | --check README.md]

Every row is a ``Row``: its page, the glob patterns of its source files (relative to the results
root, so that a test can point the generator at a copy) and a function that makes its two cells
from those files through the project's own readers (``EvalResult``, ``LadderResult``, ``RunDir``,
the leaderboard's ``read_scores`` and ``table``, the ladder's ``ladder_seeds_stats``). A row can
open only the files it names (``Sources`` refuses any other), so the patterns are the whole list
of files behind its figures; the text around them is labels and units. A figure chosen on the
test set itself is labelled ``ORACLE_LABEL``, as everywhere in the project.

The README holds the table between ``BEGIN`` and ``END``. Printed by default; ``--write`` replaces
the block atomically; ``--check`` exits 1 when it differs from what the files give
(tests/test_headline.py makes the same check in CI). A missing README, markers or source file,
or a damaged one, is one sentence and exit status 2 (``exit_on_user_error``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.analysis.formatting import percent, percent_mean_sd, span
from benchmark.analysis.ladder_plots import ladder_seeds_stats
from benchmark.analysis.leaderboard import CSV_COLUMNS, SOLVED, read_scores, table
from benchmark.config.errors import CommandParser, ConfigError, exit_on_user_error
from benchmark.infra.ladder import LadderResult
from benchmark.infra.results import ORACLE_LABEL, EvalResult, ResultFormatError, SizeSummary, _read_json
from benchmark.infra.rundir import RunDir
from tasks.fileio import write_text

RESULTS = Path("results")
BEGIN, END = "<!-- headline:begin -->", "<!-- headline:end -->"
HEADER = ("| what | result | page |", "|---|---|---|")


@dataclass(frozen=True)
class Sources:
    """The files of one row: only its declared ``patterns``, matched under ``root``."""

    root: Path
    patterns: tuple[str, ...]

    def paths(self, pattern: str) -> list[Path]:
        if pattern not in self.patterns:  # a row reading a file it does not name: a bug, not a user's error
            raise RuntimeError(f"{pattern} is not among the row's sources {self.patterns}.")
        found = sorted(p for p in self.root.glob(pattern) if p.is_file())
        if not found:
            raise ResultFormatError(f"no file matches {self.root / pattern}, a source of the README's headline table.")
        return found

    def path(self, pattern: str) -> Path:
        found = self.paths(pattern)
        if len(found) != 1:
            raise ResultFormatError(f"{len(found)} files match {self.root / pattern}, a source of the README's headline table, "
                                    "where one was expected.")
        return found[0]


@dataclass(frozen=True)
class Row:
    """One row of the table: ``cells`` makes (what, result) from the files ``sources`` name."""

    page: str
    sources: tuple[str, ...]
    cells: Callable[[Sources], tuple[str, str]]

    def __post_init__(self) -> None:
        if any(p.startswith("/") or ".." in Path(p).parts for p in self.sources):
            raise ValueError(f"a headline row's sources must lie below the results root: {self.sources}.")

    def render(self, root: Path) -> str:
        try:
            what, result = self.cells(Sources(root, self.sources))
        except ResultFormatError:
            raise
        except (KeyError, IndexError, ValueError, TypeError) as err:  # a figure the files do not hold
            raise ResultFormatError(f"the headline row of {self.page} cannot be made from {', '.join(self.sources)} under "
                                    f"{root} ({type(err).__name__}: {err}).") from err
        return f"| {what} | {result} | [{self.page}]({self.page}) |"


def run_files(run_glob: str) -> tuple[str, ...]:
    """The files ``read_scores`` opens in each run directory ``run_glob`` matches."""
    return tuple(f"{run_glob}/{name}" for name in (RunDir.EVAL, RunDir.CONFIG, RunDir.METRICS))


def read_csv(path: Path, columns: tuple[str, ...], **options: Any) -> pd.DataFrame:
    """A CSV that the project wrote with pandas or ``csv`` (``options``: ``pandas.read_csv``'s), refused in
    one sentence when it lacks ``columns``."""
    try:
        frame = pd.read_csv(path, **options)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise ResultFormatError(f"cannot read {path} as CSV ({type(err).__name__}).") from err
    missing = sorted(set(columns) - set(frame.columns))
    if missing:
        raise ResultFormatError(f"{path} lacks the columns {', '.join(missing)}.")
    return frame


def size_label(task: str, size: int) -> str:
    return f"{size} bits" if task == "prefix_sums" else f"{size}x{size}"


def pct(value: float, digits: int = 1) -> str:
    return f"{percent(value, digits)}%"


def oracle(summary: SizeSummary, bold: bool = False) -> str:
    """A curve's best test accuracy and its iteration, labelled as chosen on the test set itself."""
    figure = f"**{pct(summary.best)}**" if bold else pct(summary.best)
    return f"{figure} at iteration {summary.best_iter}, {ORACLE_LABEL}"


# ---------------------------------------------------------------------------- rows, one builder each
MAIN_RUN = "reference/checkpoints/maze/train9_test15/shared/20261127-073436-seed0"
MAIN_BIG = f"{MAIN_RUN}/eval_sizes33_iters500_n1000_halt30.json"  # the same checkpoint on 1,000 33x33 mazes


def main_command(src: Sources) -> tuple[str, str]:
    run = RunDir(src.path(f"{MAIN_RUN}/{RunDir.EVAL}").parent)
    result, big = EvalResult.read(run.eval), EvalResult.read(src.path(MAIN_BIG))
    info, test, big_size = result.run, max(result.sizes), max(big.sizes)
    s, b = result.summary[test], big.summary[big_size]
    precision = run.read_config()["precision"]
    return (f"mazes, the main command (`model={info.model}`, {info.parameters:,} parameters, seed {info.seed}), "
            f"{size_label(info.task, info.train_size)} -> {size_label(info.task, test)}",
            f"{size_label(info.task, test)}: {oracle(s, bold=True)}; {pct(s.final)} at iteration {s.final_iter}; "
            f"{size_label(info.task, big_size)}: {oracle(b)}; {info.seconds.train:.0f} s of training "
            f"({info.device.upper()}, {precision})")


OOD_LADDERS = ("reference/ood/maze_ood_reference_shared.json",  # seed 0, the main command's checkpoint
               "reference/leaderboard/maze/train9_test15/shared/20261206-183923-seed1/ladder_maze_ood_iters100_n50_halt20.json",
               "reference/leaderboard/maze/train9_test15/shared/20261206-183923-seed2/ladder_maze_ood_iters100_n50_halt20.json")


def ood(src: Sources) -> tuple[str, str]:
    results = [LadderResult.read(src.path(p)) for p in OOD_LADDERS]
    means = ladder_seeds_stats(results)
    at = {size: means.xs(size, level="size") for size in (15, 33, 59)}
    low, high = at[33]["mean"].idxmin(), at[33]["mean"].idxmax()

    def generator(row: str) -> str:
        return f"{percent_mean_sd(at[33].loc[row, 'mean'], at[33].loc[row, 'std'], 0)}% (`{row}`)"

    return (f"the same model on mazes of other generators (`--splits {results[0].ladder}`), {len(results)} seeds",
            f"15x15: {span(at[15]['mean'], percent)}% for every generator; 33x33: {generator(low)} to {generator(high)}; "
            f"59x59: {span(at[59]['mean'], lambda x: percent(x, 0))}%, all at iteration {results[0].chosen_iteration}")


# The robust-model goal (docs/robust_maze.md): every generator at least this at each size, per seed.
ROBUST_GOAL = {15: 0.995, 33: 0.95, 59: 0.90}
ROBUST_LADDER = "ladder_maze_ood_iters1000_n20_halt20.json"  # the frozen test splits, scored once after the choice
ROBUST_LADDERS = (f"reference/checkpoints/maze/train15_test15/shared/20261207-054649-seed0/{ROBUST_LADDER}",  # seed 0
                  f"reference/robust/robust_m30min15_t15/maze/train15_test15/shared/*/{ROBUST_LADDER}")  # seeds 1-4


def robust(src: Sources) -> tuple[str, str]:
    """``train=robust`` on every generator: the seeds' mean per size (range over generators), and the
    worst cell any seed has at each size (the robust-model goal counts seeds, not means)."""
    results = [LadderResult.read(path) for pattern in ROBUST_LADDERS for path in src.paths(pattern)]
    means = ladder_seeds_stats(results)
    worst = {size: min(by_size[size] for r in results for by_size in r.table().values()) for size in (15, 33, 59)}
    cells = "; ".join(f"{size}x{size}: {span(means.xs(size, level='size')['mean'], percent)}% (worst seed and generator "
                      f"{percent(worst[size])}%)" for size in (15, 33, 59))
    met = sum(all(acc >= ROBUST_GOAL[size] for by_size in r.table().values() for size, acc in by_size.items() if size in ROBUST_GOAL)
              for r in results)
    goal = ", ".join(f"{size}x{size} >= {100 * bar:g}%" for size, bar in ROBUST_GOAL.items())
    return (f"mazes of every generator, `train=robust` (15x15 depth-first and Prim mazes; Kruskal, Wilson and division "
            f"held out), test splits (`--splits {results[0].ladder}`), {len(results)} seeds",
            f"{cells}; **{met} of {len(results)} seeds meet the goal** ({goal} on every generator); up to "
            f"{results[0].chosen_iteration} iterations, halting after {results[0].halt_after} unchanged ones")


PREFIX_RUN = f"reference/checkpoints/prefix_sums/train32_test512/shared/20261127-001511-seed0/{RunDir.EVAL}"


def prefix_sums(src: Sources) -> tuple[str, str]:
    result = EvalResult.read(src.path(PREFIX_RUN))
    info, test = result.run, max(result.sizes)
    s = result.summary[test]
    return (f"prefix sums, `task={info.task}`, {info.train_size} -> {test} bits",
            f"{test} bits: {oracle(s, bold=True)}; {pct(s.final)} at iteration {s.final_iter}")


UNIT_RUN = f"reference/checkpoints/shortest_path/train8_test16/shared/u_w48/{RunDir.EVAL}"
WEIGHTED_RUN = f"reference/checkpoints/shortest_path/train12_test24/shared/20261127-002814-seed0/{RunDir.EVAL}"


def shortest_paths(src: Sources) -> tuple[str, str]:
    unit, weighted = EvalResult.read(src.path(UNIT_RUN)), EvalResult.read(src.path(WEIGHTED_RUN))
    task, u_size, w_size = unit.run.task, max(unit.sizes), max(weighted.sizes)
    u, w = unit.summary[u_size], weighted.summary[w_size]
    return (f"shortest paths, unit costs, `task=shortest_path_unit`, {size_label(task, unit.run.train_size)} -> "
            f"{size_label(task, u_size)}",
            f"{size_label(task, u_size)}: {oracle(u, bold=True)}; weighted costs 1-9 (`task=shortest_path`, the open "
            f"problem): {size_label(task, w_size)}: {oracle(w)}")


def leaderboard_row(task_words: str, csv: str, page: str = "docs/protocol.md") -> Row:
    """A committed leaderboard (``python -m benchmark.leaderboard``) at its biggest test size: every
    model's test accuracy at the iteration chosen on validation data, best first."""

    def cells(src: Sources) -> tuple[str, str]:
        frame = read_csv(src.path(csv), CSV_COLUMNS, dtype={"variant": str})
        frame["variant"] = frame["variant"].fillna("")  # empty: the model's only group
        rows = frame[frame["size"] == frame["size"].max()].sort_values("chosen_mean", ascending=False, na_position="last")
        models = []
        for i, r in enumerate(rows.itertuples()):
            figure = f"{percent_mean_sd(r.chosen_mean, r.chosen_sd)}%"
            solved = f"{int(r.solved_seeds)} of {int(r.n_seeds)} seeds >= {SOLVED:.0%}; "
            params = "-" if pd.isna(r.parameters) else f"{int(r.parameters):,}"
            models.append(f"`{r.model}`{f' [{r.variant}]' if r.variant else ''} {f'**{figure}**' if i == 0 else figure} "
                          f"({solved}{params} parameters)")
        first = rows.iloc[0]
        return (f"the {task_words} leaderboard: iteration chosen on validation data, matched parameters, "
                f"{span(frame['n_seeds'], str)} seeds",
                f"{size_label(first['task'], first['size'])}: {' vs '.join(models)}")

    return Row(page, (csv,), cells)


def study_row(task_words: str, folder: str, page: str) -> Row:
    """A sharing study (``python -m benchmark.study``) at its biggest test size: in-block ``shared_k2``
    against hard recurrence and the depth-wise models, mean ± sd over seeds of each run's oracle."""
    runs, study = f"{folder}/*/*/*/*", f"{folder}/study.json"

    def cells(src: Sources) -> tuple[str, str]:
        kinds = {r["model"]: r["kind"] for r in _read_json(src.path(study))["speed"]}
        rows = table([s for path in src.paths(f"{runs}/{RunDir.EVAL}") for s in read_scores(path.parent)])
        size = max(r["size"] for r in rows)
        at: dict[str, dict] = {}
        for r in (r for r in rows if r["size"] == size):
            if r["model"] in at:  # runs the leaderboard will not average: which one the README means is not ours to pick
                raise ValueError(f"{r['model']} has runs that may not be averaged together ({r['variant']}).")
            at[r["model"]] = r
        shared, recurrent = at["shared_k2"], at["recurrent"]
        depthwise = [r["oracle_mean"] for model, r in at.items() if kinds[model] == "depth-wise"]
        return (f"the sharing study on {task_words}, {len(at)} models x {span((len(r['seeds']) for r in rows), str)} seeds",
                f"{size_label(shared['task'], size)}, {ORACLE_LABEL}: {kinds['shared_k2']} `shared_k2` "
                f"{percent_mean_sd(shared['oracle_mean'], shared['oracle_sd'])}% ({shared['parameters']:,} parameters) vs "
                f"hard recurrence {percent_mean_sd(recurrent['oracle_mean'], recurrent['oracle_sd'])}% "
                f"({recurrent['parameters']:,}); depth-wise models {span(depthwise, lambda x: percent(x, 0))}%")

    return Row(page, (*run_files(runs), study), cells)


MAZE_STUDY = "reference/study_maze/study.json"


def claims(src: Sources) -> tuple[str, str]:
    """The verdicts are docs/study.md's; beside each, the maze study's figure it rests on."""
    data = _read_json(src.path(MAZE_STUDY))
    pair = next(c for c in data["comparisons"] if (c["model"], c["baseline"]) == ("shared_k2", "recurrent"))
    steps = {r["model"]: r for r in data["speed"]}
    loops = {r["model"]: r for r in data["loop_summary"]}
    depth = steps["depth_k2"]["depth"]
    return ("the paper's three claims on the algorithmic tasks (figures: mazes)",
            f"fewer parameters: **held** (`shared_k2` {percent(1 - pair['parameters'] / pair['baseline_parameters'], 0)}% "
            f"fewer than `recurrent`); trains faster: **did not hold** (median steps to "
            f"{percent(steps['shared_k2']['target'], 0)}%: {steps['shared_k2']['steps_median']:.0f} vs "
            f"{steps['recurrent']['steps_median']:.0f}); becomes recurrent: only with the loop regulariser (positions in "
            f"loops: `depth_k2` {loops['depth_k2']['loop_positions_mean']:.0f} of {depth}, `depth_k2_loopreg` "
            f"{loops['depth_k2_loopreg']['loop_positions_mean']:.0f} of {depth})")


PARITY = "reference/digits/parity.csv"


def classification(src: Sources) -> tuple[str, str]:
    frame = read_csv(src.path(PARITY), ("model", "saving", "digits_error_mean", "digits_error_std", "digits_runs"))
    shared, unshared = (frame.set_index("model").loc[m] for m in ("swrn-28-2-1", "wrn-28-2"))
    return ("classification, digits, SWRN-28-2-1 vs WRN-28-2",
            f"{percent_mean_sd(shared.digits_error_mean, shared.digits_error_std, 2)}% vs "
            f"{percent_mean_sd(unshared.digits_error_mean, unshared.digits_error_std, 2)}% error "
            f"({span((shared.digits_runs, unshared.digits_runs), lambda n: str(int(n)))} seeds) with "
            f"{percent(shared.saving)}% fewer parameters")


BENCH = "reference/bench.json"


def speed(src: Sources) -> tuple[str, str]:
    data = _read_json(src.path(BENCH))
    ratios, machine = data["ratios"], data["machine"]

    def times(rows: tuple[str, ...], key: str) -> str:
        return span((ratios[r][key] for r in rows), lambda x: f"{x:.2f}") + "x"

    fast, bf16 = ("recurrent, now", "shared k=2, now"), ("recurrent, now, bf16", "shared k=2, now, bf16")
    threads = machine["threads"]
    return (f"speed, `python -m benchmark.bench` ({machine['device'].upper()}, {threads} thread{'s' * (threads != 1)})",
            f"the fast paths {times(fast, 'train_samples_per_s')} training, {times(fast, 'eval_samples_per_s')} evaluation "
            f"against the plain code (fp32); bf16 on top: {times(bf16, 'train_samples_per_s')}, "
            f"{times(bf16, 'eval_samples_per_s')}")


ROWS: list[Row] = [
    Row("docs/maze_track.md", (f"{MAIN_RUN}/{RunDir.EVAL}", f"{MAIN_RUN}/{RunDir.CONFIG}", MAIN_BIG), main_command),
    Row("docs/splits.md", OOD_LADDERS, ood),
    Row("docs/robust_maze.md", ROBUST_LADDERS, robust),
    Row("docs/prefix_sums_track.md", (PREFIX_RUN,), prefix_sums),
    Row("docs/shortest_paths.md", (UNIT_RUN, WEIGHTED_RUN), shortest_paths),
    leaderboard_row("maze", "reference/leaderboard/maze/leaderboard.csv"),
    leaderboard_row("prefix sums", "reference/leaderboard/prefix_sums/leaderboard.csv"),
    leaderboard_row("unit shortest paths (2 epochs)", "reference/leaderboard/shortest_path/leaderboard.csv"),
    study_row("mazes", "reference/study_maze", "docs/study_maze.md"),
    study_row("prefix sums", "reference/study_prefix_sums_curriculum", "docs/study_prefix_sums.md"),
    Row("docs/study.md", (MAZE_STUDY,), claims),
    Row("docs/classification.md", (PARITY,), classification),
    Row("docs/speed.md", (BENCH,), speed),
]


def headline_table(root: Path = RESULTS, rows: list[Row] | None = None) -> str:
    """The Markdown table (with a final newline) of ``rows`` (default ``ROWS``) from the files under ``root``."""
    return "\n".join([*HEADER, *(row.render(root) for row in (ROWS if rows is None else rows))]) + "\n"


# ---------------------------------------------------------------------------- the README's block
def read_block(readme: Path) -> tuple[str, str, str]:
    """The README's text before the block (through ``BEGIN`` and its newline), the block, and the rest (from ``END``)."""
    try:
        text = readme.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read {readme} ({type(err).__name__}): give the README that holds the headline table.") from err
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ConfigError(f"{readme} needs the markers {BEGIN} and {END}, once each and in that order, around the headline "
                          "table; nothing was changed.")
    head, rest = text.split(BEGIN)
    block, tail = rest.split(END)
    return head + BEGIN + "\n", block.removeprefix("\n"), END + tail


def run(argv: list[str] | None = None) -> None:
    parser = CommandParser(prog="python -m benchmark.headline",
                           description="The README's headline table, made from the committed files under results/.")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the results root the rows' sources are under (default: results)")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", type=Path, metavar="README", help=f"replace the block between {BEGIN} and {END} there")
    action.add_argument("--check", type=Path, metavar="README", help="exit 1 when the block there differs from the files")
    args = parser.parse_args(argv)
    readme = args.write or args.check
    if readme is None:
        print(headline_table(args.results), end="")
        return
    head, block, tail = read_block(readme)  # the README is read before any result: a bad README costs nothing
    fresh = headline_table(args.results)
    if args.check:
        if block != fresh:
            print(f"{readme}'s headline table differs from the files under {args.results}; "
                  f"run python -m benchmark.headline --write {readme}.", file=sys.stderr)
            sys.exit(1)
        print(f"{readme}'s headline table matches the files under {args.results}.", file=sys.stderr)
        return
    write_text(readme, head + fresh + tail)
    print(f"written: the headline table of {readme}.", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: a missing or damaged README or source file is one sentence and exit status 2."""
    exit_on_user_error(run, argv)


__all__ = ["BEGIN", "END", "ROWS", "Row", "Sources", "headline_table", "leaderboard_row", "main", "read_block", "study_row"]
