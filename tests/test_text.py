"""Text streams on a Hugging Face encoder, offline: a tiny BERT and a WordPiece tokenizer
made here (tests/text_fixtures.py), loaded through model.arch=<directory>; text tasks as
CSV files; the token path, pooling, layer groups, the MLM column by hand, every strategy
and fine-tuning mode, a resume bit for bit, and the faults a user meets."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from conftest import compose_config
from test_resume import interrupt_before_task
from test_run import lab_run
from text_fixtures import HELD_OUT, save_tiny_bert, write_tasks

from lab import finetune as ft
from lab.checkpoint import CHECKPOINT
from lab.config import validate
from lab.data import text as text_data
from lab.data.tokens import Tokens, pack, unpack
from lab.errors import ConfigError, DataFileError, DataNotFoundError, WeightsError
from lab.experiment import run_experiment
from lab.models import build_model
from lab.models.hf_mlm import mask_text
from lab.strategies.base import Batch
from lab.strategies.ewc import fisher_diagonal


@pytest.fixture(scope="session")
def bert(tmp_path_factory) -> Path:
    """The tiny BERT's directory, made once per session."""
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tasks(tmp_path_factory) -> tuple[list[str], list[str]]:
    return write_tasks(tmp_path_factory.mktemp("text-tasks"))


