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

Checkpoints of format 1, which stored Hydra configs, are refused: none was ever published, and a
stored ``_target_`` is exactly what a checkpoint must not carry.

Bounded memory. A checkpoint's arguments decide how big a model is, so a crafted file of a few
kilobytes could ask for terabytes (``depth=10**9``). Loading therefore allocates nothing that the
file's own bytes do not pay for:

- the file must be a regular file of at most ``MAX_CHECKPOINT_BYTES``, a zip archive (what
  ``torch.save`` writes) whose members are all stored uncompressed (no zip bomb), read only then;
- the stored tensors must be dense and together hold at most as many bytes as the file;
- every integer model argument (width, depth, templates, ...) must lie within
  ``MAX_MODEL_INT`` and within the number of stored weight elements (each unit of a size
  argument adds at least one weight to every model here);
- the model is first built on the ``meta`` device (shapes only, no memory; stopped once it makes
  far more tensor elements or operations than the stored weights account for, ``_MetaBudget``)
  and its parameter names, shapes and dtypes compared with the stored tensors'; only a model
  whose every tensor the file holds is then built for real and loaded.

Anything else is refused with one sentence (``ConfigError``), before a real allocation.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import types
import typing
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from benchmark.models import registry
from benchmark.config.schema import ConfigError
from tasks.fileio import atomic_path, regular_file_size
from tasks.base import Task, TaskError, TaskSpec

FORMAT = "algoreason-checkpoint-2"
FIELDS = ("format", "model", "task", "spec", "state_dict")
_SPEC_FIELDS = ("dims", "in_channels", "num_classes")
_SCALARS = (type(None), bool, int, float, str)
# Absolute caps on what a checkpoint may ask for (see the module docstring). The largest model of
# the suite (a Wide ResNet 28-10 for CIFAR) is a file of about 150 MB with integer arguments <= 640.
MAX_CHECKPOINT_BYTES = 4 * 2**30
MAX_MODEL_INT = 2**20


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
    # Through a file object: torch.save then names the archive's root folder "archive" rather than
    # after the (random) temporary file, so identical runs write identical bytes.
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(ckpt, handle)


# ---------------------------------------------------------------------------- load
def _check_file(path: Path, what: str = "checkpoint", hint: str = "give the model.pt of a benchmark run") -> int:
    """The size of the checkpoint file at ``path``, checked before a byte of it is loaded: a regular
    file (not a pipe or a device) of at most ``MAX_CHECKPOINT_BYTES``, a zip archive whose members
    are stored uncompressed, so that reading it takes no more memory than its size."""
    try:
        size = regular_file_size(path, MAX_CHECKPOINT_BYTES, what)
    except ValueError as err:
        raise ConfigError(f"cannot read {what}: {str(err).rstrip('.')}; {hint}.") from err
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        raise ConfigError(f"cannot read {what} {path} (not a zip archive); {hint}.") from err
    packed = [m.filename for m in members if m.compress_type != zipfile.ZIP_STORED or m.file_size != m.compress_size]
    if packed or sum(m.file_size for m in members) > size:
        raise ConfigError(f"{what} {path} holds compressed or oversized members ({packed[:3]}), which "
                          f"torch.save never writes; {hint}.")
    return size


def _read(path: Path, map_location: str | torch.device) -> dict:
    _check_file(path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # empty, truncated, random bytes, pickled objects: all "not a checkpoint"
        raise ConfigError(f"cannot read checkpoint {path}: it must be a model.pt written by a benchmark run "
                          f"({type(err).__name__}).") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ConfigError(f"{path} is not a benchmark checkpoint (expected format {FORMAT}).")
    unknown = sorted(str(k) for k in ckpt if k not in FIELDS)
    missing = [k for k in FIELDS if k not in ckpt]
    if unknown or missing:
        raise ConfigError(f"checkpoint {path} must hold exactly the fields {list(FIELDS)} "
                          f"(unknown: {unknown}, missing: {missing}).")
    return ckpt


def _check_tensors(state: dict[str, torch.Tensor], file_bytes: int, where: str) -> None:
    """Dense tensors that the file's bytes pay for (a stride-0 view of one stored number could
    otherwise claim any size)."""
    for name, tensor in state.items():
        if tensor.layout != torch.strided or tensor.is_quantized or tensor.is_nested:
            raise ConfigError(f"{where}: tensor {name!r} is not a dense tensor ({tensor.layout}).")
    total = sum(t.numel() * t.element_size() for t in state.values())
    if total > file_bytes:
        raise ConfigError(f"{where}: its tensors claim {total} bytes, more than the file's {file_bytes}; it is damaged or crafted.")


def _check_sizes(args: dict[str, Any], elements: int, where: str) -> None:
    """Every integer model argument within ``MAX_MODEL_INT`` and the stored weights' element count."""
    bound = min(MAX_MODEL_INT, max(elements, 1))
    for key, value in args.items():
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, int) and not isinstance(v, bool) and abs(v) > bound:
                raise ConfigError(f"{where}: model argument {key}={v} is out of bounds (at most {bound}: "
                                  f"{MAX_MODEL_INT} and the {elements} weights the file stores).")


