"""``ladder_<name>.json``: a checkpoint scored on a ladder of frozen test splits (``LadderResult``).

Written by ``python -m benchmark.evaluate RUN --splits LADDER`` (``benchmark.evaluation.ladder``)
into the run directory (``RunDir.ladder``). Per split: what it is (task options, size, seed,
sha256, or the external file it came from), how many samples were scored, the accuracy after
every iteration 1..T and, with halting, how the samples settled. The summary of each curve
(``benchmark.infra.results.SizeSummary``) and the accuracy at the chosen iteration are written
for readers and recomputed when read, so a file whose figures disagree with its curves is refused.

The chosen iteration (``pick``): ``final``, the last iteration scored (T = ``--iters``; with
halting, each sample's settled answer held from where it settled). It is fixed before the test
data is seen; ``best`` (the best iteration on the split itself) would be chosen on the test data,
and the training depth is too few iterations for larger puzzles. Both are in the summary.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmark.infra.results import ResultFormatError, SizeSummary, _parse
from tasks.fileio import write_json

PICKS = ("final",)  # the rules for the chosen iteration; validation-chosen iterations may join them


@dataclass(frozen=True)
class SplitScore:
    """One split of a ladder scored (``options``: every option of its task, defaults included): ``source`` is ``"manifest"`` (a split of configs/splits.yaml,
    ``sha256`` the manifest's, None for an optional split not hashed) or ``"file"`` (an external
    ``.npz``, ``sha256`` of the file's bytes, ``file`` its path)."""

    name: str
    task: str
    options: Mapping[str, Any]
    size: int
    seed: int | None
    sha256: str | None
    samples: int  # the samples scored: the split's first ``samples``
    accuracy: tuple[float, ...]
    source: str = "manifest"
    file: str | None = None
    settled: Mapping[str, int] | None = None  # with halting: samples per kind (fixed, 2-cycle, none)
    mean_iterations_run: float | None = None

    def row(self, varying: tuple[str, ...]) -> str:
        """The heatmap row of this split: the values of the options that vary within its ladder,
        the file for an external split, else the task."""
        if self.source == "file":
            return f"file {Path(self.file or self.name).name}"
        if len(varying) == 1:
            return str(self.options.get(varying[0], "-"))
        return ", ".join(f"{k}={self.options.get(k, '-')}" for k in varying) or self.task

    def to_json(self, train_iters: int) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if v is not None or k in ("seed", "sha256")}
        data.update(accuracy=list(self.accuracy), options=dict(self.options),
                    summary=asdict(SizeSummary.of(self.accuracy, train_iters)))
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any], train_iters: int) -> SplitScore:
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        score = cls(**{**fields, "accuracy": tuple(data["accuracy"]), "options": dict(data["options"])})
        if score.to_json(train_iters) != dict(data):
            raise ResultFormatError(f"split {score.name}: an unknown key, or a summary that disagrees with its curve.")
        return score


@dataclass(frozen=True)
class LadderResult:
    """A run's checkpoint scored on the splits of one ladder (or of several named splits)."""

    ladder: str
    run: str
    task: str
    model: str
    iterations: int
    train_iters: int
    halt_after: int
    splits: tuple[SplitScore, ...]
    pick: str = "final"

    def __post_init__(self) -> None:
        if self.pick not in PICKS:
            raise ValueError(f"pick must be one of {PICKS}, got {self.pick!r}.")
        for score in self.splits:
            if len(score.accuracy) != self.iterations:
                raise ValueError(f"split {score.name} has {len(score.accuracy)} accuracies for {self.iterations} iterations.")
        names = [s.name for s in self.splits]
        if not names or len(set(names)) != len(names):
            raise ValueError("a ladder result needs at least one split, each once.")

    @property
    def chosen_iteration(self) -> int:
        return self.iterations  # pick == "final"

    def chosen(self) -> dict[str, float]:
        """Accuracy at the chosen iteration, per split."""
        return {s.name: s.accuracy[self.chosen_iteration - 1] for s in self.splits}

    @property
    def varying(self) -> tuple[str, ...]:
        """The option names whose values differ between the ladder's splits (the heatmap's rows)."""
        keys = sorted({k for s in self.splits for k in s.options})
        return tuple(k for k in keys if len({repr(s.options.get(k)) for s in self.splits if s.source == "manifest"}) > 1)

    def table(self) -> dict[str, dict[int, float]]:
        """Row (``SplitScore.row``) -> size -> accuracy at the chosen iteration."""
        table: dict[str, dict[int, float]] = {}
        for score, acc in zip(self.splits, self.chosen().values()):
            table.setdefault(score.row(self.varying), {})[score.size] = acc
        return table

    def to_json(self) -> dict[str, Any]:
        return dict(ladder=self.ladder, run=self.run, task=self.task, model=self.model, iterations=self.iterations,
                    train_iters=self.train_iters, halt_after=self.halt_after, pick=self.pick,
                    chosen_iteration=self.chosen_iteration, chosen=self.chosen(),
                    splits=[s.to_json(self.train_iters) for s in self.splits])

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LadderResult:
        result = cls(ladder=data["ladder"], run=data["run"], task=data["task"], model=data["model"],
                     iterations=data["iterations"], train_iters=data["train_iters"], halt_after=data["halt_after"],
                     splits=tuple(SplitScore.from_json(s, data["train_iters"]) for s in data["splits"]), pick=data["pick"])
        if result.to_json() != dict(data):
            raise ResultFormatError("an unknown key, or a chosen iteration or accuracy that disagrees with its curves.")
        return result

    def write(self, path: str | Path) -> None:
        write_json(path, self.to_json())

    @classmethod
    def read(cls, path: str | Path) -> LadderResult:
        return _parse(path, "ladder", cls.from_json)


__all__ = ["PICKS", "LadderResult", "SplitScore"]
