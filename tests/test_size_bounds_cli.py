"""Sizes that would need more memory than a run may use are refused before the run directory exists."""

import subprocess
import sys

import pytest

from conftest import TINY


@pytest.mark.parametrize("overrides", [
    ["task=maze", "size.test=[100001]"],
    ["task=maze", "size.n_test=1000000000"],
    ["task=prefix_sums", "size.n_train=1000000000", "train.batch_size=10"],
    ["task=maze", "eval.batch_size=100000000"],
], ids=["maze_size", "n_test", "n_train", "eval_batch"])
def test_a_size_too_big_for_memory_is_one_sentence_and_writes_nothing(tmp_path, overrides):
    cmd = [sys.executable, "-m", "benchmark", f"results_dir={tmp_path / 'results'}", f"cache_dir={tmp_path / 'cache'}",
           *TINY, *overrides]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "GiB, more than the" in proc.stderr, proc.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "cache").exists()
