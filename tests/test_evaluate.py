"""Tests of benchmark.evaluate against a model with known answers (tests/known_answer.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmark.evaluation.extrapolation import accuracy_per_iteration, evaluate, format_table, settle_and_score
from benchmark.infra.results import EvalResult, ResultFormatError, SizeHalting, SizeSummary
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


# ---------------------------------------------------------------------------- halting
# A stub whose every sample follows a known schedule: wrong and different at every iteration
# before ``start``, then a fixed point (right or wrong), or a 2-cycle of two states (either, or
# neither, right), or never settling (a 3-cycle). Inputs are 24-bit prefix-sums strings whose
# first 8 bits name the sample; the prediction is the answer with a code XORed onto bits 8..23.
# Bits 24..26 change at every iteration but are not scored (``SCORED``), as maze walls are not.
NEVER, FIXED, CYCLE = 0, 1, 2
ID_BITS, CODE_BITS, NOISE_BITS = 8, 16, 3
C_FIXED, C_A, C_B = 1 << 12, 1 << 13, 1 << 14  # wrong settled states; pre-settling codes are t < 2^12


def _code_bits(codes: torch.Tensor) -> torch.Tensor:
    """Codes ``(N,)`` as bits ``(N, CODE_BITS)``."""
    return (codes[:, None] >> torch.arange(CODE_BITS)) & 1


class ScheduleNet(torch.nn.Module):
    """Samples following ``schedule`` (per sample ``(kind, start, a_right, b_right)``). The state
    ``(N, 2, L)`` is the input and the iteration count, so the evaluator can resume it after
    dropping samples (``states``, ``logits``); ``computed`` counts the sample-iterations run."""

    iteration_limit = None

    def __init__(self, schedule: list[tuple[int, int, bool, bool]]):
        super().__init__()
        self.kind, self.start, self.a_right, self.b_right = (torch.tensor(column) for column in zip(*schedule))
        self.computed = 0

    def check_iters(self, iters: int) -> None:
        pass  # any number

    def states(self, x: torch.Tensor, iters: int, state: torch.Tensor | None = None, start: int = 0):
        h = torch.cat([x, torch.zeros_like(x)], 1) if state is None else state
        for t in range(start + 1, start + iters + 1):
            self.computed += len(h)
            h = torch.cat([h[:, :1], torch.full_like(h[:, :1], t)], 1)
            yield h

    def iter_logits(self, x: torch.Tensor, iters: int):
        for h in self.states(x, iters):
            yield self.logits(h)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        bits = (h[:, 0] > 0).long()  # (N, L)
        t = int(h[0, 1, 0])
        i = (bits[:, :ID_BITS] << torch.arange(ID_BITS)).sum(1)  # (N,) sample ids
        kind, start, a_right, b_right = self.kind[i], self.start[i], self.a_right[i], self.b_right[i]
        a = torch.where(a_right, 0, torch.where(kind == FIXED, C_FIXED, C_A))
        b = torch.where(b_right, 0, C_B)
        in_a = (kind == FIXED) | ((t - start) % 2 == 0)
        settled = torch.where(in_a, a, b)
        code = torch.where(kind == NEVER, t % 3 + 1, torch.where(t < start, t, settled))  # (N,)
        prediction = bits.cumsum(1) % 2
        prediction[:, ID_BITS:ID_BITS + CODE_BITS] ^= _code_bits(code)
        prediction[:, ID_BITS + CODE_BITS:] ^= _code_bits(torch.full_like(code, t % 5 + 1))[:, :NOISE_BITS]
        return F.one_hot(prediction, 2).permute(0, 2, 1).float()  # logits (N, 2, L)


class LogitsOnly(torch.nn.Module):
    """The same schedule through ``iter_logits`` alone: halting cannot drop samples from the pass."""

    iteration_limit = None

    def __init__(self, net: ScheduleNet):
        super().__init__()
        self.net = net

    def iter_logits(self, x, iters):
        return self.net.iter_logits(x, iters)


class FirstBitsScored(type(TASK)):
    """Prefix sums scored on the sample's id and code bits only (the noise bits are not)."""

    def valid(self, inputs: torch.Tensor) -> torch.Tensor:
        valid = super().valid(inputs).clone()
        valid[:, ID_BITS + CODE_BITS:] = False
        return valid


