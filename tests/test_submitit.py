"""Sweeps through Hydra's submitit launcher: the SLURM example config, and the same launcher's
local mode running a real sweep of two jobs whose runs the report then gathers."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from benchmark.infra.results import EvalResult

from conftest import TINY, compose_config


def test_the_slurm_example_is_a_submitit_slurm_launcher():
    cfg = compose_config("hydra/launcher=slurm_example", hydra=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.partition, launcher.timeout_min, launcher.gpus_per_node, launcher.cpus_per_task, launcher.mem_gb,
            launcher.array_parallelism) == ("gpu", 60, 1, 8, 32, 16)
    folder = Path(launcher.submitit_folder)  # submitit's logs and pickles: in the sweep directory, under results_dir
    assert folder.parts[:2] == ("results", "sweeps") and folder.parts[-2:] == (".submitit", "%j")


def test_a_submitit_sweep_of_two_jobs_lands_in_results_dir_and_is_reported(tmp_path):
    results = tmp_path / "results"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "benchmark", "--multirun", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10",
           f"results_dir={results}", f"cache_dir={tmp_path / 'cache'}", *TINY, "size.train=5", "size.test=[5]",
           "model.width=4", "seed=0,1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dirs = sorted(p.parent for p in results.rglob("eval.json"))
    assert [d.relative_to(results).parts[:3] for d in run_dirs] == [("maze", "train5_test5", "shared")] * 2
    assert len(list(results.glob("sweeps/*/.submitit/*"))) >= 2  # submitit's own files stay in the sweep directory

    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-m", "benchmark.report", str(results), "--out", str(out)], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = pd.read_csv(out / "runs.csv").sort_values("seed")
    assert runs[["model", "seed", "size"]].values.tolist() == [["shared", 0, 5], ["shared", 1, 5]]
    for row in runs.itertuples():
        assert row.best == EvalResult.read(Path(row.run) / "eval.json").summary[5].best
