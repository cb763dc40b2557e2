"""Image tasks: CIFAR read from small archives the tests write in both official formats, digits.

The archives have the official layout (top folder, file names, dict keys or record layout,
extra files beside the batches) but a few images per file; the tests replace the checksum and
count table (``tasks.images.ARCHIVES``) for them. The python batches are written the way the
official ones were, by Python 2: byte strings as BINSTRING opcodes, arrays through
numpy's ``_reconstruct``. No test touches the network: sockets are blocked for the whole module.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import io
import os
import pickle
import socket
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from tasks import images
from tasks.base import TaskError
from tasks.images import ARCHIVES, Cifar100Task, Cifar10Task, DigitsTask

COUNTS = (15, 4)  # train images (spread over the training files), test images
TASKS = {"cifar10": Cifar10Task, "cifar100": Cifar100Task}
CASES = [(d, f) for d in TASKS for f in ("python", "binary")]


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


# ---------------------------------------------------------------------------- writing archives
class Python2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 ``str`` (BINSTRING), as the official batches hold them."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_bytes(self, obj):
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes


def py2_pickle(obj) -> bytes:
    out = io.BytesIO()
    Python2Pickler(out, protocol=2).dump(obj)
    return out.getvalue()


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def make_arrays(dataset: str, seed: int = 0):
    """The pixels (N, 3072) and labels (N,) of each split; every class boundary label occurs."""
    rng = np.random.default_rng(seed)
    classes = 10 if dataset == "cifar10" else 100
    out = {}
    for split, n in zip(("train", "test"), COUNTS):
        labels = rng.integers(0, classes, n)
        labels[:2] = (0, classes - 1)
        out[split] = (rng.integers(0, 256, (n, 3072), dtype=np.uint8), labels.astype(np.int64))
    return out


def write_folder(root: Path, dataset: str, fmt: str, arrays, batches=None) -> Path:
    """The extracted folder of an official archive, under ``root``; ``batches`` replaces file contents."""
    spec = ARCHIVES[dataset, fmt]
    folder = root / spec.folder
    folder.mkdir(parents=True)
    for split, files in (("train", spec.train), ("test", spec.test)):
        pixels, labels = arrays[split]
        for i, (x, y) in enumerate(zip(np.array_split(pixels, len(files)), np.array_split(labels, len(files)))):
            name = files[i]
            if fmt == "binary":
                header = y[:, None].astype(np.uint8) if dataset == "cifar10" else np.stack([y // 5, y], 1).astype(np.uint8)
                content = np.concatenate([header, x], 1).tobytes()
            else:
                batch = {b"batch_label": f"batch {name}".encode(), b"data": x,
                         b"filenames": [f"img_{j}.png".encode() for j in range(len(y))]}
                if dataset == "cifar10":
                    batch[b"labels"] = [int(v) for v in y]
                else:
                    batch[b"fine_labels"] = [int(v) for v in y]
                    batch[b"coarse_labels"] = [int(v) // 5 for v in y]
                content = py2_pickle(batch)
            (folder / name).write_bytes((batches or {}).get(name, content))
    (folder / "readme.html").write_text("<html>not data</html>")  # extra members are left alone
    return folder


def pack(folder: Path, archive: Path, skip: str | None = None) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(folder.iterdir()):
            if path.name != skip:
                tar.add(path, arcname=f"{folder.name}/{path.name}")
    return archive


def describe(monkeypatch, dataset, fmt, archive: Path | None = None, folder: Path | None = None):
    """Point ARCHIVES[dataset, fmt] at the test files: their MD5s and counts."""
    spec = dataclasses.replace(ARCHIVES[dataset, fmt], counts=COUNTS)
    if archive is not None:
        spec = dataclasses.replace(spec, md5=md5(archive))
    if folder is not None and fmt == "python":
        spec = dataclasses.replace(spec, member_md5=tuple((p.name, md5(p)) for p in folder.iterdir()))
    monkeypatch.setitem(ARCHIVES, (dataset, fmt), spec)
    return spec


def make_archive(tmp_path, monkeypatch, dataset, fmt, batches=None, skip=None):
    """``tmp_path/data/<official name>.tar.gz`` described in ARCHIVES; returns (data_dir, arrays)."""
    arrays = make_arrays(dataset)
    folder = write_folder(tmp_path / "src", dataset, fmt, arrays, batches)
    describe(monkeypatch, dataset, fmt, folder=folder)  # names first, so the file is named officially
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    archive = pack(folder, data_dir / ARCHIVES[dataset, fmt].file, skip)
    describe(monkeypatch, dataset, fmt, archive=archive, folder=folder)
    return data_dir, arrays


def leftovers(data_dir: Path) -> list[str]:
    """What is in ``data_dir`` besides archives: extracted folders and temporary files."""
    return sorted(p.name for p in data_dir.iterdir() if not p.name.endswith(".tar.gz"))


def assert_matches(split, pixels, labels):
    assert split.images.dtype == torch.uint8 and split.images.shape == (len(labels), 3, 32, 32)
    assert split.labels.dtype == torch.int64
    assert np.array_equal(split.images.numpy().reshape(len(labels), -1), pixels)
    assert np.array_equal(split.labels.numpy(), labels)


# ---------------------------------------------------------------------------- CIFAR loading
@pytest.mark.parametrize("dataset,fmt", CASES)
def test_right_checksum_loads_the_exact_pixels_and_labels_from_archive_then_folder(tmp_path, monkeypatch, dataset, fmt):
    data_dir, arrays = make_archive(tmp_path, monkeypatch, dataset, fmt)
    task = TASKS[dataset](data_dir=str(data_dir), format=fmt)
    splits = task.load()
    assert set(splits) == {"train", "test"}
    for split in ("train", "test"):
        assert_matches(splits[split], *arrays[split])
    spec = ARCHIVES[dataset, fmt]
    assert leftovers(data_dir) == [spec.folder]  # extracted in place, no temporary folder left
    assert sorted(p.name for p in (data_dir / spec.folder).iterdir()) == sorted(spec.train + spec.test)
    # Already extracted: the folder alone is read (the archive is gone).
    (data_dir / spec.file).unlink()
    again = TASKS[dataset](data_dir=str(data_dir), format="auto").load()
    for split in ("train", "test"):
        assert torch.equal(again[split].images, splits[split].images)
        assert torch.equal(again[split].labels, splits[split].labels)


def test_pixel_planes_are_red_green_blue_rows(tmp_path, monkeypatch):
    data_dir, arrays = make_archive(tmp_path, monkeypatch, "cifar10", "binary")
    image = Cifar10Task(data_dir=str(data_dir)).load()["train"].images[0]
    pixels = arrays["train"][0][0]
    assert image[0, 0, 1] == pixels[1] and image[1, 0, 0] == pixels[1024] and image[2, 31, 31] == pixels[3071]


@pytest.mark.parametrize("dataset,fmt", CASES)
def test_wrong_checksum_is_refused_and_nothing_is_extracted(tmp_path, monkeypatch, dataset, fmt):
    data_dir, _ = make_archive(tmp_path, monkeypatch, dataset, fmt)
    monkeypatch.setitem(ARCHIVES, (dataset, fmt), dataclasses.replace(ARCHIVES[dataset, fmt], md5="0" * 32))
    with pytest.raises(TaskError, match=f"{ARCHIVES[dataset, fmt].file} has MD5 [0-9a-f]{{32}}, not the published 0{{32}}"):
        TASKS[dataset](data_dir=str(data_dir), format=fmt).load()
    assert leftovers(data_dir) == []


@pytest.mark.parametrize("dataset,fmt", CASES)
def test_truncated_archive_is_refused_and_nothing_half_extracted(tmp_path, monkeypatch, dataset, fmt):
    data_dir, _ = make_archive(tmp_path, monkeypatch, dataset, fmt)
    path = data_dir / ARCHIVES[dataset, fmt].file
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])
    task = TASKS[dataset](data_dir=str(data_dir), format=fmt)
    with pytest.raises(TaskError, match="has MD5"):  # the published checksum catches it first
        task.load()
    # Even if the checksum matched, the extraction fails cleanly.
    monkeypatch.setitem(ARCHIVES, (dataset, fmt), dataclasses.replace(ARCHIVES[dataset, fmt], md5=md5(path)))
    with pytest.raises(TaskError, match="could not be extracted"):
        task.load()
    assert leftovers(data_dir) == []


def test_archive_lacking_a_batch_is_refused_and_nothing_extracted(tmp_path, monkeypatch):
    data_dir, _ = make_archive(tmp_path, monkeypatch, "cifar10", "python", skip="test_batch")
    with pytest.raises(TaskError, match="lacks cifar-10-batches-py/test_batch"):
        Cifar10Task(data_dir=str(data_dir), format="python").load()
    assert leftovers(data_dir) == []


@pytest.mark.parametrize("fmt", ["python", "binary", "auto"])
def test_missing_data_names_the_folder_the_file_and_its_checksum(tmp_path, fmt):
    with pytest.raises(TaskError) as err:
        Cifar100Task(data_dir=str(tmp_path), format=fmt).load()
    message = str(err.value)
    assert str(tmp_path) in message and "task.download=true" in message
    for f in (("python", "binary") if fmt == "auto" else (fmt,)):
        assert f"{ARCHIVES['cifar100', f].file} (MD5 {ARCHIVES['cifar100', f].md5})" in message
    assert list(tmp_path.iterdir()) == []


def test_extracted_folder_lacking_a_file_is_refused(tmp_path, monkeypatch):
    folder = write_folder(tmp_path, "cifar10", "binary", make_arrays("cifar10"))
    describe(monkeypatch, "cifar10", "binary")
    (folder / "data_batch_3.bin").unlink()
    with pytest.raises(TaskError, match="lacks data_batch_3.bin"):
        Cifar10Task(data_dir=str(tmp_path)).load()


def test_extracted_python_file_with_the_wrong_checksum_is_refused(tmp_path, monkeypatch):
    folder = write_folder(tmp_path, "cifar10", "python", make_arrays("cifar10"))
    describe(monkeypatch, "cifar10", "python", folder=folder)
    arrays = make_arrays("cifar10", seed=1)
    write_folder(tmp_path / "other", "cifar10", "python", arrays)
    os.replace(tmp_path / "other" / folder.name / "test_batch", folder / "test_batch")
    with pytest.raises(TaskError, match="test_batch has MD5"):
        Cifar10Task(data_dir=str(tmp_path), format="python").load()


def test_extracted_binary_file_of_the_wrong_size_is_refused(tmp_path, monkeypatch):
    folder = write_folder(tmp_path, "cifar100", "binary", make_arrays("cifar100"))
    describe(monkeypatch, "cifar100", "binary")
    with open(folder / "test.bin", "ab") as f:
        f.write(b"\0")
    with pytest.raises(TaskError, match="test.bin holds"):
        Cifar100Task(data_dir=str(tmp_path)).load()


def test_wrong_counts_and_labels_are_refused(tmp_path, monkeypatch):
    arrays = make_arrays("cifar10")
    arrays["test"][1][3] = 10  # no such CIFAR-10 class
    write_folder(tmp_path, "cifar10", "binary", arrays)
    describe(monkeypatch, "cifar10", "binary")
    with pytest.raises(TaskError, match="test labels outside 0..9"):
        Cifar10Task(data_dir=str(tmp_path)).load()
    folder = write_folder(tmp_path / "py", "cifar10", "python", make_arrays("cifar10"))
    spec = describe(monkeypatch, "cifar10", "python", folder=folder)
    monkeypatch.setitem(ARCHIVES, ("cifar10", "python"), dataclasses.replace(spec, counts=(16, 4)))
    with pytest.raises(TaskError, match="holds 15 train images, not the official 16"):
        Cifar10Task(data_dir=str(tmp_path / "py"), format="python").load()


# ---------------------------------------------------------------------------- crafted pickles
class RunsCode:
    """Unpickling this calls ``function(argument)``: what a malicious batch would do."""

    def __init__(self, function, argument):
        self.function, self.argument = function, argument

    def __reduce__(self):
        return self.function, (self.argument,)


def crafted(kind: str, marker: Path) -> bytes:
    if kind == "os.system":
        payload = RunsCode(os.system, f"touch {marker}")
    elif kind == "builtins.eval":
        payload = RunsCode(eval, f"open({str(marker)!r}, 'w').close()")
    elif kind == "float array":
        return py2_pickle({b"data": np.zeros((1, 3072), np.float32), b"labels": [0]})
    else:  # an object array would let the file hold arbitrary Python objects
        return py2_pickle({b"data": np.array([None], dtype=object), b"labels": [0]})
    return py2_pickle({b"data": payload, b"labels": [0]})


@pytest.mark.parametrize("kind,named", [("os.system", "posix.system"), ("builtins.eval", "(__builtin__|builtins).eval"),
                                        ("float array", "dtype 'f4'"), ("object array", "dtype 'O8'")])
def test_crafted_pickle_is_refused_without_running_anything(tmp_path, monkeypatch, kind, named):
    marker = tmp_path / "payload-ran"
    data_dir, _ = make_archive(tmp_path, monkeypatch, "cifar10", "python", batches={"data_batch_2": crafted(kind, marker)})
    with pytest.raises(TaskError, match=f"data_batch_2 is not an official CIFAR batch: it asks to build {named}, which a batch never holds"):
        Cifar10Task(data_dir=str(data_dir), format="python").load()
    assert not marker.exists()
    # Sanity check of the test itself: the plain unpickler does run the payload.
    if kind in ("os.system", "builtins.eval"):
        pickle.loads(crafted(kind, marker), encoding="latin1")
        assert marker.exists()


def test_garbage_and_non_dict_pickles_are_refused(tmp_path, monkeypatch):
    folder = write_folder(tmp_path, "cifar10", "python", make_arrays("cifar10"),
                          batches={"data_batch_1": b"not a pickle", "test_batch": py2_pickle([1, 2])})
    describe(monkeypatch, "cifar10", "python", folder=folder)
    with pytest.raises(TaskError, match="data_batch_1 is not a readable CIFAR batch"):
        Cifar10Task(data_dir=str(tmp_path), format="python").load()
    (folder / "data_batch_1").unlink()
    write_folder(tmp_path / "ok", "cifar10", "python", make_arrays("cifar10"))
    os.replace(tmp_path / "ok" / folder.name / "data_batch_1", folder / "data_batch_1")
    describe(monkeypatch, "cifar10", "python", folder=folder)
    with pytest.raises(TaskError, match="test_batch is not an official CIFAR batch: it holds a list"):
        Cifar10Task(data_dir=str(tmp_path), format="python").load()


# ---------------------------------------------------------------------------- download
class FakeOpener:
    """Stands in for urllib's urlopen: serves local bytes and records the URLs asked for."""

    def __init__(self, content: bytes):
        self.content, self.urls = content, []

    def __call__(self, url, timeout=None):
        self.urls.append(url)
        return io.BytesIO(self.content)


