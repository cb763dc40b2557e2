"""Tests of benchmark.analysis.folding, and of a run's sharing analysis (lsm.json, fold.json) and its plots."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from benchmark.evaluation.extrapolation import evaluate
from benchmark.analysis.folding import FoldedNet, fold
from benchmark.infra.results import EvalResult, FoldResult, Headline, RunInfo, SimilarityRecord, Timing
from benchmark.pipelines.algorithmic import analyse_sharing
from benchmark.analysis.similarity import layer_similarity, similarity_record
from benchmark.models.recurrent import RecurrentConvNet
from nets import SPECS, WIDTH, inputs, net, one_thread, parallel_rows, set_rows  # noqa: F401  (one_thread: autouse fixture)

RUN_INFO = RunInfo(task="maze", model="shared", parameters=1, seed=0, train_size=9, device="cpu", final_train_acc=None,
                   seconds=Timing(generation=0.0, train=0.0, eval=0.0))


def assert_same_outputs(model: nn.Module, folded: FoldedNet, dims: int, iters: list[int]) -> None:
    x = inputs(dims)
    with torch.no_grad():
        for t in iters:
            torch.testing.assert_close(folded(x, t), model(x, t), atol=1e-5, rtol=1e-5)
        last = max(iters)
        for got, want in zip(folded.iter_logits(x, last), model.iter_logits(x, last), strict=True):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------- folding
@pytest.mark.parametrize("dims", [1, 2])
def test_one_template_folds_into_one_loop_of_one_weight(dims):
    model = net(dims, 4, 1)
    folded, report = fold(model)
    assert report.num_loops == 1 and report.loops[0].positions == [0, 1, 2, 3]
    assert report.block_weights_before == 16 and report.block_weights_after == 1 == len(folded.block_weights)
    assert report.extendable and folded.iteration_limit is None
    assert report.max_relative_error < 1e-5
    assert_same_outputs(model, folded, dims, [1, 2, 3, 4, 7])  # 7: past the trained depth


@pytest.mark.parametrize("dims", [1, 2])
def test_parallel_rows_fold_exactly_with_fewer_parameters(dims):
    model = net(dims, 4, 4)
    set_rows(model, parallel_rows(4, torch.randn(4, 4)))  # slot c: s * v_c, signs mixed
    folded, report = fold(model)
    assert report.num_loops == 1 and report.loops[0].block_weights == [0, 1, 2, 3]
    assert report.block_weights_after == 4 < report.block_weights_before == 16
    assert report.parameters_after == sum(p.numel() for p in folded.parameters())
    assert report.parameters_after < report.parameters_before == sum(p.numel() for p in model.parameters())
    assert_same_outputs(model, folded, dims, [1, 3, 4, 9])
    json.dumps(report.to_json(), allow_nan=False)


@pytest.mark.parametrize("dims", [1, 2])
def test_orthogonal_rows_fold_nothing_and_stay_exact(dims):
    model = net(dims, 3, 12)  # k = L: orthogonal initialisation gives orthonormal rows
    folded, report = fold(model)
    assert [loop.positions for loop in report.loops] == [[0], [1], [2]]
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
    assert report.loops[0].block_weights == [0, 1, 0, 0]
    assert report.loops[0].block_scales == [pytest.approx([1.0, 1.0, -2.0, 0.5])]
    assert report.block_weights_after == 2 and folded.iteration_limit is None
    assert_same_outputs(model, folded, 2, [1, 2, 6])


def test_loops_split_where_rows_turn_and_threshold_decides():
    model = net(1, 5, 8)
    eye = torch.eye(8)
    rows = torch.cat([parallel_rows(2, eye[:4], seed=1), parallel_rows(3, eye[4:], seed=2)])
    set_rows(model, rows)
    folded, report = fold(model)
    assert [loop.positions for loop in report.loops] == [[0, 1], [2, 3, 4]]
    assert [loop.block_weights for loop in report.loops] == [[0, 1, 2, 3], [4, 5, 6, 7]]
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
    assert report.loops[0].recall_scales == pytest.approx([1.0, -0.5, 2.0])
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
def test_analyse_sharing_writes_lsm_and_fold_then_plots(tmp_path):
    from benchmark.analysis import plots as plot
    from tasks.maze import MazeTask

    task = MazeTask()
    test_sets = {9: task.dataset(9, 6, seed=1), 11: task.dataset(11, 6, seed=1)}
    device = torch.device("cpu")

    def score(m: nn.Module) -> EvalResult:
        return evaluate(m, task, test_sets, 5, 3, 4, device)

    model = net(2, 2, 1)  # one template: every row parallel, one loop of one weight
    before = replace(score(model), run=RUN_INFO)
    result = analyse_sharing(model, before, score, 0.99, tmp_path)

    assert SimilarityRecord.read(tmp_path / "lsm.json") == similarity_record(model)
    assert FoldResult.read(tmp_path / "fold.json") == result
    assert result.model == "shared-folded" and result.evaluation.run is None
    assert result.report.positions == 2 and result.report.num_loops == 1 and result.report.block_weights_after == 1
    # An exact fold predicts what the original does, at every iteration, past the training depth too.
    assert result.evaluation.accuracy == before.accuracy and result.evaluation.iterations == 5
    assert set(result.comparison) == {9, 11}
    assert result.comparison[9].before == Headline.of(before.summary[9]) and result.comparison[9].delta_best == 0.0

    before.write(tmp_path / "eval.json")
    written = {p.name for p in plot.plot_run(tmp_path)}
    assert {"extrapolation.png", "lsm.png", "extrapolation_folded.png"} <= written
    assert (tmp_path / "lsm.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_fold_that_merges_nothing_reuses_the_original_scores(tmp_path):
    def never(m: nn.Module) -> EvalResult:
        raise AssertionError("a fold that merged nothing computes the original: no need to score it")

    before = EvalResult(iterations=2, train_iters=1, accuracy={7: (0.25, 0.5)}, run=RUN_INFO)
    result = analyse_sharing(net(2, 3, 12), before, never, 0.99, tmp_path)  # k = L: orthonormal rows
    assert not result.report.merged
    assert result.evaluation == replace(before, run=None)
    assert result.comparison[7].delta_at_train_depth == 0.0 and (tmp_path / "fold.json").exists()

    unshared_dir = tmp_path / "unshared"
    unshared_dir.mkdir()
    assert analyse_sharing(net(2, 1, None), before, never, 0.99, unshared_dir) is None
    assert SimilarityRecord.read(unshared_dir / "lsm.json").banks["bank"].learned is False
    assert not (unshared_dir / "fold.json").exists()


def test_plot_lsm_writes_one_panel_per_bank(tmp_path):
    from benchmark.analysis import plots as plot

    rng = np.random.default_rng(0)
    lsm = {"bank": layer_similarity(torch.tensor(rng.normal(size=(4, 2)))).numpy(),
           "deep.bank": layer_similarity(torch.tensor(rng.normal(size=(40, 2)))).numpy()}
    path = plot.plot_lsm(lsm, tmp_path / "lsm.png", group_size={"bank": 4, "deep.bank": 4})
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="at least one"):
        plot.plot_lsm({}, tmp_path / "none.png")


@pytest.mark.parametrize("dims", [1, 2])
def test_a_run_of_parallel_positions_in_a_k2_depthwise_model_folds_into_one_loop_that_unrolls(dims):
    # The depth-wise recipe's model (k = 2, the depth configs' init options), 6 positions: rows of
    # positions 2..5 set parallel slot by slot by hand (any scale and sign), positions 0 and 1
    # turned away from them (and from each other), so the fold is [0], [1], [2..5]. All 12 slot
    # directions are distinct multiples of pi/12 (mod pi): no two distinct weights are parallel.
    torch.manual_seed(0)
    model = RecurrentConvNet(SPECS[dims], width=WIDTH, depth=6, templates=2, recall_init="kaiming", block_scale=0.2).eval()
    angles = torch.arange(4) * torch.pi / 4  # one direction per conv slot
    directions = torch.stack([angles.cos(), angles.sin()], dim=1)  # (4, 2)
    turned = lambda by: torch.stack([(angles + by).cos(), (angles + by).sin()], dim=1)  # noqa: E731
    rows = torch.cat([turned(torch.pi / 12), turned(torch.pi / 6), parallel_rows(4, directions, seed=3)])  # (24, 2)
    set_rows(model, rows)
    folded, report = fold(model)
    assert [loop.positions for loop in report.loops] == [[0], [1], [2, 3, 4, 5]]
    assert report.max_relative_error < 1e-5 and folded.iteration_limit is None
    # Every iteration of the unrolled pass, within the training depth and past it (the loop of
    # positions 2..5 continues with its last scale, as the original reuses position 5).
    assert_same_outputs(model, folded, dims, [1, 2, 3, 6, 9, 14])
