"""engine=avalanche: the documented mappings onto Avalanche's strategies, exactly, and parity
of whole runs with the lab engine."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from avalanche.benchmarks.utils import _make_taskaware_tensor_classification_dataset
from avalanche.training.plugins import AGEMPlugin, LwFPlugin, ReplayPlugin
from avalanche.training.storage_policy import ClassBalancedBuffer, ReservoirSamplingBuffer
from avalanche.training.utils import copy_params_dict
from conftest import CLI, FAST, compose_config
from heatmap_pixels import assert_png_shows

from lab.avalanche.engine import TaskAware
from lab.avalanche.strategies import (
    EmpiricalFisher,
    ExactSI,
    PerSampleMAS,
    UnitImportance,
    make_strategy,
)
from lab.config import validate
from lab.errors import ConfigError
from lab.experiment import build, run_experiment, seed_everything
from lab.strategies import EWC, L2, MAS, SI, LwF
from lab.strategies.base import Batch, penalised_parameters
from lab.strategies.ewc import fisher_diagonal

CPU = torch.device("cpu")


def setup(config):
    seed_everything(config["seed"])
    stream, model, _ = build(config, CPU)
    return stream, model


def plugin(strategy, kind):
    return next(p for p in strategy.plugins if isinstance(p, kind))


def perturb(model, scale=0.05):
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn_like(p))


def avalanche_penalty(ewc_plugin, module, experience: int = 1) -> float:
    """The loss term Avalanche's EWC plugin adds before the backward of `experience`."""
    fake = SimpleNamespace(
        clock=SimpleNamespace(train_exp_counter=experience), model=module, device=CPU, loss=0.0
    )
    ewc_plugin.before_backward(fake)
    return fake.loss.item()


@pytest.mark.parametrize("mode", ["separate", "online"])
def test_ewc_mapping_importance_is_our_empirical_fisher_and_lambda_halves(fast_config, mode):
    """Two experiences, so that online mode's running importance, gamma -> decay_factor,
    and separate mode's sum over both anchors are exercised."""
    config = fast_config(
        "engine=avalanche",
        "strategy=ewc",
        "strategy.lambda=300",
        f"strategy.mode={mode}",
        "strategy.gamma=0.5",
    )
    stream, model = setup(config)
    perturb(model, 0.2)  # any weights: the identity holds everywhere, not only at a minimum
    ewc = plugin(make_strategy(config, model, set(), 5, CPU, []), EmpiricalFisher)
    assert ewc.ewc_lambda == 150.0 and ewc.mode == mode
    assert mode == "separate" or ewc.decay_factor == 0.5
    ours = EWC(lambda_=300, mode=mode, gamma=0.5)
    names = [n for n, _ in model.named_parameters()]
    for t, task in enumerate(stream.tasks[:2]):
        dataset = _make_taskaware_tensor_classification_dataset(
            task.train_x[:], task.train_y, task_labels=0
        )
        importances = ewc.compute_importances(
            model,
            torch.nn.CrossEntropyLoss(),
            torch.optim.SGD(model.parameters(), 0.1),
            dataset,
            CPU,
            32,
        )
        fisher = fisher_diagonal(model, task.train_x, task.train_y, 0, names)
        for name in names:
            torch.testing.assert_close(importances[name].data, fisher[name], rtol=1e-4, atol=1e-9)
        ours.after_task(model, task, stream.tasks[: t + 1])
        ewc.update_importances(importances, t)
        ewc.saved_params[t] = copy_params_dict(model)
        perturb(model)  # the next experience moves the weights
    assert ours.tasks == 2 and bool(ours.sums) == (mode == "separate")
    expected = ours.lambda_ / 2 * ours.penalty(model).item()
    assert avalanche_penalty(ewc, model, experience=2) == pytest.approx(expected, rel=1e-5)


