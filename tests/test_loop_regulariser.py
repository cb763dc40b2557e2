"""Tests of benchmark.training.loop_regulariser: the pairs it pulls together, its value, its effect in training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from benchmark.models.bank import TemplateBank
from benchmark.config.schema import TrainConfig
from benchmark.analysis.folding import fold
from benchmark.training.loop_regulariser import loop_pairs, loop_penalty, loop_similarity, training_regulariser
from benchmark.models.recurrent import RecurrentConvNet
from benchmark.analysis.similarity import model_lsm
from benchmark.training.trainer import fit
from nets import net, one_thread, parallel_rows, set_rows  # noqa: F401  (one_thread: autouse fixture)


def test_loop_pairs_follow_the_roles():
    assert loop_pairs(net(2, 1, 2)) == {"bank": [(0, 2), (1, 3)]}
    assert loop_pairs(net(2, 3, 2)) == {"bank": [(i, i + 4) for i in range(8)]}
    assert loop_pairs(net(2, 3, None)) == {}  # fixed identity: nothing to learn
    wrapped = nn.ModuleDict(dict(model=net(1, 2, 2), other=TemplateBank(3, 2, (2, 2))))
    assert loop_pairs(wrapped) == {"model.bank": [(i, i + 4) for i in range(4)], "other": [(0, 1), (1, 2)]}


def test_loop_penalty_is_zero_for_parallel_rows_and_differentiable():
    model = net(2, 3, 3)
    set_rows(model, parallel_rows(3, torch.randn(4, 3)))
    assert loop_penalty(model).item() == pytest.approx(0.0, abs=1e-6)
    assert loop_similarity(model) == pytest.approx(1.0, abs=1e-6)

    model = net(2, 3, 3)
    penalty = loop_penalty(model)
    assert 0.0 < penalty.item() <= 1.0
    penalty.backward()
    grad = model.bank.coefficients.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert model.bank.templates.grad is None  # only the coefficients are pulled together

    unshared = net(2, 3, None)
    assert float(loop_penalty(unshared)) == 0.0 and not loop_penalty(unshared).requires_grad


def test_loop_penalty_alone_makes_loops():
    model = net(2, 4, 2)
    before_pairs, before_lsm = loop_similarity(model), model_lsm(model)["bank"]
    optimizer = torch.optim.Adam([model.bank.coefficients], lr=0.05)
    for _ in range(40):
        optimizer.zero_grad()
        loop_penalty(model).backward()
        optimizer.step()
    after_lsm = model_lsm(model)["bank"]
    off = ~np.eye(16, dtype=bool)
    assert loop_similarity(model) > max(0.99, before_pairs)
    assert after_lsm[off].mean() > before_lsm[off].mean()
    _, report = fold(model, 0.95)
    assert report.num_loops < 4


def test_regulariser_in_training_raises_similarity():
    from tasks.maze import MazeTask

    task = MazeTask()
    data = task.dataset(9, 48, seed=0)
    cfg = TrainConfig(epochs=2, batch_size=16, lr=0.02, warmup_steps=1, iters=3, log_every=100, alpha=0.5, detach_extra=0)
    similarity, mean_lsm = {}, {}
    for weight in (0.0, 1.0):
        torch.manual_seed(0)
        model = RecurrentConvNet(task.spec, width=8, depth=3, templates=2)
        regulariser = (lambda m, w=weight: w * loop_penalty(m)) if weight else None
        fit(model, task, data, cfg, torch.device("cpu"), regulariser=regulariser, progress=False)
        lsm = model_lsm(model)["bank"]
        similarity[weight], mean_lsm[weight] = loop_similarity(model), lsm[~np.eye(len(lsm), dtype=bool)].mean()
    assert similarity[1.0] > similarity[0.0] + 0.1
    assert mean_lsm[1.0] > mean_lsm[0.0]


def _turn(form: str) -> torch.Tensor:
    """|cos| of every pair after pulling position 0 to template 0 and position 4 to template 1.

    Five positions must turn their rows by 90 degrees in all; the penalty decides how."""
    model = net(2, 5, 2)
    rows = model.bank.coefficients.view(5, 4, 2)
    ends = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    optimizer = torch.optim.Adam([model.bank.coefficients], lr=0.01)
    for _ in range(1500):
        optimizer.zero_grad()
        pull = (rows[0] - ends[0]).square().sum() + (rows[4] - ends[1]).square().sum()
        (pull + 0.5 * loop_penalty(model, form)).backward()
        optimizer.step()
    with torch.no_grad():
        a = model.bank.coefficients
        return ((a[:-4] * a[4:]).sum(1) / (a[:-4].norm(dim=1) * a[4:].norm(dim=1))).abs().view(4, 4)


def test_abs_form_puts_the_whole_turn_in_one_break_and_ends_the_rest_parallel():
    """The reason for train.loop_form=abs: of the 4 pairs of each slot, the squared form bends
    all of them a little (none foldable), the abs form bends one and makes the others parallel."""
    squared, absolute = _turn("squared"), _turn("abs")
    assert (squared < 0.99).all()  # every pair bent: nothing would fold at the default threshold
    folded = (absolute > 0.9999).sum(dim=0)  # per slot: pairs parallel to a 1.4% weight error
    assert (folded == 3).all() and (absolute.min(dim=0).values < 0.5).all()
    with pytest.raises(ValueError, match="squared, abs"):
        loop_penalty(model=net(2, 2, 2), form="l1")


def test_training_regulariser_is_the_configured_weight_times_the_configured_form():
    model = net(2, 3, 2)
    assert training_regulariser(TrainConfig(loop_weight=0.0, loop_form="abs")) is None
    for form in ("squared", "abs"):
        term = training_regulariser(TrainConfig(loop_weight=0.3, loop_form=form))
        assert term(model).item() == pytest.approx(0.3 * loop_penalty(model, form).item())
    assert loop_penalty(model, "abs").item() != pytest.approx(loop_penalty(model, "squared").item())
