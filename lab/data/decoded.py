"""Images decoded once into a uint8 cache under data.root/decoded/, memory-mapped after that.

Decoding is what makes folder datasets slow: ImageNet-R's 30,000 JPEGs take minutes to
read and resize, and a sweep would pay that in every run. The first load decodes every
image into one (N, 3, size, size) uint8 .npy file; later loads map that file into memory
(np.load with mmap_mode): nothing is decoded, pages are read from disk as they are used,
and the runs of a sweep on one machine share them through the page cache.

How an image becomes pixels (`resize`): PIL opens it, converts it to RGB (grey, palette,
RGBA and CMYK files alike) and resizes it directly to size x size, aspect ratio not kept,
with PIL's antialiased bilinear filter: what torchvision's Resize((size, size)) does to a
PIL image, the test-time transform of CODA-Prompt (ImageNet-R) and of Mammoth (ImageNet-R,
CUB-200). An image already at size x size (TinyImageNet at 64, CIFAR at 32) is kept as it is.

The cache file's name carries a key of everything its pixels depend on: each source file's
path, size and modification time, the stored size, the split (in `name`) and the resize
method (RESIZE). A changed, added or removed image gives another key, so a stale copy is
never read. The file is written under a temporary name and renamed into place, so a run
cut short leaves no half-written cache; where data.root cannot be written the images are
decoded into memory instead, every run.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from lab.errors import DataFileError, brief

log = logging.getLogger(__name__)

DECODED = "decoded"  # the cache's folder under data.root (also the IDX files' decompressed copies)
RESIZE = "rgb-bilinear-direct-1"  # part of the key: change it when `resize` changes
CHUNK = 256  # images per step: bounds the memory in flight and how often progress is told
PROGRESS_EVERY_S = 10.0


def resize(image, size: int) -> np.ndarray:
    """A PIL image as (3, size, size) uint8: RGB, resized directly (see the module's doc)."""
    from PIL import Image  # not imported by runs that never decode an image

    image = image.convert("RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)


def decode(path: Path, size: int, remedy: str) -> np.ndarray:
    """One image file as (3, size, size) uint8; one DataFileError line when it cannot be read."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return resize(image, size)
    except Exception as error:  # noqa: BLE001 - a damaged file makes PIL raise many types
        raise DataFileError(f"{path} cannot be read ({brief(error)}); {remedy}") from None


def decoded_images(
    files: Sequence[Path], size: int, cache: Path, name: str, remedy: str
) -> np.ndarray:
    """The images of `files`, in order, as (N, 3, size, size) uint8: from the cache when it
    holds them, else decoded (threads: PIL releases the GIL while decoding) and cached.
    `remedy` ends the message that names a damaged file: what the user should do."""
    return cached_images(
        cache, name, files, size, len(files), lambda i: decode(files[i], size, remedy)
    )


def cached_images(
    cache: Path,
    name: str,
    sources: Sequence[Path],
    size: int,
    count: int,
    image: Callable[[int], np.ndarray],
) -> np.ndarray:
    """(count, 3, size, size) uint8, read memory-mapped from cache/NAME-SIZEpx.KEY.npy, or
    made by image(i) for i in 0..count-1 and written there first. The key is made from
    `sources` (the files the pixels come from) and `size`."""
    shape = (count, 3, size, size)
    if count == 0:  # nothing to map (np.memmap refuses an empty file)
        return np.empty(shape, dtype=np.uint8)
    path = cache / f"{name}-{size}px.{_key(sources, size)}.npy"
    if path.is_file():
        try:
            array = np.load(path, mmap_mode="c")
            if array.shape == shape and array.dtype == np.uint8:
                return array
        except (OSError, ValueError):  # a damaged copy: make it again
            pass
        path.unlink(missing_ok=True)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache, prefix=f".{path.name}.", suffix=".npy")
        os.close(fd)
    except OSError:  # a read-only data.root: decode into memory, every run
        log.warning("%s: %s cannot be written; decoding into memory", name, cache)
        array = np.empty(shape, dtype=np.uint8)
        _fill(array, image, name)
        return array
    try:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        _fill(array, image, name)
        array.flush()
        del array
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    # copy-on-write: pages come from the file; a write (nothing in the lab writes a dataset
    # in place) would stay in this process, and torch gets the writable array it expects
    return np.load(path, mmap_mode="c")


def _key(sources: Sequence[Path], size: int) -> str:
    digest = hashlib.sha1(f"{RESIZE}:{size}".encode())
    for source in sources:
        stat = source.stat()
        digest.update(f"\0{source.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def _fill(out: np.ndarray, image: Callable[[int], np.ndarray], name: str) -> None:
    """out[i] = image(i) for every i, a chunk at a time over a few threads, with progress."""
    count, started, told = len(out), time.monotonic(), time.monotonic()
    if count > CHUNK:
        log.info("%s: decoding %d images once into the cache", name, count)
    pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1))
    try:
        for start in range(0, count, CHUNK):
            stop = min(start + CHUNK, count)
            out[start:stop] = np.stack(list(pool.map(image, range(start, stop))))
            if time.monotonic() - told >= PROGRESS_EVERY_S and stop < count:
                told = time.monotonic()
                log.info("%s: %d/%d images (%.0f%%)", name, stop, count, 100 * stop / count)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # a damaged image stops the others
    if count > CHUNK:
        log.info("%s: %d images decoded in %.1f s", name, count, time.monotonic() - started)
