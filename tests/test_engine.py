"""The engine on real digits: determinism, the naive/joint contrast, training options."""

from __future__ import annotations

import json
import subprocess

import pytest
import torch
from conftest import CLI

from lab.checkpoint import CHECKPOINT
from lab.engine import TrainSettings, evaluate_task_masked, train_task
from lab.experiment import build, make_stream, run_experiment, seed_everything
from lab.metrics import accuracy_metrics
from lab.models import build_model
from lab.optim import OptimizerSettings, make_optimizer
from lab.strategies import STRATEGIES, Strategy, build_strategy


def test_same_config_and_seed_give_the_same_matrix_bit_for_bit(fast_config, tmp_path):
    config = fast_config("model.dropout=0.2", "benchmark.shuffle_classes=true")
    first = run_experiment(config, tmp_path / "a")
    second = run_experiment(config, tmp_path / "b")
    assert first["acc_matrix"] == second["acc_matrix"]  # exact float equality
    assert first["init_acc"] == second["init_acc"]
    third = run_experiment(fast_config("model.dropout=0.2", "seed=1"), tmp_path / "c")
    assert third["acc_matrix"] != first["acc_matrix"]


def test_naive_forgets_and_joint_does_not_in_class_il(fast_config, tmp_path):
    naive = run_experiment(fast_config(), tmp_path / "naive")
    joint = run_experiment(fast_config("strategy=joint"), tmp_path / "joint")
    last_naive, last_joint = naive["acc_matrix"][-1], joint["acc_matrix"][-1]
    assert last_naive[-1] > 0.9  # the last task is learned ...
    assert max(last_naive[:2]) < 0.2  # ... and the first ones are forgotten
    assert min(last_joint) > 0.8  # joint keeps every task
    assert joint["metrics"]["acc"] > naive["metrics"]["acc"] + 0.4
    assert naive["status"] == joint["status"] == "complete"


def test_task_il_multi_head_forgets_less_than_class_il(fast_config, tmp_path):
    task_il = run_experiment(fast_config("scenario=task"), tmp_path / "task")
    class_il = run_experiment(fast_config(), tmp_path / "class")
    assert task_il["metrics"]["acc"] > class_il["metrics"]["acc"]
    assert min(task_il["acc_matrix"][-1]) > 0.5  # two-way choice within the task's head


def _one_task(config, **train):
    stream = make_stream(config)
    torch.manual_seed(0)
    model = build_model("mlp", (1, 8, 8), stream.head_sizes, hidden_sizes=[16])
    optimizer = make_optimizer(model.parameters(), OptimizerSettings(lr=0.1))
    losses = train_task(
        model,
        build_strategy("naive"),
        stream.tasks[1],
        stream.tasks[:2],
        optimizer,
        TrainSettings(**train),
        torch.Generator().manual_seed(0),
        config["scenario"],
    )
    return model, stream, losses


