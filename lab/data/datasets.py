"""Real image datasets as tensors, and the registry of loaders.

Every loader returns a `Dataset`: uint8 images shaped (N, C, H, W), held once and made
into model inputs batch by batch (lab.data.images), and int64 labels, train and test.
The files are read directly (IDX for the MNIST family, pickled batches for CIFAR, folders
of image files in lab.data.folders), so the same code reads what torchvision downloads,
what Debian ships and what the tests write. The large sets are decoded once
into data.root/decoded/ and memory-mapped from there (lab.data.decoded).
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import inspect
import os
import pickle
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lab.data import folders, text
from lab.data.decoded import DECODED, cached_images, resize
from lab.data.stratified import stratified_split
from lab.errors import DataFileError, DataNotFoundError, brief

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


@dataclass
class Dataset:
    """A dataset's train and test sets. Images: uint8 (N, C, H, W) in 0..255 (memory-mapped
    where the set is large), or float32 in [0, 1] for digits."""

    name: str
    train_x: torch.Tensor  # (N, C, H, W) uint8 0..255, or float32 in [0, 1]
    train_y: torch.Tensor  # (N,) int64
    test_x: torch.Tensor
    test_y: torch.Tensor

    @property
    def num_classes(self) -> int:
        return int(max(y.max() for y in (self.train_y, self.test_y) if len(y))) + 1

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])

    def to(self, device: torch.device | str) -> Dataset:
        """The dataset on `device`: the one copy that every task built from it shares.

        Images that would take more than half of a GPU's free memory stay in host memory,
        pinned, and each batch is moved when it is drawn (lab.data.images); labels move."""
        device = torch.device(device)
        images = ("train_x", "test_x")
        move = {f: getattr(self, f).to(device) for f in ("train_y", "test_y")}
        size = sum(getattr(self, f).nbytes for f in images)
        if device.type == "cuda" and size > 0.5 * torch.cuda.mem_get_info(device)[0]:
            move.update({f: getattr(self, f).pin_memory() for f in images})
        else:
            move.update({f: getattr(self, f).to(device) for f in images})
        return Dataset(self.name, **move)


def read_idx(path: Path, cache: Path | None = None) -> np.ndarray:
    """Read an IDX file (optionally gzipped): the format of MNIST and its relatives.
    ValueError, OSError or EOFError when the file is not a whole IDX file of bytes.

    With `cache`, a gzipped file is decompressed once into that directory (keyed by the
    file's path, size and modification time) and read from there afterwards: a run then
    skips the decompression (a quarter of a second for Fashion-MNIST's training images).
    """
    copy = _cached_copy(path, cache) if cache is not None and path.suffix == ".gz" else None
    if copy is not None and copy.is_file():
        try:
            return _parse_idx(copy.read_bytes())
        except (OSError, ValueError):  # a damaged copy: decode the original again
            copy.unlink(missing_ok=True)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    array = _parse_idx(data)
    if copy is not None:
        _write_quietly(copy, data)
    return array


def _parse_idx(data: bytes) -> np.ndarray:
    if len(data) < 4 or data[:3] != b"\x00\x00\x08":
        raise ValueError("not an IDX file of unsigned bytes")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape)) + 4 + 4 * ndim
    if len(data) != expected:
        raise ValueError(f"{len(data)} bytes where its header promises {expected}")
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _cached_copy(path: Path, cache: Path) -> Path:
    stat = path.stat()
    key = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    return cache / f"{path.name.removesuffix('.gz')}.{hashlib.sha1(key.encode()).hexdigest()[:12]}"


def _write_quietly(path: Path, data: bytes) -> None:
    """Write atomically, or not at all where the directory cannot be written."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError:  # a read-only data.root: no copy
        return
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError:
        Path(tmp).unlink(missing_ok=True)


# What a damaged or cut IDX file raises when it is read (zlib.error: a corrupt gzip stream)
UNREADABLE = (OSError, EOFError, ValueError, zlib.error)


def damaged(path: Path, error: Exception) -> DataFileError:
    """One line naming the file, why it cannot be read and what to do."""
    remedy = (
        "reinstall it: apt-get install --reinstall dataset-fashion-mnist"
        if path.is_relative_to(DEBIAN_FASHION_MNIST)
        else "delete it so that it is downloaded again, or replace it with an intact copy"
    )
    return DataFileError(f"{path} cannot be read ({brief(error)}); {remedy}")


def _find_idx_file(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def _idx_dir(candidates: list[Path]) -> Path | None:
    for directory in candidates:
        if all(_find_idx_file(directory, stem) for stem in IDX_FILES.values()):
            return directory
    return None


def _images(array: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W) or (N, H, W, C) -> uint8 (N, C, H, W)."""
    x = torch.from_numpy(array.copy())
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    return x.contiguous()


def load_idx_dataset(name: str, directory: Path, cache: Path | None = None) -> Dataset:
    arrays = {}
    for key, stem in IDX_FILES.items():
        path = _find_idx_file(directory, stem)
        try:
            arrays[key] = read_idx(path, cache)
        except UNREADABLE as error:
            raise damaged(path, error) from None
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if len(images) != len(labels):
            path = _find_idx_file(directory, IDX_FILES[f"{split}_labels"])
            error = ValueError(f"{len(labels)} labels for {len(images)} images")
            raise damaged(path, error)
    return Dataset(
        name=name,
        train_x=_images(arrays["train_images"]),
        train_y=torch.from_numpy(arrays["train_labels"].astype(np.int64)),
        test_x=_images(arrays["test_images"]),
        test_y=torch.from_numpy(arrays["test_labels"].astype(np.int64)),
    )


def _torchvision_download(dataset_class: str, root: Path) -> str | None:
    """Download with torchvision into root; returns why it failed, or None."""
    import torchvision

    try:
        getattr(torchvision.datasets, dataset_class)(root=str(root), train=True, download=True)
        getattr(torchvision.datasets, dataset_class)(root=str(root), train=False, download=True)
    except Exception as error:  # noqa: BLE001 - any download failure means "not available"
        return f"{type(error).__name__}: {error}".splitlines()[0]
    return None


def _mnist_family(name: str, torchvision_class: str, root: Path, extra: list[Path]) -> Dataset:
    """Look in root, then in `extra` (system copies), then download with torchvision."""
    local = [root / torchvision_class / "raw", root / name, root]
    found = _idx_dir(local + extra)
    if found is None:
        failure = _torchvision_download(torchvision_class, root)
        found = _idx_dir(local)
        if found is None:
            places = ", ".join(str(p) for p in local + extra)
            hint = (
                "; or install the Debian package: apt-get install dataset-fashion-mnist"
                if extra
                else ""
            )
            raise DataNotFoundError(
                f"{name}: the IDX files ({', '.join(IDX_FILES.values())}, .gz or not) are in "
                f"none of {places}; the torchvision download failed ({failure}). Get them by "
                f"putting the files in data.root={root}{hint}; or run once with internet so "
                f"torchvision downloads them into data.root"
            )
    return load_idx_dataset(name, found, cache=root / DECODED)


def load_fashion_mnist(root: Path) -> Dataset:
    return _mnist_family("fashion_mnist", "FashionMNIST", root, [DEBIAN_FASHION_MNIST])


def load_mnist(root: Path) -> Dataset:
    return _mnist_family("mnist", "MNIST", root, [])


def load_kmnist(root: Path) -> Dataset:
    return _mnist_family("kmnist", "KMNIST", root, [])


def _read_cifar_batches(
    files: list[Path], label_key: bytes = b"labels"
) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for file in files:
        try:
            with open(file, "rb") as f:
                batch = pickle.load(f, encoding="bytes")
            images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.append(np.asarray(batch[label_key], dtype=np.int64))
        except Exception as error:  # noqa: BLE001 - unpickling garbage raises anything
            raise damaged(file, error) from None
    return np.concatenate(images), np.concatenate(labels)


def load_cifar10(root: Path) -> Dataset:
    """CIFAR-10 from the pickled batches of cifar-10-batches-py (as torchvision downloads it)."""
    directory = root / "cifar-10-batches-py"
    train_files = [directory / f"data_batch_{i}" for i in range(1, 6)]
    test_files = [directory / "test_batch"]
    if not all(f.is_file() for f in train_files + test_files):
        failure = _torchvision_download("CIFAR10", root)
        if not all(f.is_file() for f in train_files + test_files):
            raise DataNotFoundError(
                f"cifar10: the batches are not in {directory} and the torchvision download "
                f"failed ({failure}). Put cifar-10-batches-py in data.root={root}, or run "
                f"once with internet so torchvision downloads it there"
            )
    train_x, train_y = _read_cifar_batches(train_files)
    test_x, test_y = _read_cifar_batches(test_files)
    return Dataset(
        name="cifar10",
        train_x=torch.from_numpy(train_x),
        train_y=torch.from_numpy(train_y),
        test_x=torch.from_numpy(test_x),
        test_y=torch.from_numpy(test_y),
    )


CIFAR100_SIZE = 32


def load_cifar100(root: Path, store_size: int | None = None) -> Dataset:
    """CIFAR-100's fine labels (100 classes) from cifar-100-python/{train,test} (as
    torchvision downloads it), uint8. At its native 32 x 32 it is read into memory (180 MB,
    a fraction of a second); at another store_size every image is resized once as
    lab.data.decoded resizes files, and cached."""
    directory = root / "cifar-100-python"
    files = {"train": directory / "train", "test": directory / "test"}
    if not all(f.is_file() for f in files.values()):
        failure = _torchvision_download("CIFAR100", root)
        if not all(f.is_file() for f in files.values()):
            raise DataNotFoundError(
                f"cifar100: the pickles train and test are not in {directory} and the "
                f"torchvision download of https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
                f" failed ({failure}). Put cifar-100-python/ in data.root={root}, or run once "
                "online so that torchvision downloads it there"
            )
    size = store_size or CIFAR100_SIZE
    arrays = {}
    for split, file in files.items():
        images, labels = _read_cifar_batches([file], label_key=b"fine_labels")
        if size != CIFAR100_SIZE:
            images = _resized(images, size, file, root / DECODED, f"cifar100-{split}")
        arrays[split] = (torch.from_numpy(images), torch.from_numpy(labels))
    return Dataset("cifar100", *arrays["train"], *arrays["test"])


def _resized(images: np.ndarray, size: int, source: Path, cache: Path, name: str) -> np.ndarray:
    from PIL import Image

    return cached_images(
        cache,
        name,
        [source],
        size,
        len(images),
        lambda i: resize(Image.fromarray(images[i].transpose(1, 2, 0)), size),
    )


def load_digits(root: Path | None = None, test_fraction: float = 0.25) -> Dataset:
    """scikit-learn's bundled 8x8 digits (1797 images, no download), read from the file it
    ships (sklearn/datasets/data/digits.csv.gz: 64 pixels 0-16 and the label per line)
    without importing it, which would take a second or two of every run on digits.

    It has no official test split: a stratified split with a fixed seed is used, so that
    every run seed sees the same test set (scikit-learn's train_test_split, lab.data.stratified).
    """
    package = importlib.util.find_spec("sklearn")
    if package is None or not package.submodule_search_locations:
        raise DataNotFoundError("the digits come with scikit-learn: pip install scikit-learn")
    file = Path(next(iter(package.submodule_search_locations)), "datasets", "data", "digits.csv.gz")
    with gzip.open(file, "rt") as lines:
        data = np.loadtxt(lines, delimiter=",")
    labels = data[:, -1].astype(np.int64)
    x = torch.from_numpy(data[:, :-1].reshape(-1, 1, 8, 8).astype(np.float32) / 16.0)
    y = torch.from_numpy(labels)
    train_idx, test_idx = stratified_split(labels, test_fraction, seed=0)
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    return Dataset("digits", x[train_idx], y[train_idx], x[test_idx], y[test_idx])


# Known without loading, so that a config can be checked before any data is read
# (None: counted from the class folders when loaded)
NUM_CLASSES: dict[str, int | None] = {
    "fashion_mnist": 10,
    "mnist": 10,
    "kmnist": 10,
    "cifar10": 10,
    "digits": 10,
    "cifar100": 100,
    "tinyimagenet": 200,
    "imagenet_r": 200,
    "cub200": 200,
    "text_csv": None,
    "text_cl5": text.CL5_CLASSES,
    "image_folder": None,
    "imagenet_val": 1000,
}
# Text benchmarks: tokenised by the model's tokenizer (lab.data.text), a task per file or set
TEXT = ("text_csv", "text_cl5")
# The side images are stored at when data.store_size is null, for the loaders that take it
STORE_SIZE = {"cifar100": CIFAR100_SIZE, **folders.STORE_SIZE}

LOADERS: dict[str, Callable[..., Dataset]] = {
    "fashion_mnist": load_fashion_mnist,
    "mnist": load_mnist,
    "kmnist": load_kmnist,
    "cifar10": load_cifar10,
    "digits": load_digits,
    "cifar100": load_cifar100,
    "tinyimagenet": folders.load_tinyimagenet,
    "imagenet_r": folders.load_imagenet_r,
    "cub200": folders.load_cub200,
    "text_csv": text.load_text_csv,
    "text_cl5": text.load_text_cl5,
    "image_folder": folders.load_image_folder,
    "imagenet_val": folders.load_imagenet_val,
}


def _options(loader: Callable[..., Dataset]) -> list[str]:
    return list(inspect.signature(loader).parameters)[1:]  # all but root


OPTIONS = sorted({option for loader in LOADERS.values() for option in _options(loader)})


def load_dataset(name: str, root: str | Path, **options: Any) -> Dataset:
    """The dataset `name`, read from (or downloaded into) `root`.

    `options` are the loaders' keywords (store_size; image_folder's folder, test_fraction
    and split_seed; ...). Those that `name`'s loader does not take are left out, so that a
    caller can pass one dict whatever the dataset; a name that no loader takes is an error.
    """
    if name not in LOADERS:
        raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(LOADERS)}")
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise TypeError(f"unknown dataset option {unknown[0]!r}; valid: {', '.join(OPTIONS)}")
    loader = LOADERS[name]
    taken = {k: v for k, v in options.items() if k in _options(loader)}
    return loader(Path(root).expanduser(), **taken)
