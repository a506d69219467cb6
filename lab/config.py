"""The configuration schema: every key the lab reads, with its valid values.

`validate` turns a composed Hydra config into a plain dict, or raises one ConfigError
whose message names the key, the bad value and what is valid, before any data is
loaded or any model trained. This module and lab.run are the only ones that know
about Hydra/OmegaConf; the rest of the lab takes plain values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

from omegaconf import DictConfig, OmegaConf

from lab.data.datasets import LOADERS, NUM_CLASSES, TEXT
from lab.data.streams import EVAL_SPLITS, SCENARIOS, STREAMS
from lab.errors import ConfigError
from lab.finetune import ADAPTER_KINDS, MODES, VPT_KINDS
from lab.models import ACTIVATIONS, INITIALISATIONS, MODELS
from lab.optim import OPTIMIZERS
from lab.precision import PRECISIONS
from lab.strategies import STRATEGIES, build_strategy
from lab.tracking.wandb_run import MODES as WANDB_MODES

DEVICES = ("auto", "cpu", "cuda")
RESNET_WEIGHTS = ("IMAGENET1K_V1", "DEFAULT")  # torchvision's ResNet18_Weights
ENGINES = ("lab", "avalanche")
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
        ok = ok and math.isfinite(value)  # nan passes every comparison's negation
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


def strengths(key: str, value: Any) -> None:
    """A benchmark's own default strengths: {strategy: number >= 0}."""
    if not isinstance(value, dict):
        _fail(key, value, "a mapping of strategy to strength, e.g. {ewc: 300}")
    for name, strength in value.items():
        if name not in STRATEGIES:
            raise ConfigError(f"{key}.{name} is not a strategy; valid: {', '.join(STRATEGIES)}")
        number(0.0)(f"{key}.{name}", strength)


COMMON_BENCHMARK = {
    "name": anything,
    "dataset": one_of(LOADERS),
    "stream": one_of(STREAMS),
    "num_tasks": integer(minimum=1),
    "standardize": boolean,
    "strengths": strengths,
    "tuning_tasks": integer(minimum=0),  # the first K tasks tune, the rest report
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
    "resnet18": {
        "name": one_of(MODELS),
        "init": one_of(INITIALISATIONS),
        "weights": lambda key, value: value is None or one_of(RESNET_WEIGHTS)(key, value),
        "small_input": boolean,
    },
    "timm": {
        "name": one_of(MODELS),
        "init": one_of(INITIALISATIONS),
        "arch": lambda key, value: _timm_arch(key, value),
        "pretrained": boolean,
        "weights": lambda key, value: optional_string(key, value),
        "input_size": lambda key, value: integer(minimum=16, optional=True)(key, value),
        "drop_path_rate": number(0.0, 1.0),
    },
    "hf": {
        "name": one_of(MODELS),
        "init": one_of(("default",)),  # the weights are always the checkpoint's
        "arch": lambda key, value: _hf_arch(key, value),
        "pooling": one_of(("cls", "mean")),
    },
}
TEXT_MODELS = ("hf",)  # the families that read text (lab.data.text)


def _hf_arch(key: str, value: Any) -> None:
    if not isinstance(value, str) or value in ("???", ""):
        _fail(key, value, "a Hugging Face model name or a save_pretrained directory (required)")


def _timm_arch(key: str, value: Any) -> None:
    if not isinstance(value, str) or value == "???":
        _fail(key, value, "a timm model name, e.g. vit_base_patch16_224.augreg_in21k (required)")
    from lab.models.timm_backbone import known_arch, unknown_arch_message  # timm: ~1 s

    if not known_arch(value):
        raise ConfigError(unknown_arch_message(value))


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
    "augment": anything,  # AUGMENT
    "precision": one_of(PRECISIONS),
    "compile": boolean,
}
AUGMENT = {"crop_padding": integer(minimum=0), "flip": boolean, "noise_std": number(0.0)}
# Digits and characters mirrored are other symbols (or none)
NOT_FLIPPABLE = ("digits", "mnist", "kmnist")


