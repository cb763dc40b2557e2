"""Image-classification tasks whose data is read, not generated: CIFAR-10, CIFAR-100, digits.

A puzzle task (``tasks.base.Task``) *makes* its data from a seed, at any size. An image task
*reads* a fixed data set: it has one size, an official train/test split, and a label per image
rather than per position. So it has its own small interface, ``ImageTask``: ``load()`` returns
the splits as uint8 tensors, ``normalisation()`` the per-channel statistics of the training
images, and three plain attributes tell the training loop how to augment a batch
(``benchmark.training.augment``: padded random crop, horizontal flip, cutout). Like a puzzle task, it
knows nothing about models or training, and the engine meets it only through ``spec``.

CIFAR is read from the official archives of https://www.cs.toronto.edu/~kriz/cifar.html in
either of its two formats, as the ``.tar.gz`` or already extracted:

- "python": pickled dicts. Unpickling is restricted to exactly what the official batches hold
  (dicts, lists, strings, ints, uint8 numpy arrays): a file that names any other class or
  function is refused before anything from it runs.
- "binary": fixed-length records, ``<label byte(s)><3072 pixel bytes>``; nothing to unpickle.

Every archive is checked against its published MD5 before it is opened; its files are extracted
into a temporary directory that is renamed into place only once complete, so an interrupted or
failed extraction never leaves a half-filled data folder. ``docs/image_tasks.md`` says where to
put the files.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from urllib.request import urlopen

import numpy as np
import torch

from tasks.fileio import atomic_path
from tasks.base import TaskError, TaskSpec
from tasks.registry import register_task

log = logging.getLogger(__name__)

PIXELS = 3 * 32 * 32  # one CIFAR image, planes R, G, B, each 32x32 row-major
BASE_URL = "https://www.cs.toronto.edu/~kriz/"


@dataclass(frozen=True)
class ImageSplit:
    images: torch.Tensor  # uint8 (N, C, H, W)
    labels: torch.Tensor  # int64 (N,)

    def __len__(self) -> int:
        return int(self.labels.shape[0])


# ---------------------------------------------------------------------------- the interface
class ImageTask:
    """Base class of every read (not generated) image-classification task.

    Subclasses set ``name`` and ``spec`` and implement ``_read`` (the official train and test
    splits). ``val_size`` and ``split_seed`` are shared by all: ``val_size`` images are carved
    from the training set by a permutation seeded with ``split_seed`` (fixed, not the run's
    seed, so that every run of a comparison holds out the same images); the test set is never
    used for validation.
    """

    name: ClassVar[str]
    spec: ClassVar[TaskSpec]

    def __init__(self, padding: int, flip: bool, cutout: int, val_size: int = 0, split_seed: int = 0) -> None:
        self.padding = _count("padding", padding)
        self.cutout = _count("cutout", cutout)
        if not isinstance(flip, bool):
            raise TaskError(f"{self.name} flip must be true or false, got {flip!r}.")
        self.flip = flip
        self.val_size = _count("val_size", val_size)
        self.split_seed = _count("split_seed", split_seed)

    def _read(self) -> tuple[ImageSplit, ImageSplit]:
        """The official (train, test) splits."""
        raise NotImplementedError

    def load(self) -> dict[str, ImageSplit]:
        """``"train"`` and ``"test"`` (the official split), plus ``"val"`` when ``val_size`` > 0."""
        train, test = self._read()
        if self.val_size == 0:
            return {"train": train, "test": test}
        if self.val_size >= len(train):
            raise TaskError(f"{self.name} val_size must be smaller than the {len(train)} training images, got {self.val_size}.")
        generator = torch.Generator().manual_seed(self.split_seed)
        order = torch.randperm(len(train), generator=generator)
        # Sorted, so both parts keep the file order of the images they hold.
        held, kept = order[: self.val_size].sort().values, order[self.val_size:].sort().values
        return {
            "train": ImageSplit(train.images[kept], train.labels[kept]),
            "val": ImageSplit(train.images[held], train.labels[held]),
            "test": test,
        }

    def normalisation(self, train: ImageSplit) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and std (float32, shape (C,)) of the training images scaled to [0, 1]."""
        # From each channel's histogram of the 256 byte values: exact, and no float copy of the
        # whole set (CIFAR's would take 1.2 GB in float64).
        values = torch.arange(256, dtype=torch.float64) / 255
        means, stds = [], []
        for c in range(train.images.shape[1]):
            counts = torch.bincount(train.images[:, c].flatten(), minlength=256).to(torch.float64)  # (256,)
            n = counts.sum()
            mean = (counts * values).sum() / n
            means.append(mean)
            stds.append(((counts * (values - mean) ** 2).sum() / (n - 1)).sqrt())  # unbiased, as torch.std
        return torch.stack(means).float(), torch.stack(stds).float()


