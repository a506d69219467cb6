"""Image datasets kept as folders of image files, read in their published layouts.

    tinyimagenet  data.root/tiny-imagenet-200/: wnids.txt, train/<wnid>/images/*.JPEG
                  (500 a class), val/images/*.JPEG labelled by val/val_annotations.txt
                  (50 a class; the test set, as the unlabelled test/ has no labels)
    imagenet_r    data.root/imagenet-r/<wnid>/*.jpg: 200 classes, 30,000 renditions, no
                  split of its own (see load_imagenet_r)
    cub200        data.root/CUB_200_2011/: images.txt, image_class_labels.txt,
                  train_test_split.txt, classes.txt, images/<class>/*.jpg (its own split:
                  5,994 train, 5,794 test)
    image_folder  any class-per-folder set: FOLDER/train/<class>/* and FOLDER/test/<class>/*,
                  or FOLDER/<class>/* split per class (benchmark.root is FOLDER)
    imagenet_val  the user's ILSVRC-2012 validation images (50,000; 50 a class), an
                  evaluation set of ImageNet-1k pre-training (pretrain=model): see
                  load_imagenet_val for the two layouts it reads

Class labels are 0..K-1 in the order of the class folders' names (as torchvision's
ImageFolder numbers them; CUB's are its class ids minus one, the same order). The first
three are downloaded from their official archives into data.root when they are missing
and the machine is online. Images are decoded once into data.root/decoded/ at
store_size x store_size and memory-mapped after that (lab.data.decoded); every loader
returns uint8 (N, 3, store_size, store_size) images.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from lab.data.decoded import DECODED, cached_images, decoded_images
from lab.errors import DataFileError, DataNotFoundError, brief

if TYPE_CHECKING:
    from lab.data.datasets import Dataset

# What is read as an image: torchvision's ImageFolder's extensions, in any case
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
# store_size=None: TinyImageNet's native size; 224 for the rest, as the references store
# ImageNet-R and CUB-200 for ViT-B/16 (and a user's photos rarely come smaller)
STORE_SIZE = {
    "tinyimagenet": 64,
    "imagenet_r": 224,
    "cub200": 224,
    "image_folder": 224,
    "imagenet_val": 224,
}
# ImageNet's standard evaluation view (He et al. 2016; timm's default crop_pct): the shorter
# side resized to size / 0.875, then the centre size x size
IMAGENET_CROP = 0.875

TINYIMAGENET = (
    "http://cs231n.stanford.edu/tiny-imagenet-200.zip",
    "90528d7ca1a48142e341f4ef8d21d0de",
)
IMAGENET_R = (
    "https://people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar",
    "a61312130a589d0ca1a8fca1f2bd3337",
)
CUB200 = (
    "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz?download=1",
    "97eceeb196236b17998738112f37df78",
)
ImageList = list[tuple[Path, int]]  # (file, label)


def _download(url: str, root: Path, md5: str) -> str | None:
    """Download and extract an archive into root (the archive deleted after); returns why
    it failed, or None."""
    from torchvision.datasets.utils import download_and_extract_archive

    filename = url.rsplit("/", 1)[-1].split("?")[0]
    try:
        download_and_extract_archive(
            url, str(root), filename=filename, md5=md5, remove_finished=True
        )
    except Exception as error:  # noqa: BLE001 - any failure means "not available"
        return brief(error)
    return None


def _fetch(name: str, directory: Path, required: list[Path], source: tuple[str, str]) -> None:
    """Make sure `required` (files and folders under `directory`) exist: download the
    archive `source` (url, md5) into directory's parent when any is missing."""
    if all(p.exists() for p in required):
        return
    url, md5 = source
    failure = _download(url, directory.parent, md5)
    missing = [p for p in required if not p.exists()]
    if missing:
        raise DataNotFoundError(
            f"{name}: {missing[0]} is missing; the download of {url} failed ({failure}). "
            f"Put the extracted {directory.name}/ at {directory}, or run once online so that "
            "it is downloaded and extracted there"
        )


def _image_files(directory: Path) -> list[Path]:
    """The image files below `directory` (in sub-folders too, as ImageFolder), by path."""
    return sorted(
        p
        for p in directory.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()
    )