def optional_string(key: str, value: Any) -> None:
    if value is not None and not isinstance(value, str):
        _fail(key, value, "a string or null")


def string(key: str, value: Any) -> None:
    if not isinstance(value, str):
        _fail(key, value, "a string")


def string_list(key: str, value: Any) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        _fail(key, value, "a list of strings, e.g. [baseline,fmnist]")


DATA = {
    "root": string,
    "validation_fraction": number(0.0, 1.0),  # of each class's training rows, held out
    "store_size": integer(minimum=1, optional=True),  # images' stored side (lab.data.decoded)
    "max_length": integer(minimum=2),  # a text's tokens at most (lab.data.text)
}
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
EVAL = {"samples_per_task": integer(minimum=1, optional=True), "split": one_of(EVAL_SPLITS)}
ANALYSIS = {
    "probe": boolean,
    "probe_samples": integer(minimum=1, optional=True),
    "cka": boolean,
    "cka_samples": integer(minimum=2),
}
TOP = {
    "scenario": one_of(SCENARIOS),
    "seed": integer(),
    "device": one_of(DEVICES),
    "engine": one_of(ENGINES),
    "progress": one_of(PROGRESS),
    "keep_checkpoint": boolean,
}
GROUPS = (
    "benchmark",
    "model",
    "strategy",
    "optimizer",
    "pretrain",
    "finetune",
    "logger",
    "train",
    "eval",
    "analysis",
    "data",
    "hpo",  # a search's settings (+hpo=NAME, lab.hpo): read by the sweeper, not by a run
)


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


# Keys that one dataset's benchmarks have beyond their stream's
DATASET_BENCHMARK = {
    "image_folder": {
        "root": string,
        "test_fraction": number(0.0, 1.0, low_open=True),
        "split_seed": integer(minimum=0),
    },
}


# A text benchmark: a task per file (text_csv) or per dataset (text_cl5), lab.data.text
TEXT_BENCHMARK = {
    "text_csv": {
        "name": anything,
        "dataset": one_of(LOADERS),
        "train": string_list,
        "test": string_list,
        "text_column": string,
        "label_column": string,
        "tuning_tasks": integer(minimum=0),
    },
    "text_cl5": {
        "name": anything,
        "dataset": one_of(LOADERS),
        "order": one_of((1, 2, 3, 4)),
        "train_per_class": integer(minimum=1, optional=True),
        "tuning_tasks": integer(minimum=0),
    },
}


def _check_text_benchmark(b: dict[str, Any]) -> None:
    _check_group("benchmark", b, TEXT_BENCHMARK[b["dataset"]])
    if b["dataset"] == "text_csv":
        for key in ("train", "test"):
            if b[key] == "???" or not b[key]:
                _fail(f"benchmark.{key}", b[key], "a list of CSV files, one per task (required)")
        if len(b["train"]) != len(b["test"]):
            _fail(
                "benchmark.test",
                b["test"],
                f"a list of {len(b['train'])} CSV files, one per task as benchmark.train",
            )


def _check_benchmark(b: dict[str, Any], scenario: str) -> None:
    if b.get("dataset") in TEXT:
        _check_text_benchmark(b)
        return
    stream = b.get("stream")
    one_of(STREAMS)("benchmark.stream", stream)
    _check_group(
        "benchmark", b, {**BENCHMARK[stream], **DATASET_BENCHMARK.get(b.get("dataset"), {})}
    )
    if b.get("root") == "???":
        _fail(
            "benchmark.root",
            "???",
            "the dataset's directory, e.g. benchmark.root=~/data/flowers102",
        )
    if stream == "split":
        check_split(b, scenario, NUM_CLASSES[b["dataset"]])
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


