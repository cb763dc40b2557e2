"""Typed results that cross modules, and the only place that knows their JSON key names.

    eval.json   EvalResult: accuracy[size][iteration], its per-size summary, and (for a run's own
                evaluation) RunInfo: what was trained, with which seed, how long it took; with
                halting, SizeHalting per size: where each sample's prediction settled
    fold.json   FoldResult: the folded model's EvalResult, the FoldReport of what ``fold`` did
                and, per size, its accuracy before and after folding
    lsm.json    SimilarityRecord: per template bank, its coefficients and layer similarity matrix

and of a classification run (``benchmark.pipelines.classification``; its eval.json says ``"kind": "classification"``):

    eval.json   ClassificationResult: top-1 accuracy per epoch, the final accuracy and error,
                parameters (its own and the unshared network's), images/s, seconds
    fold.json   BankFoldResult: per template bank, the BankFold of ``benchmark.models.bank.fold_bank``,
                and the test accuracy before and after folding

``read_eval`` reads a run's eval.json of either kind.

Each type writes its file through ``tasks.fileio.write_json`` (atomic, strict JSON) and reads
it back; ``read(path) .write(path)`` reproduces a file byte for byte. Sizes are ``int`` here and
strings only in JSON (object keys must be strings). Derived figures (the summary, a fold's
deltas, its loop count, a classification run's final accuracy and every error) are written for readers of the files but recomputed when read, so a file
whose figures disagree with its own data is refused rather than trusted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tasks.fileio import write_json


class ResultFormatError(ValueError):
    """A results file that is not in the format this module writes; its message is one sentence."""


def _read_json(path: str | Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise ResultFormatError(f"{path} is not valid JSON ({err}).") from err
    except (OSError, UnicodeDecodeError, RecursionError) as err:  # unreadable, a directory, not UTF-8, nested too deep
        raise ResultFormatError(f"cannot read {path} as JSON ({type(err).__name__}).") from err


def _parse(path: str | Path, what: str, build: Any, data: Any = None) -> Any:
    """``build(data)`` of the JSON at ``path`` (``data``: already read from it), with a missing key or
    wrong shape named in one sentence."""
    if data is None:
        data = _read_json(path)
    try:
        return build(data)
    except ResultFormatError as err:
        raise ResultFormatError(f"{path}: {err}") from err
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ResultFormatError(f"{path} is not a {what} file this version can read ({type(err).__name__}: {err}).") from err

# ---------------------------------------------------------------------------- evaluation
# The protocol (docs/protocol.md): the iteration reported is chosen on validation data as the
# smallest iteration whose validation accuracy is within SELECTION_TOLERANCE of the best
# validation accuracy; the best iteration on the test set itself is the oracle, labelled so.
PROTOCOL_VERSION = 1
SELECTION_TOLERANCE = 0.005  # half a percentage point of validation accuracy
SELECTION_RULE = "the smallest iteration whose validation accuracy is within the tolerance of the best validation accuracy"
ORACLE_LABEL = "oracle (chosen on test)"


def code_version() -> str:
    """What a run records as its code version: the installed package's version and the protocol's,
    e.g. ``0.1.0+protocol1`` (``unknown`` when the package is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        package = version("algoreason")
    except PackageNotFoundError:
        package = "unknown"
    return f"{package}+protocol{PROTOCOL_VERSION}"


def choose_iteration(validation: Sequence[float], tolerance: float = SELECTION_TOLERANCE) -> int:
    """The iteration (from 1) chosen on a validation curve: the smallest whose accuracy is within
    ``tolerance`` of the curve's best (the test set is never looked at)."""
    if not validation:
        raise ValueError("a validation curve needs at least one iteration.")
    best = max(validation)
    return next(t + 1 for t, acc in enumerate(validation) if acc >= best - tolerance - 1e-12)


@dataclass(frozen=True)
class SizeSummary:
    """The headline figures of one test size's accuracy curve (iterations count from 1).

    ``best_iter`` and ``best`` are the ORACLE: the best iteration chosen on the test set itself
    (ORACLE_LABEL wherever shown). With a validation curve (protocol 1, docs/protocol.md) ``of``
    returns a ``ValidatedSummary``, which adds the iteration chosen on validation.
    """

    train_depth: int  # the training depth, capped at the iterations scored
    at_train_depth: float
    best_iter: int  # the oracle: the first iteration reaching the best TEST accuracy
    best: float
    final_iter: int
    final: float

    @classmethod
    def of(cls, accuracy: Sequence[float], train_iters: int, validation: Sequence[float] | None = None,
           tolerance: float = SELECTION_TOLERANCE) -> SizeSummary:
        """Summarise ``accuracy`` (after iterations 1..T) for a model trained with ``train_iters``;
        with a ``validation`` curve (same length), a ``ValidatedSummary`` with the iteration chosen on it."""
        if not accuracy:
            raise ValueError("an accuracy curve needs at least one iteration.")
        best = max(range(len(accuracy)), key=lambda t: (accuracy[t], -t))  # ties: the earliest
        depth = min(train_iters, len(accuracy))
        figures = dict(train_depth=depth, at_train_depth=accuracy[depth - 1], best_iter=best + 1, best=accuracy[best],
                       final_iter=len(accuracy), final=accuracy[-1])
        if validation is None:
            return SizeSummary(**figures)
        if len(validation) != len(accuracy):
            raise ValueError(f"a validation curve of {len(validation)} iterations for a test curve of {len(accuracy)}.")
        t = choose_iteration(validation, tolerance)
        return ValidatedSummary(**figures, chosen_iter=t, chosen=accuracy[t - 1], val_chosen=validation[t - 1],
                                val_best=max(validation))

    @property
    def drop(self) -> float:
        """Overthinking: how far accuracy fell from its peak (``best``) by the last iteration scored
        (``final``); 0 when the last iteration is at the peak. Not stored: always derived."""
        return self.best - self.final

    @property
    def chosen_iter(self) -> int | None:
        """The iteration chosen on validation data (None: the run had none)."""
        return None

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> SizeSummary:
        return ValidatedSummary(**data) if "chosen_iter" in data else SizeSummary(**data)


@dataclass(frozen=True)
class ValidatedSummary(SizeSummary):
    """A ``SizeSummary`` with validation data: ``chosen_iter``, the iteration chosen on the
    validation curve (``choose_iteration``); ``chosen``, the TEST accuracy there (what the
    protocol reports); ``val_chosen`` and ``val_best``, the validation accuracy there and at its peak."""

    chosen_iter: int = 0  # type: ignore[assignment]  # a field here, a property (None) on SizeSummary
    chosen: float = 0.0
    val_chosen: float = 0.0
    val_best: float = 0.0


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of a run's phases."""

    generation: float
    train: float
    eval: float


@dataclass(frozen=True)
class RunInfo:
    """What a run's own eval.json says about the run beside its accuracy."""

    task: str
    model: str
    parameters: int
    seed: int
    train_size: int
    device: str
    final_train_acc: float | None  # the last logged training accuracy (None: nothing logged)
    seconds: Timing
    # Written by runs since protocol 1 (None in older files, and then not written): the precision
    # the run trained and was scored in, and the code version (package version + protocol version).
    precision: str | None = None
    code_version: str | None = None


@dataclass(frozen=True)
class DataSource:
    """An external dataset a run was re-scored on (``python -m benchmark.evaluate --data``)."""

    file: str
    sha256: str
    samples: int


@dataclass(frozen=True)
class Reevaluation:
    """What a re-evaluation's file says beside its accuracy: the run's task and model, and the
    external data it was scored on (None: the task's own generated test sets)."""

    task: str
    model: str
    data: DataSource | None = None


SETTLED_KINDS = {1: "fixed", 2: "2-cycle"}  # by period; a sample that never settled is "none"


@dataclass(frozen=True)
class SizeHalting:
    """How each sample of one test set settled when evaluation halted it after ``halt_after`` = k
    iterations of a settled prediction (``benchmark.evaluation.settling``), sample i at index i.

    ``settled_at[i]``: the first iteration of the state sample i settled into (None: it never
    settled within the iterations scored); ``kind[i]``: ``"fixed"`` (a fixed point), ``"2-cycle"``
    or ``"none"``; ``correct[i]``: whether its answer at the last iteration scored is right (for
    a fixed point its settled answer; for a 2-cycle the state of the two it is in at that
    iteration), so the mean of ``correct`` is the accuracy at the last iteration.
    """

    settled_at: tuple[int | None, ...]
    kind: tuple[str, ...]
    correct: tuple[bool, ...]

    def __post_init__(self) -> None:
        if not len(self.settled_at) == len(self.kind) == len(self.correct):
            raise ValueError("settled_at, kind and correct must have one entry per sample.")
        for at, kind in zip(self.settled_at, self.kind):
            if kind not in (*SETTLED_KINDS.values(), "none") or (at is None) != (kind == "none") or (at is not None and at < 1):
                raise ValueError(f"a sample settled at {at!r} with kind {kind!r}: a settled sample needs an iteration >= 1 "
                                 f"and a kind of {sorted(SETTLED_KINDS.values())}, one that never settled None and 'none'.")

    def iterations_run(self, halt_after: int, iterations: int) -> tuple[int, ...]:
        """Per sample, the iterations evaluation ran: to where settling was confirmed (k repeats
        after the first iteration of a fixed point, k alternations after a 2-cycle's first two
        iterations), else all ``iterations``."""
        extra = {"fixed": halt_after, "2-cycle": halt_after + 1}
        return tuple(iterations if at is None else at + extra[kind] for at, kind in zip(self.settled_at, self.kind))

    def to_json(self, halt_after: int, iterations: int) -> dict[str, Any]:
        run = self.iterations_run(halt_after, iterations)
        return dict(settled_at=list(self.settled_at), kind=list(self.kind), correct=list(self.correct),
                    mean_iterations_run=sum(run) / len(run) if run else 0.0)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], halt_after: int, iterations: int) -> SizeHalting:
        halting = cls(settled_at=tuple(data["settled_at"]), kind=tuple(data["kind"]), correct=tuple(data["correct"]))
        if halting.to_json(halt_after, iterations) != dict(data):
            raise ResultFormatError("its halting record has an unknown key or a mean_iterations_run that disagrees with its samples.")
        if any(run > iterations for run in halting.iterations_run(halt_after, iterations)):
            raise ResultFormatError(f"a sample of its halting record settled too late to be confirmed within {iterations} iterations.")
        return halting