def test_l2_mapping_is_unit_importance_on_the_backbone_in_task_il(fast_config):
    config = fast_config("engine=avalanche", "strategy=l2", "strategy.lambda=4", "scenario=task")
    stream, model = setup(config)
    module = TaskAware(model)
    anchored = {"classifier." + n for n in penalised_parameters(model)}
    l2 = plugin(make_strategy(config, module, anchored, 5, CPU, []), UnitImportance)
    assert l2.ewc_lambda == 2.0
    l2.update_importances(l2.compute_importances(module, None, None, None, CPU, 32), 0)
    l2.saved_params[0] = copy_params_dict(module)
    ours = L2(lambda_=4)
    ours.after_task(model, stream.tasks[0], stream.tasks[:1])
    perturb(model)  # the heads move too: neither anchors them in task-IL
    expected = 2.0 * ours.penalty(model).item()
    assert avalanche_penalty(l2, module) == pytest.approx(expected, rel=1e-5)


def test_si_mapping_is_avalanches_plugin_with_real_copies_twice_lambda_and_no_clip(fast_config):
    """The same three SGD steps seen by our SI and by engine=avalanche's plugin (its hooks
    called where Avalanche's loop calls them): equal importances, and equal penalties on
    moved weights, in class-IL."""
    config = fast_config("engine=avalanche", "strategy=si", "strategy.lambda=0.7")
    stream, model = setup(config)
    anchored = set(penalised_parameters(model))
    si = plugin(make_strategy(config, model, anchored, 5, CPU, []), ExactSI)
    assert si.si_lambda == [1.4] and si.eps == 1e-3
    ours, task = SI(lambda_=0.7), stream.tasks[0]
    fake = SimpleNamespace(model=model, clock=SimpleNamespace(train_exp_counter=0), device=CPU)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    ours.before_task(model, task, [task])
    si.before_training_exp(fake)
    for step in range(3):
        batch = slice(64 * step, 64 * step + 64)
        si.before_training_iteration(fake)
        optimizer.zero_grad()
        F.cross_entropy(model(task.train_x[batch]), task.train_y[batch]).backward()
        ours.after_backward(model)
        optimizer.step()
        si.after_training_iteration(fake)
    ours.after_task(model, task, [task])
    si.after_training_exp(fake)
    for name, importance in ours.importance.items():
        avalanche = si.ewc_data[1][name].data.view_as(importance)
        torch.testing.assert_close(avalanche, importance, rtol=1e-4, atol=1e-7)
    assert max(float(v.max()) for v in ours.importance.values()) > 0.01  # not clipped at 1e-3
    perturb(model)
    fake.clock.train_exp_counter, fake.loss = 1, 0.0
    si.before_backward(fake)
    expected = ours.loss(model, None, None, None, torch.tensor(0.0)).item()
    assert fake.loss.item() == pytest.approx(expected, rel=1e-5)


def test_mas_mapping_is_avalanches_importance_one_sample_at_a_time(fast_config):
    """Two experiences: engine=avalanche's MAS importance equals ours (the paper's mean
    absolute per-sample gradient; running average alpha), and so does its penalty."""
    config = fast_config(
        "engine=avalanche", "strategy=mas", "strategy.lambda=3", "strategy.alpha=0.4"
    )
    stream, model = setup(config)
    mas = plugin(make_strategy(config, model, set(), 5, CPU, []), PerSampleMAS)
    assert mas._lambda == 3 and mas.alpha == 0.4
    ours = MAS(lambda_=3, alpha=0.4)
    for t, task in enumerate(stream.tasks[:2]):
        dataset = _make_taskaware_tensor_classification_dataset(
            task.train_x[:60], task.train_y[:60], task_labels=0
        )
        fake = SimpleNamespace(
            model=model,
            experience=SimpleNamespace(dataset=dataset),
            train_mb_size=32,
            device=CPU,
            optimizer=torch.optim.SGD(model.parameters(), 0.1),
            clock=SimpleNamespace(train_exp_counter=t),
        )
        mas.after_training_exp(fake)
        ours.after_task(model, dataclasses.replace(task, train_x=task.train_x[:60]), [])
        perturb(model)
    for name, importance in ours.importance.items():
        torch.testing.assert_close(mas.importance[name].data, importance, rtol=1e-4, atol=1e-9)
    fake.clock.train_exp_counter, fake.loss = 2, torch.tensor(1.0)  # it refuses a loss of 0
    mas.before_backward(fake)
    expected = ours.loss(model, None, None, None, torch.tensor(1.0)).item()
    assert fake.loss.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("scenario", ["class", "task"])
