"""Resume after the last completed task: same matrix, bit for bit, as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import CLI, run_here

from lab.checkpoint import CHECKPOINT
from lab.errors import ConfigError
from lab.experiment import run_experiment
from lab.strategies import STRATEGIES
from lab.strategies.prompting import PROMPT_LEARNERS

# dropout draws from the global RNG: a resume that did not restore it would differ
COMMON = ["train.epochs=3", "model.dropout=0.2", "benchmark.shuffle_classes=true"]


def interrupt_before_task(monkeypatch, strategy: str, task_id: int) -> None:
    cls = STRATEGIES[strategy]
    original = cls.before_task

    def before_task(self, model, task, seen):
        if task.id == task_id:
            raise KeyboardInterrupt
        original(self, model, task, seen)

    monkeypatch.setattr(cls, "before_task", before_task)


# every strategy, and the other random streams a checkpoint must carry: the strategy's own
# generator (a sampled Fisher, a Fisher on a subset) and augmentation's
# (the prompt learners need a timm ViT and class-IL, not this MLP: tests/test_ptm_prompt.py
# resumes each of them bit for bit on test_vit; RanPAC's default projection, M = 10000,
# makes a 10000^2 Gram matrix and 17 solves of it per task, minutes on a CPU:
# tests/test_ptm_proto.py resumes it with a small M on test_vit)
NOT_ON_THIS_MLP = (*PROMPT_LEARNERS, "ranpac")
RESUMED = {
    name: [f"strategy={name}"] for name in sorted(STRATEGIES) if name not in NOT_ON_THIS_MLP
} | {
    "ewc-sampled-fisher": ["strategy=ewc", "strategy.fisher=sampled"],
    "ewc-fisher-samples": ["strategy=ewc", "strategy.fisher_samples=50"],
    "augmented": ["train.augment.crop_padding=1", "train.augment.noise_std=0.1"],
    "replay-class-balanced": ["strategy=replay", "strategy.policy=class_balanced"],
    "replay-task-il": ["strategy=replay", "scenario=task"],
    "der-class-balanced": ["strategy=der", "strategy.policy=class_balanced"],
    "der-task-il": ["strategy=der", "scenario=task"],
    "agem-task-il": ["strategy=agem", "scenario=task"],
    "si-task-il": ["strategy=si", "scenario=task"],
}


@pytest.mark.parametrize("case", list(RESUMED))
def test_interrupted_run_resumes_to_the_same_matrix(fast_config, tmp_path, monkeypatch, case):
    config = fast_config(*COMMON, *RESUMED[case])
    uninterrupted = run_experiment(config, tmp_path / "whole")
    assert not (tmp_path / "whole" / CHECKPOINT).exists()  # deleted once complete
    assert uninterrupted["diverged"] == []  # trained models are compared, not collapsed ones

    with monkeypatch.context() as patch:
        interrupt_before_task(patch, config["strategy"]["name"], task_id=2)
        with pytest.raises(KeyboardInterrupt):
            run_experiment(config, tmp_path / "cut")
    saved = json.loads((tmp_path / "cut" / "results.json").read_text())
    assert saved["status"] == "failed" and len(saved["acc_matrix"]) == 2
    assert (tmp_path / "cut" / CHECKPOINT).exists()

    resumed = run_experiment(config, tmp_path / "cut")
    assert resumed["status"] == "complete"
    assert resumed["acc_matrix"] == uninterrupted["acc_matrix"]
    assert resumed["acc_matrix"][:2] == saved["acc_matrix"]
    assert resumed["timing"]["tasks"][:2] == saved["timing"]["tasks"]  # the cut run's, kept
    assert len(resumed["timing"]["tasks"]) == 5


def test_complete_run_is_skipped_and_checkpoint_kept_on_request(fast_config, tmp_path):
    config = fast_config("train.epochs=1", "keep_checkpoint=true")
    first = run_experiment(config, tmp_path)
    assert (tmp_path / CHECKPOINT).exists()
    stamp = (tmp_path / "results.json").stat().st_mtime_ns
    assert run_experiment(config, tmp_path) == first
    assert (tmp_path / "results.json").stat().st_mtime_ns == stamp
    # a complete run of another config is never taken for this one
    with pytest.raises(ConfigError, match="holds a complete run of another configuration"):
        run_experiment(fast_config("train.epochs=1", "seed=5"), tmp_path)


def test_resuming_with_another_config_is_refused(fast_config, tmp_path, monkeypatch):
    with monkeypatch.context() as patch:
        interrupt_before_task(patch, "naive", task_id=1)
        with pytest.raises(KeyboardInterrupt):
            run_experiment(fast_config("train.epochs=1"), tmp_path)
    with pytest.raises(ConfigError, match="holds a checkpoint of another configuration"):
        run_experiment(fast_config("train.epochs=1", "optimizer.lr=0.5"), tmp_path)
    with pytest.raises(ConfigError, match=r"\(optimizer: \{'name': 'sgd', 'lr': 0.01"):
        run_experiment(fast_config("train.epochs=1", "optimizer.lr=0.5"), tmp_path)
    # what does not change the computation may change
    resumed = run_experiment(fast_config("train.epochs=1", "progress=false"), tmp_path)
    assert resumed["status"] == "complete"


SLOW = [*CLI, *COMMON, "strategy=ewc", "train.epochs=15"]  # ~0.5 s per task: time to kill


def rows(path: Path) -> int:
    try:
        return len(json.loads(path.read_text())["acc_matrix"])
    except (OSError, json.JSONDecodeError, KeyError):
        return 0


def wait_for_rows(process: subprocess.Popen, path: Path, at_least: int) -> None:
    """Until results.json at `path` holds `at_least` rows, while `process` runs."""
    deadline = time.time() + 300
    while rows(path) < at_least:
        assert process.poll() is None, "finished before it could be stopped"
        assert time.time() < deadline
        time.sleep(0.02)


def kill_when(process: subprocess.Popen, path: Path, at_least: int) -> None:
    wait_for_rows(process, path, at_least)
    os.killpg(process.pid, signal.SIGKILL)  # a real kill: no handler, no cleanup
    process.wait()


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        ["lab-run", *args],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


@pytest.mark.e2e
def test_killed_run_resumes_with_the_same_command(tmp_path):
    run_dir = tmp_path / "run"
    command = [*SLOW, f"hydra.run.dir={run_dir}"]
    kill_when(start(command, tmp_path), run_dir / "results.json", at_least=2)
    killed = json.loads((run_dir / "results.json").read_text())
    assert killed["status"] == "running" and 2 <= len(killed["acc_matrix"]) < 5
    assert (run_dir / "acc_matrix.csv").is_file()
    assert not (run_dir / "acc_matrix.png").exists()  # drawn once, when the run ends

    done = subprocess.run(["lab-run", *command], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "resuming" in done.stdout + done.stderr
    expected = run_here(SLOW, tmp_path / "whole")
    resumed = json.loads((run_dir / "results.json").read_text())
    assert resumed["status"] == "complete"
    assert resumed["acc_matrix"] == expected["acc_matrix"]
    assert resumed["acc_matrix"][: len(killed["acc_matrix"])] == killed["acc_matrix"]


@pytest.mark.e2e
def test_rerun_sweep_skips_complete_runs_and_resumes_the_rest(tmp_path):
    sweep = tmp_path / "sweep"
    command = ["-m", *SLOW, "seed=0,1", f"hydra.sweep.dir={sweep}"]
    kill_when(start(command, tmp_path), sweep / "1" / "results.json", at_least=2)
    first = json.loads((sweep / "0" / "results.json").read_text())
    assert first["status"] == "complete"
    stamp = (sweep / "0" / "results.json").stat().st_mtime_ns

    done = subprocess.run(["lab-run", *command], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (sweep / "0" / "results.json").stat().st_mtime_ns == stamp  # skipped
    resumed = json.loads((sweep / "1" / "results.json").read_text())
    expected = run_here([*SLOW, "seed=1"], tmp_path / "whole")
    assert resumed["status"] == "complete"
    assert resumed["acc_matrix"] == expected["acc_matrix"]
