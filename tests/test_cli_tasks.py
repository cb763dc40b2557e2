"""Every built-in task end to end (compose -> run -> run directory), its per-task config defaults,
and bad sizes refused with one sentence before anything is written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from benchmark.config.schema import ConfigError, size_name
from benchmark.pipelines.algorithmic import build_task, run

from conftest import PUZZLE_TASKS, TINY, compose_config

RUN_FILES = ("config.yaml", "metrics.jsonl", "eval.json", "model.pt", "extrapolation.png")


def _compose(*overrides: str):
    return compose_config(*overrides, hydra=True)


@pytest.mark.parametrize("task", PUZZLE_TASKS)
def test_every_task_runs_end_to_end(make_cfg, task):
    # Each task's own default size (prefix sums 32 -> 512 bits, shortest paths 12 -> 24), tiny counts.
    cfg = make_cfg(f"task={task}", "run_id=r", "model.width=8")
    results = run(cfg)
    run_dir = results.run_dir
    task_name = build_task(cfg).name  # a variant option (shortest_path_unit) is its task's run (shortest_path)
    assert run_dir == Path(cfg.results_dir) / task_name / size_name(cfg.size) / "shared" / "r"
    for name in RUN_FILES:
        assert (run_dir / name).is_file(), name
    saved = json.loads((run_dir / "eval.json").read_text())
    sizes = {str(s) for s in (cfg.size.train, *cfg.size.test)}
    assert saved["task"] == task_name and set(saved["accuracy"]) == sizes and set(saved["summary"]) == sizes
    for acc in saved["accuracy"].values():
        assert len(acc) == cfg.eval.iters == 5
        assert all(0.0 <= a <= 1.0 for a in acc)
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) >= 1


@pytest.mark.parametrize(
    "task,train,eval_,size",
    [("maze", "cpu", "default", "train9_test15"),
     ("prefix_sums", "prefix_sums", "prefix_sums", "train32_test512"),
     ("shortest_path", "shortest_path", "shortest_path", "train12_test24"),
     ("shortest_path_unit", "shortest_path_unit", "shortest_path", "train8_test16_40k")],
)
def test_a_task_picks_its_own_defaults(task, train, eval_, size):
    choices = _compose(f"task={task}").hydra.runtime.choices
    assert (choices.train, choices.eval, choices.size) == (train, eval_, size)


@pytest.mark.parametrize("order", ["task_first", "task_last"])
def test_command_line_choices_win_over_task_defaults(order):
    mine = ["train=cpu", "eval=default", "size=train32_test128"]
    overrides = ["task=prefix_sums", *mine] if order == "task_first" else [*mine, "task=prefix_sums"]
    cfg = _compose(*overrides)
    choices = cfg.hydra.runtime.choices
    assert (choices.train, choices.eval, choices.size) == ("cpu", "default", "train32_test128")
    assert cfg.train.iters == 20 and cfg.train.detach_extra == 20 and list(cfg.size.test) == [128]  # train/cpu.yaml
    # Single values override the task's default config, which stays in force for the rest.
    cfg = _compose("task=prefix_sums", "train.epochs=3")
    assert cfg.train.epochs == 3 and cfg.train.alpha == 1.0 and cfg.train.iters == 30


@pytest.mark.parametrize(
    "task,override,message",
    [("prefix_sums", "size.train=0", "prefix_sums sizes are bit lengths, an integer >= 1, got 0."),
     ("prefix_sums", "size.test=[64,-3]", "an integer >= 1, got -3."),
     ("shortest_path", "size.train=3", "shortest_path sizes are grid sides, an integer >= 4, got 3.")],
)
def test_bad_sizes_are_refused_before_anything_is_written(make_cfg, task, override, message):
    cfg = make_cfg(f"task={task}", override)
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("[", r"\[")):
        run(cfg)
    assert not Path(cfg.results_dir).exists() and not Path(cfg.cache_dir).exists()


@pytest.mark.parametrize("task,override", [("prefix_sums", "size.train=0"), ("shortest_path", "size.train=3")])
def test_bad_size_on_the_command_line_exits_2_with_one_sentence(tmp_path, task, override):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "benchmark", f"task={task}", override, f"results_dir={tmp_path / 'results'}",
           f"cache_dir={tmp_path / 'cache'}", *TINY]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.rstrip().endswith(".")
    assert not (tmp_path / "results").exists() and not (tmp_path / "cache").exists()
    assert list(tmp_path.iterdir()) == []  # Hydra wrote no outputs/ or log file either
