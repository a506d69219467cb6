"""A strategy config as the Avalanche (avalanche-lib 0.6) strategy that computes the same.

Our strategies map onto Avalanche's as follows; where the scaling differs the mapping is
written out (and tested in tests/test_avalanche.py):

naive        Naive.
joint        Cumulative: trains on the union of the experiences seen so far, like ours.
ewc          Avalanche's EWC plugin (what its EWC strategy adds to Naive), mode="separate",
             with its importance pass run one sample at a time. Ours:
             lambda/2 * sum_k F_k (theta - theta*_k)^2, F the empirical Fisher, the mean over
             samples of squared per-sample gradients (Kirkpatrick et al. 2017). Avalanche's
             penalty has no 1/2, and its importance is the mean over minibatches of size B of
             the squared minibatch-mean gradient: F/B + (1 - 1/B) (E g)^2 in expectation, whose
             scale depends on B and on how far the weights are from a minimum of the task's
             loss (measured: B*importance / F from 1 to 2 on Split Fashion-MNIST), so no fixed
             lambda maps onto it. At B = 1 it is exactly F, hence ewc_lambda = lambda / 2.
online_ewc   The same, mode="online", decay_factor=gamma: both keep one running importance
             gamma * old + new, anchored at the latest weights.
lwf          LwF. Ours: alpha * T^2 * KL averaged over the old heads; Avalanche's KL has no
             T^2 and is summed over the old heads, so its per-experience alpha is
             alpha * T^2 / (old heads): one old head in domain- and class-IL, t in task-IL
             at experience t. Both distil only the outputs of classes seen before.
l2           Avalanche has no L2-to-previous-weights strategy; the closest is its EWC
             machinery with every importance 1, online with decay 0 (one anchor: the last
             task's weights), ewc_lambda = lambda/2. In task-IL only the backbone is
             anchored, as ours (the heads' importance is 0).
weight_decay Naive with the optimizer our strategy configures (coupled or decoupled decay).
replay       Naive + ReplayPlugin(mem_size, batch_size_mem=replay_batch_size, storage_policy=
             ReservoirSamplingBuffer or ClassBalancedBuffer as policy says). Avalanche fills
             the buffer at the end of each experience, ours at every step (reservoir, as the
             paper), so the first experience trains without replay there. With
             policy=class_balanced both fill it at each task's end. Avalanche walks the
             memory in epochs of batch_size_mem (200 in batches of 128: 128, then 72);
             ours draws replay_batch_size samples at every step (the paper's).
der          DER(mem_size, batch_size_mem=replay_batch_size, alpha, beta). Avalanche's DER is
             our policy=class_balanced: its memory is class-balanced, refilled at each
             experience's end with the logits of the model then (eval mode). The paper's
             (policy=reservoir, logits from the step that trained on the sample) has no
             Avalanche counterpart and runs as Avalanche's. Avalanche draws one memory batch
             for both terms, ours two (the paper's), and it starts replaying once its memory
             holds a batch. No task-IL: its DER asks the model for logits without task labels.
agem         AGEMPlugin(patterns_per_exp, sample_size) (what AGEM adds to Naive). Its reference
             sample takes sample_size / (tasks seen) from each task, ours sample_size
             uniformly; in task-IL it leaves the old heads, which have no gradient from the
             current batch, out of the projected update, ours projects the whole vector (the
             paper's) so the old heads move along g_ref.
si           Naive + SynapticIntelligencePlugin, si_lambda = 2 lambda (its penalty has a 1/2,
             the paper's c has none), the same eps, the non-anchored parameters excluded,
             and without the clip of every importance at 0.001 that Avalanche applies and
             the paper does not (ExactSI).
mas          Naive + MASPlugin(lambda_reg=lambda, alpha), with its importance computed one
             sample at a time (PerSampleMAS): at its default batch it takes |mean gradient|
             over a minibatch, not the paper's mean |per-sample gradient|. Avalanche computes
             it in train mode, ours in eval mode: the same without dropout (the default).

Strategies the lab engine does not implement (engine=avalanche only), with the paper's
hyperparameter as Avalanche names it:

gem          GEM(patterns_per_exp, memory_strength)            Lopez-Paz & Ranzato 2017
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from avalanche.training.plugins import (
    AGEMPlugin,
    EvaluationPlugin,
    EWCPlugin,
    MASPlugin,
    ReplayPlugin,
    SupervisedPlugin,
    SynapticIntelligencePlugin,
)
from avalanche.training.storage_policy import ClassBalancedBuffer, ReservoirSamplingBuffer
from avalanche.training.supervised import DER, GEM, Cumulative, LwF, Naive
from avalanche.training.templates import SupervisedTemplate
from avalanche.training.utils import zerolike_params_dict
from torch import nn

from lab.optim import OptimizerSettings, make_optimizer
from lab.strategies import STRATEGIES, build_strategy


class EmpiricalFisher(EWCPlugin):
    """Avalanche's EWC with its importances computed at batch size 1: the empirical Fisher."""

    def compute_importances(self, model, criterion, optimizer, dataset, device, batch_size, **kw):
        return super().compute_importances(model, criterion, optimizer, dataset, device, 1, **kw)


class UnitImportance(EWCPlugin):
    """Avalanche's EWC penalty with importance 1 on the anchored parameters: L2."""

    def __init__(self, ewc_lambda: float, anchored: set[str]):
        super().__init__(ewc_lambda, mode="online", decay_factor=0.0)
        self.anchored = anchored

    def compute_importances(self, model, criterion, optimizer, dataset, device, batch_size, **_):
        importances = zerolike_params_dict(model)
        for name, importance in importances.items():
            if name in self.anchored:
                importance.data.fill_(1.0)
        return importances


