"""Checkpoints: plain fields in, only registered classes out; crafted files run no code."""

from __future__ import annotations

import copy
import os

import pytest
import torch
from omegaconf import OmegaConf

from baselines.feedforward import FeedForwardNet
from baselines.wrn import UnsharedWideResNet
from benchmark.models import registry
from benchmark.infra.checkpoint import FORMAT, load_checkpoint, read_checkpoint, save_checkpoint
from benchmark.config.schema import ConfigError
from benchmark.models.recurrent import RecurrentConvNet
from benchmark.models.wide_resnet import WideResNet
from tasks.images import Cifar10Task, Cifar100Task, DigitsTask
from tasks.maze import MazeTask
from tasks.prefix_sums import PrefixSumsTask
from tasks.shortest_path import ShortestPathTask

MODEL = {"_target_": "benchmark.models.recurrent.RecurrentConvNet", "name": "shared", "width": 4, "depth": 1, "templates": 2, "recall": True}
TASK = {"_target_": "tasks.maze.MazeTask", "rendering": "compact"}


def one_sentence(message: str) -> bool:
    return "\n" not in message and message.endswith(".") and len(message) < 400


@pytest.fixture
def saved(tmp_path):
    """A real checkpoint of a tiny shared maze model, and its raw dict."""
    cfg = OmegaConf.create({"model": MODEL, "task": TASK})
    model = RecurrentConvNet(MazeTask.spec, **{k: v for k, v in MODEL.items() if k != "_target_"})
    path = tmp_path / "model.pt"
    save_checkpoint(model, cfg, path)
    return model, path, torch.load(path, weights_only=True)


def _write(tmp_path, ckpt, name="crafted.pt"):
    path = tmp_path / name
    torch.save(ckpt, path)
    return path


def _legacy(raw: dict) -> dict:
    """The same checkpoint as format 1 wrote it: Hydra configs with their _target_."""
    return dict(format="algoreason-checkpoint-1", model=dict(MODEL), task=dict(TASK), spec=raw["spec"], state_dict=raw["state_dict"])


# ---------------------------------------------------------------------------- what is stored
def test_checkpoint_stores_registered_names_and_plain_args(saved):
    _, _, raw = saved
    assert set(raw) == {"format", "model", "task", "spec", "state_dict"}
    assert raw["format"] == FORMAT
    assert raw["model"] == {"name": "recurrent_conv", "args": {"name": "shared", "width": 4, "depth": 1, "templates": 2, "recall": True}}
    assert raw["task"] == {"name": "maze", "args": {"rendering": "compact"}}
    assert "_target_" not in repr({k: raw[k] for k in ("model", "task", "spec")})


def test_round_trip_gives_the_same_predictions(saved):
    model, path, _ = saved
    loaded, ckpt = load_checkpoint(path)
    assert type(loaded) is RecurrentConvNet and not loaded.training
    assert (ckpt.task_name, ckpt.task_args, type(ckpt.task)) == ("maze", {"rendering": "compact"}, MazeTask)
    x = torch.from_numpy(MazeTask().generate(9, 3, seed=0)[0])
    torch.testing.assert_close(loaded(x, 3), model.eval()(x, 3), rtol=0, atol=0)


@pytest.mark.parametrize("model_cls,model_cfg,task_cls,task_cfg", [
    (FeedForwardNet, {"_target_": "baselines.feedforward.FeedForwardNet", "name": "feedforward", "width": 4, "depth": 3, "recall": True},
     PrefixSumsTask, {"_target_": "tasks.prefix_sums.PrefixSumsTask"}),
    (RecurrentConvNet, {"_target_": "benchmark.models.recurrent.RecurrentConvNet", "name": "recurrent", "width": 4, "depth": 1, "templates": None, "recall": False},
     ShortestPathTask, {"_target_": "tasks.shortest_path.ShortestPathTask", "obstacle_density": 0.1, "cost_min": 1, "cost_max": 3}),
])
def test_every_built_in_model_and_task_round_trips(tmp_path, model_cls, model_cfg, task_cls, task_cfg):
    args = {k: v for k, v in model_cfg.items() if k != "_target_"}
    model = model_cls(task_cls.spec, **args)
    save_checkpoint(model, OmegaConf.create({"model": model_cfg, "task": task_cfg}), tmp_path / "m.pt")
    loaded, ckpt = load_checkpoint(tmp_path / "m.pt")
    assert type(loaded) is model_cls and type(ckpt.task) is task_cls and ckpt.model_args == args
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_unregistered_model_class_is_refused_at_save(tmp_path):
    class Local(RecurrentConvNet):
        pass

    cfg = OmegaConf.create({"model": MODEL, "task": TASK})
    with pytest.raises(ConfigError, match="not registered") as err:
        save_checkpoint(Local(MazeTask.spec, width=4), cfg, tmp_path / "m.pt")
    assert one_sentence(str(err.value)) and not (tmp_path / "m.pt").exists()


