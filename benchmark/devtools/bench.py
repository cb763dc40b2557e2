"""``python -m benchmark.bench [--quick] [--out FILE.json] [--threads N] [--checkpoint RUN_DIR]``: the suite's speed, measured.

Side by side in one process, on the same data (compact 9x9 mazes, batch 50, for training;
15x15 mazes for evaluation; width 32; 20 training iterations; alpha 0.01 as in the Deep Thinking
maze recipe), for the suite's models (``recurrent``, ``shared`` k=2) and each fast path:

- training: samples/s of full optimizer steps with the progressive loss
  (``benchmark.training.step.train_step``, the step ``fit`` takes, on ``progressive_loss`` and ``make_optimizer``, clipped as ``fit`` clips);
- evaluation: samples/s of ``accuracy_per_iteration`` with every iteration 1..T scored (T=100);
- where the device has native bf16 (``precision.resolve("auto", device) == "bf16"``), each model
  as it runs now in bf16 autocast, against its fp32 row (elsewhere these rows are left out);
- halting: a trained model (``--checkpoint RUN_DIR``, default the committed reference maze
  model) evaluating 33x33 and 59x59 mazes at 1,000 iterations with ``settle_and_score(...,
  halt_after=20)`` and without halting, interleaved: the cost should follow the mean iterations
  run, not the maximum;
- peak memory of evaluation at two iteration counts on 33x33 mazes (CPU: the resident memory of
  a fresh subprocess per setting, sampled every millisecond, and its growth during the
  evaluation; CUDA: ``torch.cuda.max_memory_allocated``), to show that it does not grow with T,
  without halting and with it.

Each setting is warmed up once, then measured ``repeats`` times, settings interleaved within a
repeat (A B C A B C) so machine noise hits all; the table gives medians and, for each setting,
its ratio to the setting it is compared with (``versus``): the median of the per-repeat ratios, both
measured in this run. The JSON
holds every repeat, the ratios, the scale used and the machine (CPU model, cores, load, torch
version, threads, device). ``--quick`` shrinks everything (width 8, a few samples and
iterations) so that it finishes in seconds: a smoke test of the command, not a measurement.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, replace
from multiprocessing import get_context
from pathlib import Path

import torch
from torch import nn

from benchmark.models.contract import IterativeModel
from benchmark.infra import precision
from benchmark.infra.checkpoint import load_checkpoint
from benchmark.infra.rundir import RunDir
from benchmark.evaluation.extrapolation import accuracy_per_iteration, settle_and_score
from tasks.fileio import write_json
from benchmark.config.schema import ConfigError
from tasks.maze import MazeTask

from benchmark.devtools.bench_cases import (  # noqa: E402,F401  (the names other tools import from here)
    BASELINE, DEFAULT_CHECKPOINTS, MEMORY_SETTINGS, QUICK, Scale, Setting, Trainer, build_model, evaluate_before, interleave,
    run_evaluation, settings, timed, training_batches,
)


def measure_throughput(scale: Scale, rows: list[Setting], device: torch.device, log=print) -> dict[str, dict]:
    """Median samples/s of training and evaluation per setting (all repeats kept)."""
    task = MazeTask()
    batches = training_batches(task, scale)
    eval_data = task.dataset(scale.eval_size, scale.eval_n, seed=1)
    models = {row.name: build_model(task, row, scale).to(device) for row in rows}
    trainers: dict[tuple, Trainer] = {}
    for row in rows:  # one trainer per distinct training setting; the first row with it owns it
        trainers.setdefault(row.train_key(), Trainer(models[row.name], task, batches, scale, row, device))
    results = {row.name: {"train_samples_per_s": [], "eval_samples_per_s": []} for row in rows}
    log(f"warm-up of {len(rows)} settings ...")
    for key, trainer in trainers.items():
        trainer.steps(1)
    for row in rows:
        batch = row.eval_batch or scale.eval_batch
        warm = torch.utils.data.TensorDataset(*(t[:batch] for t in eval_data.tensors))
        run_evaluation(models[row.name], task, warm, 2, batch, row, device)
    owner: dict[tuple, str] = {}
    measures: dict[str, dict[str, Callable[[], float]]] = {}
    for row in rows:
        measures[row.name] = {}
        if owner.setdefault(row.train_key(), row.name) == row.name:
            trainer = trainers[row.train_key()]
            measures[row.name]["train_samples_per_s"] = lambda trainer=trainer: scale.train_steps * scale.train_batch / timed(
                lambda: trainer.steps(scale.train_steps))

        def evaluation(row=row, model=models[row.name], batch=row.eval_batch or scale.eval_batch) -> float:
            accuracy: list[float] = []
            seconds = timed(lambda: accuracy.extend(run_evaluation(model, task, eval_data, scale.eval_iters, batch, row, device)))
            results[row.name]["eval_accuracy_final"] = accuracy[-1]
            return scale.eval_n / seconds

        measures[row.name]["eval_samples_per_s"] = evaluation
    for name, figures in interleave(measures, scale.repeats, log).items():
        results[name].update(figures)
    for row in rows:  # rows that train alike report the one measurement
        results[row.name]["train_samples_per_s"] = results[owner[row.train_key()]]["train_samples_per_s"]
        results[row.name]["train_measured_as"] = owner[row.train_key()]
    return results


def _rss_bytes() -> int:
    """This process's resident memory now (Linux ``/proc/self/statm``)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _memory_probe(setting: Setting, scale: Scale, iters: int, device: str, threads: int, checkpoint: str | None = None,
                  halt_after: int = 0) -> dict:
    """Peak memory of one evaluation: on the CPU the resident memory, sampled every millisecond
    by a thread in a fresh process (so no other setting's allocations linger), and its growth
    over the memory held before the evaluation began (model, data, imports); on CUDA the
    allocator's peak. With ``checkpoint`` (a ``model.pt``) its trained model instead of the
    setting's fresh one, evaluated with halting after ``halt_after`` settled iterations."""
    torch.set_num_threads(threads)
    device_t = torch.device(device)
    task = MazeTask()
    data = task.dataset(scale.memory_size, scale.memory_n, seed=1)
    model = (build_model(task, setting, scale) if checkpoint is None else trained_model(Path(checkpoint), device_t)).to(device_t)
    if device_t.type == "cuda":
        torch.cuda.synchronize(device_t)
        before = torch.cuda.memory_allocated(device_t)
        torch.cuda.reset_peak_memory_stats(device_t)
        run_evaluation(model, task, data, iters, scale.memory_n, setting, device_t, halt_after)
        peak = torch.cuda.max_memory_allocated(device_t)
        return {"peak_mb": peak / 2**20, "growth_mb": (peak - before) / 2**20, "measure": "torch.cuda.max_memory_allocated"}
    before = peak = _rss_bytes()
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.001):
            peak = max(peak, _rss_bytes())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        run_evaluation(model, task, data, iters, scale.memory_n, setting, device_t, halt_after)
    finally:
        done.set()
        sampler.join()
    peak = max(peak, _rss_bytes())
    return {"peak_mb": peak / 2**20, "growth_mb": (peak - before) / 2**20, "measure": "resident memory, sampled every ms"}


