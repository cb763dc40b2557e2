"""How the tables of the reports and studies write their numbers: one rule each, shared by all."""

from __future__ import annotations

import math


def percent_mean_sd(mean: float, sd: float, digits: int = 1) -> str:
    """``mean ± sd`` of fractions as percentages (``"98.5 ± 0.3"``); ``"-"`` for a missing mean,
    and an sd of 0 when there is none (one seed)."""
    if mean is None or math.isnan(mean):
        return "-"
    sd = 0.0 if sd is None or math.isnan(sd) else sd
    return f"{100 * mean:.{digits}f} ± {100 * sd:.{digits}f}"


def reached(metrics: list[dict], target: float, key: str = "probe_acc") -> dict | None:
    """The first metrics record whose ``key`` reaches ``target`` (None: none did): the one rule of
    "reached the target" that the report's steps-to-accuracy and the study's speed table share."""
    return next((m for m in metrics if m.get(key, -1.0) >= target), None)
