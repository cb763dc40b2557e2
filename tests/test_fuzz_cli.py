"""Fuzzing the commands: whatever the options or the run directory, an answer or one sentence, never a traceback.

(a) ``python -m benchmark`` options: random overrides composed as the command composes them
(the compose helper, in-process) and checked as a job checks its config before building anything
(``benchmark.pipelines.sweep.check_point``): either accepted, refused by Hydra's own composition
(its message, no traceback) or one of the project's ``USER_ERRORS``; any other exception fails.
(b) damaged run directories: a copy of a small committed reference run with random files
truncated, garbled, emptied or deleted, fed to evaluate, report, plot and study in-process: exit
status 0 or 2, no uncaught exception, and nothing half-written (every new file complete, no
temporary file left).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmark.config.schema import USER_ERRORS
from conftest import compose_config

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "results/reference/checkpoints/prefix_sums/train32_test512/shared/20261127-001511-seed0"

# ---------------------------------------------------------------------------- (a) command-line options
KEYS = ["seed", "device", "results_dir", "run_id", "cache_dir", "precision", "threads", "logger", "resume", "task",
        "model", "size", "train", "size.train", "size.test", "size.n_train", "size.n_test", "train.epochs",
        "train.batch_size", "train.lr", "train.iters", "train.clip", "train.ema_horizon", "train.stop_at_acc",
        "eval.iters", "eval.fold_threshold", "model.width", "model.depth", "task._target_", "model._target_",
        "+model.extra._target_"]
VALUES = ["-1", "0", "1", "3", "64", "4294967296", "1e309", "nan", "-inf", "0.5", "abc", "null", "true", "[]", "[1,-2]",
          "[8,16]", "''", "/", "../..", "/proc/1", "${oc.env:NO_SUCH_VARIABLE}", "os.system", "maze", "prefix_sums",
          "shared", "recurrent", "cifar10", "cpu", "cuda:7", "auto", "bf16", "tensorboard"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(KEYS), st.sampled_from(VALUES)), min_size=1, max_size=4))
def test_command_line_options_are_accepted_or_one_sentence(pairs):
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from benchmark.__main__ import check_group_overrides
    from benchmark.pipelines.sweep import check_point

    with tempfile.TemporaryDirectory() as tmp:
        overrides = [f"results_dir={tmp}/results", f"cache_dir={tmp}/cache",
                     *(f"{key}={value}" for key, value in pairs)]
        try:
            check_group_overrides(overrides)  # what python -m benchmark checks before Hydra composes
        except USER_ERRORS as err:
            assert "\n" not in str(err)
            return
        try:
            cfg = compose_config(*overrides)
        except (HydraException, OmegaConfBaseException):
            return  # Hydra's own refusal while composing: its message, exit status 1, nothing written
        try:
            check_point(cfg)
        except USER_ERRORS as err:
            message = str(err)
            assert message and "\n" not in message, message
        assert not Path(tmp, "results").exists() and not Path(tmp, "cache").exists()


# ---------------------------------------------------------------------------- (b) damaged run directories
FILES = ["config.yaml", "eval.json", "fold.json", "lsm.json", "metrics.jsonl", "model.pt"]
DAMAGES = ["truncate", "garble", "empty", "delete", "directory"]


def _damage(path: Path, how: str, data: st.DataObject) -> None:
    raw = path.read_bytes()
    if how == "truncate":
        path.write_bytes(raw[:data.draw(st.integers(0, max(0, len(raw) - 1)), label="cut")])
    elif how == "garble":
        spot = data.draw(st.integers(0, max(0, len(raw) - 1)), label="at")
        path.write_bytes(raw[:spot] + data.draw(st.binary(min_size=1, max_size=8), label="bytes") + raw[spot + 8:])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "delete":
        path.unlink()
    else:
        path.unlink()
        path.mkdir()


def _snapshot(folder: Path) -> dict[Path, float]:
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def _complete(path: Path) -> bool:
    """Whether a file a command wrote is whole: JSON parses, a PNG decodes, text ends its last line."""
    if path.suffix == ".json":
        json.loads(path.read_text())
    elif path.suffix in (".png", ".gif"):
        from PIL import Image

        with Image.open(path) as image:
            image.verify()
    elif path.suffix in (".csv", ".md"):
        assert path.read_text().endswith("\n")
    return True


COMMANDS = ["evaluate", "report", "plot", "study"]


@settings(max_examples=24, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(COMMANDS), st.lists(st.tuples(st.sampled_from(FILES), st.sampled_from(DAMAGES)), min_size=1, max_size=3),
       st.data())
def test_damaged_run_directories_exit_0_or_2_and_leave_nothing_half_written(command, damages, data):
    import matplotlib.pyplot as plt

    from benchmark.analysis import plots, report, study
    from benchmark.evaluation import rescore

    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp) / "runs"
        run_dir = runs / "run"
        shutil.copytree(REFERENCE, run_dir, ignore=shutil.ignore_patterns("*.png"))
        for name, how in damages:
            if (run_dir / name).is_file():
                _damage(run_dir / name, how, data)
        before = _snapshot(runs)
        main, argv = {"evaluate": (rescore.main, [str(run_dir), "--sizes", "32", "--iters", "3", "--n", "2", "--device", "cpu"]),
                      "report": (report.main, [str(runs)]), "plot": (plots.main, [str(run_dir)]),
                      "study": (study.main, [str(runs)])}[command]
        try:
            main(argv)
            code = 0
        except SystemExit as exit_info:
            code = exit_info.code or 0
        finally:
            plt.close("all")
        assert code in (0, 2), (command, damages, code)
        after = _snapshot(runs)
        assert not [p for p in after if p.name.endswith(".tmp")], "a temporary file was left behind"
        for path, mtime in after.items():
            if before.get(path) != mtime:
                assert code == 0 or command == "report", f"{command} failed ({code}) after writing {path}"
                assert _complete(path), path


def test_fuzz_reference_run_is_present():
    """The fuzz test starts from this committed run; without it the test above would test nothing."""
    assert (REFERENCE / "model.pt").is_file() and (REFERENCE / "eval.json").is_file()


pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