def measure_memory(scale: Scale, rows: list[Setting], device: torch.device, threads: int, checkpoint: Path | None,
                   log=print) -> list[dict]:
    """Peak evaluation memory of ``rows`` at each of ``scale.memory_iters``, then of the halting
    model (``checkpoint``, or the fresh "recurrent, now" model) with halting after ``scale.halt_after``."""
    halting = replace(next(r for r in settings(scale) if r.name == "recurrent, now"), name=halting_name(scale, checkpoint))
    out = []
    for row, path, halt_after in [*((r, None, 0) for r in rows), (halting, checkpoint, scale.halt_after)]:
        for iters in scale.memory_iters:
            log(f"memory: {row.name}, T={iters} ...")
            args = (row, scale, iters, str(device), threads, None if path is None else str(path), halt_after)
            if device.type == "cuda":
                probe = _memory_probe(*args)
            else:
                with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
                    probe = pool.submit(_memory_probe, *args).result()
            out.append({"setting": row.name, "size": scale.memory_size, "n": scale.memory_n, "iters": iters,
                        "halt_after": halt_after, **probe})
    return out


def default_checkpoint() -> Path | None:
    """The committed reference maze model's ``model.pt``, if this checkout has it."""
    found = sorted(DEFAULT_CHECKPOINTS.glob("*/model.pt"))
    return found[-1] if found else None


def trained_model(path: Path, device: torch.device) -> nn.Module:
    """The maze model saved at ``path`` (a run's ``model.pt``), in the precision ``auto`` picks for ``device``."""
    model, ckpt = load_checkpoint(path)
    if ckpt.task_name != "maze":
        raise BenchError(f"--checkpoint must be a maze run, got a {ckpt.task_name} model in {path.parent}.")
    if isinstance(model, IterativeModel):
        model.precision = precision.resolve("auto", device)
    return model.to(device)


def halting_name(scale: Scale, checkpoint: Path | None) -> str:
    weights = "fresh recurrent (never settles meaningfully)" if checkpoint is None else f"trained {checkpoint.parent.name}"
    return f"{weights}, halting K={scale.halt_after}"


