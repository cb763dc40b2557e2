"""The suite's speed side by side with the Deep Thinking reference code (github.com/aks2203/deep-thinking):

    git clone https://github.com/aks2203/deep-thinking /tmp/deep-thinking
    pip install icecream einops tqdm   # the reference code's imports; not dependencies of this suite
    OMP_NUM_THREADS=1 python -m benchmark.devtools.compare_deep_thinking --reference /tmp/deep-thinking \\
        [--threads 1] [--repeats N] [--out FILE.json] [--quick]

In one process, on the same data (compact 9x9 mazes from the suite's ``MazeTask`` for training,
15x15 for evaluation; the reference model is fully convolutional and reads the same 3-channel
images, and its maze mask, any channel lit, is the suite's ``task.valid``), at the settings of
``benchmark.devtools.bench.Scale`` (batch 50, width 32, 20 iterations, alpha 0.01 as in the Deep Thinking
maze recipe; evaluation: every iteration 1..100 scored):

- the reference: its model ``deepthinking.models.dt_net_2d.dt_net_recall_2d`` trained by its own
  ``deepthinking.utils.training.train_progressive`` (one call per measurement, on a loader of the
  measured batches) with the optimizer of its maze recipe, and scored by its own
  ``deepthinking.utils.testing.test_default`` over every iteration;
- the suite: ``recurrent`` and ``shared`` (k=2) as they run now, trained through
  ``benchmark.training.trainer.progressive_loss`` + ``make_optimizer`` (``benchmark.devtools.bench.Trainer``) and
  scored by ``benchmark.evaluation.extrapolation.accuracy_per_iteration``, in fp32 and, where the device has it
  natively, in bf16 autocast.

Repeats are interleaved and the ratios are medians of the per-repeat ratios against the reference
(``benchmark.devtools.bench.interleave`` and ``ratios``). Nothing of the reference code is part of this
repository: it is imported from ``--reference`` for the measurement only.
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import types
from dataclasses import asdict, replace
from pathlib import Path

# The reference's loops wrap the batches in tqdm progress bars; tqdm reads this when first imported.
os.environ.setdefault("TQDM_DISABLE", "1")

import torch

from benchmark.infra import precision
from benchmark.devtools.bench import (QUICK, Scale, Setting, Trainer, build_model, interleave, machine, ratios, throughput_rows,
                             timed, training_batches)
from benchmark.evaluation.extrapolation import accuracy_per_iteration
from tasks.fileio import write_json
from tasks.maze import MazeTask

REFERENCE = "reference (Deep Thinking)"
# The reference's modules this script calls (``deepthinking/...``); their package __init__ files
# are not run: they import the dataset package, chess and logging that the measurement needs not.
PACKAGES = ("deepthinking", "deepthinking.models", "deepthinking.utils")
MODULES = {"model": "deepthinking.models.dt_net_2d", "training": "deepthinking.utils.training",
           "testing": "deepthinking.utils.testing", "warmup": "deepthinking.utils.warmup"}
# The reference's maze recipe (config/problem/hyp/mazes_default.yaml; utils/tools.py get_optimizer):
# Adam, lr 0.001, weight decay 2e-4, lr_throttle (the recurrent block at lr / max_iters), no
# gradient clipping (``clip:`` is empty), exponential warm-up over 10 epochs, step decay at epoch 100.
REFERENCE_LR, REFERENCE_WEIGHT_DECAY, REFERENCE_WARMUP, REFERENCE_CLIP = 1e-3, 2e-4, 10, None


class CompareError(ValueError):
    """A user-caused error on the command line; its message is one sentence."""


def load_reference(path: Path) -> types.SimpleNamespace:
    """The reference's modules, imported from the checkout at ``path``."""
    missing = [m for m in MODULES.values() if not (path / (m.replace(".", "/") + ".py")).is_file()]
    if missing:
        raise CompareError(f"--reference must be a checkout of github.com/aks2203/deep-thinking (a folder holding "
                           f"deepthinking/models/dt_net_2d.py and deepthinking/utils/training.py), got {str(path)!r}.")
    sys.path.insert(0, str(path))
    for name in [n for n in sys.modules if n.split(".")[0] == "deepthinking"]:  # another checkout's, imported before
        del sys.modules[name]
    for name in PACKAGES:  # bare packages, so that importing a module does not run the package's __init__
        package = types.ModuleType(name)
        package.__path__ = [str(path.joinpath(*name.split(".")))]
        sys.modules[name] = package
    try:
        return types.SimpleNamespace(**{key: importlib.import_module(name) for key, name in MODULES.items()})
    except ModuleNotFoundError as err:
        raise CompareError(f"the reference code imports {err.name}, which this suite does not depend on: install it for "
                           f"the comparison only (pip install {err.name}).") from None


