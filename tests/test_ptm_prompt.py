"""The prompt learners on a frozen pre-trained ViT (issue 31): L2P, DualPrompt, CODA-Prompt.

Each formula by hand (top-N by cosine, the pull constraint, the train mask, DualPrompt's
E-prompt choice, CODA's attention weights, its orthogonality term and Gram-Schmidt start),
each method end to end on timm's test_vit at 32 px from weights pre-trained on digits, and
each resumed bit for bit after a cut before task 2. Parity with Mammoth's implementations is
scripts/parity_ptm_prompt.py's (docs/ptm-prompt.md)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import FAST, compose_config
from test_resume import interrupt_before_task

from lab.checkpoint import CHECKPOINT
from lab.config import validate
from lab.data import Stream
from lab.errors import ConfigError
from lab.experiment import run_experiment
from lab.models import attach_heads, build_backbone
from lab.strategies import build_strategy
from lab.strategies.coda_prompt import attention_weights, gram_schmidt, ortho_penalty
from lab.strategies.prompting import (
    PROMPT_LEARNERS,
    embed,
    pull_constraint,
    query,
    task_masked_ce,
    top_n,
)

VIT = ["model=timm", "model.arch=test_vit", "model.input_size=32"]
# small enough for the suite's budget: 3 tasks of digits, a few steps each, dropout off
STREAM = [*FAST, *VIT, "benchmark.num_tasks=3", "benchmark.class_order=[0,1,2,3,4,5]"]
STREAM += ["train.iterations=3", "train.batch_size=16", "optimizer=adam", "optimizer.lr=0.01"]
SMALL = {  # each method at a size test_vit (width 64, 6 blocks) can hold
    "l2p": ["strategy=l2p"],
    "dualprompt": ["strategy=dualprompt"],
    "coda_prompt": ["strategy=coda_prompt", "strategy.pool_size=6", "strategy.ortho_mu=0.1"],
}


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """test_vit pre-trained briefly on digits 6-9 (a source the stream does not hold), in
    timm's layout: what the methods assume, a backbone that knows something."""
    run = tmp_path_factory.mktemp("source")
    config = validate(
        compose_config(
            [
                *FAST,
                *VIT,
                "scenario=task",
                "benchmark.class_order=[0,1,2,3,4,5]",
                "benchmark.num_tasks=3",
                "train.iterations=1",
                "pretrain=source",
                "pretrain.dataset=digits",
                "pretrain.classes=[6,7,8,9]",
                "pretrain.epochs=3",
                "pretrain.batch_size=32",
            ]
        )
    )
    run_experiment(config, run)
    return run / "pretrained.safetensors"


def vit_model(strategy_name: str, tasks: int = 3, **params):
    """A class-IL Classifier on test_vit with the method attached, and the method."""
    torch.manual_seed(0)
    backbone = build_backbone("timm", (1, 8, 8), arch="test_vit", input_size=32)
    model = attach_heads(backbone, [2 * tasks])
    strategy = build_strategy(strategy_name, **params)
    stream = Stream(tasks=[None] * tasks, head_sizes=[2 * tasks], scenario="class")
    strategy.attach(model, stream)
    return model, strategy


class FakeTask:
    def __init__(self, id: int, outputs: list[int]):
        self.id, self.outputs = id, outputs


# ---- the formulas, by hand


def test_top_n_takes_the_keys_of_highest_cosine_and_the_batchwise_vote_the_most_chosen():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1]])
    keys = torch.tensor([[0.0, 1.0], [1.0, 1.0], [1.0, 0.0], [-1.0, 0.0]])
    similarity = (
        torch.nn.functional.normalize(q, dim=1) @ torch.nn.functional.normalize(keys, dim=1).t()
    )
    # cosines of sample 0: 0, 0.707, 1, -1; of sample 1: 1, 0.707, 0, 0
    assert top_n(similarity, 2, False, 4).tolist() == [[2, 1], [0, 1], [2, 1]]
    # prompt 1 is chosen 3 times, 2 twice, 0 once: every sample takes 1 and 2
    assert top_n(similarity, 2, True, 4).tolist() == [[1, 2]] * 3


