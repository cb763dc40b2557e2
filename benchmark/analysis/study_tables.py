"""The study's verdict tables as Markdown: one function per table of ``benchmark.analysis.study``."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import pandas as pd

from benchmark.analysis.formatting import percent_mean_sd

def _num(x: float, digits: int = 2) -> str:
    return "-" if x is None or pd.isna(x) else f"{x:.{digits}f}"


_pct = percent_mean_sd  # the one percent rule of reports and studies


def _steps(x: float) -> str:
    return "> cap" if x == math.inf else _num(x, 0)


def _pm(mean: float, sd: float, digits: int = 0) -> str:
    return "-" if pd.isna(mean) else f"{mean:.{digits}f} ± {0 if pd.isna(sd) else sd:.{digits}f}"


def _table(header: list[str], rows: Iterable[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines)


def speed_markdown(speed: pd.DataFrame) -> str:
    return _table(["task", "model", "kind", "depth", "params", "reached / runs", "steps to target: mean ± sd", "median",
                   "seconds to target: mean ± sd", "median", "cap (steps of the runs that missed)", "final probe acc %"],
                  ([r.task, r.model, r.kind, r.depth, f"{r.parameters:,}", f"{r.reached}/{r.runs}", _pm(r.steps_mean, r.steps_sd),
                    _steps(r.steps_median), _pm(r.seconds_mean, r.seconds_sd, 1), _steps(r.seconds_median) if r.seconds_median == math.inf
                    else _num(r.seconds_median, 1), f"{r.cap} ({', '.join(map(str, r.missed_steps)) or '-'})",
                    _pct(r.final_probe_mean, r.final_probe_sd)] for r in speed.itertuples()))


def comparisons_markdown(comparisons: pd.DataFrame) -> str:
    return _table(["task", "shared", "baseline", "depth", "seeds", "median steps ratio", "median seconds ratio",
                   "steps ratio per seed"],
                  ([c.task, c.model, c.baseline, c.depth, " ".join(map(str, c.seeds)), _num(c.steps_ratio), _num(c.seconds_ratio),
                    " ".join(f"{k}: {_num(v)}" for k, v in c.seed_steps_ratios.items())] for c in comparisons.itertuples()))


def loops_markdown(loops: pd.DataFrame) -> str:
    return _table(["task", "model", "seed", "loops of >= 2 positions", "loops", "positions in loops >= 2", "block weights before → after",
                   "params before → after", "fold change at training size (points)", "mean abs cos of paired layers"],
                  ([r.task, r.model, r.seed, r.loops, r.num_loops, f"{r.loop_positions}/{r.positions}",
                    f"{r.block_weights_before} → {r.block_weights_after}", f"{r.parameters_before:,} → {r.parameters_after:,}",
                    _num(r.fold_delta_points, 3), _num(r.paired_cos, 3)] for r in loops.itertuples()))


def loop_summary_markdown(summary: pd.DataFrame) -> str:
    return _table(["task", "model", "loop weight", "seeds", "positions in loops", "loops", "mean abs cos of paired layers",
                   "fold change (points)", "max abs fold change", "test size", "folded best %", "folded last %"],
                  ([s.task, s.model, f"{s.loop_weight:g}", " ".join(map(str, s.seeds)), _pm(s.loop_positions_mean, s.loop_positions_sd, 1),
                    _pm(s.num_loops_mean, s.num_loops_sd, 1), _pm(s.paired_cos_mean, s.paired_cos_sd, 3),
                    _pm(s.fold_delta_points_mean, s.fold_delta_points_sd, 3), _num(s.max_abs_fold_delta_points, 3), s.size,
                    _pct(s.folded_best_mean, s.folded_best_sd), _pct(s.folded_last_mean, s.folded_last_sd)]
                   for s in summary.itertuples()))


def extrapolation_markdown(extrapolation: pd.DataFrame) -> str:
    def cell(row: Any, label: str) -> str:
        best = getattr(row, f"{label}_best")
        if pd.isna(best):
            return "-"
        return (f"{100 * best:.1f} @{getattr(row, f'{label}_best_iter')} / {100 * getattr(row, f'{label}_last'):.1f} "
                f"@{getattr(row, f'{label}_last_iter')}")

    return _table(["task", "size", "model", "seed", "unfolded: best % @iter / last %", "folded", "recurrent (same seed)"],
                  ([r.task, r.size, r.model, r.seed, cell(r, "unfolded"), cell(r, "folded"), cell(r, "recurrent")]
                   for r in extrapolation.itertuples()))


def claims_markdown(claims: pd.DataFrame) -> str:
    return _table(["task", "claim", "comparison", "numbers", "seeds"],
                  ([c.task, c.claim, c.comparison, c.numbers, " ".join(map(str, c.seeds))] for c in claims.itertuples()))


# ---------------------------------------------------------------------------- figure
