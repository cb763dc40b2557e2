"""Tests of benchmark.results: the typed results read and write eval.json, fold.json and lsm.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark.results import (
    EvalResult,
    FoldReport,
    FoldResult,
    ResultFormatError,
    RunInfo,
    SimilarityRecord,
    SizeSummary,
    Timing,
)

REFERENCE = Path(__file__).resolve().parent.parent / "results" / "reference"
KINDS = {"eval.json": EvalResult, "fold.json": FoldResult, "lsm.json": SimilarityRecord}


def committed(name: str) -> list[Path]:
    return sorted(REFERENCE.rglob(name))


@pytest.mark.parametrize("name", list(KINDS))
def test_every_committed_result_reads_and_rewrites_byte_for_byte(name, tmp_path):
    """The format is kept: the reference results load, and writing them back changes no byte."""
    paths = committed(name)
    assert len(paths) >= 30  # the sharing studies' runs: the glob found the files it is meant to
    for path in paths:
        result = KINDS[name].read(path)
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
    source = committed("eval.json")[0]
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

    fold = json.loads(committed("fold.json")[0].read_text())
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
