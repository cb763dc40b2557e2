"""``train.init_noise``: half the batches' progressive term starts from a perturbed initial state
(benchmark.training.losses.perturbed_state). Off (0, the default) it draws nothing and trains
exactly as before (tests/test_train.py::test_training_gives_the_weights_recorded_before_the_refactor
checks the weights of the default against numbers recorded before the option existed)."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import binomtest

from benchmark.config.schema import ConfigError, TrainConfig, check_config
from benchmark.models.recurrent import RecurrentConvNet
from benchmark.training.losses import draw_progressive_split, perturbed_state, progressive_loss
from benchmark.training.trainer import fit
from tasks.maze import MazeTask


def _weights(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.state_dict().values()])


def _fit(init_noise: float, seed: int = 3) -> torch.Tensor:
    task = MazeTask()
    cfg = TrainConfig(epochs=1, batch_size=16, iters=4, detach_extra=2, warmup_steps=1, log_every=100, ema_horizon=None,
                      init_noise=init_noise)
    torch.manual_seed(seed)
    model = RecurrentConvNet(task.spec, width=8, templates=2)
    fit(model, task, task.dataset(5, 64, seed=0), cfg, torch.device("cpu"), seed=seed, progress=False)
    return _weights(model)


def test_the_default_is_off_and_draws_nothing_more():
    assert TrainConfig().init_noise == 0.0
    task = MazeTask()
    x, y = task.dataset(5, 8, seed=0).tensors
    model = RecurrentConvNet(task.spec, width=4, templates=2)
    used, alone = torch.Generator().manual_seed(2), torch.Generator().manual_seed(2)
    progressive_loss(model, task, x, y, 4, 1.0, used, detach_extra=2)
    draw_progressive_split(4, alone, 2)
    assert torch.equal(used.get_state(), alone.get_state())  # the stream every other draw of the run follows


def test_noise_changes_training_and_is_reproducible():
    off, noisy, again = _fit(0.0), _fit(0.5), _fit(0.5)
    assert torch.equal(noisy, again)
    assert not torch.equal(off, noisy)
    assert torch.equal(off, _fit(0.0))


def test_half_the_batches_start_from_a_perturbed_state(monkeypatch):
    calls = []
    real = perturbed_state

    def spy(h, scale, generator):
        calls.append(scale)
        return real(h, scale, generator)

    monkeypatch.setattr("benchmark.training.losses.perturbed_state", spy)
    task = MazeTask()
    x, y = task.dataset(5, 4, seed=0).tensors
    model = RecurrentConvNet(task.spec, width=4, templates=2)
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        progressive_loss(model, task, x, y, 3, 1.0, g, init_noise=0.25)
    assert set(calls) == {0.25} and binomtest(len(calls), 300, 0.5).pvalue > 1e-3, len(calls)
    calls.clear()
    progressive_loss(model, task, x, y, 3, 0.0, g, init_noise=0.25)  # no progressive term: nothing to start
    assert calls == []


def test_the_perturbed_state_is_the_state_plus_noise_at_each_samples_spread():
    torch.manual_seed(0)
    h = torch.rand(3, 8, 6, 6) * torch.tensor([1.0, 10.0, 100.0]).view(3, 1, 1, 1)
    z = torch.randn(h.shape, generator=torch.Generator().manual_seed(4))
    out = perturbed_state(h, 0.3, torch.Generator().manual_seed(4))
    spread = h.flatten(1).std(dim=1).view(3, 1, 1, 1)
    torch.testing.assert_close(out, (h + 0.3 * spread * z).relu())
    assert (out >= 0).all() and out.shape == h.shape
    # Scale 0 is the state itself (the model's states are never negative); bf16 and channels-last survive.
    torch.testing.assert_close(perturbed_state(h, 0.0, torch.Generator()), h)
    low = h.bfloat16().contiguous(memory_format=torch.channels_last)
    out = perturbed_state(low, 1.0, torch.Generator().manual_seed(0))
    assert out.dtype == torch.bfloat16 and out.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("value", [-0.1, float("inf"), float("nan")])
def test_a_bad_init_noise_is_one_sentence(make_cfg, value):
    cfg = make_cfg("task=maze", f"train.init_noise={value}")
    with pytest.raises(ConfigError, match=r"train.init_noise must be a finite number >= 0") as err:
        check_config(cfg)
    assert "\n" not in str(err.value) and str(err.value).endswith(".")


def test_a_bad_init_noise_on_the_command_line_exits_2_and_writes_nothing(tmp_path):
    from test_cli import _cli

    proc = _cli(tmp_path, "train.init_noise=-1")
    assert proc.returncode == 2 and "train.init_noise must be a finite number >= 0" in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1 and not (tmp_path / "results").exists()