def test_iterations_override_epochs(fast_config):
    _, stream, losses = _one_task(fast_config(), epochs=3, iterations=7, batch_size=16)
    assert len(losses) == 7
    _, stream, losses = _one_task(fast_config(), epochs=2, batch_size=16)
    n = len(stream.tasks[1].train_y)
    assert len(losses) == 2 * -(-n // 16)


def test_seen_classes_only_leaves_unseen_outputs_untrained(fast_config):
    model, _, _ = _one_task(fast_config(), seen_classes_only=True)
    torch.manual_seed(0)  # the same initial weights as _one_task's model
    before = build_model("mlp", (1, 8, 8), [10], hidden_sizes=[16])
    head, head0 = model.heads[0], before.heads[0]
    # classes 4..9 are not seen by tasks 0 and 1: softmax never touched their outputs
    assert torch.equal(head.weight[4:], head0.weight[4:])
    assert not torch.equal(head.weight[2:4], head0.weight[2:4])


def test_optimizers():
    params = [torch.nn.Parameter(torch.zeros(2))]
    assert isinstance(make_optimizer(params, OptimizerSettings("adam", 0.1)), torch.optim.Adam)
    sgd = make_optimizer(params, OptimizerSettings("sgd", 0.1, momentum=0.9, weight_decay=0.5))
    assert sgd.defaults["momentum"] == 0.9 and sgd.defaults["weight_decay"] == 0.5
    assert isinstance(make_optimizer(params, OptimizerSettings("adamw", 0.1)), torch.optim.AdamW)


def test_a_class_il_run_is_also_scored_task_il_by_masking(tmp_path):
    """lab-run in class-IL: results.json's acc_matrix_task_masked is the same model's
    accuracy with each task's outputs masked to its two classes (recomputed here by hand
    from the final weights), its init row and metrics by the metrics' definitions; masking
    only removes wrong answers, so no cell is below R's; naive's old tasks, near 0 in R, are
    a two-way choice there, far above 0."""
    run_dir = tmp_path / "run"
    done = subprocess.run(
        ["lab-run", *CLI, "keep_checkpoint=true", f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((run_dir / "results.json").read_text())
    R, M = results["acc_matrix"], results["acc_matrix_task_masked"]
    assert len(M) == 5 and all(len(row) == 5 for row in M)
    assert len(results["init_acc_task_masked"]) == 5
    assert results["metrics_task_masked"] == accuracy_metrics(M, results["init_acc_task_masked"])
    assert all(
        m >= r for mrow, rrow in zip(M, R, strict=True) for m, r in zip(mrow, rrow, strict=True)
    )
    assert max(R[-1][:3]) < 0.2 and min(M[-1][:3]) > 0.5  # 0.58, 0.59, 0.68 here
    printed = done.stdout + done.stderr
    acc = results["metrics_task_masked"]["acc"]
    assert f"Task-IL (masked) metrics: acc={100 * acc:.2f}%" in printed

    config = json.loads((run_dir / "results.json").read_text())["config"]
    seed_everything(0)
    stream, model, _ = build(config, torch.device("cpu"))
    model.load_state_dict(torch.load(run_dir / CHECKPOINT, weights_only=True)["model"])
    model.eval()
    by_hand = []
    with torch.no_grad():
        for task in stream.tasks:
            logits = model(task.test_x[:])
            a, b = task.outputs  # the task's two classes: the larger logit of the two wins
            chosen = torch.where(logits[:, b] > logits[:, a], b, a)
            by_hand.append((chosen == task.test_y).sum().item() / len(task.test_y))
    assert M[-1] == by_hand
    assert evaluate_task_masked(model, stream.tasks) == M[-1]


def test_only_class_il_has_a_task_masked_matrix(fast_config, tmp_path):
    """Task- and domain-IL have no single head over every class to mask: no such field."""
    for scenario in ("task", "domain"):
        config = fast_config(f"scenario={scenario}", "train.epochs=1")
        results = run_experiment(config, tmp_path / scenario)
        assert "acc_matrix_task_masked" not in results and "metrics_task_masked" not in results


class _OffsetProbe(Strategy):
    """A method of its own modules (Strategy.attach): the model frozen, a trainable offset on
    the logits added, trained on the first task alone (Strategy.train_steps)."""

    name = "offset_probe"

    def attach(self, model, stream):
        model.requires_grad_(False)
        model.offset = torch.nn.Parameter(torch.zeros(model.heads[0].out_features))
        model.heads[0].register_forward_hook(lambda head, args, out: out + head_offset(model))

    def train_steps(self, task, steps):
        return steps if task.id == 0 else 0


def head_offset(model):
    return model.offset


def test_a_method_attaches_its_modules_before_the_optimizer_and_a_resume(
    fast_config, tmp_path, monkeypatch
):
    monkeypatch.setitem(STRATEGIES, "offset_probe", _OffsetProbe)
    config = fast_config("train.epochs=1", "keep_checkpoint=true")
    config["strategy"] = {"name": "offset_probe"}
    whole = run_experiment(config, tmp_path / "whole")
    state = torch.load(tmp_path / "whole" / CHECKPOINT, weights_only=True)["model"]
    assert state["offset"].abs().sum() > 0  # trained: the optimizer had it
    assert whole["trainable_parameters"]["total"] == 10  # the offset alone
    # no step after the first task: the model, frozen but for the offset, stands still,
    # so every row after the first is the same
    assert all(row == whole["acc_matrix"][1] for row in whole["acc_matrix"][1:])
    assert whole["train_loss"][0] is not None and whole["train_loss"][1:] == [None] * 4

    def cut(self, model, task, seen):
        if task.id == 2:
            raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(_OffsetProbe, "before_task", cut)
        with pytest.raises(KeyboardInterrupt):
            run_experiment(config, tmp_path / "cut")
    resumed = run_experiment(config, tmp_path / "cut")  # attach again, then the weights
    assert resumed["acc_matrix"] == whole["acc_matrix"]
