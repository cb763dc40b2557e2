"""Time maze generation through ``MazeTask(rendering).generate(size, n, seed)`` on one core.

Targets: at least 5,000 mazes/s at size 9 and 300 mazes/s at size 59 (compact rendering;
the e2h rendering is reported too). Runs in a few seconds:

    python -m benchmark.devtools.bench_generation [--repeats 5] [--renderings compact e2h]
"""

from __future__ import annotations

import argparse
import statistics
import time


from tasks.maze import MazeTask

TARGETS = {9: 5000.0, 59: 300.0}  # mazes per second


def rates(task: MazeTask, size: int, n: int, repeats: int) -> list[float]:
    task.generate(size, 8, seed=12345)  # warm the per-size tables
    out = []
    for r in range(repeats):
        t0 = time.perf_counter()
        task.generate(size, n, seed=r)
        out.append(n / (time.perf_counter() - t0))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5, help="timed runs per case (default 5)")
    p.add_argument("--n9", type=int, default=2000, help="mazes per run at size 9 (default 2000)")
    p.add_argument("--n59", type=int, default=200, help="mazes per run at size 59 (default 200)")
    p.add_argument("--renderings", nargs="+", default=["compact", "e2h"], choices=["compact", "e2h"])
    args = p.parse_args(argv)

    all_met = True
    print(f"{'rendering':>9} {'size':>4} {'best/s':>10} {'median/s':>10} {'target/s':>9}  met")
    for rendering in args.renderings:
        task = MazeTask(rendering)
        for size, n in ((9, args.n9), (59, args.n59)):
            rs = rates(task, size, n, args.repeats)
            best, med = max(rs), statistics.median(rs)
            met = med >= TARGETS[size]
            all_met &= met
            print(f"{rendering:>9} {size:>4} {best:>10,.0f} {med:>10,.0f} {TARGETS[size]:>9,.0f}  {'yes' if met else 'NO'}")
    print("all targets met (median)" if all_met else "some targets NOT met (median)")
    return 0 if all_met else 1


if __name__ == "__main__":
    raise SystemExit(main())
