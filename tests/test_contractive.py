"""``model=contractive`` (benchmark.models.contractive): the operator-norm bound it normalises
by, that one iteration is a contraction of the features with the promised constant whatever
the weights, that every start then reaches one fixed point, and its config, refusals and
checkpoint."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from benchmark.config.schema import ConfigError, check_config
from benchmark.infra.checkpoint import load_checkpoint, save_checkpoint
from benchmark.models.contractive import ContractiveConvNet, conv_operator_bound
from tasks.maze import MazeTask
from tasks.prefix_sums import PrefixSumsTask
from tests.conftest import compose_config


def _power_norm(weight: torch.Tensor, size: int, steps: int = 400) -> float:
    """The l2 operator norm of the zero-padded convolution by ``weight`` on inputs of ``size``."""
    dims = weight.dim() - 2
    conv, back = (F.conv1d, F.conv_transpose1d) if dims == 1 else (F.conv2d, F.conv_transpose2d)
    v = torch.randn(1, weight.shape[1], *(size,) * dims, dtype=weight.dtype, generator=torch.Generator().manual_seed(1))
    for _ in range(steps):
        v = back(conv(v, weight, padding=1), weight, padding=1)
        v = v / v.norm()
    return conv(v, weight, padding=1).norm().item()


@pytest.mark.parametrize("dims", [1, 2])
def test_the_bound_holds_and_is_tight(dims):
    """Above the zero-padded operator's norm (power iteration) and the frequency response's
    maximum on a 256-point grid, and within the widening factor of the latter."""
    gen = torch.Generator().manual_seed(0)
    for trial in range(6):
        weight = torch.randn(5, 4, *(3,) * dims, dtype=torch.float64, generator=gen) * (1 + trial)
        bound = conv_operator_bound(weight, dims).item()
        response = torch.fft.fftn(weight, s=(256,) * dims, dim=tuple(range(-dims, 0)))
        supremum = torch.linalg.matrix_norm(response.movedim(0, -1).movedim(0, -1), ord=2).max().item()
        assert _power_norm(weight, 12) <= bound and supremum <= bound <= supremum / math.cos(math.pi / 16) ** dims
    batch = torch.randn(2, 3, 5, 4, *(3,) * dims, dtype=torch.float64, generator=gen)  # leading dims: one bound each
    bounds = conv_operator_bound(batch, dims)
    assert bounds.shape == (2, 3) and bounds[1, 2] == conv_operator_bound(batch[1, 2], dims)


def _iteration(model: ContractiveConvNet, x: torch.Tensor):
    """h -> one iteration of ``model`` on input ``x`` (the fused or the plain recall form, as the model is set)."""
    block, recall = model.position_weights()
    weights = model._position(model._layout(x), block[0], recall[0], model.width)
    return lambda h: model._step(h, *weights)


@pytest.mark.parametrize("task,size", [(MazeTask, 7), (PrefixSumsTask, 12)])
@pytest.mark.parametrize("fused", [True, False])
def test_one_iteration_is_a_contraction_whatever_the_weights(task, size, fused):
    """Weights scaled 30x (far outside the unit ball, so every normalisation acts) and the
    interpolation weights pushed to the ends: ||f(h) - f(g)|| <= c ||h - g|| for random states."""
    torch.manual_seed(0)
    model = ContractiveConvNet(task.spec, width=6, lipschitz=0.7).double()
    model.fuse_recall = fused
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(30)
        model.mix.copy_(torch.tensor([-4.0, 4.0]))
    x = torch.from_numpy(task().generate(size, 4, seed=0)[0]).double()
    step = _iteration(model, x)
    with torch.no_grad():
        shape = model.initial_state(x).shape
        for _ in range(5):
            h, g = torch.rand(shape, dtype=torch.float64) * 5, torch.rand(shape, dtype=torch.float64) * 5
            assert (step(h) - step(g)).norm() <= 0.7 * (h - g).norm() * (1 + 1e-9)


def test_every_start_reaches_the_same_fixed_point():
    """Contraction c: after t iterations two starts are at most c^t of their first distance apart."""
    torch.manual_seed(0)
    model = ContractiveConvNet(MazeTask.spec, width=6, lipschitz=0.8).double()
    x = torch.from_numpy(MazeTask().generate(9, 2, seed=0)[0]).double()
    with torch.no_grad():
        h0 = model.initial_state(model._layout(x))
        other = torch.rand_like(h0) * 10
        a, b = model.run(x, 60, h0), model.run(x, 60, other)
    assert (a - b).norm() <= 0.8**60 * (h0 - other).norm()


def test_the_config_builds_the_matched_model_and_refuses_bad_values():
    cfg = compose_config("task=maze", "model=contractive")
    check_config(cfg)
    model = ContractiveConvNet(MazeTask.spec, **{k: v for k, v in OmegaConf.to_container(cfg.model).items() if k != "_target_"})
    assert model.kind == "recurrent" and ContractiveConvNet.config_kind(cfg.model) == "recurrent"
    # model=recurrent_matched's parameters plus the two interpolation weights.
    matched = compose_config("task=maze", "model=recurrent_matched").model
    from benchmark.models.recurrent import RecurrentConvNet

    reference = RecurrentConvNet(MazeTask.spec, width=matched.width, templates=None)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in reference.parameters()) + 2 == 44_219
    for override, message in (("model.lipschitz=1.0", "between 0 and 1"), ("model.lipschitz=0", "between 0 and 1"),
                              ("model.depth=2", "one block position"), ("model.recall=false", "one block position")):
        with pytest.raises(ConfigError, match=message):
            check_config(compose_config("task=maze", "model=contractive", override))
    for kwargs in (dict(lipschitz=1.5), dict(lipschitz=True), dict(depth=3), dict(recall=False)):
        with pytest.raises(ValueError, match="lipschitz|one block position"):
            ContractiveConvNet(MazeTask.spec, **kwargs)


def test_a_checkpoint_round_trips(tmp_path):
    torch.manual_seed(0)
    model_cfg = {"_target_": "benchmark.models.contractive.ContractiveConvNet", "name": "contractive", "width": 5,
                 "depth": 1, "recall": True, "lipschitz": 0.6, "compile": False}
    model = ContractiveConvNet(MazeTask.spec, **{k: v for k, v in model_cfg.items() if k != "_target_"})
    with torch.no_grad():
        model.mix.copy_(torch.tensor([0.3, -1.2]))
    save_checkpoint(model, OmegaConf.create({"model": model_cfg, "task": {"_target_": "tasks.maze.MazeTask"}}), tmp_path / "m.pt")
    loaded, ckpt = load_checkpoint(tmp_path / "m.pt")
    assert type(loaded) is ContractiveConvNet and loaded.lipschitz == 0.6 and ckpt.model_name == "contractive_conv"
    x = torch.from_numpy(MazeTask().generate(9, 3, seed=0)[0])
    torch.testing.assert_close(loaded(x, 7), model.eval()(x, 7), rtol=0, atol=0)
