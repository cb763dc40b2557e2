"""Tests of benchmark.evaluate against a model with known answers (tests/known_answer.py)."""

from __future__ import annotations

import pytest
import torch

from benchmark.evaluate import accuracy_per_iteration, evaluate, format_table
from benchmark.results import SizeSummary
from known_answer import CURVE_HOLD_3, CURVE_HOLD_5, EIGHT_BITS, TASK, KnownAnswerNet, bit_strings

CPU = torch.device("cpu")


@pytest.mark.parametrize("batch_size", [1, 3, 100])  # batches that split the set unevenly too
def test_accuracy_per_iteration_is_exact(batch_size):
    data = bit_strings(*EIGHT_BITS)
    assert accuracy_per_iteration(KnownAnswerNet(hold=5), TASK, data, 7, batch_size, CPU) == list(CURVE_HOLD_5)
    assert accuracy_per_iteration(KnownAnswerNet(hold=3), TASK, data, 7, batch_size, CPU) == list(CURVE_HOLD_3)


def test_evaluate_reports_the_curve_best_iteration_and_training_depth_accuracy():
    test_sets = {8: bit_strings(*EIGHT_BITS), 6: bit_strings("000000", "000000")}
    result = evaluate(KnownAnswerNet(hold=5), TASK, test_sets, 7, 3, 3, CPU)
    assert result.iterations == 7 and result.train_iters == 3 and result.run is None
    assert result.accuracy == {8: CURVE_HOLD_5, 6: (1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0)}
    assert result.summary[8] == SizeSummary(train_depth=3, at_train_depth=0.75, best_iter=5, best=1.0, final_iter=7, final=0.5)
    # The best is the first iteration reaching it.
    assert result.summary[6] == SizeSummary(train_depth=3, at_train_depth=1.0, best_iter=1, best=1.0, final_iter=7, final=0.0)
    table = format_table(result, title="known answers").splitlines()
    assert table[0] == "known answers"
    assert table[3].split() == ["8", "75.00%", "@3", "5", "100.00%", "50.00%", "@7"]
    assert table[4].split() == ["6", "100.00%", "@3", "1", "100.00%", "0.00%", "@7"]


def test_a_fixed_depth_model_is_scored_up_to_its_depth_only():
    result = evaluate(KnownAnswerNet(hold=5, iteration_limit=4), TASK, {8: bit_strings(*EIGHT_BITS)}, 7, 6, 4, CPU)
    assert result.iterations == 4 and result.accuracy[8] == CURVE_HOLD_5[:4]
    assert result.summary[8] == SizeSummary(train_depth=4, at_train_depth=0.75, best_iter=3, best=0.75, final_iter=4, final=0.75)
