"""Tests of benchmark.infra.results: the typed results read and write eval.json, fold.json and lsm.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark.infra.results import (
    BankFold,
    BankFoldResult,
    ClassificationResult,
    ClassificationTiming,
    EpochScore,
    EvalResult,
    FoldReport,
    FoldResult,
    ResultFormatError,
    RunInfo,
    SimilarityRecord,
    SizeSummary,
    Timing,
    read_eval,
    read_fold,
)

REFERENCE = Path(__file__).resolve().parent.parent / "results" / "reference"
KINDS = {"eval.json": read_eval, "fold.json": read_fold, "lsm.json": SimilarityRecord.read}  # puzzle and classification runs


def committed(name: str) -> list[Path]:
    return sorted(REFERENCE.rglob(name))


@pytest.mark.parametrize("name", list(KINDS))
def test_every_committed_result_reads_and_rewrites_byte_for_byte(name, tmp_path):
    """The format is kept: the reference results load, and writing them back changes no byte."""
    paths = committed(name)
    assert len(paths) >= 30  # the sharing studies' runs: the glob found the files it is meant to
    for path in paths:
        result = KINDS[name](path)
        result.write(tmp_path / name)
        assert (tmp_path / name).read_bytes() == path.read_bytes(), path


def test_a_reevaluation_file_has_no_run_information(tmp_path):
    (path,) = REFERENCE.rglob("eval_33_300.json")
    result = EvalResult.read(path)
    assert result.run is None and result.sizes == [33] and result.iterations == 300
    assert result.summary[33].final_iter == 300 == len(result.accuracy[33])


def test_size_summary_has_known_answers():
    curve = [0.0, 0.5, 0.75, 0.75, 0.5]
    assert SizeSummary.of(curve, 3) == SizeSummary(train_depth=3, at_train_depth=0.75, best_iter=3, best=0.75,
                                                    final_iter=5, final=0.5)
    # Trained deeper than scored: the training depth is capped at the last iteration scored.
    assert SizeSummary.of(curve, 9) == SizeSummary(train_depth=5, at_train_depth=0.5, best_iter=3, best=0.75,
                                                    final_iter=5, final=0.5)
    with pytest.raises(ValueError, match="at least one"):
        SizeSummary.of([], 1)


def test_eval_result_round_trips_and_refuses_a_curve_of_the_wrong_length(tmp_path):
    info = RunInfo(task="maze", model="shared", parameters=10, seed=3, train_size=9, device="cpu", final_train_acc=None,
                   seconds=Timing(generation=1.0, train=2.5, eval=0.25))
    result = EvalResult(iterations=3, train_iters=2, accuracy={9: (0.5, 1.0, 1.0), 15: (0.0, 0.0, 0.25)}, run=info)
    result.write(tmp_path / "eval.json")
    assert EvalResult.read(tmp_path / "eval.json") == result
    raw = json.loads((tmp_path / "eval.json").read_text())
    assert raw["summary"]["15"]["best_iter"] == 3 and raw["final_train_acc"] is None and raw["seconds"]["train"] == 2.5
    with pytest.raises(ValueError, match="size 9 has 2 accuracies for 3 iterations"):
        EvalResult(iterations=3, train_iters=2, accuracy={9: (0.5, 1.0)})


def test_a_file_that_contradicts_itself_or_lacks_a_key_is_refused(tmp_path):
    source = sorted((REFERENCE / "study_maze").rglob("eval.json"))[0]  # a puzzle run's
    data = json.loads(source.read_text())
    size = next(iter(data["summary"]))
    data["summary"][size]["best"] = -1.0
    (tmp_path / "eval.json").write_text(json.dumps(data))
    with pytest.raises(ResultFormatError, match="summary disagrees"):
        EvalResult.read(tmp_path / "eval.json")
    del data["accuracy"]
    (tmp_path / "eval.json").write_text(json.dumps(data))
    with pytest.raises(ResultFormatError, match="not a eval.json file.*accuracy"):
        EvalResult.read(tmp_path / "eval.json")

    fold = json.loads(sorted((REFERENCE / "study_maze").rglob("fold.json"))[0].read_text())
    fold["report"]["num_loops"] += 1
    (tmp_path / "fold.json").write_text(json.dumps(fold))
    with pytest.raises(ResultFormatError, match="num_loops"):
        FoldResult.read(tmp_path / "fold.json")


def test_fold_comparison_is_after_minus_before_per_shared_size():
    before = EvalResult(iterations=3, train_iters=2, accuracy={9: (0.5, 0.75, 0.5), 15: (0.0, 0.25, 0.5)})
    after = EvalResult(iterations=3, train_iters=2, accuracy={9: (0.25, 0.5, 1.0), 21: (0.0, 0.0, 0.0)})
    result = FoldResult.compare(before, after, "shared-folded", FoldReport(threshold=0.99, positions=1))
    assert set(result.comparison) == {9}  # only the sizes both were scored on
    c = result.comparison[9]
    assert (c.before.at_train_depth, c.before.best, c.before.best_iter) == (0.75, 0.75, 2)
    assert (c.after.at_train_depth, c.after.best, c.after.best_iter) == (0.5, 1.0, 3)
    assert c.delta_at_train_depth == -0.25 and c.delta_best == 0.25
    assert FoldResult.from_json(json.loads(json.dumps(result.to_json()))) == result


# ---------------------------------------------------------------------------- classification runs
# eval.json and fold.json as benchmark.pipelines.classification wrote them (write_json of the dicts, keys in this
# order) before these types moved here, a validation split present: the format is kept.
CLASSIFICATION_EVAL = {
    "task": "digits", "model": "swrn-16-2-1", "seed": 1, "parameters": 285170, "unshared_parameters": 691386,
    "accuracy": 0.75, "error": 0.25,
    "curve": [{"epoch": 1, "val_acc": 0.5, "val_error": 0.5, "test_acc": 0.625, "test_error": 0.375},
              {"epoch": 2, "val_acc": 0.875, "val_error": 0.125, "test_acc": 0.75, "test_error": 0.25}],
    "images_per_s": 812.5, "seconds": {"train": 3.5, "analysis": 0.25, "total": 4.0}, "device": "cpu",
    "kind": "classification",
}
CLASSIFICATION_FOLD = {
    "threshold": 0.99,
    "banks": {"stages.0.bank": {"threshold": 0.99, "layers": 4, "distinct": 2, "index": [0, 0, 1, 1],
                                "scales": [1.0, -2.0, 1.0, 0.5], "parameters_before": 20, "parameters_after": 14,
                                "max_relative_error": 1e-16}},
    "parameters_before": 1000, "parameters_after": 994, "accuracy_before": 0.75, "accuracy_after": 0.5, "delta": -0.25,
}


def test_a_classification_eval_reads_rewrites_byte_for_byte_and_derives_its_figures(tmp_path):
    old = json.dumps(CLASSIFICATION_EVAL, indent=1)  # as tasks.fileio.write_json writes it
    (tmp_path / "old.json").write_text(old)
    result = ClassificationResult.read(tmp_path / "old.json")
    assert result.curve == (EpochScore(1, 0.625, 0.5), EpochScore(2, 0.75, 0.875))
    assert (result.accuracy, result.error) == (0.75, 0.25)  # the last epoch's test figures
    assert result.seconds == ClassificationTiming(train=3.5, analysis=0.25, total=4.0)
    result.write(tmp_path / "new.json")
    assert (tmp_path / "new.json").read_text() == old
    assert read_eval(tmp_path / "old.json") == result
    without_val = EpochScore(epoch=3, test_acc=0.5)
    assert without_val.to_json() == dict(epoch=3, test_acc=0.5, test_error=0.5)
    with pytest.raises(ValueError, match="at least one epoch"):
        ClassificationResult(task="digits", model="m", seed=0, parameters=1, unshared_parameters=None, curve=(),
                             images_per_s=1.0, seconds=ClassificationTiming(1.0, 0.0, 1.0), device="cpu")


def test_read_eval_tells_the_two_kinds_apart():
    puzzle = sorted((REFERENCE / "study_maze").rglob("eval.json"))[0]
    assert read_eval(puzzle) == EvalResult.read(puzzle)
    with pytest.raises(ResultFormatError, match="kind is None, not 'classification'"):
        ClassificationResult.read(puzzle)


@pytest.mark.parametrize("edit,message", [
    (lambda d: d.update(error=0.3), "accuracy or error disagrees with the last epoch"),
    (lambda d: d.update(accuracy=0.625), "accuracy or error disagrees with the last epoch"),
    (lambda d: d["curve"][0].update(val_error=0.4), "epoch 1 of its curve has an unknown key or an error"),
    (lambda d: d["curve"][1].update(train_acc=1.0), "epoch 2 of its curve has an unknown key"),
    (lambda d: d.pop("seconds"), "not a classification eval.json file this version can read"),
    (lambda d: d.update(curve=[]), "at least one epoch"),
])
def test_a_classification_eval_that_contradicts_itself_is_refused(tmp_path, edit, message):
    data = json.loads(json.dumps(CLASSIFICATION_EVAL))  # a deep copy
    edit(data)
    (tmp_path / "eval.json").write_text(json.dumps(data))
    with pytest.raises(ResultFormatError, match=message) as info:
        read_eval(tmp_path / "eval.json")
    assert str(info.value).count("\n") == 0 and str(tmp_path / "eval.json") in str(info.value)


def test_a_bank_fold_result_round_trips_and_checks_its_derived_figures(tmp_path):
    (tmp_path / "fold.json").write_text(json.dumps(CLASSIFICATION_FOLD))
    fold = BankFoldResult.read(tmp_path / "fold.json")
    bank = fold.banks["stages.0.bank"]
    assert isinstance(bank, BankFold) and (bank.layers, bank.distinct, bank.index) == (4, 2, [0, 0, 1, 1])
    assert (fold.delta, fold.merged_layers) == (-0.25, 2)
    fold.write(tmp_path / "again.json")
    assert json.loads((tmp_path / "again.json").read_text()) == CLASSIFICATION_FOLD
    assert BankFoldResult.read(tmp_path / "again.json") == fold
    for edit, message in [(lambda d: d.update(delta=0.0), "delta disagrees"),
                          (lambda d: d["banks"]["stages.0.bank"].update(distinct=3), "layers or distinct count disagrees"),
                          (lambda d: d["banks"]["stages.0.bank"].update(index=[0, 1, 1]), "layers or distinct count disagrees")]:
        data = json.loads(json.dumps(CLASSIFICATION_FOLD))
        edit(data)
        (tmp_path / "bad.json").write_text(json.dumps(data))
        with pytest.raises(ResultFormatError, match=message):
            BankFoldResult.read(tmp_path / "bad.json")