def test_the_pull_constraint_is_the_chosen_keys_cosines_summed_over_the_batch_divided_by_it():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    s = 1 / math.sqrt(2)
    chosen = torch.tensor([[[1.0, 0.0], [s, s]], [[s, s], [-1.0, 0.0]]])  # (B, N, d) unit
    assert pull_constraint(q, chosen).item() == pytest.approx((1 + s + s + 0) / 2)


def test_the_train_mask_is_the_cross_entropy_over_the_current_tasks_classes():
    logits = torch.tensor([[1.0, 2.0, 3.0, 4.0], [4.0, 0.0, 1.0, -1.0]])
    y = torch.tensor([2, 3])
    expected = (-math.log(math.e**3 / (math.e**3 + math.e**4))) / 2
    expected += (-math.log(math.e**-1 / (math.e**1 + math.e**-1))) / 2
    assert task_masked_ce(logits, y, FakeTask(1, [2, 3])).item() == pytest.approx(expected)


def test_l2p_puts_the_chosen_prompts_after_the_class_token_and_reads_their_mean():
    model, l2p = vit_model("l2p", pool_size=4, length=2, top_k=2)
    model.eval()
    vit, pool = l2p.vit, model.backbone.prompts
    x = torch.rand(3, 3, 32, 32)
    q = query(vit, x)
    assert torch.equal(q, model.backbone(x))  # the query: the plain backbone, no prompts
    with torch.no_grad():  # keys 1 and 3 point along the query of every sample
        pool.key.copy_(torch.stack([-q[0], q[0], -q[0] + 1e-3, q[0] * 2]))
        features = model.features(x)
    idx = l2p.chosen(model, x)
    assert sorted(idx[0].tolist()) == [1, 3]
    # by hand: [cls; P_i1; P_i2; patches], the prompts with the class token's position
    tokens = embed(vit, x)
    prompts = pool.prompt[idx].flatten(1, 2) + vit.pos_embed[:, :1]
    sequence = torch.cat([tokens[:, :1], prompts, tokens[:, 1:]], dim=1)
    with torch.no_grad():
        out = vit.norm(vit.blocks(sequence))
    assert torch.allclose(features, out[:, 1:5].mean(dim=1), atol=1e-6)


def test_unseen_classes_score_minus_infinity_until_their_task():
    model, l2p = vit_model("l2p")
    l2p.before_task(model, FakeTask(0, [0, 1]), [])
    logits = model(torch.rand(2, 3, 32, 32))
    assert torch.isfinite(logits[:, :2]).all() and torch.isinf(logits[:, 2:]).all()


def test_dualprompt_trains_the_tasks_own_e_prompt_and_tests_the_best_matching_key():
    model, dual = vit_model("dualprompt", size=5)
    prompts = model.backbone.prompts
    x = torch.rand(4, 3, 32, 32)
    q = query(dual.vit, x)
    with torch.no_grad():  # every query is closest to key 3
        prompts.e_key.copy_(torch.randn(5, 64) * 0.01)
        prompts.e_key[3] = q.mean(0)
    dual.before_task(model, FakeTask(1, [2, 3]), [])

    def with_every_slot_as(slot: int, training: bool):
        saved = prompts.e_prompt.detach().clone()
        with torch.no_grad():
            prompts.e_prompt.copy_(saved[:, :, slot : slot + 1].expand_as(saved))
        model.train(training)
        with torch.no_grad():
            out = model.features(x)
        with torch.no_grad():
            prompts.e_prompt.copy_(saved)
        return out

    model.eval()
    with torch.no_grad():
        tested = model.features(x)
    model.train()
    with torch.no_grad():
        trained = model.features(x)
    assert torch.equal(tested, with_every_slot_as(3, False))  # key matching: slot 3
    assert torch.equal(trained, with_every_slot_as(1, True))  # training on task 1: slot 1
    assert not torch.equal(tested, trained)
    assert dual.step_terms["pull"].item() == pytest.approx(
        (
            torch.nn.functional.normalize(q, dim=1)
            @ torch.nn.functional.normalize(prompts.e_key[1], dim=0)
        )
        .sum()
        .item()
        / 4,
        abs=1e-6,
    )  # the pull of task 1's own key