def test_download_only_when_asked_then_checked_and_extracted(tmp_path, monkeypatch):
    source, arrays = make_archive(tmp_path, monkeypatch, "cifar10", "binary")
    opener = FakeOpener((source / ARCHIVES["cifar10", "binary"].file).read_bytes())
    monkeypatch.setattr(images, "urlopen", opener)
    data_dir = tmp_path / "new" / "cifar"
    with pytest.raises(TaskError, match="no cifar10 data"):
        Cifar10Task(data_dir=str(data_dir)).load()
    assert opener.urls == []
    splits = Cifar10Task(data_dir=str(data_dir), download=True).load()  # auto: the binary version
    assert opener.urls == ["https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"]
    assert_matches(splits["train"], *arrays["train"])
    assert sorted(p.name for p in data_dir.iterdir()) == ["cifar-10-batches-bin", "cifar-10-binary.tar.gz"]


def test_download_with_the_wrong_checksum_keeps_nothing(tmp_path, monkeypatch):
    source, _ = make_archive(tmp_path, monkeypatch, "cifar100", "python")
    monkeypatch.setattr(images, "urlopen", FakeOpener(b"an error page, not the archive"))
    data_dir = tmp_path / "new"
    with pytest.raises(TaskError, match="the download of https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz has MD5"):
        Cifar100Task(data_dir=str(data_dir), download=True, format="python").load()
    assert not data_dir.exists()  # the folder made for the download is removed with it


