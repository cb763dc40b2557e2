"""A damaged or crafted train_state.pt is refused in one sentence; identical states are identical bytes."""

from __future__ import annotations

import pytest
import torch

from benchmark.config.schema import ConfigError
from benchmark.training.state import read_train_state, save_train_state


def _save(path, step=3):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    generator = torch.Generator().manual_seed(0)
    loop = dict(epoch_rng=generator.get_state(), seen=12, seconds=0.5, records=[dict(step=1, loss=0.3)], window={"n": 2})
    save_train_state(path, step, model, optimizer, scheduler, generator, loop)
    return model


def _refused(path, **kwargs) -> str:
    with pytest.raises(ConfigError) as err:
        read_train_state(path, **kwargs)
    message = str(err.value)
    assert "\n" not in message and message.endswith(".") and len(message) < 500, message
    return message


def test_identical_states_are_identical_bytes(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    _save(tmp_path / "a" / "train_state.pt")
    _save(tmp_path / "b" / "train_state.pt")
    assert (tmp_path / "a" / "train_state.pt").read_bytes() == (tmp_path / "b" / "train_state.pt").read_bytes()


def test_a_sound_state_reads_back(tmp_path):
    model = _save(tmp_path / "train_state.pt")
    state = read_train_state(tmp_path / "train_state.pt", total_steps=3, model=model)
    assert state.step == 3


def test_a_step_past_the_run_is_refused(tmp_path):
    model = _save(tmp_path / "train_state.pt", step=10**9)
    assert "past the run's 100 training steps" in _refused(tmp_path / "train_state.pt", total_steps=100, model=model)


def test_weights_of_another_model_are_refused(tmp_path):
    _save(tmp_path / "train_state.pt")
    assert "do not fit" in _refused(tmp_path / "train_state.pt", model=torch.nn.Linear(4, 2))


@pytest.mark.parametrize("damage", [
    lambda s: s.update(optimizer=[1, 2]),
    lambda s: s.update(optimizer=dict(state=[], param_groups=[])),
    lambda s: s["optimizer"].update(param_groups="x"),
    lambda s: s.update(scheduler=dict(lr_lambdas=[{1.5: 2}])),  # a float key
    lambda s: s["loop"].update(records=torch.zeros(2, 2).to_sparse()),
    lambda s: s.update(rng=dict(s["rng"], numpy=dict(s["rng"]["numpy"], pos=10**9))),
    lambda s: s.update(rng=dict(s["rng"], python=dict(s["rng"]["python"], keys=torch.zeros(3)))),
    lambda s: s.update(rng=dict(s["rng"], generator=torch.zeros(3))),
    lambda s: s.update(rng=dict(s["rng"], cuda="x")),
    lambda s: s.update(step=True),
    lambda s: s.update(model={"weight": 3}),
    lambda s: s.update(model={"weight": torch.zeros(1).expand(10**7)}),  # a view claiming 40 MB of 4 bytes
], ids=lambda f: None)
def test_damaged_nested_entries_are_refused(tmp_path, damage):
    _save(tmp_path / "good.pt")
    state = torch.load(tmp_path / "good.pt", weights_only=True)
    damage(state)
    torch.save(state, tmp_path / "train_state.pt")
    _refused(tmp_path / "train_state.pt")


def test_a_deep_nest_is_refused(tmp_path):
    _save(tmp_path / "good.pt")
    state = torch.load(tmp_path / "good.pt", weights_only=True)
    deep = []
    for _ in range(40):
        deep = [deep]
    state["loop"]["records"] = deep
    torch.save(state, tmp_path / "train_state.pt")
    assert "nested too deeply" in _refused(tmp_path / "train_state.pt")
