"""The sharing study's verdict tables: training speed, learned loops, and the numbers behind the paper's claims.

    python -m benchmark.study results/study [--out DIR]

Reads every finished puzzle run below the folders (``benchmark.analysis.report.find_runs``; each run
directory as ``python -m benchmark`` leaves it: config.yaml, metrics.jsonl, eval.json, and
lsm.json/fold.json for models with a learned bank) and writes to ``--out`` (default: the first
folder):

    study.md     markdown tables to paste into the README: training speed per model, paired
                 speed comparisons at equal depth, the loops of every depth-wise run, the loops
                 and the loop regulariser over seeds, extrapolation of the folded models beside
                 hard recurrence, and the numbers per claim of the paper
    study.json   the same tables as lists of records (strict JSON: a missing figure is null)
    study.png    extrapolation curves on each task's biggest test size: the folded depth-wise
                 models, hard recurrence and the in-block shared models (band: min..max over seeds)
    study_training.png
                 probe accuracy against training steps, every run a line, the target dashed:
                 how each model got to the target, or where it stalled below it

A model's *kind* is the one its class declares (``benchmark.models.contract``: ``config_kind`` of
the class the config's ``_target_`` names, through ``benchmark.models.registry``; the config is
read as data, never instantiated), not its name: ``unshared`` (every position its own weights:
the feed-forward baseline), ``recurrent`` (one unshared block reused), ``in-block`` (a "shared"
model of one block position, its convs mixed from k templates) or ``depth-wise`` (a "shared"
model of several block positions). A config naming no registered class that declares a kind
(a plugin not installed) is ``unknown``: listed, never compared.
Comparisons are at equal depth and width: a depth-wise model against the unshared stack, an
in-block shared model against hard recurrence.

Training speed: a run *reaches* the target at the first metrics record whose ``probe_acc`` (the
model at train.iters on the first train.probe_size training samples) is at least
``train.stop_at_acc``; its steps and wall seconds are that record's. The median over seeds counts
a run that never reached it as slower than every run that did (so it is infinite, shown as
"> cap", when half the runs or more missed). The study's cap rule: every run trained to the
target or for at least 5x the fastest family's median steps; a warning line names each run that
stopped short of it.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.config.schema import ConfigError, exit_on_user_error
from tasks.fileio import check_writable_dir, write_json, write_text
from benchmark.analysis.plots import plot_study_extrapolation, plot_study_training, read_metrics
from benchmark.analysis.step_cost import step_cost_markdown, step_costs
from benchmark.analysis.study_tables import (_num, _pct, _steps, claims_markdown, comparisons_markdown, extrapolation_markdown,
                                             loop_summary_markdown, loops_markdown, speed_markdown)
from benchmark.analysis.study_runs import (BASELINE_KIND, KINDS, StudyRun, duplicate_notes, incomplete_notes, model_kind,  # noqa: F401
                                           read_study, read_study_run)
from benchmark.infra.results import FoldResult, SimilarityRecord

CAP_FACTOR = 5  # the study's cap rule: a run that misses the target trained >= 5x the fastest family's median
FOLD_GOAL_POINTS = 0.05  # the study's goal for |accuracy change from folding| at the training size, in points
# ---------------------------------------------------------------------------- statistics
def mean_sd(values: Iterable[float | None]) -> tuple[float, float]:
    """Mean and sample standard deviation of the values that are not None (NaN: none; sd 0 for one value)."""
    xs = [v for v in values if v is not None]
    if not xs:
        return math.nan, math.nan
    return float(np.mean(xs)), float(np.std(xs, ddof=1)) if len(xs) > 1 else 0.0


def censored_median(values: Iterable[float | None]) -> float:
    """The median where None (never reached the target) counts as slower than every value: inf once
    half the values or more are None (NaN: no values)."""
    xs = [math.inf if v is None else v for v in values]
    return float(np.median(xs)) if xs else math.nan


def ratio(a: float, b: float) -> float:
    return a / b if math.isfinite(a) and math.isfinite(b) and b > 0 else math.nan


def loop_positions(fold: FoldResult) -> int:
    """Block positions in a loop of two positions or more."""
    return sum(len(loop.positions) for loop in fold.report.loops if len(loop.positions) >= 2)


def loop_ranges(fold: FoldResult) -> str:
    """The loops of two positions or more as position ranges, e.g. ``0-3 7-9`` (``none``: every
    position stayed its own layer); the other positions each stayed a layer of their own."""
    return " ".join(f"{loop.positions[0]}-{loop.positions[-1]}" for loop in fold.report.loops if len(loop.positions) > 1) or "none"


def paired_cosine(similarity: SimilarityRecord) -> float:
    """Mean |cos| of the layer pairs ``benchmark.training.loop_regulariser.loop_pairs`` pulls together in a
    depth-wise bank: slot c of position p with slot c of position p + 1 (layers i and i + 4), read
    from lsm.json's LSM (its entries are those |cos|). NaN: no learned bank with several positions."""
    values = [bank.lsm[i][i + bank.layers_per_position] for bank in similarity.banks.values()
              if bank.learned and bank.layers_per_position for i in range(len(bank.lsm) - bank.layers_per_position)]
    return float(np.mean(values)) if values else math.nan