def test_failed_download_is_one_sentence(tmp_path, monkeypatch):
    def fail(url, timeout=None):
        raise OSError("no route to host")

    monkeypatch.setattr(images, "urlopen", fail)
    with pytest.raises(TaskError, match=r"download of .* failed \(no route to host\); put cifar-10-binary.tar.gz \(MD5 c32a1d4ab5d03f1284b67883e8d87530\) in"):
        Cifar10Task(data_dir=str(tmp_path), download=True).load()
    assert list(tmp_path.iterdir()) == []


def test_failed_download_leaves_no_folder_behind(tmp_path, monkeypatch):
    """The folders made for a download are removed when it fails; a folder that cannot be made
    (below a regular file: root cannot write there either) is one sentence."""
    monkeypatch.setattr(images, "urlopen", lambda url, timeout=None: (_ for _ in ()).throw(OSError("no route to host")))
    with pytest.raises(TaskError, match="failed"):
        Cifar10Task(data_dir=str(tmp_path / "new" / "cifar"), download=True).load()
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(TaskError, match=r"cannot make .*file/cifar for the download \(Not a directory\); set task.data_dir"):
        Cifar10Task(data_dir=str(tmp_path / "file" / "cifar"), download=True).load()


def test_archive_on_a_read_only_mount_is_one_sentence(tmp_path, monkeypatch):
    """The official archive in a folder that cannot be written (a read-only dataset mount): the
    temporary extraction folder cannot be made; one sentence, nothing left (root ignores modes,
    so the mount's refusal is what mkdtemp raises there)."""
    data_dir, _ = make_archive(tmp_path, monkeypatch, "cifar10", "binary")

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(images.tempfile, "mkdtemp", read_only)
    with pytest.raises(TaskError, match=r"cannot be extracted: .* cannot be written \(Read-only file system\); extract"):
        Cifar10Task(data_dir=str(data_dir)).load()
    assert leftovers(data_dir) == []


