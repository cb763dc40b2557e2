"""Shared fixtures: configs composed with Hydra's compose API, tiny sizes, outputs under tmp_path;
and the options of each config group, discovered from Hydra's config repository so that a test
parametrized over them covers a new task or model without being edited."""

from __future__ import annotations


import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.object_type import ObjectType

from omegaconf import OmegaConf

from benchmark.config.schema import PUZZLE_MODEL_SCHEMAS  # (importing it registers the schemas)

# Seconds, not minutes: a few dozen samples, one epoch, a handful of iterations.
TINY = [
    "size.n_train=64", "size.n_test=16", "train.epochs=1", "train.batch_size=16", "train.iters=3",
    "train.warmup_steps=2", "train.log_every=2", "eval.iters=5", "progress=false",
]


def config_groups() -> list[str]:
    """The config groups of ``python -m benchmark`` (Hydra's own ``hydra/...`` groups left out)."""
    with initialize_config_module(config_module="configs", version_base="1.3"):
        return sorted(g for g in GlobalHydra.instance().config_loader().list_groups("") if g != "hydra")


def config_options(group: str) -> list[str]:
    """Every option of a config group, as Hydra lists them (the structured-config schemas left out)."""
    with initialize_config_module(config_module="configs", version_base="1.3"):
        options = GlobalHydra.instance().config_loader().get_group_options(group, results_filter=ObjectType.CONFIG)
    return sorted(o for o in options if not o.endswith("schema"))


def compose_config(*overrides: str, hydra: bool = False):
    """The root config with ``overrides`` (and Hydra's own node if ``hydra``), nothing written."""
    with initialize_config_module(config_module="configs", version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=hydra)


TASKS = config_options("task")
# The generated puzzles (the algorithmic pipeline, gymnasium environments); the other tasks are
# read image sets (the classification pipeline).
PUZZLE_TASKS = [t for t in TASKS if compose_config(f"task={t}").pipeline._target_ == "benchmark.pipelines.algorithmic.main"]
# The models of the puzzle tasks (their schemas are benchmark.config.schema's); the image models
# (Wide ResNets) run on the image tasks instead.
PUZZLE_MODELS = [m for m in config_options("model")
                 if OmegaConf.get_type(compose_config(f"model={m}").model) in PUZZLE_MODEL_SCHEMAS]


@pytest.fixture
def make_cfg(tmp_path):
    """``make_cfg(*overrides)``: the composed root config with tiny sizes, writing under tmp_path."""

    def make(*overrides: str, tiny: bool = True):
        base = [f"results_dir={tmp_path / 'results'}", f"cache_dir={tmp_path / 'cache'}"]
        return compose_config(*base, *(TINY if tiny else []), *overrides)

    return make