def test_dualprompt_starts_a_new_tasks_e_prompt_from_the_last_ones():
    model, dual = vit_model("dualprompt", size=5)
    e = model.backbone.prompts.e_prompt
    before = e.detach().clone()
    dual.before_task(model, FakeTask(2, [4, 5]), [])
    assert torch.equal(e[:, :, 2], before[:, :, 1])
    assert torch.equal(e[:, :, [0, 1, 3, 4]], before[:, :, [0, 1, 3, 4]])


def test_coda_attention_weights_are_the_cosine_of_the_attended_query_and_the_key():
    q = torch.tensor([[1.0, 2.0]])
    attention = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 3.0]])
    keys = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    # q * A: (1, 0), (1, 2), (0, 6); cosines with K: 1, 2/sqrt(5), 1/sqrt(2)
    expected = [[1.0, 2 / math.sqrt(5), 1 / math.sqrt(2)]]
    assert torch.allclose(attention_weights(q, attention, keys), torch.tensor(expected))


def test_coda_orthogonality_penalty_is_the_mean_squared_distance_of_the_gram_to_identity():
    t = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # t t^T - I = [[0, 1], [1, 1]]
    assert ortho_penalty(t).item() == pytest.approx(3 / 4)
    assert ortho_penalty(torch.eye(3)).item() == 0.0


def test_gram_schmidt_makes_a_tasks_rows_orthonormal_to_the_earlier_ones_and_zeroes_the_rest():
    start = torch.rand(6, 2, 5)
    first = gram_schmidt(start, 0, 2, torch.Generator().manual_seed(0))
    assert torch.equal(first[2:], torch.zeros(4, 2, 5))
    second = gram_schmidt(first, 2, 4, torch.Generator().manual_seed(1))
    assert torch.equal(second[:2], first[:2]) and torch.equal(second[4:], torch.zeros(2, 2, 5))
    flat = second[:4].flatten(1)
    assert torch.allclose(flat @ flat.t(), torch.eye(4), atol=1e-6)
    # from the generator alone: the same seed, the same rows
    assert torch.equal(gram_schmidt(start, 0, 2, torch.Generator().manual_seed(0)), first)


def test_coda_trains_the_current_tasks_components_alone_and_tests_on_all_so_far():
    model, coda = vit_model("coda_prompt", pool_size=6, ortho_mu=0.1)
    coda.before_task(model, FakeTask(0, [0, 1]), [])
    coda.before_task(model, FakeTask(1, [2, 3]), [])
    model.train()
    x = torch.rand(2, 3, 32, 32)
    model.features(x).square().sum().backward()
    for p in model.backbone.prompts.of(0):
        grad = p.grad.flatten(1).abs().sum(1)
        assert (grad[:2] == 0).all() and (grad[2:4] > 0).all() and (grad[4:] == 0).all()
    model.eval()
    with torch.no_grad():
        model.features(x)
    assert coda.step_terms["alpha"].shape == (5, 2, 4)  # 5 layers, 2 samples, 2 tasks x 2
    assert coda.step_terms["ortho"] == 0.0  # the penalty is a training term


def test_coda_refuses_more_components_than_the_vit_can_hold_orthogonal():
    with pytest.raises(ConfigError, match=r"strategy.pool_size=100 is invalid .* valid: 3..64"):
        vit_model("coda_prompt", pool_size=100)


def prefix_tuned(model, prefixes: dict):
    """The ViT's class-token feature with lab.finetune.prefix's Prefix modules at the given
    blocks ({block: (keys, values)}, (L, heads, d_h) each): an independent prefix forward."""
    import copy
    import functools

    from lab.finetune.prefix import Prefix

    vit = copy.deepcopy(model.backbone.model)
    for i, (keys, values) in prefixes.items():
        attn = vit.blocks[i].attn
        attn.prefix = Prefix(attn.num_heads, keys.shape[0], attn.head_dim)
        with torch.no_grad():
            attn.prefix.keys.copy_(keys.permute(1, 0, 2))
            attn.prefix.values.copy_(values.permute(1, 0, 2))
        attn.forward = functools.partial(attn.prefix.attend, attn)
    return vit


