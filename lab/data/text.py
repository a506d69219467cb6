"""Text classification streams: a user's CSV files, or the five datasets of de Masson
d'Autume et al. 2019, tokenised once by the model's fast tokenizer.

    text_csv  one CSV file per task (benchmark.train, benchmark.test: lists in task
              order), each with a text column and a label column (benchmark.text_column,
              benchmark.label_column); a task's classes are the labels of its training
              file, merged by name across the tasks (the same label, the same class-IL
              class), numbered in the order they first appear (a task's sorted).
    text_cl5  AG News (4), Yelp (5), Amazon (5), DBPedia (14), Yahoo Answers (10), one
              task each in benchmark.order 1..4; Yelp and Amazon share their 5 labels: 33
              classes. From the Hugging Face hub through `datasets` (Amazon from its
              original CSV archive), downloaded into data.root for users online.

Texts are tokenised in batches by the fast tokenizer (truncated to data.max_length) into
packed int32 rows (lab.data.tokens), cached in data.root/tokenized/ under a key of the
tokenizer (its whole definition), max_length and the texts themselves: a changed file, a
changed tokenizer or another max_length gives another key. The tasks of a stream are
padded to their longest text, so every batch of the stream has one width.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from lab.data.tokens import Tokens, pack, widen
from lab.errors import ConfigError, DataFileError, DataNotFoundError, brief

if TYPE_CHECKING:
    from lab.data.streams import Stream

log = logging.getLogger(__name__)

TOKENIZED = "tokenized"  # the cache's folder under data.root
TOKENIZE = "fast-truncate-1"  # part of the key: change it when `tokenize` changes
BATCH = 1024  # texts per call of the tokenizer


@dataclass
class TextTask:
    name: str
    classes: list[int]  # its labels' ids in the dataset's merged label space
    train_x: torch.Tensor  # packed tokens (lab.data.tokens), int32 (N, 1 + width)
    train_y: torch.Tensor  # merged label ids, int64
    test_x: torch.Tensor
    test_y: torch.Tensor


@dataclass
class TextDataset:
    """A text benchmark's tasks (a dataset, or a file, each), their labels merged."""

    name: str
    tasks: list[TextTask]
    label_names: list[str]  # by merged label id

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def to(self, device: torch.device | str) -> TextDataset:
        moved = [
            TextTask(
                t.name,
                t.classes,
                *(getattr(t, f).to(device) for f in ("train_x", "train_y", "test_x", "test_y")),
            )
            for t in self.tasks
        ]
        return TextDataset(self.name, moved, self.label_names)


def tokenizer_key(tokenizer: Any) -> str:
    """What a tokenisation depends on of the tokenizer: its whole definition (its
    vocabulary, normaliser, pre-tokeniser, model and special tokens), less the truncation
    and padding that the last call left set (max_length is keyed on its own)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return hashlib.sha1(repr(tokenizer).encode()).hexdigest()[:16]
    definition = json.loads(backend.to_str())
    definition.pop("truncation", None)
    definition.pop("padding", None)
    text = json.dumps(definition, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def tokenize(texts: Sequence[str], tokenizer: Any, max_length: int) -> list[list[int]]:
    """Token ids of each text (with the model's special tokens), at most max_length."""
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(
            f"model.arch: the tokenizer {type(tokenizer).__name__} is not a fast tokenizer; "
            "valid: a model with a tokenizer.json (transformers' fast tokenizers)"
        )
    ids: list[list[int]] = []
    for start in range(0, len(texts), BATCH):
        encoded = tokenizer(
            list(texts[start : start + BATCH]), truncation=True, max_length=max_length
        )
        ids.extend(encoded["input_ids"])
    return ids


def cached_tokens(
    texts: Sequence[str], tokenizer: Any, max_length: int, cache: Path, name: str
) -> torch.Tensor:
    """The texts tokenised and packed (lab.data.tokens), read from cache/NAME.KEY.npy or
    made and written there first (atomically; in memory only where it cannot be written)."""
    digest = hashlib.sha1(f"{TOKENIZE}:{tokenizer_key(tokenizer)}:{max_length}".encode())
    for text in texts:
        digest.update(text.encode())
        digest.update(b"\0")
    path = cache / f"{name}.{digest.hexdigest()[:16]}.npy"
    if path.is_file():
        try:
            return torch.from_numpy(np.load(path))
        except (OSError, ValueError):  # a damaged copy: make it again
            path.unlink(missing_ok=True)
    ids = tokenize(texts, tokenizer, max_length)
    width = max((len(i) for i in ids), default=0)
    packed = pack(ids, width, pad_id(tokenizer))
    try:
        cache.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache, prefix=f".{path.name}.", suffix=".npy")
        with os.fdopen(fd, "wb") as f:
            np.save(f, packed.numpy())
        os.replace(tmp, path)
    except OSError:  # a read-only data.root: tokenised again next time
        log.warning("%s: %s cannot be written; tokenising in memory", name, cache)
    return packed


