"""What a model must provide to the engine, declared once; and the decorator that registers a model class.

Two ``typing.Protocol``s state the contract (structural: a class satisfies one by having its
members, no base class needed; ``isinstance(model, IterativeModel)`` checks the members exist):

``Model``: every model any pipeline builds.

    name: str           the label in result paths and tables
    spec: TaskSpec      the task's dimensionality, input channels and classes
    kind: str           one of ``KINDS``: "shared" (weights mixed from a template bank with learned
                        coefficients), "recurrent" (one block of unshared weights reused every
                        iteration) or "unshared" (every position its own weights)
    forward(x, ...)     logits

``IterativeModel``: a puzzle model the algorithmic pipeline trains, evaluates at every
iteration count and resumes from a state (``benchmark.training.trainer``,
``benchmark.evaluation.extrapolation``):

    iteration_limit     the most iterations the model has weights for (None: any number)
    check_iters(iters)  ValueError if it cannot run ``iters`` iterations
    initial_state(x)    the features before iteration 0, ``(N, w, *S)``
    states(x, iters, state=None, start=0)   the features after each iteration (an iterator)
    run(x, iters, state=None, start=0)      the features after the last one
    logits(h)           the head on features: float32 logits ``(N, classes, *S)``
    iter_logits(x, iters)                   the logits after each iteration (an iterator)
    forward(x, iters)   the logits after ``iters`` iterations
    precision           "fp32" or "bf16" (set by the run before training)

``FoldableModel``: an ``IterativeModel`` laid out as ``benchmark.models.recurrent.RecurrentConvNet``
(projection, ``depth`` positions of 4 block convs mixed from ``bank``, recall convs, head), which
``benchmark.analysis.folding.fold`` can rewrite into explicit loops.

Every model class declares its kind: an instance answers ``model.kind``; a config node (a run's
``config.yaml``, read as data, never instantiated) is answered by the class's classmethod
``config_kind(node)``, which is what ``benchmark.analysis.study`` uses. A class without them
does not satisfy the contract, and ``register_model`` refuses it.

Registration: ``@register_model("name")`` above the class adds it to ``MODELS``, the table
``benchmark.models.registry`` lets checkpoints name (besides plugins' entry points). This module
imports nothing of the project, so any model module can use the decorator without import cycles.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol, TypeVar, runtime_checkable

import torch

# The kinds a model declares (``Model.kind``).
KINDS = ("shared", "recurrent", "unshared")

# Registered name -> "module:Class" of the project's own model classes, filled by ``register_model``
# as their modules are imported (``benchmark.models.registry`` imports them all).
MODELS: dict[str, str] = {}
# A former import path of a registered class (before a module moved) -> its registered name, so
# that an old run's config.yaml naming the old path still maps to it.
FORMER_PATHS: dict[str, str] = {}


@runtime_checkable
class Model(Protocol):
    """Every model: a name, the task's spec, a declared kind, and logits from ``forward``."""

    name: str
    spec: Any  # tasks.base.TaskSpec

    @property
    def kind(self) -> str: ...

    @classmethod
    def config_kind(cls, node: Mapping[str, Any]) -> str: ...

    def forward(self, x: torch.Tensor, *args: Any) -> torch.Tensor: ...


@runtime_checkable
class ScoredModel(Protocol):
    """What the evaluator scores (``benchmark.evaluation.extrapolation``): the logits after each
    iteration, and the most iterations it has weights for (None: any number)."""

    iteration_limit: int | None

    def iter_logits(self, x: torch.Tensor, iters: int) -> Iterator[torch.Tensor]: ...


@runtime_checkable
class ResumableModel(ScoredModel, Protocol):
    """A ``ScoredModel`` that continues from a state, so that halting stops computing the samples
    that have settled: ``states`` from a given state and iteration, ``logits`` of a state."""

    def check_iters(self, iters: int) -> None: ...

    def states(self, x: torch.Tensor, iters: int, state: torch.Tensor | None = None, start: int = 0) -> Iterator[torch.Tensor]: ...

    def logits(self, h: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class IterativeModel(Model, ResumableModel, Protocol):
    """A puzzle model run for a chosen number of iterations, resumable from a state (module docstring)."""

    precision: str

    def initial_state(self, x: torch.Tensor) -> torch.Tensor: ...

    def run(self, x: torch.Tensor, iters: int, state: torch.Tensor | None = None, start: int = 0) -> torch.Tensor: ...


@runtime_checkable
class FoldableModel(IterativeModel, Protocol):
    """An ``IterativeModel`` with ``RecurrentConvNet``'s layout, which folding rewrites into loops."""

    depth: int
    bank: Any  # benchmark.models.bank.TemplateBank, 4 * depth layers
    recall_convs: Any  # torch.nn.ModuleList of depth convs, or None
    projection: torch.nn.Module
    head: torch.nn.Module
    channels_last: bool
    fuse_recall: bool


@runtime_checkable
class ImageClassifier(Model, Protocol):
    """A model of the classification pipeline (``benchmark.pipelines.classification``): logits from
    images, and the parameter count of the unshared network it is compared with."""

    def unshared_parameter_count(self) -> int: ...


def missing_members(cls: type) -> list[str]:
    """The declarations of ``Model`` that class ``cls`` lacks: its ``kind`` and ``config_kind``
    (``name``, ``spec`` and ``forward`` every model sets or inherits from ``torch.nn.Module``)."""
    return [m for m in ("kind", "config_kind", "forward") if not callable(getattr(cls, m, None)) and
            not isinstance(getattr(cls, m, None), property)]


def kind_of(model: Any) -> str:
    """``model.kind``, checked to be one of ``KINDS``; ``TypeError`` for a model that declares none."""
    kind = getattr(type(model), "kind", None) and model.kind
    if kind not in KINDS:
        raise TypeError(f"model {type(model).__qualname__} declares no kind (one of {', '.join(KINDS)}), got {kind!r}.")
    return kind


C = TypeVar("C", bound=type)


def register_model(name: str, *, former_paths: tuple[str, ...] = ()) -> Callable[[C], C]:
    """Class decorator: register a project model class under ``name`` (what checkpoints store).

    The class must be a ``torch.nn.Module`` satisfying ``Model`` (a declared ``kind`` and
    ``config_kind``); ``former_paths`` are dotted import paths the class had before its module
    moved. A name is registered once: a second class under the same name is a ``ValueError``.
    Outside packages register through the ``algoreason.models`` entry-point group instead
    (docs/adding_a_model.md).
    """

    def decorate(cls: C) -> C:
        if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
            raise TypeError(f"@register_model({name!r}) decorates a torch.nn.Module subclass, got {cls!r}.")
        lacking = missing_members(cls)
        if lacking:
            raise TypeError(f"model class {cls.__qualname__} does not satisfy benchmark.models.contract.Model: "
                            f"it lacks {', '.join(lacking)}.")
        path = f"{cls.__module__}:{cls.__qualname__}"
        if MODELS.get(name, path) != path:
            raise ValueError(f"model name {name!r} is already registered for {MODELS[name]}.")
        MODELS[name] = path
        for old in former_paths:
            FORMER_PATHS[old] = name
        return cls

    return decorate


__all__ = ["FORMER_PATHS", "FoldableModel", "ImageClassifier", "IterativeModel", "ResumableModel", "ScoredModel", "KINDS", "MODELS", "Model", "kind_of", "missing_members",
           "register_model"]
