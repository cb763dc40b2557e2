"""The model contract (benchmark.models.contract) and the registration beside each class."""

from __future__ import annotations

from pathlib import Path

import gymnasium
import pytest
import torch
from omegaconf import OmegaConf

from baselines.feedforward import FeedForwardNet
from baselines.wrn import UnsharedWideResNet
from benchmark.analysis.folding import fold
from benchmark.analysis.study import model_kind
from benchmark.models import registry
from benchmark.models.contract import FoldableModel, IterativeModel, KINDS, Model, kind_of, register_model
from benchmark.models.recurrent import RecurrentConvNet
from benchmark.models.wide_resnet import WideResNet
from tasks.prefix_sums import PrefixSumsTask
from tasks.registry import TASKS, register_task

REPO = Path(__file__).resolve().parents[1]
SPEC = PrefixSumsTask.spec


@pytest.mark.parametrize("model, kind", [
    (RecurrentConvNet(SPEC, width=4, templates=2), "shared"),
    (RecurrentConvNet(SPEC, width=4, templates=None), "recurrent"),
    (RecurrentConvNet(SPEC, width=4, depth=3, templates=None), "unshared"),
    (RecurrentConvNet(SPEC, width=4, depth=3, templates=2), "shared"),
    (FeedForwardNet(SPEC, width=4, depth=3), "unshared"),
])
def test_puzzle_models_satisfy_the_contract_and_declare_their_kind(model, kind):
    assert isinstance(model, FoldableModel) and isinstance(model, IterativeModel) and isinstance(model, Model)
    assert kind_of(model) == kind
    node = {k: getattr(model, k) for k in ("depth",)}
    if type(model) is RecurrentConvNet:
        node["templates"] = None if not model.bank.learns_coefficients else 2
    assert type(model).config_kind(node) == kind  # the config and the instance agree


def test_folded_and_image_models_declare_their_kind():
    model = RecurrentConvNet(SPEC, width=4, depth=2, templates=1)
    folded, _ = fold(model)
    assert isinstance(folded, IterativeModel) and not isinstance(folded, FoldableModel) and kind_of(folded) == "recurrent"
    with torch.device("meta"):
        swrn = WideResNet(gymnasium_free_spec(), depth=16, widen=1, templates=1)
        wrn = UnsharedWideResNet(gymnasium_free_spec(), depth=16, widen=1)
    assert (kind_of(swrn), kind_of(wrn)) == ("shared", "unshared")
    assert isinstance(swrn, Model) and not isinstance(swrn, IterativeModel)


def gymnasium_free_spec():
    from tasks.base import TaskSpec
    return TaskSpec(dims=2, in_channels=3, num_classes=10)


def test_every_registered_built_in_declares_a_kind():
    for name in registry.MODELS:
        cls = registry.resolve("model", name)
        assert registry.name_of("model", cls) == name
    assert set(registry.MODELS) == {"recurrent_conv", "contractive_conv", "feedforward", "wide_resnet", "wrn"}
    assert set(KINDS) == {"shared", "recurrent", "unshared"}


def test_a_model_class_without_a_kind_cannot_be_registered():
    with pytest.raises(TypeError, match="lacks kind, config_kind"):
        @register_model("no_kind")
        class NoKind(torch.nn.Module):
            def forward(self, x):
                return x
    assert "no_kind" not in registry.MODELS


def test_a_name_is_registered_once():
    with pytest.raises(ValueError, match="already registered"):
        register_model("recurrent_conv")(FeedForwardNet)
    with pytest.raises(ValueError, match="already registered"):
        register_task("prefix_sums")(type("Other", (), {}))
    assert TASKS["prefix_sums"] == "tasks.prefix_sums:PrefixSumsTask"


def test_task_decorators_register_the_gymnasium_environments():
    for env_id, target, size in [("algoreason/PrefixSums-v0", "tasks.prefix_sums.PrefixSumsTask", 32),
                                 ("algoreason/ShortestPath-v0", "tasks.shortest_path.ShortestPathTask", 12),
                                 ("algoreason/Maze-v0", "tasks.maze.MazeTask", 9)]:
        assert gymnasium.registry[env_id].kwargs == {"task": target, "size": size}
    assert set(registry.TASKS) >= {"maze", "prefix_sums", "shortest_path", "cifar10", "cifar100", "digits"}


def test_former_paths_name_the_moved_classes():
    assert registry.name_of_path("model", "benchmark.model.RecurrentConvNet") == "recurrent_conv"
    assert registry.name_of_path("model", "benchmark.wide_resnet.WideResNet") == "wide_resnet"


def _old_study_kind(node) -> str:
    """The study's kind before the contract: from the presence of a ``templates`` key."""
    if "templates" not in node:
        return "unshared"
    if node.depth > 1:
        return "depth-wise" if node.templates is not None else "unshared"
    return "recurrent" if node.templates is None else "in-block"


def test_the_committed_runs_keep_their_kinds():
    configs = sorted((REPO / "results" / "reference").glob("**/config.yaml"))
    assert configs
    for path in configs:
        node = OmegaConf.load(path).model
        assert model_kind(node) == _old_study_kind(node), path


def test_a_config_naming_no_registered_class_is_unknown_never_unshared():
    assert model_kind({"_target_": "somewhere.NewFamily", "depth": 20, "width": 32}) == "unknown"
    assert model_kind({"_target_": "os.system", "depth": 1}) == "unknown"