# ---------------------------------------------------------------------------- splits and options
def test_validation_split_is_carved_from_training_by_a_seeded_permutation(tmp_path, monkeypatch):
    data_dir, arrays = make_archive(tmp_path, monkeypatch, "cifar10", "binary")
    full = Cifar10Task(data_dir=str(data_dir)).load()
    splits = Cifar10Task(data_dir=str(data_dir), val_size=5, split_seed=3).load()
    assert len(splits["val"]) == 5 and len(splits["train"]) == 10
    assert_matches(splits["test"], *arrays["test"])  # never touched
    rows = lambda s: {bytes(x.numpy()) for x in s.images}  # noqa: E731
    assert rows(splits["val"]).isdisjoint(rows(splits["train"]))
    assert rows(splits["val"]) | rows(splits["train"]) == rows(full["train"])
    same = Cifar10Task(data_dir=str(data_dir), val_size=5, split_seed=3).load()
    other = Cifar10Task(data_dir=str(data_dir), val_size=5, split_seed=4).load()
    assert torch.equal(same["val"].images, splits["val"].images)
    assert not torch.equal(other["val"].images, splits["val"].images)
    with pytest.raises(TaskError, match="val_size must be smaller than the 15 training images, got 15"):
        Cifar10Task(data_dir=str(data_dir), val_size=15).load()