def test_lwf_mapping_alpha_times_t_squared_over_old_heads(fast_config, scenario):
    config = fast_config(
        "engine=avalanche",
        "strategy=lwf",
        "strategy.alpha=0.7",
        "strategy.temperature=3",
        f"scenario={scenario}",
    )
    stream, model = setup(config)
    tasks = stream.tasks
    multi_head = scenario == "task"
    module = TaskAware(model) if multi_head else model
    lwf = plugin(make_strategy(config, module, set(), 5, CPU, []), LwFPlugin).lwf
    ours = LwF(alpha=0.7, temperature=3.0)
    ours.before_task(model, tasks[2], tasks[:3])  # training task 2: two old tasks
    lwf.expcount = 2
    lwf.prev_model = TaskAware(ours.teacher) if multi_head else ours.teacher
    if multi_head:
        lwf.prev_model.known_train_tasks_labels = {0, 1}
        module.known_train_tasks_labels = {0, 1, 2}
        lwf.prev_classes_by_task = {0: {0, 1}, 1: {0, 1}}
    else:
        lwf.prev_classes_by_task = {0: {c for t in tasks[:2] for c in t.outputs}}
    perturb(model)
    batch = Batch.of(tasks[2]).select(torch.arange(16))
    features = model.backbone(batch.x)
    logits = model.classify(features, 2 if multi_head else None)
    expected = 0.7 * ours.distillation(model, batch, features, logits).item()
    assert lwf(batch.x, logits, module).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(
    "policy, buffer",
    [("reservoir", ReservoirSamplingBuffer), ("class_balanced", ClassBalancedBuffer)],
)
def test_replay_mapping_policy_is_the_buffer_class(fast_config, policy, buffer):
    """strategy.policy picks Avalanche's storage policy of the same kind, of mem_size, and
    replay_batch_size is its batch_size_mem (unequal values: a swap would show)."""
    config = fast_config(
        "engine=avalanche",
        "strategy=replay",
        f"strategy.policy={policy}",
        "strategy.mem_size=150",
        "strategy.replay_batch_size=40",
    )
    _, model = setup(config)
    replay = plugin(make_strategy(config, model, set(), 5, CPU, []), ReplayPlugin)
    assert type(replay.storage_policy) is buffer and replay.storage_policy.max_size == 150
    assert replay.mem_size == 150 and replay.batch_size_mem == 40


def test_agem_and_der_mappings_pass_each_setting_to_its_own_argument(fast_config):
    """AGEMPlugin(patterns_per_experience, sample_size) and DER(mem_size, batch_size_mem,
    alpha, beta), with every value distinct (the defaults 256/256 would hide a swap)."""
    config = fast_config(
        "engine=avalanche",
        "strategy=agem",
        "strategy.patterns_per_exp=60",
        "strategy.sample_size=25",
    )
    _, model = setup(config)
    agem = plugin(make_strategy(config, model, set(), 5, CPU, []), AGEMPlugin)
    assert agem.patterns_per_experience == 60 and agem.sample_size == 25
    config = fast_config(
        "engine=avalanche",
        "strategy=der",
        "strategy.mem_size=120",
        "strategy.replay_batch_size=24",
        "strategy.alpha=0.3",
        "strategy.beta=0.9",
    )
    der = make_strategy(config, model, set(), 5, CPU, [])
    assert (der.alpha, der.beta) == (0.3, 0.9)
    assert der.mem_size == 120 and der.batch_size_mem == 24