def _class_folders(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))


def split_per_class(
    files: list[Path], test_fraction: float, seed: int, name: str
) -> tuple[list[Path], list[Path]]:
    """(train, test) files of one class: round(n * test_fraction) of its n files (at most
    n - 1) drawn for the test set. The draw depends on the seed, the class's name and its
    files only, so adding a class does not move another's images; each part keeps the
    files' order."""
    n_test = min(int(len(files) * test_fraction + 0.5), max(len(files) - 1, 0))
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    test = set(rng.permutation(len(files))[:n_test].tolist())
    return (
        [f for i, f in enumerate(files) if i not in test],
        [f for i, f in enumerate(files) if i in test],
    )


def _labelled(directory: Path, classes: list[str]) -> ImageList:
    """The images of directory/<class>/ for each class, labelled by the class's index."""
    return [(f, label) for label, c in enumerate(classes) for f in _image_files(directory / c)]


def _split_folders(directory: Path, test_fraction: float, seed: int) -> tuple[ImageList, ImageList]:
    train, test = [], []
    for label, name in enumerate(_class_folders(directory)):
        train_files, test_files = split_per_class(
            _image_files(directory / name), test_fraction, seed, name
        )
        train += [(f, label) for f in train_files]
        test += [(f, label) for f in test_files]
    return train, test


def _dataset(
    name: str, train: ImageList, test: ImageList, store_size: int, root: Path, remedy: str
) -> Dataset:
    from lab.data.datasets import Dataset  # here: datasets.py registers these loaders

    def split(images: ImageList, part: str) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = decoded_images(
            [f for f, _ in images], store_size, root / DECODED, f"{name}-{part}", remedy
        )
        labels = torch.tensor([label for _, label in images], dtype=torch.int64)
        return torch.from_numpy(pixels), labels

    return Dataset(name, *split(train, "train"), *split(test, "test"))


def _redownload(directory: Path) -> str:
    return (
        f"replace it with an intact copy, or delete {directory} and run once online so "
        "that it is downloaded again"
    )


def _lines(path: Path, fields: int) -> list[list[str]]:
    """The first `fields` whitespace-separated fields of each line of a text file (CUB's
    lists, TinyImageNet's annotations); one DataFileError line when a line has fewer."""
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        row = line.split()
        if row and len(row) < fields:
            raise DataFileError(
                f"{path} line {number} has {len(row)} fields where {fields} were expected; "
                f"{_redownload(path.parent)}"
            )
        if row:
            rows.append(row[:fields])
    return rows


def load_tinyimagenet(root: Path, store_size: int | None = None) -> Dataset:
    """TinyImageNet (200 classes, 64 x 64): its train/ as the training set, its labelled
    val/ as the test set. Labels: the order of the sorted wnids (as ImageFolder on train/)."""
    directory = root / "tiny-imagenet-200"
    annotations = directory / "val" / "val_annotations.txt"
    _fetch(
        "tinyimagenet",
        directory,
        [directory / "wnids.txt", directory / "train", annotations],
        TINYIMAGENET,
    )
    wnids = sorted(row[0] for row in _lines(directory / "wnids.txt", 1))
    label = {wnid: i for i, wnid in enumerate(wnids)}
    train = _labelled(directory / "train", wnids)
    test = []
    for file, wnid in sorted(_lines(annotations, 2)):
        if wnid not in label:
            raise DataFileError(
                f"{annotations} labels {file} with {wnid}, which is not in wnids.txt; "
                f"{_redownload(directory)}"
            )
        test.append((directory / "val" / "images" / file, label[wnid]))
    size = store_size or STORE_SIZE["tinyimagenet"]
    return _dataset("tinyimagenet", train, test, size, root, _redownload(directory))


def load_imagenet_r(root: Path, store_size: int | None = None) -> Dataset:
    """ImageNet-R (Hendrycks et al. 2021; 200 ImageNet classes, 30,000 images), split 80/20
    per class with the fixed seed 0 (split_per_class), about 24,000 / 6,000 images.

    The references do not split per class: CODA-Prompt ships one fixed list of 24,000 train
    and 6,000 test files (Mammoth reads the same lists), drawn from the whole set, so a
    class's test share ranges from 8% to 29% there; DualPrompt's PyTorch port draws
    random_split(0.8, 0.2) over the whole set. A per-class split keeps every class's 20%,
    and every run and every machine gets the same split without a shipped list."""
    directory = root / "imagenet-r"
    _fetch("imagenet_r", directory, [directory], IMAGENET_R)
    train, test = _split_folders(directory, test_fraction=0.2, seed=0)
    size = store_size or STORE_SIZE["imagenet_r"]
    return _dataset("imagenet_r", train, test, size, root, _redownload(directory))


