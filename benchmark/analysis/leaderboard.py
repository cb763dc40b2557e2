"""The leaderboard: finished puzzle runs, one table per task and test size, under the protocol.

    python -m benchmark.leaderboard DIR [DIR ...] [--out OUT] [--refuse-mixed]

For each task and test size, one row per model (and per variant, below): the parameters, the
last logged training step, the training seconds and the device kind (CPU or GPU), the seeds, the
mean ± sd over seeds of the TEST accuracy at the iteration chosen on VALIDATION data (the
protocol, docs/protocol.md; the median of the chosen iterations beside it), and the oracle
beside it: the mean ± sd of each run's best iteration on the test set itself, labelled
"oracle (chosen on test)".

Runs that differ in what makes numbers incomparable are never averaged together: the precision
(``config.yaml``'s ``precision``; runs from before the option are fp32), the code version
(``RunInfo.code_version``; ``pre-protocol`` for runs that did not record one), the protocol (1:
validation data; 0: none, only the oracle), the device kind, and the recipe: any value of the
run's task, size, train, model or eval settings in config.yaml (``task.generator``,
``train.epochs``, ``model.width``, ...; ``benchmark.analysis.settings``). Such runs of one model
become separate rows whose ``variant`` names what differs (``precision=bf16, protocol=0``,
``train.epochs=2``); with ``--refuse-mixed`` they are refused instead, with one sentence.

Files (``--out``, default the first DIR): ``leaderboard.md``, ``leaderboard.csv`` and
``leaderboard.png`` (seaborn: per task and size, each row's per-seed accuracies at the chosen
iteration and the oracle). The output is deterministic: rows sorted, every number formatted with
a fixed number of digits, no dates or absolute paths, so the same runs give the same bytes.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from benchmark.config.schema import CommandParser, ConfigError, exit_on_user_error  # noqa: E402
from benchmark.infra.results import ORACLE_LABEL, EvalResult, ResultFormatError  # noqa: E402
from benchmark.analysis.settings import differing_keys, run_settings  # noqa: E402
from benchmark.infra.rundir import RunDir, finished_runs  # noqa: E402
from tasks.fileio import atomic_path, check_writable_dir, write_text  # noqa: E402

# What may not be averaged together; each becomes part of a row's variant when runs of a model differ in it.
SPLIT_KEYS = ("precision", "code_version", "protocol", "device")
# The config groups of a run's recipe (benchmark.analysis.settings): runs of one model that differ
# in any of their values (task.generator, train.epochs, model.width, size.n_train, eval.iters, ...)
# are never averaged together either.
SETTING_GROUPS = ("task", "size", "train", "model", "eval")
NO_CODE_VERSION = "pre-protocol"
CHOSEN = "chosen on validation"
# A seed counts as solving the task at this test accuracy (at the chosen iteration): a row's mean
# hides whether its spread is every seed a little off or some seeds not learning at all.
SOLVED = 0.95


@dataclass(frozen=True)
class RunScore:
    """One run at one test size, as the leaderboard reads it."""

    task: str
    size: int
    train_size: int
    model: str
    seed: int
    parameters: int
    steps: int | None  # the last logged training step
    train_seconds: float
    precision: str
    code_version: str
    protocol: int
    device: str  # "CPU" or "GPU"
    chosen_iter: int | None
    chosen: float | None  # TEST accuracy at the iteration chosen on validation (None: protocol 0)
    oracle_iter: int
    oracle: float
    settings: tuple[tuple[str, str], ...] = ()  # the run's recipe (SETTING_GROUPS), sorted (key, JSON value) pairs

    def key(self, what: str) -> str:
        return str(getattr(self, what))

    def split_values(self) -> tuple[tuple[str, str], ...]:
        """Everything that keeps this run out of another run's row: ``SPLIT_KEYS`` and its settings."""
        return tuple((k, self.key(k)) for k in SPLIT_KEYS) + self.settings


def read_scores(run_dir: Path) -> list[RunScore]:
    """The rows of one finished puzzle run (its eval.json, config.yaml and metrics.jsonl), one per test size."""
    rd = RunDir(run_dir)
    result = EvalResult.read(rd.eval)
    info = result.run
    if info is None:
        raise ResultFormatError(f"{rd.eval} has no run information (task, model, seed): it is not a run's own eval.json.")
    config = rd.read_config()
    precision = info.precision or str(config.get("precision", "fp32"))  # runs before the option: fp32
    settings = tuple(sorted((k, v) for k, v in run_settings(rd, SETTING_GROUPS).items() if k != "precision"))
    metrics = rd.read_metrics()
    steps = max((int(r.step) for r in metrics), default=None)
    device = "GPU" if info.device.startswith("cuda") else "CPU"
    return [RunScore(task=info.task, size=size, train_size=info.train_size, model=info.model, seed=info.seed,
                     parameters=info.parameters, steps=steps, train_seconds=float(info.seconds.train), precision=precision,
                     code_version=info.code_version or NO_CODE_VERSION, protocol=result.protocol, device=device,
                     chosen_iter=s.chosen_iter, chosen=getattr(s, "chosen", None) if s.chosen_iter is not None else None,
                     oracle_iter=s.best_iter, oracle=s.best, settings=settings)
            for size, s in sorted(result.summary.items())]


