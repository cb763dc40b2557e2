"""Checkpoints that store plain, validated fields and load without letting the file choose code.

A checkpoint (format ``algoreason-checkpoint-2``) is a dict of plain data, loaded with
``torch.load(weights_only=True)`` (no pickled objects)::

    format      "algoreason-checkpoint-2"
    model       {"name": registered model name, "args": {keyword: plain value}}
    task        {"name": registered task name, "args": {keyword: plain value}}
    spec        {"dims": int, "in_channels": int, "num_classes": int}
    state_dict  {parameter name: tensor}

Plain values are None, bools, ints, floats, strings and lists of those. Loading maps each name
through ``benchmark.models.registry`` (the project's classes and registered plugins), checks every
argument's name and type against the class's constructor, and refuses anything else with one
sentence (``ConfigError``). ``weights_only`` alone does not make a checkpoint safe: a stored
Hydra ``_target_`` is plain data too, and instantiating it would run whatever it names.

Checkpoints of format 1 stored Hydra configs; they still load when their ``_target_`` is exactly
the import path of a registered class and every other field is plain.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from benchmark.models import registry
from benchmark.config.schema import ConfigError
from tasks.fileio import atomic_path
from tasks.base import Task, TaskError, TaskSpec

FORMAT = "algoreason-checkpoint-2"
LEGACY_FORMAT = "algoreason-checkpoint-1"
FIELDS = ("format", "model", "task", "spec", "state_dict")
_SPEC_FIELDS = ("dims", "in_channels", "num_classes")
_SCALARS = (type(None), bool, int, float, str)


@dataclass(frozen=True)
class Checkpoint:
    """What a checkpoint says, validated: the rebuilt task and the model's registered name and args."""

    model_name: str
    model_args: dict[str, Any]
    task_name: str
    task_args: dict[str, Any]
    task: Task
    spec: TaskSpec


