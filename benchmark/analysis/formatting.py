"""How the tables of the reports and studies write their numbers: one rule each, shared by all."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable


def percent_mean_sd(mean: float, sd: float, digits: int = 1) -> str:
    """``mean ± sd`` of fractions as percentages (``"98.5 ± 0.3"``); ``"-"`` for a missing mean,
    and an sd of 0 when there is none (one seed)."""
    if mean is None or math.isnan(mean):
        return "-"
    sd = 0.0 if sd is None or math.isnan(sd) else sd
    return f"{100 * mean:.{digits}f} ± {100 * sd:.{digits}f}"


def percent(value: float, digits: int = 1) -> str:
    """A fraction as a percentage without the sign (``"99.9"``), like ``percent_mean_sd``; ``"-"`` for a missing value."""
    return "-" if value is None or math.isnan(value) else f"{100 * value:.{digits}f}"


def span(values: Iterable[float], fmt: Callable[[float], str]) -> str:
    """The range of ``values`` as ``"low-high"`` in ``fmt``, or one figure when both ends read the same."""
    values = list(values)
    low, high = fmt(min(values)), fmt(max(values))
    return low if low == high else f"{low}-{high}"


def reached(metrics: list[dict], target: float, key: str = "probe_acc") -> dict | None:
    """The first metrics record whose ``key`` reaches ``target`` (None: none did): the one rule of
    "reached the target" that the report's steps-to-accuracy and the study's speed table share."""
    return next((m for m in metrics if m.get(key, -1.0) >= target), None)
