"""Tests of benchmark.sharing: the LSM, the loop regulariser, folding into loops, a run's analysis."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from benchmark.bank import TemplateBank
from benchmark.config import TrainConfig
from benchmark.evaluate import evaluate
from benchmark.model import RecurrentConvNet
from benchmark.sharing import (
    FoldedNet,
    analyse_run,
    fold,
    layer_similarity,
    loop_pairs,
    loop_penalty,
    loop_similarity,
    model_lsm,
)
from benchmark.train import fit
from tasks.base import TaskSpec

SPECS = {1: TaskSpec(dims=1, in_channels=1, num_classes=2), 2: TaskSpec(dims=2, in_channels=3, num_classes=2)}
WIDTH = 8



@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and on 2 busy cores a second thread costs 10x."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def lsm_oracle(a: np.ndarray) -> np.ndarray:
    """The paper's formula, one pair at a time (zero rows: similar to nothing but themselves)."""
    n = len(a)
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            ni, nj = np.sqrt(sum(x * x for x in a[i])), np.sqrt(sum(x * x for x in a[j]))
            dot = sum(x * y for x, y in zip(a[i], a[j]))
            out[i, j] = 1.0 if i == j else (abs(dot) / (ni * nj) if ni > 0 and nj > 0 else 0.0)
    return out


