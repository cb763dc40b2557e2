"""The classification pipeline: one run on a read image set (CIFAR-10/100, digits), end to end.

    python -m benchmark task=cifar10 model=swrn train=cifar_paper      (configs/pipeline/classification.yaml)

    check config -> task.load() -> model -> SGD epochs (augment on the device) -> run directory:
      config.yaml     the composed config
      metrics.jsonl   one line per epoch: loss, train/test(/val) top-1 accuracy and error, lr, images/s
      model.pt        the checkpoint (benchmark.infra.checkpoint)
      train_state.pt  the training state after the last finished epoch (benchmark.training.state):
                      resume=<run dir> continues an interrupted run from there
      INCOMPLETE      present until every result is written (interrupted, diverged or crashed)
            eval.json       ``benchmark.infra.results.ClassificationResult``: final top-1 accuracy and error, the
                      per-epoch curve, parameters (and the unshared network's), images/s, seconds
      lsm.json/.png   layer similarity of every stage bank, one panel per stage
      fold.json       ``benchmark.infra.results.BankFoldResult``: every learned bank folded
                      (``benchmark.models.bank.fold_bank``), the test accuracy before and after
      training.png    loss and top-1 error per epoch

``run(cfg)`` is importable and returns the ``ClassificationResult``; ``main(cfg)`` is the Hydra
entry (user errors: one sentence, exit 2, nothing written). See docs/classification.md.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn

from benchmark.models.contract import ImageClassifier
from benchmark.infra import precision
from benchmark.training.augment import augment, to_float
from benchmark.models.bank import fold_model_banks
from benchmark.infra.checkpoint import checkpoint_fields, save_checkpoint
from benchmark.config.classification import check_classification_config, size_label
from benchmark.config.schema import ConfigError, check_run_settings
from benchmark.infra.rundir import RunDir
from benchmark.infra.results import BankFoldResult, ClassificationResult, ClassificationTiming, EpochScore
from benchmark.pipelines.algorithmic import (INCOMPLETE_NOTE, apply_threads, build_model, instantiate_user, metrics_logger, new_run_dir, pick_device,
                           resolve_precision, run_or_exit, seed_everything)
from benchmark.training import optim
from benchmark.training.monitor import FiniteGuard
from benchmark.training.step import train_step
from benchmark.training.state import (RunInterrupted, check_resume, read_train_state, restore_rng, save_train_state)
from benchmark.analysis.similarity import similarity_record
from tasks.images import ImageSplit, ImageTask

log = logging.getLogger(__name__)

EVAL_SPLITS = ("val", "test")  # scored after every epoch when present; the test split is always there


# ---------------------------------------------------------------------------- data on the device
@dataclass
class DeviceSplit:
    """One split on the training device: uint8 images ``(N, C, H, W)`` and int64 labels ``(N,)``."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


def _take(split: ImageSplit, n: int | None, what: str, task: str) -> ImageSplit:
    """The first ``n`` images of ``split`` (all for None); asking for more than there are is refused."""
    if n is None:
        return split
    if n > len(split.labels):
        raise ConfigError(f"{what}={n} asks for more images than the {len(split.labels)} that {task} has; use at most that, or null for all.")
    return ImageSplit(split.images[:n], split.labels[:n])


