"""Structured configs: the schemas that validate the ``size``, ``train`` and ``eval`` groups.

Each YAML file of those groups starts with ``defaults: [schema]``, so a misspelt key or a value
of the wrong type is an error at composition time instead of being silently ignored. Value
ranges are checked by ``check_config`` before anything is generated or written.
"""

from __future__ import annotations

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


class ConfigError(ValueError):
    """A user-caused configuration error; its message is one sentence."""


@dataclass
class SizeConfig:
    """Instance sizes: one training size, the sizes tested (the training size is always added)."""

    train: int = MISSING
    test: list[int] = MISSING
    n_train: int = 10_000
    n_test: int = 1_000


@dataclass
class TrainConfig:
    """Optimisation and progressive-loss settings (see ``benchmark.train``)."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 2e-4  # not applied to template-bank coefficients
    warmup_steps: int = 100
    clip: float = 1.0  # max gradient norm; 0 disables clipping
    alpha: float = 0.5  # weight of the progressive term
    iters: int = 20  # m, the iterations of the full term and the progressive draw's range
    detach_extra: int = 0  # up to this many more detached iterations before the trained ones
    log_every: int = 20  # steps between metrics.jsonl records
    loop_weight: float = 0.0  # weight of the loop-inducing regulariser (0: off)


@dataclass
class EvalConfig:
    """Test-time settings: every iteration count 1..iteration_limit is scored in one unrolled pass."""

    iters: int = 60
    batch_size: int = 256
    fold_threshold: float = 0.99  # |cos| above which neighbouring layers fold into one loop


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(group="size", name="schema", node=SizeConfig)
    cs.store(group="train", name="schema", node=TrainConfig)
    cs.store(group="eval", name="schema", node=EvalConfig)


register_configs()


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def check_config(size: SizeConfig, train: TrainConfig, evaluation: EvalConfig) -> None:
    """Raise ``ConfigError`` for values out of range (types were checked by the schemas)."""
    for key, value in (("size.n_train", size.n_train), ("size.n_test", size.n_test), ("train.epochs", train.epochs),
                       ("train.batch_size", train.batch_size), ("train.iters", train.iters),
                       ("train.log_every", train.log_every), ("eval.iters", evaluation.iters),
                       ("eval.batch_size", evaluation.batch_size)):
        _require(value >= 1, f"{key} must be a positive integer, got {value}.")
    _require(len(size.test) >= 1, "size.test must list at least one test size, e.g. size.test=[13,15].")
    _require(0.0 <= train.alpha <= 1.0, f"train.alpha must lie in [0, 1], got {train.alpha}.")
    for key, value in (("train.lr", train.lr), ("train.weight_decay", train.weight_decay), ("train.clip", train.clip),
                       ("train.warmup_steps", train.warmup_steps), ("train.loop_weight", train.loop_weight),
                       ("train.detach_extra", train.detach_extra)):
        _require(value >= 0, f"{key} must be zero or positive, got {value}.")
    _require(0.0 < evaluation.fold_threshold <= 1.0, f"eval.fold_threshold must lie in (0, 1], got {evaluation.fold_threshold}.")


def data_seeds(seed: int) -> tuple[int, int]:
    """The (training, test) data seeds of a run: 2*seed and 2*seed+1.

    Each sample is drawn from SeedSequence([data_seed, index]), so the two splits never share a
    sample stream, and any test set can be rebuilt from a run's seed alone.
    """
    return 2 * seed, 2 * seed + 1


def size_name(size: SizeConfig) -> str:
    """The run-directory name of a size setting, e.g. ``train9_test13-15``."""
    return f"train{size.train}_test{'-'.join(str(s) for s in size.test)}"


__all__ = ["ConfigError", "EvalConfig", "SizeConfig", "TrainConfig", "check_config", "data_seeds", "size_name"]