def test_avalanche_engine_refuses_what_it_cannot_run(fast_config):
    with pytest.raises(ConfigError, match=r"^strategy=gem needs engine=avalanche \(the lab engine"):
        fast_config("strategy=gem")
    with pytest.raises(ConfigError, match="strategy.fisher='sampled' has no Avalanche equivalent"):
        fast_config("engine=avalanche", "strategy=ewc", "strategy.fisher=sampled")
    with pytest.raises(ConfigError, match="train.iterations=10 has no Avalanche equivalent"):
        fast_config("engine=avalanche", "train.iterations=10")
    for strategy, key in (
        ("replay", "mem_size"),
        ("der", "mem_size"),
        ("agem", "patterns_per_exp"),
    ):
        with pytest.raises(ConfigError, match=rf"strategy.{key}=0 has no Avalanche equivalent"):
            fast_config("engine=avalanche", f"strategy={strategy}", f"strategy.{key}=0")
    with pytest.raises(ConfigError, match="strategy=der with engine=avalanche needs one shared"):
        fast_config("engine=avalanche", "strategy=der", "scenario=task")
    with pytest.raises(
        ConfigError, match=r"strategy.mem_size=-1 is invalid; valid: an integer >= 0"
    ):
        fast_config("engine=avalanche", "strategy=replay", "strategy.mem_size=-1")


@pytest.mark.parametrize("strategy", ["si", "mas", "replay", "der", "gem", "agem"])
def test_strategies_through_avalanche_write_a_complete_run_dir(fast_config, tmp_path, strategy):
    results = run_experiment(fast_config("engine=avalanche", f"strategy={strategy}"), tmp_path)
    assert results["status"] == "complete"
    assert np.array(results["acc_matrix"]).shape == (5, 5)
    assert len(results["train_loss"]) == 5 and np.isfinite(results["train_loss"]).all()
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["config"]["engine"] == "avalanche" and saved["acc_matrix"] == results["acc_matrix"]
    assert (tmp_path / "acc_matrix.csv").read_text().count("\n") == 6  # header + 5 rows
    assert_png_shows(tmp_path / "acc_matrix.png", saved)  # the matrix Avalanche trained to


def test_replay_through_avalanche_remembers_in_class_il(fast_config, tmp_path):
    naive = run_experiment(fast_config("engine=avalanche"), tmp_path / "naive")
    replay = run_experiment(fast_config("engine=avalanche", "strategy=replay"), tmp_path / "replay")
    # naive keeps only the last task (final ACC ~ 1/5); a 200-sample buffer keeps the others
    assert naive["metrics"]["acc"] < 0.25
    assert replay["metrics"]["acc"] > naive["metrics"]["acc"] + 0.3


# Parity of whole runs. The engines start from the same weights and see the same tensors,
# but draw their batches differently (our generator, Avalanche's DataLoader), which is a
# change of the shuffling seed. So a run of one engine is as close to the other's as two
# seeds of one engine are: we compare the means over SEEDS seeds and allow 3 standard
# errors of the difference of two means, from the spread measured here, plus one test
# sample (the resolution of an accuracy). The regularisers in domain-IL, where they differ
# from each other; rehearsal in class-IL, where it is the only thing that works, with the
# class-balanced memory that Avalanche's DER and ours share.
SEEDS = 4
REGIME = ["optimizer.lr=0.01", "train.batch_size=128"]
PARITY = {  # method: its overrides, scenario included
    "ewc": ["strategy=ewc", "strategy.lambda=10000", "scenario=domain"],
    "lwf": ["strategy=lwf", "scenario=domain"],
    "si": ["strategy=si", "strategy.lambda=3", "scenario=domain"],
    "mas": ["strategy=mas", "strategy.lambda=1", "scenario=domain"],
    # 100 divides the memory: Avalanche walks its memory in epochs (200 in batches of 128:
    # 128, then 72), ours draws replay_batch_size samples at every step
    "replay": [
        "strategy=replay",
        "strategy.policy=class_balanced",
        "strategy.replay_batch_size=100",
        "scenario=class",
    ],
    "der": ["strategy=der", "strategy.policy=class_balanced", "scenario=class"],
    "agem": ["strategy=agem", "scenario=domain"],
}


@functools.cache
def last_rows_and_acc(engine: str, overrides: tuple[str, ...]) -> np.ndarray:
    """Each seed's final ACC and last row; cached: the naive baselines of the regularisers
    (one config per scenario) are the same runs for every method a worker tests."""
    runs = []
    with tempfile.TemporaryDirectory() as scratch:
        for seed in range(SEEDS):
            config = validate(
                compose_config([*FAST, f"engine={engine}", f"seed={seed}", *REGIME, *overrides])
            )
            runs.append(run_experiment(config, Path(scratch) / f"{engine}{seed}"))
    return np.array([[r["metrics"]["acc"], *r["acc_matrix"][-1]] for r in runs])


