"""The parity table on hand-made run directories with known numbers."""

from __future__ import annotations

import csv
import json

import matplotlib.image
import pytest

from benchmark.analysis.parity import main
from benchmark.infra.results import (
    BankFoldResult,
    ClassificationResult,
    ClassificationTiming,
    EpochScore,
    EvalResult,
    RunInfo,
    Timing,
)


def make_run(root, task, model, seed, parameters, unshared, error, fold_delta=None):
    run_dir = root / task / "full" / model / f"seed{seed}"
    run_dir.mkdir(parents=True)
    curve = (EpochScore(epoch=1, test_acc=0.5), EpochScore(epoch=2, test_acc=1 - error))  # the last epoch's counts
    ClassificationResult(task=task, model=model, seed=seed, parameters=parameters, unshared_parameters=unshared, curve=curve,
                         images_per_s=1.0, seconds=ClassificationTiming(train=1.0, analysis=0.0, total=1.0),
                         device="cpu").write(run_dir / "eval.json")
    if fold_delta is not None:
        BankFoldResult(threshold=0.99, banks={}, parameters_before=parameters, parameters_after=parameters,
                       accuracy_before=1 - error, accuracy_after=1 - error + fold_delta).write(run_dir / "fold.json")


@pytest.fixture
def results(tmp_path):
    root = tmp_path / "results"
    wrn, swrn1, swrn2 = 36_479_194, 12_287_212, 17_125_630
    make_run(root, "cifar10", "wrn-28-10", 0, wrn, wrn, 0.04)
    make_run(root, "cifar10", "wrn-28-10", 1, wrn, wrn, 0.05)
    make_run(root, "cifar100", "wrn-28-10", 0, wrn + 92_160 + 90, wrn + 92_160 + 90, 0.20)  # 100 classes: a bigger classifier
    make_run(root, "cifar10", "swrn-28-10-1", 0, swrn1, wrn, 0.045, fold_delta=0.0002)
    make_run(root, "cifar10", "swrn-28-10-1", 1, swrn1, wrn, 0.047, fold_delta=0.0004)
    make_run(root, "cifar100", "swrn-28-10-1", 0, swrn1 + 92_250, wrn + 92_250, 0.21, fold_delta=-0.0001)
    make_run(root, "cifar100", "swrn-28-10-1", 1, swrn1 + 92_250, wrn + 92_250, 0.23, fold_delta=0.0003)
    make_run(root, "cifar10", "swrn-28-10-2", 0, swrn2, wrn, 0.0425, fold_delta=0.0)
    make_run(root, "digits", "wrn-16-2", 0, 691_000, 691_000, 0.02)
    make_run(root, "digits", "swrn-16-2-1", 0, 400_000, 691_000, 0.0275, fold_delta=-0.0278)
    algorithmic = root / "maze" / "train9_test15" / "shared" / "x"  # a puzzle run: not in the table
    algorithmic.mkdir(parents=True)
    info = RunInfo(task="maze", model="shared", parameters=10, seed=0, train_size=9, device="cpu", final_train_acc=1.0,
                   seconds=Timing(generation=0.0, train=1.0, eval=0.0))
    EvalResult(iterations=1, train_iters=1, accuracy={9: (1.0,)}, run=info).write(algorithmic / "eval.json")
    return root