def fold_delta_points(run: StudyRun) -> float:
    """Accuracy change from folding at the training size and training depth, in points (NaN: no fold)."""
    if run.fold is None or run.train_size not in run.fold.comparison:
        return math.nan
    return 100 * run.fold.comparison[run.train_size].delta_at_train_depth


# ---------------------------------------------------------------------------- tables
def speed_table(runs: list[StudyRun]) -> pd.DataFrame:
    """Per task and model: runs reaching the target, steps and seconds to it, the cap, the final probe accuracy."""
    rows = []
    for (task, model), group in _groups(runs):
        steps, secs = [r.reached_step for r in group], [r.reached_seconds for r in group]
        (steps_mean, steps_sd), (secs_mean, secs_sd) = mean_sd(steps), mean_sd(secs)
        probe_mean, probe_sd = mean_sd(r.final_probe_acc for r in group)
        rows.append(dict(task=task, model=model, kind=group[0].kind, depth=group[0].depth, parameters=group[0].parameters,
                         target=group[0].target, seeds=sorted(r.seed for r in group), runs=len(group),
                         reached=sum(s is not None for s in steps), steps_mean=steps_mean, steps_sd=steps_sd,
                         steps_median=censored_median(steps), seconds_mean=secs_mean, seconds_sd=secs_sd,
                         seconds_median=censored_median(secs), cap=max(r.cap for r in group),
                         missed_steps=sorted(r.steps for r in group if r.reached_step is None),
                         final_probe_mean=probe_mean, final_probe_sd=probe_sd))
    return pd.DataFrame(rows)


def cap_warnings(runs: list[StudyRun], speed: pd.DataFrame) -> list[str]:
    """One line per run that missed the target after fewer than ``CAP_FACTOR`` x the fastest family's
    median steps (per task), and one per task where no family's median is finite."""
    lines = []
    for task, table in speed.groupby("task", sort=True):
        finite = table[np.isfinite(table["steps_median"])]
        if finite.empty:
            lines.append(f"warning: {task}: no model reached the target in half its runs or more, so the cap rule "
                         f"(>= {CAP_FACTOR}x the fastest family's median steps) cannot be checked.")
            continue
        fastest = finite.loc[finite["steps_median"].idxmin()]
        need = CAP_FACTOR * fastest["steps_median"]
        for r in sorted((r for r in runs if r.task == task and r.reached_step is None), key=lambda r: (r.model, r.seed)):
            if r.steps < need:
                lines.append(f"warning: {task} / {r.model} seed {r.seed} stopped at {r.steps} steps without reaching "
                             f"{r.target:g}: fewer than {CAP_FACTOR}x the fastest family's median ({fastest['model']}: "
                             f"{fastest['steps_median']:g} steps, so >= {need:g}).")
    return lines