def pad_id(tokenizer: Any) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


# ---------------------------------------------------------------------------- CSV files


def read_csv(path: Path, text_column: str, label_column: str) -> list[tuple[str, str, int]]:
    """(text, label, line) of each row of a CSV file with a header; one DataFileError line
    for a missing file or column, or an empty text or label."""
    if not path.is_file():
        raise DataNotFoundError(f"text_csv: {path} is not a file; valid: a CSV file with a header")
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        for column, key in ((text_column, "text_column"), (label_column, "label_column")):
            if column not in columns:
                raise DataFileError(
                    f"{path} has no column {column!r} (benchmark.{key}); valid: its columns "
                    f"{', '.join(repr(c) for c in columns) or '(none: an empty file)'}"
                )
        for row in reader:
            text, label = (
                (row.get(text_column) or "").strip(),
                (row.get(label_column) or "").strip(),
            )
            if not text:
                raise DataFileError(
                    f"{path} line {reader.line_num}: the text ({text_column!r}) is empty; "
                    "valid: a non-empty text in every row"
                )
            if not label:
                raise DataFileError(
                    f"{path} line {reader.line_num}: the label ({label_column!r}) is empty; "
                    "valid: a label in every row"
                )
            rows.append((text, label, reader.line_num))
    if not rows:
        raise DataFileError(f"{path} has no rows; valid: a header and at least one row")
    return rows


def load_text_csv(
    root: Path,
    tokenizer: Any = None,
    max_length: int = 128,
    train: list[str] | None = None,
    test: list[str] | None = None,
    text_column: str = "text",
    label_column: str = "label",
) -> TextDataset:
    """A user's CSV files, one training and one test file per task (module docstring)."""
    if tokenizer is None:
        raise ConfigError("benchmark=text_csv needs a text model; valid: model=hf model.arch=...")
    if not train or not test or len(train) != len(test):
        raise ConfigError(
            f"benchmark.train={train!r} and benchmark.test={test!r}: valid: two lists of CSV "
            "files of the same length, one training and one test file per task"
        )
    names: list[str] = []
    parts = []
    for train_file, test_file in zip(train, test, strict=True):
        train_path, test_path = Path(train_file).expanduser(), Path(test_file).expanduser()
        train_rows = read_csv(train_path, text_column, label_column)
        labels = sorted({label for _, label, _ in train_rows})
        for label in labels:
            if label not in names:
                names.append(label)
        test_rows = read_csv(test_path, text_column, label_column)
        for _, label, line in test_rows:
            if label not in labels:
                raise DataFileError(
                    f"{test_path} line {line}: label {label!r} is not a label of {train_path}; "
                    f"valid: {', '.join(labels)}"
                )
        parts.append((train_path, labels, train_rows, test_rows))
    cache = root / TOKENIZED
    tasks = []
    for path, labels, train_rows, test_rows in parts:
        ids = {label: names.index(label) for label in labels}
        splits = []
        for split, rows in (("train", train_rows), ("test", test_rows)):
            x = cached_tokens(
                [t for t, _, _ in rows], tokenizer, max_length, cache, f"{path.stem}-{split}"
            )
            y = torch.tensor([ids[label] for _, label, _ in rows], dtype=torch.int64)
            splits += [x, y]
        tasks.append(TextTask(path.stem, [ids[label] for label in labels], *splits))
    return TextDataset("text_csv", _common_width(tasks, tokenizer), names)


def _common_width(tasks: list[TextTask], tokenizer: Any) -> list[TextTask]:
    """The tasks padded to their longest text, so that the stream's batches have one width."""
    width = max(x.shape[1] - 1 for t in tasks for x in (t.train_x, t.test_x))
    pad = pad_id(tokenizer)
    for t in tasks:
        t.train_x, t.test_x = widen(t.train_x, width, pad), widen(t.test_x, width, pad)
    return tasks


# ------------------------------------------------------------------- the five datasets