@pytest.fixture(scope="session")
def held_out(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("held-out") / "wiki.txt"
    path.write_text("\n".join(HELD_OUT) + "\n")
    return path


def overrides(bert: Path, tasks, root: Path, *extra: str) -> list[str]:
    train, test = tasks
    return [
        "model=hf",
        f"model.arch={bert}",
        "benchmark=text_csv",
        f"benchmark.train=[{','.join(train)}]",
        f"benchmark.test=[{','.join(test)}]",
        "optimizer=adam",
        "optimizer.lr=0.003",
        "train.epochs=5",
        "train.batch_size=8",
        "logger=none",
        f"data.root={root}",
        *extra,
    ]


def text_config(bert, tasks, root, *extra):
    return validate(compose_config(overrides(bert, tasks, root, *extra)))


def test_a_batch_is_cut_to_its_longest_sequence_with_the_mask_from_the_lengths():
    packed = pack([[2, 7, 3], [2, 9, 9, 9, 3], [2, 3]], width=6, pad_id=0)
    assert packed.dtype == torch.int32 and packed.shape == (3, 7)
    tokens = Tokens(packed)
    ids, mask = unpack(tokens[torch.tensor([0, 2])])
    assert ids.tolist() == [[2, 7, 3], [2, 3, 0]]  # cut to 3, the longest of the two
    assert mask.tolist() == [[1, 1, 1], [1, 1, 0]]
    ids, mask = unpack(tokens[:])
    assert ids.shape == (3, 5) and mask.sum(1).tolist() == [3, 5, 2]
    # a rehearsal memory's select and concat work on batches of the stream's one width
    batch = Batch(tokens[:2], torch.tensor([0, 1]), torch.tensor([0, 0]))
    both = Batch.concat([batch, batch.select(torch.tensor([1]))])
    assert both.x.shape == (3, 7) and torch.equal(both.x[2], packed[1])
    assert tokens.select(torch.tensor([1, 2])).token_count() == 7


def test_csv_tasks_are_tokenised_once_into_a_cache_keyed_by_max_length(
    bert, tasks, tmp_path, monkeypatch
):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(bert)
    train, test = tasks
    first = text_data.load_text_csv(tmp_path, tokenizer, 64, train, test)
    assert [t.name for t in first.tasks] == ["reviews_train", "topics_train"]
    assert first.label_names == ["neg", "pos", "food", "sport"]
    assert [t.classes for t in first.tasks] == [[0, 1], [2, 3]]
    row = first.tasks[0].train_x[0]
    expected = tokenizer("the bad a")["input_ids"]
    assert row[0] == len(expected) and row[1 : 1 + len(expected)].tolist() == expected
    assert len(list((tmp_path / "tokenized").glob("*.npy"))) == 4

    def refuse(*args, **kwargs):
        raise AssertionError("tokenised again")

    monkeypatch.setattr(text_data, "tokenize", refuse)
    again = text_data.load_text_csv(tmp_path, tokenizer, 64, train, test)
    assert torch.equal(again.tasks[1].test_x, first.tasks[1].test_x)
    monkeypatch.undo()
    short = text_data.load_text_csv(tmp_path, tokenizer, 4, train, test)  # another key
    assert short.tasks[0].train_x[:, 0].max() == 4
    assert len(list((tmp_path / "tokenized").glob("*.npy"))) == 8


def test_a_bad_csv_file_gets_one_line_naming_the_file_the_row_and_the_valid_values(bert, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(bert)

    def write(name, rows, header=("text", "label")):
        path = tmp_path / name
        with open(path, "w", newline="") as f:
            csv.writer(f).writerows([header, *rows])
        return str(path)

    good = write("train.csv", [["good film", "pos"], ["bad film", "neg"]])
    text, label = ("text", "label"), ("sentence", "label")
    cases = {
        "nocolumn.csv": (
            label,
            [["good", "pos"]],
            r"has no column 'text' .*valid: its columns 'sentence', 'label'",
        ),
        "empty.csv": (
            text,
            [["fine", "pos"], ["  ", "neg"]],
            r"line 3: the text \('text'\) is empty",
        ),
        "unknown.csv": (
            text,
            [["fine", "pos"], ["meh", "mixed"]],
            r"line 3: label 'mixed' is not a label of .*train.csv; valid: neg, pos",
        ),
    }
    for name, (header, rows, message) in cases.items():
        path = write(name, rows, header)
        with pytest.raises(DataFileError, match=message) as error:
            text_data.load_text_csv(tmp_path, tokenizer, 16, [good], [path])
        assert name in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(DataNotFoundError, match="missing.csv is not a file"):
        text_data.load_text_csv(tmp_path, tokenizer, 16, [good], [str(tmp_path / "missing.csv")])


def test_cls_and_mean_pooling_by_hand_and_pads_change_nothing(bert):
    from transformers import AutoModel

    reference = AutoModel.from_pretrained(bert).eval()
    ids = [[2, 20, 21, 3], [2, 30, 31, 32, 33, 34, 3]]
    packed = pack(ids, width=9, pad_id=0)
    for pooling in ("cls", "mean"):
        model = build_model("hf", None, [2], arch=str(bert), pooling=pooling).eval()
        with torch.no_grad():
            features = model.backbone(packed)
            for n, row in enumerate(ids):  # each text alone, unpadded
                hidden = reference(input_ids=torch.tensor([row])).last_hidden_state[0]
                expected = hidden[0] if pooling == "cls" else hidden.mean(0)
                torch.testing.assert_close(features[n], expected, atol=1e-5, rtol=1e-5)
    assert model.backbone.out_features == 32


def test_layer_groups_are_the_embeddings_then_each_layer(bert, tasks, tmp_path):
    model = build_model("hf", None, [2], arch=str(bert))
    groups = ft.layer_groups(model)
    assert [name for name, _ in groups] == [
        "backbone.embeddings",
        "backbone.encoder.encoder.layer.0",
        "backbone.encoder.encoder.layer.1",
    ]
    assert sum(len(g.params) for _, g in groups) == len(list(model.backbone.parameters()))
    config = text_config(
        bert, tasks, tmp_path, "finetune.mode=freeze", "finetune.freeze=2", "keep_checkpoint=true"
    )
    run_experiment(config, tmp_path / "run")
    trained = torch.load(tmp_path / "run" / CHECKPOINT, weights_only=False)["model"]
    start = build_model("hf", None, [2], arch=str(bert)).state_dict()
    for key, value in start.items():
        if key.startswith("backbone."):
            frozen = ".layer.1." not in key
            assert torch.equal(trained[key], value) == frozen, key


def test_the_mlm_column_by_hand_on_a_three_sentence_text(bert, held_out):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(bert)
    text = mask_text(HELD_OUT, tokenizer, 64, 0.15, seed=3)
    ids = [tokenizer(line)["input_ids"] for line in HELD_OUT]
    words = sum(len(i) - 2 for i in ids)  # [CLS] and [SEP] are never masked
    assert len(text.targets) == round(0.15 * words)
    for seed in range(20):  # never [CLS] nor [SEP], whatever the draw
        drawn = mask_text(HELD_OUT, tokenizer, 64, 0.15, seed=seed)
        assert all(
            0 < c < len(ids[r]) - 1
            for r, c in zip(drawn.rows.tolist(), drawn.columns.tolist(), strict=True)
        )
    assert all(
        0 < c < len(ids[r]) - 1
        for r, c in zip(text.rows.tolist(), text.columns.tolist(), strict=True)
    )
    # by hand: the masked-LM model itself on the masked text, at the masked positions
    masked_lm = AutoModelForMaskedLM.from_pretrained(bert).eval()
    correct = 0
    for r, c, target in zip(
        text.rows.tolist(), text.columns.tolist(), text.targets.tolist(), strict=True
    ):
        row = list(ids[r])
        assert row[c] == target
        for r2, c2 in zip(text.rows.tolist(), text.columns.tolist(), strict=True):
            if r2 == r:
                row[c2] = tokenizer.mask_token_id
        with torch.no_grad():
            logits = masked_lm(input_ids=torch.tensor([row])).logits[0, c]
        correct += int(logits.argmax()) == target
    expected = correct / len(text.targets)
    assert expected > 0  # the fixture's model learnt some of its words
    # the text is masked at the chosen positions, and nowhere else
    original = pack(ids, text.masked.shape[1] - 1, tokenizer.pad_token_id)
    changed = (text.masked != original).nonzero().tolist()
    assert changed == [
        [r, 1 + c] for r, c in zip(text.rows.tolist(), text.columns.tolist(), strict=True)
    ]

    from lab.models.hf_mlm import MaskedTokenAccuracy

    model = build_model("hf", None, [2], arch=str(bert))
    score = MaskedTokenAccuracy(text, torch.device("cpu"), 2, "fp32")
    assert score(model) == pytest.approx(expected)
    # the head is the checkpoint's, kept out of the model: training never moves it
    assert not any("cls." in k for k in model.state_dict())
    assert torch.equal(
        model.backbone.masked_lm_head.predictions.decoder.weight,
        masked_lm.cls.predictions.decoder.weight,
    )


def test_lab_run_on_csv_files_writes_the_matrix_and_the_mlm_column(bert, tasks, held_out, tmp_path):
    run_dir = tmp_path / "run"
    done = lab_run(
        *overrides(bert, tasks, tmp_path / "data", "pretrain=mlm", f"pretrain.path={held_out}"),
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
        env={"PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "complete"
    assert [t["description"] for t in results["tasks"]] == ["reviews_train", "topics_train"]
    assert len(results["acc_matrix"]) == 2 and results["acc_matrix"][0][0] > 0.5
    source = results["pretrain"]
    assert source["description"].startswith(f"masked-LM on {held_out}: ")
    assert len(source["acc"]) == 2 and set(source["metrics"]) == {"acc", "bwt", "forgetting"}
    timing = results["timing"]
    assert timing["train_tokens_per_s"] > 0 and timing["eval_tokens_per_s"] > 0
    header = (run_dir / "acc_matrix.csv").read_text().splitlines()[0]
    assert "pretrain" in header


STRATEGY_RUNS = [
    "naive", "ewc", "online_ewc", "lwf", "l2", "si", "mas", "replay", "der", "agem", "joint",
    "weight_decay",
]  # fmt: skip
FINETUNE_RUNS = ["lora", "ia3", "prompt", "prefix", "linear_probe"]


@pytest.mark.parametrize("strategy", STRATEGY_RUNS)
def test_every_strategy_runs_on_text(bert, tasks, tmp_path, strategy):
    results = run_experiment(
        text_config(bert, tasks, tmp_path, f"strategy={strategy}"), tmp_path / "run"
    )
    assert results["status"] == "complete" and len(results["acc_matrix"]) == 2
    assert results["diverged"] == []


@pytest.mark.parametrize("mode", FINETUNE_RUNS)
def test_every_finetune_mode_runs_on_text(bert, tasks, tmp_path, mode):
    extra = [f"finetune.mode={mode}", "finetune.virtual_tokens=4", "scenario=task"]
    config = text_config(bert, tasks, tmp_path, *extra, "keep_checkpoint=true")
    results = run_experiment(config, tmp_path / "run")
    assert results["status"] == "complete" and len(results["acc_matrix"]) == 2
    trained = torch.load(tmp_path / "run" / CHECKPOINT, weights_only=False)["model"]
    start = build_model("hf", None, [2, 2], arch=str(bert)).state_dict()
    embeddings = "backbone.encoder.embeddings.word_embeddings.weight"
    key = next(k for k in trained if k.endswith("embeddings.word_embeddings.weight"))
    assert torch.equal(trained[key], start[embeddings])  # the encoder's own weights frozen
    if mode in ("prompt", "prefix"):
        assert any("prompt_encoder" in k for k in trained)
    if mode == "ia3":  # peft's targets for BERT: key, value and the MLP's output
        vectors = {k.split(".layer.")[1].split(".ia3_l")[0] for k in trained if "ia3_l" in k}
        assert vectors >= {"0.attention.self.key", "0.attention.self.value", "0.output.dense"}


def test_ewc_and_mas_closed_forms_match_per_sample_autograd_on_embeddings_and_norms(
    bert, tasks, tmp_path
):
    config = text_config(bert, tasks, tmp_path)
    from lab.experiment import build

    torch.manual_seed(0)
    stream, model, _ = build(config, torch.device("cpu"))
    task = stream.tasks[0]
    x, y = task.train_x[:5], task.train_y[:5]
    names = [n for n, _ in model.named_parameters() if "embeddings" in n or "LayerNorm" in n]
    fisher = fisher_diagonal(model, x, y, None, names, batch_size=3)
    model.eval()
    expected = {n: torch.zeros_like(p) for n, p in model.named_parameters() if n in names}
    for i in range(len(x)):  # one sample at a time, plain autograd
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        for n, p in model.named_parameters():
            if n in names:
                expected[n] += p.grad.square() / len(x)
    for n in names:
        torch.testing.assert_close(fisher[n], expected[n], atol=1e-7, rtol=1e-4, msg=n)


def test_an_interrupted_text_run_resumes_bit_for_bit(bert, tasks, held_out, tmp_path, monkeypatch):
    config = text_config(
        bert, tasks, tmp_path, "strategy=replay", "pretrain=mlm", f"pretrain.path={held_out}"
    )
    whole = run_experiment(config, tmp_path / "whole")
    with monkeypatch.context() as patch:
        interrupt_before_task(patch, "replay", task_id=1)
        with pytest.raises(KeyboardInterrupt):
            run_experiment(config, tmp_path / "cut")
    resumed = run_experiment(config, tmp_path / "cut")
    assert resumed["acc_matrix"] == whole["acc_matrix"]
    assert resumed["pretrain"]["acc"] == whole["pretrain"]["acc"]
    assert resumed["train_loss"] == whole["train_loss"]


def test_probes_and_cka_read_the_layer_groups_of_a_text_model(bert, tasks, tmp_path):
    config = text_config(
        bert, tasks, tmp_path, "analysis.probe=true", "analysis.cka=true", "scenario=task"
    )
    results = run_experiment(config, tmp_path / "run")
    assert len(results["probe_matrix"]) == 2
    assert list(results["cka"][0]) == [
        "backbone.embeddings",
        "backbone.encoder.encoder.layer.0",
        "backbone.encoder.encoder.layer.1",
    ]


def test_text_faults_are_one_line_each(bert, tasks, tmp_path, monkeypatch):
    train, test = tasks
    files = [f"benchmark.train=[{','.join(train)}]", f"benchmark.test=[{','.join(test)}]"]
    with pytest.raises(ConfigError, match=r"model='mlp' is invalid; valid: hf"):
        validate(compose_config(["model=mlp", "benchmark=text_csv", *files]))
    with pytest.raises(
        ConfigError, match=r"benchmark='split_digits' is invalid; valid: a text benchmark"
    ):
        validate(compose_config(["model=hf", f"model.arch={bert}", "benchmark=split_digits"]))
    with pytest.raises(ConfigError, match=r"benchmark.test=.*valid: a list of 2 CSV files"):
        text_config(bert, tasks, tmp_path, f"benchmark.test=[{tasks[1][0]}]")
    with pytest.raises(ConfigError, match=r"model.pooling='max' is invalid; valid: cls, mean"):
        text_config(bert, tasks, tmp_path, "model.pooling=max")
    with pytest.raises(ConfigError, match=r"finetune.mode='prompt' is invalid; valid: full"):
        validate(compose_config(["finetune.mode=prompt"]))
    # no hub here: a hub name and a hub dataset each fail in one line
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(
        WeightsError, match=r"model.arch=bert-base-uncased: not downloadable"
    ) as error:
        build_model("hf", None, [2], arch="bert-base-uncased")
    assert "\n" not in str(error.value)
    with pytest.raises(ConfigError, match=r"model.arch=/no/such/dir: no such directory"):
        build_model("hf", None, [2], arch="/no/such/dir")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(bert)
    with pytest.raises(
        DataNotFoundError, match=r"text_cl5: yelp_review_full could not be loaded"
    ) as error:
        text_data.load_text_cl5(tmp_path, tokenizer, 16, order=1)
    assert "\n" not in str(error.value)


def test_text_cl5_merges_yelp_and_amazon_labels_in_the_four_orders(bert, tmp_path, monkeypatch):
    from transformers import AutoTokenizer

    def fake(name, root, split):  # two texts a class, as each set's loader gives them
        k = text_data.CL5[name][2]
        return [f"{name} {split} text {i}" for i in range(2 * k)], [i % k for i in range(2 * k)]

    monkeypatch.setattr(text_data, "_hub_split", fake)
    tokenizer = AutoTokenizer.from_pretrained(bert)
    data = text_data.load_text_cl5(tmp_path, tokenizer, 16, order=1, train_per_class=1)
    assert [t.name for t in data.tasks] == ["yelp", "ag_news", "dbpedia", "amazon", "yahoo"]
    assert data.num_classes == 33
    assert data.tasks[0].classes == data.tasks[3].classes == [4, 5, 6, 7, 8]
    assert len(data.tasks[2].train_y) == 14 and len(data.tasks[2].test_y) == 28
    stream = text_data.build_text_stream(data, "task", None)
    assert stream.head_sizes == [5, 4, 14, 5, 10]
    assert stream.tasks[3].train_y.tolist() == list(range(5))
    orders = {
        o: [t.name for t in text_data.load_text_cl5(tmp_path, tokenizer, 16, order=o).tasks]
        for o in (2, 3, 4)
    }
    assert orders[4] == ["ag_news", "yelp", "amazon", "yahoo", "dbpedia"]


def test_layer_decay_and_progressive_unfreezing_run_on_text(bert, tasks, tmp_path):
    extra = ["finetune.layer_decay=0.5", "finetune.unfreeze_every=2", "finetune.head_lr_scale=10"]
    config = text_config(bert, tasks, tmp_path, *extra, "keep_checkpoint=true")
    results = run_experiment(config, tmp_path / "run")
    assert results["status"] == "complete" and results["diverged"] == []
    model = build_model("hf", None, [4], arch=str(bert))
    rates = [g["lr"] for g in ft.param_groups(model, ft.Finetune(layer_decay=0.5), 1.0)]
    assert sorted(rates, reverse=True) == [
        1.0,
        0.5,
        0.25,
    ]  # the top layer, then down to the embeddings
