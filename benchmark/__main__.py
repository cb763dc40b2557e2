"""``python -m benchmark task=maze size=train9_test15 model=shared``: see README.md."""

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

import benchmark.config.schema  # noqa: F401  (registers the structured-config schemas)
from benchmark.config.schema import exit_on_user_error


@hydra.main(version_base="1.3", config_path="pkg://configs", config_name="config")
def main(cfg: DictConfig) -> None:
    # The task's config chooses the pipeline (configs/pipeline/): benchmark.pipelines.algorithmic.main for generated
    # puzzles, benchmark.pipelines.classification.main for read image sets; `_partial_: true` makes it a callable.
    # Every _target_ must name a registered class before Hydra imports or calls anything
    # (task._target_=os.system on the command line is one sentence, exit status 2), and every
    # interpolation must resolve: benchmark.pipelines.sweep.check_point, as a sweep checks each job.
    from benchmark.pipelines.sweep import check_point

    exit_on_user_error(check_point, cfg)
    pipeline = instantiate(cfg.pipeline)
    pipeline(cfg)


def check_group_overrides(overrides: list[str]) -> None:
    """A config group chosen on the command line must be given a name (``task=maze``): Hydra itself
    fails with a traceback on ``task=-1`` or ``model=1.5`` (a number where it wants a string). Raises
    ``ConfigError`` (one sentence); overrides Hydra cannot parse are left for its own message."""
    from importlib.resources import files

    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    from benchmark.config.schema import ConfigError

    groups = {entry.name for entry in files("configs").iterdir() if entry.is_dir() and not entry.name.startswith("_")}
    parser = OverridesParser.create()
    for text in overrides:
        if text.startswith("-") or "=" not in text:
            continue
        try:
            override = parser.parse_override(text)
        except HydraException:
            continue
        if override.key_or_group not in groups or override.is_delete():
            continue
        try:
            values = list(override.sweep_iterator()) if override.is_sweep_override() else [override.value()]
        except Exception:  # a glob or range Hydra expands only against the repository: its own message
            continue
        if not all(isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
                   for value in values):
            raise ConfigError(f"{override.key_or_group} must name one of its configs (e.g. {override.key_or_group}=<name>), "
                              f"got {text.split('=', 1)[1]!r}.")


def check_composes(argv: list[str]) -> None:
    """A single run's command line composes (a value of the wrong type, ``train.lr=abc``, or an
    unknown key, ``train.lrr=1``) or ``ConfigError`` with Hydra's reason in one sentence: Hydra
    itself prints several lines and exits with status 1. Flags (``-m``, ``--cfg``, ...) are left to
    Hydra, and a sweep's points are checked by ``benchmark.pipelines.sweep.CheckSweep``."""
    if any(arg.startswith("-") for arg in argv):
        return
    from hydra import compose, initialize_config_module
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from benchmark.config.schema import ConfigError

    try:
        with initialize_config_module(config_module="configs", version_base="1.3"):
            compose("config", overrides=list(argv), return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as err:
        lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
        options = [line for line in lines if line.startswith("Available options")]
        if options:  # a group option that does not exist: name the ones that do
            names = []
            for line in lines[lines.index(options[0]) + 1:]:
                if line.endswith(":") or "=" in line:  # Hydra's search path follows the options
                    break
                if not line.endswith("schema"):  # the structured-config schemas are not choices
                    names.append(line)
            reason = f"{lines[0].rstrip('.')}; {options[0].rstrip(':').lower()}: {', '.join(names)}"
        else:
            reason = " ".join(lines[:2])
            if err.__cause__ is not None and str(err.__cause__).strip():  # Hydra's "Error merging override": why
                reason = f"{reason.rstrip('.')}: {str(err.__cause__).strip().splitlines()[0]}"
        raise ConfigError(f"the command line does not compose: {reason.rstrip('.')}.") from err


if __name__ == "__main__":
    import sys

    exit_on_user_error(check_group_overrides, sys.argv[1:])
    exit_on_user_error(check_composes, sys.argv[1:])
    main()
