"""The weight average a run keeps (``train.ema_horizon``): an exponential moving average of its weights."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import get_ema_multi_avg_fn

from benchmark.config.schema import ConfigError, TrainConfig


def ema_decay(horizon: float, steps: int) -> float:
    """The decay d whose horizon 1 / (1 - d) is ``horizon`` x ``steps`` (0: no averaging, when that is under one step)."""
    return max(0.0, 1.0 - 1.0 / (horizon * steps))


class WeightAverage:
    """An exponential moving average of a model's parameters, the weights a run keeps (``train.ema_horizon``).

    It starts as a copy of the initial weights p_0 and after each step s moves towards the new
    weights: ``a += (1 - d) (p_s - a)``, so after t steps ``a = d^t p_0 + sum_s (1 - d) d^(t - s) p_s``.
    The share d^t of the initial weights is part of the recipe, measured: with d = 0.999 over the
    maze default's 2,500 steps (a share of 8%), seeds 1 and 2 reached 95-99% on 33x33 mazes; the
    bias-corrected average without that share (divided by 1 - d^t, as Adam corrects its moments)
    reached 95% and 74% (README, "Maze track"). A run of fewer steps than the horizon 1 / (1 - d)
    keeps mostly its initial weights, which is why ``fit`` sets d from the run's length
    (``ema_decay``). Buffers are not averaged: the models' buffers are constants.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.params = [p.detach().clone() for p in model.parameters()]
        # torch's own EMA step: one foreach lerp over every parameter (a single fused call per
        # training step rather than one kernel per tensor).
        self._step = get_ema_multi_avg_fn(decay)

    def update(self, model: nn.Module) -> None:
        self._step(self.params, [p.detach() for p in model.parameters()], None)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        for average, p in zip(self.params, model.parameters()):
            p.copy_(average)

    @contextmanager
    def swapped_in(self, model: nn.Module) -> Iterator[None]:
        """``model`` holds the average inside the block, its own weights again after it."""
        live = [p.detach().clone() for p in model.parameters()]
        self.copy_to(model)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, saved in zip(model.parameters(), live):
                    p.copy_(saved)

    def state_dict(self) -> dict[str, Any]:
        return dict(params=list(self.params))

    def load_state_dict(self, state: Any) -> None:
        """Continue from ``state_dict()``'s output; ``ConfigError`` when it does not fit this model."""
        ok = (isinstance(state, dict) and set(state) == {"params"}
              and isinstance(state["params"], list) and len(state["params"]) == len(self.params)
              and all(isinstance(a, torch.Tensor) and a.shape == b.shape for a, b in zip(state["params"], self.params)))
        if not ok:
            raise ConfigError("the training state holds no weight average that fits this model (train.ema_horizon is set); "
                              "delete its train_state.pt to restart that run's training from step 0.")
        for average, saved in zip(self.params, state["params"]):
            average.copy_(saved)


AVERAGE_GAP = 0.05  # how much lower on the training probe the kept average may score before the run warns


def check_average(average: WeightAverage, model: nn.Module, probe: Any, cfg: TrainConfig, warn: bool) -> None:
    """Warn when the weight average scores well below the last weights on the training probe.

    The average suits a run that learned its task well before its last ``ema_horizon`` of
    steps (the maze default learns in its first quarter); in a much shorter run it mixes in
    weights from before the model learned (a 625-step maze run: 33% on held-out 9x9 mazes against
    97% for the last weights), and this says so instead of leaving it silent.
    """
    last = probe.accuracy(model, cfg.iters)
    with average.swapped_in(model):
        kept = probe.accuracy(model, cfg.iters)
    if warn and kept < last - AVERAGE_GAP:
        warnings.warn(f"the weight average (train.ema_horizon={cfg.ema_horizon}) scores {kept:.1%} on {len(probe.inputs)} "
                      f"training samples against {last:.1%} for the last weights; the run keeps the average: train longer, "
                      f"or set train.ema_horizon=null to keep the last weights.", RuntimeWarning, stacklevel=3)


__all__ = ["AVERAGE_GAP", "WeightAverage", "check_average", "ema_decay"]
