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
    # (task._target_=os.system on the command line is one sentence, exit status 2).
    from benchmark.models.registry import check_targets

    exit_on_user_error(check_targets, cfg)
    pipeline = instantiate(cfg.pipeline)
    pipeline(cfg)


if __name__ == "__main__":
    main()