SCORED = FirstBitsScored()


def schedule_data(n: int) -> torch.utils.data.TensorDataset:
    ids = torch.arange(n)
    bits = torch.cat([(ids[:, None] >> torch.arange(ID_BITS)) & 1, torch.zeros(n, CODE_BITS + NOISE_BITS, dtype=torch.long)], 1)
    return torch.utils.data.TensorDataset(bits[:, None].float() - 0.5, bits.cumsum(1) % 2)


def expected(schedule, k: int, iters: int):
    """Written from the schedule alone: the accuracy per iteration, and per sample where it
    settles (the evaluator's rule: confirmed within ``iters``), its kind and its last answer."""
    def right(kind, start, a_right, b_right, t):
        if kind == NEVER or t < start:
            return False
        return a_right if kind == FIXED or (t - start) % 2 == 0 else b_right
    curve = [sum(right(*s, t) for s in schedule) / len(schedule) for t in range(1, iters + 1)]
    settled = [start if kind != NEVER and start + k + (kind - 1) <= iters else None for kind, start, *_ in schedule]
    kinds = tuple("none" if at is None else ("fixed", "2-cycle")[kind - 1] for at, (kind, *_) in zip(settled, schedule))
    return curve, SizeHalting(tuple(settled), kinds, tuple(right(*s, iters) for s in schedule))


SCHEDULE = [  # (kind, start, a_right, b_right)
    (FIXED, 1, True, False), (FIXED, 4, True, False), (FIXED, 6, False, False), (CYCLE, 2, True, False),
    (CYCLE, 3, False, True), (CYCLE, 5, False, False), (NEVER, 1, False, False), (FIXED, 9, True, False),
    (CYCLE, 8, True, False),  # confirmed after the last iteration (8 + 3 + 1 > 11): not settled
]


@pytest.mark.parametrize("batch_size", [1, 2, 4, 100])
def test_halting_reproduces_every_iteration_and_says_where_each_sample_settled(batch_size):
    k, iters = 3, 11
    curve, halting = expected(SCHEDULE, k, iters)
    assert halting.settled_at == (1, 4, 6, 2, 3, 5, None, None, None)  # the hand-made schedule as intended
    assert halting.kind == ("fixed", "fixed", "fixed", "2-cycle", "2-cycle", "2-cycle", "none", "none", "none")
    data = schedule_data(len(SCHEDULE))

    plain = ScheduleNet(SCHEDULE)
    assert accuracy_per_iteration(plain, SCORED, data, iters, batch_size, CPU) == curve
    assert plain.computed == len(SCHEDULE) * iters

    for model in (ScheduleNet(SCHEDULE), LogitsOnly(ScheduleNet(SCHEDULE))):
        got, record = settle_and_score(model, SCORED, data, iters, batch_size, CPU, halt_after=k)
        assert got == curve and record == halting
    # Through iter_logits alone a batch runs on until its last sample has settled.
    run = halting.iterations_run(k, iters)
    batches = [run[lo:lo + batch_size] for lo in range(0, len(run), batch_size)]
    assert model.net.computed == sum(len(b) * max(b) for b in batches)
    # A model that resumes from a state drops settled samples: each ran only to where its settling was confirmed.
    halted = ScheduleNet(SCHEDULE)
    settle_and_score(halted, SCORED, data, iters, batch_size, CPU, halt_after=k)
    assert halted.computed == sum(run) == (1 + 3) + (4 + 3) + (6 + 3) + (2 + 4) + (3 + 4) + (5 + 4) + 3 * 11

    # Only the scored answer settles: were the flickering noise bits scored, nothing would.
    _, everything = settle_and_score(ScheduleNet(SCHEDULE), TASK, data, iters, batch_size, CPU, halt_after=k)
    assert everything.kind == ("none",) * len(SCHEDULE)


