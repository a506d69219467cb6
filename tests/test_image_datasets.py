"""The larger image datasets, each on a tiny copy written here in its real on-disk layout:
CIFAR-100's pickles, TinyImageNet's, ImageNet-R's and CUB-200's folders and lists, a user's
class-per-folder set; the decode-once cache; the config keys that choose them. Offline."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lab.config import validate
from lab.data import datasets, decoded, folders
from lab.data.datasets import load_dataset
from lab.errors import ConfigError, DataFileError, DataNotFoundError
from lab.experiment import dataset_options, make_stream


@pytest.fixture
def offline(monkeypatch):
    """No internet: every download fails as it would offline, and says which URL it tried."""
    tried = []

    def download(url, root, md5):
        tried.append(url)
        return "URLError: offline (test)"

    monkeypatch.setattr(folders, "_download", download)
    monkeypatch.setattr(datasets, "_torchvision_download", lambda cls, root: "offline (test)")
    return tried


def colour(i: int) -> tuple[int, int, int]:
    """A colour per image number, so that a loaded image says which file it came from."""
    return (i * 37 % 256, i * 91 % 256, (i * 53 + 128) % 256)


def write_image(path: Path, i: int, size: int = 8) -> Path:
    """A uniform image of colour(i) (JPEG keeps a flat colour all but exactly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), colour(i)).save(path)
    return path