class _OverBudget(Exception):
    """The meta-device build of a checkpoint's model went past what the stored weights allow."""


# In-place random initialisations: on the meta device they compute nothing, but still cost about a
# millisecond each through PyTorch's reference implementations, so the shape-only build skips them.
_RANDOM_INIT = {torch.Tensor.normal_, torch.Tensor.uniform_, torch.Tensor.bernoulli_, torch.Tensor.random_,
                torch.Tensor.exponential_, torch.Tensor.geometric_, torch.Tensor.cauchy_, torch.Tensor.log_normal_}


class _MetaBudget(torch.overrides.TorchFunctionMode):
    """The shape-only build of a model, stopped (``_OverBudget``) once it has made tensors of more
    elements, or more tensor operations, than a model of ``elements`` stored weights needs (with
    ample slack for initialisation's temporaries). Without it a file of a few hundred weights
    naming ``depth=40000`` would spend seconds and hundreds of megabytes building 40,000 empty
    modules before the shapes could be compared."""

    def __init__(self, elements: int):
        super().__init__()
        self.max_elements, self.max_calls = 16 * elements + 100_000, 16 * elements + 20_000
        self.elements = self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls += 1
        if self.calls > self.max_calls:
            raise _OverBudget(f"{self.calls} tensor operations")
        if func in _RANDOM_INIT:
            return args[0]
        out = func(*args, **(kwargs or {}))
        if isinstance(out, torch.Tensor):
            self.elements += out.numel()
            if self.elements > self.max_elements:
                raise _OverBudget(f"{self.elements} elements")
        return out


def _check_shapes(model: torch.nn.Module, state: dict[str, torch.Tensor], name: str, where: str) -> None:
    """The stored tensors are exactly those of ``model`` (built on the meta device): names, shapes, dtypes."""
    expected = model.state_dict()
    missing, unknown = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unknown:
        raise ConfigError(f"{where} has weights that do not fit the model it names ({name}): "
                          f"missing {missing[:3]}, unexpected {unknown[:3]}.")
    for key, tensor in expected.items():
        stored = state[key]
        if stored.shape != tensor.shape or stored.dtype != tensor.dtype:
            raise ConfigError(f"{where} has weights that do not fit the model it names ({name}): {key} is "
                              f"{tuple(stored.shape)} {stored.dtype}, the model's {tuple(tensor.shape)} {tensor.dtype}.")


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[Checkpoint, dict]:
    """Validate the checkpoint at ``path`` and rebuild its task; returns ``(checkpoint, state_dict)``."""
    path = Path(path)
    ckpt = _read(path, map_location)
    where = f"checkpoint {path}"
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
    _check_tensors(state, path.stat().st_size, where)
    task, task_args = _build("task", task_entry["name"], task_entry["args"], where)
    if TaskSpec(**spec) != task.spec:
        raise ConfigError(f"{where}: its spec {spec} is not that of the task {task_entry['name']} ({task.spec}).")
    model_args = _check_args("model", registry.resolve("model", model_entry["name"]), model_entry["args"], where)
    _check_sizes(model_args, sum(t.numel() for t in state.values()), where)
    return Checkpoint(model_entry["name"], model_args, task_entry["name"], task_args, task, task.spec), state


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[torch.nn.Module, Checkpoint]:
    """Rebuild the model saved at ``path``; returns ``(model, checkpoint)`` with the model in eval mode.

    Only registered classes are built, from validated plain arguments; any other content is
    refused with ``ConfigError`` before anything is constructed.
    """
    ckpt, state = read_checkpoint(path, map_location)
    where = f"checkpoint {path}"
    elements = sum(t.numel() for t in state.values())
    try:  # shapes only: the arguments are compared with the stored weights before anything real is allocated
        with torch.device("meta"), _MetaBudget(elements):
            shadow, _ = _build("model", ckpt.model_name, ckpt.model_args, where, spec=ckpt.spec)
    except ConfigError:
        raise
    except _OverBudget as err:
        raise ConfigError(f"{where}: its model arguments {ckpt.model_args} ask for a far bigger model than the "
                          f"{elements} weights the file stores.") from err
    except Exception as err:  # noqa: BLE001: a model that cannot be checked is not loaded
        raise ConfigError(f"{where}: its model {ckpt.model_name} cannot be built from the stored arguments "
                          f"({type(err).__name__}).") from err
    _check_shapes(shadow, state, ckpt.model_name, where)
    del shadow
    model, _ = _build("model", ckpt.model_name, ckpt.model_args, where, spec=ckpt.spec)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ConfigError(f"checkpoint {path} has weights that do not fit the model it names ({ckpt.model_name}).") from err
    model.eval()
    return model, ckpt


__all__ = ["FORMAT", "MAX_CHECKPOINT_BYTES", "MAX_MODEL_INT", "Checkpoint", "checkpoint_fields", "load_checkpoint", "read_checkpoint", "save_checkpoint"]