def check_split(b: dict[str, Any], scenario: str, num_classes: int | None) -> None:
    """A split stream's class_order and num_tasks against the dataset's number of classes.
    With None (image_folder: counted from its folders when it is loaded) only what is known
    without it is checked; lab.experiment checks again with the count."""
    order = b.get("class_order")
    if order is not None and (
        not isinstance(order, list)
        or len(set(order)) != len(order)
        or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in order)
        or (num_classes is not None and not set(order) <= set(range(num_classes)))
    ):
        classes = "the dataset's classes" if num_classes is None else f"0..{num_classes - 1}"
        _fail(
            "benchmark.class_order",
            order,
            f"distinct classes of {classes} (all of them, or the subset the stream uses), or null",
        )
    used = len(order) if order is not None else num_classes
    if used is not None and b["num_tasks"] > used:
        _fail("benchmark.num_tasks", b["num_tasks"], f"1..{used} (the stream has {used} classes)")
    if used is not None and scenario == "domain" and used % b["num_tasks"]:
        _fail(
            "benchmark.num_tasks",
            b["num_tasks"],
            f"a divisor of {used} in "
            "domain-IL (the shared head needs the same number of classes in every task)",
        )


def class_list(key: str, value: Any) -> None:
    if value is not None and (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
        or len(set(value)) != len(value)
    ):
        _fail(key, value, "null or a list of distinct class labels, e.g. [0,1,2,3,4]")


PRETRAIN = {
    "none": {"name": anything},
    "source": {
        "name": anything,
        "dataset": one_of(LOADERS),
        "classes": class_list,
        "epochs": integer(minimum=1),
        "batch_size": integer(minimum=1),
        "optimizer": anything,  # OPTIMIZER, checked in _check_pretrain
    },
    "file": {
        "name": anything,
        "path": string,
        "dataset": lambda key, value: value is None or one_of(LOADERS)(key, value),
        "classes": class_list,
    },
    "model": {
        "name": anything,
        "dataset": one_of(LOADERS),
        "root": optional_string,
        "classes": class_list,
        "eval_samples": integer(minimum=1, optional=True),
    },
    "mlm": {  # a masked LM's own head on a held-out text (lab.models.hf_mlm)
        "name": anything,
        "dataset": one_of(("text_file",)),
        "path": string,
        "mask_prob": number(0.0, 1.0, low_open=True),
    },
}


def _check_pretrain(pretrain: dict[str, Any]) -> None:
    if pretrain["name"] == "mlm" and pretrain["path"] == "???":
        _fail("pretrain.path", "???", "a held-out text file, one passage a line (required)")
    if pretrain["name"] == "file" and pretrain["path"] == "???":
        _fail("pretrain.path", "???", "the path of a state_dict or a lab checkpoint.pt (required)")
    if pretrain["name"] == "source":
        _check_group_name("pretrain.optimizer", pretrain["optimizer"], OPTIMIZERS)
        _check_group("pretrain.optimizer", pretrain["optimizer"], OPTIMIZER)
    if (
        pretrain["name"] != "mlm"
        and pretrain.get("dataset") is not None
        and pretrain.get("classes") is not None
    ):
        labels = NUM_CLASSES[pretrain["dataset"]]
        if labels is not None and max(pretrain["classes"]) >= labels:
            _fail("pretrain.classes", pretrain["classes"], f"labels of 0..{labels - 1}")


FINETUNE_MODES = MODES  # lab.finetune's registry: full, freeze, linear_probe, lora, ia3, ...


def int_or_names(key: str, value: Any) -> None:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        _fail(key, value, "a number of layer groups >= 0, or a list of module names")


def optional_names(key: str, value: Any) -> None:
    if value is not None:
        string_list(key, value)


FINETUNE = {
    "mode": one_of(FINETUNE_MODES),
    "freeze": int_or_names,
    "lora": anything,  # LORA
    "virtual_tokens": integer(minimum=1),  # prompt and prefix modes (lab.models.hf_peft)
    "adapter": anything,  # ADAPTER
    "vpt": anything,  # VPT
    "prefix": anything,  # PREFIX
    "per_task": boolean,
    "head_lr_scale": number(0.0),
    "backbone_lr_scale": number(0.0),
    "layer_decay": number(0.0, low_open=True),
    "unfreeze_every": integer(minimum=1, optional=True),
    "lp_epochs": integer(minimum=0),
}
LORA = {
    "rank": integer(minimum=1),
    "alpha": number(0.0, low_open=True),
    "dropout": number(0.0, 1.0),
    "targets": optional_names,
}
ADAPTER = {
    "dim": integer(minimum=1),
    "kind": one_of(ADAPTER_KINDS),
    "scale": number(0.0, low_open=True),
}
VPT = {"tokens": integer(minimum=1), "kind": one_of(VPT_KINDS)}
PREFIX = {"tokens": integer(minimum=1)}
OPTIONS = ("freeze", "lora", "adapter", "vpt", "prefix", "virtual_tokens")  # the modes' own
DEFAULT_REGIME = {  # finetune's defaults, apart from the options of each mode
    "mode": "full",
    "per_task": False,
    "head_lr_scale": 1.0,
    "backbone_lr_scale": 1.0,
    "layer_decay": 1.0,
    "unfreeze_every": None,
    "lp_epochs": 0,
}


