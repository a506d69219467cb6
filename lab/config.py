"""The configuration schema: every key the lab reads, with its valid values.

`validate` turns a composed Hydra config into a plain dict, or raises one ConfigError
whose message names the key, the bad value and what is valid, before any data is
loaded or any model trained. This module and lab.run are the only ones that know
about Hydra/OmegaConf; the rest of the lab takes plain values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from omegaconf import DictConfig, OmegaConf

from lab.data.datasets import LOADERS, NUM_CLASSES
from lab.data.streams import SCENARIOS, STREAMS
from lab.errors import ConfigError
from lab.models import ACTIVATIONS, INITIALISATIONS, MODELS
from lab.optim import OPTIMIZERS
from lab.strategies import STRATEGIES, check_hyperparameters
from lab.tracking.wandb_run import MODES as WANDB_MODES

DEVICES = ("auto", "cpu", "cuda")
ENGINES = ("lab",)
LOGGERS = ("none", "wandb")
PROGRESS = ("auto", True, False)

Check = Callable[[str, Any], None]


def _fail(key: str, value: Any, valid: str) -> None:
    raise ConfigError(f"{key}={value!r} is invalid; valid: {valid}")


def one_of(choices: Iterable[Any]) -> Check:
    choices = tuple(choices)

    def check(key: str, value: Any) -> None:
        # type must match too: YAML's `true` is not the choice 1, nor 1 the choice true
        if not any(value == c and type(value) is type(c) for c in choices):
            _fail(
                key, value, ", ".join(str(c).lower() if isinstance(c, bool) else c for c in choices)
            )

    return check


def integer(minimum: int | None = None, optional: bool = False) -> Check:
    def check(key: str, value: Any) -> None:
        if value is None and optional:
            return
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or (minimum is not None and value < minimum)
        ):
            bound = f" >= {minimum}" if minimum is not None else ""
            _fail(key, value, f"an integer{bound}" + (" or null" if optional else ""))

    return check


def number(low: float, high: float | None = None, low_open: bool = False) -> Check:
    """A real number in [low, high) (or (low, high) with low_open)."""

    def check(key: str, value: Any) -> None:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        ok = ok and (value > low if low_open else value >= low)
        ok = ok and (high is None or value < high)
        if not ok:
            interval = (
                ("(" if low_open else "[") + f"{low:g}, " + (f"{high:g})" if high else "inf)")
            )
            _fail(key, value, f"a number in {interval}")

    return check


def boolean(key: str, value: Any) -> None:
    if not isinstance(value, bool):
        _fail(key, value, "true, false")


def optional_boolean(key: str, value: Any) -> None:
    if value is not None and not isinstance(value, bool):
        _fail(key, value, "true, false, null")


def int_list(key: str, value: Any) -> None:
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value
    ):
        _fail(key, value, "a list of positive integers, e.g. [400,400]")


def anything(key: str, value: Any) -> None:
    """Checked elsewhere (by the stream's own rules below)."""


COMMON_BENCHMARK = {
    "name": anything,
    "dataset": one_of(LOADERS),
    "stream": one_of(STREAMS),
    "num_tasks": integer(minimum=1),
    "standardize": boolean,
}
BENCHMARK = {
    "split": {**COMMON_BENCHMARK, "class_order": anything, "shuffle_classes": boolean},
    "permuted": {**COMMON_BENCHMARK, "identity_first": boolean},
    "rotated": {**COMMON_BENCHMARK, "angles": anything},
}
MODEL_COMMON = {
    "name": one_of(MODELS),
    "activation": one_of(ACTIVATIONS),
    "dropout": number(0.0, 1.0),
    "init": one_of(INITIALISATIONS),
}
MODEL = {
    "mlp": {**MODEL_COMMON, "hidden_sizes": int_list},
    "cnn": {**MODEL_COMMON, "channels": int_list, "hidden_size": integer(minimum=1)},
}
OPTIMIZER = {
    "name": one_of(OPTIMIZERS),
    "lr": number(0.0, low_open=True),
    "momentum": number(0.0, 1.0),
    "weight_decay": number(0.0),
    "decoupled_weight_decay": optional_boolean,
}
TRAIN = {
    "epochs": integer(minimum=1),
    "iterations": integer(minimum=1, optional=True),
    "batch_size": integer(minimum=1),
    "eval_batch_size": integer(minimum=1),
    "seen_classes_only": boolean,
}


def optional_string(key: str, value: Any) -> None:
    if value is not None and not isinstance(value, str):
        _fail(key, value, "a string or null")


def string(key: str, value: Any) -> None:
    if not isinstance(value, str):
        _fail(key, value, "a string")


def string_list(key: str, value: Any) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        _fail(key, value, "a list of strings, e.g. [baseline,fmnist]")


LOGGER = {
    "none": {"name": anything},
    "wandb": {
        "name": anything,
        "project": optional_string,
        "entity": optional_string,
        "mode": one_of(WANDB_MODES),
        "group": optional_string,
        "tags": string_list,
    },
}
TOP = {
    "scenario": one_of(SCENARIOS),
    "seed": integer(),
    "device": one_of(DEVICES),
    "engine": one_of(ENGINES),
    "progress": one_of(PROGRESS),
    "keep_checkpoint": boolean,
}
GROUPS = ("benchmark", "model", "strategy", "optimizer", "logger", "train", "data")


def _check_group(prefix: str, values: dict[str, Any], schema: dict[str, Check]) -> None:
    for key, value in values.items():
        if key not in schema:
            raise ConfigError(
                f"{prefix}.{key} is not a key of {prefix}; valid: {', '.join(schema)}"
            )
        schema[key](f"{prefix}.{key}", value)


def _check_group_name(group: str, values: Any, valid: Iterable[str]) -> str:
    if not isinstance(values, dict) or "name" not in values:
        raise ConfigError(f"{group} must be chosen from its config group, e.g. {group}=NAME")
    name = values["name"]
    if name not in valid:
        _fail(f"{group}.name", name, ", ".join(valid))
    return name


def _check_benchmark(b: dict[str, Any], scenario: str) -> None:
    stream = b.get("stream")
    one_of(STREAMS)("benchmark.stream", stream)
    _check_group("benchmark", b, BENCHMARK[stream])
    num_classes = NUM_CLASSES[b["dataset"]]
    if stream == "split":
        if b["num_tasks"] > num_classes:
            _fail(
                "benchmark.num_tasks",
                b["num_tasks"],
                f"1..{num_classes} ({b['dataset']} has {num_classes} classes)",
            )
        order = b.get("class_order")
        if order is not None and sorted(order) != list(range(num_classes)):
            _fail("benchmark.class_order", order, f"a permutation of 0..{num_classes - 1}, or null")
        if scenario == "domain" and num_classes % b["num_tasks"]:
            _fail(
                "benchmark.num_tasks",
                b["num_tasks"],
                f"a divisor of {num_classes} in "
                "domain-IL (the shared head needs the same number of classes in every task)",
            )
    angles = b.get("angles")
    if (
        stream == "rotated"
        and angles is not None
        and (
            not isinstance(angles, list)
            or len(angles) != b["num_tasks"]
            or not all(isinstance(a, int | float) for a in angles)
        )
    ):
        _fail("benchmark.angles", angles, f"null or a list of {b['num_tasks']} angles in degrees")


def validate(cfg: DictConfig | dict[str, Any]) -> dict[str, Any]:
    """The resolved config as a plain dict, or ConfigError naming the first bad value."""
    if isinstance(cfg, DictConfig):
        # without Hydra's own node: parts of it (the sweep's job number) resolve only in a job
        cfg = OmegaConf.to_container(
            OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True
        )
    config = {k: v for k, v in cfg.items() if k != "hydra"}
    for key in config:
        if key not in TOP and key not in GROUPS:
            raise ConfigError(
                f"{key} is not a key of the config; valid: {', '.join([*TOP, *GROUPS])}"
            )
    for key, check in TOP.items():
        check(key, config.get(key))
    _check_benchmark(config["benchmark"], config["scenario"])
    _check_group(
        "model", config["model"], MODEL[_check_group_name("model", config["model"], MODELS)]
    )
    _check_group_name("optimizer", config["optimizer"], OPTIMIZERS)
    _check_group("optimizer", config["optimizer"], OPTIMIZER)
    _check_group("train", config["train"], TRAIN)
    strategy = _check_group_name("strategy", config["strategy"], STRATEGIES)
    check_hyperparameters(strategy, {k: v for k, v in config["strategy"].items() if k != "name"})
    _check_group("data", config["data"], {"root": string})
    logger = _check_group_name("logger", config["logger"], LOGGERS)
    _check_group("logger", config["logger"], LOGGER[logger])
    return config
