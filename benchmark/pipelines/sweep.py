"""Every point of a sweep (``python -m benchmark -m seed=0,1,2``) checked before Hydra writes anything.

Hydra's sweeper makes the sweep directory and writes ``multirun.yaml`` into it before the first
job runs, and each job checks its own config only when it starts: ``-m seed=-1,2`` would leave a
sweep directory behind and refuse the first job after the others were scheduled. ``CheckSweep``,
a Hydra callback (configs/config.yaml, ``hydra.callbacks``), runs before the sweeper: it composes
the config of every point of the sweep and checks each as its job would before building anything
(``check_point``), and refuses a sweep directory that cannot be written (``hydra.sweep.dir``: a
read-only results folder), so a bad point is one sentence naming it, exit status 2, and nothing
is written.
"""

from __future__ import annotations

import sys
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from benchmark.config.schema import EXIT_USER_ERROR, USER_ERRORS, ConfigError, check_config, check_run_settings

# Sweeps larger than this are checked point by point as the jobs start (composing each takes ~0.1 s).
MAX_CHECKED_POINTS = 1000


def check_point(cfg: DictConfig) -> None:
    """The checks a job makes of its config alone, before it builds or writes anything: every
    ``_target_`` registered (``benchmark.models.registry.check_targets``), then its pipeline's own
    check (``check_config`` for puzzles, the classification schema's for image sets)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from benchmark.models.registry import PIPELINES, check_targets

    check_targets(cfg)
    try:  # every interpolation (seed=${oc.env:X}) resolves, or the checks below would stop on it
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    except OmegaConfBaseException as err:
        first_line = (str(err).splitlines() or [""])[0]
        raise ConfigError(f"an option's interpolation does not resolve ({first_line}).") from err
    if cfg.pipeline.get("_target_") == PIPELINES[1]:
        from benchmark.config.classification import check_classification_config

        check_run_settings(cfg)
        check_classification_config(cfg.size, cfg.train, cfg.eval)
    else:
        check_config(cfg)


def sweep_points(overrides: list[str]) -> list[list[str]]:
    """The override list of every job of a basic sweep over ``overrides`` (Hydra's own expansion)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    return [point for batch in BasicSweeper.split_arguments(parsed, None) for point in batch]


class CheckSweep(Callback):
    """Hydra callback: before a multirun starts, refuse it in one sentence (exit status 2) if any
    of its points is a config its job would refuse, or its sweep directory cannot be written."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra import compose

        from tasks.fileio import check_writable_dir

        try:
            sweeper = str(config.hydra.sweeper.get("_target_", ""))
            points = sweep_points(list(config.hydra.overrides.task)) if sweeper.endswith("BasicSweeper") else []
            for number, point in enumerate(points[:MAX_CHECKED_POINTS]):
                try:
                    check_point(compose(config_name=kwargs.get("config_name") or "config", overrides=point))
                except USER_ERRORS as err:
                    raise ConfigError(f"sweep job #{number} ({' '.join(point)}): {err}") from err
            check_writable_dir(str(config.hydra.sweep.dir), "the sweep")
        except USER_ERRORS as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(EXIT_USER_ERROR)


__all__ = ["CheckSweep", "check_point", "sweep_points"]