class ReferenceTrainer:
    """The reference's own training step: ``train_progressive`` on a loader of the next batches."""

    def __init__(self, ref: types.SimpleNamespace, net: torch.nn.Module, batches: list, scale: Scale, device: torch.device):
        self.ref, self.net, self.batches, self.device = ref, net, batches, device
        base = [p for n, p in net.named_parameters() if "recur" not in n]
        recur = [p for n, p in net.named_parameters() if "recur" in n]
        optimizer = torch.optim.Adam([{"params": base}, {"params": recur, "lr": REFERENCE_LR / scale.train_iters}],
                                     lr=REFERENCE_LR, weight_decay=REFERENCE_WEIGHT_DECAY)
        self.setup = ref.training.TrainingSetup(
            optimizer=optimizer, scheduler=torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[100], gamma=0.1),
            warmup=ref.warmup.ExponentialWarmup(optimizer, warmup_period=REFERENCE_WARMUP), clip=REFERENCE_CLIP,
            alpha=scale.alpha, max_iters=scale.train_iters, problem="mazes")
        self.next = 0

    def steps(self, n: int) -> int:
        loader = [self.batches[(self.next + i) % len(self.batches)] for i in range(n)]
        self.next += n
        self.ref.training.train_progressive(self.net, {"train": loader}, self.setup, self.device)
        return sum(len(x) for x, _ in loader)


def reference_accuracy(ref: types.SimpleNamespace, net: torch.nn.Module, data, iters: int, batch: int, device: torch.device) -> list[float]:
    """The reference's ``test_default`` scoring every iteration 1..iters; accuracy as a fraction."""
    x, y = data.tensors
    loader = [(x[lo : lo + batch], y[lo : lo + batch]) for lo in range(0, len(x), batch)]
    percent = ref.testing.test_default(net, loader, list(range(1, iters + 1)), "mazes", device)
    return [percent[t] / 100 for t in range(1, iters + 1)]


def rows(bf16: bool) -> list[Setting]:
    """The reference and the suite's two models as they run now, in fp32 and (where native) bf16."""
    suite = [Setting("recurrent, fp32", versus=REFERENCE), Setting("shared k=2, fp32", model="shared", versus=REFERENCE)]
    if bf16:
        suite += [Setting("recurrent, bf16", precision="bf16", versus=REFERENCE),
                  Setting("shared k=2, bf16", model="shared", precision="bf16", versus=REFERENCE)]
    return [Setting(REFERENCE, model="reference", versus=REFERENCE), *suite]


