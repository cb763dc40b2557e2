"""An outside task plugin (tests/plugin_example, a pip-installable package) found through Hydra's
own plugin mechanism: its SearchPathPlugin puts its configs on the search path, so
``python -m benchmark task=parity`` works without editing this repo; its ``algoreason.tasks``
entry point lets a parity checkpoint name its task (benchmark.models.registry)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import gymnasium
import numpy as np
import pytest
import torch
import yaml
from gymnasium.utils.env_checker import check_env

if sys.version_info >= (3, 11):
    import tomllib
else:  # the dev extra installs tomli on Python 3.10
    import tomli as tomllib

from benchmark.infra.checkpoint import load_checkpoint
from benchmark.config.schema import ConfigError
from conftest import TASKS, TINY

REPO = Path(__file__).resolve().parents[1]
PLUGIN = REPO / "tests" / "plugin_example"


def _metadata(dest: Path) -> Path:
    """What ``pip install ./tests/plugin_example`` records of the plugin for importlib.metadata (a
    dist-info directory with its entry points), made from its own pyproject.toml; on sys.path
    beside the plugin's source, it stands for the installed package."""
    project = tomllib.loads((PLUGIN / "pyproject.toml").read_text())["project"]
    info = dest / f"algoreason_parity-{project['version']}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    (info / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{name} = {value}\n" for name, value in points.items())
        for group, points in project["entry-points"].items()))
    return dest


