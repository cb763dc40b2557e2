"""Extrapolation: exact-match accuracy per test size and per test-time iteration count."""

from __future__ import annotations

import torch

from benchmark.models.contract import ResumableModel, ScoredModel
from benchmark.infra.results import ORACLE_LABEL, SELECTION_RULE, SELECTION_TOLERANCE, SETTLED_KINDS, EvalResult, SizeHalting
from benchmark.evaluation.settling import SettleDetector
from tasks.base import Task


class _Unroll:
    """The logits ``(n, classes, *S)`` of a batch after iterations 1, 2, ... (``next``), of which
    ``keep(index)`` keeps only the samples at ``index`` from the next iteration on.

    With ``shrink`` and a model that can resume from a state (``states(x, iters, state, start)``,
    ``logits`` and ``check_iters``: a ``benchmark.models.contract.ResumableModel``), dropped samples are no longer computed: the state
    ``(n, w, *S)`` and input are cut down and the unroll resumes from them at the same iteration
    (the same iterations, hence the same logits, for the samples kept). Otherwise the one
    ``iter_logits`` pass runs on and the logits are cut down.
    """

    def __init__(self, model: torch.nn.Module, x: torch.Tensor, iters: int, shrink: bool) -> None:
        self.model, self.x, self.iters, self.t = model, x, iters, 0
        self.resumable = shrink and isinstance(model, ResumableModel)
        if self.resumable:
            model.check_iters(iters)  # as iter_logits would: no more iterations than the model has weights for
        self.h: torch.Tensor | None = None  # (n, w, *S) the state after iteration t (resumable only)
        self.index: torch.Tensor | None = None  # (n,) the samples kept, into the batch (iter_logits only)
        self.steps = model.states(x, iters) if self.resumable else model.iter_logits(x, iters)

    def __next__(self) -> torch.Tensor:
        self.t += 1
        if not self.resumable:
            logits = next(self.steps)
            return logits if self.index is None else logits[self.index]
        self.h = next(self.steps)
        return self.model.logits(self.h)

    def keep(self, index: torch.Tensor) -> None:
        if not self.resumable:
            self.index = index if self.index is None else self.index[index]
            return
        # Advanced indexing keeps a channels-last state channels-last (index_select would not).
        self.x, self.h = self.x[index], self.h[index]
        self.steps = self.model.states(self.x, self.iters - self.t, self.h, self.t)


