"""The run directory: the one type that knows the names, writers and readers of a run's files.

    results/<task>/<size>/<model>/<run-id>/
        config.yaml      the composed config (plain YAML: read as data, never instantiated)
        metrics.jsonl    one ``MetricsRecord`` per logged step (or epoch, for image classification)
        eval.json        ``EvalResult`` or ``ClassificationResult`` (``read_eval`` tells them apart)
        fold.json        ``FoldResult`` or ``BankFoldResult`` (``read_fold``)
        lsm.json         ``SimilarityRecord``
        ladder_<name>.json  ``LadderResult`` (``benchmark.infra.ladder``): the checkpoint on a ladder of
                         frozen test splits, with ladder_<name>.png (heatmap) and ladder_<name>_curves.png
        model.pt         the checkpoint (``benchmark.infra.checkpoint``)
        train_state.pt   what ``resume=<run dir>`` continues from (``benchmark.training.state``)
        INCOMPLETE       present from before training until every result is written

Every command that reads or writes one of these goes through ``RunDir``; no other module spells a
file name. The typed results know their own JSON (``benchmark.infra.results``); this type knows
where they live.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterable

from omegaconf import OmegaConf

from benchmark.infra.ladder import LadderResult
from benchmark.infra.results import (
    BankFoldResult,
    ClassificationResult,
    EvalResult,
    FoldResult,
    ResultFormatError,
    SimilarityRecord,
    read_eval,
    read_fold,
)
from tasks.fileio import write_text

# The integer fields of a metrics record: ``step`` always, ``epoch`` where the run logs it (puzzle
# runs write step first, image-classification runs epoch first). Any further field is a finite number.
_INT_FIELDS = ("step", "epoch")


@dataclass(frozen=True)
class MetricsRecord:
    """One line of ``metrics.jsonl``: ``step`` (and ``epoch``, if logged; integers >= 0) and named finite numbers.

    The values keep the order they were logged in, so ``from_json(r).to_json() == r`` and a file
    read and written again is the same bytes.
    """

    values: tuple[tuple[str, float | int], ...]

    @classmethod
    def of(cls, record: dict[str, Any]) -> MetricsRecord:
        if not isinstance(record, dict):
            raise ResultFormatError("a metrics record must be a JSON object.")
        for key in _INT_FIELDS:
            value = record.get(key, 0 if key == "epoch" else None)  # the step is required, the epoch optional
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
                raise ResultFormatError(f"a metrics record needs an integer {key} >= 0, got {value!r}.")
        for key, value in record.items():
            if not isinstance(key, str) or isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value):
                raise ResultFormatError(f"metrics field {key!r} must be a finite number, got {value!r}.")
        return cls(tuple(record.items()))

    @property
    def step(self) -> int:
        return int(self["step"])

    def __getitem__(self, key: str) -> float | int:
        for name, value in self.values:
            if name == key:
                return value
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def to_json(self) -> dict[str, Any]:
        return dict(self.values)


@dataclass(frozen=True)
class RunDir:
    """A run directory at ``path``: its files' paths, and one reader and writer for each."""

    path: Path

    CONFIG: ClassVar[str] = "config.yaml"
    METRICS: ClassVar[str] = "metrics.jsonl"
    EVAL: ClassVar[str] = "eval.json"
    FOLD: ClassVar[str] = "fold.json"
    LSM: ClassVar[str] = "lsm.json"
    MODEL: ClassVar[str] = "model.pt"
    STATE: ClassVar[str] = "train_state.pt"
    INCOMPLETE: ClassVar[str] = "INCOMPLETE"
    LADDER: ClassVar[str] = "ladder_{name}"  # + .json, .png, _curves.png (python -m benchmark.evaluate --splits)

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __str__(self) -> str:
        return str(self.path)

    # ------------------------------------------------------------------ paths
    @property
    def config(self) -> Path:
        return self.path / self.CONFIG

    @property
    def metrics(self) -> Path:
        return self.path / self.METRICS

    @property
    def eval(self) -> Path:
        return self.path / self.EVAL

    @property
    def fold(self) -> Path:
        return self.path / self.FOLD

    @property
    def lsm(self) -> Path:
        return self.path / self.LSM

    @property
    def model(self) -> Path:
        return self.path / self.MODEL

    @property
    def state(self) -> Path:
        return self.path / self.STATE

    @property
    def incomplete_marker(self) -> Path:
        return self.path / self.INCOMPLETE

    def ladder(self, name: str, suffix: str = ".json") -> Path:
        """``ladder_<name>.json`` (``suffix`` ``.png``: its heatmap, ``_curves.png``: its accuracy curves);
        ``name`` holds the ladder and every setting that changes the numbers."""
        return self.path / (self.LADDER.format(name=name) + suffix)

    # ------------------------------------------------------------------ config.yaml
    def write_config(self, yaml_text: str) -> None:
        write_text(self.config, yaml_text)

    def read_config(self) -> dict[str, Any]:
        """``config.yaml`` as plain data, interpolations left as written (OmegaConf's YAML loader, which
        is PyYAML's safe loader with YAML 1.2 floats: nothing in it is instantiated); a file that is
        missing, unreadable or not a mapping is a ``ResultFormatError`` (one sentence)."""
        try:
            data = OmegaConf.to_container(OmegaConf.load(self.config), resolve=False)
        except Exception as err:  # missing, unreadable, not YAML, not UTF-8: all the same to a reader
            raise ResultFormatError(f"cannot read {self.config} ({type(err).__name__}): give the directory of a run.") from err
        if not isinstance(data, dict) or not data:
            raise ResultFormatError(f"{self.config} is not a run's config.yaml (it holds no mapping of settings).")
        return data

    # ------------------------------------------------------------------ metrics.jsonl
    def write_metrics(self, records: Iterable[dict[str, Any]]) -> None:
        write_text(self.metrics, "".join(json.dumps(r, allow_nan=False) + "\n" for r in records))

    def append_metrics(self, record: dict[str, Any]) -> None:
        """One more line, flushed: the file grows as training goes (``tail -f`` shows it)."""
        with self.metrics.open("a") as f:
            f.write(json.dumps(record, allow_nan=False) + "\n")

    def read_metrics(self) -> list[MetricsRecord]:
        """Every record of ``metrics.jsonl`` (none when the file is absent), each checked."""
        if not self.metrics.exists():
            return []
        records = []
        try:
            lines = self.metrics.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise ResultFormatError(f"cannot read {self.metrics} ({type(err).__name__}).") from err
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                records.append(MetricsRecord.of(json.loads(line)))
            except json.JSONDecodeError as err:
                raise ResultFormatError(f"{self.metrics} line {number} is not a JSON object of numbers.") from err
            except ResultFormatError as err:
                raise ResultFormatError(f"{self.metrics} line {number}: {err}") from err
        return records

    # ------------------------------------------------------------------ eval.json, fold.json, lsm.json
    def write_eval(self, result: EvalResult | ClassificationResult) -> None:
        result.write(self.eval)

    def read_eval(self) -> EvalResult | ClassificationResult:
        return read_eval(self.eval)

    def write_fold(self, result: FoldResult | BankFoldResult) -> None:
        result.write(self.fold)

    def read_fold(self) -> FoldResult | BankFoldResult | None:
        return read_fold(self.fold) if self.fold.exists() else None

    def write_lsm(self, record: SimilarityRecord) -> None:
        record.write(self.lsm)

    def read_lsm(self) -> SimilarityRecord | None:
        return SimilarityRecord.read(self.lsm) if self.lsm.exists() else None

    def write_ladder(self, name: str, result: LadderResult) -> Path:
        result.write(self.ladder(name))
        return self.ladder(name)

    def read_ladder(self, name: str) -> LadderResult:
        return LadderResult.read(self.ladder(name))

    # ------------------------------------------------------------------ state of the run
    def is_classification(self) -> bool:
        return isinstance(self.read_eval(), ClassificationResult)

    def mark_incomplete(self, note: str) -> None:
        write_text(self.incomplete_marker, note.rstrip() + "\n")

    def mark_complete(self) -> None:
        self.incomplete_marker.unlink(missing_ok=True)

    def is_incomplete(self) -> bool:
        return self.incomplete_marker.exists()

    def is_finished(self) -> bool:
        return self.eval.exists() and not self.is_incomplete()


def finished_runs(folders: Iterable[str | Path]) -> list[RunDir]:
    """The finished run directories below ``folders``: eval.json written, no INCOMPLETE marker."""
    found = {p.parent for folder in folders for p in Path(folder).rglob(RunDir.EVAL)}
    return [RunDir(p) for p in sorted(found) if not RunDir(p).is_incomplete()]


def incomplete_runs(folders: Iterable[str | Path]) -> list[RunDir]:
    """The run directories below ``folders`` that never finished (their INCOMPLETE marker is still there)."""
    return [RunDir(p) for p in sorted({p.parent for folder in folders for p in Path(folder).rglob(RunDir.INCOMPLETE)})]


__all__ = ["MetricsRecord", "RunDir", "finished_runs", "incomplete_runs"]