# Strategies of the lab's own that Avalanche has no plugin for (lab.avalanche.strategies)
LAB_ONLY = (
    *("l2_sp", "wise_ft"),
    *("simplecil", "aper", "ranpac", "l2p", "dualprompt", "coda_prompt", "slca"),
)
# Strategies only Avalanche implements (lab.avalanche.strategies), with their hyperparameters.
AVALANCHE_ONLY = {
    "gem": {
        "name": anything,
        "patterns_per_exp": integer(minimum=1),
        "memory_strength": number(0.0),
    },
}


def _check_engine(config: dict[str, Any]) -> None:
    """What each engine cannot run: the other engine's strategies and options."""
    strategy = config["strategy"]
    if config["engine"] != "lab" and strategy["name"] in LAB_ONLY:
        raise ConfigError(
            f"strategy={strategy['name']} has no Avalanche equivalent; valid with "
            f"engine=avalanche: any strategy but {', '.join(LAB_ONLY)} (or engine=lab)"
        )
    if config["engine"] == "lab":
        if strategy["name"] in AVALANCHE_ONLY:
            raise ConfigError(
                f"strategy={strategy['name']} needs engine=avalanche (the lab engine "
                f"implements: {', '.join(STRATEGIES)})"
            )
        return
    regime = {k: v for k, v in config["finetune"].items() if k not in OPTIONS}
    if config["pretrain"]["name"] != "none" or regime != DEFAULT_REGIME:
        raise ConfigError(
            "pretrain and finetune run on the lab engine; valid with engine=avalanche: "
            "pretrain=none and the default finetune (mode full, no lr scales, no unfreezing)"
        )
    if config["train"]["augment"] != {"crop_padding": 0, "flip": False, "noise_std": 0.0}:
        raise ConfigError(
            "train.augment runs on the lab engine; valid with engine=avalanche: no augmentation"
        )
    unsupported = {  # key: (value, the only value Avalanche can run, as YAML writes it)
        "train.iterations": (config["train"]["iterations"], None, "null"),
        "train.seen_classes_only": (config["train"]["seen_classes_only"], False, "false"),
        # Avalanche's loop has no autocast of the lab's: auto means fp32 there
        "train.precision": (config["train"]["precision"].replace("auto", "fp32"), "fp32", "fp32"),
        "train.compile": (config["train"]["compile"], False, "false"),
        "strategy.fisher": (strategy.get("fisher", "empirical"), "empirical", "empirical"),
        "strategy.fisher_samples": (strategy.get("fisher_samples"), None, "null"),
        "strategy.weighting": (strategy.get("weighting", "alpha"), "alpha", "alpha"),
    }
    for key, (value, only, shown) in unsupported.items():
        if value != only:
            raise ConfigError(
                f"{key}={value!r} has no Avalanche equivalent; valid with engine=avalanche: {shown}"
            )
    for name, key in (("replay", "mem_size"), ("der", "mem_size"), ("agem", "patterns_per_exp")):
        if strategy["name"] == name and strategy[key] == 0:
            raise ConfigError(
                f"strategy.{key}=0 has no Avalanche equivalent; valid with engine=avalanche: "
                f"an integer >= 1 ({key}=0 is naive)"
            )
    if strategy["name"] == "der" and config["scenario"] == "task":
        raise ConfigError(
            "strategy=der with engine=avalanche needs one shared head (Avalanche's DER asks "
            "the model for logits without task labels); valid: scenario=domain or class, "
            "or engine=lab"
        )


