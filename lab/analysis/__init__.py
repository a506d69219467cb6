"""What the features keep, beside what the heads answer (analysis.probe, analysis.cka).

    analysis = Analysis(probe=True, cka=True, probe_samples=1000, cka_samples=1000, seed=0)
    analysis.start(model, stream)        # at the stream's start: probe init row, CKA reference
    row = analysis.after_task(model)     # after every task: probe row, source probe, CKA row

lab.experiment records the rows in results.json (probe_matrix, probe_init, probe_metrics,
pretrain.probe_acc, cka). Everything here only reads the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from lab.analysis.cka import cka_probe_set, drift, layer_grams
from lab.analysis.probe import probe_slice, probe_tasks
from lab.data import Images, Stream
from lab.models import Classifier


@dataclass
class AnalysisRow:
    probe: list[float] | None = None  # probe accuracy on each task of the stream
    probe_source: float | None = None  # on the pre-training source, if any
    cka: dict[str, float] | None = None  # by layer group


@dataclass
class Analysis:
    probe: bool = False
    cka: bool = False
    probe_samples: int | None = 1000
    cka_samples: int = 1000
    seed: int = 0
    stream: Stream | None = None
    _slices: list[Tensor] = field(default_factory=list)
    _cka_x: list[Images] | None = None  # the CKA probe set, made on demand
    _reference: dict[str, Tensor] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.probe or self.cka

    def _tasks(self) -> list:
        source = [self.stream.source] if self.stream.source is not None else []
        return self.stream.tasks + source

    def bind(self, stream: Stream) -> None:
        """Fix the probe slices and the CKA probe set of the stream (seeded)."""
        self.stream = stream
        if self.probe:
            self._slices = [probe_slice(t, self.probe_samples, self.seed) for t in self._tasks()]
        if self.cka:
            self._cka_x = cka_probe_set(stream.tasks, self.cka_samples, self.seed)

    def start(self, model: Classifier, stream: Stream) -> AnalysisRow:
        """At the start of the stream: the probes' init row, and the CKA reference."""
        self.bind(stream)
        if self.cka:  # kept in float32, as the checkpoint keeps it: a resume is exact
            self._reference = {k: g.float() for k, g in layer_grams(model, self._cka_x).items()}
        return AnalysisRow(*self._probes(model))

    def after_task(self, model: Classifier) -> AnalysisRow:
        row = AnalysisRow(*self._probes(model))
        if self.cka:
            row.cka = drift(model, self._cka_x, self._reference)
        return row

    def _probes(self, model: Classifier) -> tuple[list[float] | None, float | None]:
        if not self.probe:
            return None, None
        accuracies = probe_tasks(model, self._tasks(), self._slices)
        source = accuracies.pop() if self.stream.source is not None else None
        return accuracies, source

    def state_dict(self) -> dict[str, Tensor]:
        """The CKA reference: a resumed run's model is no longer the start's."""
        return {name: gram.cpu() for name, gram in self._reference.items()}  # float32

    def load_state_dict(self, state: dict[str, Tensor], stream: Stream) -> None:
        self.bind(stream)
        device = stream.tasks[0].test_x.device
        self._reference = {name: gram.to(device) for name, gram in state.items()}


def build_analysis(settings: dict, seed: int) -> Analysis:
    return Analysis(
        probe=settings["probe"],
        cka=settings["cka"],
        probe_samples=settings["probe_samples"],
        cka_samples=settings["cka_samples"],
        seed=seed,
    )


__all__ = ["Analysis", "AnalysisRow", "build_analysis"]
