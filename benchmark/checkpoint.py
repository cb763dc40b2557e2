"""Checkpoints that carry what rebuilds them and load without running pickled code."""

from __future__ import annotations

from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from benchmark.config import ConfigError
from tasks.base import TaskSpec


def save_checkpoint(model: torch.nn.Module, cfg: DictConfig, path: Path) -> None:
    """Weights plus the model and task configs (plain containers: loadable with weights_only)."""
    spec = model.spec
    torch.save(
        dict(
            format="algoreason-checkpoint-1",
            model=OmegaConf.to_container(cfg.model, resolve=True),
            task=OmegaConf.to_container(cfg.task, resolve=True),
            spec=dict(dims=spec.dims, in_channels=spec.in_channels, num_classes=spec.num_classes),
            state_dict=model.state_dict(),
        ),
        path,
    )


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild the model saved at ``path``; returns ``(model, checkpoint)``.

    ``torch.load(weights_only=True)`` refuses anything but tensors and plain containers, so a
    checkpoint cannot run code when loaded.
    """
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except (OSError, RuntimeError) as err:
        raise ConfigError(f"cannot read checkpoint {path}: it must be a model.pt written by a benchmark run ({err}).") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != "algoreason-checkpoint-1":
        raise ConfigError(f"{path} is not a benchmark checkpoint (expected format algoreason-checkpoint-1).")
    model = instantiate(DictConfig(ckpt["model"]), spec=TaskSpec(**ckpt["spec"]))
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as err:
        raise ConfigError(f"checkpoint {path} does not match the model it names ({ckpt['model'].get('_target_')}).") from err
    model.eval()
    return model, ckpt