# ---------------------------------------------------------------------------- training and scoring
class Classifier:
    """What one run trains and scores with: the normalisation, the augmentation, autocast, layout.

    The forward passes run in ``precision`` (``benchmark.infra.precision``: ``auto`` is bf16 autocast
    on CUDA and on CPUs with AMX, else float32); on CUDA with channels-last tensors.
    """

    def __init__(self, task: ImageTask, mean: torch.Tensor, std: torch.Tensor, device: torch.device, precision_name: str = "auto"):
        self.task, self.device = task, device
        self.precision = precision.resolve(precision_name, device)
        self.mean, self.std = mean.to(device), std.to(device)  # (C,)
        self.cuda = device.type == "cuda"
        self.layout = torch.channels_last if self.cuda else torch.contiguous_format

    def inputs(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """uint8 images -> normalised float ``(N, C, H, W)``, augmented when a generator is given."""
        x = to_float(images, self.mean, self.std)
        if generator is not None:
            x = augment(x, generator, self.task.padding, self.task.flip, self.task.cutout)
        return x.contiguous(memory_format=self.layout)

    def autocast(self):
        return precision.autocast(self.device.type, self.precision)

    def place(self, model: nn.Module) -> nn.Module:
        """``model`` on the device, its 4-D weights in ``layout``. Not ``model.to(memory_format=...)``:
        that converts 5-D tensors too, and a template bank ``(k, out, in, kh, kw)`` has no
        channels-last form (the weights mixed from it are 4-D and follow the inputs' layout)."""
        model.to(self.device)
        for param in model.parameters():
            if param.dim() == 4:
                param.data = param.data.contiguous(memory_format=self.layout)
        return model

    @torch.no_grad()
    def accuracy(self, model: nn.Module, split: DeviceSplit, batch_size: int) -> float:
        """Top-1 accuracy (a fraction) of ``model`` on ``split``, in eval mode."""
        was_training = model.training
        model.eval()
        correct = 0
        for start in range(0, len(split), batch_size):
            with self.autocast():
                logits = model(self.inputs(split.images[start:start + batch_size]))  # (B, classes)
            correct += int((logits.argmax(1) == split.labels[start:start + batch_size]).sum())
        model.train(was_training)
        return correct / len(split)

    def train_epoch(self, model: nn.Module, optimizer: torch.optim.Optimizer, split: DeviceSplit, batch_size: int,
                    generator: torch.Generator, guard: FiniteGuard | None = None, step: int = 0) -> dict[str, float]:
        """One pass over ``split`` in a random order, augmented; returns loss, train_acc, images, seconds.

        ``guard`` observes every step's loss (numbered on from ``step``, the steps done before)
        on the device; the caller checks it once the epoch is done.
        """
        model.train()
        order = torch.randperm(len(split), generator=generator, device=self.device)
        starts = range(0, len(split), batch_size)
        if len(split) % batch_size == 1 and len(split) > 1:
            starts = starts[:-1]  # a batch of one image cannot be batch-normalised in training
        self._sync()
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        seen = 0
        for start in starts:
            index = order[start:start + batch_size]
            x, y = self.inputs(split.images[index], generator), split.labels[index]

            def loss_fn(x: torch.Tensor = x, y: torch.Tensor = y) -> tuple[torch.Tensor, torch.Tensor]:
                with self.autocast():
                    logits = model(x)  # (B, classes)
                    return F.cross_entropy(logits.float(), y), logits

            loss, logits = train_step(model, loss_fn, optimizer)  # no clipping; the schedule steps per epoch
            step += 1
            if guard is not None:
                guard.observe(loss, step)
            loss_sum += loss.detach() * len(y)  # summed on the device: no host sync per step
            correct += (logits.argmax(1) == y).sum()
            seen += len(y)
        self._sync()
        seconds = time.perf_counter() - t0
        return dict(loss=float(loss_sum) / seen, train_acc=int(correct) / seen, images=seen, seconds=seconds, steps=len(starts))

    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)


def make_optimizer(model: nn.Module, cfg: DictConfig) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.MultiStepLR]:
    """SGD (Nesterov momentum) with weight decay on all but bank coefficients; lr x gamma at milestones:
    the partials of ``ClassificationTrainConfig`` (``benchmark.training.optim``)."""
    optimizer = optim.make_optimizer(model, cfg)
    return optimizer, optim.make_scheduler(optimizer, cfg)