def test_the_table_cells(results, tmp_path, capsys):
    main([str(results), "--out", str(tmp_path / "table")])
    lines = (tmp_path / "table" / "parity.md").read_text().splitlines()
    assert lines[0] == "| model | parameters | saving | CIFAR-10 error (%) | CIFAR-100 error (%) | digits error (%) | fold Δ acc (points) |"
    assert lines[2:] == [
        "| wrn-16-2 | 691,000 | 0.0% | — | — | 2.00 (1) | — |",
        "| swrn-16-2-1 | 400,000 | 42.1% | — | — | 2.75 (1) | -2.78 |",
        "| wrn-28-10 | 36,479,194 | 0.0% | 4.50 ± 0.71 (2) | 20.00 (1) | — | — |",
        "| swrn-28-10-2 | 17,125,630 | 53.1% | 4.25 (1) | — | — | +0.00 |",
        "| swrn-28-10-1 | 12,287,212 | 66.3% | 4.60 ± 0.14 (2) | 22.00 ± 1.41 (2) | — | +0.02 |",
    ]
    assert capsys.readouterr().out.startswith(lines[0])

    rows = {row["model"]: row for row in csv.DictReader((tmp_path / "table" / "parity.csv").open())}
    assert set(rows) == {"wrn-28-10", "swrn-28-10-1", "swrn-28-10-2", "wrn-16-2", "swrn-16-2-1"}
    shared = rows["swrn-28-10-1"]
    assert int(shared["parameters"]) == 12_287_212 and int(shared["unshared_parameters"]) == 36_479_194
    assert float(shared["saving"]) == pytest.approx(1 - 12_287_212 / 36_479_194)
    assert float(shared["cifar10_error_mean"]) == pytest.approx(0.046) and float(shared["cifar10_error_std"]) == pytest.approx(0.0014142, rel=1e-4)
    assert float(shared["cifar100_error_mean"]) == pytest.approx(0.22) and int(shared["cifar100_runs"]) == 2
    assert float(shared["fold_delta"]) == pytest.approx(0.0002)
    assert shared["digits_error_mean"] == "" and rows["wrn-28-10"]["fold_delta"] == ""

    image = matplotlib.image.imread(tmp_path / "table" / "parity.png")
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_a_folder_without_classification_runs_is_one_sentence(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as info:
        main([str(tmp_path / "empty")])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "no classification runs" in err and err.count("\n") == 1
    assert list((tmp_path / "empty").iterdir()) == []


def test_a_run_file_it_cannot_read_is_one_sentence(results, capsys):
    bad = results / "cifar10" / "full" / "wrn-28-10" / "seed0" / "eval.json"
    data = json.loads(bad.read_text())
    data["error"] = 0.5  # disagrees with the accuracy of the last epoch
    bad.write_text(json.dumps(data))
    with pytest.raises(SystemExit) as info:
        main([str(results)])
    err = capsys.readouterr().err
    assert info.value.code == 2 and str(bad) in err and "disagrees" in err and err.count("\n") == 1
    assert not (results / "parity.md").exists()


def test_runs_of_another_recipe_are_never_averaged_into_a_row(results, tmp_path, capsys):
    """A user's new runs beside the reference runs (same model, another recipe or precision) get a
    row of their own that names what differs, instead of being merged into the reference row."""
    import yaml

    for seed in (0, 1):  # the fixture's reference runs: their recipe
        (results / "cifar10" / "full" / "wrn-28-10" / f"seed{seed}" / "config.yaml").write_text(
            yaml.safe_dump(dict(size=dict(n_train=None), train=dict(epochs=200, lr=0.1, log_every=1), precision="bf16")))
    make_run(results / "mine", "cifar10", "wrn-28-10", 0, 36_479_194, 36_479_194, 0.30)
    (results / "mine" / "cifar10" / "full" / "wrn-28-10" / "seed0" / "config.yaml").write_text(
        yaml.safe_dump(dict(size=dict(n_train=None), train=dict(epochs=2, lr=0.1, log_every=5), precision="bf16")))
    main([str(results), "--out", str(tmp_path / "out")])
    table = (tmp_path / "out" / "parity.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| wrn-28-10")]
    assert any(line.startswith("| wrn-28-10 (train.epochs=200) |") and "4.50 ± 0.71 (2)" in line for line in rows), table
    assert any(line.startswith("| wrn-28-10 (train.epochs=2) |") and "30.00 (1)" in line for line in rows), table
    assert "log_every" not in table  # how often a run logs is not part of its recipe
