"""Shared fixtures: configs composed with Hydra's compose API, tiny sizes, outputs under tmp_path."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_module

import benchmark.config  # noqa: F401  (registers the structured-config schemas)

# Seconds, not minutes: a few dozen samples, one epoch, a handful of iterations.
TINY = [
    "size.n_train=64", "size.n_test=16", "train.epochs=1", "train.batch_size=16", "train.iters=3",
    "train.warmup_steps=2", "train.log_every=2", "eval.iters=5", "progress=false",
]


@pytest.fixture
def make_cfg(tmp_path):
    """``make_cfg(*overrides)``: the composed root config with tiny sizes, writing under tmp_path."""

    def make(*overrides: str, tiny: bool = True):
        base = [f"results_dir={tmp_path / 'results'}", f"cache_dir={tmp_path / 'cache'}"]
        with initialize_config_module(config_module="configs", version_base="1.3"):
            return compose("config", overrides=[*base, *(TINY if tiny else []), *overrides])

    return make
