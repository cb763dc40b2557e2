"""Extrapolation: exact-match accuracy per test size and per test-time iteration count."""

from __future__ import annotations

import torch

from benchmark.results import EvalResult
from tasks.base import Task


@torch.inference_mode()  # no autograd bookkeeping at all (cheaper than no_grad); nothing leaves but floats
def accuracy_per_iteration(
    model: torch.nn.Module,
    task: Task,
    data: torch.utils.data.TensorDataset,
    iters: int,
    batch_size: int,
    device: torch.device,
) -> list[float]:
    """Accuracy after each of iterations 1..iters (task.score: every valid position must match).

    One unrolled pass per batch scores every iteration on the way (``model.iter_logits``), so the
    cost is that of the deepest run alone and memory does not grow with ``iters``. The counts
    stay on ``device`` (no host sync per iteration): one transfer at the end.
    """
    model.eval()
    inputs_all, targets_all = data.tensors
    correct = torch.zeros(iters, dtype=torch.long, device=device)  # (iters,) samples solved at each iteration
    for lo in range(0, len(inputs_all), batch_size):
        inputs = inputs_all[lo : lo + batch_size].to(device)
        targets = targets_all[lo : lo + batch_size].to(device)
        for t, logits in enumerate(model.iter_logits(inputs, iters)):
            correct[t] += task.score(inputs, targets, logits.argmax(1)).sum()
    return (correct.cpu().double() / max(1, len(inputs_all))).tolist()


def evaluate(
    model: torch.nn.Module,
    task: Task,
    test_sets: dict[int, torch.utils.data.TensorDataset],
    iters: int,
    train_iters: int,
    batch_size: int,
    device: torch.device,
) -> EvalResult:
    """Score ``model`` on every test set after each of iterations 1..``iters``.

    Models with a fixed depth (``iteration_limit``) are scored up to that depth only.
    """
    limit = getattr(model, "iteration_limit", None)
    iters = iters if limit is None else min(iters, limit)
    accuracy = {size: tuple(accuracy_per_iteration(model, task, data, iters, batch_size, device)) for size, data in test_sets.items()}
    return EvalResult(iterations=iters, train_iters=train_iters, accuracy=accuracy)


def format_table(result: EvalResult, title: str = "") -> str:
    """A compact text table of a result's summary, one row per test size."""
    header = f"{'size':>6} {'@train depth':>14} {'best iter':>10} {'best acc':>9} {'final acc':>10}"
    lines = [title] if title else []
    lines += [header, "-" * len(header)]
    for size, s in result.summary.items():
        lines.append(
            f"{size:>6} {s.at_train_depth:>8.2%} @{s.train_depth:<4} {s.best_iter:>10} {s.best:>9.2%} "
            f"{s.final:>7.2%} @{s.final_iter}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """``python -m benchmark.evaluate RUN_DIR (--sizes S ... | --data FILE.npz) [--iters T] [--n N]``:
    re-score a finished run's checkpoint (see ``benchmark.evaluate_cli``)."""
    from benchmark.evaluate_cli import main as cli_main  # imported late: the CLI imports this module

    cli_main(argv)


if __name__ == "__main__":
    main()
