"""No traceback where a sentence belongs: one test per cause (docs/reliability.md, the promises table).

Each cause is one sentence on stderr, exit status 2 (130 for Ctrl-C), and nothing written or left
half-written. The tests run as root, which file modes do not stop: an unwritable place is one root
cannot write either (``/proc/1``, a path below a regular file), or the one writability probe is
replaced to see that it runs before any model work.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.analysis import animation, plots, report
from benchmark.config.schema import ConfigError
from benchmark.evaluation import rescore
from benchmark.models import registry
from tasks import fileio
from tasks.fileio import WriteError, check_writable_dir, write_text

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "results/reference/checkpoints/prefix_sums/train32_test512/shared/20261127-001511-seed0"
EVALUATE = ["--sizes", "32", "--iters", "3", "--n", "2", "--device", "cpu"]


@pytest.fixture
def run_dir(tmp_path):
    """A copy of a small committed reference run (prefix sums, shared model), without its plots."""
    target = tmp_path / "runs" / "run"
    shutil.copytree(REFERENCE, target, ignore=shutil.ignore_patterns("*.png"))
    return target


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line_exit(capsys, main, argv, status=2) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == status
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


# ---------------------------------------------------------------------------- a place that cannot be written
@pytest.mark.parametrize("command", ["evaluate", "animate", "plot"])
def test_unwritable_run_directory_is_refused_before_any_model_work(command, run_dir, capsys, monkeypatch):
    """The writability probe runs before the model is loaded or anything computed (a read-only run
    directory would otherwise lose evaluate's results in a traceback after all the work)."""
    module = {"evaluate": rescore, "animate": animation, "plot": plots}[command]
    argv = {"evaluate": [str(run_dir), *EVALUATE], "animate": [str(run_dir), "--size", "32", "--iters", "3", "--device", "cpu"],
            "plot": [str(run_dir)]}[command]

    def read_only(directory, what="the output"):
        raise WriteError(directory, OSError(errno.EROFS, "Read-only file system"), f"cannot write {what} into {{path}} ({{reason}})")

    def no_model_work(*args, **kwargs):
        raise AssertionError("the model was loaded before the writability check")

    monkeypatch.setattr(module, "check_writable_dir", read_only)
    monkeypatch.setattr(rescore, "load_checkpoint", no_model_work)
    monkeypatch.setattr(plots, "plot_extrapolation", no_model_work)
    before = files(run_dir)
    err = one_line_exit(capsys, module.main, argv)
    assert err == f"error: cannot write the {'evaluation results' if command == 'evaluate' else command.replace('animate', 'animation').replace('plot', 'plots')} into {run_dir} (Read-only file system)."
    assert files(run_dir) == before


def test_places_root_cannot_write_are_one_sentence(run_dir, tmp_path, capsys):
    """Real refusals: /proc/1 and a folder below a regular file refuse root too."""
    (tmp_path / "file").write_text("x")
    for place in (Path("/proc/1"), tmp_path / "file" / "out"):
        with pytest.raises(WriteError, match=f"cannot write the report into {place} "):
            check_writable_dir(place, "the report")
        with pytest.raises(WriteError, match=f"cannot write {place / 'x.json'} "):
            write_text(place / "x.json", "{}")
    before = files(run_dir)
    err = one_line_exit(capsys, rescore.main, [str(run_dir), *EVALUATE, "--halt", "2", "--histogram", "/proc/1/h.png"])
    assert err.startswith("error: cannot write the histogram into /proc/1 ")
    err = one_line_exit(capsys, animation.main, [str(run_dir), "--size", "32", "--out", "/proc/1/a.gif", "--device", "cpu"])
    assert err.startswith("error: cannot write the animation into /proc/1 ")
    for main in (report.main, __import__("benchmark.analysis.study", fromlist=["main"]).main):
        err = one_line_exit(capsys, main, [str(run_dir.parent), "--out", str(tmp_path / "file" / "out")])
        assert err.startswith("error: cannot write the ") and "file/out" in err
    assert files(run_dir) == before


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM])
def test_a_write_the_disk_refuses_is_one_sentence_naming_the_file(code, run_dir, capsys, monkeypatch):
    """A full disk or an immutable file at the atomic rename: one sentence naming the file, no
    temporary file left, the previous file (none here) kept."""
    def refuse(src, dst):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(fileio.os, "replace", refuse)
    before = files(run_dir)
    err = one_line_exit(capsys, rescore.main, [str(run_dir), *EVALUATE])
    assert err == f"error: cannot write {run_dir / 'eval_sizes32_iters3_n2.json'} ({os.strerror(code)}); nothing was written there."
    assert files(run_dir) == before


