"""The one training step (``benchmark.training.step.train_step``), the trainer's hooks in isolation,
and the optimizer and schedule built from the train schemas' Hydra partials."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

import benchmark.training.step as step_module
from benchmark.config.classification import ClassificationTrainConfig
from benchmark.config.schema import TrainConfig
from benchmark.models.bank import no_decay_parameters
from benchmark.models.recurrent import RecurrentConvNet
from benchmark.training.hooks import (CheckpointHook, CurriculumHook, DistributedHook, Hook, MetricsLogHook, ProbeHook,
                                      WeightAverageHook)
from benchmark.training.optim import make_optimizer, make_scheduler, warmup_cosine
from benchmark.training.step import train_step
from benchmark.training.trainer import Trainer, fit
from tasks.prefix_sums import PrefixSumsTask

TASK = PrefixSumsTask()


# ---------------------------------------------------------------------------- the step
def test_train_step_is_loss_regulariser_backward_reduce_clip_step_schedule_in_that_order():
    calls = []
    model = torch.nn.Linear(3, 1)
    x = torch.randn(4, 3)

    class Opt(torch.optim.SGD):
        def zero_grad(self, set_to_none=True):
            calls.append("zero_grad")
            super().zero_grad(set_to_none)

        def step(self, closure=None):
            calls.append("step")
            super().step(closure)

    optimizer = Opt(model.parameters(), lr=0.1)
    scheduler = SimpleNamespace(step=lambda: calls.append("schedule"))

    def loss_fn():
        calls.append("loss")
        return model(x).pow(2).mean() * 100, "aux"

    def after_backward(loss):
        calls.append("after_backward")
        assert all(p.grad is not None for p in model.parameters())
        return loss * 0

    def regulariser(m):
        calls.append("regulariser")
        return torch.zeros(())

    loss, aux = train_step(model, loss_fn, optimizer, scheduler, clip=1e-3, regulariser=regulariser, after_backward=after_backward)
    assert calls == ["loss", "regulariser", "zero_grad", "after_backward", "step", "schedule"]
    assert aux == "aux" and float(loss.detach()) == 0.0
    norm = torch.cat([p.grad.flatten() for p in model.parameters()]).norm()
    assert float(norm) == pytest.approx(1e-3, rel=1e-4)  # clipped


def test_the_four_training_loops_take_the_one_step(monkeypatch, tmp_path):
    """fit, the classification epochs, the speed benchmark's trainer and the study's step timer
    (its test: tests/test_study.py) all step through benchmark.training.step.train_step."""
    import benchmark.analysis.step_cost as step_cost
    import benchmark.devtools.bench_cases as bench
    from tasks.maze import MazeTask
    import benchmark.pipelines.classification as classification
    import benchmark.training.trainer as trainer

    for module in (trainer, classification, bench):
        assert module.train_step is step_module.train_step
    assert "from benchmark.training.step import train_step" in open(step_cost.__file__).read()
    callers = []
    real = step_module.train_step

    def spy(*args, **kwargs):
        import inspect
        callers.append(inspect.stack()[1].function)
        return real(*args, **kwargs)

    for module in (trainer, classification, bench, step_module):
        monkeypatch.setattr(module, "train_step", spy)
    cfg = TrainConfig(epochs=1, batch_size=8, iters=2, warmup_steps=1, log_every=100, ema_horizon=None)
    fit(RecurrentConvNet(TASK.spec, width=4, templates=2), TASK, TASK.dataset(6, 16, seed=0), cfg, torch.device("cpu"),
        progress=False)
    assert callers == ["train_on", "train_on"]

    clf = classification.Classifier(SimpleNamespace(padding=1, flip=True, cutout=0), torch.zeros(1), torch.ones(1),
                                    torch.device("cpu"), "fp32")
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten(), torch.nn.Linear(2 * 6 * 6, 3))
    split = classification.DeviceSplit(torch.randint(0, 255, (12, 1, 8, 8), dtype=torch.uint8), torch.randint(0, 3, (12,)))
    clf.train_epoch(net, torch.optim.SGD(net.parameters(), lr=0.1), split, 6, torch.Generator().manual_seed(0))
    assert callers[2:] == ["train_epoch", "train_epoch"]

    scale = bench.QUICK
    model = bench.build_model(MazeTask(), bench.settings(scale)[0], scale)
    bench.Trainer(model, MazeTask(), bench.training_batches(MazeTask(), scale), scale, bench.settings(scale)[0],
                  torch.device("cpu")).steps(2)
    assert callers[4:] == ["steps", "steps"]


# ---------------------------------------------------------------------------- optimizer and schedule
def test_the_partials_build_the_optimizer_and_schedule_of_the_options():
    model = RecurrentConvNet(TASK.spec, width=4, templates=2)
    node = OmegaConf.merge(OmegaConf.structured(TrainConfig), {"lr": 0.03, "weight_decay": 0.1, "warmup_steps": 3})
    for cfg in (node, TrainConfig(lr=0.03, weight_decay=0.1, warmup_steps=3)):
        optimizer = make_optimizer(model, cfg)
        assert type(optimizer) is torch.optim.AdamW
        decay, no_decay = optimizer.param_groups
        skip = no_decay_parameters(model)
        named = dict(model.named_parameters())
        assert {id(named[n]) for n in skip} == {id(p) for p in no_decay["params"]} and skip
        assert (decay["lr"], decay["weight_decay"], no_decay["weight_decay"]) == (0.03, 0.1, 0.0)
        scheduler = make_scheduler(optimizer, cfg, total_steps=10)
        lrs = []
        for _ in range(10):
            lrs.append(scheduler.get_last_lr()[0])
            optimizer.step()
            scheduler.step()
        assert lrs == pytest.approx([0.03 * warmup_cosine(s, 10, 3) for s in range(10)])
    sgd, milestones = make_optimizer(model, OmegaConf.structured(ClassificationTrainConfig)), None
    assert type(sgd) is torch.optim.SGD and sgd.param_groups[0]["nesterov"] and sgd.param_groups[1]["weight_decay"] == 0.0
    milestones = make_scheduler(sgd, OmegaConf.structured(ClassificationTrainConfig))
    assert type(milestones) is torch.optim.lr_scheduler.MultiStepLR and sorted(milestones.milestones) == [60, 120, 160]


def test_the_schedule_is_capped_at_a_run_shorter_than_its_warmup():
    optimizer = make_optimizer(torch.nn.Linear(2, 2), TrainConfig(lr=1.0, warmup_steps=100))
    scheduler = make_scheduler(optimizer, TrainConfig(lr=1.0, warmup_steps=100), total_steps=4)
    assert scheduler.get_last_lr()[0] == pytest.approx(0.25)  # warm-up over the run's 4 steps, not 100


# ---------------------------------------------------------------------------- hooks in isolation
def trainer_stub(**kwargs) -> SimpleNamespace:
    base = dict(step=0, task=TASK, main=True, records=[], log_now=False, stopping=False, reached=False, total=10, device=torch.device("cpu"))
    return SimpleNamespace(**{**base, **kwargs})


def test_the_curriculum_hook_cuts_each_batch_to_its_steps_size():
    hook = CurriculumHook(size=12, start=4, steps=4)
    x, y = torch.zeros(2, 1, 12), torch.zeros(2, 12, dtype=torch.long)
    sizes = [hook.batch(trainer_stub(step=s), x, y)[0].shape[-1] for s in range(6)]
    assert sizes == [4, 6, 8, 10, 12, 12]
    with pytest.raises(ValueError, match="needs the training size"):
        CurriculumHook(size=None, start=4, steps=4)


def test_the_weight_average_hook_averages_saves_and_restores():
    model = torch.nn.Linear(2, 1)
    t = trainer_stub(model=model, total=4)
    hook = WeightAverageHook(horizon=0.5)  # decay 1 - 1 / (0.5 * 4) = 0.5
    hook.on_start(t)
    initial = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    hook.after_step(t)
    for a, p0 in zip(hook.average.params, initial):
        torch.testing.assert_close(a, p0 + 0.5)
    other = WeightAverageHook(horizon=0.5)
    other.on_start(t)
    other.load_state_dict(t, hook.state_dict(t))
    for a, b in zip(other.average.params, hook.average.params):
        assert torch.equal(a, b)


def test_the_probe_hook_stops_only_after_the_curriculum():
    probe = SimpleNamespace(accuracy=lambda model, iters: 0.995)
    hook = ProbeHook(probe, stop_at_acc=0.99, iters=3, curriculum_steps=4)
    for step, reached in ((2, False), (4, True)):
        t, extra = trainer_stub(step=step, model=None), {}
        hook.on_log(t, extra)
        assert extra == {"probe_acc": 0.995} and t.reached is reached


def test_the_metrics_hook_writes_every_record_and_calls_back_on_rank_0_only(tmp_path):
    seen = []
    hook = MetricsLogHook(tmp_path / "m.jsonl", seen.append)
    t = trainer_stub(records=[{"step": 1}, {"step": 2}])
    hook.on_record(t, t.records[-1])
    assert [json.loads(x) for x in (tmp_path / "m.jsonl").read_text().splitlines()] == t.records and seen == [{"step": 2}]
    hook.on_record(trainer_stub(main=False, records=[{"step": 3}]), {"step": 3})
    assert seen == [{"step": 2}] and len((tmp_path / "m.jsonl").read_text().splitlines()) == 2


def test_the_checkpoint_hook_saves_every_n_steps_at_the_end_and_on_a_stop(tmp_path, monkeypatch):
    saved = []
    monkeypatch.setattr(CheckpointHook, "save", lambda self, t: saved.append(t.step))
    hook = CheckpointHook(tmp_path / "s.pt", every=3)
    for step in range(1, 11):
        hook.on_step_end(trainer_stub(step=step, stopping=step == 4, reached=step == 5))
    assert saved == [3, 4, 5, 6, 9, 10]
    saved.clear()
    CheckpointHook(None, every=1).on_step_end(trainer_stub(step=1))
    assert saved == []


def test_the_distributed_hook_takes_this_ranks_slice(monkeypatch):
    monkeypatch.setattr("benchmark.infra.distributed.world_size", lambda: 4)
    monkeypatch.setattr("benchmark.infra.distributed.rank", lambda: 2)
    assert DistributedHook(8).batch_indices(trainer_stub(), torch.arange(8)).tolist() == [4, 5]
    with pytest.raises(ValueError, match="divisible by the 4 processes"):
        DistributedHook(6)


def test_the_trainer_calls_its_hooks_at_their_moments():
    calls = []

    class Recording(Hook):
        def __getattribute__(self, name):
            attr = object.__getattribute__(self, name)
            if name in {"on_start", "after_step", "on_log", "on_record", "on_step_end", "on_end", "close"}:
                def wrapped(*args):
                    calls.append(name)
                    return attr(*args)
                return wrapped
            return attr

    cfg = TrainConfig(epochs=1, batch_size=8, iters=2, warmup_steps=1, log_every=2, ema_horizon=None)
    model = RecurrentConvNet(TASK.spec, width=4, templates=2)
    records = Trainer(model, TASK, TASK.dataset(6, 16, seed=0), cfg, torch.device("cpu"), hooks=[Recording()]).fit()
    assert calls == ["on_start", "after_step", "on_step_end", "after_step", "on_log", "on_record", "on_step_end", "on_end", "close"]
    assert [r["step"] for r in records] == [2] and not model.training


def test_another_optimizer_is_a_config_change(make_cfg):
    """``train.optimizer`` is a Hydra partial in the config: SGD with momentum from the command line,
    on the same parameter groups (the banks' coefficients without weight decay)."""
    from benchmark.pipelines.algorithmic import build_model
    from benchmark.training.optim import make_optimizer
    from tasks.maze import MazeTask

    cfg = make_cfg("train.optimizer._target_=torch.optim.SGD", "+train.optimizer.momentum=0.9", "train.lr=0.05")
    model = build_model(cfg, MazeTask())
    optimizer = make_optimizer(model, cfg.train)
    assert type(optimizer) is torch.optim.SGD
    assert [g["momentum"] for g in optimizer.param_groups] == [0.9, 0.9]
    assert [g["lr"] for g in optimizer.param_groups] == [0.05, 0.05]
    assert [g["weight_decay"] for g in optimizer.param_groups] == [cfg.train.weight_decay, 0.0]


def test_a_partial_field_follows_its_option_in_a_config_changed_after_resolving():
    """A config resolved once (a run's config.yaml) and then changed trains at the new value: the
    partials' fields named like an option always take the option's value."""
    resolved = OmegaConf.to_container(OmegaConf.create({"train": dataclasses.asdict(TrainConfig())}), resolve=True)["train"]
    changed = TrainConfig(**{**resolved, "lr": 0.01, "warmup_steps": 1})
    optimizer = make_optimizer(torch.nn.Linear(2, 2), changed)
    assert optimizer.param_groups[0]["lr"] == 0.01 and resolved["optimizer"]["lr"] == TrainConfig.lr
