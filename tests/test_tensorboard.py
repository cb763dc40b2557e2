"""logger=tensorboard: the numbers of metrics.jsonl, also as TensorBoard scalars in <run dir>/tensorboard/."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from benchmark.pipelines.classification import run as classify
from benchmark.config.schema import ConfigError, check_run_settings
from benchmark.pipelines.algorithmic import run

from conftest import compose_config


def scalars(log_dir) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag of the event files in ``log_dir``: (step, value) pairs in step order."""
    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})  # 0: keep every point
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def expected(run_dir) -> dict[str, list[tuple[int, float]]]:
    """metrics.jsonl as TensorBoard stores it: each number but the step, as float32, at its record's step."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    keys = [k for k in records[0] if k != "step"]
    return {k: [(r["step"], float(np.float32(r[k]))) for r in records] for k in keys}


def test_a_puzzle_run_logs_its_metrics_to_tensorboard(make_cfg):
    result = run(make_cfg("logger=tensorboard", "size.train=5", "size.test=[5]", "model.width=4", "train.log_every=1"))
    want = expected(result.run_dir)
    assert set(want) >= {"loss", "train_acc", "lr", "samples_per_s", "epoch", "samples", "seconds"}
    assert len(want["loss"]) == 4  # 64 samples / batch 16, every step logged
    assert scalars(result.run_dir / "tensorboard") == want


def test_a_classification_run_logs_its_epochs_to_tensorboard(make_cfg):
    cfg = make_cfg("task=digits", "model=wrn", "model.widen=1", "model.depth=10", "train.epochs=2", "size.n_train=64",
                   "size.n_test=32", "progress=false", "logger=tensorboard", tiny=False)
    classify(cfg)
    run_dir = next(p.parent for p in Path(cfg.results_dir).rglob("metrics.jsonl"))
    want = expected(run_dir)
    assert {"loss", "train_acc", "test_acc", "test_error", "images_per_s", "epoch"} <= set(want) and len(want["loss"]) == 2
    assert scalars(run_dir / "tensorboard") == want


def test_without_the_logger_no_event_files_are_written(make_cfg):
    assert compose_config().logger == "none"
    result = run(make_cfg("size.train=5", "size.test=[5]", "model.width=4"))
    assert not (result.run_dir / "tensorboard").exists()


def test_logger_tensorboard_is_refused_without_the_package(make_cfg, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard now raises ImportError
    cfg = make_cfg("logger=tensorboard")
    with pytest.raises(ConfigError, match=r"^logger=tensorboard needs the tensorboard package .*; install it or use logger=none\.$"):
        run(cfg)
    assert not (tmp_path / "results").exists()  # nothing written


def test_an_unknown_logger_is_refused():
    with pytest.raises(ConfigError, match=r"logger must be one of none, tensorboard, got 'wandb'\."):
        check_run_settings(compose_config("logger=wandb"))