@dataclass(frozen=True)
class EvalResult:
    """Exact-match accuracy per test size after each test-time iteration 1..``iterations``.

    ``accuracy[size][t - 1]`` is the accuracy after t iterations. ``run`` is set for a run's own
    evaluation (eval.json) and None for re-evaluations and a folded model's result.

    With halting (``halt_after`` = k > 0, ``benchmark.evaluate``), ``halting[size]`` says where
    each sample settled; a sample stopped once settled is scored at every later iteration by the
    state it would be in then, so ``accuracy`` keeps one figure per iteration. Without halting
    (k = 0) neither is written and the file is what it always was.
    """

    iterations: int
    train_iters: int
    accuracy: Mapping[int, tuple[float, ...]]
    run: RunInfo | None = None
    reevaluation: Reevaluation | None = None
    halt_after: int = 0
    halting: Mapping[int, SizeHalting] | None = None
    # Protocol 1 (docs/protocol.md): the validation accuracy per size and iteration, scored in the
    # same pass machinery as ``accuracy``, and the tolerance of the rule that chooses the
    # iteration on it (``choose_iteration``). None: no validation data (the old protocol).
    validation: Mapping[int, tuple[float, ...]] | None = None
    tolerance: float = SELECTION_TOLERANCE

    def __post_init__(self) -> None:
        for size, curve in self.accuracy.items():
            if len(curve) != self.iterations:
                raise ValueError(f"size {size} has {len(curve)} accuracies for {self.iterations} iterations.")
        if self.validation is not None:
            if set(self.validation) != set(self.accuracy):
                raise ValueError("the validation curves must cover exactly the sizes scored.")
            for size, curve in self.validation.items():
                if len(curve) != self.iterations:
                    raise ValueError(f"size {size} has {len(curve)} validation accuracies for {self.iterations} iterations.")
        if not 0 <= self.tolerance < 1:
            raise ValueError(f"the selection tolerance must be in [0, 1), got {self.tolerance}.")
        if (self.halt_after > 0) != (self.halting is not None) or self.halt_after < 0:
            raise ValueError(f"halt_after must be 0 without a halting record and positive with one, got {self.halt_after}.")
        if self.halting is not None:
            if set(self.halting) != set(self.accuracy):
                raise ValueError("the halting record must cover exactly the sizes scored.")
            for size, record in self.halting.items():
                # Exact: both are (samples right) / (samples) in double precision.
                if record.correct and sum(record.correct) / len(record.correct) != self.accuracy[size][-1]:
                    raise ValueError(f"size {size}: the samples right at the last iteration of its halting record "
                                     f"disagree with its accuracy there.")

    @property
    def sizes(self) -> list[int]:
        return list(self.accuracy)

    @property
    def summary(self) -> dict[int, SizeSummary]:
        val = self.validation or {}
        return {size: SizeSummary.of(curve, self.train_iters, val.get(size), self.tolerance)
                for size, curve in self.accuracy.items()}

    @property
    def protocol(self) -> int:
        """1: the iteration is chosen on validation data; 0: no validation data (only the oracle)."""
        return PROTOCOL_VERSION if self.validation is not None else 0

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = dict(
            iterations=self.iterations,
            train_iters=self.train_iters,
            accuracy={str(size): list(curve) for size, curve in self.accuracy.items()},
            summary={str(size): asdict(s) for size, s in self.summary.items()},
        )
        if self.validation is not None:
            data.update(validation={str(size): list(curve) for size, curve in self.validation.items()},
                        selection=dict(protocol=PROTOCOL_VERSION, rule=SELECTION_RULE, tolerance=self.tolerance,
                                       chosen_iter="chosen on validation; chosen: the TEST accuracy there",
                                       best_iter=ORACLE_LABEL))
        if self.run is not None:
            data.update({k: v for k, v in asdict(self.run).items() if v is not None or k not in ("precision", "code_version")})
        if self.reevaluation is not None:
            data.update({k: v for k, v in asdict(self.reevaluation).items() if v is not None})
        if self.halting is not None:
            data.update(halt_after=self.halt_after, halting={
                str(size): record.to_json(self.halt_after, self.iterations) for size, record in self.halting.items()})
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EvalResult:
        run = reevaluation = None
        if "seconds" in data:  # a run's own evaluation
            optional = ("precision", "code_version")  # absent from files before protocol 1
            run = RunInfo(**{k: data[k] for k in RunInfo.__dataclass_fields__ if k not in ("seconds", *optional)},
                          **{k: data[k] for k in optional if k in data}, seconds=Timing(**data["seconds"]))
        elif "task" in data:  # a re-evaluation of a run's checkpoint
            source = DataSource(**data["data"]) if "data" in data else None
            reevaluation = Reevaluation(task=data["task"], model=data["model"], data=source)
        halt_after, halting = data.get("halt_after", 0), None
        if "halting" in data:
            halting = {int(size): SizeHalting.from_json(record, halt_after, data["iterations"])
                       for size, record in data["halting"].items()}
        validation, tolerance = None, SELECTION_TOLERANCE
        if "validation" in data:
            validation = {int(size): tuple(curve) for size, curve in data["validation"].items()}
            tolerance = data["selection"]["tolerance"]
        result = cls(iterations=data["iterations"], train_iters=data["train_iters"],
                     accuracy={int(size): tuple(curve) for size, curve in data["accuracy"].items()}, run=run,
                     reevaluation=reevaluation, halt_after=halt_after, halting=halting, validation=validation,
                     tolerance=tolerance)
        stored = {int(size): SizeSummary.from_json(s) for size, s in data["summary"].items()}
        if stored != result.summary:
            raise ResultFormatError("its summary disagrees with its accuracy curves.")
        return result

    def write(self, path: str | Path) -> None:
        write_json(path, self.to_json())

    @classmethod
    def read(cls, path: str | Path) -> EvalResult:
        return _parse(path, "eval.json", cls.from_json)


