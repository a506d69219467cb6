"""A tiny BERT (2 layers of width 32) with a WordPiece tokenizer trained here, and small
text tasks as CSV files: the offline stand-ins of a hub model and a text benchmark."""

from __future__ import annotations

import csv
from pathlib import Path

import torch

WORDS = {
    "pos": "good great fine lovely superb happy",
    "neg": "bad awful poor dreadful sad boring",
    "sport": "goal match team ball score coach",
    "food": "bread soup cheese apple salt dinner",
}
FILLER = ["the", "a", "this", "that", "was", "is", "very", "so", "really", "quite"]
TASKS = [("reviews", ("neg", "pos")), ("topics", ("food", "sport"))]
HELD_OUT = [
    "the team was very good and the match was great",
    "this soup is so bad and the bread was awful",
    "a lovely dinner with cheese and apple",
]


def sentence(label: str, i: int) -> str:
    words = WORDS[label].split()
    picked = [words[(i + k) % len(words)] for k in range(1 + i % 3)]
    filler = [FILLER[(i * 3 + k) % len(FILLER)] for k in range(2 + i % 4)]
    return " ".join(filler[:1] + picked + filler[1:])


def write_tasks(directory: Path, train: int = 12, test: int = 6) -> tuple[list[str], list[str]]:
    """One training and one test CSV per task (text, label), `train` and `test` rows a class."""
    directory.mkdir(parents=True, exist_ok=True)
    files: tuple[list[str], list[str]] = ([], [])
    for name, labels in TASKS:
        for part, (count, offset) in enumerate(((train, 0), (test, 1000))):
            path = directory / f"{name}_{('train', 'test')[part]}.csv"
            with open(path, "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["text", "label"])
                for i in range(count):
                    for label in labels:
                        writer.writerow([sentence(label, i + offset), label])
            files[part].append(str(path))
    return files


def save_tiny_bert(directory: Path) -> Path:
    """A tiny masked-LM BERT and its WordPiece tokenizer, saved with save_pretrained."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertForMaskedLM, PreTrainedTokenizerFast

    texts = [sentence(label, i) for label in WORDS for i in range(40)] + HELD_OUT
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer.train_from_iterator(
        texts, trainers.WordPieceTrainer(vocab_size=120, special_tokens=special)
    )
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=64,
    )
    fast.save_pretrained(directory)
    config = BertConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    model = BertForMaskedLM(config)
    _learn_masked_words(model, fast, HELD_OUT * 4 + texts[::8])
    model.save_pretrained(directory)
    return directory


def _learn_masked_words(model, tokenizer, texts: list[str], steps: int = 150) -> None:
    """A few masked-LM steps on the texts, so that the MLM column measures something (a
    random model's masked-token accuracy is near 0, before and after any stream)."""
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    special = torch.tensor(
        [
            tokenizer.get_special_tokens_mask(row, already_has_special_tokens=True)
            for row in ids.tolist()
        ]
    ).bool() | (mask == 0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        chosen = (torch.rand(ids.shape, generator=generator) < 0.15) & ~special
        labels = torch.where(chosen, ids, torch.full_like(ids, -100))
        inputs = torch.where(chosen, torch.full_like(ids, tokenizer.mask_token_id), ids)
        loss = model(input_ids=inputs, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
