"""Datasets (tensors in memory) and the task streams built from them."""

from lab.data.datasets import Dataset, load_dataset
from lab.data.images import Images
from lab.data.streams import SCENARIOS, STREAMS, Stream, Task, build_stream, subsample_test_set

__all__ = [
    "SCENARIOS",
    "STREAMS",
    "Dataset",
    "Images",
    "Stream",
    "Task",
    "build_stream",
    "subsample_test_set",
    "load_dataset",
]