def tolerance(a: np.ndarray, b: np.ndarray, test_sizes: np.ndarray) -> np.ndarray:
    standard_error = np.sqrt((a.var(0, ddof=1) + b.var(0, ddof=1)) / SEEDS)
    return 3 * standard_error + 1 / test_sizes


@pytest.mark.parametrize("method", ["naive_domain", "naive_class", *PARITY])
def test_lab_and_avalanche_agree_on_final_acc_and_every_column(fast_config, method):
    """One test per method (pytest-xdist spreads them): SEEDS runs on each engine."""
    overrides = PARITY.get(method) or ["strategy=naive", f"scenario={method.split('_')[1]}"]
    lab = last_rows_and_acc("lab", tuple(overrides))
    avalanche = last_rows_and_acc("avalanche", tuple(overrides))
    stream, _ = setup(fast_config(*REGIME))
    sizes = np.array(
        [min(len(t.test_y) for t in stream.tasks), *(len(t.test_y) for t in stream.tasks)]
    )
    gap, allowed = np.abs(lab.mean(0) - avalanche.mean(0)), tolerance(lab, avalanche, sizes)
    assert (gap <= allowed).all(), (method, gap, allowed)
    if method in PARITY:
        # and the tolerance could not let them pass by being loose: with it, the method
        # differs from naive fine-tuning in its scenario in some column
        scenario = next(o for o in overrides if o.startswith("scenario="))
        naive = last_rows_and_acc("lab", ("strategy=naive", scenario))
        assert (np.abs(lab.mean(0) - naive.mean(0)) > tolerance(lab, naive, sizes)).any()


def test_lab_run_engine_avalanche_from_the_command_line(tmp_path):
    done = subprocess.run(
        ["lab-run", *CLI, "train.epochs=1", "engine=avalanche", "strategy=ewc"]
        + [f"hydra.run.dir={tmp_path}"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["status"] == "complete" and results["config"]["engine"] == "avalanche"
    assert len(results["acc_matrix"]) == 5
    assert not (tmp_path / "checkpoint.pt").exists()

    refused = subprocess.run(
        ["lab-run", *CLI, "strategy=gem", f"hydra.run.dir={tmp_path / 'gem'}"],
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 2
    assert (
        refused.stderr.strip()
        .splitlines()[-1]
        .startswith("lab-run: error: strategy=gem needs engine=avalanche")
    )


def test_a_new_machine_gets_avalanches_config_file_whole(tmp_path):
    """Avalanche writes ~/.avalanche/config.json in place at its first import, so two jobs
    starting at once on a new machine raced (one read the other's empty file: a
    JSONDecodeError). lab.avalanche writes it atomically first, with Avalanche's content.

    Avalanche's config module is run from its file, as its first import runs it: importing
    the package would add ten seconds of everything else it imports, and nothing here."""
    home = tmp_path / "home"
    home.mkdir()
    config = home / ".avalanche" / "config.json"
    code = (
        "import importlib.util, pathlib, sys, lab.avalanche\n"
        "assert 'avalanche' not in sys.modules\n"
        f"print(pathlib.Path({str(config)!r}).read_text())\n"  # there before Avalanche runs
        "package = importlib.util.find_spec('avalanche').submodule_search_locations[0]\n"
        "path = pathlib.Path(package, 'benchmarks', 'datasets', 'dataset_utils.py')\n"
        "spec = importlib.util.spec_from_file_location('dataset_utils', path)\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "print(module.AVALANCHE_CONFIG['dataset_location'])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "HOME": str(home)},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    written, read = done.stdout.rsplit("\n", 2)[:2]
    data = str(home / ".avalanche" / "data")
    assert json.loads(written) == {"dataset_location": data} and read == data
    assert list(config.parent.iterdir()) == [config]  # no temporary file left
