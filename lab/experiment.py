"""One experiment, from a plain config dict to a complete run directory.

    from lab.experiment import run_experiment
    results = run_experiment(config, "outputs/my-run")   # config as lab.config.validate gives

Hydra is not needed here: a notebook can build the dict by hand, or compose it with
hydra.compose and pass it through lab.config.validate.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lab import finetune as ft
from lab.analysis import Analysis, build_analysis
from lab.augment import Augment
from lab.checkpoint import CHECKPOINT, load_checkpoint, save_checkpoint, set_rng_states
from lab.config import check_split
from lab.data import Dataset, Stream, build_stream, load_dataset, subsample_test_set
from lab.data.datasets import NUM_CLASSES, TEXT
from lab.data.inputs import ModelInputs
from lab.data.streams import tuning_part
from lab.data.text import TextDataset, build_text_stream, throughput
from lab.engine import (
    TaskResult,
    TrainSettings,
    evaluate,
    evaluate_task_masked,
    train_stream,
    train_task,
)
from lab.errors import ConfigError, LabError
from lab.models import Classifier, attach_heads, backbone_inputs, build_backbone
from lab.models.hf_mlm import mlm_source
from lab.optim import OptimizerSettings, make_optimizer
from lab.precision import compile_backbone, resolve_precision
from lab.preemption import Stopped, held
from lab.pretrain import load_weights, make_source
from lab.strategies import Strategy, build_strategy
from lab.tracking import RunResults, write_acc_matrix_csv
from lab.tracking.results import device_name
from lab.tracking.summary import draw_heatmaps, format_summary, with_source_column
from lab.tracking.wandb_run import WandbRun

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda' but torch sees no CUDA device; valid here: auto, cpu")
    return torch.device(name)


def dataset_options(
    config: dict[str, Any], backbone: torch.nn.Module | None = None
) -> dict[str, Any]:
    """The loader options of a config (lab.data.load_dataset): data.store_size, and an
    image_folder benchmark's root (the loader's folder), test_fraction and split_seed; a
    text benchmark's own keys and the `backbone`'s tokenizer (lab.data.text)."""
    b = config["benchmark"]
    if b["dataset"] in TEXT:
        keys = ("train", "test", "text_column", "label_column", "order", "train_per_class")
        options = {k: b[k] for k in keys if k in b}
        if backbone is not None:
            options["tokenizer"] = getattr(backbone, "tokenizer", None)
            options["max_length"] = backbone.max_length(config["data"]["max_length"])
        return options
    options = {"store_size": config["data"].get("store_size")}
    if "root" in b:
        options["folder"] = b["root"]
    options.update({k: b[k] for k in ("test_fraction", "split_seed") if k in b})
    return options


def make_stream(
    config: dict[str, Any],
    dataset: Dataset | None = None,
    inputs: ModelInputs | None = None,
    device: torch.device | None = None,
) -> Stream:
    """The benchmark's stream, cut from `dataset` (loaded here when not given), its images
    made as `inputs` (the model's) says, on `device`."""
    b = config["benchmark"]
    dataset = dataset or load_dataset(
        b["dataset"], config["data"]["root"], **dataset_options(config)
    )
    if isinstance(dataset, TextDataset):  # a task per file or dataset
        stream = build_text_stream(dataset, config["scenario"], device)
    else:
        stream = _image_stream(config, dataset, inputs, device)
    # benchmark.tuning_tasks=K: tuned on the first K tasks' validation slices, reported
    # on the rest of the stream (Chaudhry et al. 2019)
    part = "tuning" if config["eval"].get("split") == "validation" else "final"
    stream = tuning_part(stream, b.get("tuning_tasks", 0), part)
    samples = config["eval"]["samples_per_task"]
    if samples is not None:
        stream.tasks = [subsample_test_set(task, samples, config["seed"]) for task in stream.tasks]
    return stream


def _image_stream(
    config: dict[str, Any], dataset: Dataset, inputs: ModelInputs | None, device
) -> Stream:
    b = config["benchmark"]
    if b["stream"] == "split" and NUM_CLASSES[b["dataset"]] is None:
        check_split(b, config["scenario"], dataset.num_classes)  # counted only now
    return build_stream(
        dataset,
        stream=b["stream"],
        scenario=config["scenario"],
        num_tasks=b["num_tasks"],
        seed=config["seed"],
        order=b.get("class_order"),
        shuffle_classes=b.get("shuffle_classes", False),
        identity_first=b.get("identity_first", True),
        angles=b.get("angles"),
        standardize=b["standardize"],
        inputs=inputs,
        device=device,
        validation_fraction=config["data"].get("validation_fraction", 0.0),
        evaluate_on=config["eval"].get("split", "test"),
    )


def place_backbone(backbone: torch.nn.Module, device: torch.device) -> ModelInputs:
    """The backbone laid out for `device`, and the inputs it then takes: on a GPU, a
    convolutional backbone and its batches in channels-last order (cuDNN's NHWC kernels
    are the fast ones); elsewhere as they are."""
    inputs = backbone_inputs(backbone)
    if device.type == "cuda" and any(isinstance(m, torch.nn.Conv2d) for m in backbone.modules()):
        backbone.to(memory_format=torch.channels_last)
        inputs = dataclasses.replace(inputs, channels_last=True)
    return inputs


def own_classifier(backbone: torch.nn.Module, config: dict[str, Any]) -> torch.nn.Linear | None:
    """pretrain=model: the classifier the backbone's weights were trained with (the source
    head); one ConfigError line when the model has none."""
    if config["pretrain"]["name"] != "model":
        return None
    head = getattr(backbone, "pretrained_classifier", None)
    model = config["model"]
    if head is None or not getattr(backbone, "pretrained", False):
        have = (
            "no pre-trained weights"
            if not getattr(backbone, "pretrained", False)
            else "weights without a linear classifier"
        )
        raise ConfigError(
            f"pretrain=model with model={model['name']} ({have}): the source head is the "
            "classifier of the model's own pre-training; valid: model=timm with "
            "model.pretrained=true or model.weights=FILE holding its classifier, or "
            "pretrain=source|file|none"
        )
    return head


def build(
    config: dict[str, Any], device: torch.device
) -> tuple[Stream, Classifier, Strategy | None]:
    """The stream (on `device`), model and strategy of a config. Seed first: the model's
    initial weights come from the global RNG. No strategy with engine=avalanche: Avalanche
    builds its own (lab.avalanche.strategies)."""
    model_options = {k: v for k, v in config["model"].items() if k not in ("name", "init")}
    backbone = None
    if config["benchmark"]["dataset"] in TEXT:  # the model first: its tokenizer reads the text
        backbone = build_backbone(config["model"]["name"], None, **model_options)
    dataset = load_dataset(
        config["benchmark"]["dataset"], config["data"]["root"], **dataset_options(config, backbone)
    ).to(device)
    if backbone is None:
        backbone = build_backbone(config["model"]["name"], dataset.image_shape, **model_options)
    inputs = place_backbone(backbone, device)
    stream = make_stream(config, dataset, inputs, device)
    own_head = own_classifier(backbone, config)
    head_outputs = own_head.out_features if own_head is not None else None
    # pretrain=mlm's column is the masked-LM head's (lab.models.hf_mlm), not a source task
    source = (
        None
        if config["pretrain"]["name"] == "mlm"
        else make_source(config, dataset, inputs, device, head_outputs)
    )
    if source is not None:
        if source.train_x.shape[1:] != stream.tasks[0].train_x.shape[1:]:
            raise ConfigError(
                f"pretrain.dataset={config['pretrain']['dataset']} has images of shape "
                f"{tuple(source.train_x.shape[1:])}, the stream "
                f"{tuple(stream.tasks[0].train_x.shape[1:])}; valid: a dataset of the same shape"
            )
        stream.source = source
    model = attach_heads(
        backbone,
        stream.head_sizes,
        init=config["model"].get("init", "default"),
        source_classes=len(source.classes) if source is not None else 0,
    ).to(device)
    if own_head is not None and source is not None:  # the model's own classifier: the source's
        model.source_head.load_state_dict(own_head.state_dict())
    if config["engine"] != "lab":
        return stream, model, None
    strategy_params = {k: v for k, v in config["strategy"].items() if k != "name"}
    if strategy_params.get("replay_batch_size", 0) is None:  # rehearsal's default
        # train.batch_size memory samples at every step, the shorter last batch's too
        strategy_params["replay_batch_size"] = config["train"]["batch_size"]
    strategy = build_strategy(config["strategy"]["name"], **strategy_params)
    strategy.set_seed(config["seed"])
    return stream, model, strategy


def train_settings(config: dict[str, Any]) -> TrainSettings:
    train = config["train"]
    return TrainSettings(**{**train, "augment": Augment(**train["augment"])})


def pretrain(
    config: dict[str, Any], stream: Stream, model: Classifier, device: torch.device
) -> None:
    """The model as pretrain= makes it: trained on the source (lab.pretrain), loaded from a
    file, or left at its initial weights (or its own, pretrain=model)."""
    settings = config["pretrain"]
    if settings["name"] == "file":
        load_weights(model, settings["path"], need_source_head=stream.source is not None)
    elif settings["name"] == "source":
        source = stream.source
        optimizer = make_optimizer(model.parameters(), OptimizerSettings(**settings["optimizer"]))
        # its own batch order, and the global RNG (dropout) given back as it was: the stream
        # then trains as it does from these weights loaded from a file (pretrain=model)
        order = torch.Generator().manual_seed(config["seed"])
        augments = torch.Generator(device).manual_seed(config["seed"])
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            losses = train_task(
                model,
                Strategy(),
                source,
                [source],
                optimizer,
                TrainSettings(
                    epochs=settings["epochs"],
                    batch_size=settings["batch_size"],
                    augment=train_settings(config).augment,
                ),
                order,
                "task",
                augment_generator=augments,
            )
        log.info("pre-trained on %s: final loss %.3f", source.description, np.mean(losses[-10:]))


def _header(config: dict[str, Any]) -> dict[str, Any]:
    """What results.json says of the run besides its results (tasks: once they are built)."""
    return {
        "benchmark": config["benchmark"]["name"],
        "scenario": config["scenario"],
        "strategy": config["strategy"]["name"],
        "seed": config["seed"],
        "device": config["device"],  # until it is resolved (auto: cuda or cpu)
        "tasks": [],
        "config": config,
    }


# Keys that do not change what a run computes: a run may resume with other values.
RESUMABLE_CHANGES = ("progress", "logger", "keep_checkpoint")


def _read_results(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((run_dir / "results.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _check_same_config(saved: dict[str, Any], config: dict[str, Any], run_dir: Path, what: str):
    for key in sorted(set(saved) | set(config)):
        if key not in RESUMABLE_CHANGES and saved.get(key) != config.get(key):
            raise ConfigError(
                f"{run_dir} holds {what} of another configuration ({key}: "
                f"{saved.get(key)!r} there, {config.get(key)!r} now); resume with the same "
                "overrides, or choose another hydra.run.dir"
            )


@dataclass
class Setup:
    """What a run trains with, ready for its first task not yet done."""

    stream: Stream
    model: Classifier
    strategy: Strategy | None  # None with engine=avalanche
    device: torch.device
    settings: TrainSettings
    finetune: ft.Finetune
    generator: torch.Generator  # the order of the batches
    augment_generator: torch.Generator
    analysis: Analysis  # probes and CKA (config analysis), if any
    # a pretrain column scored by a function of the model (pretrain=mlm: lab.models.hf_mlm)
    source_score: tuple[str, Callable[[Classifier], float]] | None = None
    start_task: int = 0
    time_before: float = 0.0  # seconds the run had taken before it was cut (a resume)


def prepare(config: dict[str, Any], run_dir: Path, results: RunResults) -> Setup:
    """Build the run from its config, then restore it from the checkpoint of a cut run, or
    bring it to its start: pre-trained or loaded (pretrain), frozen or given adapters
    (finetune), the source anchored, and the accuracy before training (the init row)."""
    device = resolve_device(config["device"])
    checkpoint = load_checkpoint(run_dir, device)
    if checkpoint is not None:
        _check_same_config(checkpoint["results"]["config"], config, run_dir, "a checkpoint")
    seed_everything(config["seed"])
    stream, model, strategy = build(config, device)
    settings = train_settings(config)
    # Avalanche's engine trains and evaluates in fp32: it has no autocast of the lab's
    auto = settings.precision if config["engine"] == "lab" else "fp32"
    settings.precision = resolve_precision(auto, device)
    setup = Setup(
        stream,
        model,
        strategy,
        device,
        settings,
        ft.Finetune(**config["finetune"]),
        torch.Generator().manual_seed(config["seed"]),
        torch.Generator(device).manual_seed(config["seed"]),
        build_analysis(config["analysis"], config["seed"]),
    )
    setup.source_score = mlm_source(config, model, device, settings.precision)
    ft.check_model(model, setup.finetune)  # before a source is pre-trained for nothing
    if checkpoint is not None:
        _restore(setup, checkpoint, results)
        log.info("resuming %s after task %d", run_dir, setup.start_task - 1)
    else:
        _start(config, setup, results, run_dir)
    results.data["precision"] = settings.precision
    if settings.compile:  # after LoRA's adapters exist: they are part of what is compiled
        sample = stream.tasks[0].train_x[:2]
        results.data["compiled"] = compile_backbone(model.backbone, sample)
    return setup


def _start(config: dict[str, Any], setup: Setup, results: RunResults, run_dir: Path) -> None:
    stream, model, strategy = setup.stream, setup.model, setup.strategy
    results.restart(_header(config))
    results.data["device"] = str(setup.device)
    results.data["device_name"] = device_name(setup.device)
    results.data["threads"] = torch.get_num_threads()  # a parallel sweep's share of the cores
    split = config["eval"].get("split", "test")
    results.data["eval_split"] = split  # what the matrix is measured on: test | validation
    results.data["validation_fraction"] = config["data"].get("validation_fraction", 0.0)
    results.data["tasks"] = [
        {
            "id": t.id,
            "classes": t.classes,
            "description": t.description,
            "train_samples": len(t.train_y),
            f"{split}_samples": len(t.test_y),  # the samples the matrix is measured on
        }
        for t in stream.tasks
    ]
    if stream.tuning_tasks:  # benchmark.tuning_tasks: which tasks of the stream were tuned on
        results.data["tuning"] = {"tasks": stream.tuning_tasks, "part": stream.part}
    started = time.perf_counter()
    pretrain(config, stream, model, setup.device)
    if config["pretrain"]["name"] == "source":
        results.data["timing"]["pretrain_s"] = time.perf_counter() - started
        # before the regime's adapters: a plain model's weights, for pretrain=file
        torch.save(model.state_dict(), run_dir / "pretrained.pt")
        timm_weights = getattr(model.backbone, "timm_state_dict", None)
        if timm_weights is not None:  # and in timm's layout, the source head its classifier
            from safetensors.torch import save_file

            save_file(timm_weights(model.source_head), run_dir / "pretrained.safetensors")
    if strategy is not None:  # the method's own modules (lab.strategies.base.attach)
        strategy.attach(model, stream)
    ft.apply(model, setup.finetune)
    results.data["trainable_parameters"] = ft.count_trainable(model)
    if strategy is not None and stream.source is not None:
        # the source is a task learned before the stream (EWC's Fisher, L2's anchor)
        strategy.after_task(model, stream.source, [stream.source])
    started = time.perf_counter()
    sources = [stream.source] if stream.source is not None else []
    accuracies = evaluate(
        model, stream.tasks + sources, setup.settings.eval_batch_size, setup.settings.precision
    )
    if stream.source is not None:
        results.set_source(stream.source.description, accuracies[-1])
    if setup.source_score is not None:
        description, score = setup.source_score
        results.set_source(description, score(model))
    if stream.scenario == "class":  # class-IL scored task-IL by masking, too
        masked = evaluate_task_masked(
            model, stream.tasks, setup.settings.eval_batch_size, setup.settings.precision
        )
        results.set_task_masked_init(masked)
    results.set_init_acc(accuracies[: len(stream.tasks)], time.perf_counter() - started)
    if setup.analysis.active:
        started = time.perf_counter()
        row = setup.analysis.start(model, stream)
        if row.probe is not None:
            results.set_probe_init(row.probe, row.probe_source)
        seconds = time.perf_counter() - started
        results.data["timing"].update(analysis_s=seconds, analysis_start_s=seconds)


def _restore(setup: Setup, checkpoint: dict[str, Any], results: RunResults) -> None:
    # the method's and LoRA's modules must exist to take their weights
    setup.strategy.attach(setup.model, setup.stream)
    ft.apply(setup.model, setup.finetune)
    setup.model.load_state_dict(checkpoint["model"])
    setup.strategy.load_state_dict(checkpoint["strategy"])
    setup.generator.set_state(checkpoint["generator"].cpu())
    setup.augment_generator.set_state(checkpoint["augment_generator"].cpu())
    if setup.analysis.active:
        setup.analysis.load_state_dict(checkpoint["analysis"], setup.stream)
    set_rng_states(checkpoint["rng"])
    results.data = {**checkpoint["results"], "status": "running"}
    results.data.setdefault("diverged", [])  # a checkpoint written before the field existed
    setup.start_task = len(results.data["acc_matrix"])
    setup.time_before = results.data["timing"]["total_s"]


class Recorder:
    """What follows every task: its row in results.json, the checkpoint, acc_matrix.csv and
    the W&B mirror; so that a run cut at any moment keeps every task it finished. (The
    heatmaps are drawn once, when the run ends: draw_heatmaps.)"""

    def __init__(
        self,
        run_dir: Path,
        setup: Setup,
        results: RunResults,
        wandb_run: WandbRun | None,
        started: float,
    ):
        self.run_dir, self.setup = run_dir, setup
        self.results, self.wandb_run, self.started = results, wandb_run, started

    def elapsed(self) -> float:
        return self.setup.time_before + time.perf_counter() - self.started

    def __call__(self, task: TaskResult) -> None:
        run_dir, setup, results = self.run_dir, self.setup, self.results
        if setup.source_score is not None:  # pretrain=mlm: the masked-LM head's column
            accuracy = setup.source_score[1](setup.model)
            task = dataclasses.replace(task, source_accuracy=accuracy)
        results.data["timing"]["total_s"] = self.elapsed()
        if self.wandb_run is not None and self.wandb_run.where is not None:
            results.data["wandb"] = self.wandb_run.where  # lab-report finds a sweep's group by it
        with held():  # a stop signal waits: the row and the checkpoint are saved together
            if setup.analysis.active:
                started = time.perf_counter()
                row = setup.analysis.after_task(setup.model)
                seconds = time.perf_counter() - started
                results.add_analysis(row.probe, row.probe_source, row.cka, seconds)
            memory = getattr(setup.strategy, "memory", None)
            if memory is not None:  # rehearsal: what its memory holds after this task
                results.data["memory"] = memory.describe()
            results.add_row(
                task.accuracies,
                task.losses,
                task.train_s,
                task.eval_s,
                task.source_accuracy,
                task.task_masked,
            )
            throughput(setup.stream, results.data)  # text: tokens/s
            if (
                setup.strategy is not None
            ):  # Avalanche's strategies are not checkpointed: it restarts
                save_checkpoint(
                    run_dir,
                    {
                        "model": setup.model.state_dict(),
                        "strategy": setup.strategy.state_dict(),
                        "generator": setup.generator.get_state(),
                        "augment_generator": setup.augment_generator.get_state(),
                        "analysis": setup.analysis.state_dict(),
                        "results": results.data,
                    },
                )
            write_acc_matrix_csv(
                run_dir / "acc_matrix.csv",
                with_source_column(results.data)[0],
                with_source="pretrain" in results.data,
            )
        analysed = {}
        if results.data.get("probe_matrix"):
            analysed.update(
                probe=results.data["probe_matrix"][-1],
                probe_metrics=results.data["probe_metrics"],
                probe_source=(results.data.get("pretrain") or {}).get("probe_acc", [None])[-1],
            )
        if results.data.get("cka"):
            analysed["cka"] = results.data["cka"][-1]
        if self.wandb_run is not None:
            self.wandb_run.log_task(
                task.index,
                task.accuracies,
                results.data["metrics"],
                task.losses,
                results.data.get("pretrain"),
                analysed,
                None
                if task.task_masked is None
                else (task.task_masked, results.data.get("metrics_task_masked", {})),
            )
        if task.index in results.data["diverged"]:
            log.warning(
                "the training loss diverged (non-finite) in task %d: lower the strategy's "
                "strength or optimizer.lr; lab-report keeps this run out of its means",
                task.index,
            )
        log.info(
            "after task %d/%d: %s",
            task.index + 1,
            len(setup.stream.tasks),
            " ".join(f"{100 * a:.1f}" for a in task.accuracies),
        )


def train(config: dict[str, Any], setup: Setup, record: Recorder, progress: bool) -> None:
    """The stream's remaining tasks, through the configured engine."""
    if config["engine"] == "avalanche":
        from lab.avalanche.engine import train_stream as train_with_avalanche  # slow import

        train_with_avalanche(setup.model, setup.stream, config, setup.device, on_task_end=record)
        return
    train_stream(
        setup.model,
        setup.stream,
        setup.strategy,
        OptimizerSettings(**config["optimizer"]),
        setup.settings,
        generator=setup.generator,
        start_task=setup.start_task,
        on_task_end=record,
        progress=progress,
        source=setup.stream.source,
        finetune=setup.finetune,
        augment_generator=setup.augment_generator,
    )


def after_stream(setup: Setup) -> dict[str, Any]:
    """The strategy's after_stream (e.g. WiSE-FT's curve), its evaluations at the run's
    precision and batch size."""
    settings = setup.settings

    def score(tasks: list) -> list[float]:
        return evaluate(setup.model, tasks, settings.eval_batch_size, settings.precision)

    return setup.strategy.after_stream(setup.model, setup.stream.tasks, setup.stream.source, score)


def describe(error: BaseException) -> str:
    """An error as results.json records it: a user's mistake by its message alone."""
    if isinstance(error, (LabError, Stopped)):
        return str(error)
    return f"{type(error).__name__}: {error}"


def run_experiment(
    config: dict[str, Any],
    run_dir: str | Path,
    progress: bool = False,
    run_name: str | None = None,
    group: str | None = None,
) -> dict[str, Any]:
    """Train the configured model on the configured stream; returns results.json's content.

    Prepare (build, resume or pre-train), train task by task, record after every task:
    results.json, acc_matrix.csv and the checkpoint are (re)written in `run_dir` after
    every task, so an interrupted run keeps every task it completed; a run that fails
    says so in results.json ("failed", with the error). acc_matrix.png is drawn when the
    run ends, complete or not. With `config["logger"]["name"] == "wandb"` the run is
    mirrored to W&B under `run_name` and `group` (lab-run derives them from the overrides
    and the sweep).
    """
    started = time.perf_counter()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    previous = _read_results(run_dir)
    if previous is not None and previous.get("status") == "complete":
        _check_same_config(previous.get("config", {}), config, run_dir, "a complete run")
        log.info("%s holds a complete run of this config: nothing to do", run_dir)
        return previous
    # until the run restarts or resumes, results.json keeps what an earlier try of it holds
    kept = previous if previous is not None and previous.get("config") == config else None
    results = RunResults(run_dir, _header(config), kept)
    setup, wandb_run = None, None
    try:
        if config["logger"]["name"] == "wandb":  # it starts while the run prepares
            wandb_run = WandbRun(config["logger"], config, run_dir, run_name, group)
        setup = prepare(config, run_dir, results)
        record = Recorder(run_dir, setup, results, wandb_run, started)
        train(config, setup, record, progress)
        if setup.strategy is not None:  # what the method measures once the stream is learnt
            results.data.update(after_stream(setup))
    except BaseException as error:
        before = setup.time_before if setup is not None else 0.0
        results.finish("failed", before + time.perf_counter() - started, describe(error))
        raise
    else:
        results.finish("complete", record.elapsed())
        if not config["keep_checkpoint"]:
            (run_dir / CHECKPOINT).unlink(missing_ok=True)
        log.info("%s\nrun dir: %s", format_summary(results.data), run_dir)
    finally:
        draw_heatmaps(run_dir, results.data)
        if wandb_run is not None:
            wandb_run.finish(results.data, run_dir)
    return results.data