def _count(what: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise TaskError(f"{what} must be an integer >= 0, got {value!r}.")
    return int(value)


# ---------------------------------------------------------------------------- CIFAR archives
@dataclass(frozen=True)
class Archive:
    """One official CIFAR archive: its name, checksum and the files it holds."""

    file: str  # the .tar.gz, e.g. cifar-10-python.tar.gz
    md5: str  # published on the CIFAR page
    folder: str  # the one top-level folder inside the archive
    train: tuple[str, ...]  # files of the training split, in order
    test: tuple[str, ...]
    counts: tuple[int, int]  # images in (train, test)
    label_key: str = ""  # python format: the dict key of the labels
    header: int = 0  # binary format: label bytes before each image's pixels; the label is the last
    # MD5 of each extracted file, where one is established (torchvision's tables for the python
    # version); an extracted folder of the binary version is checked by its exact size instead.
    member_md5: tuple[tuple[str, str], ...] = ()

    @property
    def format(self) -> str:
        return "python" if self.label_key else "binary"

    @property
    def url(self) -> str:
        return BASE_URL + self.file


_C10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))

# (dataset, format) -> archive. Tests replace entries to describe their small archives.
ARCHIVES: dict[tuple[str, str], Archive] = {
    ("cifar10", "python"): Archive(
        "cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a", "cifar-10-batches-py",
        _C10_TRAIN, ("test_batch",), (50_000, 10_000), label_key="labels",
        member_md5=(
            ("data_batch_1", "c99cafc152244af753f735de768cd75f"),
            ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
            ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
            ("data_batch_4", "634d18415352ddfa80567beed471001a"),
            ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
            ("test_batch", "40351d587109b95175f43aff81a1287e"),
        ),
    ),
    ("cifar100", "python"): Archive(
        "cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85", "cifar-100-python",
        ("train",), ("test",), (50_000, 10_000), label_key="fine_labels",
        member_md5=(("train", "16019d7e3df5f24257cddd939b257f8d"), ("test", "f0ef6b0ae62326f3e7ffdfab6717acfc")),
    ),
    ("cifar10", "binary"): Archive(
        "cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530", "cifar-10-batches-bin",
        tuple(f"{f}.bin" for f in _C10_TRAIN), ("test_batch.bin",), (50_000, 10_000), header=1,
    ),
    ("cifar100", "binary"): Archive(
        "cifar-100-binary.tar.gz", "03b5dce01913d631647c71ecec9e9cb8", "cifar-100-binary",
        ("train.bin",), ("test.bin",), (50_000, 10_000), header=2,  # coarse label, fine label
    ),
}

FORMATS = ("auto", "binary", "python")  # auto: whichever is present, binary first (nothing to unpickle)


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _sizes(archive: Archive) -> dict[str, int]:
    """Exact byte size of each binary file (the records of one split spread evenly over its files)."""
    sizes = {}
    for files, count in zip((archive.train, archive.test), archive.counts):
        for name in files:
            sizes[name] = count // len(files) * (archive.header + PIXELS)
    return sizes


def _check_member(archive: Archive, path: Path) -> None:
    """Raise TaskError if an extracted file is not the official one (by MD5, else by size)."""
    expected = dict(archive.member_md5).get(path.name)
    if expected is not None:
        found = md5sum(path)
        if found != expected:
            raise TaskError(f"{path} has MD5 {found}, not {expected}: it is damaged or not from {archive.file}; delete its folder and extract the archive again.")
    elif archive.header:
        size, want = path.stat().st_size, _sizes(archive)[path.name]
        if size != want:
            raise TaskError(f"{path} holds {size} bytes, not the {want} of the official file: delete its folder and extract {archive.file} again.")