def test_evaluate_with_halting_writes_and_reads_where_samples_settled(tmp_path):
    k, iters = 2, 9
    test_sets = {24: schedule_data(len(SCHEDULE))}
    result = evaluate(ScheduleNet(SCHEDULE), SCORED, test_sets, iters, 3, 4, CPU, halt_after=k)
    assert result.accuracy == evaluate(ScheduleNet(SCHEDULE), SCORED, test_sets, iters, 3, 4, CPU).accuracy
    assert result.halt_after == k and result.halting == {24: expected(SCHEDULE, k, iters)[1]}
    result.write(tmp_path / "e.json")
    assert EvalResult.read(tmp_path / "e.json") == result
    data = json.loads((tmp_path / "e.json").read_text())
    assert data["halting"]["24"]["mean_iterations_run"] == sum(result.halting[24].iterations_run(k, iters)) / len(SCHEDULE)
    data["halting"]["24"]["correct"][0] = not data["halting"]["24"]["correct"][0]  # now disagrees with the accuracy
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(ResultFormatError, match="halting record"):
        EvalResult.read(tmp_path / "bad.json")
    assert "halting" not in evaluate(ScheduleNet(SCHEDULE), SCORED, test_sets, iters, 3, 4, CPU).to_json()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([NEVER, FIXED, CYCLE]), st.integers(1, 12), st.booleans(), st.booleans())
                .filter(lambda s: not (s[0] == CYCLE and s[2] and s[3])),  # two right states are one fixed point
                min_size=1, max_size=12),
       st.integers(1, 4), st.integers(1, 20), st.integers(1, 5))
def test_halting_is_exact_on_random_schedules(schedule, k, iters, batch_size):
    curve, halting = expected(schedule, k, iters)
    model = ScheduleNet(schedule)
    assert settle_and_score(model, SCORED, schedule_data(len(schedule)), iters, batch_size, CPU, halt_after=k) == (curve, halting)
    assert model.computed == sum(halting.iterations_run(k, iters))
    assert accuracy_per_iteration(ScheduleNet(schedule), SCORED, schedule_data(len(schedule)), iters, batch_size, CPU) == curve


@pytest.mark.parametrize("channels_last", [True, False])
def test_a_real_model_resumed_after_dropping_samples_gives_the_same_logits(channels_last):
    """The evaluator drops settled samples by cutting the state down and resuming the unroll at
    the same iteration: the samples kept see the logits of the uncut pass."""
    from benchmark.evaluation.extrapolation import _Unroll
    from benchmark.models.recurrent import RecurrentConvNet
    from tasks.maze import MazeTask

    torch.manual_seed(0)
    model = RecurrentConvNet(MazeTask().spec, width=8, depth=2).eval()
    model.channels_last = channels_last
    x = MazeTask().dataset(9, 5, seed=1).tensors[0]
    with torch.inference_mode():
        full = list(model.iter_logits(x, 6))
        unroll, kept = _Unroll(model, x, 6, shrink=True), torch.arange(5)
        for t in range(6):
            logits = next(unroll)
            torch.testing.assert_close(logits, full[t][kept], rtol=1e-5, atol=1e-6)
            if t in (1, 3):  # drop samples after iterations 2 (positions change there: depth 2) and 4
                keep = torch.tensor([0, 2]) if t == 1 else torch.tensor([1])
                unroll.keep(keep)
                kept = kept[keep]
    assert kept.tolist() == [2]


def test_a_run_with_eval_halt_after_records_where_its_test_samples_settled(make_cfg):
    from benchmark.infra.results import read_fold
    from benchmark.pipelines.algorithmic import run

    results = run(make_cfg("task=prefix_sums", "size=train16_test64", "eval.halt_after=2", "eval.iters=8"))
    evaluation = EvalResult.read(Path(results.run_dir) / "eval.json")
    assert evaluation.halt_after == 2 and set(evaluation.halting) == set(evaluation.accuracy)
    assert all(len(record.kind) == 16 for record in evaluation.halting.values())  # size.n_test samples each
    assert read_fold(Path(results.run_dir) / "fold.json").evaluation.halt_after == 2  # the folded model halts too