def pixels(path: Path) -> np.ndarray:
    """What PIL decodes from a file, as (3, H, W) uint8: a loader storing it at its own
    size must give exactly this."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).transpose(2, 0, 1)


def assert_images(loaded: torch.Tensor, files: list[Path]) -> None:
    assert loaded.dtype == torch.uint8
    assert loaded.shape[0] == len(files)
    for image, file in zip(loaded, files, strict=True):
        np.testing.assert_array_equal(image.numpy(), pixels(file))


# CIFAR-100


def write_cifar100(root: Path, per_class: int = 2) -> dict[str, dict]:
    """cifar-100-python/{train,test,meta} as torchvision downloads it: rows of 3072 bytes
    (the red plane, then green, then blue), fine and coarse labels."""
    directory = root / "cifar-100-python"
    directory.mkdir(parents=True)
    rng = np.random.default_rng(0)
    batches = {}
    for split, n in (("train", per_class), ("test", 1)):
        fine = np.repeat(np.arange(100), n)
        batches[split] = {
            b"data": rng.integers(0, 256, (len(fine), 3072), dtype=np.uint8),
            b"fine_labels": fine.tolist(),
            b"coarse_labels": (fine // 5).tolist(),
            b"filenames": [f"{i}.png".encode() for i in range(len(fine))],
        }
        (directory / split).write_bytes(pickle.dumps(batches[split]))
    meta = {b"fine_label_names": [f"c{i}".encode() for i in range(100)]}
    (directory / "meta").write_bytes(pickle.dumps(meta))
    return batches


def test_cifar100_reads_torchvisions_pickles_as_uint8_with_fine_labels(tmp_path, offline):
    batches = write_cifar100(tmp_path)
    data = load_dataset("cifar100", tmp_path)
    assert data.train_x.shape == (200, 3, 32, 32) and data.test_x.shape == (100, 3, 32, 32)
    assert data.train_x.dtype == torch.uint8 and data.num_classes == 100
    assert data.train_y.tolist() == batches["train"][b"fine_labels"]
    assert data.test_y.tolist() == list(range(100))
    row = batches["train"][b"data"][7]
    np.testing.assert_array_equal(data.train_x[7, 2].numpy(), row[2048:].reshape(32, 32))


def test_cifar100_at_another_store_size_is_resized_once_and_cached(tmp_path, offline):
    batches = write_cifar100(tmp_path, per_class=1)
    data = load_dataset("cifar100", tmp_path, store_size=16)
    assert data.train_x.shape == (100, 3, 16, 16)
    image = Image.fromarray(batches["test"][b"data"][3].reshape(3, 32, 32).transpose(1, 2, 0))
    expected = np.asarray(image.resize((16, 16), Image.Resampling.BILINEAR)).transpose(2, 0, 1)
    np.testing.assert_array_equal(data.test_x[3].numpy(), expected)
    cached = sorted(p.name.split(".")[0] for p in (tmp_path / "decoded").iterdir())
    assert cached == ["cifar100-test-16px", "cifar100-train-16px"]


def test_missing_cifar100_offline_is_one_line_naming_where_and_the_url(tmp_path, offline):
    with pytest.raises(DataNotFoundError) as error:
        load_dataset("cifar100", tmp_path)
    message = str(error.value)
    assert str(tmp_path / "cifar-100-python") in message
    assert "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz" in message
    assert "run once online" in message and "\n" not in message


# A user's class-per-folder set


def test_image_folder_with_train_and_test_folders(tmp_path):
    """PNG and JPEG (any case of extension), classes numbered in name order, other files
    and hidden files left out, a class absent from one half still numbered once."""
    folder = tmp_path / "flowers"
    train = [
        write_image(folder / "train" / "daisy" / "a.png", 1),
        write_image(folder / "train" / "daisy" / "b.JPG", 2),
        write_image(folder / "train" / "rose" / "c.jpeg", 3),
        write_image(folder / "train" / "tulip" / "d.png", 4),
    ]
    test = [
        write_image(folder / "test" / "daisy" / "e.jpg", 5),
        write_image(folder / "test" / "rose" / "f.png", 6),
    ]
    (folder / "train" / "rose" / "notes.txt").write_text("not an image")
    write_image(folder / "train" / "rose" / ".hidden.png", 7)
    data = load_dataset("image_folder", tmp_path / "data", folder=str(folder), store_size=8)
    assert data.train_y.tolist() == [0, 0, 1, 2] and data.test_y.tolist() == [0, 1]
    assert_images(data.train_x, train)
    assert_images(data.test_x, test)


def write_classes(directory: Path, sizes: dict[str, int], suffix: str = ".png") -> dict:
    files, i = {}, 0
    for name, n in sizes.items():
        files[name] = []
        for k in range(n):
            files[name].append(write_image(directory / name / f"{k:03d}{suffix}", i))
            i += 1
    return files


def origin(loaded: torch.Tensor, files: dict[str, list[Path]]) -> list[Path]:
    """The source file of each loaded image (each file has a colour of its own)."""
    by_pixels = {pixels(f).tobytes(): f for fs in files.values() for f in fs}
    return [by_pixels[image.numpy().tobytes()] for image in loaded]


def test_image_folder_in_one_folder_is_split_per_class_by_its_seed(tmp_path):
    folder = tmp_path / "pets"
    files = write_classes(folder, {"cat": 10, "dog": 5, "emu": 1})
    options = {"folder": folder, "store_size": 8, "test_fraction": 0.2}
    data = load_dataset("image_folder", tmp_path, split_seed=0, **options)
    train, test = origin(data.train_x, files), origin(data.test_x, files)
    # round(0.2 n) of each class in the test set (a class of one keeps it for training)
    assert torch.bincount(data.test_y, minlength=3).tolist() == [2, 1, 0]
    assert torch.bincount(data.train_y, minlength=3).tolist() == [8, 4, 1]
    assert set(train).isdisjoint(test) and set(train) | set(test) == set(sum(files.values(), []))
    assert [f.parent.name for f in test] == [["cat", "dog", "emu"][y] for y in data.test_y]

    again = load_dataset("image_folder", tmp_path, split_seed=0, **options)
    assert torch.equal(again.test_x, data.test_x) and torch.equal(again.train_y, data.train_y)
    other = load_dataset("image_folder", tmp_path, split_seed=1, **options)
    assert origin(other.test_x, files) != test


def test_a_truncated_jpeg_is_named_in_one_line(tmp_path):
    folder = tmp_path / "photos"
    write_classes(folder / "train", {"a": 2, "b": 2}, suffix=".jpg")
    write_classes(folder / "test", {"a": 1, "b": 1}, suffix=".jpg")
    cut = folder / "train" / "b" / "001.jpg"
    Image.new("RGB", (64, 64), (200, 10, 10)).save(cut)
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    with pytest.raises(DataFileError) as error:
        load_dataset("image_folder", tmp_path / "data", folder=folder, store_size=8)
    message = str(error.value)
    assert message.startswith(f"{cut} cannot be read (OSError: ") and "truncated" in message.lower()
    assert "replace it with an intact copy, or delete it" in message and "\n" not in message
    # nothing half-written is left to be read as a cache
    assert not any(p.is_file() for p in (tmp_path / "data" / "decoded").iterdir())


def test_a_missing_or_empty_image_folder_is_one_line(tmp_path):
    with pytest.raises(DataNotFoundError, match=f"{tmp_path / 'nowhere'} is not a directory"):
        load_dataset("image_folder", tmp_path, folder=tmp_path / "nowhere")
    (tmp_path / "set" / "empty").mkdir(parents=True)
    write_image(tmp_path / "set" / "full" / "x.png", 0)
    with pytest.raises(DataNotFoundError, match="class folder 'empty' has no image files"):
        load_dataset("image_folder", tmp_path, folder=tmp_path / "set")
    (tmp_path / "half" / "train" / "a").mkdir(parents=True)
    with pytest.raises(DataNotFoundError, match="has train/ but no test/"):
        load_dataset("image_folder", tmp_path, folder=tmp_path / "half")


# ImageNet-R, CUB-200, TinyImageNet


def test_imagenet_r_is_split_80_20_per_class_with_a_fixed_seed(tmp_path, offline):
    directory = tmp_path / "imagenet-r"
    sizes = {"n01443537": 10, "n01484850": 5, "n01494475": 8}
    files = write_classes(directory, sizes, suffix=".jpg")
    (directory / "README.txt").write_text("ImageNet-R")
    data = load_dataset("imagenet_r", tmp_path, store_size=8)
    assert torch.bincount(data.test_y).tolist() == [2, 1, 2]  # round(0.2 n) per class
    assert torch.bincount(data.train_y).tolist() == [8, 4, 6]
    train, test = origin(data.train_x, files), origin(data.test_x, files)
    assert set(train).isdisjoint(test) and len(set(train) | set(test)) == 23
    assert [f.parent.name for f in train] == [sorted(sizes)[y] for y in data.train_y]
    assert origin(load_dataset("imagenet_r", tmp_path, store_size=8).test_x, files) == test

    # a class's split depends on its own files only: a new class moves no other image
    write_classes(tmp_path / "more", {"n01491361": 4})
    os.rename(tmp_path / "more" / "n01491361", directory / "n01491361")
    files["n01491361"] = sorted((directory / "n01491361").iterdir())
    grown = load_dataset("imagenet_r", tmp_path, store_size=8)
    assert [f for f in origin(grown.test_x, files) if f.parent.name != "n01491361"] == test


def write_cub(root: Path) -> tuple[list[Path], list[Path], list[int], list[int]]:
    """CUB_200_2011/ with its four lists (ids from 1, classes from 1) and images/."""
    directory = root / "CUB_200_2011"
    classes = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross"]
    # (class id, is_training_image) of images 1..7, in images.txt's order
    images = [(1, 1), (1, 0), (2, 1), (3, 0), (2, 0), (3, 1), (1, 1)]
    lines = {name: [] for name in ("images", "labels", "split")}
    train, test, train_y, test_y = [], [], [], []
    for i, (c, is_train) in enumerate(images, 1):
        relative = f"{classes[c - 1]}/{classes[c - 1][4:]}_{i:04d}_{i}.jpg"
        file = write_image(directory / "images" / relative, i)
        lines["images"].append(f"{i} {relative}")
        lines["labels"].append(f"{i} {c}")
        lines["split"].append(f"{i} {is_train}")
        (train if is_train else test).append(file)
        (train_y if is_train else test_y).append(c - 1)
    (directory / "images.txt").write_text("\n".join(lines["images"]) + "\n")
    (directory / "image_class_labels.txt").write_text("\n".join(lines["labels"]) + "\n")
    (directory / "train_test_split.txt").write_text("\n".join(lines["split"]) + "\n")
    (directory / "classes.txt").write_text("".join(f"{i} {c}\n" for i, c in enumerate(classes, 1)))
    return train, test, train_y, test_y


def test_cub200_keeps_its_own_split_with_labels_from_0(tmp_path, offline):
    train, test, train_y, test_y = write_cub(tmp_path)
    data = load_dataset("cub200", tmp_path, store_size=8)
    assert data.train_y.tolist() == train_y == [0, 1, 2, 0]
    assert data.test_y.tolist() == test_y == [0, 2, 1]
    assert_images(data.train_x, train)
    assert_images(data.test_x, test)


def test_a_damaged_cub_list_is_one_line(tmp_path, offline):
    write_cub(tmp_path)
    (tmp_path / "CUB_200_2011" / "train_test_split.txt").write_text("1 1\n2 yes\n")
    with pytest.raises(DataFileError) as error:
        load_dataset("cub200", tmp_path, store_size=8)
    assert "train_test_split.txt gives image 2 of images.txt 'yes', not one of 0..1" in str(
        error.value
    )


def test_tinyimagenet_train_and_labelled_val(tmp_path, offline):
    """wnids.txt in its own (unsorted) order; labels follow the sorted wnids, as
    ImageFolder on train/ does; val/ (labelled by val_annotations.txt) is the test set."""
    directory = tmp_path / "tiny-imagenet-200"
    wnids = ["n02124075", "n01443537", "n04067472"]
    directory.mkdir()
    (directory / "wnids.txt").write_text("\n".join(wnids) + "\n")
    train = []
    for w in sorted(wnids):
        for k in range(2):
            train.append(
                write_image(directory / "train" / w / "images" / f"{w}_{k}.JPEG", len(train), 64)
            )
        (directory / "train" / w / f"{w}_boxes.txt").write_text(f"{w}_0.JPEG\t0\t0\t63\t63\n")
    val = {"val_1.JPEG": "n04067472", "val_0.JPEG": "n02124075", "val_2.JPEG": "n01443537"}
    for k, name in enumerate(val):
        write_image(directory / "val" / "images" / name, 10 + k, 64)
    (directory / "val" / "val_annotations.txt").write_text(
        "".join(f"{name}\t{w}\t0\t0\t63\t63\n" for name, w in val.items())
    )
    (directory / "test" / "images").mkdir(parents=True)  # unlabelled: not read
    data = load_dataset("tinyimagenet", tmp_path)
    assert data.image_shape == (3, 64, 64)
    assert data.train_y.tolist() == [0, 0, 1, 1, 2, 2]
    assert_images(data.train_x, train)
    assert data.test_y.tolist() == [1, 2, 0]  # val_0, val_1, val_2
    assert_images(data.test_x, [directory / "val" / "images" / f"val_{k}.JPEG" for k in range(3)])


@pytest.mark.parametrize(
    "name, directory, url",
    [
        ("tinyimagenet", "tiny-imagenet-200", "http://cs231n.stanford.edu/tiny-imagenet-200.zip"),
        ("imagenet_r", "imagenet-r", "https://people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar"),
        ("cub200", "CUB_200_2011", "https://data.caltech.edu/records/65de6-vp158/files/"),
    ],
)
def test_a_missing_dataset_offline_is_one_line(tmp_path, offline, name, directory, url):
    with pytest.raises(DataNotFoundError) as error:
        load_dataset(name, tmp_path)
    message = str(error.value)
    assert offline and offline[0].startswith(url)  # the download was tried
    assert f"Put the extracted {directory}/ at {tmp_path / directory}" in message
    assert url in message and "URLError: offline (test)" in message
    assert "run once online" in message and "\n" not in message


# The decode-once cache


def test_decoding_by_hand_rgb_and_a_direct_bilinear_resize(tmp_path):
    """A 2x2 image to 1x1 is the mean of its pixels. A 4x2 one is squeezed, not cropped:
    PIL's bilinear filter at scale 4 weighs the columns 0.625, 0.875, 0.875, 0.625, so
    columns (0, 0, 0, 200) give 200 * 0.625 / 3 = 41.7 -> 42 (a centre crop would give 0).
    Grey images become three equal channels."""
    square = np.array([[[10, 100, 0], [20, 110, 50]], [[30, 120, 100], [40, 130, 250]]])
    Image.fromarray(square.astype(np.uint8)).save(tmp_path / "square.png")
    wide = np.zeros((2, 4, 3), dtype=np.uint8)
    wide[:, 3] = 200
    Image.fromarray(wide).save(tmp_path / "wide.png")
    Image.new("L", (3, 3), 77).save(tmp_path / "grey.png")
    remedy = "replace it"
    assert decoded.decode(tmp_path / "square.png", 1, remedy).ravel().tolist() == [25, 115, 100]
    assert decoded.decode(tmp_path / "wide.png", 1, remedy).ravel().tolist() == [42, 42, 42]
    assert decoded.decode(tmp_path / "grey.png", 3, remedy).tolist() == [[[77] * 3] * 3] * 3


def test_images_are_decoded_once_and_memory_mapped_after(tmp_path, monkeypatch):
    folder = tmp_path / "set"
    files = write_classes(folder, {"a": 3, "b": 3})
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda path, *a: opened.append(path) or real_open(path, *a))
    first = load_dataset("image_folder", tmp_path / "data", folder=folder, store_size=8)
    assert len(opened) == 6
    cache = sorted((tmp_path / "data" / "decoded").iterdir())
    assert [p.name.split(".")[0] for p in cache] == [
        "image_folder-test-8px",
        "image_folder-train-8px",
    ]
    assert all(p.suffix == ".npy" for p in cache)

    opened.clear()
    second = load_dataset("image_folder", tmp_path / "data", folder=folder, store_size=8)
    assert opened == []  # nothing decoded
    assert torch.equal(first.train_x, second.train_x) and torch.equal(first.test_x, second.test_x)

    # an image rewritten (the same size in bytes, new pixels) is not served from the old copy
    changed = files["a"][0]
    size = changed.stat().st_size
    Image.new("RGB", (8, 8), (1, 2, 3)).save(changed)
    assert changed.stat().st_size == size
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    third = load_dataset("image_folder", tmp_path / "data", folder=folder, store_size=8)
    everything = origin(third.train_x, files) + origin(third.test_x, files)  # current pixels
    assert sorted(everything) == sorted(f for fs in files.values() for f in fs)


def test_the_cache_is_memory_mapped_and_a_damaged_one_is_decoded_again(tmp_path):
    files = [write_image(tmp_path / f"{i}.png", i) for i in range(3)]
    first = decoded.decoded_images(files, 8, tmp_path / "decoded", "set", "")
    (cache,) = (tmp_path / "decoded").iterdir()
    assert isinstance(first, np.memmap) and Path(first.filename) == cache
    assert first.shape == (3, 3, 8, 8) and first.dtype == np.uint8
    first = np.array(first)  # a copy: the file is overwritten in place below
    cache.write_bytes(b"damaged")
    again = decoded.decoded_images(files, 8, tmp_path / "decoded", "set", "")
    np.testing.assert_array_equal(again, first)
    assert cache.stat().st_size > 3 * 3 * 8 * 8


def test_a_data_root_that_cannot_be_written_decodes_into_memory(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError("read-only (test)")

    monkeypatch.setattr(decoded.tempfile, "mkstemp", refuse)
    files = [write_image(tmp_path / f"{i}.png", i) for i in range(2)]
    array = decoded.decoded_images(files, 8, tmp_path / "decoded", "set", "")
    assert not isinstance(array, np.memmap)
    np.testing.assert_array_equal(array, np.stack([pixels(f) for f in files]))
    assert not any((tmp_path / "decoded").iterdir())


# Options and config


def test_options_a_loader_does_not_take_are_left_out_unknown_ones_refused(tmp_path, offline):
    write_cifar100(tmp_path, per_class=1)
    data = load_dataset("cifar100", tmp_path, folder="ignored", split_seed=3, store_size=None)
    assert data.image_shape == (3, 32, 32)
    with pytest.raises(TypeError, match="unknown dataset option 'store_sise'"):
        load_dataset("cifar100", tmp_path, store_sise=64)


NEW = ["split_cifar100", "split_tinyimagenet", "split_imagenet_r", "split_cub200"]


@pytest.mark.parametrize("benchmark", NEW)
def test_the_benchmarks_are_10_tasks_of_their_classes(compose_cfg, benchmark):
    config = validate(compose_cfg([f"benchmark={benchmark}"]))
    b = config["benchmark"]
    assert (b["stream"], b["num_tasks"], b["class_order"], b["shuffle_classes"]) == (
        "split",
        10,
        None,
        False,
    )
    assert datasets.NUM_CLASSES[b["dataset"]] in (100, 200)
    assert config["data"]["store_size"] is None


def test_split_cifar100_in_20_tasks_and_in_a_given_order(compose_cfg):
    order = list(range(99, -1, -1))
    config = validate(
        compose_cfg(
            ["benchmark=split_cifar100", "benchmark.num_tasks=20", f"benchmark.class_order={order}"]
        )
    )
    assert config["benchmark"]["num_tasks"] == 20 and config["benchmark"]["class_order"] == order


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["benchmark=image_folder"],
            "benchmark.root='???' is invalid; valid: the dataset's directory",
        ),
        (["benchmark=image_folder", "benchmark.root=null"], "benchmark.root=None is invalid"),
        (
            ["benchmark=image_folder", "benchmark.root=x", "benchmark.test_fraction=1.0"],
            "benchmark.test_fraction=1.0 is invalid; valid: a number in (0, 1)",
        ),
        (["data.store_size=0"], "data.store_size=0 is invalid; valid: an integer >= 1 or null"),
        (["data.store_size=big"], "data.store_size='big' is invalid"),
        (
            ["benchmark=split_cifar100", "benchmark.class_order=[0,100]"],
            "benchmark.class_order=[0, 100] is invalid; valid: distinct classes of 0..99",
        ),
        (["benchmark=split_cub200", "benchmark.num_tasks=201"], "valid: 1..200"),
        (
            ["benchmark=split_cifar100", "+benchmark.split_seed=1"],
            "benchmark.split_seed is not a key",
        ),
    ],
)
def test_bad_values_are_one_config_error(compose_cfg, overrides, message):
    with pytest.raises(ConfigError) as error:
        validate(compose_cfg(overrides))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_image_folder_options_reach_the_loader_and_its_classes_are_checked_when_counted(
    compose_cfg, tmp_path
):
    folder = tmp_path / "set"
    write_classes(folder, {"a": 2, "b": 2, "c": 2})
    overrides = [
        "benchmark=image_folder",
        f"benchmark.root={folder}",
        "benchmark.split_seed=4",
        "benchmark.test_fraction=0.5",
        "data.store_size=8",
        f"data.root={tmp_path / 'data'}",
    ]
    # 7 is not a class, but that is known only once the folders are read
    config = validate(
        compose_cfg([*overrides, "benchmark.class_order=[0,7]", "benchmark.num_tasks=2"])
    )
    assert dataset_options(config) == {
        "store_size": 8,
        "folder": str(folder),
        "test_fraction": 0.5,
        "split_seed": 4,
    }
    with pytest.raises(
        ConfigError,
        match=r"benchmark.class_order=\[0, 7\] is invalid; valid: distinct classes of 0..2",
    ):
        make_stream(config)
    config = validate(compose_cfg([*overrides, "benchmark.num_tasks=5"]))
    with pytest.raises(ConfigError, match="benchmark.num_tasks=5 is invalid; valid: 1..3"):
        make_stream(config)
    # loaded as asked: half of each class's two images in the test set, cached at 8 px
    (cache,) = (tmp_path / "data" / "decoded").glob("image_folder-test-8px.*.npy")
    assert np.load(cache).shape == (3, 3, 8, 8)