def comparisons_table(runs: list[StudyRun], speed: pd.DataFrame) -> pd.DataFrame:
    """Each shared model against its baseline at equal depth and width (``BASELINE_KIND``): the ratio
    of median steps and seconds to the target (below 1: the shared model is faster), per-seed step
    ratios where both runs reached it, parameters and training-size accuracy at the training depth."""
    by_model = {(r.task, r.model): [] for r in runs}
    for r in runs:
        by_model[(r.task, r.model)].append(r)
    rows = []
    for (task, model), group in sorted(by_model.items()):
        head = group[0]
        if head.kind not in BASELINE_KIND:
            continue
        for (base_task, base), base_group in sorted(by_model.items()):
            b = base_group[0]
            if base_task != task or b.kind != BASELINE_KIND[head.kind] or (b.depth, b.width) != (head.depth, head.width):
                continue
            mine, theirs = {r.seed: r for r in group}, {r.seed: r for r in base_group}
            seeds = sorted(set(mine) & set(theirs))
            s = speed.set_index(["task", "model"])
            per_seed = {seed: ratio(mine[seed].reached_step or math.inf, theirs[seed].reached_step or math.inf) for seed in seeds}
            acc_a = mean_sd(mine[x].evaluation.summary[head.train_size].at_train_depth for x in seeds)
            acc_b = mean_sd(theirs[x].evaluation.summary[b.train_size].at_train_depth for x in seeds)
            rows.append(dict(task=task, model=model, baseline=base, kind=head.kind, depth=head.depth, seeds=seeds,
                             steps_ratio=ratio(s.loc[(task, model), "steps_median"], s.loc[(task, base), "steps_median"]),
                             seconds_ratio=ratio(s.loc[(task, model), "seconds_median"], s.loc[(task, base), "seconds_median"]),
                             seed_steps_ratios={str(k): v for k, v in per_seed.items()},
                             parameters=head.parameters, baseline_parameters=b.parameters,
                             train_acc_mean=acc_a[0], train_acc_sd=acc_a[1], baseline_train_acc_mean=acc_b[0],
                             baseline_train_acc_sd=acc_b[1]))
    return pd.DataFrame(rows)


def depthwise_runs(runs: list[StudyRun]) -> list[StudyRun]:
    return sorted((r for r in runs if r.kind == "depth-wise" and r.fold is not None), key=lambda r: (r.task, r.model, r.seed))


def loops_table(runs: list[StudyRun]) -> pd.DataFrame:
    """Per depth-wise run: its loops, what folding merged, the accuracy change from folding, mean |cos| of paired layers."""
    rows = []
    for r in depthwise_runs(runs):
        rep = r.fold.report
        rows.append(dict(task=r.task, model=r.model, seed=r.seed, loop_weight=r.loop_weight, positions=rep.positions,
                         loops=loop_ranges(r.fold), loop_members=[loop.positions for loop in rep.loops], num_loops=rep.num_loops, loop_positions=loop_positions(r.fold),
                         block_weights_before=rep.block_weights_before, block_weights_after=rep.block_weights_after,
                         parameters_before=rep.parameters_before, parameters_after=rep.parameters_after,
                         fold_delta_points=fold_delta_points(r),
                         paired_cos=paired_cosine(r.similarity) if r.similarity is not None else math.nan,
                         run=str(r.run_dir)))
    return pd.DataFrame(rows)


