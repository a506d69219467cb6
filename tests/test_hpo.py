"""Tuning the continual-learning way (issue 33): validation slices that are never trained
on, validation runs that never read a test set, the first tasks set apart for tuning, the
lab's Optuna sweeper (complete, resumable, failed trials recorded as failed) and
lab-report --best's test command."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch
from conftest import compose_config
from hydra import compose, initialize_config_dir
from hydra.core.utils import JobReturn, JobStatus
from test_resume import start

import lab.engine
import lab.experiment
from lab import hpo
from lab.config import validate
from lab.data import build_stream, load_dataset
from lab.data.datasets import Dataset
from lab.errors import ConfigError, LabError
from lab.experiment import make_stream, run_experiment
from lab.report import write_report
from lab.report.cli import build_tables
from lab.report.cli import main as report_main
from lab.report.runs import find_run_dirs, load_runs
from lab.report.tables import latex_table, markdown_table
from lab.run import config_dir

# tiny: one epoch of split digits, W&B off
TINY = ["benchmark=split_digits", "train.epochs=1", "train.batch_size=32", "logger=none"]
# fewer steps still: the search runs 4 trials in two processes
SEARCH = [*TINY, "train.iterations=5"]


def tiny(*overrides: str) -> dict:
    return validate(compose_config([*TINY, *overrides]))


# ------------------------------------------------------------------ the validation slices


def _rows(images) -> set[int]:
    return set(images.rows.tolist())


def test_the_validation_slice_is_seeded_per_class_and_disjoint_from_training():
    dataset = load_dataset("digits", "data")
    kwargs = dict(stream="split", scenario="class", num_tasks=5, validation_fraction=0.2)
    held = build_stream(dataset, seed=0, evaluate_on="validation", **kwargs)
    tested = build_stream(dataset, seed=0, evaluate_on="test", **kwargs)
    other = build_stream(dataset, seed=1, evaluate_on="validation", **kwargs)
    for task, test_task, other_task in zip(held.tasks, tested.tasks, other.tasks, strict=True):
        train, validation = _rows(task.train_x), _rows(task.test_x)
        assert task.test_x.base is dataset.train_x  # the slice comes from the training set
        assert not train & validation
        everything = set(
            torch.isin(dataset.train_y, torch.tensor(task.classes)).nonzero()[:, 0].tolist()
        )
        assert train | validation == everything
        for c in task.classes:  # a fifth of every class, rounded
            n = int((dataset.train_y == c).sum())
            assert sum(int(dataset.train_y[r]) == c for r in validation) == round(0.2 * n)
        # the same seed trains on the same images whatever is evaluated; a test run
        # evaluates the test set
        assert _rows(test_task.train_x) == train and test_task.test_x.base is dataset.test_x
        assert _rows(other_task.test_x) != validation  # another seed, another slice


def test_no_validation_sample_is_ever_drawn_in_training(monkeypatch, tmp_path):
    """Every row of the training set that training reads (batches, the rehearsal memory,
    EWC's Fisher) is outside the validation slice; the evaluation reads the slice."""
    read = {"train": set(), "eval": set()}
    phase = {"now": "eval"}
    original = lab.data.images.Images.__getitem__
    train_task = lab.engine.train_task

    def spy(self, key):  # the dataset rows (sample ids) each read takes
        if self.rows is not None:
            read[phase["now"]].update(self.rows[key].flatten().tolist())
        return original(self, key)

    def training(*args, **kwargs):
        phase["now"] = "train"
        try:
            return train_task(*args, **kwargs)
        finally:
            phase["now"] = "eval"

    monkeypatch.setattr(lab.data.images.Images, "__getitem__", spy)
    monkeypatch.setattr(lab.engine, "train_task", training)
    # DER++: the batches and the memory's (drawn from the training data)
    config = tiny("strategy=der", "eval.split=validation", "data.validation_fraction=0.2")
    validation = set().union(*(_rows(t.test_x) for t in make_stream(config).tasks))
    run_experiment(config, tmp_path / "run")
    assert read["train"] and not read["train"] & validation
    assert validation <= read["eval"]


def _poisoned(name, root, **options):
    clean = load_dataset(name, root, **options)
    return Dataset(
        clean.name,
        clean.train_x,
        clean.train_y,
        torch.full_like(clean.test_x, float("nan")),
        clean.test_y[torch.randperm(len(clean.test_y), generator=torch.Generator().manual_seed(0))],
    )


def test_a_validation_run_reads_no_test_set(monkeypatch, tmp_path):
    config = tiny("eval.split=validation", "data.validation_fraction=0.2", "strategy=lwf")
    clean = run_experiment(config, tmp_path / "clean")
    monkeypatch.setattr(lab.experiment, "load_dataset", _poisoned)
    poisoned = run_experiment(config, tmp_path / "poisoned")
    assert poisoned["acc_matrix"] == clean["acc_matrix"]
    assert poisoned["init_acc"] == clean["init_acc"]
    assert poisoned["eval_split"] == "validation" and poisoned["validation_fraction"] == 0.2
    assert all("validation_samples" in t and "test_samples" not in t for t in poisoned["tasks"])
    # the poison bites where the test sets are read
    tested = run_experiment({**config, "eval": {**config["eval"], "split": "test"}}, tmp_path / "t")
    assert tested["acc_matrix"] != clean["acc_matrix"]


def test_tuning_tasks_tune_on_the_first_k_and_report_on_the_rest(tmp_path):
    tuning = tiny(
        "eval.split=validation", "data.validation_fraction=0.2", "benchmark.tuning_tasks=2"
    )
    final = {**tuning, "eval": {**tuning["eval"], "split": "test"}}
    first, rest = make_stream(tuning), make_stream(final)
    assert [t.classes for t in first.tasks] == [[0, 1], [2, 3]]
    assert [t.classes for t in rest.tasks] == [[4, 5], [6, 7], [8, 9]]
    assert [t.id for t in rest.tasks] == [0, 1, 2] and rest.part == "final"
    results = run_experiment(final, tmp_path / "final")
    assert results["tuning"] == {"tasks": [0, 1], "part": "final"}
    assert len(results["acc_matrix"]) == 3 and results["eval_split"] == "test"


@pytest.mark.parametrize(
    "overrides, named",
    [
        (["eval.split=valid"], "eval.split='valid'"),
        (["eval.split=validation"], "data.validation_fraction=0.0"),
        (["data.validation_fraction=1.0"], "data.validation_fraction=1.0"),
        (["benchmark.tuning_tasks=5", "data.validation_fraction=0.1"], "benchmark.tuning_tasks=5"),
        (["benchmark.tuning_tasks=2"], "data.validation_fraction=0.0"),
        (["+hpo=ewc", "hpo.direction=up"], "hpo.direction='up'"),
        (["+hpo=ewc", "hpo.trials=0"], "hpo.trials=0"),
        (["+hpo=ewc", "hpo.params.optimizer.lr.low=0"], "hpo.params.optimizer.lr="),
    ],
)
def test_bad_split_and_search_settings_are_one_error_naming_the_value(overrides, named):
    with pytest.raises(ConfigError, match="valid") as error:
        validate(compose_config([*TINY, *overrides]))
    assert named in str(error.value) and "\n" not in str(error.value)


def test_a_failed_diverged_or_unscored_trial_has_no_objective(tmp_path):
    def write(name, **fields):
        (tmp_path / name).mkdir()
        results = {"status": "complete", "metrics": {"acc": 0.5, "forgetting": 0.2}, **fields}
        (tmp_path / name / "results.json").write_text(json.dumps(results))
        return hpo.objective(tmp_path / name, ["acc", "forgetting"])

    assert write("ok") == ([0.5, 0.2], None)
    assert write("failed", status="failed", error="boom")[0] is None
    assert "diverged" in write("diverged", diverged=[1])[1]
    assert write("nan", metrics={"acc": float("nan"), "forgetting": 0.1})[0] is None
    assert hpo.objective(tmp_path / "missing", ["acc"])[0] is None


# ------------------------------------------------------------------ the report


def _write_run(path: Path, split: str, acc: float) -> None:
    path.mkdir(parents=True)
    matrix = [[1.0, 0.0], [acc, 1.0]]
    results = {
        "status": "complete",
        "benchmark": "split_digits",
        "scenario": "class",
        "strategy": "naive",
        "seed": 0,
        "tasks": [{"id": 0, "description": "a"}, {"id": 1, "description": "b"}],
        "acc_matrix": matrix,
        "init_acc": [0.5, 0.5],
        "metrics": {"acc": (acc + 1) / 2, "forgetting": 1 - acc},
        "eval_split": split,
        "config": {
            "strategy": {"name": "naive"},
            "eval": {"split": split},
            "data": {"validation_fraction": 0.1},
        },
    }
    (path / "results.json").write_text(json.dumps(results))


def test_the_report_refuses_to_mix_splits_and_names_the_split(tmp_path):
    _write_run(tmp_path / "val" / "0", "validation", 0.5)
    _write_run(tmp_path / "test" / "0", "test", 0.4)
    with pytest.raises(LabError) as error:
        write_report([str(tmp_path)], tmp_path / "out")
    message = str(error.value)
    assert "\n" not in message and "validation" in message and "test" in message
    assert str(tmp_path / "val" / "0") in message and str(tmp_path / "test" / "0") in message
    report = write_report([str(tmp_path / "val")], tmp_path / "out")
    assert "validation slices (eval.split=validation: 10%" in report.markdown.read_text()
    (table,), _ = build_tables(load_runs(find_run_dirs([str(tmp_path / "test")])), None)
    assert "measured on the test sets (eval.split=test)" in markdown_table(table)
    assert "measured on the test sets" in latex_table(table)  # the caption


# ------------------------------------------------------------------ the sweeper, in-process


def _hydra_config(sweep_dir: Path, *overrides: str):
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(
            config_name="config",
            overrides=[*TINY, "+hpo=ewc", f"hydra.sweep.dir={sweep_dir}", *overrides],
            return_hydra_config=True,
        )


class FakeLauncher:
    """Writes each trial's results.json as a run would: acc peaks at lr=0.05, and a
    learning rate above 0.1 fails (the run's status says so)."""

    def __init__(self, sweep_dir: Path):
        self.sweep_dir, self.launched = sweep_dir, []

    def launch(self, overrides, initial_job_idx):
        returns = []
        for i, job in enumerate(overrides):
            params = dict(o.split("=", 1) for o in job if o.startswith(("strategy.", "optimizer.")))
            lr = float(params["optimizer.lr"])
            run_dir = self.sweep_dir / str(initial_job_idx + i)
            run_dir.mkdir(parents=True, exist_ok=True)
            status = "failed" if lr > 0.1 else "complete"
            acc = 1 - abs(lr - 0.05)
            (run_dir / "results.json").write_text(
                json.dumps({"status": status, "metrics": {"acc": acc}})
            )
            self.launched.append(initial_job_idx + i)
            returns.append(JobReturn(status=JobStatus.COMPLETED, _return_value=acc))
        return returns


def _sweeper(sweep_dir: Path, *overrides: str):
    from hydra_plugins.lab_hpo_sweeper.sweeper import LabHpoSweeper

    sweeper = LabHpoSweeper()
    sweeper.config = _hydra_config(sweep_dir, *overrides)
    sweeper.hydra_context = type("Context", (), {"config_loader": None})()
    sweeper.launcher = FakeLauncher(sweep_dir)
    sweeper.validate_batch_is_legal = lambda batch: None
    return sweeper


def test_the_sweeper_records_failed_trials_as_failed_and_resumes_a_cut_trial(tmp_path, capsys):
    sweep_dir = tmp_path / "search"
    arguments = [*TINY, "+hpo=ewc", "hpo.trials=6", "hpo.startup_trials=3"]
    sweeper = _sweeper(sweep_dir, "hpo.trials=6", "hpo.startup_trials=3")
    sweeper.sweep(arguments)
    study = optuna.load_study(study_name="hpo", storage=f"sqlite:///{sweep_dir / 'hpo.db'}")
    states = {t.number: t.state.name for t in study.trials}
    assert len(states) == 6 and set(states.values()) <= {"COMPLETE", "FAIL"}
    summary = json.loads((sweep_dir / "hpo.json").read_text())
    assert summary["status"] == "finished"
    for trial in summary["trials"]:  # failed in the run dir: failed in the study, no value
        failed = float(trial["params"]["optimizer.lr"]) > 0.1
        assert (trial["state"] == "FAIL") == failed and (trial["values"] is None) == failed
        assert trial["run_dir"] == str(trial["number"])
    complete = [t for t in summary["trials"] if t["state"] == "COMPLETE"]
    assert 0 < len(complete) < 6  # both kinds, with this seed
    best = max(complete, key=lambda t: t["values"][0])["number"]
    assert summary["best"] == [best] == [t.number for t in hpo.best(sweep_dir).best]
    # a search cut while a trial ran: that trial runs again (its own run dir), then the rest
    cut = study.ask()  # trial 6, its parameters drawn, then the search was cut
    cut.suggest_float("strategy.lambda", 1.0, 100000.0, log=True)
    cut.suggest_float("optimizer.lr", 0.001, 0.3, log=True)
    again = _sweeper(sweep_dir, "hpo.trials=8", "hpo.startup_trials=3")
    again.sweep([*arguments[:-2], "hpo.trials=8", "hpo.startup_trials=3"])
    assert again.launcher.launched == [6, 7]
    study = optuna.load_study(study_name="hpo", storage=f"sqlite:///{sweep_dir / 'hpo.db'}")
    assert [t.state.is_finished() for t in study.trials] == [True] * 8
    # a finished search says so, and runs nothing
    done = _sweeper(sweep_dir, "hpo.trials=8", "hpo.startup_trials=3")
    done.sweep([*arguments[:-2], "hpo.trials=8", "hpo.startup_trials=3"])
    assert done.launcher.launched == [] and "already finished: 8 trials" in capsys.readouterr().out


# ------------------------------------------------------------------ lab-run -m +hpo=ewc


def test_a_search_on_digits_completes_resumes_after_a_kill_and_best_reruns_its_config(
    tmp_path, capsys
):
    sweep_dir = tmp_path / "search"
    args = ["-m", "+hpo=ewc", *SEARCH, "hpo.trials=4", "hpo.startup_trials=2"]
    args += [f"hydra.sweep.dir={sweep_dir}"]
    cut = start(args, cwd=tmp_path)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and cut.poll() is None:  # kill it in trial 1 or later
        summary = hpo.read_summary(sweep_dir) or {"trials": []}
        if any(t["number"] >= 1 for t in summary["trials"]):
            os.killpg(cut.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    cut.wait()
    assert cut.returncode == -signal.SIGKILL
    assert (hpo.read_summary(sweep_dir) or {}).get("status") == "running"
    done = subprocess.run(["lab-run", *args], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "finished: 4 trials" in done.stdout + done.stderr
    summary = hpo.read_summary(sweep_dir)
    assert summary["status"] == "finished" and [t["number"] for t in summary["trials"]] == [
        0,
        1,
        2,
        3,
    ]
    study = optuna.load_study(study_name="hpo", storage=f"sqlite:///{sweep_dir / 'hpo.db'}")
    scores = {}
    for trial in summary["trials"]:  # a failed or diverged run is a failed trial, not a 0
        results = json.loads((sweep_dir / trial["run_dir"] / "results.json").read_text())
        assert results["eval_split"] == "validation"
        ok = results["status"] == "complete" and not results["diverged"]
        assert study.trials[trial["number"]].state.name == ("COMPLETE" if ok else "FAIL")
        if ok:
            scores[trial["number"]] = results["metrics"]["acc"]
            assert study.trials[trial["number"]].value == results["metrics"]["acc"]
    assert scores
    top = max(scores.values())
    best_number = min(n for n, v in scores.items() if v == top)
    assert study.best_trial.number == best_number == summary["best"][0]
    # lab-report --best names it, and its command reruns its config on the test sets
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_code:
        report_main([str(sweep_dir), "--best"])
    assert exit_code.value.code == 0
    printed = capsys.readouterr().out
    assert f"- trial {best_number} " in printed and "4 trials of 4 (finished)" in printed
    command = next(line for line in printed.splitlines() if "test: " in line)
    words = shlex.split(command.split("test: ", 1)[1])
    assert words[:2] == ["lab-run", "-m"] and "seed=0,1,2" in words and "eval.split=test" in words
    overrides = [w for w in words[2:] if not w.startswith(("hydra.", "seed="))] + ["seed=0"]
    rerun = validate(compose_config(overrides))
    trial = json.loads((sweep_dir / str(best_number) / "results.json").read_text())["config"]
    assert rerun == {**trial, "eval": {**trial["eval"], "split": "test"}}
    assert sorted(p.name for p in sweep_dir.iterdir() if p.is_dir()) == ["0", "1", "2", "3"]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-x", "-q"]))