def test_normalisation_is_the_per_channel_mean_and_std_of_the_training_images():
    images = torch.tensor([[[[0, 255]], [[51, 51]]], [[[255, 255]], [[102, 0]]]], dtype=torch.uint8)  # (2, 2, 1, 2)
    split = images_module_split(images)
    mean, std = DigitsTask().normalisation(split)
    assert mean.dtype == std.dtype == torch.float32 and mean.shape == (2,)
    x = images.numpy().astype(np.float64) / 255
    np.testing.assert_allclose(mean.numpy(), [x[:, 0].mean(), x[:, 1].mean()], rtol=1e-6)
    np.testing.assert_allclose(std.numpy(), [x[:, 0].std(ddof=1), x[:, 1].std(ddof=1)], rtol=1e-6)


def images_module_split(x):
    return images.ImageSplit(x, torch.zeros(len(x), dtype=torch.int64))


@pytest.mark.parametrize("kwargs,message", [
    ({"format": "matlab"}, "format must be one of auto, binary, python, got 'matlab'"),
    ({"download": "yes"}, "download must be true or false"),
    ({"val_size": -1}, "val_size must be an integer >= 0"),
    ({"padding": 1.5}, "padding must be an integer >= 0"),
    ({"flip": 1}, "flip must be true or false"),
    ({"data_dir": ""}, "data_dir must be a folder path"),
])
def test_bad_options_are_one_sentence(tmp_path, kwargs, message):
    with pytest.raises(TaskError, match=message):
        Cifar10Task(**{"data_dir": str(tmp_path), **kwargs})
    assert list(tmp_path.iterdir()) == []  # constructing writes nothing


