"""Dataset loaders on files the tests write in the real formats, and on bundled digits."""

from __future__ import annotations

import gzip
import pickle
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from lab.data import datasets
from lab.data.datasets import load_dataset, read_idx
from lab.data.stratified import stratified_split
from lab.errors import DataNotFoundError


def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)


def write_mnist_like(directory: Path, n_train: int = 30, n_test: int = 20, compress=True):
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28)),
        "train_labels": np.arange(n_train) % 10,
        "test_images": rng.integers(0, 256, (n_test, 28, 28)),
        "test_labels": np.arange(n_test) % 10,
    }
    for key, stem in datasets.IDX_FILES.items():
        write_idx(directory / stem, arrays[key], compress)
    return arrays


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No system copy of Fashion-MNIST and no internet."""
    monkeypatch.setattr(datasets, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian-copy")
    monkeypatch.setattr(datasets, "_torchvision_download", lambda cls, root: "offline (test)")


def test_idx_reader_round_trip(tmp_path):
    array = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    for compress in (True, False):
        write_idx(tmp_path / "x-idx3-ubyte", array, compress)
        name = "x-idx3-ubyte.gz" if compress else "x-idx3-ubyte"
        np.testing.assert_array_equal(read_idx(tmp_path / name), array)


@pytest.mark.parametrize(
    "name, subdir", [("mnist", "MNIST/raw"), ("kmnist", "KMNIST/raw"), ("fashion_mnist", "")]
)
def test_mnist_family_reads_torchvision_layout_and_flat_root(tmp_path, offline, name, subdir):
    arrays = write_mnist_like(tmp_path / subdir, compress=(name != "mnist"))
    data = load_dataset(name, tmp_path)
    assert data.train_x.shape == (30, 1, 28, 28) and data.test_x.shape == (20, 1, 28, 28)
    assert data.train_x.dtype == torch.uint8 and data.train_y.dtype == torch.int64  # stored once
    expected = torch.from_numpy(arrays["train_images"].astype(np.uint8)).unsqueeze(1)
    torch.testing.assert_close(data.train_x, expected)
    assert data.test_y.tolist() == (np.arange(20) % 10).tolist()


def test_fashion_mnist_prefers_configured_root_over_system_copy(tmp_path, monkeypatch):
    write_mnist_like(tmp_path / "root", n_train=12)
    write_mnist_like(tmp_path / "debian", n_train=40)
    monkeypatch.setattr(datasets, "DEBIAN_FASHION_MNIST", tmp_path / "debian")
    assert len(load_dataset("fashion_mnist", tmp_path / "root").train_y) == 12
    assert len(load_dataset("fashion_mnist", tmp_path / "empty").train_y) == 40


def test_missing_fashion_mnist_names_the_three_ways_to_get_it(tmp_path, offline):
    with pytest.raises(DataNotFoundError) as error:
        load_dataset("fashion_mnist", tmp_path)
    message = str(error.value)
    assert f"data.root={tmp_path}" in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "torchvision download failed (offline (test))" in message
    assert "\n" not in message


def test_cifar10_pickled_batches(tmp_path, offline):
    directory = tmp_path / "cifar-10-batches-py"
    directory.mkdir()
    rng = np.random.default_rng(0)
    images = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        images[name] = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
        batch = {b"data": images[name], b"labels": [0, 3, 5, 9]}
        (directory / name).write_bytes(pickle.dumps(batch))
    data = load_dataset("cifar10", tmp_path)
    assert data.train_x.shape == (20, 3, 32, 32) and data.test_x.shape == (4, 3, 32, 32)
    assert data.train_y.tolist() == [0, 3, 5, 9] * 5
    # channel-first layout: the first 1024 bytes of a row are the red plane
    red = torch.from_numpy(images["test_batch"][1, :1024].reshape(32, 32).astype(np.uint8))
    torch.testing.assert_close(data.test_x[1, 0], red)


def test_missing_cifar10_is_one_clear_error(tmp_path, offline):
    with pytest.raises(DataNotFoundError, match="cifar-10-batches-py"):
        load_dataset("cifar10", tmp_path)


def test_digits_fixed_stratified_split():
    data = load_dataset("digits", "unused")
    assert len(data.train_y) + len(data.test_y) == 1797
    assert data.image_shape == (1, 8, 8) and data.num_classes == 10
    assert float(data.train_x.max()) == 1.0 and float(data.train_x.min()) == 0.0
    per_class = torch.bincount(torch.cat([data.train_y, data.test_y]))
    # stratified: every class has a quarter of its images in the test set
    assert (torch.bincount(data.test_y) - per_class * 0.25).abs().max() <= 1
    again = load_dataset("digits", "unused")
    assert torch.equal(data.test_x, again.test_x)


def test_digits_are_scikit_learns_images_and_split_read_without_importing_it():
    """The lab reads sklearn's digits.csv.gz and splits it itself (lab.data.stratified):
    the same images, labels and split as scikit-learn's load_digits and train_test_split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data, theirs = load_dataset("digits", "unused"), load_digits()
    train, test = train_test_split(
        np.arange(1797), test_size=0.25, stratify=theirs.target, random_state=0
    )
    images = torch.from_numpy(theirs.images.astype(np.float32) / 16).unsqueeze(1)
    assert torch.equal(data.train_x, images[np.sort(train)])
    assert torch.equal(data.test_x, images[np.sort(test)])
    assert data.train_y.tolist() == theirs.target[np.sort(train)].tolist()
    assert data.test_y.tolist() == theirs.target[np.sort(test)].tolist()