def load_cub200(root: Path, store_size: int | None = None) -> Dataset:
    """CUB-200-2011 (200 bird species, 11,788 images) with its own train/test split
    (train_test_split.txt: 1 train, 0 test), in images.txt's order; labels are the class
    ids of image_class_labels.txt minus one."""
    directory = root / "CUB_200_2011"
    lists = ["images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt"]
    _fetch("cub200", directory, [directory / f for f in lists] + [directory / "images"], CUB200)
    files = _lines(directory / "images.txt", 2)
    labels = dict(_lines(directory / "image_class_labels.txt", 2))
    is_train = dict(_lines(directory / "train_test_split.txt", 2))
    train, test = [], []
    for image_id, file in files:
        for name, values, valid in (
            ("image_class_labels.txt", labels, [str(c) for c in range(1, 201)]),
            ("train_test_split.txt", is_train, ["0", "1"]),
        ):
            if values.get(image_id) not in valid:
                raise DataFileError(
                    f"{directory / name} gives image {image_id} of images.txt "
                    f"{values.get(image_id, 'no line')!r}, not one of {valid[0]}..{valid[-1]}; "
                    f"{_redownload(directory)}"
                )
        part = train if is_train[image_id] == "1" else test
        part.append((directory / "images" / file, int(labels[image_id]) - 1))
    size = store_size or STORE_SIZE["cub200"]
    return _dataset("cub200", train, test, size, root, _redownload(directory))


def load_image_folder(
    root: Path,
    folder: str | Path | None = None,
    store_size: int | None = None,
    test_fraction: float = 0.2,
    split_seed: int = 0,
) -> Dataset:
    """A class-per-folder dataset at `folder` (the cache goes to root/decoded/):
    folder/train/<class>/* and folder/test/<class>/* (its own split; a class may be absent
    from one of them), or folder/<class>/*, split per class (split_per_class) with
    `test_fraction` and `split_seed`. Classes are numbered in the order of their names."""
    if folder is None:
        raise DataNotFoundError("image_folder: no folder given; set benchmark.root=DIR")
    directory = Path(folder).expanduser()
    if not directory.is_dir():
        raise DataNotFoundError(
            f"image_folder: {directory} is not a directory; put the dataset there as "
            "DIR/<class>/* (or DIR/train/<class>/* and DIR/test/<class>/*), or set "
            "benchmark.root=DIR to where it is"
        )
    if (directory / "train").is_dir() != (directory / "test").is_dir():
        half = "train" if (directory / "train").is_dir() else "test"
        other = "test" if half == "train" else "train"
        raise DataNotFoundError(
            f"image_folder: {directory} has {half}/ but no {other}/; add "
            f"{directory / other}/<class>/*, or put the class folders directly in {directory}"
        )
    if (directory / "train").is_dir():
        classes = sorted(
            {*_class_folders(directory / "train"), *_class_folders(directory / "test")}
        )
        train = _labelled(directory / "train", classes)
        test = _labelled(directory / "test", classes)
    else:
        classes = _class_folders(directory)
        train, test = _split_folders(directory, test_fraction, split_seed)
    labels = {label for _, label in train + test}
    empty = [c for label, c in enumerate(classes) if label not in labels]
    if not classes or empty:
        where = f"class folder {empty[0]!r} has" if empty else "has no class folders and"
        raise DataNotFoundError(
            f"image_folder: {directory} {where} no image files ({', '.join(IMAGE_EXTENSIONS)}); "
            "put each class's images in a folder of its own"
        )
    size = store_size or STORE_SIZE["image_folder"]
    return _dataset(
        "image_folder", train, test, size, root, "replace it with an intact copy, or delete it"
    )


