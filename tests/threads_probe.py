"""A probe around the puzzle pipeline for tests: the real run, with the machine's core count
pretended (``PROBE_CORES``), then the thread count the job ended up with written to
``<results_dir>/threads-job<sweep job number>.json``.

A config may name only the project's own pipelines (``pipeline._target_``), so the probe is not a
pipeline: ``install()`` wraps the real one, and a ``sitecustomize.py`` that the test puts on the
subprocess's ``PYTHONPATH`` calls it when Python starts. Loaded only by the tests' subprocesses."""

import os
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig

import benchmark.pipelines.algorithmic as algorithmic
from tasks.fileio import write_json


def install() -> None:
    if "PROBE_CORES" in os.environ:
        cores = int(os.environ["PROBE_CORES"])
        algorithmic.available_cores = lambda: cores
    real = algorithmic.main

    def record(cfg) -> None:
        real(cfg)
        write_json(Path(cfg.results_dir) / f"threads-job{HydraConfig.get().job.num}.json",
                   dict(threads=torch.get_num_threads(), threads_setting=cfg.threads))

    algorithmic.main = record
