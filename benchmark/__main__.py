"""``python -m benchmark task=maze size=train9_test15 model=shared``: see README.md."""

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

import benchmark.config.schema  # noqa: F401  (registers the structured-config schemas)


@hydra.main(version_base="1.3", config_path="pkg://configs", config_name="config")
def main(cfg: DictConfig) -> None:
    # The task's config chooses the pipeline (configs/pipeline/): benchmark.pipelines.algorithmic.main for generated
    # puzzles, benchmark.pipelines.classification.main for read image sets; `_partial_: true` makes it a callable.
    pipeline = instantiate(cfg.pipeline)
    pipeline(cfg)


if __name__ == "__main__":
    main()