def compare(ref: types.SimpleNamespace, scale: Scale, device: torch.device, threads: int, log=print) -> dict:
    """Every measurement; the JSON-ready report."""
    torch.set_num_threads(threads)
    info = machine(threads, device)
    bf16 = precision.resolve("auto", device) == "bf16"
    table = rows(bf16)
    task = MazeTask()
    batches = training_batches(task, scale)
    eval_data = task.dataset(scale.eval_size, scale.eval_n, seed=1)
    torch.manual_seed(0)
    net = ref.model.dt_net_recall_2d(width=scale.width, in_channels=task.spec.in_channels).to(device)
    trainers = {REFERENCE: ReferenceTrainer(ref, net, batches, scale, device)}
    evaluators = {REFERENCE: lambda data, iters: reference_accuracy(ref, net, data, iters, scale.eval_batch, device)}
    for row in table[1:]:
        model = build_model(task, row, scale).to(device)
        trainers[row.name] = Trainer(model, task, batches, scale, row, device)
        evaluators[row.name] = lambda data, iters, model=model: accuracy_per_iteration(model, task, data, iters, scale.eval_batch, device)
    results: dict[str, dict] = {row.name: {} for row in table}
    log(f"warm-up of {len(table)} settings ...")
    warm = torch.utils.data.TensorDataset(*(t[: scale.eval_batch] for t in eval_data.tensors))
    for row in table:
        trainers[row.name].steps(1)
        evaluators[row.name](warm, 2)

    def evaluation(name: str) -> float:
        accuracy: list[float] = []
        seconds = timed(lambda: accuracy.extend(evaluators[name](eval_data, scale.eval_iters)))
        results[name]["eval_accuracy_final"] = accuracy[-1]
        return scale.eval_n / seconds

    measures = {row.name: {
        "train_samples_per_s": lambda name=row.name: scale.train_steps * scale.train_batch / timed(lambda: trainers[name].steps(scale.train_steps)),
        "eval_samples_per_s": lambda name=row.name: evaluation(name)} for row in table}
    for name, figures in interleave(measures, scale.repeats, log).items():
        results[name].update(figures)
        for key in ("train_samples_per_s", "eval_samples_per_s"):
            results[name][f"{key}_median"] = statistics.median(figures[key])
    return {"machine": info, "load_average_after": os.getloadavg()[0], "scale": asdict(scale), "bf16_native": bf16,
            "settings": [asdict(r) for r in table], "results": results, "ratios": ratios(results, table)}


def markdown(report: dict) -> str:
    """The report as a Markdown table."""
    m, s = report["machine"], report["scale"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, {m['threads']} thread(s), device {m['device']}; "
        f"load average {m['load_average_1min']:.2f} before, {report['load_average_after']:.2f} after.",
        f"Training: {s['train_size']}x{s['train_size']} mazes, batch {s['train_batch']}, width {s['width']}, {s['train_iters']} "
        f"iterations, alpha {s['alpha']}. Evaluation: {s['eval_n']} {s['eval_size']}x{s['eval_size']} mazes, every iteration "
        f"1..{s['eval_iters']} scored, batch {s['eval_batch']}. Medians of {s['repeats']} interleaved repeats; ratios: medians of "
        f"the per-repeat ratios against the reference.",
        "",
        "| | training, samples/s | ratio | evaluation, samples/s | ratio |",
        "|---|---|---|---|---|",
    ]
    lines += throughput_rows(report, versus=False)
    if not report["bf16_native"]:
        lines += ["", "No bf16 rows: this device has no native bf16."]
    return "\n".join(lines)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="benchmark.devtools.compare_deep_thinking", description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", type=Path, required=True, help="a checkout of github.com/aks2203/deep-thinking")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--repeats", type=int, default=None, help=f"interleaved repeats (default {Scale.repeats}; --quick {QUICK.repeats})")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON report here (default: only print)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test in seconds, not a measurement")
    args = parser.parse_args(argv)
    if args.threads < 1:
        raise CompareError(f"--threads must be a positive integer, got {args.threads}.")
    if args.repeats is not None and args.repeats < 1:
        raise CompareError(f"--repeats must be a positive integer, got {args.repeats}.")
    if args.out is not None and (args.out.is_dir() or not args.out.absolute().parent.is_dir()):
        raise CompareError(f"--out must name a file in an existing directory, got {str(args.out)!r}.")
    return args


def main(argv: list[str] | None = None) -> dict:
    try:
        args = parse(argv)
        ref = load_reference(args.reference.expanduser().resolve())
    except CompareError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    scale = replace(QUICK if args.quick else Scale(), compile=False)
    if args.repeats is not None:
        scale = replace(scale, repeats=args.repeats)
    report = compare(ref, scale, torch.device("cpu"), args.threads, log=lambda m: print(m, file=sys.stderr, flush=True))
    report["command"] = "python -m benchmark.devtools.compare_deep_thinking " + " ".join(sys.argv[1:] if argv is None else argv)
    print(markdown(report))
    if args.out is not None:
        write_json(args.out, report)
    return report


if __name__ == "__main__":
    main()