class ExactSI(SynapticIntelligencePlugin):
    """Avalanche's SI, without the clip of the importance at 0.001 (not in the paper), and
    with real copies of the weights it compares: it keeps `param.detach().cpu().flatten()`,
    a view of the parameter itself when it is on the CPU, so there every displacement it
    measures is 0 (measured on Split digits: every importance 0, the penalty 0: naive)."""

    def before_training_exp(self, strategy, **kwargs):
        super().before_training_exp(strategy, **kwargs)
        _copy(self.ewc_data[0])  # the task's starting weights, which anchor the penalty

    def before_training_iteration(self, strategy, **kwargs):
        super().before_training_iteration(strategy, **kwargs)
        _copy(self.syn_data["old_theta"])

    def after_training_exp(self, strategy, **kwargs):
        self.update_ewc_data(
            strategy.model,
            self.ewc_data,
            self.syn_data,
            float("inf"),
            self.excluded_parameters,
            1,
            eps=self.eps,
        )


def _copy(weights: dict) -> None:
    for data in weights.values():
        data.data = data.data.clone()


class PerSampleMAS(MASPlugin):
    """Avalanche's MAS with its importance pass run one sample at a time: the paper's."""

    def _get_importance(self, strategy):
        return super()._get_importance(_OneAtATime(strategy))


class _OneAtATime:
    """A strategy as MASPlugin reads it, with a training batch of one sample."""

    train_mb_size = 1

    def __init__(self, strategy: SupervisedTemplate):
        self._strategy = strategy

    def __getattr__(self, name: str) -> Any:
        return getattr(self._strategy, name)


def make_strategy(
    config: dict[str, Any],
    model: nn.Module,
    anchored: set[str],
    num_tasks: int,
    device: torch.device,
    plugins: list[SupervisedPlugin],
) -> SupervisedTemplate:
    """The Avalanche strategy of `config` (validated) training `model`.

    `anchored`: the names of `model`'s parameters a regulariser anchors (the backbone's in
    task-IL, all otherwise); `num_tasks`: the stream's length (LwF's alpha per experience).
    """
    name = config["strategy"]["name"]
    params = {k: v for k, v in config["strategy"].items() if k != "name"}
    settings = OptimizerSettings(**config["optimizer"])
    if name in STRATEGIES:  # our weight_decay strategy configures the optimizer
        settings = build_strategy(name, **params).optimizer_settings(settings)
    with warnings.catch_warnings():  # we evaluate with lab.engine.evaluate, not Avalanche
        warnings.filterwarnings("ignore", "No loggers specified")
        evaluator = EvaluationPlugin()
    common = {
        "model": model,
        "optimizer": make_optimizer(model.parameters(), settings),
        "criterion": nn.CrossEntropyLoss(),
        "train_mb_size": config["train"]["batch_size"],
        "train_epochs": config["train"]["epochs"],
        "eval_mb_size": config["train"]["eval_batch_size"],
        "device": device,
        "plugins": plugins,
        "evaluator": evaluator,
    }
    if name in ("naive", "weight_decay"):
        return Naive(**common)
    if name == "joint":
        return Cumulative(**common)
    if name in ("ewc", "online_ewc"):
        online = name == "online_ewc" or params["mode"] == "online"
        ewc = EmpiricalFisher(
            params["lambda"] / 2,
            mode="online" if online else "separate",
            decay_factor=params["gamma"] if online else None,
        )
        return Naive(**{**common, "plugins": [*plugins, ewc]})
    if name == "lwf":
        scale = params["alpha"] * params["temperature"] ** 2
        multi_head = config["scenario"] == "task"
        alphas = [scale / (t if multi_head else 1) if t else 0.0 for t in range(num_tasks)]
        return LwF(alpha=alphas, temperature=params["temperature"], **common)
    if name == "l2":
        l2 = UnitImportance(params["lambda"] / 2, anchored)
        return Naive(**{**common, "plugins": [*plugins, l2]})
    if name == "si":
        excluded = [n for n, _ in model.named_parameters() if n not in anchored]
        si = ExactSI(2 * params["lambda"], eps=params["eps"], excluded_parameters=excluded)
        return Naive(**{**common, "plugins": [*plugins, si]})
    if name == "mas":
        mas = PerSampleMAS(lambda_reg=params["lambda"], alpha=params["alpha"])
        return Naive(**{**common, "plugins": [*plugins, mas]})
    if name == "der":
        return DER(
            mem_size=params["mem_size"],
            batch_size_mem=params["replay_batch_size"],
            alpha=params["alpha"],
            beta=params["beta"],
            **common,
        )
    if name == "replay":
        # Avalanche fills its buffers at the end of each experience (ours: reservoir at
        # every step, lab.strategies.replay); its default buffer balances experiences
        policy = params.get("policy", "reservoir")
        buffer = ReservoirSamplingBuffer if policy == "reservoir" else ClassBalancedBuffer
        replay = ReplayPlugin(
            mem_size=params["mem_size"],
            batch_size_mem=params.get("replay_batch_size"),
            storage_policy=buffer(params["mem_size"]),
        )
        return Naive(**{**common, "plugins": [*plugins, replay]})
    if name == "gem":
        return GEM(
            patterns_per_exp=params["patterns_per_exp"],
            memory_strength=params["memory_strength"],
            **common,
        )
    if name == "agem":
        agem = AGEMPlugin(params["patterns_per_exp"], params["sample_size"])
        return Naive(**{**common, "plugins": [*plugins, agem]})
    raise ValueError(f"no Avalanche strategy for {name!r}")  # lab.config rejects it first