def test_registry_entries_are_the_project_classes():
    assert registry.resolve("model", "recurrent_conv") is RecurrentConvNet
    assert registry.resolve("model", "feedforward") is FeedForwardNet
    assert registry.resolve("model", "wide_resnet") is WideResNet and registry.resolve("model", "wrn") is UnsharedWideResNet
    assert {name: registry.resolve("task", name) for name in registry.TASKS} == {
        "maze": MazeTask, "prefix_sums": PrefixSumsTask, "shortest_path": ShortestPathTask,
        "cifar10": Cifar10Task, "cifar100": Cifar100Task, "digits": DigitsTask}
    assert all(registry.resolve("task", name).name == name for name in registry.TASKS)


def test_format_1_checkpoints_are_refused(saved, tmp_path):
    """Format 1 stored Hydra configs (a ``_target_`` per entry): even with allowed targets it is refused."""
    _, _, raw = saved
    with pytest.raises(ConfigError, match="is not a benchmark checkpoint") as err:
        load_checkpoint(_write(tmp_path, _legacy(raw)))
    assert one_sentence(str(err.value))


# ---------------------------------------------------------------------------- crafted files
def _payloads(victim):
    """``_target_``s that would write, truncate or run a command if anything instantiated them."""
    return {
        "write_text": {"_target_": "pathlib.Path.write_text", "self": str(victim), "data": "pwned"},
        "open": {"_target_": "builtins.open", "file": str(victim), "mode": "w"},
        "system": {"_target_": "os.system", "command": f"echo pwned > {victim}"},
    }