# ---------------------------------------------------------------------------- plain values
def _is_plain(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(isinstance(v, _SCALARS) for v in value)
    return isinstance(value, _SCALARS)


def _fits(value: Any, hint: Any) -> bool:
    """Whether a plain ``value`` matches a constructor's type hint (unknown hints accept it)."""
    if hint is Any or hint is inspect.Parameter.empty:
        return True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if origin is typing.Literal:
        return value in args
    if origin in (list, tuple) or hint in (list, tuple):
        return isinstance(value, (list, tuple)) and all(_fits(v, a) for v in value for a in args[:1] if a is not Ellipsis)
    if hint is type(None) or hint is None:
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    return True  # a hint this check does not model: the constructor validates the value itself


def _check_args(kind: str, cls: type, args: Any, where: str) -> dict[str, Any]:
    """``args`` as keyword arguments of ``cls``: a dict of plain values naming only constructor
    parameters, each of the hinted type."""
    if not isinstance(args, dict):
        raise ConfigError(f"{where}: the {kind} arguments must be a mapping of plain values, got {type(args).__name__}.")
    # A task takes its options as one dataclass (``cls.Options``); a model takes keyword arguments.
    options = getattr(cls, "Options", None)
    signature_of = options if dataclasses.is_dataclass(options) else cls.__init__
    try:
        hints = typing.get_type_hints(signature_of)
    except Exception:  # an annotation this interpreter cannot evaluate: fall back to the constructor's checks
        hints = {}
    if signature_of is options:
        accepted = [f.name for f in dataclasses.fields(options)]
    else:
        params = inspect.signature(signature_of).parameters
        accepted = [p for p, v in params.items() if p not in ("self", "spec")
                    and v.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
    for key, value in args.items():
        if isinstance(value, dict) and "_target_" in value:
            raise ConfigError(f"{where}: {kind} argument {key!r} holds a nested _target_, which a checkpoint may not carry.")
        if key not in accepted:
            raise ConfigError(f"{where}: {kind} {cls.__name__} takes no argument {key!r} (it accepts {accepted}).")
        if not _is_plain(value) or (isinstance(value, float) and not math.isfinite(value)):
            raise ConfigError(f"{where}: {kind} argument {key!r} must be None, a bool, an int, a finite float, "
                              f"a string or a list of those, got {type(value).__name__}.")
        if not _fits(value, hints.get(key, Any)):
            hint = getattr(hints[key], "__name__", None) if isinstance(hints[key], type) else None
            raise ConfigError(f"{where}: {kind} argument {key!r} of {cls.__name__} must be "
                              f"{hint or str(hints[key]).replace('typing.', '')}, got {value!r}.")
    return {k: list(v) if isinstance(v, tuple) else v for k, v in args.items()}


def _build(kind: str, name: str, args: dict[str, Any], where: str, **extra: Any) -> Any:
    cls = registry.resolve(kind, name)
    args = _check_args(kind, cls, args, where)
    try:
        return cls(**args, **extra), args
    except (TaskError, ConfigError, ValueError, TypeError) as err:
        raise ConfigError(f"{where}: the stored {kind} arguments are not accepted by {name} ({err}).") from err


# ---------------------------------------------------------------------------- save
def _entry(kind: str, node: DictConfig, cls: type) -> dict[str, Any]:
    """``{"name", "args"}`` of one config node (its ``_target_`` dropped for the registered name)."""
    fields = OmegaConf.to_container(node, resolve=True)
    fields.pop("_target_", None)
    name = registry.name_of(kind, cls)
    _check_args(kind, cls, fields, f"cannot save the {kind} {name}")  # never save what loading refuses
    return dict(name=name, args=fields)


def checkpoint_fields(model: torch.nn.Module, cfg: DictConfig) -> dict[str, Any]:
    """Everything but the weights; raises ``ConfigError`` if the model or task is not registered
    (callable before training, so an unsavable run fails before it costs anything)."""
    try:
        task_cls = get_class(cfg.task._target_)
    except Exception as err:
        raise ConfigError(f"task._target_ {cfg.task.get('_target_')!r} is not a class.") from err
    spec = model.spec
    return dict(
        format=FORMAT,
        model=_entry("model", cfg.model, type(model)),
        task=_entry("task", cfg.task, task_cls),
        spec=dict(dims=spec.dims, in_channels=spec.in_channels, num_classes=spec.num_classes),
    )


def save_checkpoint(model: torch.nn.Module, cfg: DictConfig, path: Path) -> None:
    """Weights plus the registered names and plain arguments of the model and task, written
    atomically (a full disk leaves the previous file, not a truncated one)."""
    ckpt = dict(checkpoint_fields(model, cfg), state_dict=model.state_dict())
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)


# ---------------------------------------------------------------------------- load
def _legacy_entry(kind: str, node: Any, where: str) -> dict[str, Any]:
    """A format-1 Hydra config node as ``{"name", "args"}``: its ``_target_`` must be exactly the
    path of a registered class."""
    if not isinstance(node, dict) or not isinstance(node.get("_target_"), str):
        raise ConfigError(f"{where}: its {kind} entry must be a mapping with a _target_ string.")
    args = {k: v for k, v in node.items() if k != "_target_"}
    return dict(name=registry.name_of_path(kind, node["_target_"]), args=args)


def _read(path: Path, map_location: str | torch.device) -> dict:
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # empty, truncated, random bytes, pickled objects: all "not a checkpoint"
        raise ConfigError(f"cannot read checkpoint {path}: it must be a model.pt written by a benchmark run "
                          f"({type(err).__name__}).") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") not in (FORMAT, LEGACY_FORMAT):
        raise ConfigError(f"{path} is not a benchmark checkpoint (expected format {FORMAT}).")
    unknown = sorted(str(k) for k in ckpt if k not in FIELDS)
    missing = [k for k in FIELDS if k not in ckpt]
    if unknown or missing:
        raise ConfigError(f"checkpoint {path} must hold exactly the fields {list(FIELDS)} "
                          f"(unknown: {unknown}, missing: {missing}).")
    return ckpt


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[Checkpoint, dict]:
    """Validate the checkpoint at ``path`` and rebuild its task; returns ``(checkpoint, state_dict)``."""
    path = Path(path)
    ckpt = _read(path, map_location)
    where = f"checkpoint {path}"
    if ckpt["format"] == LEGACY_FORMAT:
        model_entry, task_entry = (_legacy_entry(k, ckpt[k], where) for k in ("model", "task"))
    else:
        model_entry, task_entry = ckpt["model"], ckpt["task"]
    for kind, entry in (("model", model_entry), ("task", task_entry)):
        if not isinstance(entry, dict) or set(entry) != {"name", "args"}:
            raise ConfigError(f"{where}: its {kind} entry must hold exactly 'name' and 'args'.")
    spec = ckpt["spec"]
    if not (isinstance(spec, dict) and set(spec) == set(_SPEC_FIELDS)
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in spec.values())):
        raise ConfigError(f"{where}: its spec must hold exactly the positive integers {list(_SPEC_FIELDS)}.")
    state = ckpt["state_dict"]
    if not (isinstance(state, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())):
        raise ConfigError(f"{where}: its state_dict must map parameter names to tensors.")
    task, task_args = _build("task", task_entry["name"], task_entry["args"], where)
    if TaskSpec(**spec) != task.spec:
        raise ConfigError(f"{where}: its spec {spec} is not that of the task {task_entry['name']} ({task.spec}).")
    model_args = _check_args("model", registry.resolve("model", model_entry["name"]), model_entry["args"], where)
    return Checkpoint(model_entry["name"], model_args, task_entry["name"], task_args, task, task.spec), state


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[torch.nn.Module, Checkpoint]:
    """Rebuild the model saved at ``path``; returns ``(model, checkpoint)`` with the model in eval mode.

    Only registered classes are built, from validated plain arguments; any other content is
    refused with ``ConfigError`` before anything is constructed.
    """
    ckpt, state = read_checkpoint(path, map_location)
    model, _ = _build("model", ckpt.model_name, ckpt.model_args, f"checkpoint {path}", spec=ckpt.spec)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ConfigError(f"checkpoint {path} has weights that do not fit the model it names ({ckpt.model_name}).") from err
    model.eval()
    return model, ckpt


__all__ = ["FORMAT", "Checkpoint", "checkpoint_fields", "load_checkpoint", "read_checkpoint", "save_checkpoint"]
