"""The allow-list of classes a checkpoint may name: the project's own models and tasks, and plugins.

A checkpoint stores a model and a task as a short registered name plus plain keyword arguments;
loading maps the name through this module, so a file can only ever pick among the classes
registered here (or by an installed plugin), never name code of its own.

The project's classes register themselves with a decorator beside each class:
``@register_model("recurrent_conv")`` (``benchmark.models.contract``) above a model class,
``@register_task("maze", env_id=..., env_size=...)`` (``tasks.registry``) above a task class.
Importing this module imports every module of ``benchmark.models``, ``baselines`` and ``tasks``,
so ``MODELS`` and ``TASKS`` (name -> "module:Class") hold every built-in whatever was imported
before; what the tables hold is decided by the project's code, not by data read from anywhere.

An outside package registers its classes through Python entry points in its own ``pyproject.toml``::

    [project.entry-points."algoreason.tasks"]
    parity = "algoreason_parity:ParityTask"

(``algoreason.models`` for models; docs/adding_a_model.md, docs/adding_a_task.md). Installing
the package makes them loadable; nothing in this repository is edited.

This is the one table of classes besides the configs' ``_target_``s, and it is kept on purpose:
a config is the user's own input, a checkpoint is a file that may come from anyone.
"""

from __future__ import annotations

import importlib
import pkgutil
from importlib.metadata import entry_points
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from benchmark.config.schema import ConfigError
from benchmark.models.contract import FORMER_PATHS, KINDS, MODELS, kind_of, missing_members
from tasks.base import Task
from tasks.images import ImageTask
from tasks.registry import TASKS, import_builtins


def _import_builtin_models() -> None:
    """Import every module of the model packages: their ``@register_model`` lines fill ``MODELS``."""
    for package_name in ("benchmark.models", "baselines"):
        package = importlib.import_module(package_name)
        for module in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package_name}.{module.name}")


_import_builtin_models()
import_builtins()

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
    try:
        cls = getattr(importlib.import_module(module), attr)
    except Exception as err:  # a plugin not installed any more, broken on import, or naming no such class
        first_line = (str(err).splitlines() or [""])[0]
        raise ConfigError(f"the {kind} registered as {name!r} ({table[name]}) cannot be imported "
                          f"({type(err).__name__}: {first_line}): reinstall or repair the package that registers it.") from err
    if not (isinstance(cls, type) and issubclass(cls, _BASES[kind])):
        raise ConfigError(f"the {kind} registered as {name!r} ({table[name]}) is not a model or task class.")
    if kind == "model" and missing_members(cls):
        raise ConfigError(f"the model registered as {name!r} ({table[name]}) does not declare "
                          f"{' and '.join(missing_members(cls))} (benchmark.models.contract.Model).")
    return cls


def name_of(kind: str, cls: type) -> str:
    """The registered name of ``cls``; ``ConfigError`` if it is not registered (so it could not be loaded)."""
    if kind == "model" and missing_members(cls):
        raise ConfigError(f"model class {cls.__module__}.{cls.__qualname__} does not declare "
                          f"{' and '.join(missing_members(cls))} (benchmark.models.contract.Model): a model states its kind.")
    table = registered(kind)
    own = f"{cls.__module__}:{cls.__qualname__}"
    for name in sorted(table, key=lambda n: table[n] != own):  # the entry naming cls's own path first
        try:
            if resolve(kind, name) is cls:
                return name
        except (ImportError, AttributeError, ConfigError):  # another plugin's broken entry is not cls
            continue
    raise ConfigError(f"{kind} class {cls.__module__}.{cls.__qualname__} is not registered: decorate it with "
                      f"{'@register_model' if kind == 'model' else '@register_task'} or add it to the {GROUPS[kind]!r} "
                      f"entry-point group of its package.")


def name_of_path(kind: str, path: str) -> str:
    """The registered name whose dotted import path is exactly ``path`` (a Hydra ``_target_``, as
    written by the configs and by checkpoints of format 1), or was before its module moved
    (``register_model(former_paths=...)``); ``ConfigError`` for any other string."""
    for name, value in registered(kind).items():
        if isinstance(path, str) and path == value.replace(":", "."):
            return name
    if kind == "model" and isinstance(path, str) and path in FORMER_PATHS:
        return FORMER_PATHS[path]
    raise ConfigError(f"{kind} target {path!r} is not one of the registered {kind} classes "
                      f"{sorted(v.replace(':', '.') for v in registered(kind).values())}.")


# What the root config's ``pipeline._target_`` may name (configs/pipeline/).
PIPELINES = ("benchmark.pipelines.algorithmic.main", "benchmark.pipelines.classification.main")
# Nodes whose ``_target_`` ``benchmark.config.schema.check_config`` checks against its own allow-lists
# (the optimizer and the schedule), before the pipeline instantiates them.
_PARTIALS = ("train.optimizer", "train.scheduler")


def _target_paths(node: Any, path: str = "") -> list[str]:
    """The dotted key paths (``"task"``, ``"model.block"``) of every node of plain ``node`` holding a ``_target_``."""
    found = []
    if isinstance(node, dict):
        if "_target_" in node:
            found.append(path)
        for key, value in node.items():
            found += _target_paths(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _target_paths(value, f"{path}[{index}]")
    return found


def check_targets(cfg: DictConfig) -> None:
    """Before anything of a composed config is instantiated: ``task._target_`` and ``model._target_``
    must name registered classes (``name_of_path``), ``pipeline._target_`` one of ``PIPELINES``, and
    no other node may hold a ``_target_`` (Hydra would call whatever it names, ``model.x._target_=os.system``
    included); anything else is a ``ConfigError`` of one sentence."""
    plain = OmegaConf.to_container(cfg, resolve=False, throw_on_missing=False)
    for path in _target_paths(plain):
        if path in _PARTIALS:  # the optimizer and schedule partials: check_config holds their allow-lists
            continue
        if path not in ("task", "model", "pipeline"):
            raise ConfigError(f"{path}._target_ cannot be set: only task._target_, model._target_ and pipeline._target_ "
                              f"name code (registered classes), and train.optimizer and train.scheduler (allowed partials).")
        try:
            target = OmegaConf.select(cfg, f"{path}._target_", throw_on_missing=True)
        except Exception as err:  # an interpolation that does not resolve
            raise ConfigError(f"{path}._target_ does not resolve ({type(err).__name__}): give a registered {path} class.") from err
        if path == "pipeline":
            if target not in PIPELINES:
                raise ConfigError(f"pipeline._target_ must be one of {', '.join(PIPELINES)}, got {target!r}.")
        else:
            name_of_path(path, target)


def model_kind_of_config(node) -> str:
    """The kind (``benchmark.models.contract.KINDS``) of the model a config node describes, read
    as data: its ``_target_`` must name a registered model class (a former path counts), whose
    ``config_kind`` answers; "unknown" for a node naming no registered class (a plugin not
    installed, a removed class) or a class that declares no kind. Nothing is instantiated."""
    try:
        cls = resolve("model", name_of_path("model", node.get("_target_")))
    except (ConfigError, ImportError, AttributeError):
        return "unknown"
    if missing_members(cls):
        return "unknown"
    kind = cls.config_kind(node)
    return kind if kind in KINDS else "unknown"


__all__ = ["GROUPS", "MODELS", "PIPELINES", "TASKS", "check_targets", "kind_of", "model_kind_of_config", "name_of", "name_of_path", "registered",
           "resolve"]