@pytest.fixture
def victim(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "precious.txt"
    path.write_text("precious")
    return path


def _assert_untouched(tmp_path, victim, before):
    assert victim.read_text() == "precious"
    assert sorted(os.listdir(tmp_path)) == before


@pytest.mark.parametrize("payload", ["write_text", "open", "system"])
@pytest.mark.parametrize("entry", ["model", "task"])
def test_format_1_target_of_any_other_callable_is_refused(saved, tmp_path, victim, payload, entry):
    _, _, raw = saved
    ckpt = _legacy(raw)
    ckpt[entry] = _payloads(victim)[payload]
    path = _write(tmp_path, ckpt)
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(ConfigError, match="is not a benchmark checkpoint") as err:
        load_checkpoint(path)
    assert one_sentence(str(err.value))
    _assert_untouched(tmp_path, victim, before)


# Every place a nested _target_ could hide: each field of the model and task entries, the spec,
# the name slots, a top-level extra key, in both formats.
NESTED = [
    ("model", "args", "width"), ("model", "args", "name"), ("model", "args", "templates"), ("model", "args", "extra"),
    ("task", "args", "rendering"), ("task", "args", "extra"), ("model", "name"), ("task", "name"),
    ("spec", "dims"), ("spec", "extra"), ("hydra",), ("state_dict", "projection.weight"),
]


@pytest.mark.parametrize("where", NESTED, ids=["/".join(w) for w in NESTED])
@pytest.mark.parametrize("payload", ["write_text", "open", "system"])
def test_nested_target_anywhere_is_refused(saved, tmp_path, victim, where, payload):
    _, _, raw = saved
    ckpt = copy.deepcopy(raw)
    node = ckpt
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = _payloads(victim)[payload]
    path = _write(tmp_path, ckpt)
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(ConfigError) as err:
        load_checkpoint(path)
    assert one_sentence(str(err.value))
    _assert_untouched(tmp_path, victim, before)


@pytest.mark.parametrize("field", ["width", "recall", "name"])
def test_nested_target_in_a_format_1_config_is_refused(saved, tmp_path, victim, field):
    _, _, raw = saved
    ckpt = _legacy(raw)
    ckpt["model"][field] = _payloads(victim)["write_text"]
    path = _write(tmp_path, ckpt)
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(ConfigError, match="is not a benchmark checkpoint") as err:
        load_checkpoint(path)
    assert one_sentence(str(err.value))
    _assert_untouched(tmp_path, victim, before)


@pytest.mark.parametrize("name", ["pathlib.Path.write_text", "benchmark.models.recurrent.RecurrentConvNet", "os:system", "RecurrentConvNet"])
def test_a_class_path_in_the_name_slot_is_refused(saved, tmp_path, name):
    _, _, raw = saved
    ckpt = copy.deepcopy(raw)
    ckpt["model"]["name"] = name
    with pytest.raises(ConfigError, match="unknown model class") as err:
        load_checkpoint(_write(tmp_path, ckpt))
    assert one_sentence(str(err.value))


@pytest.mark.parametrize("change,message", [
    (lambda c: c["model"]["args"].update(width="32"), "argument 'width' of RecurrentConvNet must be int, got '32'"),
    (lambda c: c["model"]["args"].update(recall="maybe"), "must be bool, got 'maybe'"),
    (lambda c: c["model"]["args"].update(templates=1.5), "must be int | None"),
    (lambda c: c["model"]["args"].update(width=float("nan")), "finite float"),
    (lambda c: c["model"]["args"].update(depth=[1, {"a": 1}]), "list of those"),
    (lambda c: c["model"]["args"].update(activation="gelu"), "takes no argument 'activation'"),
    (lambda c: c["model"]["args"].update(spec=[1, 3, 2]), "takes no argument 'spec'"),
    (lambda c: c["task"]["args"].update(rendering="fancy"), "maze rendering must be 'compact' or 'e2h'"),
    (lambda c: c["task"].update(extra=1), "exactly 'name' and 'args'"),
    (lambda c: c.update(optimizer={}), "exactly the fields"),
    (lambda c: c.pop("spec"), "exactly the fields"),
    (lambda c: c["spec"].update(dims=True), "positive integers"),
    (lambda c: c["spec"].update(in_channels=4), "is not that of the task maze"),
    (lambda c: c.update(format="algoreason-checkpoint-9"), "not a benchmark checkpoint"),
    (lambda c: c["state_dict"].pop("projection.weight"), "do not fit the model"),
    (lambda c: c["state_dict"].update({"projection.weight": "not a tensor"}), "map parameter names to tensors"),
])
def test_invalid_fields_are_refused_in_one_sentence(saved, tmp_path, change, message):
    _, _, raw = saved
    ckpt = copy.deepcopy(raw)
    change(ckpt)
    with pytest.raises(ConfigError) as err:
        load_checkpoint(_write(tmp_path, ckpt))
    assert message in str(err.value) and one_sentence(str(err.value))


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated zip", os.urandom(512)], ids=["empty", "truncated-header", "random"])
def test_damaged_files_are_refused_in_one_sentence(tmp_path, content):
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match="cannot read checkpoint") as err:
        read_checkpoint(path)
    assert one_sentence(str(err.value))


def test_truncated_checkpoint_is_refused(saved, tmp_path):
    _, path, _ = saved
    (tmp_path / "cut.pt").write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ConfigError, match="cannot read checkpoint") as err:
        load_checkpoint(tmp_path / "cut.pt")
    assert one_sentence(str(err.value))


class _Pickled:
    def __reduce__(self):
        return (os.system, ("echo pwned > precious.txt",))


def test_pickled_objects_are_never_unpickled(tmp_path, victim):
    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "model": _Pickled()}, path)
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(ConfigError, match="cannot read checkpoint"):
        load_checkpoint(path)
    _assert_untouched(tmp_path, victim, before)
