"""CPU threads per job: the ``threads`` setting, and cores shared out among a parallel sweep's jobs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmark.config.schema import ConfigError, check_run_settings
from benchmark.pipelines.algorithmic import apply_threads, job_threads, run

from conftest import TINY, compose_config

TESTS = Path(__file__).resolve().parent


@pytest.fixture
def keep_threads():
    """Put the test process's thread count back: torch's setting is process-wide."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def launcher(*overrides):
    return compose_config(*overrides, hydra=True).hydra.launcher


def test_plain_runs_keep_torchs_default():
    assert compose_config().threads is None
    assert job_threads(None, launcher(), multirun=False, cores=16) is None
    assert job_threads(None, launcher(), multirun=True, cores=16) is None  # the basic launcher runs jobs one by one
    # A joblib launcher chosen for a single run (no -m) runs nothing side by side.
    assert job_threads(None, launcher("hydra/launcher=joblib", "hydra.launcher.n_jobs=2"), multirun=False, cores=16) is None


@pytest.mark.parametrize("n_jobs,cores,expected", [(2, 2, 1), (2, 16, 8), (3, 16, 5), (4, 2, 1), (-1, 16, 1), (-2, 16, 16 // 15),
                                                   (-4, 16, 16 // 13), (1, 6, 6)])
def test_a_joblib_sweep_shares_the_cores_among_its_jobs(n_jobs, cores, expected):
    node = launcher("hydra/launcher=joblib", f"hydra.launcher.n_jobs={n_jobs}")
    assert job_threads(None, node, multirun=True, cores=cores) == expected


def test_the_threads_setting_always_wins():
    node = launcher("hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    assert job_threads(3, node, multirun=True, cores=16) == 3
    assert job_threads(3, launcher(), multirun=False, cores=16) == 3


def test_submitit_jobs_use_the_cpus_they_asked_for():
    assert job_threads(None, launcher("hydra/launcher=submitit_local", "hydra.launcher.cpus_per_task=4"), multirun=True, cores=2) == 4
    assert job_threads(None, launcher("hydra/launcher=submitit_local"), multirun=True, cores=2) is None
    assert job_threads(None, launcher("hydra/launcher=slurm_example"), multirun=True, cores=64) == 8  # its cpus_per_task


@pytest.mark.parametrize("value", [0, -1, "two", 1.5, True])
def test_bad_thread_counts_are_refused(value):
    cfg = compose_config(f"threads={json.dumps(value)}")
    with pytest.raises(ConfigError, match=r"threads must be an integer >= 1 or null"):
        check_run_settings(cfg)


def test_a_run_sets_the_threads_it_is_given(make_cfg, keep_threads):
    other = 3 if torch.get_num_threads() != 3 else 2
    run(make_cfg("threads=" + str(other), "size.train=5", "size.test=[5]", "model.width=4"))
    assert torch.get_num_threads() == other
    torch.set_num_threads(1)
    assert apply_threads(make_cfg()) == 1  # null, and no sweep: left as it is


def test_a_real_joblib_sweep_of_two_jobs_shares_the_cores(tmp_path):
    """Two jobs side by side through Hydra's joblib launcher, on a machine pretended to have 8
    cores: the job without a setting gets 8 // 2 = 4 threads (neither torch's default nor
    OMP_NUM_THREADS=1 of the environment), the one with threads=3 gets 3."""
    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "sitecustomize.py").write_text("import threads_probe\nthreads_probe.install()\n")  # in every process
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(probe), str(TESTS.parent), str(TESTS)]), "PROBE_CORES": "8",
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "benchmark", "--multirun", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
           f"results_dir={tmp_path / 'results'}", f"cache_dir={tmp_path / 'cache'}",
           *TINY, "size.train=5", "size.test=[5]", "model.width=4", "threads=null,3"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = [json.loads((tmp_path / "results" / f"threads-job{n}.json").read_text()) for n in (0, 1)]
    assert jobs == [dict(threads=4, threads_setting=None), dict(threads=3, threads_setting=3)]
    assert len(list((tmp_path / "results").rglob("eval.json"))) == 2  # both jobs ran to the end
