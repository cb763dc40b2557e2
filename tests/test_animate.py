"""``python -m benchmark.animate``: frames up to where predictions settle, the colours of right and wrong
positions, GIFs of real tiny runs read back frame by frame, and every refusal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from omegaconf import OmegaConf
from PIL import Image

from benchmark.analysis import animation as animate
from benchmark.analysis.animation import make_figure, overlay, predictions, render, write_gif
from benchmark.infra.checkpoint import load_checkpoint, save_checkpoint
from benchmark.config.schema import data_seeds
from benchmark.models.recurrent import RecurrentConvNet
from benchmark.pipelines.algorithmic import run
from benchmark.evaluation.settling import Settling, settle_point
from tasks.maze import MazeTask
from tasks.prefix_sums import PrefixSumsTask
from tasks.shortest_path import ShortestPathTask

WRONG = {"missing": animate.MISSING, "extra": animate.EXTRA}


# ---------------------------------------------------------------------------- pictures
def test_overlay_colours_every_kind_of_position():
    target = np.array([1, 1, 0, 0, 1, 0])
    pred = np.array([1, 0, 1, 0, 0, 1])
    valid = np.array([1, 1, 1, 1, 0, 0], dtype=bool)
    expected = [animate.RIGHT_ON, animate.MISSING, animate.EXTRA, animate.RIGHT_OFF, animate.UNSCORED, animate.UNSCORED]
    np.testing.assert_array_equal(overlay(pred, target, valid), np.stack(expected))


def test_long_strings_wrap_into_rows():
    rows = [np.full((150, 3), v) for v in (0.1, 0.2, 0.3)]
    strip = animate._strip(rows, 64)
    assert strip.shape == (3 * 4 - 1, 64, 3)
    assert (strip[8 + 2, :22] == 0.3).all() and (strip[8 + 2, 22:] == 1.0).all()  # bits 128..149, then blank
    assert (strip[3] == 1.0).all() and (strip[4 + 1] == 0.2).all()  # a blank row between chunks


def test_shortest_path_input_shows_costs_obstacles_start_and_goal():
    task = ShortestPathTask()
    inputs, _ = task.generate(8, 1, seed=0)
    picture, caption = animate.input_picture(task, inputs[0])
    free, cost, start, goal = task.decode(inputs[0])
    assert (picture[~free] == 0).all() and "cost" in caption
    np.testing.assert_allclose(picture[start], (0.0, 0.8, 0.0))
    np.testing.assert_allclose(picture[goal], (0.9, 0.0, 0.0))
    others = free.copy()
    others[start] = others[goal] = False
    cheap, dear = others & (cost == cost[others].min()), others & (cost == cost[others].max())
    assert picture[cheap].sum(-1).min() > picture[dear].sum(-1).max()  # costlier cells are darker


# ---------------------------------------------------------------------------- reading GIFs back
def _frames(path: Path) -> list[np.ndarray]:
    with Image.open(path) as gif:
        out = []
        for i in range(gif.n_frames):
            gif.seek(i)
            out.append(np.asarray(gif.convert("RGB")).astype(int))
        return out


def _panel(task, inputs, target) -> tuple[slice, slice]:
    """Rows and columns (pixels) of the prediction panel, the same in every frame."""
    valid = task.valid(torch.as_tensor(inputs)[None])[0].numpy()
    figure = make_figure(task, inputs, target, valid, "heading")
    height = figure.fig.canvas.get_width_height()[1]
    box = figure.prediction.get_window_extent()
    animate.plt.close(figure.fig)
    return slice(int(height - box.y1) + 2, int(height - box.y0) - 2), slice(int(box.x0) + 2, int(box.x1) - 2)


def _wrong_colours(frame: np.ndarray, panel: tuple[slice, slice]) -> set[str]:
    crop = frame[panel]
    return {name for name, colour in WRONG.items() if (np.abs(crop - 255 * colour).max(-1) <= 12).any()}


class Scripted(torch.nn.Module):
    """A stand-in model whose prediction at each iteration is given; counts the iterations run."""

    name, iteration_limit = "scripted", None

    def __init__(self, preds: list[np.ndarray], classes: int = 2):
        super().__init__()
        self.preds, self.classes, self.ran = preds, classes, 0

    def iter_logits(self, x: torch.Tensor, iters: int):
        for pred in self.preds[:iters]:
            self.ran += 1
            yield F.one_hot(torch.as_tensor(pred), self.classes).movedim(-1, 0)[None].float()  # (1, classes, *S)


@pytest.mark.parametrize("task,size", [(MazeTask(), 9), (PrefixSumsTask(), 150), (ShortestPathTask(), 10)])
def test_frames_colour_exactly_the_wrong_positions(tmp_path, task, size):
    inputs, targets = task.generate(size, 1, seed=5)
    inputs, target = inputs[0], targets[0]
    valid = task.valid(torch.as_tensor(inputs)[None])[0].numpy()
    extra = target.copy()
    extra.ravel()[np.flatnonzero(valid.ravel() & (target.ravel() == 0))[0]] = 1  # one wrong extra position
    script = [np.zeros_like(target), extra] + [target] * 10  # missing all, one extra, then right for good
    model = Scripted(script)
    preds, settled = predictions(model, torch.as_tensor(inputs)[None], 50, 3)
    assert settled == Settling(3, 1) and model.ran == 6  # the pass stopped once settled was confirmed
    frames_shown = preds[:settled.frames(50)]
    path = tmp_path / "a.gif"
    write_gif(path, render(task, inputs, target, frames_shown, settled, "test"), len(frames_shown), fps=5)

    frames = _frames(path)
    assert len(frames) == 3
    panel = _panel(task, inputs, target)
    assert _wrong_colours(frames[0], panel) == {"missing"}
    assert _wrong_colours(frames[1], panel) == {"extra"}
    assert _wrong_colours(frames[2], panel) == set()  # right: no wrong colour anywhere in the panel
    with Image.open(path) as gif:
        gif.seek(2)
        assert gif.info["duration"] >= 2000  # the settled state is held


# ---------------------------------------------------------------------------- real tiny runs
@pytest.mark.parametrize("task_name,size_group,size", [("maze", "train9_test13", 13), ("prefix_sums", "train16_test64", 40)])
def test_animates_a_trained_run(make_cfg, tmp_path, task_name, size_group, size):
    results = run(make_cfg(f"task={task_name}", f"size={size_group}", "seed=2"))
    run_dir = Path(results.run_dir)
    iters, k, index = 8, 2, 3
    out, settled, n_frames = animate.run([str(run_dir), "--size", str(size), "--index", str(index), "--iters", str(iters),
                                          "--settle", str(k), "--device", "cpu"])
    assert out == run_dir / f"animation_size{size}_index{index}_iters{iters}_settle{k}.gif"

    # Independently: the run's own test sample (index 3 of its n_test = 16), each iteration count
    # scored by a separate forward pass.
    model, ckpt = load_checkpoint(run_dir / "model.pt")
    inputs, target = ckpt.task.dataset(size, 16, seed=data_seeds(2)[1])[index]
    with torch.no_grad():
        preds = [model(inputs[None], t).argmax(1)[0].numpy() for t in range(1, iters + 1)]
    expected = settle_point(preds, k)
    assert settled == expected and n_frames == expected.frames(iters)
    frames = _frames(out)
    assert len(frames) == n_frames

    valid = ckpt.task.valid(inputs[None])[0].numpy()
    panel = _panel(ckpt.task, inputs.numpy(), target.numpy())
    for pred, frame in zip(preds, frames):
        wrong = (pred != target.numpy()) & valid
        shown = {"missing": (wrong & (pred == 0)).any(), "extra": (wrong & (pred != 0)).any()}
        assert _wrong_colours(frame, panel) == {name for name, there in shown.items() if there}


# ---------------------------------------------------------------------------- refusals
def _make_run(run_dir: Path, depth: int = 1, templates: int | None = 2) -> None:
    """A run directory as a run leaves it (an untrained tiny maze model), n_test = 4."""
    run_dir.mkdir(parents=True)
    model_cfg = {"_target_": "benchmark.models.recurrent.RecurrentConvNet", "name": "m", "width": 4, "depth": depth, "templates": templates}
    task_cfg = {"_target_": "tasks.maze.MazeTask", "rendering": "compact"}
    torch.manual_seed(0)
    model = RecurrentConvNet(MazeTask.spec, name="m", width=4, depth=depth, templates=templates)
    save_checkpoint(model, OmegaConf.create({"model": model_cfg, "task": task_cfg}), run_dir / "model.pt")
    config = {"seed": 1, "task": task_cfg, "model": model_cfg, "train": {"iters": 2}, "size": {"n_test": 4}}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _animate(capsys, *argv: str) -> tuple[int, str]:
    try:
        animate.main(list(argv))
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["{root}/nope", "--size", "9"], "is not a directory"),
    (["{root}", "--size", "9"], "has no model.pt"),
    (["{run}", "--size", "8"], "odd integer"),
    (["{run}", "--size", "9", "--index", "4"], "--index must lie in [0, 3]"),
    (["{run}", "--size", "9", "--index", "-1"], "--index must be zero or positive"),
    (["{run}", "--size", "9", "--iters", "0"], "--iters must be a positive integer"),
    (["{run}", "--size", "9", "--settle", "0"], "--settle must be a positive integer"),
    (["{run}", "--size", "9", "--fps", "0"], "--fps must be a positive integer"),
    (["{run}", "--size", "9", "--out", "{root}/missing/a.gif"], "--out must name a .gif file"),
    (["{run}", "--size", "9", "--out", "{root}/a.png"], "--out must name a .gif file"),
    (["{run}", "--size", "nine"], "invalid int value"),
    (["{run}"], "--size"),
    (["{ff}", "--size", "9", "--iters", "4"], "--iters must be at most 3"),
])
def test_bad_input_is_one_sentence_exit_2_and_writes_nothing(tmp_path, capsys, argv, message):
    _make_run(tmp_path / "run")
    _make_run(tmp_path / "ff", depth=3, templates=None)  # unshared, depth 3: weights for 3 iterations only
    before = _listing(tmp_path)
    code, err = _animate(capsys, *(a.format(root=tmp_path, run=tmp_path / "run", ff=tmp_path / "ff") for a in argv))
    assert code == 2, err
    assert message in err and err.startswith("error: ") and err.count("\n") == 1 and err.rstrip().endswith("."), err
    assert _listing(tmp_path) == before


def test_default_iterations_stop_at_the_model_limit(tmp_path, capsys):
    _make_run(tmp_path / "ff", depth=3, templates=None)
    out, settled, n_frames = animate.run([str(tmp_path / "ff"), "--size", "9", "--out", str(tmp_path / "ff.gif"),
                                          "--settle", "5", "--device", "cpu"])
    assert settled == Settling() and n_frames == 3 == len(_frames(out))  # 3 iterations cannot confirm 5 repeats