@torch.inference_mode()  # no autograd bookkeeping at all (cheaper than no_grad); nothing leaves but floats
def settle_and_score(
    model: torch.nn.Module,
    task: Task,
    data: torch.utils.data.TensorDataset,
    iters: int,
    batch_size: int,
    device: torch.device,
    halt_after: int = 0,
) -> tuple[list[float], SizeHalting | None]:
    """Accuracy after each of iterations 1..iters (task.score: every valid position must match)
    and, with halting (``halt_after`` = k > 0), where each sample settled.

    One unrolled pass per batch scores every iteration on the way (``model.iter_logits``), so the
    cost is that of the deepest run alone and memory does not grow with ``iters``. The counts
    stay on ``device``: one transfer at the end (and with halting one small sync per iteration,
    to learn whether any sample settled).

    Halting: a sample whose answer (its prediction on the positions ``task.valid`` scores) has
    been unchanged for k iterations (a fixed point) or has alternated between two answers for k
    iterations (a 2-cycle; ``benchmark.evaluation.settling``) is
    dropped from its batch, and the batch stops when none is left, so the cost follows where
    predictions settle, not ``iters``. At every later iteration u a dropped sample is scored by
    the state it would be in at u if it stayed settled: its fixed point, or for a 2-cycle the
    state of the two that u falls on (the last state when u - t is even, t being the iteration it
    stopped at, else the one before). Where predictions truly stay settled this is exact: the
    accuracy equals that without halting at every iteration. (On a device whose convolution
    algorithm depends on the batch size, a smaller batch may round differently.)
    """
    model.eval()
    inputs_all, targets_all = data.tensors
    n = len(inputs_all)
    correct = torch.zeros(iters, dtype=torch.long, device=device)  # (iters,) running samples solved at each iteration
    # Samples stopped at iteration t add their score to every u > t, a different one by the parity
    # of u for a 2-cycle: per parity of u, a difference array over 0-based u - 1, summed at the end.
    stopped = torch.zeros(2, iters, dtype=torch.long, device=device)  # (parity of u, u - 1)
    settled_at = torch.zeros(n, dtype=torch.long, device=device)  # (n,) 0: never settled
    period = torch.zeros(n, dtype=torch.long, device=device)  # (n,) 0: never settled, 1 fixed, 2 a 2-cycle
    right_at_end = torch.zeros(n, dtype=torch.bool, device=device)  # (n,) the answer at iteration iters is right
    for lo in range(0, n, batch_size):
        inputs = inputs_all[lo : lo + batch_size].to(device)
        targets = targets_all[lo : lo + batch_size].to(device)
        ids = torch.arange(lo, lo + len(inputs), device=device)  # (b,) the running samples' indices in data
        scored = task.valid(inputs) if halt_after > 0 else None  # (b, *S) the positions an answer is scored on
        unroll = _Unroll(model, inputs, iters, shrink=halt_after > 0)
        detector = SettleDetector(halt_after) if halt_after > 0 else None
        score = previous = None
        for t in range(1, iters + 1):
            prediction = next(unroll).argmax(1)  # (b, *S)
            previous, score = score, task.score(inputs, targets, prediction)  # (b,) bool
            correct[t - 1] += score.sum()
            if detector is None or t == iters:
                continue
            # The answer, not the whole prediction, settles: unscored positions (maze walls) may
            # flicker for ever after the scored ones have settled, and change no score.
            periods = detector.push(torch.where(scored, prediction, 0))  # (b,)
            done = periods > 0
            if not bool(done.any()):  # the one host sync per iteration
                continue
            # A fixed point's previous score is its score (the same prediction), so one rule serves both.
            stopped[t % 2, t] += (score & done).sum()
            stopped[(t + 1) % 2, t] += (previous & done).sum()
            halted = ids[done]
            period[halted] = periods[done]
            settled_at[halted] = t - halt_after - (periods[done] - 1)
            right_at_end[halted] = (score if (iters - t) % 2 == 0 else previous)[done]
            keep = (~done).nonzero().squeeze(1)  # (b',)
            if len(keep) == 0:
                break
            # The kept samples' scores at t become their previous ones at t + 1.
            ids, inputs, targets, scored, score = ids[keep], inputs[keep], targets[keep], scored[keep], score[keep]
            detector.keep(keep)
            unroll.keep(keep)
        else:
            right_at_end[ids] = score
            if detector is not None:  # settling confirmed at the very last iteration: nothing left to skip
                periods = detector.push(torch.where(scored, prediction, 0))
                done = periods > 0
                period[ids[done]] = periods[done]
                settled_at[ids[done]] = iters - halt_after - (periods[done] - 1)
    u = torch.arange(1, iters + 1, device=device)
    tail = stopped.cumsum(1).gather(0, (u % 2)[None])[0]  # (iters,) stopped samples right at each u
    curve = ((correct + tail).cpu().double() / max(1, n)).tolist()
    if halt_after == 0:
        return curve, None
    kinds = {0: "none", **SETTLED_KINDS}
    halting = SizeHalting(settled_at=tuple(int(a) if p else None for a, p in zip(settled_at.tolist(), period.tolist())),
                          kind=tuple(kinds[p] for p in period.tolist()), correct=tuple(right_at_end.tolist()))
    return curve, halting


def accuracy_per_iteration(
    model: torch.nn.Module,
    task: Task,
    data: torch.utils.data.TensorDataset,
    iters: int,
    batch_size: int,
    device: torch.device,
    halt_after: int = 0,
) -> list[float]:
    """Accuracy after each of iterations 1..iters: ``settle_and_score`` without where samples settled."""
    return settle_and_score(model, task, data, iters, batch_size, device, halt_after)[0]


