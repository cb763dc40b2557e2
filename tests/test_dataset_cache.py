"""The dataset cache trusts a file only if its checksum and its values fit the task; else it regenerates."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from tasks.base import TaskError, _checksum
from tasks.maze import MazeTask
from tasks.prefix_sums import PrefixSumsTask
from tasks.shortest_path import ShortestPathTask

TASKS = [(MazeTask(), 5), (PrefixSumsTask(), 8), (ShortestPathTask(), 5)]


def _rewrite(path, inputs, targets, checksum=None):
    np.savez(path, inputs=inputs, targets=targets,
             checksum=_checksum(inputs, targets) if checksum is None else checksum)


def _tampered(kind: str, inputs: np.ndarray, targets: np.ndarray):
    inputs, targets = inputs.copy(), targets.copy()
    if kind == "nan-input":
        inputs[0, 0, 0] = np.nan
    elif kind == "inf-input":
        inputs[-1, 0, -1] = np.inf
    elif kind == "target-too-big":
        targets[1, -1] = 2
    elif kind == "negative-target":
        targets[0, 0] = -1
    return inputs, targets


@pytest.mark.parametrize("task,size", TASKS, ids=[t.name for t, _ in TASKS])
@pytest.mark.parametrize("kind", ["nan-input", "inf-input", "target-too-big", "negative-target"])
@pytest.mark.parametrize("with_valid_checksum", [False, True], ids=["stale-checksum", "recomputed-checksum"])
def test_right_shape_and_dtype_but_bad_values_are_regenerated(tmp_path, caplog, task, size, kind, with_valid_checksum):
    ref_x, ref_y = task.dataset(size, 3, seed=2, cache_dir=tmp_path).tensors
    (path,) = tmp_path.glob("*.npz")
    bad_x, bad_y = _tampered(kind, ref_x.numpy(), ref_y.numpy())
    assert bad_x.shape == ref_x.shape and bad_x.dtype == np.float32 and bad_y.dtype == np.int64
    # A stale checksum is what corruption leaves; a recomputed one is a file written by other code.
    _rewrite(path, bad_x, bad_y, checksum=None if with_valid_checksum else _checksum(ref_x.numpy(), ref_y.numpy()))

    with caplog.at_level(logging.WARNING, logger="tasks.base"):
        x, y = task.dataset(size, 3, seed=2, cache_dir=tmp_path).tensors
    assert torch.equal(x, ref_x) and torch.equal(y, ref_y)
    assert "not trusted" in caplog.text
    with np.load(path) as f:  # the file was replaced by the regenerated arrays
        np.testing.assert_array_equal(f["targets"], ref_y.numpy())
        assert np.isfinite(f["inputs"]).all()


def test_a_file_without_a_checksum_is_regenerated(tmp_path, caplog):
    task = PrefixSumsTask()
    ref_x, ref_y = task.dataset(6, 2, seed=0, cache_dir=tmp_path).tensors
    (path,) = tmp_path.glob("*.npz")
    np.savez(path, inputs=ref_x.numpy(), targets=(1 - ref_y).numpy())  # the format before checksums, and wrong
    with caplog.at_level(logging.WARNING, logger="tasks.base"):
        _, y = task.dataset(6, 2, seed=0, cache_dir=tmp_path).tensors
    assert torch.equal(y, ref_y) and "not trusted" in caplog.text


def test_a_trusted_file_is_read_not_regenerated(tmp_path, monkeypatch):
    task = ShortestPathTask()
    ref_x, ref_y = task.dataset(5, 3, seed=1, cache_dir=tmp_path).tensors
    monkeypatch.setattr(task, "generate", lambda *a: pytest.fail("regenerated a valid cache file"))
    x, y = task.dataset(5, 3, seed=1, cache_dir=tmp_path).tensors
    assert torch.equal(x, ref_x) and torch.equal(y, ref_y)


@pytest.mark.parametrize("change,message", [
    (lambda x, y: (x.astype(np.float64), y), "must be float32"),
    (lambda x, y: (x, y[:, :-1]), "need inputs"),
    (lambda x, y: (x * 3, y), "lie in [-0.5, 0.5]"),
    (lambda x, y: (x, y + 2), "class indices in [0, 1]"),
])
def test_check_arrays_names_what_is_wrong(change, message):
    task = PrefixSumsTask()
    x, y = task.generate(6, 2, seed=0)
    task.check_arrays(6, x, y)
    with pytest.raises(TaskError, match=message.replace("[", r"\[").replace("]", r"\]")) as err:
        task.check_arrays(6, *change(x, y))
    assert "\n" not in str(err.value) and str(err.value).endswith(".")


def test_a_cache_file_declaring_huge_arrays_is_refused_from_its_header(tmp_path, caplog, monkeypatch):
    """A cache file is read only after its headers declare exactly this dataset's arrays: a few
    kilobytes declaring 12 TB are regenerated without numpy ever allocating what they declare."""
    import io
    import zipfile

    task = MazeTask()
    ref_x, ref_y = task.dataset(5, 3, seed=2, cache_dir=tmp_path).tensors
    (path,) = tmp_path.glob("*.npz")
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (10**6, 3, 1000, 1000)})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("inputs.npy", header.getvalue() + bytes(4096))
        archive.writestr("targets.npy", header.getvalue() + bytes(4096))
    real_load = np.load
    monkeypatch.setattr(np, "load", lambda file, *a, **k: pytest.fail("read a file whose headers were wrong")
                        if str(file) == str(path) else real_load(file, *a, **k))
    with caplog.at_level(logging.WARNING, logger="tasks.base"):
        x, y = task.dataset(5, 3, seed=2, cache_dir=tmp_path).tensors
    assert torch.equal(x, ref_x) and torch.equal(y, ref_y)
    assert "not trusted" in caplog.text and "declares arrays of 24000000000000 bytes" in caplog.text
