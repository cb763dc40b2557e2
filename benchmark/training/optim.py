"""The optimizer and the learning-rate schedule of a training config, built as Hydra partials.

A train config (``benchmark.config.schema.TrainConfig``, ``benchmark.config.classification.
ClassificationTrainConfig``) holds its optimizer and schedule in the form of
lightning-hydra-template's configs, a ``_partial_`` node whose fields interpolate the config's own
options (``train.optimizer = {_target_: torch.optim.AdamW, _partial_: true, lr: ${train.lr}, ...}``),
so the options users pass (``train.lr=...``) stay what they were. ``make_optimizer`` instantiates
the optimizer partial on the model's parameter groups: every parameter with the partial's weight
decay, except the template banks' coefficients (``no_decay_parameters``), which get none;
``make_scheduler`` instantiates the schedule on the optimizer.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from benchmark.config.schema import check_partials
from benchmark.models.bank import no_decay_parameters


def _schema(cfg: Any) -> type:
    return OmegaConf.get_type(cfg) if isinstance(cfg, DictConfig) else type(cfg)


def partial_node(cfg: Any, key: str) -> DictConfig:
    """The config's ``optimizer`` or ``scheduler`` partial (``key``), checked against the allowed
    classes first (``check_partials``), each of its fields named like a train option given that
    option's value: the option is the one source (a config resolved once and then changed, such as
    ``TrainConfig(**{**resolved, "lr": 0.01})``, trains at the new lr, not the stale copy)."""
    check_partials(cfg)
    values = OmegaConf.to_container(cfg, resolve=False) if isinstance(cfg, DictConfig) else dataclasses.asdict(cfg)
    values = OmegaConf.to_container(OmegaConf.create({"train": values}), resolve=True)["train"]  # ${train.*} inside
    node = dict(values[key])
    for name in node:
        if not name.startswith("_") and name in values:
            node[name] = values[name]
    return OmegaConf.create(node)


def param_groups(model: nn.Module) -> list[dict[str, Any]]:
    """The parameters with the optimizer's weight decay, then the banks' coefficients without any
    (``benchmark.models.bank.no_decay_parameters``); empty groups left out."""
    skip = no_decay_parameters(model)
    params = dict(model.named_parameters())
    groups = [{"params": [p for n, p in params.items() if n not in skip]},
              {"params": [p for n, p in params.items() if n in skip], "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def make_optimizer(model: nn.Module, cfg: Any) -> torch.optim.Optimizer:
    """The config's optimizer partial (``TrainConfig``'s default: AdamW) on ``param_groups(model)``."""
    return instantiate(partial_node(cfg, "optimizer"), _convert_="all")(param_groups(model))


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: Any, total_steps: int | None = None) -> Any:
    """The config's learning-rate schedule partial on ``optimizer``; ``total_steps`` (the run's
    optimizer steps) is passed to a schedule that takes it (``warmup_cosine_schedule``)."""
    schedule = instantiate(partial_node(cfg, "scheduler"), _convert_="all")
    takes_total = "total_steps" in inspect.signature(schedule.func).parameters
    return schedule(optimizer, total_steps=total_steps) if takes_total else schedule(optimizer)


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    """Learning-rate factor: linear warm-up, then cosine decay to 0."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def warmup_cosine_schedule(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """``warmup_cosine`` over a run of ``total_steps`` steps, stepped after every optimizer step
    (the warm-up capped at the run's length)."""
    warmup = min(warmup_steps, total_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, total_steps, warmup))


__all__ = ["make_optimizer", "make_scheduler", "param_groups", "partial_node", "warmup_cosine", "warmup_cosine_schedule"]
