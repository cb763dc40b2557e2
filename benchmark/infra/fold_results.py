"""Typed results of folding and layer similarity, with their JSON (the rules of ``benchmark.infra.results``):

    fold.json   FoldResult: the folded model's EvalResult, the FoldReport of what ``fold`` did
                and, per size, its accuracy before and after folding
    lsm.json    SimilarityRecord: per template bank, its coefficients and layer similarity matrix

Re-exported by ``benchmark.infra.results``, whose ``read_fold`` reads either kind of fold.json.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmark.infra.results import EvalResult, ResultFormatError, SizeSummary, _parse
from tasks.fileio import write_json


@dataclass(frozen=True)
class FoldedLoop:
    """One loop of a folded network: the trained iterations (block positions) it covers.

    ``block_weights``: per slot (the block's 4 convs), the index of the distinct weight the loop
    uses; ``block_scales``: per position, per slot, the scale of that weight. ``recall_weights``
    and ``recall_scales``: per position, the same for its recall conv (empty without recall).
    """

    positions: list[int]
    block_weights: list[int]
    block_scales: list[list[float]]
    recall_weights: list[int] = field(default_factory=list)
    recall_scales: list[float] = field(default_factory=list)


@dataclass
class FoldReport:
    """What ``benchmark.analysis.folding.fold`` did.

    ``max_relative_error``: the largest ``||W - s W_rep|| / ||W||`` over every folded conv (0 up
    to rounding when rows are parallel). Parameter counts are of the modules themselves (shared
    tensors once, scales included).
    """

    threshold: float
    positions: int
    loops: list[FoldedLoop] = field(default_factory=list)
    block_weights_before: int = 0
    block_weights_after: int = 0
    recall_weights_before: int = 0
    recall_weights_after: int = 0
    parameters_before: int = 0
    parameters_after: int = 0
    extendable: bool = False
    max_relative_error: float = 0.0

    @property
    def num_loops(self) -> int:
        return len(self.loops)

    @property
    def merged(self) -> bool:
        """Whether any two convs now share a weight (if not, the fold computes the original)."""
        return (self.block_weights_after, self.recall_weights_after) != (self.block_weights_before, self.recall_weights_before)

    def to_json(self) -> dict[str, Any]:
        # ``merged`` is left out: the reference fold.json files were written without it.
        return dict(asdict(self), num_loops=self.num_loops)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FoldReport:
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k != "loops"}
        report = cls(**fields, loops=[FoldedLoop(**loop) for loop in data["loops"]])
        if data["num_loops"] != report.num_loops or data.get("merged", report.merged) != report.merged:
            raise ResultFormatError("its fold report's num_loops or merged disagrees with its loops and weight counts.")
        return report


@dataclass(frozen=True)
class Headline:
    """The figures a fold is judged by, of one test size."""

    at_train_depth: float
    best: float
    best_iter: int

    @classmethod
    def of(cls, summary: SizeSummary) -> Headline:
        return cls(at_train_depth=summary.at_train_depth, best=summary.best, best_iter=summary.best_iter)


@dataclass(frozen=True)
class SizeComparison:
    """One test size's headline figures before and after folding."""

    before: Headline
    after: Headline

    @property
    def delta_at_train_depth(self) -> float:
        return self.after.at_train_depth - self.before.at_train_depth

    @property
    def delta_best(self) -> float:
        return self.after.best - self.before.best

    def to_json(self) -> dict[str, Any]:
        return dict(before=asdict(self.before), after=asdict(self.after),
                    delta_at_train_depth=self.delta_at_train_depth, delta_best=self.delta_best)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SizeComparison:
        comparison = cls(before=Headline(**data["before"]), after=Headline(**data["after"]))
        if (data["delta_at_train_depth"], data["delta_best"]) != (comparison.delta_at_train_depth, comparison.delta_best):
            raise ResultFormatError("its comparison's deltas disagree with its before and after figures.")
        return comparison


@dataclass(frozen=True)
class FoldResult:
    """A folded model's evaluation (on the original's test sets), what the fold did, and how it compares."""

    evaluation: EvalResult
    model: str
    report: FoldReport
    comparison: Mapping[int, SizeComparison]

    @classmethod
    def compare(cls, before: EvalResult, after: EvalResult, model: str, report: FoldReport) -> FoldResult:
        """The result of folding a model scored ``before`` into one named ``model`` scored ``after``."""
        b, a = before.summary, after.summary
        comparison = {size: SizeComparison(Headline.of(b[size]), Headline.of(a[size])) for size in b if size in a}
        return cls(evaluation=after, model=model, report=report, comparison=comparison)

    def to_json(self) -> dict[str, Any]:
        return dict(self.evaluation.to_json(), model=self.model, report=self.report.to_json(),
                    comparison={str(size): c.to_json() for size, c in self.comparison.items()})

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FoldResult:
        return cls(evaluation=EvalResult.from_json(data), model=data["model"], report=FoldReport.from_json(data["report"]),
                   comparison={int(size): SizeComparison.from_json(c) for size, c in data["comparison"].items()})

    def write(self, path: str | Path) -> None:
        write_json(path, self.to_json())

    @classmethod
    def read(cls, path: str | Path) -> FoldResult:
        return _parse(path, "fold.json", cls.from_json)


# ---------------------------------------------------------------------------- layer similarity
@dataclass(frozen=True)
class BankSimilarity:
    """One template bank's coefficients ``(L, k)`` and layer similarity matrix ``(L, L)``.

    ``layers_per_position``: bank layers per block position (4 for a ``RecurrentConvNet``'s bank,
    None when the bank has no position layout); plots draw a line between positions.
    """

    lsm: list[list[float]]
    coefficients: list[list[float]]
    learned: bool
    layers_per_position: int | None = None


@dataclass(frozen=True)
class SimilarityRecord:
    """Every template bank of a model by module path (``"bank"`` for a model's own bank)."""

    banks: Mapping[str, BankSimilarity]

    def to_json(self) -> dict[str, Any]:
        return {name: asdict(bank) for name, bank in self.banks.items()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SimilarityRecord:
        return cls({name: BankSimilarity(**bank) for name, bank in data.items()})

    def write(self, path: str | Path) -> None:
        write_json(path, self.to_json(), indent=None)  # big matrices: one line, as always written

    @classmethod
    def read(cls, path: str | Path) -> SimilarityRecord:
        return _parse(path, "lsm.json", cls.from_json)


