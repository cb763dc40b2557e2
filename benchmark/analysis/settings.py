"""What a run's numbers depend on, read from its config.yaml: the key that keeps runs of different
recipes out of one averaged row (the parity table, the leaderboard).

A run's settings are the plain values of some config groups, flattened to ``group.key`` with each
value as canonical JSON (nested values such as ``train.optimizer`` whole), minus what does not
change its numbers: how often it logs or saves, where its files go, the seed (seeds are what a
row averages over).
"""

from __future__ import annotations

import json
from typing import Any, Iterable

from benchmark.infra.rundir import RunDir

# Keys that change no reported number: logging and saving cadence, the list of test sizes (each
# size is its own table), evaluation batch size, the fold threshold (fold.json only), compilation.
NOT_SETTINGS = frozenset({"train.log_every", "train.checkpoint_every", "size.test", "eval.batch_size",
                          "eval.fold_threshold", "model.compile"})


def run_settings(run: RunDir, groups: Iterable[str]) -> dict[str, str]:
    """The settings of ``run`` in ``groups`` (``size``, ``train``, ``task``, ...) and its precision,
    flattened (``train.lr``, ``task.generator``, ...), each value as canonical JSON; none for a run
    directory without a config.yaml."""
    if not run.config.exists():
        return {}
    cfg = run.read_config()
    flat: dict[str, Any] = {f"{group}.{key}": value for group in groups for key, value in (cfg.get(group) or {}).items()
                            if f"{group}.{key}" not in NOT_SETTINGS}
    flat["precision"] = cfg.get("precision", "fp32")  # runs before the option ran in float32
    return {key: json.dumps(value, sort_keys=True) for key, value in flat.items()}


def differing_keys(settings: Iterable[dict[str, str]]) -> list[str]:
    """The keys whose value is not the same in every one of ``settings`` (a key missing from one counts as differing)."""
    settings = list(settings)
    keys = {k for s in settings for k in s}
    return sorted(k for k in keys if len({s.get(k) for s in settings}) > 1)


__all__ = ["NOT_SETTINGS", "differing_keys", "run_settings"]
