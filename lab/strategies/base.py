"""The strategy interface: hooks the engine calls around its training loop.

Once, before the stream (and again before a cut run resumes, before its weights are
loaded), the run calls `strategy.attach(model, stream)`: a method that brings modules of its
own (a prompt pool, a prototype head, a random projection) adds them to the model there,
before the fine-tuning regime's (lab.finetune) and before any optimizer exists. Then the
engine trains one task at a time:

    strategy.before_task(model, task, seen)
    steps = strategy.train_steps(task, steps)                      # 0: no training at all
    data = strategy.training_data(task, seen)
    for each batch of data:
        batch = strategy.rehearse(batch)                           # rehearsal adds memory
        features = model.features(batch.x, batch.task_ids)  # (or its one task id)
        logits = model.classify(features, batch.task_ids)
        ce = cross_entropy(logits, batch.y)
        loss = strategy.loss(model, batch, features, logits, ce)   # the term a method adds
        loss.backward()
        strategy.after_backward(model)                             # e.g. project the gradient
        optimizer.step()
    strategy.after_task(model, task, seen)
    results.update(strategy.after_stream(model, tasks, source, evaluate))  # after the last

`seen` is the list of tasks up to and including the current one. The engine also asks
`strategy.optimizer_settings(settings)` for the settings of each task's optimizer, and
`strategy.param_groups(model, groups)` for its parameter groups, given those of the
fine-tuning regime (lab.finetune.param_groups: each {"params", "lr"}); SLCA slows the
backbone there. Both are asked before `before_task`. The
defaults do plain sequential fine-tuning; a method overrides only the hooks it needs.
A strategy draws its random numbers (e.g. labels for a sampled Fisher) from its own
`generator`, never from the global RNG, so a strategy at strength 0 trains exactly as
naive does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from lab.data import Images, Stream, Task
from lab.models import Classifier

if TYPE_CHECKING:
    from lab.optim import OptimizerSettings


@dataclass(frozen=True)
class Batch:
    """Inputs, scenario targets and task ids of a set of samples (a batch or a task's data).
    A task's inputs are made on demand (lab.data.Images): index `x` to get a tensor."""

    x: Tensor | Images
    y: Tensor
    task_ids: Tensor

    @staticmethod
    def of(task: Task) -> Batch:
        return Batch(task.train_x, task.train_y, torch.full_like(task.train_y, task.id))

    @staticmethod
    def concat(batches: list[Batch]) -> Batch:
        # [:] makes a task's Images whole (joint training on every task seen)
        fields = ("x", "y", "task_ids")
        return Batch(*(torch.cat([getattr(b, f)[:] for b in batches]) for f in fields))

    def select(self, index: Tensor) -> Batch:
        return Batch(self.x[index], self.y[index], self.task_ids[index])

    def __len__(self) -> int:
        return len(self.y)


class Strategy:
    """Plain sequential fine-tuning; subclasses override the hooks they need."""

    name = "naive"
    scenarios = ("task", "domain", "class")  # where it runs; lab.config refuses the others

    @property
    def generator(self) -> torch.Generator:
        """This strategy's own generator (seed 0 until set_seed), never shared."""
        if "_generator" not in self.__dict__:
            self._generator = torch.Generator().manual_seed(0)
        return self._generator

    def set_seed(self, seed: int) -> None:
        """Seed the strategy's own random draws (apart from the training order's)."""
        self._generator = torch.Generator().manual_seed(seed)

    def optimizer_settings(self, settings: OptimizerSettings) -> OptimizerSettings:
        """The settings of the optimizer made for each task: by default the configured ones."""
        return settings

    def param_groups(self, model: Classifier, groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The parameter groups of each task's optimizer, given the regime's (each with its
        "params" and "lr"): by default as they are."""
        return groups

    def attach(self, model: Classifier, stream: Stream) -> None:
        """Add the method's own modules to `model` (or replace its heads), freeze what it
        freezes; once, after pre-training and before the regime's modules (lab.finetune), the
        optimizer and a resumed run's load_state_dict, so the model must come out with the
        same parameters whatever the run's state. A ConfigError names what the method needs
        where the model or the stream cannot have it."""

    def before_task(self, model: Classifier, task: Task, seen: list[Task]) -> None:
        """Called before training on `task`."""

    def train_steps(self, task: Task, steps: int) -> int:
        """The optimizer steps to take on `task`, given the `steps` train.epochs or
        train.iterations make: by default all of them; 0 for a method that does not train
        on it (e.g. SimpleCIL, or APER after its first task)."""
        return steps

    def training_data(self, task: Task, seen: list[Task]) -> Batch:
        """The samples to train on for `task`: by default its own training set."""
        return Batch.of(task)

    def rehearse(self, batch: Batch) -> Batch:
        """The samples a step trains on: by default the batch drawn from the task's data;
        rehearsal (lab.strategies.replay) appends samples from its memory."""
        return batch

    def loss(
        self, model: Classifier, batch: Batch, features: Tensor, logits: Tensor, ce: Tensor
    ) -> Tensor:
        """The training loss of one step, given the cross-entropy `ce` on the batch.

        `features` are the backbone's output for the batch and `logits` the heads' (the
        same forward pass, so a method can read other heads without another, differently
        dropped-out, forward)."""
        return ce

    def after_backward(self, model: Classifier) -> None:
        """Called between a step's backward pass and its optimizer step: the gradients are
        in the parameters' .grad (A-GEM projects them; SI reads them)."""

    def after_task(self, model: Classifier, task: Task, seen: list[Task]) -> None:
        """Called after training on `task`, before the evaluation."""

    def after_stream(
        self,
        model: Classifier,
        tasks: list[Task],
        source: Task | None,
        evaluate: Callable[[list[Task]], list[float]],
    ) -> dict[str, Any]:
        """Called once after the last task: what the method adds to results.json (e.g.
        WiSE-FT's curve), measured with `evaluate` (each task's test accuracy). The model
        must be left as it was: the run's results are already recorded."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must hold to resume the strategy after a task."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""
        self.generator.set_state(state["generator"].cpu())


def penalised_parameters(model: Classifier) -> dict[str, torch.nn.Parameter]:
    """The trainable parameters shared by all tasks, which a regulariser should anchor.

    In task-IL (one head per task) these are the backbone's: a task trains only its own
    head and the old heads get no gradient, so anchoring them changes nothing. In domain-
    and class-IL the single head is shared and is included. The pre-training source's head
    is never included (the stream does not train it), nor what the fine-tuning regime
    freezes (lab.finetune).
    """
    return {
        name: p
        for name, p in model.named_parameters()
        if p.requires_grad
        and not name.startswith("source_head.")
        and (not model.multi_head or name.startswith("backbone."))
    }