def collect(folders: list[Path]) -> list[RunScore]:
    """Every finished puzzle run's rows below ``folders`` (classification runs are left out)."""
    scores = []
    for run in finished_runs(folders):
        if run.is_classification():
            continue
        scores += read_scores(run.path)
    if not scores:
        raise ConfigError(f"no finished puzzle runs (folders with eval.json) under {', '.join(map(str, folders))}.")
    return scores


def _mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _pct(mean: float | None, sd: float | None) -> str:
    return "-" if mean is None else f"{100 * mean:.1f} ± {100 * sd:.1f}"


def _num(value: float | None, digits: int) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def table(scores: list[RunScore], refuse_mixed: bool = False) -> list[dict[str, object]]:
    """The leaderboard's rows, sorted by task, train size, test size, model and variant.

    Runs of one model, task and size that differ in any of ``SPLIT_KEYS`` become separate rows
    (their ``variant`` names the differing values), or with ``refuse_mixed`` a ``ConfigError``.
    Two runs of one group with the same seed are refused (a run found twice)."""
    groups: dict[tuple, list[RunScore]] = {}
    for s in scores:
        groups.setdefault((s.task, s.train_size, s.size, s.model, s.split_values()), []).append(s)
    by_model: dict[tuple, list[tuple]] = {}
    for key in groups:
        by_model.setdefault(key[:4], []).append(key)
    rows = []
    for model_key, keys in sorted(by_model.items()):
        values = [dict(key[4]) for key in keys]
        found = differing_keys(values)
        differ = [k for k in SPLIT_KEYS if k in found] + [k for k in found if k not in SPLIT_KEYS]
        if differ and refuse_mixed:
            found = "; ".join(f"{k}: {', '.join(sorted({v.get(k, '-') for v in values}))}" for k in differ)
            raise ConfigError(f"the runs of {model_key[3]} on {model_key[0]} size {model_key[2]} differ in {found}, "
                              f"and --refuse-mixed does not average or split them.")
        for key in sorted(keys):
            runs = sorted(groups[key], key=lambda s: s.seed)
            first = runs[0]
            seeds = [s.seed for s in runs]
            if len(set(seeds)) != len(seeds):
                raise ConfigError(f"{model_key[3]} on {model_key[0]} size {model_key[2]} has two runs of seed "
                                  f"{next(x for x in seeds if seeds.count(x) > 1)} in the folders given; give each run once.")
            chosen = [s.chosen for s in runs if s.chosen is not None]
            chosen_mean, chosen_sd = _mean_sd(chosen) if len(chosen) == len(runs) else (None, None)
            oracle_mean, oracle_sd = _mean_sd([s.oracle for s in runs])
            steps = [s.steps for s in runs if s.steps is not None]
            rows.append(dict(
                task=key[0], train_size=key[1], size=key[2], model=key[3],
                variant=", ".join(f"{k}={dict(key[4]).get(k, '-')}" for k in differ),
                parameters=runs[0].parameters if len({s.parameters for s in runs}) == 1 else None,
                steps=round(statistics.fmean(steps)) if steps else None,
                train_seconds=statistics.fmean(s.train_seconds for s in runs), device=first.device,
                precision=first.precision, code_version=first.code_version, protocol=first.protocol, seeds=seeds,
                chosen_mean=chosen_mean, chosen_sd=chosen_sd,
                solved_seeds=sum(c >= SOLVED for c in chosen) if chosen_mean is not None else None,
                chosen_iter_median=statistics.median(s.chosen_iter for s in runs) if chosen_mean is not None else None,
                oracle_mean=oracle_mean, oracle_sd=oracle_sd,
                oracle_iter_median=statistics.median(s.oracle_iter for s in runs),
                split_values=key[4],
            ))
    return rows


CSV_COLUMNS = ("task", "train_size", "size", "model", "variant", "parameters", "steps", "train_seconds", "device",
               "precision", "code_version", "protocol", "seeds", "n_seeds", "chosen_mean", "chosen_sd", "solved_seeds",
               "chosen_iter_median", "oracle_mean", "oracle_sd", "oracle_iter_median")