def extrapolation_table(runs: list[StudyRun]) -> pd.DataFrame:
    """Per depth-wise run and test size past the training size: the unfolded and the folded model
    and the hard-recurrent run of the same task and seed: best accuracy, its iteration, accuracy at the last iteration."""
    recurrent = {(r.task, r.seed, r.width): r for r in runs if r.kind == "recurrent"}
    rows = []
    for r in depthwise_runs(runs):
        rec = recurrent.get((r.task, r.seed, r.width))
        for size in sorted(s for s in r.evaluation.sizes if s != r.train_size):
            row = dict(task=r.task, size=size, model=r.model, seed=r.seed)
            for label, result in (("unfolded", r.evaluation), ("folded", r.fold.evaluation),
                                  ("recurrent", rec.evaluation if rec is not None else None)):
                s = result.summary.get(size) if result is not None else None
                row.update({f"{label}_best": s.best if s else math.nan, f"{label}_best_iter": s.best_iter if s else None,
                            f"{label}_last": s.final if s else math.nan, f"{label}_last_iter": s.final_iter if s else None})
            rows.append(row)
    return pd.DataFrame(rows)


def loop_summary(loops: pd.DataFrame, extrapolation: pd.DataFrame) -> pd.DataFrame:
    """Per task and depth-wise model over seeds (mean, sd): positions in loops, loops, mean |cos| of
    paired layers, the fold's accuracy change (and its largest |change|), and the folded model's best
    and last accuracy on the biggest test size. The loop regulariser's effect: rows with and without loop_weight."""
    if loops.empty:
        return pd.DataFrame()
    biggest = extrapolation[extrapolation["size"] == extrapolation.groupby("task")["size"].transform("max")]
    merged = loops.merge(biggest[["task", "model", "seed", "size", "folded_best", "folded_last"]], on=["task", "model", "seed"], how="left")
    rows = []
    for (task, model), g in merged.groupby(["task", "model"], sort=True):
        row = dict(task=task, model=model, loop_weight=g["loop_weight"].iloc[0], seeds=sorted(g["seed"].tolist()),
                   size=g["size"].max(), max_abs_fold_delta_points=g["fold_delta_points"].abs().max())
        for column in ("loop_positions", "num_loops", "paired_cos", "fold_delta_points", "folded_best", "folded_last"):
            row[f"{column}_mean"], row[f"{column}_sd"] = mean_sd(None if pd.isna(v) else float(v) for v in g[column])
        rows.append(row)
    return pd.DataFrame(rows)


def claims_table(speed: pd.DataFrame, comparisons: pd.DataFrame, summary: pd.DataFrame, runs: list[StudyRun]) -> pd.DataFrame:
    """The numbers behind each of the paper's three claims, per task and comparison (the verdict is the reader's)."""
    rows = []
    for c in comparisons.itertuples():
        saving = 1 - c.parameters / c.baseline_parameters
        rows.append(dict(task=c.task, claim="fewer parameters at equal accuracy", comparison=f"{c.model} vs {c.baseline}",
                         numbers=f"{c.parameters:,} vs {c.baseline_parameters:,} parameters ({100 * saving:.0f}% fewer); "
                                 f"training size at training depth {_pct(c.train_acc_mean, c.train_acc_sd)} vs "
                                 f"{_pct(c.baseline_train_acc_mean, c.baseline_train_acc_sd)} %", seeds=c.seeds))
    for c in comparisons.itertuples():
        s = speed.set_index(["task", "model"])
        a, b = s.loc[(c.task, c.model)], s.loc[(c.task, c.baseline)]
        rows.append(dict(task=c.task, claim="trains faster", comparison=f"{c.model} vs {c.baseline}",
                         numbers=f"median steps to {a['target']:g} {_steps(a['steps_median'])} vs {_steps(b['steps_median'])} "
                                 f"(ratio {_num(c.steps_ratio)}), median seconds {_steps(a['seconds_median'])} vs "
                                 f"{_steps(b['seconds_median'])} (ratio {_num(c.seconds_ratio)}); reached "
                                 f"{a['reached']}/{a['runs']} vs {b['reached']}/{b['runs']}", seeds=c.seeds))
    recurrent = _recurrent_biggest(runs)
    for s in summary.itertuples() if not summary.empty else []:
        rec = recurrent.get(s.task)
        rec_text = f"; hard recurrence {_pct(*rec[:2])} % (seeds {' '.join(map(str, rec[2]))})" if rec else ""
        rows.append(dict(task=s.task, claim="becomes recurrent and extrapolates better", comparison=f"{s.model} folded vs recurrent",
                         numbers=f"{_num(s.loop_positions_mean, 1)} positions in loops, max abs fold change "
                                 f"{_num(s.max_abs_fold_delta_points, 3)} points (goal <= {FOLD_GOAL_POINTS}); best on size "
                                 f"{s.size}: folded {_pct(s.folded_best_mean, s.folded_best_sd)} %{rec_text}", seeds=s.seeds))
    return pd.DataFrame(rows, columns=["task", "claim", "comparison", "numbers", "seeds"])