def _extract(archive: Archive, data_dir: Path) -> None:
    """Check ``data_dir/archive.file`` against its MD5, then extract its data files.

    Only the expected regular files are written (no other member, link or path from the
    archive), into a temporary folder beside the destination that is renamed into place once
    every file is complete; on any failure the temporary folder is removed.
    """
    path = data_dir / archive.file
    found = md5sum(path)
    if found != archive.md5:
        raise TaskError(f"{path} has MD5 {found}, not the published {archive.md5}: it is damaged or not the official archive; delete it and put the official one there.")
    wanted = {f"{archive.folder}/{name}": name for name in archive.train + archive.test}
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{archive.folder}.", suffix=".tmp", dir=data_dir))
    except OSError as err:  # a read-only dataset mount holding only the archive
        raise TaskError(f"{path} cannot be extracted: {data_dir} cannot be written ({err.strerror or type(err).__name__}); "
                        f"extract {archive.file} into a writable folder and set task.data_dir to it.") from err
    try:
        (tmp / archive.folder).mkdir()
        written = set()
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                name = wanted.get(member.name.removeprefix("./"))
                if name is None or not member.isfile():
                    continue
                source = tar.extractfile(member)
                assert source is not None  # a regular file always has contents
                with source, open(tmp / archive.folder / name, "wb") as target:
                    shutil.copyfileobj(source, target, 1 << 20)
                written.add(name)
        missing = sorted(set(wanted.values()) - written)
        if missing:
            raise TaskError(f"{path} lacks {archive.folder}/{missing[0]}: it is not the official archive; delete it and put the official one there.")
        os.replace(tmp / archive.folder, data_dir / archive.folder)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:  # a truncated or corrupt archive
        raise TaskError(f"{path} could not be extracted ({err}); delete it and put the official archive there.") from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _download(archive: Archive, data_dir: Path) -> None:
    """Fetch the official archive to a temporary file, check its MD5, then rename it into place.
    The folders made for it are removed again when the download fails (none is left empty)."""
    made = [folder for folder in (data_dir, *data_dir.parents) if not folder.exists()]  # deepest first
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise TaskError(f"cannot make {data_dir} for the download ({err.strerror or type(err).__name__}); "
                        f"set task.data_dir to a writable folder.") from err
    path = data_dir / archive.file
    log.info("downloading %s to %s", archive.url, path)
    try:
        _fetch(archive, data_dir, path)
    except BaseException:
        for folder in made:
            try:
                folder.rmdir()  # only when still empty
            except OSError:
                break
        raise


def _fetch(archive: Archive, data_dir: Path, path: Path) -> None:
    try:
        with atomic_path(path) as tmp:
            digest = hashlib.md5()
            with urlopen(archive.url, timeout=60) as response, open(tmp, "wb") as out:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != archive.md5:
                raise TaskError(f"the download of {archive.url} has MD5 {digest.hexdigest()}, not the published {archive.md5}; nothing was kept, try again later.")
    except OSError as err:  # urllib's URLError is an OSError
        raise TaskError(f"the download of {archive.url} failed ({err}); put {archive.file} (MD5 {archive.md5}) in {data_dir} yourself.") from err


# ---------------------------------------------------------------------------- reading the files
class _BatchUnpickler(pickle.Unpickler):
    """Unpickles the official python batches and nothing else.

    A batch is a dict of strings, lists of ints or strings, and one uint8 numpy array. Python
    builds those from opcodes alone; the array needs three globals, and each is wrapped so that
    it accepts only what a uint8 ndarray needs. Any other global (``os.system``, ``eval``, a
    class) is refused when the pickle names it, before it could be called.
    """

    def find_class(self, module: str, name: str) -> Any:
        allowed = _ALLOWED_GLOBALS.get((module, name))
        if allowed is None:
            raise _Refused(f"{module}.{name}")
        return allowed


class _Refused(Exception):
    pass


_NUMPY_RECONSTRUCT = np.empty(0).__reduce__()[0]  # numpy.core.multiarray._reconstruct (numpy._core in 2.x)


def _reconstruct(subtype: Any, shape: Any, typecode: Any) -> np.ndarray:
    if subtype is not np.ndarray:
        raise _Refused(f"an array of type {subtype!r}")
    return _NUMPY_RECONSTRUCT(np.ndarray, shape, typecode)


def _dtype(spec: Any, align: Any = False, copy: Any = False) -> np.dtype:
    if spec not in ("u1", "uint8"):
        raise _Refused(f"dtype {spec!r}")
    return np.dtype("u1")


_ALLOWED_GLOBALS = {
    # numpy 1.x writes numpy.core.multiarray (the official files do), numpy 2.x numpy._core.multiarray.
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _dtype,
}


