"""Atomic writes: a writer that fails midway (a full disk) leaves the previous file and no temporary.

The "full disk" is a patched writer that writes part of its bytes, then raises ENOSPC, as
``write(2)`` does when a filesystem fills up; every writer a run uses is checked this way.
"""

from __future__ import annotations

import errno
import io
import json
import os
from dataclasses import replace

import matplotlib.figure
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from benchmark.infra import checkpoint
from benchmark.analysis import plots as plot
from benchmark.infra.checkpoint import load_checkpoint, save_checkpoint
from tasks.fileio import atomic_path, write_atomic, write_json, write_text
from benchmark.models.recurrent import RecurrentConvNet
from benchmark.infra.results import EvalResult
from tasks.maze import MazeTask
from tasks.prefix_sums import PrefixSumsTask


def disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _half_then_full(save, target_first: bool = False):
    """A version of ``save(obj, target)`` (``save(target, **arrays)`` with ``target_first``) that
    writes half of its bytes to the target, then fails as a full disk does."""

    def writer(*args, **kwargs):
        target, rest = (args[0], args[1:]) if target_first else (args[1], args[:1] + args[2:])
        buffer = io.BytesIO()
        save(buffer, *rest, **kwargs) if target_first else save(rest[0], buffer, *rest[1:], **kwargs)
        data = buffer.getvalue()
        if hasattr(target, "write"):
            target.write(data[: len(data) // 2])
        else:
            with open(target, "wb") as handle:
                handle.write(data[: len(data) // 2])
        disk_full()

    return writer


def _only(directory):
    return sorted(p.name for p in directory.iterdir())


# ---------------------------------------------------------------------------- tasks.fileio
def test_write_text_and_json_replace_the_file(tmp_path):
    path = tmp_path / "a.json"
    write_json(path, {"x": [1, 2.5]})
    assert json.loads(path.read_text()) == {"x": [1, 2.5]}
    write_text(path, "second")
    assert path.read_text() == "second" and _only(tmp_path) == ["a.json"]


def test_write_json_refuses_nan_and_leaves_the_previous_file(tmp_path):
    path = tmp_path / "eval.json"
    write_json(path, {"acc": 0.5})
    with pytest.raises(ValueError):
        write_json(path, {"acc": float("nan")})
    assert json.loads(path.read_text()) == {"acc": 0.5} and _only(tmp_path) == ["eval.json"]


def test_failing_writer_leaves_previous_content_and_no_temporary(tmp_path):
    path = tmp_path / "metrics.txt"
    write_text(path, "previous")

    def write(handle):
        handle.write("half of the new ")
        handle.flush()
        disk_full()

    with pytest.raises(OSError, match="No space left"):
        write_atomic(path, write)
    assert path.read_text() == "previous" and _only(tmp_path) == ["metrics.txt"]


def test_failing_writer_leaves_no_file_where_there_was_none(tmp_path):
    with pytest.raises(OSError):
        write_atomic(tmp_path / "new.bin", lambda h: (h.write(b"abc"), disk_full()), mode="wb")
    assert _only(tmp_path) == []


def test_interrupt_inside_atomic_path_cleans_up(tmp_path):
    path = tmp_path / "x"
    with pytest.raises(KeyboardInterrupt), atomic_path(path) as tmp:
        tmp.write_bytes(b"partial")
        assert tmp.parent == tmp_path and tmp != path  # same directory: the rename is atomic
        raise KeyboardInterrupt
    assert _only(tmp_path) == []


# ---------------------------------------------------------------------------- what runs write
def test_checkpoint_save_on_a_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    cfg = OmegaConf.create({"model": {"_target_": "benchmark.models.recurrent.RecurrentConvNet", "width": 4},
                            "task": {"_target_": "tasks.maze.MazeTask"}})
    first = RecurrentConvNet(MazeTask.spec, width=4)
    path = tmp_path / "model.pt"
    save_checkpoint(first, cfg, path)
    good = path.read_bytes()

    monkeypatch.setattr(checkpoint.torch, "save", _half_then_full(torch.save))
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(RecurrentConvNet(MazeTask.spec, width=4), cfg, path)
    assert path.read_bytes() == good and _only(tmp_path) == ["model.pt"]
    monkeypatch.undo()
    loaded, _ = load_checkpoint(path)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in first.state_dict().items())


def test_cache_write_on_a_full_disk_leaves_no_file(tmp_path, monkeypatch):
    task = PrefixSumsTask()
    monkeypatch.setattr(np, "savez", _half_then_full(np.savez, target_first=True))
    with pytest.raises(OSError, match="No space left"):
        task.dataset(8, 4, seed=0, cache_dir=tmp_path)
    assert _only(tmp_path) == []
    monkeypatch.undo()
    x, y = task.dataset(8, 4, seed=0, cache_dir=tmp_path).tensors  # the next run writes it whole
    assert len(_only(tmp_path)) == 1 and torch.equal(y, torch.from_numpy(task.generate(8, 4, seed=0)[1]))


def test_plot_on_a_full_disk_keeps_the_previous_image(tmp_path, monkeypatch):
    result = EvalResult(iterations=3, train_iters=2, accuracy={9: (0.1, 0.5, 0.7)})
    path = plot.plot_extrapolation(result, tmp_path / "extrapolation.png")
    good = path.read_bytes()
    assert good.startswith(b"\x89PNG")  # a PNG although the temporary file's name ends in .tmp

    def savefig(fig, target, **kwargs):
        with open(target, "wb") as handle:
            handle.write(b"\x89PNG half")
        disk_full()

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
    with pytest.raises(OSError, match="No space left"):
        plot.plot_extrapolation(replace(result, accuracy={9: (0.0, 0.0, 1.0)}), path)
    assert path.read_bytes() == good and _only(tmp_path) == ["extrapolation.png"]


def test_published_files_get_the_usual_mode_not_the_temporary_files_private_one(tmp_path):
    umask = os.umask(0o022)
    try:
        write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(umask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