def _recurrent_biggest(runs: list[StudyRun]) -> dict[str, tuple[float, float, list[int]]]:
    """Per task: hard recurrence's best accuracy on the biggest test size (mean, sd, seeds)."""
    out = {}
    for task in sorted({r.task for r in runs}):
        rec = [r for r in runs if r.task == task and r.kind == "recurrent"]
        if rec:
            out[task] = (*mean_sd(r.evaluation.summary[r.biggest_size].best for r in rec), sorted(r.seed for r in rec))
    return out


def _groups(runs: list[StudyRun]) -> list[tuple[tuple[str, str], list[StudyRun]]]:
    groups: dict[tuple[str, str], list[StudyRun]] = {}
    for r in sorted(runs, key=lambda r: (r.task, KINDS.index(r.kind), r.model, r.seed)):
        groups.setdefault((r.task, r.model), []).append(r)
    return list(groups.items())


# ---------------------------------------------------------------------------- markdown
def study_curves(runs: list[StudyRun]) -> pd.DataFrame:
    """Long table (task, size, train_iters, model, seed, iteration, accuracy) on each task's biggest
    test size: the folded depth-wise models (labelled ``<model> (folded)``), hard recurrence, in-block shared."""
    biggest = {task: max(r.biggest_size for r in runs if r.task == task) for task in {r.task for r in runs}}
    rows = []
    for r in runs:
        if r.kind == "depth-wise" and r.fold is not None:
            label, result = f"{r.model} (folded)", r.fold.evaluation
        elif r.kind in ("recurrent", "in-block"):
            label, result = r.model, r.evaluation
        else:
            continue
        size = biggest[r.task]
        if size in result.accuracy:
            rows += [dict(task=r.task, size=size, train_iters=result.train_iters, model=label, seed=r.seed, iteration=t + 1,
                          accuracy=a) for t, a in enumerate(result.accuracy[size])]
    return pd.DataFrame(rows)


def training_curves(runs: list[StudyRun]) -> pd.DataFrame:
    """Long table (task, model, seed, step, probe_acc, target) of every run's probe records."""
    return pd.DataFrame([dict(task=r.task, model=r.model, seed=r.seed, step=m["step"], probe_acc=m["probe_acc"], target=r.target)
                         for r in runs for m in read_metrics(r.run_dir) if "probe_acc" in m])


# ---------------------------------------------------------------------------- the command
def _records(frame: pd.DataFrame) -> list[dict]:
    """Rows as strict-JSON records: NaN and infinity become null."""
    def clean(v: Any) -> Any:
        if isinstance(v, (float, np.floating)):
            return float(v) if math.isfinite(v) else None
        if isinstance(v, np.integer):
            return int(v)
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    return [{k: clean(v) for k, v in row.items()} for row in frame.to_dict("records")]


