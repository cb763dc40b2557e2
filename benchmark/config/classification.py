"""Structured configs of the classification pipeline (``benchmark.pipelines.classification``): size, train, eval.

The YAML files of those groups for image tasks start with ``defaults: [classification_schema]``,
so a misspelt key or a wrong type is an error at composition time. The defaults below are the
official CIFAR recipe of the Wide ResNet and soft-sharing papers (``train=cifar_paper`` lists
nothing else); other profiles list only what they change. Value ranges are checked by
``check_classification_config`` before anything is read or written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from benchmark.config.schema import check_partials, require

SCHEMA = "classification_schema"


@dataclass
class ImageSizeConfig:
    """How much of a read data set a run uses: the first ``n_train`` / ``n_test`` images (null: all).

    The official files are in no class order (CIFAR's batches are shuffled, the digits split is
    seeded and stratified), so the first n images are a fair sample; capping makes CPU tries quick.
    """

    n_train: int | None = None
    n_test: int | None = None


@dataclass
class ClassificationTrainConfig:
    """SGD with Nesterov momentum, weight decay on all but bank coefficients, lr steps at milestones."""

    epochs: int = 200
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4  # not applied to template-bank coefficients (decaying them hurts)
    milestones: list[int] = field(default_factory=lambda: [60, 120, 160])  # epochs after which lr *= gamma
    gamma: float = 0.2

    # The optimizer and the schedule as Hydra partials over the options above
    # (benchmark.training.optim; ``benchmark.config.schema.TrainConfig`` says how to change them):
    # SGD on the parameter groups (the banks' coefficients without weight decay), lr x gamma after
    # each milestone epoch (the pipeline steps it once per epoch).
    optimizer: Any = field(default_factory=lambda: {"_target_": "torch.optim.SGD", "_partial_": True, "lr": "${train.lr}",
                                                    "momentum": "${train.momentum}", "nesterov": "${train.nesterov}",
                                                    "weight_decay": "${train.weight_decay}"})
    scheduler: Any = field(default_factory=lambda: {"_target_": "torch.optim.lr_scheduler.MultiStepLR", "_partial_": True,
                                                    "milestones": "${train.milestones}", "gamma": "${train.gamma}"})


@dataclass
class ClassificationEvalConfig:
    """Scoring: top-1 accuracy on every held-out split after every epoch; folding threshold."""

    batch_size: int = 500
    fold_threshold: float = 0.99  # |cos| of coefficient rows above which bank layers fold into one weight


@dataclass
class WideResNetConfig:
    """``baselines.wrn.UnsharedWideResNet``: pre-activation WRN-depth-widen (depth = 6n + 4)."""

    _target_: str = "baselines.wrn.UnsharedWideResNet"
    name: str = "wrn"
    depth: int = 28
    widen: int = 10
    dropout: float = 0.0


@dataclass
class SharedWideResNetConfig(WideResNetConfig):
    """``benchmark.models.wide_resnet.WideResNet``: SWRN-depth-widen-k, one bank of k templates per stage."""

    _target_: str = "benchmark.models.wide_resnet.WideResNet"
    name: str = "swrn"
    templates: Optional[int] = 1  # None: every conv its own weight


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(group="model", name="wrn_schema", node=WideResNetConfig)
    cs.store(group="model", name="swrn_schema", node=SharedWideResNetConfig)
    cs.store(group="size", name=SCHEMA, node=ImageSizeConfig)
    cs.store(group="train", name=SCHEMA, node=ClassificationTrainConfig)
    cs.store(group="eval", name=SCHEMA, node=ClassificationEvalConfig)


register_configs()


def check_classification_config(size: ImageSizeConfig, train: ClassificationTrainConfig, evaluation: ClassificationEvalConfig) -> None:
    """Raise ``ConfigError`` (one sentence) for values out of range; types were checked by the schemas.

    A group chosen from the other pipeline's profiles (``train=cpu`` with an image task) is
    refused first, naming the profiles that fit.
    """
    for group, node, schema, options in (("size", size, ImageSizeConfig, "size=full"),
                                         ("train", train, ClassificationTrainConfig, "train=cifar_paper or train=digits"),
                                         ("eval", evaluation, ClassificationEvalConfig, "eval=classification")):
        require(OmegaConf.get_type(node) is schema,
                 f"the {group} group must be an image-classification profile ({options}), not one for generated puzzles.")
    check_partials(train)
    for key, value in (("size.n_train", size.n_train), ("size.n_test", size.n_test)):
        require(value is None or value >= 1, f"{key} must be a positive integer or null (all images), got {value}.")
    for key, value in (("train.epochs", train.epochs), ("train.batch_size", train.batch_size),
                       ("eval.batch_size", evaluation.batch_size)):
        require(value >= 1, f"{key} must be a positive integer, got {value}.")
    require(train.lr > 0, f"train.lr must be positive, got {train.lr}.")
    require(0.0 <= train.momentum < 1.0, f"train.momentum must lie in [0, 1), got {train.momentum}.")
    require(not train.nesterov or train.momentum > 0, "train.nesterov=true needs train.momentum > 0.")
    require(train.weight_decay >= 0, f"train.weight_decay must be zero or positive, got {train.weight_decay}.")
    require(0.0 < train.gamma <= 1.0, f"train.gamma must lie in (0, 1], got {train.gamma}.")
    milestones = list(train.milestones)
    require(all(m >= 1 for m in milestones) and milestones == sorted(set(milestones)),
             f"train.milestones must be increasing positive epochs, e.g. [60,120,160], got {milestones}.")
    require(0.0 < evaluation.fold_threshold <= 1.0, f"eval.fold_threshold must lie in (0, 1], got {evaluation.fold_threshold}.")


def size_label(size: ImageSizeConfig) -> str:
    """The run-directory name of an image size setting: ``full``, or e.g. ``train500_testall``."""
    if size.n_train is None and size.n_test is None:
        return "full"
    return f"train{size.n_train or 'all'}_test{size.n_test or 'all'}"


__all__ = ["ClassificationEvalConfig", "ClassificationTrainConfig", "ImageSizeConfig", "check_classification_config",
           "size_label"]