def test_dualprompt_prefixes_are_the_g_prompt_and_the_chosen_e_prompts_key_and_value_halves():
    model, dual = vit_model("dualprompt", size=5, g_prompt_layer_idx=[0], e_prompt_layer_idx=[2])
    model.eval()
    prompts = model.backbone.prompts
    x = torch.rand(1, 3, 32, 32)
    slot = dual.match(prompts, query(dual.vit, x))[0].item()
    g, e = prompts.g_prompt.detach(), prompts.e_prompt.detach()
    vit = prefix_tuned(model, {0: (g[0, 0], g[0, 1]), 2: (e[0, 0, slot], e[0, 1, slot])})
    with torch.no_grad():
        assert torch.allclose(model.features(x), vit(x), atol=1e-5)


def test_coda_prefixes_are_the_weighted_sum_of_components_split_into_keys_and_values():
    model, coda = vit_model("coda_prompt", pool_size=6, layers=[1])
    model.eval()
    x = torch.rand(1, 3, 32, 32)
    p, k, a = (t.detach()[:2] for t in model.backbone.prompts.of(1))  # task 0's two
    prompt = torch.einsum("bk,kld->bld", attention_weights(query(coda.vit, x), a, k), p)[0]
    kv = prompt.reshape(8, 2, 32)  # (L_p, heads, d_h)
    vit = prefix_tuned(model, {1: (kv[:4], kv[4:])})
    with torch.no_grad():
        assert torch.allclose(model.features(x), vit(x), atol=1e-5)


@pytest.mark.parametrize("name", PROMPT_LEARNERS)
def test_the_loss_is_the_masked_cross_entropy_and_the_methods_own_term(name):
    params = {"coda_prompt": {"pool_size": 6, "ortho_mu": 0.5}}.get(name, {})
    model, strategy = vit_model(name, **params)
    task = FakeTask(0, [0, 1])
    strategy.before_task(model, task, [])
    if name == "coda_prompt":  # away from the orthonormal start, where the penalty is 0
        with torch.no_grad():
            for p in model.backbone.prompts.parameters():
                p.mul_(2)
    model.train()
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 1, 0])
    features = model.features(x)
    logits = model.classify(features)
    loss = strategy.loss(model, targets_only(y), features, logits, None)
    ce = task_masked_ce(logits, y, task)
    if name == "coda_prompt":  # + ortho_mu * the three penalties of every prompted layer
        penalty = 0.0
        for i in strategy.layers:
            p, k, a = (t[:2] for t in model.backbone.prompts.of(i))
            penalty += ortho_penalty(k) + ortho_penalty(a) + ortho_penalty(p.flatten(1))
        expected = ce + 0.5 * penalty
        assert penalty.item() > 1  # ||4I - I||^2 / M per term: the penalty counts
    else:  # - lambda * the pull constraint
        expected = ce - strategy.coeff * strategy.step_terms["pull"]
        assert strategy.step_terms["pull"].item() > 0  # uniform keys: some cosine above 0
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def targets_only(y):  # the loss reads the targets alone
    from lab.strategies.base import Batch

    return Batch(None, y, torch.zeros_like(y))


def test_gradients_are_clipped_to_clip_grad_before_the_step():
    model, l2p = vit_model("l2p", clip_grad=1.0)
    for p in model.parameters():
        p.grad = torch.full_like(p, 3.0) if p.requires_grad else None
    l2p.after_backward(model)
    norm = torch.linalg.vector_norm(
        torch.stack([p.grad.norm() for p in model.parameters() if p.grad is not None])
    )
    assert norm.item() == pytest.approx(1.0, rel=1e-5)


# ---- configs and refusals