# ---------------------------------------------------------------------------- one run
def run(cfg: DictConfig) -> ClassificationResult:
    """Train and score one classifier as ``cfg`` says; write the run directory; return the result.

    Everything a user can get wrong (options, data, model settings) is checked before anything
    is written.
    """
    check_run_settings(cfg)
    check_classification_config(cfg.size, cfg.train, cfg.eval)
    data_dir = OmegaConf.to_container(cfg.task, resolve=False).get("data_dir")  # as written, before interpolation
    if cfg.cache_dir is None and isinstance(data_dir, str) and "${cache_dir}" in data_dir:
        raise ConfigError(f"task.data_dir ({data_dir}) lies under cache_dir, which is null; "
                          f"set task.data_dir=/path/to/the/{cfg.task.get('_target_', 'data').rsplit('.', 1)[-1]} archives.")
    resume_dir = check_resume(cfg)
    task = instantiate_user(cfg.task)
    if not isinstance(task, ImageTask):
        raise ConfigError(f"pipeline=classification needs an image task (cifar10, cifar100, digits), got {type(task).__name__}.")
    device = pick_device(cfg.device)
    resolve_precision(cfg, device)
    apply_threads(cfg)  # before the data is read and anything is computed
    splits = task.load()  # TaskError (one sentence) when the data is missing or not what it should be
    splits["train"] = _take(splits["train"], cfg.size.n_train, "size.n_train", task.name)
    splits["test"] = _take(splits["test"], cfg.size.n_test, "size.n_test", task.name)
    seed_everything(cfg.seed)
    model = build_model(cfg, task)
    if not isinstance(model, ImageClassifier):
        raise ConfigError(f"task={task.name} needs an image classifier (model=wrn or model=swrn), got model {cfg.model.name!r}.")

    checkpoint_fields(model, cfg)  # an unregistered model or task class fails here, not after training
    state = None
    if resume_dir is not None:
        run_dir = resume_dir
        if (RunDir(run_dir).state).exists():  # killed before the first epoch ended: training starts again there
            state = read_train_state(RunDir(run_dir).state)
    else:
        run_dir = new_run_dir(cfg, task.name, size_label(cfg.size))
        RunDir(run_dir).write_config(OmegaConf.to_yaml(cfg, resolve=True))
        RunDir(run_dir).mark_incomplete(INCOMPLETE_NOTE)
    log.info("run directory: %s", run_dir)
    try:
        result = _train_and_score(cfg, task, model, splits, device, run_dir, state)
    except KeyboardInterrupt as err:
        # Ctrl-C stops at once; the state of the last finished epoch is what resume continues from.
        raise RunInterrupted(run_dir, read_train_state(RunDir(run_dir).state).step if (RunDir(run_dir).state).exists() else None) from err
    RunDir(run_dir).mark_complete()
    return result


