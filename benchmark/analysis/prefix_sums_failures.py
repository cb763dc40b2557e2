"""Where a prefix-sums model goes wrong: ``python -m benchmark.analysis.prefix_sums_failures RUN_DIR --size 32 --n 200``.

Rebuilds the run's own first ``n`` test strings of ``size`` bits (its test seed), unrolls the
model for ``--iters`` iterations (default: the run's training depth, ``train.iters``) and looks
at the output bits of that iteration. Output bit i is the parity of input bits 0..i, so a model
that has learned the algorithm is right at every position, while one that computes parities over
a bounded window only is right on the string's first bits and at chance (50%) after them. Prints:

- the string accuracy (every bit right) and the bit accuracy;
- the solved prefix: per string, how many leading bits are all right (median, and its quartiles);
- the reach: the first position whose bit accuracy falls under ``--reach-acc`` (default 95%);
- the bit accuracy by position, in bands of ``--band`` positions;
- with ``--reach-iters 5 10 20 ...``: the reach and the string accuracy after each of those
  iteration counts. A model that carries the parity along the string reaches further with more
  iterations; one that computes a window's parity reaches as far after 5 iterations as after 100.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import torch


from benchmark.config.schema import ConfigError, exit_on_user_error
from benchmark.evaluation.rescore import failure_script_parser, load_test_set
from tasks.prefix_sums import PrefixSumsTask


@dataclass
class Report:
    """What ``analyse`` finds in one set of predictions ``(n, size)`` against their targets."""

    size: int
    strings: int
    string_acc: float  # share of strings with every bit right
    bit_acc: float  # share of bits right
    by_position: list[float]  # bit accuracy at each position 0..size-1
    solved_prefix: list[int]  # per string: leading bits all right (size: the whole string)
    reach: int | None  # first position with bit accuracy under reach_acc (None: none)
    reach_acc: float
    iters: int | None  # the iteration the predictions are from (None: not said)


def analyse(predicted: np.ndarray, targets: np.ndarray, reach_acc: float = 0.95, iters: int | None = None) -> Report:
    """Score predicted bits ``(n, size)``, the output after ``iters`` iterations, against the target bits ``(n, size)``."""
    right = np.asarray(predicted) == np.asarray(targets)  # (n, size)
    n, size = right.shape
    by_position = right.mean(0)
    # Leading bits all right: the index of the first wrong bit, or the length when none is wrong.
    solved = np.where(right.all(1), size, np.argmin(right, axis=1))
    under = np.flatnonzero(by_position < reach_acc)
    return Report(size=size, strings=n, string_acc=float(right.all(1).mean()), bit_acc=float(right.mean()),
                  by_position=by_position.tolist(), solved_prefix=solved.tolist(),
                  reach=int(under[0]) if len(under) else None, reach_acc=reach_acc, iters=iters)


@torch.no_grad()
def predictions(model: torch.nn.Module, inputs: torch.Tensor, iters: list[int], batch_size: int = 500) -> dict[int, np.ndarray]:
    """The model's output bits ``(n, size)`` after each of ``iters`` iterations, from one unrolled pass."""
    model.eval()
    wanted, chunks = set(iters), {t: [] for t in iters}
    for i in range(0, len(inputs), batch_size):
        for t, logits in enumerate(model.iter_logits(inputs[i : i + batch_size], max(iters)), start=1):
            if t in wanted:
                chunks[t].append(logits.argmax(1))
    return {t: torch.cat(c).numpy() for t, c in chunks.items()}


def format_reach(reports: list[Report]) -> str:
    """One row per iteration count: how far along the string the model is right, and how often whole strings are."""
    lines = [f"| iterations | reach (first position under {100 * reports[0].reach_acc:.0f}% bit accuracy) | strings right |",
             "|---|---|---|"]
    for r in reports:
        lines.append(f"| {r.iters} | {'none' if r.reach is None else r.reach} | {100 * r.string_acc:.1f}% |")
    return "\n".join(lines)


def format_report(report: Report, band: int = 4) -> str:
    solved = np.asarray(report.solved_prefix)
    q1, median, q3 = np.percentile(solved, [25, 50, 75])
    reach = (f"position {report.reach} (bits 0..{report.reach - 1} at least {100 * report.reach_acc:.0f}% right)"
             if report.reach is not None else f"none: every position at least {100 * report.reach_acc:.0f}% right")
    lines = [
        f"{report.strings} strings of {report.size} bits at iteration {report.iters}: "
        f"{100 * report.string_acc:.1f}% strings right, {100 * report.bit_acc:.1f}% bits right",
        f"solved prefix (leading bits all right): median {median:.0f}, quartiles {q1:.0f}-{q3:.0f} of {report.size}",
        f"reach: first position under {100 * report.reach_acc:.0f}% bit accuracy: {reach}",
        "",
        "| positions | bit accuracy |",
        "|---|---|",
    ]
    for lo in range(0, report.size, band):
        hi = min(lo + band, report.size)
        lines.append(f"| {lo}-{hi - 1} | {100 * float(np.mean(report.by_position[lo:hi])):.1f}% |")
    return "\n".join(lines)


def run(argv: list[str] | None = None) -> Report:
    parser = failure_script_parser("benchmark.analysis.prefix_sums_failures", __doc__.splitlines()[0], PrefixSumsTask,
                                   "bits per test string", "strings", "train.iters")
    parser.add_argument("--band", type=int, default=4, help="positions per row of the bit-accuracy table")
    parser.add_argument("--reach-acc", type=float, default=0.95, help="bit accuracy that counts as reached (0 to 1)")
    parser.add_argument("--reach-iters", type=int, nargs="+", default=[], metavar="T",
                        help="also print the reach after each of these iteration counts")
    args = parser.parse_args(argv)
    counts = ([] if args.iters is None else [args.iters]) + args.reach_iters
    if args.n < 1 or args.band < 1 or any(t < 1 for t in counts):
        raise ConfigError(f"--n, --band, --iters and --reach-iters must be positive integers, got {args.n}, {args.band}, "
                          f"{args.iters} and {args.reach_iters}.")
    if not 0.0 < args.reach_acc <= 1.0:
        raise ConfigError(f"--reach-acc must lie in (0, 1], got {args.reach_acc}.")
    model, _, cfg, data = load_test_set(args.run_dir, PrefixSumsTask, args.size, args.n)
    iters = args.iters if args.iters is not None else int(cfg["train"]["iters"])
    try:
        model.check_iters(max([iters, *args.reach_iters]))
    except ValueError as err:
        raise ConfigError(str(err)) from err
    inputs, targets = data.tensors
    predicted = predictions(model, inputs, sorted({iters, *args.reach_iters}))
    reports = {t: analyse(p, targets.numpy(), args.reach_acc, iters=t) for t, p in predicted.items()}
    print(format_report(reports[iters], args.band))
    if args.reach_iters:
        print("\n" + format_reach([reports[t] for t in sorted(set(args.reach_iters))]))
    return reports[iters]


if __name__ == "__main__":
    exit_on_user_error(run, sys.argv[1:])