# name: (hub dataset, its text fields, its number of classes); Amazon: the CSV archive
CL5 = {
    "ag_news": ("ag_news", ("text",), 4),
    "yelp": ("yelp_review_full", ("text",), 5),
    "amazon": (None, ("title", "text"), 5),
    "dbpedia": ("dbpedia_14", ("title", "content"), 14),
    "yahoo": ("yahoo_answers_topics", ("question_title", "question_content", "best_answer"), 10),
}
CL5_LABEL = {"yahoo": "topic"}  # the label's field where it is not `label`
# the first merged label id of each dataset's labels: Yelp and Amazon share theirs
CL5_OFFSET = {"ag_news": 0, "yelp": 4, "amazon": 4, "dbpedia": 9, "yahoo": 23}
CL5_CLASSES = 33
CL5_ORDERS = {
    1: ["yelp", "ag_news", "dbpedia", "amazon", "yahoo"],
    2: ["dbpedia", "yahoo", "ag_news", "amazon", "yelp"],
    3: ["yelp", "yahoo", "amazon", "dbpedia", "ag_news"],
    4: ["ag_news", "yelp", "amazon", "yahoo", "dbpedia"],
}
CL5_TEST = 7600  # test samples per dataset (AG News's test set; a seeded draw of the others)
AMAZON = (
    "https://s3.amazonaws.com/fast-ai-nlp/amazon_review_full_csv.tgz",
    None,  # no published checksum: the extracted files are checked row by row
)


def _hub_split(name: str, root: Path, split: str) -> tuple[list[str], list[int]]:
    """(texts, labels 0..k-1) of one of the five datasets' train or test split."""
    hub, fields, _ = CL5[name]
    if hub is None:
        return _amazon_split(root, split)
    try:
        import datasets

        data = datasets.load_dataset(hub, split=split, cache_dir=str(root / "hf"))
    except Exception as error:  # noqa: BLE001 - offline, no hub: one line
        raise DataNotFoundError(
            f"text_cl5: {hub} could not be loaded from the Hugging Face hub ({brief(error)}); "
            f"run once online so that `datasets` downloads it into {root / 'hf'}"
        ) from None
    label = CL5_LABEL.get(name, "label")
    texts = [" ".join(str(row[f] or "") for f in fields).strip() for row in data]
    return texts, [int(v) for v in data[label]]


def _amazon_split(root: Path, split: str) -> tuple[list[str], list[int]]:
    """Amazon's full reviews (Zhang et al. 2015): amazon_review_full_csv/{train,test}.csv,
    rows of (label 1..5, title, text), no header."""
    from lab.data.folders import _download

    directory = root / "amazon_review_full_csv"
    path = directory / f"{split}.csv"
    if not path.is_file():
        failure = _download(AMAZON[0], root, AMAZON[1])
        if not path.is_file():
            raise DataNotFoundError(
                f"text_cl5: {path} is missing; the download of {AMAZON[0]} failed ({failure}). "
                f"Put the extracted amazon_review_full_csv/ in data.root={root}, or run once online"
            )
    texts, labels = [], []
    with open(path, newline="", encoding="utf-8") as f:
        for number, row in enumerate(csv.reader(f), 1):
            if len(row) < 3 or row[0] not in ("1", "2", "3", "4", "5"):
                raise DataFileError(
                    f"{path} line {number}: {row[:1]!r} is not a row of (label 1..5, title, "
                    "text); valid: the archive's own file (delete it to download it again)"
                )
            texts.append(f"{row[1]} {row[2]}".strip())
            labels.append(int(row[0]) - 1)
    return texts, labels


def _draw(labels: list[int], per_class: int | None, total: int | None, seed: int) -> np.ndarray:
    """Indices of a seeded draw: `per_class` of each label, or `total` of all; all if None."""
    rng = np.random.default_rng(seed)
    y = np.asarray(labels)
    if per_class is not None:
        picks = [rng.permutation(np.flatnonzero(y == c))[:per_class] for c in np.unique(y)]
        return np.sort(np.concatenate(picks))
    if total is not None and total < len(y):
        return np.sort(rng.permutation(len(y))[:total])
    return np.arange(len(y))