def evaluate(
    model: torch.nn.Module,
    task: Task,
    test_sets: dict[int, torch.utils.data.TensorDataset],
    iters: int,
    train_iters: int,
    batch_size: int,
    device: torch.device,
    halt_after: int = 0,
    validation_sets: dict[int, torch.utils.data.TensorDataset] | None = None,
    tolerance: float = SELECTION_TOLERANCE,
) -> EvalResult:
    """Score ``model`` on every test set after each of iterations 1..``iters``; with
    ``halt_after`` = k > 0, stop each sample once settled for k iterations (``settle_and_score``)
    and record where each settled.

    With ``validation_sets`` (one per test size, other seeds: docs/protocol.md) each is scored by
    the same ``settle_and_score`` (halting included), and the result's summary reports the
    iteration chosen on validation (``choose_iteration`` with ``tolerance``) and the TEST
    accuracy there, beside the oracle (the best iteration on the test set).

    Models with a fixed depth (``iteration_limit``) are scored up to that depth only.
    """
    limit = model.iteration_limit if isinstance(model, ScoredModel) else None
    iters = iters if limit is None else min(iters, limit)
    if validation_sets is not None and set(validation_sets) != set(test_sets):
        raise ValueError(f"validation sizes {sorted(validation_sets)} differ from the test sizes {sorted(test_sets)}.")
    scored = {size: settle_and_score(model, task, data, iters, batch_size, device, halt_after) for size, data in test_sets.items()}
    accuracy = {size: tuple(curve) for size, (curve, _) in scored.items()}
    halting = {size: record for size, (_, record) in scored.items()} if halt_after > 0 else None
    validation = None
    if validation_sets is not None:
        validation = {size: tuple(settle_and_score(model, task, validation_sets[size], iters, batch_size, device, halt_after)[0])
                      for size in test_sets}
    return EvalResult(iterations=iters, train_iters=train_iters, accuracy=accuracy, halt_after=halt_after, halting=halting,
                      validation=validation, tolerance=tolerance)


def format_table(result: EvalResult, title: str = "") -> str:
    """A compact text table of a result's summary, one row per test size: with validation data the
    iteration chosen on it and the TEST accuracy there first; the best iteration on the test set
    is the oracle and labelled so (ORACLE_LABEL)."""
    validated = result.validation is not None
    chosen = f"{'val-chosen iter':>15} {'test acc':>9} " if validated else ""
    header = f"{'size':>6} {'@train depth':>14} {chosen}{'oracle iter':>11} {'oracle acc':>10} {'final acc':>10}"
    lines = [title] if title else []
    lines += [header, "-" * len(header)]
    for size, s in result.summary.items():
        pick = f"{s.chosen_iter:>15} {s.chosen:>9.2%} " if validated else ""
        lines.append(
            f"{size:>6} {s.at_train_depth:>8.2%} @{s.train_depth:<4} {pick}{s.best_iter:>11} {s.best:>10.2%} "
            f"{s.final:>7.2%} @{s.final_iter}"
        )
    oracle = f"oracle iter, oracle acc: the best iteration on the test set itself, {ORACLE_LABEL}"
    note = (f"{oracle}; val-chosen iter: {SELECTION_RULE} (tolerance {result.tolerance:.1%}); test acc: the TEST accuracy there"
            if validated else f"{oracle}; no validation data (the old protocol)")
    return "\n".join([*lines, note])


def format_halting(result: EvalResult) -> str:
    """Where samples settled, one row per test size: how many settled into a fixed point or a
    2-cycle or never did, the median first iteration of a settled state, and the mean iterations run."""
    header = f"{'size':>6} {'fixed':>6} {'2-cycle':>8} {'none':>6} {'median settled at':>18} {'mean iters run':>15}"
    lines = [f"halting after {result.halt_after} settled iterations (of {result.iterations})", header, "-" * len(header)]
    for size, record in (result.halting or {}).items():
        settled = sorted(at for at in record.settled_at if at is not None)
        median = f"{settled[len(settled) // 2]}" if settled else "-"
        run = record.iterations_run(result.halt_after, result.iterations)
        lines.append(f"{size:>6} {record.kind.count('fixed'):>6} {record.kind.count('2-cycle'):>8} {record.kind.count('none'):>6} "
                     f"{median:>18} {sum(run) / len(run):>15.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """``python -m benchmark.evaluate RUN_DIR (--sizes S ... | --data FILE.npz) [--iters T] [--n N] [--halt K]``:
    re-score a finished run's checkpoint (see ``benchmark.evaluation.rescore``)."""
    from benchmark.evaluation.rescore import main as cli_main  # imported late: the CLI imports this module

    cli_main(argv)


if __name__ == "__main__":
    main()