def test_cifar_defaults_and_specs():
    task = Cifar100Task(data_dir="~/somewhere")
    assert (task.padding, task.flip, task.cutout, task.val_size, task.format, task.download) == (4, True, 0, 0, "auto", False)
    assert task.data_dir == Path.home() / "somewhere"
    assert (task.spec.dims, task.spec.in_channels, task.spec.num_classes) == (2, 3, 100)
    assert Cifar10Task(data_dir="x").spec.num_classes == 10


def test_published_checksums_are_the_defaults():
    assert {key: a.md5 for key, a in ARCHIVES.items()} == {
        ("cifar10", "python"): "c58f30108f718f92721af3b95e74349a",
        ("cifar100", "python"): "eb9058c3a382ffc7106e4002c42a8d85",
        ("cifar10", "binary"): "c32a1d4ab5d03f1284b67883e8d87530",
        ("cifar100", "binary"): "03b5dce01913d631647c71ecec9e9cb8",
    }


# ---------------------------------------------------------------------------- digits
def test_digits_are_sklearns_images_scaled_to_bytes_in_a_fixed_stratified_split():
    from sklearn.datasets import load_digits

    task = DigitsTask()
    assert (task.padding, task.flip, task.cutout) == (1, False, 0)
    assert (task.spec.dims, task.spec.in_channels, task.spec.num_classes) == (2, 1, 10)
    splits = task.load()
    train, test = splits["train"], splits["test"]
    assert set(splits) == {"train", "test"} and len(train) + len(test) == 1797 and len(test) == 360
    assert train.images.dtype == torch.uint8 and train.images.shape[1:] == (1, 8, 8)
    assert train.labels.dtype == torch.int64
    assert int(train.images.max()) == 255 and int(train.images.min()) == 0
    # Every test image is one of sklearn's, its value v (0..16) stored as round(v * 255 / 16).
    digits = load_digits()
    by_bytes = {np.rint(img * 255 / 16).astype(np.uint8).tobytes(): int(y) for img, y in zip(digits.images, digits.target)}
    assert all(by_bytes[x.numpy().tobytes()] == int(y) for x, y in zip(test.images[:, 0], test.labels))
    # Stratified: each class's share of the test set is its share of the whole, within one image.
    whole = np.bincount(digits.target, minlength=10) / 1797
    assert np.all(np.abs(np.bincount(test.labels.numpy(), minlength=10) - whole * 360) <= 1)
    # Fixed by split_seed, not by chance.
    assert torch.equal(DigitsTask().load()["test"].images, test.images)
    assert not torch.equal(DigitsTask(split_seed=1).load()["test"].images, test.images)


def test_digits_validation_split_and_options():
    splits = DigitsTask(test_fraction=0.5, val_size=100).load()
    assert (len(splits["train"]), len(splits["val"]), len(splits["test"])) == (798, 100, 899)
    with pytest.raises(TaskError, match="test_fraction must be a number strictly between 0 and 1, got 1"):
        DigitsTask(test_fraction=1)