def _train_and_score(cfg: DictConfig, task: ImageTask, model: nn.Module, splits: dict[str, ImageSplit], device: torch.device,
                     run_dir: Path, state: dict | None) -> ClassificationResult:
    """Everything of ``run`` after the run directory exists: the epochs (from ``state`` when
    resuming), model.pt, scoring, folding, eval.json, the plot."""

    mean, std = task.normalisation(splits["train"])
    clf = Classifier(task, mean, std, device, cfg.precision)
    data = {name: DeviceSplit(s.images.to(device), s.labels.to(device)) for name, s in splits.items()}  # kept on the device
    clf.place(model)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{task.name} / {model.name}: {n_params:,} parameters, {len(data['train'])} training images, "
          f"{cfg.train.epochs} epochs, device {device}", flush=True)

    optimizer, scheduler = make_optimizer(model, cfg.train)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)  # data order and augmentation
    records: list[dict[str, Any]] = []
    step, train_s, trained_images, done = 0, 0.0, 0, 0
    if state is not None:
        model.load_state_dict(state.model)
        optimizer.load_state_dict(state.optimizer)
        scheduler.load_state_dict(state.scheduler)
        restore_rng(state.rng, generator)
        loop = state.loop
        step, done, records = state.step, loop["epoch"], list(loop["records"])
        train_s, trained_images = loop["train_s"], loop["trained_images"]
        print(f"resuming {run_dir} after epoch {done} (step {step})", flush=True)
    guard = FiniteGuard(device)
    on_record = metrics_logger(cfg, run_dir, step if state is not None else None)  # logger=tensorboard: also there
    t_start = time.perf_counter() - (records[-1]["seconds"] if records else 0.0)
    for epoch in range(done + 1, cfg.train.epochs + 1):
        lr = optimizer.param_groups[0]["lr"]
        stats = clf.train_epoch(model, optimizer, data["train"], cfg.train.batch_size, generator, guard, step)
        guard.check((step, RunDir(run_dir).state) if epoch > 1 else None)  # one sync per epoch; step: before this one
        scheduler.step()
        step += stats["steps"]
        train_s += stats["seconds"]
        trained_images += stats["images"]
        record = dict(epoch=epoch, step=step, loss=stats["loss"], train_acc=stats["train_acc"],
                      train_error=1.0 - stats["train_acc"], lr=lr, images_per_s=stats["images"] / stats["seconds"])
        for name in EVAL_SPLITS:
            if name in data:
                acc = clf.accuracy(model, data[name], cfg.eval.batch_size)
                record.update({f"{name}_acc": acc, f"{name}_error": 1.0 - acc})
        record["seconds"] = time.perf_counter() - t_start
        records.append(record)
        RunDir(run_dir).write_metrics(records)
        if on_record is not None:
            on_record(record)
        save_train_state(RunDir(run_dir).state, step, model, optimizer, scheduler, generator,
                         loop=dict(epoch=epoch, records=records, train_s=train_s, trained_images=trained_images))
        if cfg.progress:
            print(f"epoch {epoch}/{cfg.train.epochs}: loss {stats['loss']:.4f}, test error {100 * record['test_error']:.2f}%, "
                  f"lr {lr:.3g}, {record['images_per_s']:.0f} images/s", flush=True)
    save_checkpoint(model, cfg, RunDir(run_dir).model)

    t0 = time.perf_counter()
    curve = tuple(EpochScore(epoch=r["epoch"], test_acc=r["test_acc"], val_acc=r.get("val_acc")) for r in records)
    fold = analyse(model, clf, data["test"], cfg.eval, run_dir, accuracy_before=curve[-1].test_acc)
    result = ClassificationResult(
        task=task.name, model=model.name, seed=cfg.seed, parameters=n_params,
        unshared_parameters=model.unshared_parameter_count(), curve=curve, images_per_s=trained_images / train_s,
        seconds=ClassificationTiming(train=round(train_s, 2), analysis=round(time.perf_counter() - t0, 2),
                                     total=round(time.perf_counter() - t_start, 2)),
        device=str(device),
    )
    RunDir(run_dir).write_eval(result)
    from benchmark.analysis.plots import plot_classification_training  # imported late: matplotlib is slow to import

    plot_classification_training(records, run_dir / "training.png")
    print(f"{task.name} / {model.name}: top-1 accuracy {100 * result.accuracy:.2f}% (error {100 * result.error:.2f}%), "
          f"{result.images_per_s:.0f} training images/s", flush=True)
    if fold is not None:
        print(f"fold at |cos| >= {fold.threshold}: {fold.merged_layers} bank layer(s) merged, parameters {fold.parameters_before:,} -> "
              f"{fold.parameters_after:,}, accuracy {100 * fold.accuracy_before:.2f}% -> {100 * fold.accuracy_after:.2f}%", flush=True)
    print(f"results in {run_dir}", flush=True)
    return result


def analyse(model: nn.Module, clf: Classifier, test: DeviceSplit, cfg: DictConfig, run_dir: Path,
            accuracy_before: float) -> BankFoldResult | None:
    """Write lsm.json and lsm.png (every bank), and fold.json when the model has learned banks."""
    lsm = similarity_record(model)
    RunDir(run_dir).write_lsm(lsm)
    if lsm.banks:
        from benchmark.analysis import plots as plot  # imported late: matplotlib is slow to import

        plot.plot_similarity(lsm, run_dir / "lsm.png")
    folded, banks = fold_model_banks(model, cfg.fold_threshold)
    if not banks:
        return None
    fold = BankFoldResult(
        threshold=cfg.fold_threshold, banks=banks,
        parameters_before=sum(p.numel() for p in model.parameters()),
        parameters_after=sum(p.numel() for p in folded.parameters()),
        accuracy_before=accuracy_before, accuracy_after=clf.accuracy(folded, test, cfg.batch_size),
    )
    RunDir(run_dir).write_fold(fold)
    return fold


def main(cfg: DictConfig) -> ClassificationResult | None:
    """Hydra entry (``benchmark.pipelines.algorithmic.run_or_exit``): user errors end with one sentence on stderr and exit status 2."""
    return run_or_exit(run, cfg)


__all__ = ["Classifier", "DeviceSplit", "analyse", "main", "make_optimizer", "run"]
