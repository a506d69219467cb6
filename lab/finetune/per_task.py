"""finetune.per_task: one set of the mode's modules per task, chosen by the task id.

The mode (lora, ia3, bitfit, adapter, vpt, prefix) adds its modules once; per_task then
keeps T copies of what it trains in the backbone (backbone.task_modules.t, one
ParameterDict per task, each starting as the mode's initial modules), and task t's
forward pass runs the shared, frozen backbone with set t in place of the mode's own:

    f_t(x) = f(x; theta_frozen, phi_t)

(torch.func.functional_call, so the backbone's modules stay as they are). A batch with
samples of several tasks (joint training, rehearsal) runs each task's rows with its own
set. The mode's own modules (phi_0, as they started) are frozen and serve the
pre-training source (task id SOURCE) and calls without a task id, so a source keeps what
the backbone knew. Task-IL only: the task id must be known at test time.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.func import functional_call

from lab.models import SOURCE, Classifier


def _key(name: str) -> str:
    return name.replace(".", "__")  # a parameter's name may not hold dots


class TaskModules(nn.Module):
    """T copies of the named backbone parameters; the originals frozen."""

    def __init__(self, backbone: nn.Module, names: list[str], tasks: int):
        super().__init__()
        params = dict(backbone.named_parameters())
        self.names = list(names)
        self.sets = nn.ModuleList(
            nn.ParameterDict({_key(n): nn.Parameter(params[n].detach().clone()) for n in names})
            for _ in range(tasks)
        )
        for n in names:
            params[n].requires_grad_(False)

    def of(self, task_id: int) -> dict[str, Tensor]:
        chosen = self.sets[task_id]
        return {n: chosen[_key(n)] for n in self.names}


def features(backbone: nn.Module, x: Tensor, task_ids: int | Tensor | None) -> Tensor:
    """The backbone's output on x with each sample's task's modules."""
    if isinstance(task_ids, Tensor):
        ids = task_ids.unique().tolist()
        if len(ids) > 1:
            out = None
            for t in ids:
                rows = task_ids == t
                part = features(backbone, x[rows], t)
                if out is None:
                    out = part.new_zeros((len(x), *part.shape[1:]))
                out = out.index_put((rows.nonzero().squeeze(1),), part)
            return out
        task_ids = ids[0]
    if task_ids is None or task_ids == SOURCE:
        return backbone(x)
    return functional_call(backbone, backbone.task_modules.of(task_ids), (x,), strict=False)


def apply(model: Classifier) -> None:
    """One set per head of the model, of what the mode trains in the backbone."""
    names = [n for n, p in model.backbone.named_parameters() if p.requires_grad]
    model.backbone.task_modules = TaskModules(model.backbone, names, len(model.heads))
    model.select_features = features
