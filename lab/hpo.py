"""Hyperparameter search, the continual-learning way: tuned on validation data (or on the
first tasks of the stream), never on the test sets that the tables report.

The search itself is Optuna's (TPE, ask and tell), driven by the lab's Hydra sweeper
(hydra_plugins/lab_hpo_sweeper), so `lab-run -m +hpo=NAME` is a normal multirun with any
launcher. This module is the plain part, with no Hydra in it:

- `settings`: an `hpo` config block (conf/hpo/*.yaml) checked, its search space parsed;
- `objective`: a trial's objective values, read from its results.json, or why it failed;
- `Summary` (hpo.json in the sweep dir, rewritten after every trial): what the search
  ran, the trials' parameters, run dirs, states and values;
- `best`, `rerun_command`: what `lab-report SWEEP --best` prints.
"""

from __future__ import annotations

import json
import math
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.errors import ConfigError

DIRECTIONS = ("auto", "maximize", "minimize")
# metrics that are better lower; every other metric of results.json is better higher
LOWER_IS_BETTER = (
    "forgetting",
    "probe_forgetting",
    "pretrain_forgetting",
    "task_masked_forgetting",
)
SUMMARY = "hpo.json"  # the search's summary, in its sweep dir
STORAGE = "hpo.db"  # the Optuna study (SQLite), in its sweep dir
KEYS = ("name", "trials", "objective", "direction", "startup_trials", "batch", "seed", "params")
TEST_SEEDS = "0,1,2"


@dataclass
class Param:
    """One dimension of the search space: a float or int range (log-uniform with `log`),
    or a list of choices."""

    key: str  # the config key it sets, e.g. strategy.lambda
    kind: str  # float | int | categorical
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list[Any] | None = None

    def suggest(self, trial: Any) -> Any:
        """The value an Optuna trial asks for."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.key, self.choices)
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), log=self.log)

    def describe(self) -> dict[str, Any]:
        if self.kind == "categorical":
            return {"choices": self.choices}
        return {"type": self.kind, "low": self.low, "high": self.high, "log": self.log}


@dataclass
class Settings:
    name: str
    trials: int
    objective: list[str]
    direction: list[str]  # maximize | minimize, one per objective (auto resolved)
    startup_trials: int
    batch: int
    seed: int
    params: list[Param] = field(default_factory=list)

    @property
    def multi(self) -> bool:
        return len(self.objective) > 1


def _param(key: str, spec: dict[str, Any]) -> Param:
    where = f"hpo.params.{key}"
    if "choices" in spec:
        choices = spec["choices"]
        if set(spec) - {"choices"} or not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}={spec!r} is invalid; valid: {{choices: [a, b, ...]}}")
        return Param(key, "categorical", choices=choices)
    kind = spec.get("type", "float")
    valid = "{low: L, high: H, log: true|false, type: float|int} with 0 < L < H for log"
    low, high, log = spec.get("low"), spec.get("high"), spec.get("log", False)
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high))
    if (
        set(spec) - {"low", "high", "log", "type"}
        or kind not in ("float", "int")
        or not numbers
        or not isinstance(log, bool)
        or not low < high
        or (log and low <= 0)
    ):
        raise ConfigError(f"{where}={spec!r} is invalid; valid: {valid}")
    return Param(key, kind, float(low), float(high), log)


def flatten_space(params: Any, prefix: str = "") -> list[Param]:
    """hpo.params, nested as the config is ({strategy: {lambda: {low:.., high:..}}}), as
    one Param per config key (a mapping with low/high or choices is a dimension)."""
    if not isinstance(params, dict) or not params:
        raise ConfigError(
            f"hpo.params{'.' + prefix.rstrip('.') if prefix else ''}={params!r} is invalid; "
            "valid: a mapping of config keys to ranges, e.g. {optimizer: {lr: {low: 0.001, "
            "high: 0.3, log: true}}}"
        )
    space = []
    for key, value in params.items():
        if isinstance(value, dict) and ({"low", "high", "choices"} & set(value)):
            space.append(_param(prefix + str(key), value))
        else:
            space += flatten_space(value, f"{prefix}{key}.")
    return space


def settings(raw: dict[str, Any]) -> Settings:
    """An `hpo` block checked; ConfigError naming the first bad value."""
    if not isinstance(raw, dict):
        raise ConfigError(f"hpo={raw!r} is invalid; valid: a preset, +hpo=NAME")
    for key in raw:
        if key not in KEYS:
            raise ConfigError(f"hpo.{key} is not a key of hpo; valid: {', '.join(KEYS)}")
    missing = [k for k in KEYS if k not in raw]
    if missing:
        raise ConfigError(f"hpo.{missing[0]} is missing; valid: a preset, +hpo=NAME, sets it")
    for key in ("trials", "startup_trials", "batch", "seed"):
        value, low = raw[key], 1 if key in ("trials", "batch") else 0
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"hpo.{key}={value!r} is invalid; valid: an integer >= {low}")
    if not isinstance(raw["name"], str) or not raw["name"]:
        raise ConfigError(f"hpo.name={raw['name']!r} is invalid; valid: a non-empty string")
    objective = raw["objective"] if isinstance(raw["objective"], list) else [raw["objective"]]
    if not objective or not all(isinstance(o, str) and o for o in objective):
        raise ConfigError(
            f"hpo.objective={raw['objective']!r} is invalid; valid: a metric of results.json "
            "(acc, forgetting, bwt, fwt, learning_acc, avg_inc_acc, probe_acc, ...) or a list"
        )
    if len(set(objective)) != len(objective):
        raise ConfigError(f"hpo.objective={objective!r} is invalid; valid: distinct metrics")
    direction = raw["direction"] if isinstance(raw["direction"], list) else [raw["direction"]]
    if len(direction) == 1 and len(objective) > 1:
        direction = direction * len(objective)
    if len(direction) != len(objective) or any(d not in DIRECTIONS for d in direction):
        raise ConfigError(
            f"hpo.direction={raw['direction']!r} is invalid; valid: {', '.join(DIRECTIONS)}, "
            f"or a list of them, one per objective ({len(objective)})"
        )
    direction = [
        ("minimize" if metric in LOWER_IS_BETTER else "maximize") if d == "auto" else d
        for metric, d in zip(objective, direction, strict=True)
    ]
    return Settings(
        raw["name"],
        raw["trials"],
        objective,
        direction,
        raw["startup_trials"],
        raw["batch"],
        raw["seed"],
        flatten_space(raw["params"]),
    )


def format_value(value: Any) -> str:
    """A value as a Hydra override writes it (floats round-trip exactly)."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    return repr(value) if isinstance(value, float) else str(value)