# ---------------------------------------------------------------------------- damaged files a command reads
@pytest.mark.parametrize("name", ["eval.json", "fold.json", "lsm.json", "metrics.jsonl", "config.yaml"])
def test_damaged_run_files_are_one_sentence_and_nothing_is_written(name, run_dir, capsys):
    """Truncated or not UTF-8: plot, report and study read and check every file before writing any."""
    from benchmark.analysis import study

    for damage in (lambda b: b[:len(b) // 2], lambda b: b"\x00\xff{" + b[3:]):
        (run_dir / name).write_bytes(damage((REFERENCE / name).read_bytes()))
        before = files(run_dir.parent)
        for main, argv in ((plots.main, [str(run_dir)]), (report.main, [str(run_dir.parent)]), (study.main, [str(run_dir.parent)])):
            if name == "config.yaml" and main is not study.main:
                continue  # plot and report do not read the config
            if name == "lsm.json" and main is report.main:
                continue  # nor does the report read lsm.json
            err = one_line_exit(capsys, main, argv)
            assert err.startswith("error: ") and str(run_dir) in err
            assert files(run_dir.parent) == before


def test_a_bad_fold_threshold_in_the_run_config_is_one_sentence(run_dir, capsys):
    config = (run_dir / "config.yaml").read_text()
    assert "fold_threshold:" in config
    (run_dir / "config.yaml").write_text("\n".join("  fold_threshold: abc" if "fold_threshold:" in line else line
                                                   for line in config.splitlines()) + "\n")
    before = files(run_dir)
    err = one_line_exit(capsys, rescore.main, [str(run_dir), *EVALUATE, "--fold"])
    assert err.endswith("has eval.fold_threshold 'abc', not a number in (0, 1]: give --fold-threshold T with 0 < T <= 1.")
    assert files(run_dir) == before


# ---------------------------------------------------------------------------- names that would choose code
def test_a_registered_plugin_that_does_not_import_is_one_sentence(tmp_path, monkeypatch):
    """An entry point naming a module that is missing or raises on import: one sentence, whether
    a checkpoint or a config names it."""
    (tmp_path / "broken_plugin.py").write_text("raise RuntimeError('half-installed')\n")
    info = tmp_path / "broken_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[algoreason.models]\nbroken = broken_plugin:Net\ngone = no_such_module:Net\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match=r"the model registered as 'broken' \(broken_plugin:Net\) cannot be imported "
                                          r"\(RuntimeError: half-installed\): reinstall"):
        registry.resolve("model", "broken")
    with pytest.raises(ConfigError, match=r"'gone' .* cannot be imported \(ModuleNotFoundError"):
        registry.resolve("model", "gone")
    assert registry.model_kind_of_config({"_target_": "broken_plugin.Net"}) == "unknown"


@pytest.mark.parametrize("override,message", [
    ("task._target_=os.system", "task target 'os.system' is not one of the registered task classes"),
    ("model._target_=os.getcwd", "model target 'os.getcwd' is not one of the registered model classes"),
    ("pipeline._target_=os.getcwd", "pipeline._target_ must be one of"),
    ("+model.block._target_=os.system", "model.block._target_ cannot be set"),
])
def test_a_target_on_the_command_line_must_be_registered(override, message, tmp_path):
    """Refused before Hydra imports or calls anything; nothing is written."""
    result = _cli(tmp_path, override)
    assert result.returncode == 2 and result.stderr.strip().startswith(f"error: {message}"), result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "results").exists()


def test_task_env_names_are_resolved_through_the_registry_first():
    from tasks.env import TaskEnv

    assert TaskEnv("prefix_sums", size=5).task.name == "prefix_sums"
    with pytest.raises(ValueError, match=r"task 'some.module.Foo' is neither a registered task name \(.*maze.*\) "
                                         r"nor an importable class \(ModuleNotFoundError"):
        TaskEnv("some.module.Foo", size=5)
    with pytest.raises(ValueError, match="registered task name"):
        TaskEnv("nodots", size=5)


# ---------------------------------------------------------------------------- sweeps
def _cli(tmp_path: Path, *overrides: str, multirun: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    cmd = [sys.executable, "-m", "benchmark", *(["-m"] if multirun else []), f"results_dir={tmp_path / 'results'}", f"cache_dir={tmp_path / 'cache'}",
           "task=prefix_sums", "size=train8_test16", *overrides]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)


def test_a_sweep_with_a_bad_point_writes_nothing(tmp_path):
    """Every point is checked before Hydra writes the sweep directory and multirun.yaml."""
    result = _cli(tmp_path, "seed=2,-1", multirun=True)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: sweep job #1 (results_dir={tmp_path / 'results'} cache_dir={tmp_path / 'cache'} task=prefix_sums "
        f"size=train8_test16 seed=-1): seed must be an integer in [0, 4294967295], got -1."]
    assert not (tmp_path / "results").exists()


def test_a_sweep_into_a_folder_that_cannot_be_written_is_one_sentence(tmp_path):
    (tmp_path / "file").write_text("x")
    env_dir = tmp_path / "file" / "results"
    result = _cli(tmp_path, f"results_dir={env_dir}", "seed=0,1", multirun=True)
    assert result.returncode == 2 and "cannot be created because" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


# ---------------------------------------------------------------------------- Ctrl-C
def test_ctrl_c_during_evaluate_is_one_line_and_writes_nothing(run_dir, capsys, monkeypatch):
    """Ctrl-C while computing, and a second one during the save (at the fsync before the rename):
    one line, exit status 130, no result and no temporary file."""
    import signal

    original = signal.getsignal(signal.SIGINT)
    before = files(run_dir)
    try:
        def interrupt(*args, **kwargs):
            raise KeyboardInterrupt

        with monkeypatch.context() as patch:
            patch.setattr(rescore, "evaluate", interrupt)
            err = one_line_exit(capsys, rescore.main, [str(run_dir), *EVALUATE], status=130)
        assert err.startswith("interrupted;")
        signal.signal(signal.SIGINT, original)
        with monkeypatch.context() as patch:
            patch.setattr(fileio.os, "fsync", interrupt)
            assert one_line_exit(capsys, rescore.main, [str(run_dir), *EVALUATE], status=130) == err
    finally:
        signal.signal(signal.SIGINT, original)
    assert files(run_dir) == before
