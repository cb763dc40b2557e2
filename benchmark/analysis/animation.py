"""``python -m benchmark.animate RUN_DIR --size 33``: a GIF of a run's model solving one test puzzle.

    python -m benchmark.animate RUN_DIR --size 33 [--index 0] [--iters 300] [--out FILE.gif] [--fps 10] [--settle 10]

Each frame shows one test-time iteration: the input, the prediction after that iteration (every
scored position coloured by whether it is right) and the target, with the iteration number in the
title. The frames stop where the prediction has *settled* (``benchmark.evaluation.settling``) or at ``--iters``.

The puzzle is test sample ``--index`` of the given size, made from the run's task and test seed
exactly as ``python -m benchmark.evaluate RUN_DIR --sizes SIZE`` makes its test set, so sample i
here is sample i there. The model runs one unrolled pass (``iter_logits``) under
``torch.no_grad()``: memory does not grow with the iteration count, and the pass stops as soon as
the prediction has settled.

Every check runs before anything is computed; a user error ends with one sentence on stderr and
exit status 2, and nothing is written. The GIF is written atomically.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import singledispatch
from pathlib import Path

import matplotlib
import numpy as np
import torch

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from PIL import Image  # noqa: E402  (pillow comes with matplotlib)

from benchmark.config.schema import ConfigError, data_seeds, exit_on_user_error  # noqa: E402
from benchmark.infra.rundir import RunDir  # noqa: E402
from benchmark.evaluation.rescore import _Parser, load_run  # noqa: E402
from tasks.fileio import atomic_path, check_writable_dir  # noqa: E402
from benchmark.evaluation.settling import SettleDetector, Settling, settle_point  # noqa: E402,F401  (settle_point: re-exported)
from tasks.base import Task, TaskError  # noqa: E402
from tasks.shortest_path import ShortestPathTask  # noqa: E402

DEFAULT_ITERS = 300  # capped at the model's iteration_limit when --iters is not given
WRAP = 64  # positions per row of a 1-D strip: longer strings wrap into several rows

# Colours (RGB in [0, 1]) of a prediction's positions; the target is drawn as a perfect prediction.
COLOURS = {
    "right, on the solution": (0.13, 0.63, 0.25),  # green
    "missing from the prediction": (1.00, 0.60, 0.00),  # orange
    "wrongly predicted": (0.84, 0.10, 0.11),  # red
    "right, background": (1.00, 1.00, 1.00),  # white
    "not scored": (0.35, 0.35, 0.35),  # grey: maze walls, obstacles
}
RIGHT_ON, MISSING, EXTRA, RIGHT_OFF, UNSCORED = (np.array(c) for c in COLOURS.values())
WRONG_COLOURS = (MISSING, EXTRA)


# ---------------------------------------------------------------------------- settling
def predictions(model: torch.nn.Module, inputs: torch.Tensor, iters: int, k: int) -> tuple[list[np.ndarray], Settling]:
    """The arg-max predictions ``(*S)`` of one input ``(1, C, *S)`` after iterations 1..n and where
    they settled; the unrolled pass stops as soon as they have (n <= ``iters``)."""
    detector, preds = SettleDetector(k), []
    with torch.no_grad():
        for logits in model.iter_logits(inputs, iters):  # (1, classes, *S)
            prediction = logits.argmax(dim=1)  # (1, *S)
            preds.append(prediction[0].cpu().numpy())
            period = int(detector.push(prediction)[0])
            if period:
                return preds, Settling(detector.first_iteration(period), period)
    return preds, Settling()


# ---------------------------------------------------------------------------- pictures
def overlay(prediction: np.ndarray, target: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """RGB ``(*S, 3)`` of a prediction against its target (class 0 is the background): right
    solution positions green, missing ones orange, wrong extra ones red, right background white,
    unscored positions grey."""
    right = prediction == target
    picture = np.where(
        (right & (target != 0))[..., None], RIGHT_ON,
        np.where(right[..., None], RIGHT_OFF, np.where((prediction == 0)[..., None], MISSING, EXTRA)))
    return np.where(valid[..., None], picture, UNSCORED)


@singledispatch
def input_picture(task: Task, inputs: np.ndarray) -> tuple[np.ndarray, str]:
    """RGB ``(*S, 3)`` of one input ``(C, *S)`` and its caption. By default: a 3-channel 2-D input
    is an RGB image (the maze), another 2-D input its first channel in grey; a 1-D input is a
    string of bits, channel 0 > 0 drawn black (prefix sums). A task whose input needs another
    picture registers one here (``@input_picture.register``)."""
    if inputs.shape[0] == 3 and inputs.ndim == 3:
        return np.clip(np.moveaxis(inputs, 0, -1), 0.0, 1.0), "input"
    channel = inputs[0]
    if inputs.ndim == 2:
        return np.where((channel > 0)[..., None], 0.0, 1.0) * np.ones(3), "input (black: 1)"
    span = np.ptp(channel) or 1.0
    return np.repeat(((channel - channel.min()) / span)[..., None], 3, axis=-1), "input (channel 0)"


@input_picture.register
def _(task: ShortestPathTask, inputs: np.ndarray) -> tuple[np.ndarray, str]:
    """The cost grid: free cells from light (cheap) to dark blue (costly), obstacles black, start
    green, goal red."""
    free, cost, start, goal = task.decode(inputs)
    level = (cost - task.options.cost_min) / max(task.options.cost_max - task.options.cost_min, 1)  # 0 cheapest .. 1 costliest
    picture = plt.get_cmap("Blues")(0.15 + 0.7 * level)[..., :3]
    picture[~free] = 0.0
    picture[start] = (0.0, 0.8, 0.0)
    picture[goal] = (0.9, 0.0, 0.0)
    return picture, f"costs {task.options.cost_min} (light) to {task.options.cost_max} (dark)\nstart green, goal red, obstacles black"


def _strip(rows: Sequence[np.ndarray], width: int) -> np.ndarray:
    """1-D pictures ``(L, 3)`` stacked as a strip: wrapped every ``width`` positions, each chunk
    one row per picture, chunks separated by a blank row. Returns RGB ``(rows, width, 3)``."""
    length = len(rows[0])
    chunks = []
    for start in range(0, length, width):
        block = np.ones((len(rows) + 1, width, 3))
        for r, row in enumerate(rows):
            part = row[start:start + width]
            block[r, :len(part)] = part
        chunks.append(block)
    return np.concatenate(chunks)[:-1]  # no blank row after the last chunk


@dataclass
class Figure:
    """The figure every frame is drawn on; ``prediction`` is the axes showing the prediction."""

    fig: matplotlib.figure.Figure
    prediction: matplotlib.axes.Axes
    title: matplotlib.text.Text
    update: Callable[[np.ndarray], None]  # shows a prediction picture (*S, 3)


def make_figure(task: Task, inputs: np.ndarray, target: np.ndarray, valid: np.ndarray, heading: str) -> Figure:
    """The figure of one puzzle (input ``(C, *S)``, target and valid ``(*S)``), its prediction
    panel blank until ``update`` is called."""
    given, caption = input_picture(task, inputs)
    solution = overlay(target, target, valid)
    handles = [Patch(facecolor=c, edgecolor="black", linewidth=0.5, label=name) for name, c in COLOURS.items()
               if name != "not scored" or not valid.all()]
    if inputs.ndim == 2:  # 1-D: rows input / prediction / target, wrapped
        length = target.shape[0]
        width = min(length, WRAP)
        chunks = -(-length // width)
        fig, ax = plt.subplots(figsize=(max(6.5, 0.12 * width + 2.2), 1.6 + 1.1 * chunks), dpi=90, layout="constrained")
        image = ax.imshow(_strip([given, solution, solution], width), interpolation="nearest", aspect="auto")
        names = (caption, "prediction", "target")
        ax.set_yticks([4 * c + r for c in range(chunks) for r in range(3)],
                      [f"{name}, bits {c * width}-{min(length, (c + 1) * width) - 1}" if r == 0 else name
                       for c in range(chunks) for r, name in enumerate(names)], fontsize=8)
        ax.set_xticks([])
        # Thin white lines between positions and rows, so runs of equal bits can be counted.
        ax.set_xticks(np.arange(width + 1) - 0.5, minor=True)
        ax.set_yticks(np.arange(4 * chunks) - 0.5, minor=True)
        ax.tick_params(which="minor", length=0)
        ax.grid(which="minor", color="white", linewidth=0.6)

        def update(picture: np.ndarray) -> None:
            image.set_data(_strip([given, picture, solution], width))
        pred_ax = ax
    else:
        fig, axes = plt.subplots(1, 3, figsize=(9.6, 4.1), dpi=80, layout="constrained")
        for ax, picture, name in zip(axes, (given, solution, solution), (caption, "prediction", "target")):
            ax.imshow(picture, interpolation="nearest")
            ax.set_title(name, fontsize=11)
            ax.set_xticks([])
            ax.set_yticks([])
        image, pred_ax = axes[1].images[0], axes[1]

        def update(picture: np.ndarray) -> None:
            image.set_data(picture)
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    title = fig.suptitle(f"{heading}\niteration", fontsize=10)  # room for the two lines every frame has
    fig.canvas.draw()
    fig.set_layout_engine("none")  # frozen: every frame has the same layout, whatever its title says
    return Figure(fig, pred_ax, title, update)


def render(task: Task, inputs: np.ndarray, target: np.ndarray, preds: Sequence[np.ndarray], settled: Settling,
           heading: str) -> Iterator[Image.Image]:
    """One RGB frame per prediction in ``preds`` (those of iterations 1..n), drawn as they are
    consumed, so a long animation never holds more than one frame."""
    valid = task.valid(torch.from_numpy(inputs)[None])[0].numpy()
    figure = make_figure(task, inputs, target, valid, heading)
    try:
        for t, pred in enumerate(preds, start=1):
            wrong = int(((pred != target) & valid).sum())
            status = "solved" if wrong == 0 else f"{wrong} wrong position{'s' * (wrong != 1)}"
            last = f", {settled.describe()}" if t == len(preds) else ""
            figure.title.set_text(f"{heading}\niteration {t}: {status}{last}")
            figure.update(overlay(pred, target, valid))
            figure.fig.canvas.draw()
            yield Image.fromarray(np.asarray(figure.fig.canvas.buffer_rgba())[..., :3].copy())
    finally:
        plt.close(figure.fig)


def write_gif(path: Path, frames: Iterable[Image.Image], n: int, fps: int) -> None:
    """The ``n`` frames as a looping GIF, written atomically and consumed one at a time; the last
    frame is held for two seconds."""
    step = max(1, round(1000 / fps))
    durations = [step] * (n - 1) + [max(step, 2000)]
    # Each frame gets its own adaptive palette: the few flat colours survive quantisation exactly.
    paletted = (f.quantize(colors=255, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE) for f in frames)
    with atomic_path(path) as tmp:  # tmp ends in .tmp, so the format is named explicitly
        first = next(paletted)
        first.save(tmp, format="GIF", save_all=True, append_images=paletted, duration=durations, loop=0)


# ---------------------------------------------------------------------------- command line
def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m benchmark.animate", description="Write a GIF of a run's model solving one test puzzle, iteration by iteration.")
    parser.add_argument("run_dir", type=Path, help="a finished run's directory (model.pt and config.yaml)")
    parser.add_argument("--size", type=int, required=True, help="test size of the run's task")
    parser.add_argument("--index", type=int, default=0, help="which of the run's test samples (0 .. size.n_test - 1)")
    parser.add_argument("--iters", type=int, default=None, help=f"most test-time iterations (default {DEFAULT_ITERS}, or the model's limit)")
    parser.add_argument("--out", type=Path, default=None, help="the GIF to write (default: in the run directory)")
    parser.add_argument("--fps", type=int, default=10, help="frames per second")
    parser.add_argument("--settle", type=int, default=10, help="stop once the prediction is unchanged (or a 2-cycle) for this many iterations")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present, else the CPU), cpu, cuda or cuda:N")
    return parser


def run(argv: list[str] | None = None) -> tuple[Path, Settling, int]:
    """Parse, check everything, animate, write; returns ``(gif path, settling, frames)``. Raises ``ConfigError``."""
    args = _parser().parse_args(argv)
    for flag, value in (("--iters", args.iters), ("--fps", args.fps), ("--settle", args.settle)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be a positive integer, got {value}.")
    if args.index < 0:
        raise ConfigError(f"--index must be zero or positive, got {args.index}.")
    # Where the GIF goes must take a file before the model is loaded or run (a read-only run directory).
    target_dir = args.out.parent if args.out is not None else args.run_dir
    if target_dir.is_dir():
        check_writable_dir(target_dir, "the animation")
    model, ckpt, cfg, device = load_run(args.run_dir, args.device)
    n_test = cfg.get("size", {}).get("n_test") if isinstance(cfg.get("size"), dict) else None
    if not isinstance(n_test, int) or isinstance(n_test, bool) or n_test < 1:
        raise ConfigError(f"{RunDir(args.run_dir).config} has no size.n_test >= 1: give the directory of a finished run.")
    task = ckpt.task
    try:
        task.check_size(args.size)
    except TaskError as err:
        raise ConfigError(str(err)) from err
    if args.index >= n_test:
        raise ConfigError(f"--index must lie in [0, {n_test - 1}] (the run's size.n_test test samples), got {args.index}.")
    limit = model.iteration_limit
    iters = args.iters if args.iters is not None else min(DEFAULT_ITERS, limit or DEFAULT_ITERS)
    if limit is not None and iters > limit:
        raise ConfigError(f"--iters must be at most {limit} for model {model.name} (it has weights for {limit} iterations), got {iters}.")
    out = args.out or args.run_dir / f"animation_size{args.size}_index{args.index}_iters{iters}_settle{args.settle}.gif"
    if out.suffix.lower() != ".gif" or not out.parent.is_dir():
        raise ConfigError(f"--out must name a .gif file in an existing directory, got {out}.")

    # The run's own test sample: sample i of any n > i is the same (each has its own seed).
    inputs, target = task.dataset(args.size, args.index + 1, seed=data_seeds(cfg["seed"])[1])[args.index]
    preds, settled = predictions(model.to(device), inputs[None].to(device), iters, args.settle)
    preds = preds[:settled.frames(iters)]  # the confirming iterations after settling are not shown
    heading = f"{ckpt.task_name} size {args.size}, test sample {args.index}: model {model.name} ({args.run_dir.name})"
    write_gif(out, render(task, inputs.numpy(), target.numpy(), preds, settled, heading), len(preds), args.fps)
    print(f"{len(preds)} frames, {settled.describe()}; written {out}")
    return out, settled, len(preds)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: user errors end with one sentence on stderr and exit status 2."""
    exit_on_user_error(run, argv)


if __name__ == "__main__":
    main()