def _check_strategy_setting(config: dict[str, Any], strategy: str) -> None:
    """The scenarios and fine-tuning modes a strategy is made for, where it says (its class's
    `scenarios` and `finetune_modes`, e.g. the prompt learners: class-IL, their own freezing)."""
    cls = STRATEGIES[strategy]
    for key, value, valid in (
        ("scenario", config["scenario"], getattr(cls, "scenarios", None)),
        ("finetune.mode", config["finetune"]["mode"], getattr(cls, "finetune_modes", None)),
    ):
        if valid is not None and value not in valid:
            _fail(key, value, f"{', '.join(valid)} (strategy={strategy} is made for it)")


# The pre-trained-model learners of class-IL (issue 31); what their first session may adapt
# is lab.strategies.prototypes.ADAPTATION_MODES
PROTOTYPE_LEARNERS = ("simplecil", "aper", "ranpac")


def _check_pretrained_learner(config: dict[str, Any]) -> None:
    """SimpleCIL, APER and RanPAC: class-IL, and the finetune.mode their first session uses
    (APER and an adapting RanPAC: full or a ViT's PEFT module; otherwise nothing trains)."""
    from lab.strategies.prototypes import ADAPTATION_MODES

    strategy = config["strategy"]
    name = strategy["name"]
    if name not in PROTOTYPE_LEARNERS:
        return
    mode = config["finetune"]["mode"]
    adapts = name == "aper" or (name == "ranpac" and strategy.get("adapt", True))
    if adapts and mode not in ADAPTATION_MODES:
        _fail(
            "finetune.mode",
            mode,
            f"{', '.join(ADAPTATION_MODES)} (what strategy={name} adapts in its first "
            "session: the whole backbone or a ViT's PEFT module)",
        )
    if not adapts and mode != "full":
        _fail("finetune.mode", mode, f"full (strategy={name} trains nothing here)")
    if config["finetune"]["lp_epochs"]:
        _fail("finetune.lp_epochs", config["finetune"]["lp_epochs"], f"0 with strategy={name}")


def _check_text(config: dict[str, Any]) -> None:
    """Text benchmarks need a text model and the other way round; what text cannot do."""
    dataset, model = config["benchmark"]["dataset"], config["model"]["name"]
    if (dataset in TEXT) != (model in TEXT_MODELS):
        if dataset in TEXT:
            _fail("model", model, f"{', '.join(TEXT_MODELS)} (benchmark={dataset} is text)")
        _fail(
            "benchmark",
            config["benchmark"]["name"],
            f"a text benchmark ({', '.join(TEXT)}) for model={model}",
        )
    if config["pretrain"]["name"] == "mlm" and model not in TEXT_MODELS:
        _fail("pretrain", "mlm", "none, source, file (pretrain=mlm scores a masked LM: model=hf)")
    mode = config["finetune"]["mode"]
    if mode == "prompt" and model not in TEXT_MODELS:
        valid = ", ".join(m for m in FINETUNE_MODES if m != "prompt")
        _fail("finetune.mode", mode, f"{valid} (prompt tunes a text model's prompt: model=hf)")
    if dataset in TEXT:
        if config["pretrain"]["name"] in ("source", "file"):
            _fail(
                "pretrain",
                config["pretrain"]["name"],
                "none, mlm (a text model's own pre-training)",
            )
        if config["train"]["augment"] != {"crop_padding": 0, "flip": False, "noise_std": 0.0}:
            raise ConfigError("train.augment augments images; valid for text: no augmentation")
        if config["engine"] != "lab":
            _fail("engine", config["engine"], "lab (text streams run on the lab engine)")