def measure_halting(scale: Scale, device: torch.device, checkpoint: Path | None, log=print) -> list[dict]:
    """Evaluation of ``scale.halt_n`` mazes per size in ``scale.halt_sizes`` at ``scale.halt_iters``
    iterations, with halting (``halt_after``) and without, interleaved: samples/s of each, their
    paired ratio, and the mean iterations that halting ran (the cost should follow it, not T)."""
    task = MazeTask()
    if checkpoint is None:
        model = build_model(task, next(r for r in settings(scale) if r.name == "recurrent, now"), scale).to(device)
    else:
        model = trained_model(checkpoint, device)
    data = {size: task.dataset(size, scale.halt_n, seed=2) for size in scale.halt_sizes}
    extra: dict[int, dict] = {size: {} for size in scale.halt_sizes}

    def with_halting(size: int) -> float:
        out = []
        seconds = timed(lambda: out.append(settle_and_score(model, task, data[size], scale.halt_iters, scale.halt_n, device,
                                                            scale.halt_after)))
        curve, record = out[0]
        run = record.iterations_run(scale.halt_after, scale.halt_iters)
        extra[size].update(mean_iterations_run=sum(run) / len(run), settled=sum(k != "none" for k in record.kind),
                           accuracy_final_with=curve[-1])
        return scale.halt_n / seconds

    def without_halting(size: int) -> float:
        curve: list[float] = []
        seconds = timed(lambda: curve.extend(accuracy_per_iteration(model, task, data[size], scale.halt_iters, scale.halt_n, device)))
        extra[size]["accuracy_final_without"] = curve[-1]
        return scale.halt_n / seconds

    log("halting: warm-up ...")
    for size in scale.halt_sizes:
        accuracy_per_iteration(model, task, data[size], 2, scale.halt_n, device)
    measures = {size: {"with_halting_samples_per_s": lambda size=size: with_halting(size),
                       "without_halting_samples_per_s": lambda size=size: without_halting(size)} for size in scale.halt_sizes}
    figures = interleave(measures, scale.halt_repeats, lambda m: log(f"halting: {m}"))
    out = []
    for size in scale.halt_sizes:
        f = figures[size]
        out.append({"setting": halting_name(scale, checkpoint), "size": size, "n": scale.halt_n, "iters": scale.halt_iters,
                    "halt_after": scale.halt_after, **f, **{f"{k}_median": statistics.median(v) for k, v in f.items()},
                    "speedup": statistics.median(a / b for a, b in zip(f["with_halting_samples_per_s"],
                                                                       f["without_halting_samples_per_s"], strict=True)),
                    **extra[size]})
    return out


def ratios(results: dict[str, dict], rows: list[Setting]) -> dict[str, dict]:
    """Each setting's throughputs over its ``versus`` row's: the median of the per-repeat ratios.

    Paired by repeat (measured within seconds of each other), so load that drifts between
    repeats cancels out; a ratio of the medians would carry it.
    """
    out = {}
    for row in rows:
        mine, base = results[row.name], results[row.versus]
        out[row.name] = {"versus": row.versus, **{
            key: statistics.median(a / b for a, b in zip(mine[key], base[key], strict=True))
            for key in ("train_samples_per_s", "eval_samples_per_s")}}
    return out


def machine(threads: int, device: torch.device) -> dict:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
            "threads": threads, "device": str(device), "load_average_1min": os.getloadavg()[0]}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def markdown(report: dict) -> str:
    """The report as Markdown tables."""
    m, s = report["machine"], report["scale"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, {m['threads']} thread(s), device {m['device']}"
        + (f" ({m['gpu']})" if "gpu" in m else "") + f"; load average {m['load_average_1min']:.2f} before, "
        f"{report['load_average_after']:.2f} after.",
        f"Training: {s['train_size']}x{s['train_size']} mazes, batch {s['train_batch']}, width {s['width']}, "
        f"{s['train_iters']} iterations, alpha {s['alpha']}. Evaluation: {s['eval_n']} {s['eval_size']}x{s['eval_size']} mazes, "
        f"every iteration 1..{s['eval_iters']} scored, batch {s['eval_batch']}. Medians of {s['repeats']} interleaved repeats.",
        "",
        "| setting | training, samples/s | ratio | evaluation, samples/s | ratio | versus |",
        "|---|---|---|---|---|---|",
    ]
    lines += throughput_rows(report, versus=True)
    if not report["bf16_native"]:
        lines += ["", "No bf16 rows: this device has no native bf16 (emulated it is slower than fp32, and precision=auto never picks it)."]
    if report["halting"]:
        lines += ["", "| halting | size | iterations | samples/s without | samples/s with | ratio | mean iterations run | "
                  "accuracy at the end without / with |", "|---|---|---|---|---|---|---|---|"]
        for r in report["halting"]:
            lines.append(f"| {r['setting']} | {r['size']}x{r['size']} | {r['iters']} | {r['without_halting_samples_per_s_median']:.3f} | "
                         f"{r['with_halting_samples_per_s_median']:.3f} | {r['speedup']:.2f}x | {r['mean_iterations_run']:.0f} | "
                         f"{r['accuracy_final_without']:.0%} / {r['accuracy_final_with']:.0%} |")
    if report["memory"]:
        lines += ["", "| setting | size | iterations | peak memory, MB | growth during evaluation, MB |", "|---|---|---|---|---|"]
        for r in report["memory"]:
            lines.append(f"| {r['setting']} | {r['size']}x{r['size']} | {r['iters']} | {r['peak_mb']:.1f} | {r['growth_mb']:.1f} |")
    return "\n".join(lines)


