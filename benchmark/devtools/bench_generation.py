"""Time maze generation through ``MazeTask(rendering, generator).generate(size, n, seed)`` on one core.

Every generator (``tasks.maze_generators``) at sizes 9, 15 and 59, compact rendering unless
``--renderings`` says otherwise. Targets (medians): every generator at least 1,000 mazes/s at
size 15; depth-first search, the default, at least 5,000 at size 9 and 300 at size 59. Runs in
well under a minute:

    python -m benchmark.devtools.bench_generation [--repeats 5] [--generators dfs prim] [--renderings compact e2h]
"""

from __future__ import annotations

import argparse
import statistics
import time

from tasks.maze import GENERATORS, MazeTask

SIZES = {9: 2000, 15: 1000, 59: 100}  # size -> mazes per timed run
TARGETS = {(None, 15): 1000.0, ("dfs", 9): 5000.0, ("dfs", 59): 300.0}  # (generator or any, size) -> mazes/s


def target(generator: str, size: int) -> float | None:
    return TARGETS.get((generator, size), TARGETS.get((None, size)))


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
    p.add_argument("--generators", nargs="+", default=list(GENERATORS), choices=list(GENERATORS))
    p.add_argument("--renderings", nargs="+", default=["compact"], choices=["compact", "e2h"])
    args = p.parse_args(argv)

    all_met = True
    print(f"{'generator':>9} {'rendering':>9} {'size':>4} {'best/s':>10} {'median/s':>10} {'target/s':>9}  met")
    for generator in args.generators:
        for rendering in args.renderings:
            task = MazeTask(rendering=rendering, generator=generator)
            for size, n in SIZES.items():
                rs = rates(task, size, n, args.repeats)
                best, med, goal = max(rs), statistics.median(rs), target(generator, size)
                met = goal is None or med >= goal
                all_met &= met
                print(f"{generator:>9} {rendering:>9} {size:>4} {best:>10,.0f} {med:>10,.0f} "
                      f"{'-' if goal is None else f'{goal:,.0f}':>9}  {'-' if goal is None else 'yes' if met else 'NO'}")
    print("all targets met (median)" if all_met else "some targets NOT met (median)")
    return 0 if all_met else 1


if __name__ == "__main__":
    raise SystemExit(main())
