"""``python -m benchmark task=maze size=train9_test15 model=shared``: see README.md."""

import hydra
from omegaconf import DictConfig

import benchmark.config  # noqa: F401  (registers the structured-config schemas)
from benchmark.run import main as run_main


@hydra.main(version_base="1.3", config_path="pkg://configs", config_name="config")
def main(cfg: DictConfig) -> None:
    run_main(cfg)


if __name__ == "__main__":
    main()