def load_text_cl5(
    root: Path,
    tokenizer: Any = None,
    max_length: int = 128,
    order: int = 1,
    train_per_class: int | None = None,
) -> TextDataset:
    """The five datasets in `order`, `train_per_class` training texts a class (all: None)
    and CL5_TEST test texts each, drawn with the fixed seed 0; labels merged to 33."""
    if tokenizer is None:
        raise ConfigError("benchmark=text_cl5 needs a text model; valid: model=hf model.arch=...")
    if order not in CL5_ORDERS:
        raise ConfigError(f"benchmark.order={order!r} is invalid; valid: 1, 2, 3, 4")
    tasks = []
    for name in CL5_ORDERS[order]:
        offset, k = CL5_OFFSET[name], CL5[name][2]
        splits = []
        for split, per_class, total in (("train", train_per_class, None), ("test", None, CL5_TEST)):
            texts, labels = _hub_split(name, root, split)
            keep = _draw(labels, per_class, total, seed=0)
            texts = [texts[i] for i in keep]
            x = cached_tokens(texts, tokenizer, max_length, root / TOKENIZED, f"{name}-{split}")
            y = torch.tensor([labels[i] + offset for i in keep], dtype=torch.int64)
            splits += [x, y]
        tasks.append(TextTask(name, list(range(offset, offset + k)), *splits))
    label_names = [f"ag_news:{i}" for i in range(4)] + [f"review:{i + 1}" for i in range(5)]
    label_names += [f"dbpedia:{i}" for i in range(14)] + [f"yahoo:{i}" for i in range(10)]
    return TextDataset("text_cl5", _common_width(tasks, tokenizer), label_names)


# --------------------------------------------------------------------------- the stream


def build_text_stream(
    dataset: TextDataset, scenario: str, device: torch.device | None = None
) -> Stream:
    """A task per dataset (or file), in order; targets and heads laid out for `scenario`:
    class-IL over the merged labels, task-IL a head per task, domain-IL one head of the
    most classes a task has (a label's index within its task)."""
    from lab.data.streams import SCENARIOS, Stream, Task  # it imports the loaders

    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; valid: {', '.join(SCENARIOS)}")
    tasks = []
    for i, t in enumerate(dataset.tasks):
        lookup = torch.full((dataset.num_classes,), -1, dtype=torch.int64, device=t.train_y.device)
        lookup[torch.tensor(t.classes)] = torch.arange(len(t.classes), device=t.train_y.device)
        within = scenario != "class"
        tasks.append(
            Task(
                id=i,
                classes=t.classes,
                global_classes=t.classes,
                outputs=list(range(len(t.classes))) if within else t.classes,
                train_x=Tokens(t.train_x, device=device),
                train_y=lookup[t.train_y] if within else t.train_y,
                test_x=Tokens(t.test_x, device=device),
                test_y=lookup[t.test_y] if within else t.test_y,
                description=t.name,
            )
        )
    if scenario == "task":
        head_sizes = [len(t.classes) for t in tasks]
    elif scenario == "domain":
        head_sizes = [max(len(t.classes) for t in tasks)]
    else:
        head_sizes = [dataset.num_classes]
    return Stream(tasks, head_sizes, scenario)


# ------------------------------------------------------------- a held-out text (MLM)


def read_text_file(path: str | Path) -> list[str]:
    """The non-empty lines of a UTF-8 text file: one passage each."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise DataNotFoundError(
            f"pretrain.path={path}: no such file; valid: a UTF-8 text file, one passage a line"
        )
    try:
        lines = [line.strip() for line in file.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as error:
        raise DataFileError(f"{file} cannot be read as UTF-8 text ({brief(error)})") from None
    lines = [line for line in lines if line]
    if not lines:
        raise DataFileError(f"{file} has no text; valid: a UTF-8 text file, one passage a line")
    return lines


# ------------------------------------------------------------------------- throughput


def throughput(stream: Stream, data: dict[str, Any]) -> None:
    """A text stream's tokens per second of training and of evaluation so far, into
    results.json's timing (the pads not counted): training, the tokens of the texts each
    task's optimizer steps drew from its own training set (a rehearsal memory's not
    counted); evaluation, every test text of the stream after each task (twice in
    class-IL: it is also scored task-IL by masking)."""
    if not stream.tasks or not isinstance(stream.tasks[0].train_x, Tokens):
        return
    train = data["config"]["train"]
    timing, done = data["timing"], len(data["acc_matrix"])
    trained = 0.0
    for task in stream.tasks[:done]:
        n = len(task.train_x)
        drawn = train["iterations"] * train["batch_size"] if train["iterations"] else None
        samples = train["epochs"] * n if drawn is None else drawn
        trained += task.train_x.token_count() * samples / max(n, 1)
    passes = 2 if stream.scenario == "class" else 1
    evaluated = done * passes * sum(task.test_x.token_count() for task in stream.tasks)
    per_task = timing.get("tasks", [])[:done]
    train_s = sum(t["train_s"] for t in per_task)
    eval_s = sum(t["eval_s"] for t in per_task)
    timing["train_tokens"], timing["eval_tokens"] = int(trained), int(evaluated)
    timing["train_tokens_per_s"] = trained / train_s if train_s > 0 else None
    timing["eval_tokens_per_s"] = evaluated / eval_s if eval_s > 0 else None
