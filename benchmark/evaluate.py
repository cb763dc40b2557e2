"""Extrapolation: exact-match accuracy per test size and per test-time iteration count."""

from __future__ import annotations

import torch

from benchmark.results import EvalResult
from tasks.base import Task


@torch.no_grad()
def accuracy_per_iteration(
    model: torch.nn.Module, task: Task, data: torch.utils.data.TensorDataset, iters: int, batch_size: int, device: torch.device
) -> list[float]:
    """Accuracy after each of iterations 1..iters (task.score: every valid position must match).

    One unrolled pass per batch scores every iteration on the way (``model.iter_logits``), so the
    cost is that of the deepest run alone and memory does not grow with ``iters``.
    """
    model.eval()
    correct = torch.zeros(iters, dtype=torch.long)
    inputs_all, targets_all = data.tensors
    for lo in range(0, len(inputs_all), batch_size):
        inputs = inputs_all[lo : lo + batch_size].to(device)
        targets = targets_all[lo : lo + batch_size].to(device)
        for t, logits in enumerate(model.iter_logits(inputs, iters)):
            correct[t] += int(task.score(inputs, targets, logits.argmax(1)).sum())
    return (correct.double() / max(1, len(inputs_all))).tolist()


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
    """Re-evaluate a finished run's checkpoint on other sizes or iteration counts:

        python -m benchmark.evaluate RUN_DIR --sizes 33 59 --iters 300 --n 200

    Writes ``eval_<sizes>_<iters>.json`` (the format of eval.json) into the run directory.
    """
    import argparse
    from pathlib import Path

    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from benchmark.checkpoint import load_checkpoint
    from benchmark.config import data_seeds
    from tasks.base import TaskError

    parser = argparse.ArgumentParser(description="Evaluate a run's checkpoint on other test sizes.")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--sizes", type=int, nargs="+", required=True, help="test sizes of the run's task")
    parser.add_argument("--iters", type=int, default=100, help="test-time iterations (all of 1..iters are scored)")
    parser.add_argument("--n", type=int, default=1000, help="test samples per size")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    if not (args.run_dir / "model.pt").is_file():
        parser.error(f"{args.run_dir} has no model.pt: give the directory of a finished run.")
    if args.iters < 1 or args.n < 1:
        parser.error("--iters and --n must be positive integers.")
    model, ckpt = load_checkpoint(args.run_dir / "model.pt", map_location=args.device)
    task = instantiate(OmegaConf.create(ckpt["task"]))
    cfg = OmegaConf.load(args.run_dir / "config.yaml")
    try:
        # Test data as the run made it: its first n samples are the run's own test samples.
        test_sets = {s: task.dataset(s, args.n, seed=data_seeds(cfg.seed)[1]) for s in args.sizes}
    except TaskError as err:
        parser.error(str(err))
    device = torch.device(args.device)
    results = evaluate(model.to(device), task, test_sets, args.iters, cfg.train.iters, args.batch_size, device)
    name = f"eval_{'-'.join(map(str, args.sizes))}_{args.iters}.json"
    results.write(args.run_dir / name)
    print(format_table(results, title=f"{args.run_dir} ({args.n} samples per size)"))
    print(f"written {args.run_dir / name}")


if __name__ == "__main__":
    main()