@pytest.mark.parametrize("seed", [0, 1, 7])
@pytest.mark.parametrize("fraction", [0.25, 0.1, 0.5])
def test_the_stratified_split_is_scikit_learns_in_its_order_and_its_ties(seed, fraction):
    """81 samples in unequal classes, whose shares leave tied remainders (the two classes
    of 7), and test sizes that round up (0.25 x 81 = 20.25: 21): the tie-breaking draws
    and both shuffles, index for index."""
    from sklearn.model_selection import train_test_split

    labels = np.repeat(np.arange(6), [3, 7, 7, 11, 13, 40])[::-1].copy()
    ours = stratified_split(labels, fraction, seed)
    theirs = train_test_split(
        np.arange(len(labels)), test_size=fraction, stratify=labels, random_state=seed
    )
    assert [a.tolist() for a in ours] == [b.tolist() for b in theirs]


def test_unknown_dataset():
    with pytest.raises(ValueError, match="valid: fashion_mnist, mnist, kmnist, cifar10, digits"):
        load_dataset("imagenet", "data")


def test_gzipped_files_are_decoded_once_into_data_root(offline, tmp_path):
    """The second load reads data.root/decoded; a damaged decoded copy is decoded again,
    and a replaced original is not served from its old copy."""
    root = tmp_path / "data"
    arrays = write_mnist_like(root / "FashionMNIST" / "raw")
    first = load_dataset("fashion_mnist", root)
    copies = sorted((root / "decoded").iterdir())
    assert [c.name.split(".")[0] for c in copies] == sorted(datasets.IDX_FILES.values())
    train_images = next(c for c in copies if c.name.startswith("train-images"))
    assert train_images.stat().st_size == 16 + 30 * 28 * 28  # uncompressed IDX

    zeros = tmp_path / "zeros"
    write_idx(zeros, np.zeros((30, 28, 28), dtype=np.uint8), False)
    train_images.write_bytes(zeros.read_bytes())  # what the copy says is what is read
    assert load_dataset("fashion_mnist", root).train_x.sum() == 0

    train_images.write_bytes(b"damaged")
    again = load_dataset("fashion_mnist", root)
    assert torch.equal(again.train_x, first.train_x)
    assert train_images.stat().st_size == 16 + 30 * 28 * 28  # written anew

    time.sleep(0.01)  # a new modification time
    write_idx(
        root / "FashionMNIST" / "raw" / "train-labels-idx1-ubyte",
        arrays["train_labels"][::-1],
        True,
    )
    replaced = load_dataset("fashion_mnist", root)
    assert replaced.train_y.tolist() == list(arrays["train_labels"][::-1])
