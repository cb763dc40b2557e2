"""A pipeline for tests (``pipeline._target_=threads_probe.record``): the real puzzle run, with the
machine's core count pretended (``PROBE_CORES``), then the thread count the job ended up with
written to ``<results_dir>/threads-job<sweep job number>.json``. Loaded only by the tests' subprocesses."""

import os
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig

import benchmark.pipelines.algorithmic
from tasks.fileio import write_json


def record(cfg) -> None:
    if "PROBE_CORES" in os.environ:
        cores = int(os.environ["PROBE_CORES"])
        benchmark.pipelines.algorithmic.available_cores = lambda: cores
    benchmark.pipelines.algorithmic.main(cfg)
    write_json(Path(cfg.results_dir) / f"threads-job{HydraConfig.get().job.num}.json",
               dict(threads=torch.get_num_threads(), threads_setting=cfg.threads))
