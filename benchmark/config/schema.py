"""Structured configs (the one place each default lives) and ``check_config``, the one checking function.

The dataclasses below are the schemas of the ``size``, ``train``, ``eval`` and ``model`` groups,
and their defaults ARE the defaults a run uses: ``train/cpu.yaml`` and ``eval/default.yaml`` are
just ``defaults: [schema]``, and every other YAML file of a group lists only what it changes.
Each YAML file starts with ``defaults: [schema]`` (the feed-forward baseline with
``[baseline_schema]``), so a misspelt key or a value of the wrong type (``train.lr=abc``,
``model.recall=maybe``) is refused by Hydra when the config is composed (a message, non-zero exit).

Ranges and relations (a positive count, a batch no larger than the training set, a model with
weights for the training iterations, a seed a generator accepts, paths that can be written, names
that are single path components) are checked by ``check_config`` before anything is generated or
written: a bad value is a ``ConfigError`` with one sentence naming what is accepted.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from benchmark.models.bank import COEFFICIENT_INITS
from benchmark.infra.distributed import env_world_size
from benchmark.training.loop_regulariser import LOOP_FORMS
from benchmark.models.recurrent import RECALL_INITS
from benchmark.infra.precision import PRECISIONS
from benchmark.config.errors import (  # noqa: F401  (re-exported: the commands import them from here)
    EXIT_INTERRUPTED, EXIT_USER_ERROR, USER_ERRORS, CommandParser, ConfigError, exit_on_user_error, quiet_interrupts,
)
from tasks.base import Task, TaskError, is_integer


@dataclass
class SizeConfig:
    """Instance sizes: one training size, the sizes tested (the training size is always added)."""

    train: int = MISSING
    test: list[int] = MISSING
    n_train: int = 10_000
    n_test: int = 1_000
    # Validation samples per test size (docs/protocol.md): drawn from the run's validation seed
    # (``data_seeds(seed).validation``), scored beside the test set, and the only data that
    # chooses the test-time iteration count reported. null: as many as size.n_test; 0: none
    # (the old protocol: only the oracle, chosen on test, is reported).
    n_val: Optional[int] = None


@dataclass
class TrainConfig:
    """Optimisation and progressive-loss settings (see ``benchmark.training.trainer``): the maze CPU default.

    Progressive loss only (alpha 1: a quarter of the cost of alpha 0.5 per sample, and it learned
    faster in tuning), n + k uniform on [1, 20], and up to 20 more detached iterations in front
    (detach_extra) so the model also learns to hold a solved maze: that lifted 15x15 from 98.2%
    to 99.7% at the same budget (one seed each, README); the moving average of the weights
    (ema_horizon) is what the run keeps. About 7.5 minutes on 2 CPU cores in fp32, 1 min 54 s in
    bf16 (precision=auto on a CPU with AMX).
    """

    epochs: int = 4
    batch_size: int = 64
    lr: float = 0.002
    weight_decay: float = 2e-4  # not applied to template-bank coefficients
    warmup_steps: int = 100
    clip: float = 1.0  # max gradient norm; 0 disables clipping
    alpha: float = 1.0  # weight of the progressive term (1 - alpha: the full-depth term)
    iters: int = 20  # m, the iterations of the full term and the progressive draw's range
    detach_extra: int = 20  # up to this many more detached iterations before the trained ones
    # The least iteration count n + k of the progressive term: 1 asks for the answer after any
    # number of iterations; a depth-wise stack with a looped tail can set its depth, so that the
    # term never asks one of the stack's distinct positions for the answer (tried on
    # depth_k2_tail: README, "The looped tail on prefix sums").
    progressive_min_iters: int = 1
    # Path independence (Anil et al. 2022; benchmark.training.losses.perturbed_state): > 0 starts
    # half the batches' progressive term from the initial state plus Gaussian noise at this many
    # of its standard deviations, so the model learns to reach the answer from a start it did not
    # choose; 0: every batch from the model's own initial state (no extra random draw).
    init_noise: float = 0.0
    log_every: int = 50  # steps between metrics.jsonl records
    # Steps between training-state saves (train_state.pt, what resume=<run dir> continues from);
    # 0: only at the end. 200 maze steps are about 2.5 CPU minutes, the most an interrupt loses,
    # and a save costs milliseconds.
    checkpoint_every: int = 200
    loop_weight: float = 0.0  # weight of the loop-inducing regulariser (0: off)
    # Its form (benchmark.training.loop_regulariser.LOOP_FORMS): "squared" (1 - cos^2 per pair) or "abs"
    # (|sin| per pair, smoothed): the second ends pairs exactly parallel and lets others differ.
    loop_form: str = "squared"
    # Length curriculum (tasks whose puzzles truncate, ``Task.truncates``: prefix sums): every
    # batch is cut to its first L positions, L growing linearly from curriculum_start to the
    # training size over the first curriculum_steps steps (benchmark.training.trainer.curriculum_size);
    # 0: off, every batch at the training size. stop_at_acc ends a run only once the curriculum
    # is over.
    curriculum_steps: int = 0
    curriculum_start: int = 8
    # Stop once the probe accuracy (the model at ``iters`` on the first ``probe_size`` training
    # samples, measured at every log step; ``probe_acc`` in metrics.jsonl) reaches this fraction;
    # null: train every epoch. ``epochs`` is then the cap. The sharing study's "steps to 99%".
    stop_at_acc: Optional[float] = None
    probe_size: int = 512
    # The run keeps the exponential moving average of its weights, started at the initial
    # weights (benchmark.training.trainer.WeightAverage), instead of its last weights; null: the last
    # weights. The value is the average's horizon 1 / (1 - decay) as a fraction of the run's
    # steps (epochs x steps per epoch), so that a short run averages as a long one does: 0.4
    # gives decay 0.999 over the maze default's 2,500 steps, and the initial weights keep a share
    # decay^steps of about e^(-1/0.4) = 8% in any run. Same training, other kept weights: 33x33
    # mazes went from 52-93% to 95-99.7% at up to 500 iterations over seeds 0-2 (README, "Maze
    # track"). Recipes tuned without it (prefix sums, shortest paths, the published scale) set it null.
    ema_horizon: Optional[float] = 0.4

    # The optimizer and the learning-rate schedule, as Hydra partials (lightning-hydra-template's
    # form) whose fields interpolate the options above, so ``train.lr=...`` keeps setting them:
    # benchmark.training.optim instantiates them (the optimizer on the parameter groups, the banks'
    # coefficients without weight decay; the schedule stepped after every optimizer step). Another
    # optimizer is a config change (``train.optimizer._target_=torch.optim.SGD
    # +train.optimizer.momentum=0.9``); the classes allowed are ``OPTIMIZERS`` and ``SCHEDULES``.
    optimizer: Any = field(default_factory=lambda: {"_target_": "torch.optim.AdamW", "_partial_": True,
                                                    "lr": "${train.lr}", "weight_decay": "${train.weight_decay}"})
    scheduler: Any = field(default_factory=lambda: {"_target_": "benchmark.training.optim.warmup_cosine_schedule",
                                                    "_partial_": True, "warmup_steps": "${train.warmup_steps}"})


@dataclass
class EvalConfig:
    """Test-time settings: every iteration count 1..iters is scored in one unrolled pass."""

    iters: int = 100  # 5x the training iterations: 15x15 mazes peak around iteration 80
    batch_size: int = 256
    fold_threshold: float = 0.99  # |cos| above which neighbouring layers fold into one loop
    # Stop a sample once its prediction has been a fixed point or a 2-cycle for this many
    # iterations (benchmark.evaluation.extrapolation.settle_and_score); 0: never, every sample runs all iters.
    halt_after: int = 0


@dataclass
class BaselineModelConfig:
    """An unshared baseline network (``baselines/``): every block position has its own weights."""

    _target_: str = "baselines.feedforward.FeedForwardNet"
    name: str = MISSING  # the label in result paths and tables: a single path component
    width: int = 32  # channels of the features
    depth: int = 20  # block positions
    recall: bool = True  # concatenate the input to the features at every iteration


@dataclass
class ModelConfig(BaselineModelConfig):
    """``benchmark.models.recurrent.RecurrentConvNet``: width, block positions, templates of the bank, recall."""

    _target_: str = "benchmark.models.recurrent.RecurrentConvNet"
    depth: int = 1  # one block reused every iteration
    templates: Optional[int] = 2  # k templates mixed into the block convs; None: unshared convs
    # How the bank's coefficients start: "orthogonal" (the paper's) or "orthogonal_unit" (the same
    # directions, rows of unit norm on average): benchmark.models.bank.COEFFICIENT_INITS. The paper's rows
    # have norm sqrt(k / L), so an in-block bank (L = 4) starts its convs at sqrt(k / 4) of an
    # unshared block's std; unit rows start every k at the unshared scale (the study's shared_k*;
    # README, "The in-block banks' initial scale").
    coefficient_init: str = "orthogonal"
    compile: bool = False  # torch.compile each iteration (falls back to eager with a warning); `python -m benchmark.bench` measures it


@dataclass
class ContractiveModelConfig(BaselineModelConfig):
    """``benchmark.models.contractive.ContractiveConvNet``: hard recurrence whose iteration is a
    contraction of the features (Bear et al. 2024; docs/models.md, "Contractive recurrence").
    One block position with recall, as the model is built (other values are refused)."""

    _target_: str = "benchmark.models.contractive.ContractiveConvNet"
    depth: int = 1
    lipschitz: float = 0.9  # one iteration's Lipschitz constant in the features is at most this (0 < c < 1)
    compile: bool = False  # torch.compile each iteration (falls back to eager with a warning)


@dataclass
class DeepInitConfig:
    """How a deep stack of block positions starts (the depth-wise models' schemas add these).

    The defaults are the networks' own (what ``model=shared``/``recurrent`` use); the depth-wise
    configs (``depth_*``, ``shared_depth``, ``feedforward``) choose the recipe of the README's
    "Depth-wise models that learn". The same options for shared and unshared stacks, so a recipe
    offered to one is offered to the other.
    """

    recall_init: str = "default"  # the recall convs: "default" (PyTorch's), "kaiming" or "kaiming_loop" (benchmark.models.recurrent.RECALL_INITS)
    block_scale: Optional[float] = None  # block convs' RMS std as a multiple of a Kaiming template's; null: as initialised


@dataclass
class DepthBaselineModelConfig(DeepInitConfig, BaselineModelConfig):
    """The feed-forward baseline with the deep-stack init options."""


@dataclass
class DepthModelConfig(DeepInitConfig, ModelConfig):
    """A depth-wise shared model: ``ModelConfig`` and the deep-stack init options."""


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(group="size", name="schema", node=SizeConfig)
    cs.store(group="train", name="schema", node=TrainConfig)
    cs.store(group="eval", name="schema", node=EvalConfig)
    cs.store(group="model", name="schema", node=ModelConfig)
    cs.store(group="model", name="baseline_schema", node=BaselineModelConfig)
    cs.store(group="model", name="depth_schema", node=DepthModelConfig)
    cs.store(group="model", name="depth_baseline_schema", node=DepthBaselineModelConfig)
    cs.store(group="model", name="contractive_schema", node=ContractiveModelConfig)


register_configs()

# The schemas of the puzzle tasks' model options (the image models have their own): one list, which
# check_config and the tests' choice of models to run read.
PUZZLE_MODEL_SCHEMAS = (ModelConfig, BaselineModelConfig, DepthModelConfig, DepthBaselineModelConfig, ContractiveModelConfig)

SEED_MAX = 2**32 - 1  # numpy's and torch's seeding both accept 0 .. 2**32 - 1
# The keys of the root config (configs/config.yaml); anything else came from a typo or a removed
# option (`+variant=...`) and would be silently ignored.
ROOT_KEYS = ("task", "size", "model", "train", "eval", "pipeline", "seed", "device", "results_dir", "run_id", "cache_dir",
             "progress", "resume", "threads", "logger", "precision")
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")
LOGGERS = ("none", "tensorboard")  # where training curves go besides metrics.jsonl (always written)
# A name that becomes one directory of a run's path: letters, digits and ._+=,- only, not
# starting with a dot (so never '.', '..' or a hidden file), no separator.
_COMPONENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+=,-]*")


def require(ok: bool, message: str) -> None:
    """Raise ``ConfigError(message)`` unless ``ok``: every check of a config value reads as one line."""
    if not ok:
        raise ConfigError(message)



def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# The classes ``train.optimizer`` and ``train.scheduler`` may name: a config's ``_target_`` is code
# to run, so it is one of these or refused (the classification recipe's SGD and MultiStepLR among them).
OPTIMIZERS = ("torch.optim.AdamW", "torch.optim.Adam", "torch.optim.SGD", "torch.optim.RMSprop")
SCHEDULES = ("benchmark.training.optim.warmup_cosine_schedule", "torch.optim.lr_scheduler.MultiStepLR",
             "torch.optim.lr_scheduler.CosineAnnealingLR", "torch.optim.lr_scheduler.ConstantLR")


def check_partials(train: Any) -> None:
    """``train.optimizer`` and ``train.scheduler`` are partials of an allowed class, and a field of
    theirs named like a train option (``lr``, ``weight_decay``, ``warmup_steps``, ...) holds that
    option's value: the option is the one place it is set (one sentence if not)."""
    for key, allowed in (("optimizer", OPTIMIZERS), ("scheduler", SCHEDULES)):
        node = train.get(key) if hasattr(train, "get") else getattr(train, key, None)
        target = node.get("_target_") if hasattr(node, "get") else None
        require(target in allowed and node.get("_partial_") is True,
                f"train.{key} must be a partial (_partial_: true) of one of {', '.join(allowed)}, got {target!r}.")
        if isinstance(train, DictConfig):  # as composed: a field set on its own instead of through its option
            raw, options = OmegaConf.to_container(node, resolve=False), OmegaConf.to_container(train, resolve=False)
            for name, value in raw.items():
                if not name.startswith("_") and name in options and value not in (f"${{train.{name}}}", options[name]):
                    raise ConfigError(f"train.{key}.{name} ({value!r}) differs from train.{name} "
                                      f"({options[name]!r}); set train.{name}, which the {key} takes.")


def check_component(key: str, value: Any) -> None:
    """Refuse a name that would not be one safe directory name (``run_id=/abs``, ``../..``)."""
    require(isinstance(value, str) and len(value) <= 200 and _COMPONENT.fullmatch(value) is not None,
             f"{key} must be a single directory name of letters, digits and ._+=,- (not starting with a dot), got {value!r}.")


def _check_writable_dir(key: str, value: Any) -> None:
    """``value`` is a directory this process can write, or one it can create (nothing is made here)."""
    require(isinstance(value, str) and value != "", f"{key} must be a directory path, got {value!r}.")
    path = Path(value).expanduser().absolute()
    existing = path
    while not existing.exists():
        existing = existing.parent
    if existing == path:
        require(path.is_dir(), f"{key} {value} is a file, not a directory; give a directory path.")
    else:
        require(existing.is_dir(), f"{key} {value} cannot be created because {existing} is a file.")
        # A path whose first directory does not exist (/mnt-missing/..., a drive not mounted) is
        # almost always a mistake; creating it at the top of the file system is never wanted.
        require(existing != Path(existing.anchor),
                 f"{key} {value} would be created at the top of the file system ({path.parts[1]} is missing: a drive not mounted?); give an existing directory.")
    require(os.access(existing, os.W_OK | os.X_OK), f"{key} {value} is not writable ({existing} refuses writes); give a writable directory.")


def tensorboard_installed() -> bool:
    """Whether ``torch.utils.tensorboard`` can be used (it needs the optional ``tensorboard`` package)."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def check_run_settings(cfg: DictConfig) -> None:
    """The settings every pipeline shares (algorithmic or classification): the top-level keys,
    seed, device, progress, threads, logger, the names that become path parts, and the output directories."""
    unknown = sorted(set(cfg) - {*ROOT_KEYS, "hydra"})
    require(not unknown, f"the config has no key {unknown[0]!r} (a removed option or a typo?); its keys are {', '.join(ROOT_KEYS)}."
             if unknown else "")
    require(is_integer(cfg.seed) and 0 <= cfg.seed <= SEED_MAX, f"seed must be an integer in [0, {SEED_MAX}], got {cfg.seed!r}.")
    require(isinstance(cfg.device, str) and DEVICE_PATTERN.fullmatch(cfg.device) is not None,
             f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {cfg.device!r}.")
    require(isinstance(cfg.progress, bool), f"progress must be true or false, got {cfg.progress!r}.")
    require(cfg.get("resume") is None or (isinstance(cfg.resume, str) and cfg.resume != ""),
             f"resume must be the path of an interrupted run directory, got {cfg.get('resume')!r}.")
    require(cfg.get("precision") in PRECISIONS,
             f"precision must be one of {', '.join(PRECISIONS)} (auto: bf16 where the hardware has it natively), got {cfg.get('precision')!r}.")
    require(cfg.get("threads") is None or (is_integer(cfg.threads) and cfg.threads >= 1),
             f"threads must be an integer >= 1 or null (torch's default, or the cores shared out among parallel jobs), got {cfg.get('threads')!r}.")
    require(cfg.get("logger", "none") in LOGGERS, f"logger must be one of {', '.join(LOGGERS)}, got {cfg.get('logger')!r}.")
    require(cfg.get("logger", "none") != "tensorboard" or tensorboard_installed(),
             "logger=tensorboard needs the tensorboard package (pip install 'algoreason[tensorboard]'); install it or use logger=none.")
    check_component("run_id", cfg.run_id)
    check_component("model.name", cfg.model.name)
    _check_writable_dir("results_dir", cfg.results_dir)
    if cfg.cache_dir is not None:
        _check_writable_dir("cache_dir", cfg.cache_dir)


def check_config(cfg: DictConfig, task: Task | None = None, model: Any = None) -> None:
    """Raise ``ConfigError`` (one sentence) for any value a run cannot use; write nothing.

    With ``cfg`` alone: the top-level keys (seed, device, paths, names), and the ranges and
    relations of ``size``, ``train``, ``eval`` and ``model`` (their types were checked by the
    schemas). Given the built ``task``: the sizes it accepts, its name, and that no dataset cache
    file of the run is blocked by a directory. Given the built ``model``: that it has weights for
    ``train.iters`` iterations (``iteration_limit``). ``benchmark.pipelines.algorithmic.run`` calls it before
    building anything and again with the task and model, both times before any write.
    """
    check_run_settings(cfg)
    for key, schemas in (("size", (SizeConfig,)), ("train", (TrainConfig,)), ("eval", (EvalConfig,)),
                         ("model", PUZZLE_MODEL_SCHEMAS)):
        require(OmegaConf.get_type(cfg[key]) in schemas,
                 f"the {key} option chosen is not one for puzzle tasks ({key} must follow {schemas[0].__name__}); "
                 f"choose a {key} option made for task={cfg.task.get('_target_', '?').rsplit('.', 1)[-1]}.")
    size, train, evaluation, model_cfg = cfg.size, cfg.train, cfg.eval, cfg.model
    for key, value in (("size.n_train", size.n_train), ("size.n_test", size.n_test), ("train.epochs", train.epochs),
                       ("train.batch_size", train.batch_size), ("train.iters", train.iters),
                       ("train.log_every", train.log_every), ("eval.iters", evaluation.iters),
                       ("eval.batch_size", evaluation.batch_size), ("model.depth", model_cfg.depth)):
        require(value >= 1, f"{key} must be a positive integer, got {value}.")
    n_val = size.get("n_val")
    require(n_val is None or (is_integer(n_val) and n_val >= 0),
             f"size.n_val must be null (as many as size.n_test) or an integer >= 0 (0: no validation data), got {n_val}.")
    require(is_integer(train.checkpoint_every) and train.checkpoint_every >= 0,
             f"train.checkpoint_every must be an integer >= 0 (0: save the training state only at the end), got {train.checkpoint_every}.")
    require(len(size.test) >= 1, "size.test must list at least one test size, e.g. size.test=[13,15].")
    ranks = env_world_size()
    require(train.batch_size % ranks == 0,
             f"train.batch_size ({train.batch_size}) must be divisible by the {ranks} processes torchrun started (each trains on an equal share of every batch).")
    require(train.batch_size <= size.n_train,
             f"train.batch_size ({train.batch_size}) must not exceed the training set (size.n_train={size.n_train}).")
    for key, value in (("train.lr", train.lr), ("train.weight_decay", train.weight_decay), ("train.clip", train.clip),
                       ("train.warmup_steps", train.warmup_steps), ("train.loop_weight", train.loop_weight),
                       ("train.detach_extra", train.detach_extra), ("train.init_noise", train.init_noise)):
        require(_is_number(value) and value >= 0, f"{key} must be a finite number >= 0, got {value}.")
    require(is_integer(train.curriculum_steps) and train.curriculum_steps >= 0,
             f"train.curriculum_steps must be an integer >= 0 (0: no length curriculum), got {train.curriculum_steps}.")
    require(train.loop_form in LOOP_FORMS,
             f"train.loop_form must be one of {', '.join(LOOP_FORMS)}, got {train.loop_form!r}.")
    require(_is_number(train.alpha) and 0.0 <= train.alpha <= 1.0, f"train.alpha must lie in [0, 1], got {train.alpha}.")
    require(is_integer(train.progressive_min_iters) and 1 <= train.progressive_min_iters <= train.iters,
             f"train.progressive_min_iters must be an integer from 1 to train.iters ({train.iters}), got {train.progressive_min_iters}.")
    require(train.stop_at_acc is None or (_is_number(train.stop_at_acc) and 0.0 < train.stop_at_acc <= 1.0),
             f"train.stop_at_acc must lie in (0, 1] or be null (train every epoch), got {train.stop_at_acc}.")
    check_partials(train)
    require(train.ema_horizon is None or (_is_number(train.ema_horizon) and 0.0 < train.ema_horizon <= 1.0),
             f"train.ema_horizon must lie in (0, 1] (a fraction of the run's steps) or be null (keep the last weights), "
             f"got {train.ema_horizon}.")
    require(train.probe_size >= 1, f"train.probe_size must be a positive integer, got {train.probe_size}.")
    require(_is_number(evaluation.fold_threshold) and 0.0 < evaluation.fold_threshold <= 1.0,
             f"eval.fold_threshold must lie in (0, 1], got {evaluation.fold_threshold}.")
    require(evaluation.halt_after >= 0, f"eval.halt_after must be an integer >= 0 (0: no halting), got {evaluation.halt_after}.")
    require(model_cfg.width >= 2, f"model.width must be an integer >= 2, got {model_cfg.width}.")
    templates = model_cfg.get("templates")
    if OmegaConf.get_type(model_cfg) is ContractiveModelConfig:
        require(0 < model_cfg.lipschitz < 1, f"model.lipschitz must be a number between 0 and 1 (exclusive), got {model_cfg.lipschitz}.")
        require(model_cfg.depth == 1 and model_cfg.recall, "a contractive model has one block position with recall: "
                f"model.depth must be 1 and model.recall true, got {model_cfg.depth} and {model_cfg.recall}.")
    require(templates is None or templates >= 1, f"model.templates must be an integer >= 1 or null (unshared), got {templates}.")
    recall_init, block_scale = model_cfg.get("recall_init", RECALL_INITS[0]), model_cfg.get("block_scale")
    require(recall_init in RECALL_INITS, f"model.recall_init must be one of {', '.join(RECALL_INITS)}, got {recall_init!r}.")
    require(block_scale is None or (_is_number(block_scale) and block_scale > 0),
             f"model.block_scale must be a positive number or null, got {block_scale}.")
    init = model_cfg.get("coefficient_init", COEFFICIENT_INITS[0])
    require(init in COEFFICIENT_INITS, f"model.coefficient_init must be one of {', '.join(COEFFICIENT_INITS)}, got {init!r}.")

    if task is not None:
        check_component("the task's name", task.name)
        try:
            for s in (size.train, *size.test):
                task.check_size(s)
        except TaskError as err:
            raise ConfigError(str(err)) from err
        check_memory(cfg, task)
        if train.curriculum_steps > 0:
            require(task.truncates, f"train.curriculum_steps needs a task whose puzzles can be cut to smaller ones "
                                     f"(prefix_sums), and {task.name} puzzles cannot; set train.curriculum_steps=0.")
            require(is_integer(train.curriculum_start) and 1 <= train.curriculum_start <= size.train,
                     f"train.curriculum_start must be a size from 1 to the training size {size.train}, "
                     f"got {train.curriculum_start}.")
        if cfg.cache_dir is not None:
            for s, n, seed in run_datasets(cfg):
                path = task.cache_path(cfg.cache_dir, s, n, seed)
                require(not path.is_dir(), f"the dataset cache file {path} is a directory; remove it or choose another cache_dir.")
    if model is not None:
        limit = model.iteration_limit
        require(limit is None or train.iters <= limit,
                 f"model '{model_cfg.name}' has weights for at most {limit} iterations, fewer than train.iters={train.iters}; "
                 f"set model.depth >= train.iters or train.iters <= {limit}.")


# The most memory a run's sizes may ask for, estimated before anything is made (``check_memory``):
# half the machine's physical memory, and never more than MAX_RUN_BYTES. A size past it would end
# in an allocation failure after the run directory was made.
MAX_RUN_BYTES = 64 * 2**30


def memory_limit() -> int:
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        physical = 2 * MAX_RUN_BYTES
    return min(MAX_RUN_BYTES, physical // 2)


def check_memory(cfg: DictConfig, task: Task) -> None:
    """``ConfigError`` (one sentence) if the run's datasets (every sample of ``run_datasets``: float32
    inputs and int64 targets) or one evaluation batch's feature maps (eval.batch_size x model.width
    x the largest test shape, float32) would take more than ``memory_limit()`` bytes."""
    limit, channels = memory_limit(), task.spec.in_channels
    data = sum(n * math.prod(task.shape(s)) * (4 * channels + 8) for s, n, _ in run_datasets(cfg))
    largest = max(math.prod(task.shape(s)) for s in (cfg.size.train, *cfg.size.test))
    features = max(cfg.eval.batch_size, cfg.train.batch_size) * int(cfg.model.get("width", 1)) * largest * 4
    for what, need in (("the datasets of size.train, size.test, size.n_train, size.n_test and size.n_val", data),
                       ("one batch's feature maps (the batch size x model.width x the largest size)", features)):
        require(need <= limit, f"{what} would need about {need / 2**30:.1f} GiB, more than the {limit / 2**30:.1f} GiB "
                               f"a run may use here; choose smaller sizes or fewer samples.")


# What a command reports as one sentence and exit status 2 (``exit_on_user_error``, and
# ``benchmark.pipelines.algorithmic.run_or_exit`` for runs): a bad option or value, a damaged file
# a command reads, and a place that cannot be written (a full disk, a read-only folder).
# Validation data seeds are VALIDATION_SEED_BASE + seed: above every training and test seed
# (2 * SEED_MAX + 1 at most) and above the frozen splits' seeds (configs/splits.yaml: from
# 9,000,000,001 on, a few hundred of them), so train, validation, test and frozen splits never
# share a sample stream (tests/test_protocol.py checks it).
VALIDATION_SEED_BASE = 10**12


class DataSeeds(NamedTuple):
    """A run's data seeds: ``train`` (2*seed), ``test`` (2*seed + 1) and, as a property so that
    ``train, test = data_seeds(seed)`` still unpacks two, ``validation`` (VALIDATION_SEED_BASE + seed)."""

    train: int
    test: int

    @property
    def validation(self) -> int:
        return VALIDATION_SEED_BASE + self.train // 2


def data_seeds(seed: int) -> DataSeeds:
    """The (training, test) data seeds of a run, 2*seed and 2*seed+1, and ``.validation``,
    VALIDATION_SEED_BASE + seed (docs/protocol.md).

    Each sample is drawn from SeedSequence([data_seed, index]), so the three splits never share a
    sample stream, and any test or validation set can be rebuilt from a run's seed alone.
    """
    return DataSeeds(2 * seed, 2 * seed + 1)


def n_validation(size: Any) -> int:
    """Validation samples per test size: ``size.n_val``, or ``size.n_test`` when it is null (or absent: older configs)."""
    n_val = size.get("n_val") if hasattr(size, "get") else getattr(size, "n_val", None)
    return size.n_test if n_val is None else int(n_val)


def run_datasets(cfg: DictConfig) -> list[tuple[int, int, int]]:
    """``(size, n, data seed)`` of every dataset a run uses: the training set, each test size,
    then each size's validation set (none when ``n_validation`` is 0)."""
    seeds = data_seeds(cfg.seed)
    tests = sorted({cfg.size.train, *cfg.size.test})
    n_val = n_validation(cfg.size)
    return [(cfg.size.train, cfg.size.n_train, seeds.train), *((s, cfg.size.n_test, seeds.test) for s in tests),
            *((s, n_val, seeds.validation) for s in tests if n_val > 0)]


def size_name(size: SizeConfig) -> str:
    """The run-directory name of a size setting, e.g. ``train9_test13-15``."""
    return f"train{size.train}_test{'-'.join(str(s) for s in size.test)}"


__all__ = ["BaselineModelConfig", "ConfigError", "ContractiveModelConfig", "DeepInitConfig", "DepthBaselineModelConfig", "DepthModelConfig", "EvalConfig", "ModelConfig", "PUZZLE_MODEL_SCHEMAS", "SizeConfig", "TrainConfig", "check_component",
           "check_config", "check_run_settings", "data_seeds", "DataSeeds", "n_validation", "run_datasets", "size_name", "VALIDATION_SEED_BASE"]

# The classification pipeline's schemas live beside its code (benchmark.config.classification); importing
# them here registers every schema of the project by importing this one module.
import benchmark.config.classification  # noqa: E402,F401