def study(folders: list[Path], out: Path, step_cost: int = 0) -> dict[str, Any]:
    """Write study.md, study.json and study.png to ``out``; returns what study.json holds.

    ``step_cost`` > 0: also time each model's training step (``step_costs``, that many steps per
    measurement) and convert steps to target into seconds at equal load."""
    runs = read_study(folders)
    speed = speed_table(runs)
    costs = step_costs(runs, steps=step_cost) if step_cost > 0 else None
    cap, notes = cap_warnings(runs, speed), duplicate_notes(runs) + incomplete_notes(folders)
    warnings = cap + notes
    comparisons = comparisons_table(runs, speed)
    loops, extrapolation = loops_table(runs), extrapolation_table(runs)
    summary = loop_summary(loops, extrapolation)
    claims = claims_table(speed, comparisons, summary, runs)
    out.mkdir(parents=True, exist_ok=True)
    curves = study_curves(runs)
    figure = plot_study_extrapolation(curves, out / "study.png") if not curves.empty else None
    training = training_curves(runs)
    training_figure = plot_study_training(training, out / "study_training.png") if not training.empty else None
    # One LSM heatmap per task, of its first depth-wise run (each run draws its own lsm.png).
    lsm_examples = {task: Path(g["run"].iloc[0]) / "lsm.png" for task, g in loops.groupby("task")} if not loops.empty else {}
    sections = [
        "## Training speed", "Steps and wall seconds to the first record whose probe accuracy reaches train.stop_at_acc; "
        "mean ± sd over the runs that reached it; the median counts a miss as slower than every hit.", speed_markdown(speed),
        *(cap or [f"Cap rule held: every run reached the target or trained >= {CAP_FACTOR}x the fastest family's median steps."]), *notes,
        *([f"Probe accuracy during training, every run: ![training]({training_figure.name})"] if training_figure else []),
        *(["## Seconds per step, measured side by side", f"Each model's own training step, {step_cost} steps per measurement, "
           f"models interleaved, one thread, median of 3 (``--step-cost``): the study's wall seconds above include whatever else "
           f"ran on the machine.", step_cost_markdown(costs, speed)] if costs is not None else []),
        "## Paired speed comparisons at equal depth", "Ratio below 1: the shared model reached the target in fewer steps or seconds.",
        comparisons_markdown(comparisons) if not comparisons.empty else "No pairs at equal depth and width.",
        "## Loops of the depth-wise models", loops_markdown(loops) if not loops.empty else "No depth-wise runs with a fold.",
        *(f"LSM over depth, {task}: ![LSM]({_relative(path, out)})" for task, path in lsm_examples.items() if path.exists()),
        "## Loops and the loop regulariser over seeds", loop_summary_markdown(summary) if not summary.empty else "-",
        "## Extrapolation: unfolded, folded, hard recurrence", extrapolation_markdown(extrapolation) if not extrapolation.empty else "-",
        *([f"![extrapolation]({figure.name})"] if figure else []),
        "## The paper's claims", claims_markdown(claims),
    ]
    write_text(out / "study.md", "\n\n".join(sections) + "\n")
    data = dict(cap_warnings=warnings, speed=_records(speed), step_costs=_records(costs) if costs is not None else [], comparisons=_records(comparisons), loops=_records(loops),
                loop_summary=_records(summary), extrapolation=_records(extrapolation), claims=_records(claims))
    write_json(out / "study.json", data)
    return data


def _relative(path: Path, start: Path) -> str:
    try:
        return str(path.resolve().relative_to(start.resolve()))
    except ValueError:
        return str(path)


def run(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The sharing study's tables (training speed, loops, claims) and figure.")
    parser.add_argument("folders", nargs="+", type=Path, help="folders searched recursively for run directories")
    parser.add_argument("--out", type=Path, help="where to write study.md, study.json, study.png (default: the first folder)")
    parser.add_argument("--step-cost", type=int, default=0, metavar="STEPS",
                        help="also time each model's training step side by side (STEPS per measurement; 0: no)")
    args = parser.parse_args(argv)
    if args.step_cost < 0:
        raise ConfigError(f"--step-cost must be an integer >= 0 (0: no timing), got {args.step_cost}.")
    out = args.out or args.folders[0]
    check_writable_dir(out, "the study")  # before the runs are read and anything is computed
    data = study(args.folders, out, args.step_cost)
    print((out / "study.md").read_text(), end="")
    for line in data["cap_warnings"]:  # also in study.md; repeated where a terminal shows it last
        print(line, file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    exit_on_user_error(run, argv)


if __name__ == "__main__":
    main()