def to_csv(rows: list[dict[str, object]]) -> str:
    """The rows as CSV, every number in a fixed format (accuracies as fractions to 6 decimals)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        writer.writerow([r["task"], r["train_size"], r["size"], r["model"], r["variant"],
                         "" if r["parameters"] is None else r["parameters"], "" if r["steps"] is None else r["steps"],
                         _num(r["train_seconds"], 1), r["device"], r["precision"], r["code_version"], r["protocol"],
                         " ".join(map(str, r["seeds"])), len(r["seeds"]), _num(r["chosen_mean"], 6), _num(r["chosen_sd"], 6),
                         "" if r["solved_seeds"] is None else r["solved_seeds"], _num(r["chosen_iter_median"], 1), _num(r["oracle_mean"], 6), _num(r["oracle_sd"], 6),
                         _num(r["oracle_iter_median"], 1)])
    return buffer.getvalue()


def to_markdown(rows: list[dict[str, object]]) -> str:
    """One Markdown table per task and test size."""
    out = ["# Leaderboard", "",
           f"Test accuracy (%, mean ± sd over seeds) at the iteration chosen on validation data (docs/protocol.md), "
           f"and the {ORACLE_LABEL}: each run's best iteration on the test set itself, shown for reference only. "
           "Protocol 0: runs without validation data (only the oracle). Rows of one model that differ in "
           f"{', '.join(SPLIT_KEYS)} or in their recipe (the task, size, train, model and eval settings of config.yaml) "
           f"are never averaged together: their variant says what differs. Seeds >= {SOLVED:.0%}: how many seeds reach "
           f"that test accuracy at the chosen iteration.", ""]
    for (task, train_size, size), group in _by_table(rows):
        out += [f"## {task}, trained on {train_size}, tested on {size}", "",
                f"| model | variant | params | steps | train s | precision | code | protocol | seeds "
                f"| test % at val-chosen iter | seeds >= {SOLVED:.0%} | val-chosen iter (median) | {ORACLE_LABEL} % "
                "| oracle iter (median) |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in group:
            params = "-" if r["parameters"] is None else f"{r['parameters']:,}"
            steps = "-" if r["steps"] is None else f"{r['steps']:,}"
            chosen_iter = "-" if r["chosen_iter_median"] is None else f"{r['chosen_iter_median']:g}"
            solved = "-" if r["solved_seeds"] is None else f"{r['solved_seeds']} of {len(r['seeds'])}"
            out.append(f"| {r['model']} | {r['variant'] or '-'} | {params} | {steps} | {r['device']} {r['train_seconds']:.0f} "
                       f"| {r['precision']} | {r['code_version']} | {r['protocol']} | {len(r['seeds'])} "
                       f"({', '.join(map(str, r['seeds']))}) | {_pct(r['chosen_mean'], r['chosen_sd'])} | {solved} | {chosen_iter} "
                       f"| {_pct(r['oracle_mean'], r['oracle_sd'])} | {r['oracle_iter_median']:g} |")
        out.append("")
    return "\n".join(out)


def summary_table(csv_path: Path, size: int) -> str:
    """The short table the docs quote from a committed ``leaderboard.csv`` at test size ``size``
    (model | params | test % at the chosen iteration | seeds >= SOLVED | iteration | oracle),
    best first; docs pages mark it ``<!-- leaderboard-summary: CSV SIZE -->`` and a test checks it."""
    frame = pd.read_csv(csv_path, dtype={"variant": str}).fillna({"variant": ""})
    rows = frame[frame["size"] == size].sort_values(["chosen_mean", "model"], ascending=[False, True])
    out = [f"| model | params | test % at the val-chosen iteration | seeds >= {SOLVED:.0%} | iteration (median) "
           f"| {ORACLE_LABEL} % (iteration) |", "|---|---|---|---|---|---|"]
    for r in rows.itertuples():
        name = f"`{r.model}`" + (f" [{r.variant}]" if r.variant else "")
        params = "-" if pd.isna(r.parameters) else f"{int(r.parameters):,}"
        out.append(f"| {name} | {params} | **{_pct(r.chosen_mean, r.chosen_sd)}** | {int(r.solved_seeds)} of {int(r.n_seeds)} "
                   f"| {r.chosen_iter_median:g} | {_pct(r.oracle_mean, r.oracle_sd)} ({r.oracle_iter_median:g}) |")
    return "\n".join(out)


def _by_table(rows: list[dict[str, object]]) -> list[tuple[tuple, list[dict[str, object]]]]:
    tables: dict[tuple, list[dict[str, object]]] = {}
    for r in rows:
        tables.setdefault((r["task"], r["train_size"], r["size"]), []).append(r)
    return sorted(tables.items())


def _label(row: dict[str, object]) -> str:
    return f"{row['model']} [{row['variant']}]" if row["variant"] else str(row["model"])


def figure(rows: list[dict[str, object]], scores: list[RunScore]) -> plt.Figure:
    """Per task and test size, one panel: per row, the per-seed test accuracies at the iteration
    chosen on validation and at the oracle (bars: means; points: seeds)."""
    tables = _by_table(rows)
    ncols = min(2, len(tables))
    nrows = math.ceil(len(tables) / ncols)
    width = max(5.0, 1.5 * max(len(g) for _, g in tables) + 2)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, 4.2 * nrows + 0.4), squeeze=False, layout="constrained")
    for ax in axes.flat[len(tables):]:
        ax.set_visible(False)
    for ax, ((task, train_size, size), group) in zip(axes.flat, tables):
        points = []
        for r in group:
            for s in scores:
                if (s.task, s.train_size, s.size, s.model) == (task, train_size, size, r["model"]) and s.seed in r["seeds"] \
                        and s.split_values() == r["split_values"]:
                    if s.chosen is not None:
                        points.append(dict(row=_label(r), accuracy=s.chosen, selection=CHOSEN))
                    points.append(dict(row=_label(r), accuracy=s.oracle, selection=ORACLE_LABEL))
        frame = pd.DataFrame(points)
        order = [_label(r) for r in group]
        hue_order = [CHOSEN, ORACLE_LABEL]
        sns.barplot(data=frame, x="row", y="accuracy", hue="selection", order=order, hue_order=hue_order, errorbar=None,
                    alpha=0.6, ax=ax)
        # No jitter: it is random, and the same runs must draw the same bytes.
        sns.stripplot(data=frame, x="row", y="accuracy", hue="selection", order=order, hue_order=hue_order, dodge=True,
                      jitter=False, legend=False, palette=["black", "black"], size=4, ax=ax)
        note = "" if any(r["protocol"] for r in group) else " (no validation data: oracle only)"
        ax.set(title=f"{task}: trained on {train_size}, tested on {size}{note}", ylim=(0, 1.02), xlabel="", ylabel="test accuracy (points: seeds)")
        ax.tick_params(axis="x", labelrotation=20)
        handles, labels = ax.get_legend_handles_labels()
        ax.get_legend().remove()  # one legend for the figure, below the panels, where it hides no bar
    fig.legend(handles, labels, loc="outside lower center", ncol=2, fontsize="small")
    return fig


def save_png(fig: plt.Figure, path: Path) -> None:
    """Write ``fig`` atomically as a PNG without the metadata that would make equal figures differ."""
    try:
        if fig.get_layout_engine() is None:
            fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png", metadata={"Software": None})
    finally:
        plt.close(fig)


def leaderboard(folders: list[Path], out: Path, refuse_mixed: bool = False) -> list[dict[str, object]]:
    """Read every finished puzzle run below ``folders`` and write leaderboard.md/.csv/.png to ``out``;
    returns the rows. Every run is read and the rows made before anything is written."""
    scores = collect(folders)
    rows = table(scores, refuse_mixed)
    check_writable_dir(out, "the leaderboard")
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "leaderboard.md", to_markdown(rows))
    write_text(out / "leaderboard.csv", to_csv(rows))
    save_png(figure(rows, scores), out / "leaderboard.png")
    return rows


def run(argv: list[str] | None = None) -> None:
    parser = CommandParser(prog="python -m benchmark.leaderboard",
                           description="Leaderboard of finished puzzle runs: test accuracy at the iteration chosen on validation.")
    parser.add_argument("folders", nargs="+", type=Path, help="folders searched recursively for finished run directories")
    parser.add_argument("--out", type=Path, help="where to write leaderboard.md, .csv and .png (default: the first folder)")
    parser.add_argument("--refuse-mixed", action="store_true",
                        help="refuse runs of one model that differ in precision, code version, protocol, device or recipe "
                             "instead of listing them as separate rows")
    args = parser.parse_args(argv)
    out = args.out or args.folders[0]
    leaderboard(args.folders, out, args.refuse_mixed)
    print((out / "leaderboard.md").read_text(), end="")
    print(f"written: {out / 'leaderboard.md'}, {out / 'leaderboard.csv'}, {out / 'leaderboard.png'}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: user errors (a damaged run file, mixed runs with --refuse-mixed, an
    output folder that cannot be written) are one sentence and exit status 2."""
    exit_on_user_error(run, argv)


__all__ = ["RunScore", "collect", "figure", "leaderboard", "main", "read_scores", "summary_table", "table", "to_csv",
           "to_markdown"]