def inputs(dims: int, n: int = 3, side: int = 7, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    spec = SPECS[dims]
    return torch.randn(n, spec.in_channels, *(side,) * dims, generator=g)


def net(dims: int, depth: int, templates: int | None, seed: int = 0, recall: bool = True) -> RecurrentConvNet:
    torch.manual_seed(seed)
    return RecurrentConvNet(SPECS[dims], width=WIDTH, depth=depth, templates=templates, recall=recall).eval()


def set_rows(model: RecurrentConvNet, rows: torch.Tensor) -> None:
    with torch.no_grad():
        model.bank.coefficients.copy_(rows)


def parallel_rows(depth: int, directions: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Row 4p + c = s * directions[c], a random scale of either sign: one loop of all positions."""
    g = torch.Generator().manual_seed(seed)
    scales = torch.rand(depth, 4, generator=g) * 1.5 + 0.25
    signs = torch.where(torch.rand(depth, 4, generator=g) < 0.5, -1.0, 1.0)
    return ((scales * signs)[..., None] * directions[None]).reshape(4 * depth, -1)


def assert_same_outputs(model: nn.Module, folded: FoldedNet, dims: int, iters: list[int]) -> None:
    x = inputs(dims)
    with torch.no_grad():
        for t in iters:
            torch.testing.assert_close(folded(x, t), model(x, t), atol=1e-5, rtol=1e-5)
        last = max(iters)
        for got, want in zip(folded.iter_logits(x, last), model.iter_logits(x, last), strict=True):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------- LSM
def test_layer_similarity_matches_the_formula_and_is_sign_blind():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(7, 3))
    a[3] = -2.5 * a[1]  # anti-parallel: |cos| = 1
    a[5] = 0.0  # a zero row
    lsm = layer_similarity(torch.tensor(a)).numpy()
    np.testing.assert_allclose(lsm, lsm_oracle(a), atol=1e-12)
    np.testing.assert_allclose(lsm, lsm.T)
    np.testing.assert_allclose(np.diag(lsm), 1.0)
    assert lsm[1, 3] == pytest.approx(1.0) and lsm[5, 0] == 0.0
    assert ((lsm >= 0) & (lsm <= 1)).all()
    flipped = a * rng.choice([-1.0, 1.0], size=(7, 1)) * rng.uniform(0.1, 5, size=(7, 1))  # rows' sign and size
    np.testing.assert_allclose(layer_similarity(torch.tensor(flipped)).numpy(), lsm, atol=1e-12)


def test_model_lsm_finds_every_bank_including_fixed_identity():
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.stage = nn.ModuleDict(dict(a=TemplateBank(5, 2, (3, 3)), b=TemplateBank(3, 3, (2, 2), learn_coefficients=False)))

    lsm = model_lsm(Two())
    assert set(lsm) == {"stage.a", "stage.b"}
    assert lsm["stage.a"].shape == (5, 5)
    np.testing.assert_array_equal(lsm["stage.b"], np.eye(3))
    np.testing.assert_array_equal(model_lsm(net(2, 3, None))["bank"], np.eye(12))  # the unshared baseline
    assert set(model_lsm(TemplateBank(4, 2, (3, 3)))) == {"bank"}


# ---------------------------------------------------------------------------- regulariser
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


# ---------------------------------------------------------------------------- folding
@pytest.mark.parametrize("dims", [1, 2])
def test_one_template_folds_into_one_loop_of_one_weight(dims):
    model = net(dims, 4, 1)
    folded, report = fold(model)
    assert report.num_loops == 1 and report.loops[0]["positions"] == [0, 1, 2, 3]
    assert report.block_weights_before == 16 and report.block_weights_after == 1 == len(folded.block_weights)
    assert report.extendable and folded.iteration_limit is None
    assert report.max_relative_error < 1e-5
    assert_same_outputs(model, folded, dims, [1, 2, 3, 4, 7])  # 7: past the trained depth


@pytest.mark.parametrize("dims", [1, 2])
def test_parallel_rows_fold_exactly_with_fewer_parameters(dims):
    model = net(dims, 4, 4)
    set_rows(model, parallel_rows(4, torch.randn(4, 4)))  # slot c: s * v_c, signs mixed
    folded, report = fold(model)
    assert report.num_loops == 1 and report.loops[0]["block_weights"] == [0, 1, 2, 3]
    assert report.block_weights_after == 4 < report.block_weights_before == 16
    assert report.parameters_after == sum(p.numel() for p in folded.parameters())
    assert report.parameters_after < report.parameters_before == sum(p.numel() for p in model.parameters())
    assert_same_outputs(model, folded, dims, [1, 3, 4, 9])
    json.dumps(report.to_dict())


@pytest.mark.parametrize("dims", [1, 2])
def test_orthogonal_rows_fold_nothing_and_stay_exact(dims):
    model = net(dims, 3, 12)  # k = L: orthogonal initialisation gives orthonormal rows
    folded, report = fold(model)
    assert [loop["positions"] for loop in report.loops] == [[0], [1], [2]]
    assert report.block_weights_after == report.block_weights_before == 12
    assert folded.iteration_limit is None  # the original reuses its last position, and so does the fold
    assert_same_outputs(model, folded, dims, [1, 2, 3, 5])


def test_unshared_feedforward_keeps_its_depth_limit():
    model = net(2, 3, None)  # the feed-forward baseline: fixed identity rows, no extra iterations
    folded, report = fold(model)
    assert report.num_loops == 3 and not report.extendable and folded.iteration_limit == 3
    assert_same_outputs(model, folded, 2, [1, 2, 3])
    with pytest.raises(ValueError, match="cannot run 4 iterations"):
        folded(inputs(2), 4)


def test_depth_one_block_folds_parallel_slots():
    model = net(2, 1, 2)
    set_rows(model, torch.tensor([[1.0, 0.0], [0.3, 1.0], [-2.0, 0.0], [0.5, 0.0]]))  # slots 0, 2, 3 parallel
    folded, report = fold(model)
    assert report.loops[0]["block_weights"] == [0, 1, 0, 0]
    assert report.loops[0]["block_scales"] == [pytest.approx([1.0, 1.0, -2.0, 0.5])]
    assert report.block_weights_after == 2 and folded.iteration_limit is None
    assert_same_outputs(model, folded, 2, [1, 2, 6])


def test_loops_split_where_rows_turn_and_threshold_decides():
    model = net(1, 5, 8)
    eye = torch.eye(8)
    rows = torch.cat([parallel_rows(2, eye[:4], seed=1), parallel_rows(3, eye[4:], seed=2)])
    set_rows(model, rows)
    folded, report = fold(model)
    assert [loop["positions"] for loop in report.loops] == [[0, 1], [2, 3, 4]]
    assert [loop["block_weights"] for loop in report.loops] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert_same_outputs(model, folded, 1, [1, 2, 4, 5, 8])

    rows[4 * 4 + 1] += 0.08 * rows[4 * 4 + 1].norm() * eye[0]  # position 4, slot 1 turns by ~4.6 deg: cos ~0.997
    set_rows(model, rows)
    assert fold(model, 0.999)[1].num_loops == 3
    _, loose = fold(model, 0.99)
    assert loose.num_loops == 2 and 1e-3 < loose.max_relative_error < 0.2


def test_parallel_recall_convs_are_shared():
    model = net(2, 3, 1)
    with torch.no_grad():
        for p, scale in enumerate([1.0, -0.5, 2.0]):
            model.recall_convs[p].weight.copy_(scale * model.recall_convs[0].weight)
    folded, report = fold(model)
    assert report.recall_weights_before == 3 and report.recall_weights_after == 1
    assert report.loops[0]["recall_scales"] == pytest.approx([1.0, -0.5, 2.0])
    assert_same_outputs(model, folded, 2, [1, 3, 6])


def test_folded_net_serves_the_trainer_and_has_no_recall_when_the_model_has_none():
    model = net(1, 2, 1, recall=False)
    folded, _ = fold(model)
    assert folded.recall_weights is None
    x = inputs(1)
    with torch.no_grad():
        whole = folded.run(x, 5)
        resumed = folded.run(x, 3, state=folded.run(x, 2), start=2)  # the progressive loss's split
        torch.testing.assert_close(resumed, whole)
        torch.testing.assert_close(folded.head(whole), model(x, 5), atol=1e-5, rtol=1e-5)
    folded.train()
    loss = folded(x, 3).square().mean()
    loss.backward()
    assert folded.block_scales.grad is not None and folded.block_weights.grad is not None


def test_fold_rejects_bad_input():
    with pytest.raises(TypeError, match="RecurrentConvNet"):
        fold(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="threshold"):
        fold(net(2, 1, 2), 0.0)


# ---------------------------------------------------------------------------- a run's analysis and plots
def test_analyse_run_writes_lsm_and_fold_then_plots(tmp_path):
    from benchmark import plot
    from tasks.maze import MazeTask

    task = MazeTask()
    test_sets = {9: task.dataset(9, 6, seed=1), 11: task.dataset(11, 6, seed=1)}
    model = net(2, 2, 2)
    device = torch.device("cpu")
    before = evaluate(model, task, test_sets, 5, 3, 4, device)
    result = analyse_run(model, task, test_sets, eval_iters=5, train_iters=3, batch_size=4, device=device,
                         threshold=0.99, run_dir=tmp_path, before=before)

    lsm = json.loads((tmp_path / "lsm.json").read_text())
    assert set(lsm) == {"bank"} and set(lsm["bank"]) >= {"lsm", "coefficients", "learned"}
    assert np.array(lsm["bank"]["lsm"]).shape == (8, 8) and np.array(lsm["bank"]["coefficients"]).shape == (8, 2)
    saved = json.loads((tmp_path / "fold.json").read_text())
    assert saved == json.loads(json.dumps(result["fold"]))
    assert set(saved) >= {"iterations", "train_iters", "accuracy", "summary", "report", "comparison"}
    assert saved["iterations"] == 5 and set(saved["accuracy"]) == {"9", "11"}
    assert all(len(acc) == 5 for acc in saved["accuracy"].values())
    assert saved["report"]["positions"] == 2 and saved["report"]["num_loops"] >= 1
    assert set(saved["comparison"]["9"]) == {"before", "after", "delta_at_train_depth", "delta_best"}
    assert saved["comparison"]["9"]["before"]["at_train_depth"] == before["summary"]["9"]["at_train_depth"]

    (tmp_path / "eval.json").write_text(json.dumps(dict(before, task="maze", model="shared_depth")))
    written = {p.name for p in plot.plot_run(tmp_path)}
    assert {"extrapolation.png", "lsm.png", "extrapolation_folded.png"} <= written
    assert (tmp_path / "lsm.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    unshared_dir = tmp_path / "unshared"
    unshared_dir.mkdir()
    result = analyse_run(net(2, 1, None), task, test_sets, 3, 2, 4, device, 0.99, unshared_dir)
    assert result["fold"] is None and (unshared_dir / "lsm.json").exists() and not (unshared_dir / "fold.json").exists()


def test_plot_lsm_writes_one_panel_per_bank(tmp_path):
    from benchmark import plot

    rng = np.random.default_rng(0)
    lsm = {"bank": layer_similarity(torch.tensor(rng.normal(size=(4, 2)))).numpy(),
           "deep.bank": layer_similarity(torch.tensor(rng.normal(size=(40, 2)))).numpy()}
    path = plot.plot_lsm(lsm, tmp_path / "lsm.png", group_size={"bank": 4, "deep.bank": 4})
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="at least one"):
        plot.plot_lsm({}, tmp_path / "none.png")