def _cli(tmp_path: Path, *overrides: str, plugin: bool) -> subprocess.CompletedProcess:
    path = [str(PLUGIN), str(_metadata(tmp_path / "site"))] if plugin else []
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join([*path, str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    cmd = [sys.executable, "-m", "benchmark", f"results_dir={tmp_path / 'results'}", f"cache_dir={tmp_path / 'cache'}", *overrides]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)


def _available_tasks(stderr: str) -> set[str]:
    """The options the one-sentence refusal lists after "available options in 'task':"."""
    listed = stderr.split("available options in 'task':", 1)[1].strip().rstrip(".")
    return {name.strip() for name in listed.split(",")}

def test_plugin_task_runs_from_the_command_line(tmp_path, monkeypatch):
    proc = _cli(tmp_path, "task=parity", "size.train=8", "size.test=[12]", "run_id=p", *TINY, plugin=True)
    assert proc.returncode == 0, proc.stderr
    run_dir = tmp_path / "results" / "parity" / "train8_test12" / "shared" / "p"
    for name in ("config.yaml", "metrics.jsonl", "eval.json", "model.pt", "extrapolation.png"):
        assert (run_dir / name).is_file(), name
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["task"] == {"_target_": "algoreason_parity.ParityTask", "density": 0.5}
    assert cfg["train"]["lr"] == 0.0025  # the plugin's own train/parity.yaml was picked by its task config
    results = json.loads((run_dir / "eval.json").read_text())
    assert results["task"] == "parity"
    assert set(results["accuracy"]) == {"8", "12"}
    assert all(len(acc) == 5 and all(0.0 <= a <= 1.0 for a in acc) for acc in results["accuracy"].values())
    assert "oracle iter" in proc.stdout

    # The checkpoint names the task by its registered name; it loads where the plugin is installed...
    monkeypatch.syspath_prepend(str(PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    model, ckpt = load_checkpoint(run_dir / "model.pt")
    assert (ckpt.task_name, ckpt.task_args, type(ckpt.task).__name__) == ("parity", {"density": 0.5}, "ParityTask")
    x, y = ckpt.task.generate(12, 4, seed=3)
    assert model(torch.from_numpy(x), 5).shape == (4, 2, 12)
    # ...and is refused, in one sentence, where it is not: the file cannot name the class itself.
    shutil.rmtree(tmp_path / "site")
    with pytest.raises(ConfigError, match="unknown task class 'parity'.*algoreason.tasks"):
        load_checkpoint(run_dir / "model.pt")


def test_plugin_task_is_unknown_without_the_plugin(tmp_path):
    proc = _cli(tmp_path, "task=parity", *TINY, plugin=False)
    assert proc.returncode != 0
    assert "Could not find 'task/parity'" in proc.stderr
    assert _available_tasks(proc.stderr) == set(TASKS)
    assert not (tmp_path / "results").exists()


def test_unknown_task_error_lists_the_plugin_task(tmp_path):
    proc = _cli(tmp_path, "task=nope", *TINY, plugin=True)
    assert proc.returncode != 0
    assert _available_tasks(proc.stderr) == {*TASKS, "parity"}
    assert not (tmp_path / "results").exists()


def test_bad_plugin_option_is_one_sentence(tmp_path):
    proc = _cli(tmp_path, "task=parity", "task.density=2", *TINY, plugin=True)
    assert proc.returncode == 2
    assert "parity density must be a number in [0, 1]" in proc.stderr and proc.stderr.count("\n") == 1
    assert not (tmp_path / "results").exists()


@pytest.fixture
def parity(monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGIN))
    import algoreason_parity

    return algoreason_parity


def test_plugin_targets_match_an_independent_oracle(parity):
    task = parity.ParityTask(density=0.3)
    x, y = task.generate(23, 40, seed=5)
    assert x.shape == (40, 1, 23) and y.shape == (40, 23)
    for xi, yi in zip(x, y):
        ones = sum(1 for v in xi[0] if v > 0)
        assert yi.tolist() == [ones % 2] * 23
    x2, _ = task.generate(23, 40, seed=5)
    assert x.tobytes() == x2.tobytes()


def test_plugin_registers_its_gymnasium_env(parity):
    env = gymnasium.make("algoreason_parity:algoreason_parity/Parity-v0", size=10)
    assert env.observation_space.shape == (1, 10) and env.action_space.shape == (10,)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(env.unwrapped)
    obs, _ = env.reset(seed=3)
    answer = np.full(10, int((obs[0] > 0).sum()) % 2, dtype=np.int64)
    _, reward, terminated, _, info = env.step(answer)
    assert (reward, terminated, info) == (1.0, True, {"correct": True})


def test_unregistered_plugin_task_is_refused_before_training(make_cfg, tmp_path, monkeypatch):
    """Importable but not registered (no entry point): its checkpoint could not be loaded, so the
    run is refused before anything is written, not after training."""
    from benchmark.pipelines.algorithmic import run

    monkeypatch.syspath_prepend(str(PLUGIN))
    cfg = make_cfg("task=prefix_sums", "task._target_=algoreason_parity.ParityTask", "size=train8_test16")  # no options to drop
    with pytest.raises(ConfigError, match="algoreason_parity.task.ParityTask is not registered.*algoreason.tasks"):
        run(cfg)
    assert not (tmp_path / "results").exists()


# ---------------------------------------------------------------------------- a model from outside the repository
def _report(tmp_path: Path, *folders: Path) -> subprocess.CompletedProcess:
    path = [str(PLUGIN), str(tmp_path / "site")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*path, str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.run([sys.executable, "-m", "benchmark.report", *map(str, folders)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)


def test_plugin_model_trains_evaluates_folds_and_appears_in_the_report(tmp_path, monkeypatch):
    """The plugin's ``model=coupled`` (algoreason_parity.CoupledNet, registered by its
    ``algoreason.models`` entry point, its kind declared by the class) runs end to end."""
    proc = _cli(tmp_path, "task=parity", "model=coupled", "size.train=8", "size.test=[12]", "run_id=c", *TINY, plugin=True)
    assert proc.returncode == 0, proc.stderr
    run_dir = tmp_path / "results" / "parity" / "train8_test12" / "coupled" / "c"
    for name in ("config.yaml", "metrics.jsonl", "eval.json", "model.pt", "lsm.json", "fold.json"):
        assert (run_dir / name).is_file(), name
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["model"]["_target_"] == "algoreason_parity.CoupledNet" and cfg["model"]["templates"] == 2
    fold = json.loads((run_dir / "fold.json").read_text())
    assert fold and set(json.loads((run_dir / "eval.json").read_text())["accuracy"]) == {"8", "12"}

    report = _report(tmp_path, tmp_path / "results")
    assert report.returncode == 0, report.stderr
    summary = (tmp_path / "results" / "summary.md").read_text()
    assert "coupled" in summary

    monkeypatch.syspath_prepend(str(PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    from benchmark.analysis.study import model_kind
    from benchmark.models.contract import FoldableModel, kind_of

    assert model_kind(cfg["model"]) == "in-block"  # declared "shared" by the class, one block position
    model, ckpt = load_checkpoint(run_dir / "model.pt")
    assert (ckpt.model_name, type(model).__name__, kind_of(model)) == ("coupled", "CoupledNet", "shared")
    assert isinstance(model, FoldableModel)
    x, _ = ckpt.task.generate(12, 4, seed=3)
    assert model(torch.from_numpy(x), 5).shape == (4, 2, 12)
    # Without the plugin the study does not guess: its kind is unknown, never "unshared".
    shutil.rmtree(tmp_path / "site")
    assert model_kind(cfg["model"]) == "unknown"
    with pytest.raises(ConfigError, match="unknown (model class 'coupled'|task class 'parity')"):  # whichever is read first
        load_checkpoint(run_dir / "model.pt")


def test_plugin_model_without_a_declared_kind_is_refused_before_training(make_cfg, tmp_path, monkeypatch):
    """A model class that does not declare its kind does not satisfy the contract: the run stops
    before anything is written (here: the plugin's class with its declarations taken away)."""
    from benchmark.pipelines.algorithmic import run

    monkeypatch.syspath_prepend(str(PLUGIN))
    monkeypatch.syspath_prepend(str(_metadata(tmp_path / "site")))
    import algoreason_parity

    monkeypatch.delattr(algoreason_parity.CoupledNet, "kind")
    monkeypatch.delattr(algoreason_parity.CoupledNet, "config_kind")
    monkeypatch.delattr(algoreason_parity.model.RecurrentConvNet, "kind")
    monkeypatch.delattr(algoreason_parity.model.RecurrentConvNet, "config_kind")
    cfg = make_cfg("task=prefix_sums", "size=train8_test16", "model=shared", "model._target_=algoreason_parity.CoupledNet",
                   "model.name=coupled")
    with pytest.raises(ConfigError, match="does not declare kind and config_kind"):
        run(cfg)
    assert not (tmp_path / "results").exists()