def _check_split(config: dict[str, Any]) -> None:
    """eval.split, data.validation_fraction and benchmark.tuning_tasks together."""
    split = config["eval"].get("split", "test")
    fraction = config["data"].get("validation_fraction", 0.0)
    dataset = config["benchmark"]["dataset"]
    tuning = config["benchmark"].get("tuning_tasks", 0)
    if dataset in TEXT and (split != "test" or fraction > 0 or tuning):
        key, value = (
            ("eval.split", split)
            if split != "test"
            else ("data.validation_fraction", fraction)
            if fraction > 0
            else ("benchmark.tuning_tasks", tuning)
        )
        _fail(
            key,
            value,
            f"test, 0.0 and 0 for a text benchmark ({dataset}: its validation slices are not "
            "built yet; tune on a text_csv stream of your own validation files)",
        )
    if split == "validation" and fraction <= 0:
        _fail(
            "data.validation_fraction",
            fraction,
            "a number in (0, 1) with eval.split=validation, e.g. data.validation_fraction=0.1",
        )
    k, tasks = config["benchmark"].get("tuning_tasks", 0), config["benchmark"].get("num_tasks")
    if k and tasks is not None and k >= tasks:
        _fail("benchmark.tuning_tasks", k, f"0..{tasks - 1} (the stream has {tasks} tasks)")
    if k and fraction <= 0:
        _fail(
            "data.validation_fraction",
            fraction,
            "a number in (0, 1) with benchmark.tuning_tasks (the tuning tasks are scored on "
            "their validation slices), e.g. data.validation_fraction=0.1",
        )


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
    model = config["model"]
    if model["name"] == "timm" and model["pretrained"] and model["weights"] is not None:
        raise ConfigError(
            f"model.pretrained=true and model.weights={model['weights']} both choose the "
            "weights; valid: one of them (the hub's, or the file's)"
        )
    _check_text(config)
    _check_group_name("optimizer", config["optimizer"], OPTIMIZERS)
    _check_group("optimizer", config["optimizer"], OPTIMIZER)
    _check_group("train", config["train"], TRAIN)
    _check_group("train.augment", config["train"]["augment"], AUGMENT)
    dataset = config["benchmark"]["dataset"]
    if config["train"]["augment"]["flip"] and dataset in NOT_FLIPPABLE:
        _fail(
            "train.augment.flip", True, f"false for {dataset} (mirrored digits are other symbols)"
        )
    pretrain = _check_group_name("pretrain", config["pretrain"], PRETRAIN)
    _check_group("pretrain", config["pretrain"], PRETRAIN[pretrain])
    _check_pretrain(config["pretrain"])
    _check_group("finetune", config["finetune"], FINETUNE)
    _check_group("finetune.lora", config["finetune"]["lora"], LORA)
    _check_group("finetune.adapter", config["finetune"]["adapter"], ADAPTER)
    _check_group("finetune.vpt", config["finetune"]["vpt"], VPT)
    _check_group("finetune.prefix", config["finetune"]["prefix"], PREFIX)
    if config["finetune"]["per_task"] and config["scenario"] != "task":
        raise ConfigError(
            f"finetune.per_task=true with scenario={config['scenario']}: a task's modules are "
            "chosen by its task id, which only task-IL gives at test time; valid: "
            "scenario=task, or finetune.per_task=false"
        )
    strategy = _check_group_name("strategy", config["strategy"], [*STRATEGIES, *AVALANCHE_ONLY])
    if strategy in AVALANCHE_ONLY:
        _check_group("strategy", config["strategy"], AVALANCHE_ONLY[strategy])
    else:
        # built once here, so that a bad value is refused before anything runs, also
        # with engine=avalanche (which builds Avalanche's own)
        build_strategy(strategy, **{k: v for k, v in config["strategy"].items() if k != "name"})
        _check_strategy_setting(config, strategy)
    _check_engine(config)
    _check_pretrained_learner(config)
    _check_group("eval", config["eval"], EVAL)
    _check_group("analysis", config["analysis"], ANALYSIS)
    _check_group("data", config["data"], DATA)
    _check_split(config)
    if "hpo" in config:
        from lab.hpo import settings as hpo_settings

        hpo_settings(config.pop("hpo"))  # the sweep's, checked; not part of what a run computes
    logger = _check_group_name("logger", config["logger"], LOGGERS)
    _check_group("logger", config["logger"], LOGGER[logger])
    return config