def overrides_of(params: dict[str, Any]) -> list[str]:
    return [f"{key}={format_value(value)}" for key, value in params.items()]


def objective(run_dir: Path, metrics: list[str]) -> tuple[list[float] | None, str | None]:
    """A trial's objective values, read from its results.json; (None, why) for a trial that
    failed, diverged, or has no finite value of a metric: such a trial is recorded as
    failed, never as a score of 0."""
    from lab.report.runs import metric_of

    try:
        results = json.loads((Path(run_dir) / "results.json").read_text())
    except (OSError, json.JSONDecodeError) as error:
        return None, f"no readable results.json ({type(error).__name__})"
    if results.get("status") != "complete":
        return None, f"status {results.get('status')}: {results.get('error', '')}".strip(": ")
    if results.get("diverged"):
        return None, f"diverged (non-finite training loss in task {results['diverged'][0]})"
    values = []
    for metric in metrics:
        value = metric_of(results, metric)
        if not isinstance(value, int | float) or not math.isfinite(value):
            return None, f"no finite {metric} in results.json (got {value!r})"
        values.append(float(value))
    return values, None


# ----------------------------------------------------------------------- the summary file


def read_summary(sweep_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((Path(sweep_dir) / SUMMARY).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def find_searches(paths: list[str]) -> list[Path]:
    """Sweep dirs (holding hpo.json) at or below each path."""
    found: set[Path] = set()
    for path in map(Path, paths):
        if (path / SUMMARY).is_file():
            found.add(path)
        elif path.is_dir():
            found.update(p.parent for p in path.rglob(SUMMARY))
    return sorted(found)


def dominates(a: list[float], b: list[float], directions: list[str]) -> bool:
    signs = [1 if d == "maximize" else -1 for d in directions]
    at_least = all(s * x >= s * y for s, x, y in zip(signs, a, b, strict=True))
    return at_least and any(s * x > s * y for s, x, y in zip(signs, a, b, strict=True))


@dataclass
class Trial:
    number: int
    params: dict[str, Any]
    run_dir: Path
    values: list[float] | None
    reason: str | None  # why it failed


@dataclass
class Best:
    """What lab-report --best says of one search."""

    sweep_dir: Path
    strategy: str
    summary: dict[str, Any]
    trials: list[Trial]  # every trial of the search, its values re-read from results.json
    best: list[Trial]  # the best (one objective), or the Pareto front (several)

    @property
    def complete(self) -> list[Trial]:
        return [t for t in self.trials if t.values is not None]

    def command(self, trial: Trial) -> str:
        return rerun_command(self.summary, trial.params, self.sweep_dir)


def best(sweep_dir: Path) -> Best:
    """The best trial(s) of the search in `sweep_dir`, by the objective in each trial's
    results.json (not by what the study recorded: the run dirs are the source of truth)."""
    summary = read_summary(sweep_dir)
    if summary is None:
        raise ConfigError(f"{sweep_dir} holds no {SUMMARY}: not a search (lab-run -m +hpo=NAME)")
    metrics, directions = summary["objective"], summary["direction"]
    trials = []
    for entry in summary["trials"]:
        run_dir = Path(sweep_dir) / entry["run_dir"]
        values, reason = objective(run_dir, metrics)
        trials.append(Trial(entry["number"], entry["params"], run_dir, values, reason))
    complete = [t for t in trials if t.values is not None]
    if len(metrics) == 1:
        sign = 1 if directions[0] == "maximize" else -1
        # the first trial of the best value (ties: the earlier trial, as Optuna's best_trial)
        chosen = [max(complete, key=lambda t: (sign * t.values[0], -t.number))] if complete else []
    else:
        chosen = [
            t
            for t in complete
            if not any(dominates(o.values, t.values, directions) for o in complete)
        ]
    return Best(Path(sweep_dir), summary.get("strategy", "?"), summary, trials, chosen)


def rerun_command(summary: dict[str, Any], params: dict[str, Any], sweep_dir: Path) -> str:
    """The one command that reruns a configuration of the search on the test sets, over
    seeds: the search's own overrides (less the preset, the search's keys, the seed and
    the split), the trial's parameters, `seed=0,1,2 eval.split=test`, into a sweep dir
    beside the search's."""
    searched = set(params)
    kept = [o for o in summary["rerun_overrides"] if o.split("=", 1)[0] not in searched]
    words = [
        *kept,
        *overrides_of(params),
        f"seed={TEST_SEEDS}",
        "eval.split=test",
        f"hydra.sweep.dir={Path(sweep_dir).as_posix()}-test",
    ]
    return "lab-run -m " + " ".join(shlex.quote(w) for w in words)


def rerun_overrides(
    arguments: list[str], choices: dict[str, Any], config: dict[str, Any]
) -> list[str]:
    """What a rerun of a search's configuration needs besides its parameters: the command
    line's overrides less the preset and the search's own keys (hpo.*, seed, eval.split),
    plus what the preset chose that the command line did not (its strategy, the validation
    fraction, the tuning tasks)."""
    keys = {o.lstrip("+~").split("=", 1)[0] for o in arguments}
    kept = [
        o
        for o in arguments
        if not o.lstrip("+~").split("=", 1)[0].startswith(("hpo", "seed", "eval.split", "hydra"))
    ]
    if "strategy" not in keys and choices.get("strategy"):
        kept.insert(0, f"strategy={choices['strategy']}")
    fraction = config.get("data", {}).get("validation_fraction", 0.0)
    if "data.validation_fraction" not in keys and fraction:
        kept.append(f"data.validation_fraction={format_value(fraction)}")
    tuning = config.get("benchmark", {}).get("tuning_tasks", 0)
    if "benchmark.tuning_tasks" not in keys and tuning:
        kept.append(f"benchmark.tuning_tasks={tuning}")
    return kept


def format_best(found: Best) -> str:
    """lab-report --best's text of one search: the method, the best configuration(s), the
    score, the trial count and the test command."""
    summary = found.summary
    metrics, directions = summary["objective"], summary["direction"]
    failed = len(found.trials) - len(found.complete)
    state = "finished" if summary.get("status") == "finished" else "not finished"
    objective_text = ", ".join(f"{m} ({d[:3]})" for m, d in zip(metrics, directions, strict=True))
    lines = [
        f"## {found.strategy}: {found.sweep_dir}",
        "",
        f"{len(found.trials)} trials of {summary['trials_wanted']} ({state}): "
        f"{len(found.complete)} complete, {failed} failed; objective {objective_text} "
        f"on {summary.get('eval_split', 'validation')}",
    ]
    if not found.best:
        return "\n".join([*lines, "", "no complete trial: nothing to rerun"])
    heading = "best trial" if len(metrics) == 1 else f"Pareto front ({len(found.best)} trials)"
    lines += ["", f"{heading}:"]
    for trial in found.best:
        score = ", ".join(f"{m}={v:.4f}" for m, v in zip(metrics, trial.values, strict=True))
        params = " ".join(overrides_of(trial.params))
        lines += [
            f"- trial {trial.number} ({trial.run_dir}): {score}; {params}",
            f"  test: {found.command(trial)}",
        ]
    return "\n".join(lines)