def _unpickle(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            # latin1: the official files were written by Python 2, whose byte strings (dict keys,
            # the array's raw bytes) become str here; numpy accepts the array's bytes so.
            batch = _BatchUnpickler(f, encoding="latin1").load()
    except _Refused as refused:
        raise TaskError(f"{path} is not an official CIFAR batch: it asks to build {refused}, which a batch never holds, so it was not loaded.") from None
    except Exception as err:  # any malformed pickle: truncated, wrong opcodes, bad arguments
        raise TaskError(f"{path} is not a readable CIFAR batch ({type(err).__name__}: {err}); delete its folder and extract the archive again.") from None
    if not isinstance(batch, dict):
        raise TaskError(f"{path} is not an official CIFAR batch: it holds a {type(batch).__name__}, not a dict.")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}


def _read_python(archive: Archive, path: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(path)
    data, labels = batch.get("data"), batch.get(archive.label_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != PIXELS:
        raise TaskError(f"{path} is not an official CIFAR batch: its 'data' is not an N x {PIXELS} uint8 array.")
    if not isinstance(labels, list) or len(labels) != len(data) or not all(type(y) is int for y in labels):
        raise TaskError(f"{path} is not an official CIFAR batch: its '{archive.label_key}' is not a list of {len(data)} integers.")
    return data, np.asarray(labels, dtype=np.int64)


def _read_binary(archive: Archive, path: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    raw = np.fromfile(path, dtype=np.uint8)
    record = archive.header + PIXELS
    if raw.size % record:
        raise TaskError(f"{path} is not an official CIFAR binary file: its {raw.size} bytes are not whole {record}-byte records.")
    records = raw.reshape(-1, record)  # (N, header + 3072)
    return records[:, archive.header:], records[:, archive.header - 1].astype(np.int64)


class _Cifar(ImageTask):
    """CIFAR from the official archives (see the module docstring and docs/image_tasks.md).

    Constructor arguments (plain values, the task's config keys):

    - ``data_dir`` (str): the folder holding the archive (``.tar.gz``) or its extracted folder;
      ``~`` is expanded. The configs put it under the cache directory.
    - ``download`` (bool, default false): fetch the archive from the official URL when it is
      missing (checked against its MD5 before it is kept). Never implied.
    - ``format`` ("auto", "binary" or "python"; default "auto"): which official format to read;
      "auto" takes whichever is present, binary first, and downloads the binary one.
    - ``val_size`` (int, default 0), ``split_seed`` (int, default 0): see ``ImageTask``.
    - ``padding`` (default 4), ``flip`` (default true), ``cutout`` (default 0, off): augmentation.
    """

    def __init__(self, data_dir: str, download: bool = False, format: str = "auto", val_size: int = 0,
                 split_seed: int = 0, padding: int = 4, flip: bool = True, cutout: int = 0) -> None:
        super().__init__(padding=padding, flip=flip, cutout=cutout, val_size=val_size, split_seed=split_seed)
        if not isinstance(data_dir, (str, os.PathLike)) or not str(data_dir):
            raise TaskError(f"{self.name} data_dir must be a folder path, got {data_dir!r}.")
        if not isinstance(download, bool):
            raise TaskError(f"{self.name} download must be true or false, got {download!r}.")
        if format not in FORMATS:
            raise TaskError(f"{self.name} format must be one of {', '.join(FORMATS)}, got {format!r}.")
        self.data_dir = Path(data_dir).expanduser()
        self.download = download
        self.format = format

    def _archives(self) -> list[Archive]:
        formats = ("binary", "python") if self.format == "auto" else (self.format,)
        return [ARCHIVES[self.name, f] for f in formats]

    def _locate(self) -> tuple[Archive, Path]:
        """The archive to read and its extracted folder, extracting or downloading it first if needed."""
        archives = self._archives()
        for archive in archives:
            folder = self.data_dir / archive.folder
            if folder.is_dir():
                return archive, folder
            if (self.data_dir / archive.file).is_file():
                _extract(archive, self.data_dir)
                return archive, folder
        if self.download:
            archive = archives[0]
            _download(archive, self.data_dir)
            _extract(archive, self.data_dir)
            return archive, self.data_dir / archive.folder
        wanted = " or ".join(f"{a.file} (MD5 {a.md5})" for a in archives)
        raise TaskError(f"no {self.name} data in {self.data_dir}: put {wanted} there, or its extracted folder, or set task.download=true to fetch it.")

    def _read(self) -> tuple[ImageSplit, ImageSplit]:
        archive, folder = self._locate()
        read = _read_python if archive.format == "python" else _read_binary
        splits = []
        for split, files, count in zip(("train", "test"), (archive.train, archive.test), archive.counts):
            images, labels = [], []
            for name in files:
                path = folder / name
                if not path.is_file():
                    raise TaskError(f"{folder} lacks {name}: delete the folder and extract {archive.file} again.")
                _check_member(archive, path)
                x, y = read(archive, path, self.spec.num_classes)
                images.append(x)
                labels.append(y)
            x, y = np.concatenate(images), np.concatenate(labels)
            if len(x) != count:
                raise TaskError(f"{folder} holds {len(x)} {split} images, not the official {count}: delete it and extract {archive.file} again.")
            if y.min() < 0 or y.max() >= self.spec.num_classes:
                raise TaskError(f"{folder} has {split} labels outside 0..{self.spec.num_classes - 1}: it is not {self.name}.")
            images_t = torch.from_numpy(x.reshape(-1, 3, 32, 32))  # (N, 3, 32, 32): planes R, G, B (concatenate made a fresh array)
            splits.append(ImageSplit(images_t, torch.from_numpy(y)))
        return splits[0], splits[1]


@register_task("cifar10")
class Cifar10Task(_Cifar):
    __doc__ = "CIFAR-10: 50,000 training and 10,000 test 32x32 colour images, 10 classes.\n\n" + (_Cifar.__doc__ or "")
    name = "cifar10"
    spec = TaskSpec(dims=2, in_channels=3, num_classes=10)


@register_task("cifar100")
class Cifar100Task(_Cifar):
    __doc__ = "CIFAR-100: as CIFAR-10 with 100 (fine) classes.\n\n" + (_Cifar.__doc__ or "")
    name = "cifar100"
    spec = TaskSpec(dims=2, in_channels=3, num_classes=100)


# ---------------------------------------------------------------------------- digits
@register_task("digits")
class DigitsTask(ImageTask):
    """scikit-learn's bundled 8x8 handwritten digits (1,797 grey images, 10 classes).

    Shipped inside scikit-learn, so the image track runs on real images with no download.
    Values 0..16 are scaled to 0..255 (uint8, shape (N, 1, 8, 8)). There is no official split:
    ``test_fraction`` of the images, stratified by class, are the test set, drawn with
    ``split_seed`` (fixed by default, so every run tests on the same images).

    Constructor arguments: ``test_fraction`` (float in (0, 1), default 0.2), ``split_seed``
    (int, default 0), ``val_size`` (int, default 0: see ``ImageTask``), ``padding`` (default 1:
    a 4-pixel shift would move an 8x8 digit half out of view), ``flip`` (default false: a
    mirrored digit is another glyph or none), ``cutout`` (default 0).
    """

    name = "digits"
    spec = TaskSpec(dims=2, in_channels=1, num_classes=10)

    def __init__(self, test_fraction: float = 0.2, split_seed: int = 0, val_size: int = 0,
                 padding: int = 1, flip: bool = False, cutout: int = 0) -> None:
        super().__init__(padding=padding, flip=flip, cutout=cutout, val_size=val_size, split_seed=split_seed)
        if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 1:
            raise TaskError(f"digits test_fraction must be a number strictly between 0 and 1, got {test_fraction!r}.")
        self.test_fraction = float(test_fraction)

    def _read(self) -> tuple[ImageSplit, ImageSplit]:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        digits = load_digits()
        # (1797, 8, 8) float 0..16 -> uint8 0..255 (16 -> 255 exactly)
        images = np.rint(digits.images * (255 / 16)).astype(np.uint8)[:, None]  # (N, 1, 8, 8)
        labels = digits.target.astype(np.int64)
        x_train, x_test, y_train, y_test = train_test_split(
            images, labels, test_size=self.test_fraction, stratify=labels, random_state=self.split_seed)
        return (ImageSplit(torch.from_numpy(x_train), torch.from_numpy(y_train)),
                ImageSplit(torch.from_numpy(x_test), torch.from_numpy(y_test)))


__all__ = ["ARCHIVES", "Archive", "Cifar100Task", "Cifar10Task", "DigitsTask", "ImageSplit", "ImageTask"]
