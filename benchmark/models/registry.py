"""The allow-list of classes a checkpoint may name: the project's own models and tasks, and plugins.

A checkpoint stores a model and a task as a short registered name plus plain keyword arguments;
loading maps the name through this module, so a file can only ever pick among the classes listed
here (or registered by an installed plugin), never name code of its own. The import paths below
are this module's code, not data read from anywhere.

Adding a built-in class is one line in ``MODELS`` or ``TASKS``. An outside package registers its
classes through Python entry points in its own ``pyproject.toml``::

    [project.entry-points."algoreason.tasks"]
    parity = "algoreason_parity:ParityTask"

(``algoreason.models`` for models). Installing the package makes them loadable; nothing in this
repository is edited.

This is the one list of classes besides the configs' ``_target_``s, and it is kept on purpose:
a config is the user's own input, a checkpoint is a file that may come from anyone.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

import torch

from benchmark.config.schema import ConfigError
from tasks.base import Task
from tasks.images import ImageTask

# Registered name -> "module:Class".
MODELS = {
    "recurrent_conv": "benchmark.models.recurrent:RecurrentConvNet",
    "feedforward": "baselines.feedforward:FeedForwardNet",
    "wide_resnet": "benchmark.models.wide_resnet:WideResNet",
    "wrn": "baselines.wrn:UnsharedWideResNet",
}
TASKS = {
    "maze": "tasks.maze:MazeTask",
    "prefix_sums": "tasks.prefix_sums:PrefixSumsTask",
    "shortest_path": "tasks.shortest_path:ShortestPathTask",
    "cifar10": "tasks.images:Cifar10Task",
    "cifar100": "tasks.images:Cifar100Task",
    "digits": "tasks.images:DigitsTask",
}

# Entry-point groups through which installed plugins add to the two tables above.
GROUPS = {"model": "algoreason.models", "task": "algoreason.tasks"}
_BUILT_IN = {"model": MODELS, "task": TASKS}
_BASES = {"model": torch.nn.Module, "task": (Task, ImageTask)}


def registered(kind: str) -> dict[str, str]:
    """Every registered ``name -> "module:Class"`` of ``kind`` ("model" or "task"): built-ins first;
    a plugin cannot replace a built-in name."""
    table = dict(_BUILT_IN[kind])
    for point in entry_points(group=GROUPS[kind]):
        table.setdefault(point.name, point.value)
    return table


def resolve(kind: str, name: str) -> type:
    """The class registered as ``name``; ``ConfigError`` (one sentence) for any other name."""
    table = registered(kind)
    if not isinstance(name, str) or name not in table:
        raise ConfigError(f"unknown {kind} class {name!r}: a checkpoint may name only {sorted(table)} "
                          f"(plugins add to these through the {GROUPS[kind]!r} entry-point group).")
    module, _, attr = table[name].partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, _BASES[kind])):
        raise ConfigError(f"the {kind} registered as {name!r} ({table[name]}) is not a model or task class.")
    return cls


def name_of(kind: str, cls: type) -> str:
    """The registered name of ``cls``; ``ConfigError`` if it is not registered (so it could not be loaded)."""
    table = registered(kind)
    own = f"{cls.__module__}:{cls.__qualname__}"
    for name in sorted(table, key=lambda n: table[n] != own):  # the entry naming cls's own path first
        try:
            if resolve(kind, name) is cls:
                return name
        except (ImportError, AttributeError, ConfigError):  # another plugin's broken entry is not cls
            continue
    raise ConfigError(f"{kind} class {cls.__module__}.{cls.__qualname__} is not registered: add it to "
                      f"benchmark.models.registry or to the {GROUPS[kind]!r} entry-point group of its package.")


def name_of_path(kind: str, path: str) -> str:
    """The registered name whose dotted import path is exactly ``path`` (a Hydra ``_target_``, as
    written by the configs and by checkpoints of format 1); ``ConfigError`` for any other string."""
    for name, value in registered(kind).items():
        if isinstance(path, str) and path == value.replace(":", "."):
            return name
    raise ConfigError(f"{kind} target {path!r} is not one of the registered {kind} classes "
                      f"{sorted(v.replace(':', '.') for v in registered(kind).values())}.")


__all__ = ["GROUPS", "MODELS", "TASKS", "name_of", "name_of_path", "registered", "resolve"]