@pytest.mark.parametrize("name", PROMPT_LEARNERS)
def test_each_config_composes_validates_and_holds_the_methods_defaults(name):
    config = validate(compose_config([*VIT, f"strategy={name}"]))
    params = {k: v for k, v in config["strategy"].items() if k != "name"}
    defaults = build_strategy(name).__dict__
    assert build_strategy(name, **params).__dict__ == defaults


@pytest.mark.parametrize(
    "override, message",
    [
        ("scenario=task", "scenario='task' is invalid; valid: class (strategy=l2p is made for it)"),
        ("finetune.mode=lora", "finetune.mode='lora' is invalid; valid: full"),
        ("engine=avalanche", "strategy=l2p has no Avalanche equivalent"),
    ],
)
def test_what_the_methods_cannot_run_is_refused_in_one_line(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate(compose_config([*VIT, "strategy=l2p", override]))


def test_a_backbone_without_a_vit_is_refused_naming_the_valid_one(fast_config, tmp_path):
    with pytest.raises(
        ConfigError, match=r"strategy=coda_prompt prompts a ViT.*model=mlp.*test_vit"
    ):
        run_experiment(fast_config("strategy=coda_prompt"), tmp_path)


# ---- end to end, and resumed bit for bit


@pytest.mark.parametrize("name", PROMPT_LEARNERS)
def test_each_method_learns_the_stream_from_frozen_weights_and_resumes_bit_for_bit(
    weights, tmp_path, monkeypatch, name
):
    config = validate(
        compose_config([*STREAM, f"model.weights={weights}", "keep_checkpoint=true", *SMALL[name]])
    )
    whole = run_experiment(config, tmp_path / "whole")
    assert whole["status"] == "complete" and whole["diverged"] == []
    # frozen: the ViT's weights are the file's, bit for bit, after the whole stream
    from safetensors.torch import load_file

    state = torch.load(tmp_path / "whole" / CHECKPOINT, weights_only=True)["model"]
    source = load_file(weights)
    vit = {
        k[len("backbone.model.") :]: v for k, v in state.items() if k.startswith("backbone.model.")
    }
    assert vit and all(torch.equal(v, source[k]) for k, v in vit.items())
    prompts = sum(v.numel() for k, v in state.items() if k.startswith("backbone.prompts."))
    assert whole["trainable_parameters"] == {
        "backbone_modules": prompts,
        "heads": 6 * 64 + 6,
        "total": prompts + 6 * 64 + 6,
    }
    # the classes of later tasks never score (their outputs are -inf until their task):
    # before the stream every answer is class 0, after task i no answer is of a later task
    matrix = whole["acc_matrix"]
    assert whole["init_acc"][1:] == [0.0, 0.0] and 0 < whole["init_acc"][0] < 1
    assert matrix[0][1:] == [0.0, 0.0] and matrix[1][2] == 0.0
    assert matrix[0][0] != whole["init_acc"][0] and all(matrix[i][i] > 0 for i in range(3))
    what = whole[name]
    if name == "l2p":  # each sample takes top_k = 5 prompts of the pool
        assert all(sum(row) == pytest.approx(5) for row in what["prompt_frequencies"])
    elif name == "dualprompt":
        assert len(what["own_e_prompt_chosen"]) == 3
        assert all(0 <= f <= 1 for f in what["own_e_prompt_chosen"])
    else:  # after the last task every task's components take part: the shares sum to 1
        assert all(sum(row) == pytest.approx(1) for row in what["alpha_share_per_task"])

    with monkeypatch.context() as patch:
        interrupt_before_task(patch, name, task_id=2)
        with pytest.raises(KeyboardInterrupt):
            run_experiment(config, tmp_path / "cut")
    saved = json.loads((tmp_path / "cut" / "results.json").read_text())
    assert len(saved["acc_matrix"]) == 2
    resumed = run_experiment(config, tmp_path / "cut")
    assert resumed["acc_matrix"] == whole["acc_matrix"]
    assert resumed["train_loss"] == whole["train_loss"]
    assert resumed[name] == whole[name]
    again = torch.load(tmp_path / "cut" / CHECKPOINT, weights_only=True)["model"]
    assert all(torch.equal(again[k], v) for k, v in state.items())
