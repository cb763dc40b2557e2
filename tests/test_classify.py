"""The classification pipeline: config composition, refusals, a run end to end, training on digits, folding."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import hydra.errors
import pytest
import torch
from omegaconf import OmegaConf

import benchmark.config.classification  # noqa: F401  (registers the classification schemas)
from baselines.wrn import UnsharedWideResNet
from benchmark.models.bank import no_decay_parameters
from benchmark.infra.checkpoint import load_checkpoint
from benchmark.pipelines.classification import Classifier, DeviceSplit, analyse, make_optimizer, run
from benchmark.config.classification import ClassificationTrainConfig
from benchmark.infra.results import BankFoldResult, ClassificationResult
from benchmark.models.wide_resnet import WideResNet
from tasks.base import TaskSpec
from tasks.images import ImageSplit, ImageTask


class RandomImages(ImageTask):
    """A fake image task: random uint8 8x8 images; the label is the channel with the largest mean."""

    name = "random"
    spec = TaskSpec(dims=2, in_channels=3, num_classes=3)

    def __init__(self, n_train: int = 48, n_test: int = 24, with_val: bool = False):
        self.padding, self.flip, self.cutout = 1, True, 2
        self.n_train, self.n_test, self.with_val = n_train, n_test, with_val

    def load(self) -> dict[str, ImageSplit]:
        g = torch.Generator().manual_seed(0)

        def split(n: int) -> ImageSplit:
            images = torch.randint(0, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8)
            return ImageSplit(images, images.float().mean(dim=(2, 3)).argmax(1))

        splits = {"train": split(self.n_train), "test": split(self.n_test)}
        return {**splits, "val": split(8)} if self.with_val else splits

    def normalisation(self, train: ImageSplit) -> tuple[torch.Tensor, torch.Tensor]:
        x = train.images.float().div(255).transpose(0, 1).flatten(1)  # (C, N*H*W)
        return x.mean(1), x.std(1)


@pytest.fixture(autouse=True)
def _register_the_fake_task(monkeypatch):
    """Checkpoints name only registered tasks (benchmark.models.registry): let them name the fake one."""
    from benchmark.models import registry

    monkeypatch.setitem(registry.TASKS, "random_images", f"{__name__}:RandomImages")


FAKE_TASK = ["task=digits", f"task._target_={__name__}.RandomImages", "~task.test_fraction", "~task.split_seed",
             "~task.val_size", "~task.padding", "~task.flip", "~task.cutout", "model.widen=1", "progress=false"]
FAKE = [*FAKE_TASK, "train.epochs=2", "train.batch_size=16", "train.milestones=[1]"]


# ---------------------------------------------------------------------------- configuration
@pytest.mark.parametrize("task", ["cifar10", "cifar100", "digits"])
@pytest.mark.parametrize("model", ["wrn", "swrn"])
def test_image_configs_compose_validate_and_build(make_cfg, task, model):
    cfg = make_cfg(f"task={task}", f"model={model}", tiny=False)
    assert cfg.pipeline._target_ == "benchmark.pipelines.classification.main"
    assert OmegaConf.get_type(cfg.train) is ClassificationTrainConfig
    benchmark.config.classification.check_classification_config(cfg.size, cfg.train, cfg.eval)
    from hydra.utils import instantiate

    task_obj = instantiate(cfg.task)
    assert isinstance(task_obj, ImageTask) and task_obj.name == task
    with torch.device("meta"):
        net = instantiate(cfg.model, spec=task_obj.spec)
    depth, widen = (16, 2) if task == "digits" else (28, 10)  # digits: the CPU-scale network
    assert (net.depth, net.widen, net.templates) == (depth, widen, None if model == "wrn" else 1)
    assert net.name == (f"wrn-{depth}-{widen}" if model == "wrn" else f"swrn-{depth}-{widen}-1")
    if task == "cifar10":
        assert sum(p.numel() for p in net.parameters()) == (36_479_194 if model == "wrn" else 12_287_212)


def test_cifar_paper_is_the_official_recipe(make_cfg):
    cfg = make_cfg("task=cifar10", "model=swrn", "train=cifar_paper", tiny=False)
    train = cfg.train
    assert (train.epochs, train.batch_size, train.lr, train.momentum, train.nesterov, train.weight_decay,
            list(train.milestones), train.gamma) == (200, 128, 0.1, 0.9, True, 5e-4, [60, 120, 160], 0.2)
    model = WideResNet(TaskSpec(2, 3, 10), depth=16, widen=1, templates=2)
    optimizer, scheduler = make_optimizer(model, train)
    decay, no_decay = optimizer.param_groups
    skip = no_decay_parameters(model)
    assert skip == {f"stages.{s}.bank.coefficients" for s in range(3)}
    named = dict(model.named_parameters())
    assert {id(named[n]) for n in skip} == {id(p) for p in no_decay["params"]} and no_decay["weight_decay"] == 0.0
    assert decay["weight_decay"] == 5e-4 and len(decay["params"]) == len(named) - len(skip)
    assert decay["nesterov"] and decay["momentum"] == 0.9
    lrs = []
    for _ in range(200):  # the lr each epoch trains with
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == lrs[59] == 0.1 and lrs[60] == pytest.approx(0.02) and lrs[120] == pytest.approx(0.004)
    assert lrs[160] == lrs[199] == pytest.approx(0.0008) and lrs[119] == pytest.approx(0.02)


def test_the_algorithmic_path_keeps_its_pipeline(make_cfg):
    for task in ("maze", "prefix_sums", "shortest_path"):
        assert make_cfg(f"task={task}").pipeline._target_ == "benchmark.pipelines.algorithmic.main"


@pytest.mark.parametrize("override,message", [
    ("model.depth=27", "model.depth must be 6n + 4"),
    ("size.n_train=100000", "size.n_train=100000 asks for more images than the 48"),
    ("train.milestones=[5,3]", "train.milestones must be increasing"),
    ("train=cpu", "the train group must be an image-classification profile"),
    ("train.momentum=0", "train.nesterov=true needs train.momentum > 0"),
    ("eval.fold_threshold=0", "eval.fold_threshold must lie in (0, 1]"),
])
def test_bad_input_is_one_sentence_exit_2_and_nothing_written(make_cfg, tmp_path, capsys, override, message):
    from benchmark.pipelines.classification import main

    cfg = make_cfg(*(FAKE_TASK if override.startswith("train=") else FAKE), override, tiny=False)
    with pytest.raises(SystemExit) as info:
        main(cfg)
    err = capsys.readouterr().err
    assert info.value.code == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "results").exists()


def test_a_puzzle_model_on_an_image_task_is_refused_when_composing(make_cfg):
    # The image tasks set Wide ResNet options (model.widen) that the puzzle models' schema does not have.
    with pytest.raises(hydra.errors.ConfigCompositionException, match="widen"):
        make_cfg("task=digits", "model=shared")


def test_cifar_under_a_null_cache_dir_is_refused_before_anything(make_cfg, tmp_path, capsys):
    from benchmark.pipelines.classification import main

    with pytest.raises(SystemExit) as info:
        main(make_cfg("task=cifar10", "cache_dir=null", tiny=False))
    err = capsys.readouterr().err
    assert info.value.code == 2 and "task.data_dir" in err and "cache_dir, which is null" in err and err.count("\n") == 1
    assert not (tmp_path / "results").exists() and not Path("None").exists()


def test_missing_cifar_data_names_the_folder_and_writes_nothing(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "benchmark", "task=cifar10", f"results_dir={tmp_path / 'results'}",
                           f"cache_dir={tmp_path / 'cache'}"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 2 and str(tmp_path / "cache" / "cifar10") in proc.stderr and proc.stderr.count("\n") == 1
    assert not (tmp_path / "results").exists()


# ---------------------------------------------------------------------------- a run end to end
def test_a_run_writes_a_complete_and_consistent_run_directory(make_cfg, tmp_path):
    cfg = make_cfg(*FAKE, "+task.with_val=true", "model=swrn", "model.templates=2", "run_id=r", "seed=3", tiny=False)
    result = run(cfg)
    run_dir = tmp_path / "results" / "random" / "full" / "swrn-16-1-2" / "r"
    for name in ("config.yaml", "metrics.jsonl", "model.pt", "eval.json", "lsm.json", "lsm.png", "fold.json", "training.png"):
        assert (run_dir / name).is_file(), name
    assert ClassificationResult.read(run_dir / "eval.json") == result
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2] and [r["step"] for r in records] == [3, 6]  # 48 images, batch 16
    assert [r["lr"] for r in records] == [0.05, pytest.approx(0.01)]  # x0.2 after epoch 1 (train=digits: lr 0.05)
    assert all(r["test_error"] == pytest.approx(1 - r["test_acc"]) and "val_acc" in r for r in records)
    assert [s.to_json() for s in result.curve] == [{k: r[k] for k in ("epoch", "val_acc", "val_error", "test_acc", "test_error")}
                                                   for r in records]

    # The figures come from real predictions: the checkpoint alone rescored on the test split.
    model, _ = load_checkpoint(run_dir / "model.pt")
    task = RandomImages(with_val=True)
    splits = task.load()
    clf = Classifier(task, *task.normalisation(splits["train"]), torch.device("cpu"), "fp32")  # exact sums
    test = DeviceSplit(splits["test"].images, splits["test"].labels)
    assert clf.accuracy(model, test, 7) == result.accuracy == records[-1]["test_acc"]
    assert result.parameters == sum(p.numel() for p in model.parameters())
    assert result.unshared_parameters == sum(p.numel() for p in UnsharedWideResNet(task.spec, depth=16, widen=1).parameters())

    fold = BankFoldResult.read(run_dir / "fold.json")
    assert set(fold.banks) == {f"stages.{s}.bank" for s in range(3)} and fold.accuracy_before == result.accuracy
    assert fold.delta == fold.accuracy_after - fold.accuracy_before
    lsm = json.loads((run_dir / "lsm.json").read_text())
    assert set(lsm) == set(fold.banks) and all(len(bank["lsm"]) == 2 for bank in lsm.values())


def test_unshared_runs_have_an_lsm_but_nothing_to_fold(make_cfg, tmp_path):
    cfg = make_cfg(*FAKE, "model=wrn", "train.epochs=1", "run_id=w", tiny=False)
    result = run(cfg)
    run_dir = tmp_path / "results" / "random" / "full" / "wrn-16-1" / "w"
    assert result.parameters == result.unshared_parameters and not (run_dir / "fold.json").exists()
    lsm = json.loads((run_dir / "lsm.json").read_text())
    assert all(bank["lsm"] == [[1.0, 0.0], [0.0, 1.0]] and not bank["learned"] for bank in lsm.values())


def test_size_caps_the_images_and_names_the_run_directory(make_cfg, tmp_path):
    cfg = make_cfg(*FAKE, "size.n_train=20", "size.n_test=10", "train.epochs=1", "run_id=c", tiny=False)
    run(cfg)
    run_dir = tmp_path / "results" / "random" / "train20_test10" / "swrn-16-1-1" / "c"
    record = json.loads((run_dir / "metrics.jsonl").read_text())
    assert record["step"] == 2  # 20 images in batches of 16
    assert round(record["test_acc"] * 10) == record["test_acc"] * 10  # scored on 10 images


def test_folding_a_hand_set_parallel_swrn_keeps_its_accuracy(tmp_path):
    torch.manual_seed(0)
    task = RandomImages(n_test=64)
    model = WideResNet(task.spec, depth=22, widen=1, templates=3).eval()
    with torch.no_grad():
        for stage in model.stages:
            stage.bank.coefficients.copy_(torch.tensor([1.0, -2.0, 0.5, 3.0])[:, None] * torch.randn(3))  # (4, 3)
    splits = task.load()
    clf = Classifier(task, *task.normalisation(splits["train"]), torch.device("cpu"), "fp32")  # exact sums
    test = DeviceSplit(splits["test"].images, splits["test"].labels)
    before = clf.accuracy(model, test, 64)
    fold = analyse(model, clf, test, OmegaConf.create(dict(fold_threshold=0.99, batch_size=16)), tmp_path, before)
    assert fold.accuracy_after == fold.accuracy_before == before
    assert all((b.layers, b.distinct) == (4, 1) for b in fold.banks.values()) and fold.merged_layers == 3 * 3
    # Each bank: 3 templates and 4x3 coefficients became 1 weight and 4 scales.
    assert fold.parameters_before - fold.parameters_after == sum(2 * 9 * c * c + 12 - 4 for c in (16, 32, 64))
    lsm = json.loads((tmp_path / "lsm.json").read_text())
    assert all(pytest.approx(1.0) == v for bank in lsm.values() for row in bank["lsm"] for v in row)
    assert BankFoldResult.read(tmp_path / "fold.json") == fold


# ---------------------------------------------------------------------------- real images on the CPU
def test_a_short_training_run_on_digits_learns(make_cfg, tmp_path):
    cfg = make_cfg("task=digits", "model=swrn", "model.widen=1", "train.epochs=4", "run_id=d", "progress=false", tiny=False)
    result = run(cfg)
    run_dir = tmp_path / "results" / "digits" / "full" / "swrn-16-1-1" / "d"
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["loss"] < 0.5 * records[0]["loss"]
    assert result.accuracy > 0.7  # chance is 0.1; 360 test images


def test_the_command_line_runs_the_digits_track(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmark", "task=digits", "model=swrn", "model.widen=1", "model.depth=10",
         "train.epochs=1", "size.n_train=128", "size.n_test=64", "run_id=cli", f"results_dir={tmp_path / 'results'}"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    run_dir = tmp_path / "results" / "digits" / "train128_test64" / "swrn-10-1-1" / "cli"
    result = ClassificationResult.read(run_dir / "eval.json")
    assert (result.task, result.model, len(result.curve)) == ("digits", "swrn-10-1-1", 1)
    assert "top-1 accuracy" in proc.stdout and not (tmp_path / "outputs").exists()


def test_place_puts_the_4d_weights_channels_last_and_keeps_the_5d_template_banks():
    """The layout CUDA runs use (``model.to(memory_format=channels_last)`` raised on the banks)."""
    task = RandomImages()
    clf = Classifier(task, torch.zeros(3), torch.ones(3), torch.device("cpu"), "fp32")
    clf.layout = torch.channels_last  # as on CUDA
    model = WideResNet(task.spec, depth=16, widen=1, templates=2)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        expected = model.eval()(x)
        assert clf.place(model) is model
        torch.testing.assert_close(model(x.contiguous(memory_format=torch.channels_last)), expected, rtol=1e-4, atol=1e-5)
    weights = [p for p in model.parameters() if p.dim() >= 4]
    assert any(p.dim() == 5 for p in weights) and any(p.dim() == 4 for p in weights)
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in weights if p.dim() == 4)
