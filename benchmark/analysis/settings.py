"""What a run's numbers depend on, read from its config.yaml: the key that keeps runs of different
recipes out of one averaged row (the parity table, the leaderboard).

A run's settings are the plain values of some config groups, flattened to ``group.key`` with each
value as canonical JSON (nested values such as ``train.optimizer`` whole), minus what does not
change its numbers: how often it logs or saves, where its files go, the seed (seeds are what a
row averages over). An option a run's config.yaml lacks (it was written before the option
existed) reads as the option's default (``defaults``), because every new option's default keeps
the old behaviour: a run from before ``train.init_noise`` and a run with ``train.init_noise: 0.0``
share a row.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from typing import Any, Iterable

from benchmark.config.errors import ConfigError
from benchmark.config.schema import (BaselineModelConfig, DepthBaselineModelConfig, DepthModelConfig, EvalConfig,
                                     ModelConfig, SizeConfig, TrainConfig)
from benchmark.infra.rundir import RunDir

# Keys that change no reported number: logging and saving cadence, the list of test sizes (each
# size is its own table), evaluation batch size, the fold threshold (fold.json only), compilation.
NOT_SETTINGS = frozenset({"train.log_every", "train.checkpoint_every", "size.test", "eval.batch_size",
                          "eval.fold_threshold", "model.compile"})


_GROUP_SCHEMAS = {"size": SizeConfig, "train": TrainConfig, "eval": EvalConfig}
_MODEL_SCHEMAS = {ModelConfig._target_: DepthModelConfig, BaselineModelConfig._target_: DepthBaselineModelConfig}


def _plain_defaults(cls: type) -> dict[str, Any]:
    """The fields of dataclass ``cls`` with a plain default (a scalar, None or a list; not MISSING, not a nested node)."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            continue
        if value is None or isinstance(value, (bool, int, float, list)) or (isinstance(value, str) and value != "???"):
            out[f.name] = value
    return out


def defaults(group: str, node: dict[str, Any]) -> dict[str, Any]:
    """The defaults of ``group`` as the code now has them, for the config node ``node`` of a run: the
    schema's dataclass (size, train, eval; the model's by its ``_target_``), or the registered
    task's options (looked up by name in the registry: nothing read from a file is imported).
    Empty when the group or class is not known."""
    if group in _GROUP_SCHEMAS:
        return _plain_defaults(_GROUP_SCHEMAS[group])
    target = node.get("_target_")
    if group == "model" and target in _MODEL_SCHEMAS:
        return _plain_defaults(_MODEL_SCHEMAS[target])
    if group == "task" and isinstance(target, str):
        return _task_defaults(target)
    return {}


@functools.lru_cache(maxsize=None)
def _task_defaults(target: str) -> dict[str, Any]:
    """A registered task's option defaults, looked up once per target (a leaderboard reads many runs)."""
    from benchmark.models.registry import name_of_path, resolve  # late: it registers every task

    try:
        return _plain_defaults(resolve("task", name_of_path("task", target)).Options)
    except (ConfigError, TypeError):  # not a registered task, or options that are not a dataclass
        return {}


def run_settings(run: RunDir, groups: Iterable[str]) -> dict[str, str]:
    """The settings of ``run`` in ``groups`` (``size``, ``train``, ``task``, ...) and its precision,
    flattened (``train.lr``, ``task.generator``, ...), each value as canonical JSON; none for a run
    directory without a config.yaml."""
    if not run.config.exists():
        return {}
    cfg = run.read_config()
    flat: dict[str, Any] = {}
    for group in groups:
        node = cfg.get(group) or {}
        for key, value in {**defaults(group, node), **node}.items():
            if f"{group}.{key}" not in NOT_SETTINGS:
                flat[f"{group}.{key}"] = value
    flat["precision"] = cfg.get("precision", "fp32")  # runs before the option ran in float32
    return {key: json.dumps(value, sort_keys=True) for key, value in flat.items()}


def differing_keys(settings: Iterable[dict[str, str]]) -> list[str]:
    """The keys whose value is not the same in every one of ``settings`` (a key missing from one counts as differing)."""
    settings = list(settings)
    keys = {k for s in settings for k in s}
    return sorted(k for k in keys if len({s.get(k) for s in settings}) > 1)


__all__ = ["NOT_SETTINGS", "defaults", "differing_keys", "run_settings"]
