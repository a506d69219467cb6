"""Text streams: the lab against a plain transformers loop, on the same model and data.

    python scripts/bench_text.py                      # the tiny BERT of the tests, on the CPU
    python scripts/bench_text.py --arch bert-base-uncased --device cuda --per-task 2000

The data is text_cl5-shaped and synthetic (no download): five tasks of 5, 4, 14, 5 and
10 classes (the second 5-class task shares the first's labels, as Amazon shares Yelp's),
texts of 8 to 60 words drawn with a fixed seed, written as CSV files (benchmark=text_csv).

    ours   lab-run model=hf benchmark=text_csv, class-IL, naive, Adam, as a whole process;
           its tokens/s from results.json (timing.train_tokens_per_s, eval_tokens_per_s)
    plain  the same stream as a plain transformers script (--plain): the tokenizer on each
           file, a DataLoader with DataCollatorWithPadding (each batch padded to its
           longest), AutoModel + a linear head on [CLS], Adam, every task evaluated after
           each; tokens counted from the attention masks, as the lab counts them

Both train the same epochs, batch size and max_length, fp32 on the CPU (the lab's
precision=auto: bf16 on a GPU that has it, so pass --precision to compare like with
like). Printed: wall time and peak memory of each process, and tokens/s of training and
of evaluation.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import run_measured  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CLASSES = [("review", 5), ("news", 4), ("wiki", 14), ("review", 5), ("answers", 10)]


def write_data(directory: Path, per_task: int, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(2000)] + ["the", "a", "of", "and", "to", "in", "is"]
    train, test = [], []
    for t, (kind, k) in enumerate(CLASSES):
        for split, count, files in (("train", per_task, train), ("test", per_task // 4, test)):
            path = directory / f"task{t}_{split}.csv"
            with open(path, "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["text", "label"])
                for i in range(count):
                    label = i % k
                    n = int(rng.integers(8, 61))
                    picked = rng.choice(len(words), n)
                    # a label's own words make the classes learnable
                    text = " ".join([words[j] for j in picked] + [f"{kind}{label}"] * 3)
                    writer.writerow([text, f"{kind}:{label}"])
            files.append(str(path))
    return train, test


def plain(args: argparse.Namespace) -> None:
    """The stream as a plain transformers script; prints its tokens/s as JSON."""
    import torch
    from torch.utils.data import DataLoader
    from transformers import AutoModel, AutoTokenizer, DataCollatorWithPadding

    device = torch.device(args.device)
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(args.arch)
    max_length = min(args.max_length, tokenizer.model_max_length)  # as the lab cuts
    files = json.loads(args.files)
    labels: list[str] = []
    tasks = []
    for part in ("train", "test"):
        for i, path in enumerate(files[part]):
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
            for row in rows:
                if row["label"] not in labels:
                    labels.append(row["label"])
            encoded = tokenizer([r["text"] for r in rows], truncation=True, max_length=max_length)
            examples = [
                {"input_ids": ids, "labels": labels.index(r["label"])}
                for ids, r in zip(encoded["input_ids"], rows, strict=True)
            ]
            if part == "train":
                tasks.append({"train": examples})
            else:
                tasks[i]["test"] = examples
    encoder = AutoModel.from_pretrained(args.arch).to(device)
    head = torch.nn.Linear(encoder.config.hidden_size, len(labels)).to(device)
    collate = DataCollatorWithPadding(tokenizer)
    train_tokens = eval_tokens = 0
    train_s = eval_s = 0.0
    for task in tasks:
        params = [*encoder.parameters(), *head.parameters()]
        optimizer = torch.optim.Adam(params, lr=args.lr)
        loader = DataLoader(task["train"], args.batch_size, shuffle=True, collate_fn=collate)
        encoder.train()
        started = time.perf_counter()
        for _ in range(args.epochs):
            for batch in loader:
                batch = {k: v.to(device) for k, v in batch.items()}
                y = batch.pop("labels")
                features = encoder(**batch).last_hidden_state[:, 0]
                loss = torch.nn.functional.cross_entropy(head(features), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                train_tokens += int(batch["attention_mask"].sum())
        if device.type == "cuda":
            torch.cuda.synchronize()
        train_s += time.perf_counter() - started
        encoder.eval()
        started = time.perf_counter()
        with torch.inference_mode():
            for other in tasks:
                for batch in DataLoader(other["test"], args.eval_batch_size, collate_fn=collate):
                    batch = {k: v.to(device) for k, v in batch.items()}
                    y = batch.pop("labels")
                    logits = head(encoder(**batch).last_hidden_state[:, 0])
                    (logits.argmax(1) == y).sum().item()
                    eval_tokens += int(batch["attention_mask"].sum())
        eval_s += time.perf_counter() - started
    figures = {
        "train_tokens_per_s": train_tokens / train_s,
        "eval_tokens_per_s": eval_tokens / eval_s,
    }
    Path(args.out).write_text(json.dumps(figures))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--arch", help="a hub name or a save_pretrained directory; default: the tests' tiny BERT"
    )
    parser.add_argument("--per-task", type=int, default=400, help="training texts per task")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--eval-batch-size", type=int, default=256)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", help="the lab's train.precision")
    parser.add_argument("--plain", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--files", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain:
        plain(args)
        return
    work = Path(tempfile.mkdtemp(prefix="bench-text-"))
    if args.arch is None:
        sys.path.insert(0, str(REPO / "tests"))
        from text_fixtures import save_tiny_bert

        args.arch = str(save_tiny_bert(work / "tiny-bert"))
    train, test = write_data(work, args.per_task)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run_dir = work / "run"
    ours = [
        sys.executable, "-m", "lab.run", "model=hf", f"model.arch={args.arch}",
        "benchmark=text_csv", f"benchmark.train=[{','.join(train)}]",
        f"benchmark.test=[{','.join(test)}]", "optimizer=adam", f"optimizer.lr={args.lr}",
        f"train.epochs={args.epochs}", f"train.batch_size={args.batch_size}",
        f"train.eval_batch_size={args.eval_batch_size}", f"data.max_length={args.max_length}",
        f"train.precision={args.precision}", f"device={args.device}", "logger=none",
        "progress=false", f"data.root={work / 'data'}", f"hydra.run.dir={run_dir}",
    ]  # fmt: skip
    memory, wall = run_measured(ours, env)
    timing = json.loads((run_dir / "results.json").read_text())["timing"]
    rows = [
        ("ours (lab-run)", wall, memory, timing["train_tokens_per_s"], timing["eval_tokens_per_s"])
    ]
    out = work / "plain.json"
    command = [
        sys.executable, __file__, "--plain", f"--arch={args.arch}",
        f"--files={json.dumps({'train': train, 'test': test})}",
        f"--epochs={args.epochs}", f"--batch-size={args.batch_size}",
        f"--eval-batch-size={args.eval_batch_size}", f"--max-length={args.max_length}",
        f"--lr={args.lr}", f"--device={args.device}",
    ]  # fmt: skip
    memory_plain, wall_plain = run_measured([*command, f"--out={out}"], env)
    figures = json.loads(out.read_text())
    rows.append(
        (
            "plain transformers",
            wall_plain,
            memory_plain,
            figures["train_tokens_per_s"],
            figures["eval_tokens_per_s"],
        )
    )
    print(
        f"model {args.arch}, 5 tasks x {args.per_task} texts, {args.epochs} epoch(s), "
        f"batch {args.batch_size}, max_length {args.max_length}, {args.device}"
    )
    print(f"{'':20} {'wall s':>8} {'peak GB':>8} {'train tok/s':>12} {'eval tok/s':>12}")
    for name, w, m, t, e in rows:
        print(f"{name:20} {w:8.1f} {m:8.2f} {t:12.0f} {e:12.0f}")


if __name__ == "__main__":
    main()
