"""Learning without Forgetting (LwF): distillation from the model before the current task.

Li & Hoiem (2016), "Learning without Forgetting", ECCV (TPAMI 2018), eq. 2, with the
distillation of Hinton et al. (2015). On the current task's inputs x:

    L = w_new * CE(y, f_theta(x)) + w_old * T^2 * KL( softmax(f_old(x)/T) || softmax(f_theta(x)/T) )

f_old is a frozen copy of the model taken before the task (eval mode, never trained).
The KL is over the outputs the old model knew: every old head in task-IL, the shared head
in domain-IL, the outputs of earlier tasks' classes in class-IL, and the pre-training
source's head (lab.pretrain), averaged over those heads. T^2 keeps the soft targets'
gradient scale independent of T (Hinton et al.).

    weighting="alpha"       w_new = 1,    w_old = alpha
    weighting="van_de_ven"  w_new = 1/N,  w_old = 1 - 1/N   (N = tasks so far, current
                            included; van de Ven et al. 2022), alpha unused
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor

from lab.data import Task
from lab.errors import ConfigError
from lab.models import SOURCE, Classifier
from lab.strategies.base import Batch, Strategy

WEIGHTINGS = ("alpha", "van_de_ven")


def distillation_loss(new_logits: Tensor, old_logits: Tensor, temperature: float) -> Tensor:
    """T^2 * KL(softmax(old/T) || softmax(new/T)), averaged over the batch."""
    return temperature**2 * F.kl_div(
        F.log_softmax(new_logits / temperature, dim=-1),
        F.log_softmax(old_logits / temperature, dim=-1),
        reduction="batchmean",
        log_target=True,
    )


class LwF(Strategy):
    name = "lwf"

    def __init__(self, alpha: float = 2.0, temperature: float = 2.0, weighting: str = "alpha"):
        if not isinstance(alpha, int | float) or alpha < 0:
            raise ConfigError(f"strategy.alpha={alpha!r} is invalid; valid: a number >= 0")
        if not isinstance(temperature, int | float) or temperature <= 0:
            raise ConfigError(
                f"strategy.temperature={temperature!r} is invalid; valid: a number > 0"
            )
        if weighting not in WEIGHTINGS:
            raise ConfigError(
                f"strategy.weighting={weighting!r} is invalid; valid: {', '.join(WEIGHTINGS)}"
            )
        self.alpha = float(alpha)
        self.temperature = float(temperature)
        self.weighting = weighting
        self.teacher: Classifier | None = None
        self.old_tasks: list[Task] = []
        self.old_outputs = torch.empty(0, dtype=torch.long)  # the head outputs they use
        self.tasks_so_far = 0

    def before_task(self, model: Classifier, task: Task, seen: list[Task]) -> None:
        self.tasks_so_far = len(seen)
        self.old_tasks = seen[:-1]
        shared = [t for t in self.old_tasks if not model.multi_head and t.id != SOURCE]
        known = sorted({o for t in shared for o in t.outputs})
        self.old_outputs = torch.tensor(known, dtype=torch.long, device=task.train_y.device)
        self.teacher = None
        if self.old_tasks:
            self.teacher = copy.deepcopy(model).eval().requires_grad_(False)

    def distillation(self, model: Classifier, batch: Batch, features: Tensor, logits: Tensor):
        """The KL term (with T^2) over the outputs the old model knew, averaged over the old
        heads: each old task's in task-IL, the shared head's (old classes only in class-IL),
        and the pre-training source's own head, if any."""
        T = self.temperature
        with torch.no_grad():
            old_features = self.teacher.features(batch.x, batch.task_ids)
        terms = [
            distillation_loss(
                model.classify(features, t.id), self.teacher.classify(old_features, t.id), T
            )
            for t in self.old_tasks
            if model.multi_head or t.id == SOURCE
        ]
        if len(self.old_outputs):
            with torch.no_grad():
                old_logits = self.teacher.classify(old_features)
            new_logits = logits[:, : old_logits.shape[1]]
            if len(self.old_outputs) < old_logits.shape[1]:  # class-IL: earlier classes only
                new_logits = new_logits[:, self.old_outputs]
                old_logits = old_logits[:, self.old_outputs]
            terms.append(distillation_loss(new_logits, old_logits, T))
        return torch.stack(terms).mean()

    def loss(
        self, model: Classifier, batch: Batch, features: Tensor, logits: Tensor, ce: Tensor
    ) -> Tensor:
        if self.teacher is None:
            return ce
        kd = self.distillation(model, batch, features, logits)
        if self.weighting == "van_de_ven":
            return ce / self.tasks_so_far + (1 - 1 / self.tasks_so_far) * kd
        return ce + self.alpha * kd