# ---------------------------------------------------------------------------- classification runs


def read_eval(path: str | Path) -> EvalResult | ClassificationResult:
    """A run's eval.json of either kind: a classification run's (its ``kind`` says so) or a puzzle run's."""
    data = _read_json(path)
    if isinstance(data, dict) and data.get("kind") == CLASSIFICATION:
        return _parse(path, "classification eval.json", ClassificationResult.from_json, data)
    return _parse(path, "eval.json", EvalResult.from_json, data)


def read_fold(path: str | Path) -> FoldResult | BankFoldResult:
    """A run's fold.json of either kind: a classification run's (every bank folded: ``banks``) or a puzzle run's."""
    data = _read_json(path)
    if isinstance(data, dict) and "banks" in data:
        return _parse(path, "classification fold.json", BankFoldResult.from_json, data)
    return _parse(path, "fold.json", FoldResult.from_json, data)


# The results of folding and layer similarity, and the classification run's, live in their own
# modules and are re-exported here, so that a reader imports every result from one place
# (imported last: those modules build on this one).
from benchmark.infra.fold_results import (  # noqa: E402
    BankSimilarity,
    FoldedLoop,
    FoldReport,
    FoldResult,
    Headline,
    SimilarityRecord,
    SizeComparison,
)
from benchmark.infra.classification_results import (  # noqa: E402
    CLASSIFICATION,
    BankFold,
    BankFoldResult,
    ClassificationResult,
    ClassificationTiming,
    EpochScore,
)

__all__ = ["code_version", "ORACLE_LABEL", "PROTOCOL_VERSION", "SELECTION_RULE", "SELECTION_TOLERANCE", "choose_iteration", "BankFold", "BankFoldResult", "BankSimilarity", "ClassificationResult", "ClassificationTiming", "EpochScore",
           "EvalResult", "FoldReport", "FoldResult", "FoldedLoop", "Headline", "ResultFormatError", "RunInfo",
           "SimilarityRecord", "SizeComparison", "SizeHalting", "SizeSummary", "Timing", "ValidatedSummary", "read_eval"]