def _imagenet_wnids() -> list[str]:
    """The 1,000 ILSVRC-2012 synsets in the order of ImageNet-1k's class indices (sorted,
    as torchvision's ImageNet and every in1k classifier number them), from timm."""
    from timm.data import ImageNetInfo

    return list(ImageNetInfo("imagenet-1k").label_names())


def center_crop(image, size: int, crop: float = IMAGENET_CROP) -> np.ndarray:
    """A PIL image as (3, size, size) uint8: RGB, its shorter side resized to size / crop
    (antialiased bilinear), then the centre size x size (torchvision's Resize(int) and
    CenterCrop, timm's eval transform)."""
    from PIL import Image

    image = image.convert("RGB")
    width, height = image.size
    short = int(size / crop)  # torchvision: int(math.floor(size / crop_pct))
    scale = short / min(width, height)
    new = (
        (short, max(short, round(height * scale)))
        if width <= height
        else (
            max(short, round(width * scale)),
            short,
        )
    )
    image = image.resize(new, Image.Resampling.BILINEAR)
    left, top = round((new[0] - size) / 2), round((new[1] - size) / 2)
    image = image.crop((left, top, left + size, top + size))
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)


def load_imagenet_val(
    root: Path, folder: str | Path | None = None, store_size: int | None = None
) -> Dataset:
    """The ILSVRC-2012 validation images, labelled 0..999 as ImageNet-1k's classifiers
    number them (the sorted synsets), as the test set; no training set (pretrain=model
    draws its evaluation subset and the rest from them: lab.pretrain).

    `folder` (default data.root/imagenet/val) holds them in either published layout:
    torchvision's, FOLDER/<wnid>/*.JPEG (what torchvision.datasets.ImageNet and the
    valprep script make), or the Hugging Face hub's (imagenet-1k's val_images.tar.gz),
    FOLDER/ILSVRC2012_val_00000001_n01751748.JPEG, the synset at the end of each name. A
    subset of the classes is fine. Each image is decoded once as ImageNet is evaluated:
    the shorter side to store_size / 0.875, then the centre crop (center_crop)."""
    from lab.data.datasets import Dataset

    directory = Path(folder).expanduser() if folder is not None else root / "imagenet" / "val"
    wnids = _imagenet_wnids()
    label = {wnid: i for i, wnid in enumerate(wnids)}
    where = (
        f"imagenet_val: put the ILSVRC-2012 validation images in {directory} as "
        "<wnid>/*.JPEG (torchvision's layout) or *_<wnid>.JPEG (the Hugging Face hub's), "
        "or set pretrain.root=DIR (ImageNet needs an account: image-net.org)"
    )
    if not directory.is_dir():
        raise DataNotFoundError(f"{where}; {directory} is not a directory")
    images: ImageList = []
    for path in _image_files(directory):
        wnid = path.parent.name if path.parent != directory else path.stem.rsplit("_", 1)[-1]
        if wnid not in label:
            raise DataFileError(
                f"imagenet_val: {path} names no ILSVRC-2012 synset ({wnid!r}); valid: "
                f"n01440764 ... n15075141 as <wnid>/file or file_<wnid>.JPEG"
            )
        images.append((path, label[wnid]))
    if not images:
        raise DataNotFoundError(f"{where}; {directory} holds no image files")
    size = store_size or STORE_SIZE["imagenet_val"]
    remedy = "replace it with an intact copy of the ILSVRC-2012 validation image"
    files = [f for f, _ in images]
    pixels = cached_images(
        root / DECODED,
        f"imagenet_val-test-crop{IMAGENET_CROP}",
        files,
        size,
        len(files),
        lambda i: _decode_with(center_crop, files[i], size, remedy),
    )
    empty = torch.empty((0, 3, size, size), dtype=torch.uint8)
    labels = torch.tensor([y for _, y in images], dtype=torch.int64)
    return Dataset(
        "imagenet_val", empty, torch.empty(0, dtype=torch.int64), torch.from_numpy(pixels), labels
    )


def _decode_with(view, path: Path, size: int, remedy: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return view(image, size)
    except Exception as error:  # noqa: BLE001 - a damaged file makes PIL raise many types
        raise DataFileError(f"{path} cannot be read ({brief(error)}); {remedy}") from None