def bench(scale: Scale, device: torch.device, threads: int, checkpoint: Path | None = None, log=print) -> dict:
    """Run every measurement; the JSON-ready report."""
    torch.set_num_threads(threads)
    info = machine(threads, device)
    bf16 = precision.resolve("auto", device) == "bf16"
    rows = settings(scale, bf16)
    results = measure_throughput(scale, rows, device, log)
    for r in results.values():
        for key in ("train_samples_per_s", "eval_samples_per_s"):
            r[f"{key}_median"] = statistics.median(r[key])
    halting = measure_halting(scale, device, checkpoint, log)
    memory = measure_memory(scale, [r for r in rows if r.name in MEMORY_SETTINGS], device, threads, checkpoint, log)
    return {"machine": info, "load_average_after": os.getloadavg()[0], "scale": asdict(scale), "bf16_native": bf16,
            "checkpoint": None if checkpoint is None else str(checkpoint), "settings": [asdict(r) for r in rows],
            "results": results, "ratios": ratios(results, rows), "halting": halting, "memory": memory}


class BenchError(ValueError):
    """A user-caused error on the command line; its message is one sentence."""


def throughput_rows(report: dict, versus: bool) -> list[str]:
    """One Markdown row per measured setting: samples/s and paired ratio, training then evaluation."""
    rows = []
    for name, r in report["results"].items():
        q = report["ratios"][name]
        rows.append(f"| {name} | {r['train_samples_per_s_median']:.2f} | {q['train_samples_per_s']:.2f}x | "
                    f"{r['eval_samples_per_s_median']:.2f} | {q['eval_samples_per_s']:.2f}x |" + (f" {q['versus']} |" if versus else ""))
    return rows


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmark.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test in seconds, not a measurement")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON report here (default: only print)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as in docs/speed.md)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    parser.add_argument("--repeats", type=int, default=None, help="measurements per setting (default 3; --quick 2)")
    parser.add_argument("--no-compile", action="store_true", help="leave torch.compile out (it compiles for minutes)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="a finished maze run's directory, for the halting rows (default: the committed reference maze model)")
    args = parser.parse_args(argv)
    if args.threads < 1:
        raise BenchError(f"--threads must be a positive integer, got {args.threads}.")
    if args.repeats is not None and args.repeats < 1:
        raise BenchError(f"--repeats must be a positive integer, got {args.repeats}.")
    if args.device != "cpu" and not (args.device.startswith("cuda") and torch.cuda.is_available()):
        raise BenchError(f"--device must be cpu, or cuda / cuda:N where CUDA is present, got {args.device!r}.")
    if args.out is not None and (args.out.is_dir() or not args.out.absolute().parent.is_dir()):
        raise BenchError(f"--out must name a file in an existing directory, got {str(args.out)!r}.")
    if args.checkpoint is not None and not RunDir(args.checkpoint).model.is_file():
        raise BenchError(f"--checkpoint must be the directory of a finished run (holding model.pt), got {str(args.checkpoint)!r}.")
    return args


def main(argv: list[str] | None = None) -> dict:
    try:
        args = parse(argv)
        checkpoint = default_checkpoint() if args.checkpoint is None else RunDir(args.checkpoint).model
        if checkpoint is not None:
            trained_model(checkpoint, torch.device(args.device))  # a bad checkpoint is refused before anything runs
    except (BenchError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    scale = QUICK if args.quick else Scale()
    if args.repeats is not None:
        scale = replace(scale, repeats=args.repeats)
    if args.no_compile:
        scale = replace(scale, compile=False)
    report = bench(scale, torch.device(args.device), args.threads, checkpoint, log=lambda m: print(m, file=sys.stderr, flush=True))
    report["command"] = "python -m benchmark.bench " + " ".join(sys.argv[1:] if argv is None else argv)
    print(markdown(report))
    if args.out is not None:
        write_json(args.out, report)
    return report


if __name__ == "__main__":
    main()
