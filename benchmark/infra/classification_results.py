"""Typed results of an image-classification run (``benchmark.pipelines.classification``):

    eval.json   ClassificationResult (its ``"kind": "classification"`` tells it from a puzzle run's):
                top-1 accuracy per epoch, the final accuracy and error, parameters (its own and the
                unshared network's), images/s, seconds
    fold.json   BankFoldResult: per template bank, the BankFold of ``benchmark.models.bank.fold_bank``,
                and the test accuracy before and after folding

The same rules as ``benchmark.infra.results`` (whose ``read_eval`` and ``read_fold`` read either kind):
written atomically, read back byte for byte, derived figures recomputed when read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmark.infra.results import ResultFormatError, _parse
from tasks.fileio import write_json

CLASSIFICATION = "classification"  # the ``kind`` of a classification run's eval.json


@dataclass(frozen=True)
class EpochScore:
    """Top-1 accuracy (a fraction) on the test split after one epoch, and on the validation split
    when the run carved one. The errors (1 - accuracy) are written for readers, recomputed on read."""

    epoch: int
    test_acc: float
    val_acc: float | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = dict(epoch=self.epoch)
        if self.val_acc is not None:
            data.update(val_acc=self.val_acc, val_error=1.0 - self.val_acc)
        return dict(data, test_acc=self.test_acc, test_error=1.0 - self.test_acc)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EpochScore:
        score = cls(epoch=data["epoch"], test_acc=data["test_acc"], val_acc=data.get("val_acc"))
        if score.to_json() != dict(data):
            raise ResultFormatError(f"epoch {score.epoch} of its curve has an unknown key or an error that is not 1 - its accuracy.")
        return score


@dataclass(frozen=True)
class ClassificationTiming:
    """Wall-clock seconds of a classification run: training, the analysis (LSM, folding), in all."""

    train: float
    analysis: float
    total: float


@dataclass(frozen=True)
class ClassificationResult:
    """``eval.json`` of a classification run.

    ``curve``: one ``EpochScore`` per epoch; the run's ``accuracy`` and ``error`` are its last
    epoch's on the test split. ``unshared_parameters``: the unshared network of the same depth
    and width on the same task (the baseline of the parameter saving), None for a model that
    cannot say. ``images_per_s``: training images per second over all epochs.
    """

    task: str
    model: str
    seed: int
    parameters: int
    unshared_parameters: int | None
    curve: tuple[EpochScore, ...]
    images_per_s: float
    seconds: ClassificationTiming
    device: str

    def __post_init__(self) -> None:
        if not self.curve:
            raise ValueError("a classification result needs the scores of at least one epoch.")

    @property
    def accuracy(self) -> float:
        return self.curve[-1].test_acc

    @property
    def error(self) -> float:
        return 1.0 - self.accuracy

    def to_json(self) -> dict[str, Any]:
        return dict(task=self.task, model=self.model, seed=self.seed, parameters=self.parameters,
                    unshared_parameters=self.unshared_parameters, accuracy=self.accuracy, error=self.error,
                    curve=[score.to_json() for score in self.curve], images_per_s=self.images_per_s,
                    seconds=asdict(self.seconds), device=self.device, kind=CLASSIFICATION)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ClassificationResult:
        if data.get("kind") != CLASSIFICATION:
            raise ResultFormatError(f"its kind is {data.get('kind')!r}, not {CLASSIFICATION!r}.")
        result = cls(task=data["task"], model=data["model"], seed=data["seed"], parameters=data["parameters"],
                     unshared_parameters=data["unshared_parameters"],
                     curve=tuple(EpochScore.from_json(score) for score in data["curve"]),
                     images_per_s=data["images_per_s"], seconds=ClassificationTiming(**data["seconds"]), device=data["device"])
        if (data["accuracy"], data["error"]) != (result.accuracy, result.error):
            raise ResultFormatError("its accuracy or error disagrees with the last epoch of its curve.")
        return result

    def write(self, path: str | Path) -> None:
        write_json(path, self.to_json())

    @classmethod
    def read(cls, path: str | Path) -> ClassificationResult:
        return _parse(path, "classification eval.json", cls.from_json)


@dataclass
class BankFold:
    """What ``benchmark.models.bank.fold_bank`` did to one bank.

    ``index[i]``: the distinct weight layer i uses; ``scales[i]`` its scale; ``max_relative_error``:
    the largest ``||W_i - s_i W_rep|| / ||W_i||`` (0 up to rounding when grouped rows are parallel).
    Parameter counts are of the bank before and of the folded bank after.
    """

    threshold: float
    layers: int
    distinct: int
    index: list[int]
    scales: list[float]
    parameters_before: int
    parameters_after: int
    max_relative_error: float

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BankFold:
        fold = cls(**data)
        if not fold.layers == len(fold.index) == len(fold.scales) or fold.distinct != len(set(fold.index)):
            raise ResultFormatError("a bank's layers or distinct count disagrees with its index and scales.")
        return fold


@dataclass(frozen=True)
class BankFoldResult:
    """``fold.json`` of a classification run: every learned bank folded at ``threshold`` (by module
    path), the model's parameters and its test accuracy before and after. ``delta``: after minus
    before (a fraction), written for readers, recomputed on read."""

    threshold: float
    banks: Mapping[str, BankFold]
    parameters_before: int
    parameters_after: int
    accuracy_before: float
    accuracy_after: float

    @property
    def delta(self) -> float:
        return self.accuracy_after - self.accuracy_before

    @property
    def merged_layers(self) -> int:
        """Bank layers that now share another layer's weight."""
        return sum(bank.layers - bank.distinct for bank in self.banks.values())

    def to_json(self) -> dict[str, Any]:
        return dict(threshold=self.threshold, banks={name: asdict(bank) for name, bank in self.banks.items()},
                    parameters_before=self.parameters_before, parameters_after=self.parameters_after,
                    accuracy_before=self.accuracy_before, accuracy_after=self.accuracy_after, delta=self.delta)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BankFoldResult:
        result = cls(threshold=data["threshold"], banks={name: BankFold.from_json(bank) for name, bank in data["banks"].items()},
                     parameters_before=data["parameters_before"], parameters_after=data["parameters_after"],
                     accuracy_before=data["accuracy_before"], accuracy_after=data["accuracy_after"])
        if data["delta"] != result.delta:
            raise ResultFormatError("its delta disagrees with its accuracy before and after folding.")
        return result

    def write(self, path: str | Path) -> None:
        write_json(path, self.to_json())

    @classmethod
    def read(cls, path: str | Path) -> BankFoldResult:
        return _parse(path, "classification fold.json", cls.from_json)
