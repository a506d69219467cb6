"""End to end through the entry points (`lab-run`, `python -m lab.run`), as a user runs it."""

from __future__ import annotations

import csv
import fcntl
import json
import os
import platform
import pty
import struct
import subprocess
import sys
import termios
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import CLI, FAST, REPO
from heatmap_pixels import assert_png_shows
from test_datasets import write_mnist_like

from lab.data.datasets import DEBIAN_FASHION_MNIST

pytestmark = pytest.mark.e2e


def lab_run(*args: str, cwd: Path, module: bool = False, env: dict | None = None):
    command = [sys.executable, "-m", "lab.run"] if module else ["lab-run"]
    return subprocess.run(
        [*command, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


def test_digits_run_writes_the_run_directory_contract(tmp_path):
    run_dir = tmp_path / "run"
    done = lab_run(*CLI, "scenario=task", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    results = json.loads((run_dir / "results.json").read_text())
    assert results["schema_version"] == 1 and results["status"] == "complete"
    assert results["benchmark"] == "split_digits" and results["scenario"] == "task"
    assert results["strategy"] == "naive" and results["seed"] == 0
    assert [t["classes"] for t in results["tasks"]] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    # scikit-learn's 1797 digits, a quarter of them held out for testing
    assert sum(t["train_samples"] for t in results["tasks"]) == 1347
    assert sum(t["test_samples"] for t in results["tasks"]) == 450
    assert len(results["acc_matrix"]) == 5 and all(len(r) == 5 for r in results["acc_matrix"])
    assert len(results["init_acc"]) == 5
    assert set(results["metrics"]) == {
        "acc",
        "bwt",
        "fwt",
        "forgetting",
        "learning_acc",
        "avg_inc_acc",
    }
    final = results["acc_matrix"][-1]
    assert results["metrics"]["acc"] == pytest.approx(sum(final) / 5)
    assert results["config"]["train"]["epochs"] == 10
    timing = results["timing"]
    assert set(timing) == {"total_s", "train_s", "eval_s", "tasks", "started_at", "finished_at"}
    # one entry per task, which the totals add up (the accuracy before training aside)
    assert len(timing["tasks"]) == 5 and all(t["train_s"] > 0 for t in timing["tasks"])
    assert sum(t["train_s"] for t in timing["tasks"]) == pytest.approx(timing["train_s"])
    assert sum(t["eval_s"] for t in timing["tasks"]) < timing["eval_s"]
    # what the same config and seed need, besides, to give the same numbers (README)
    assert set(results["versions"]) == {"lab", "torch", "numpy", "python", "cuda", "cudnn"}
    assert results["versions"]["torch"] == torch.__version__
    assert results["device"] == "cpu" and results["device_name"].startswith(platform.machine())
    assert results["threads"] >= 1
    with open(run_dir / "acc_matrix.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["after_task", "task_0", "task_1", "task_2", "task_3", "task_4"]
    assert [float(v) for v in rows[-1][1:]] == pytest.approx(final, abs=1e-6)
    assert_png_shows(run_dir / "acc_matrix.png", results)  # the heatmap of R and b
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert "accuracy matrix (%)" in done.stdout + done.stderr


def test_a_run_imports_neither_wandb_nor_torchvision_unless_it_uses_them(tmp_path):
    """Each costs a second or more per run (python -X importtime lists what was imported)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "lab.run", "logger=none"]
        + [o for o in FAST if not o.startswith("logger.")]
        + [f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("import time:")]
    imported = {line.split("|")[-1].strip().split(".")[0] for line in lines}
    assert {"torch", "hydra", "matplotlib"} <= imported  # the heatmap, drawn at the end
    assert not imported & {"wandb", "torchvision", "avalanche"}


def test_bad_value_is_one_line_and_exit_2(tmp_path):
    run_dir = tmp_path / "run"
    done = lab_run(*CLI, "optimizer.lr=-1", f"hydra.run.dir={run_dir}", cwd=tmp_path, module=True)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "lab-run: error: optimizer.lr=-1 is invalid; valid: a number in (0, inf)"
    )
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "failed" and "optimizer.lr=-1" in results["error"]


def test_mistyped_key_is_one_line_and_exit_2(tmp_path):
    done = lab_run("optimizer.lrr=0.1", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "lab-run: error: optimizer.lrr is not a key of optimizer; "
        "valid: name, lr, momentum, weight_decay, decoupled_weight_decay"
    ]
    assert not (tmp_path / "outputs").exists()  # nothing ran


def on_a_terminal(args: list[str], cwd: Path) -> tuple[int, str]:
    """lab-run with its stderr on a pseudo-terminal, as in a user's shell (CI unset): the
    exit status and what it wrote there."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 100 columns
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    process = subprocess.Popen(
        ["lab-run", *args], cwd=cwd, stdout=subprocess.DEVNULL, stderr=follower, env=env
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 1 << 16)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    return process.wait(timeout=600), b"".join(chunks).decode(errors="replace")


def test_progress_bars_on_a_terminal_but_not_in_a_multirun(tmp_path):
    fast = [*CLI, "train.epochs=1"]
    status, single = on_a_terminal([*fast, f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    assert status == 0 and "task 0:" in single and "task 4:" in single  # one bar per task
    sweep = tmp_path / "sweep"
    status, multi = on_a_terminal(["-m", *fast, "seed=0,1", f"hydra.sweep.dir={sweep}"], tmp_path)
    assert status == 0 and "task 0:" not in multi
    seeds = [json.loads((sweep / str(i) / "results.json").read_text())["seed"] for i in (0, 1)]
    assert seeds == [0, 1]


def test_joblib_launcher_runs_jobs_in_parallel(tmp_path):
    sweep = tmp_path / "sweep"
    done = lab_run(
        "-m",
        *CLI,
        "train.epochs=30",  # long enough to outlast the other job's start
        "seed=0,1",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    first, second = (json.loads((sweep / str(i) / "results.json").read_text()) for i in (0, 1))
    assert first["status"] == second["status"] == "complete"
    # each started before the other finished: they ran at the same time
    assert first["timing"]["started_at"] < second["timing"]["finished_at"]
    assert second["timing"]["started_at"] < first["timing"]["finished_at"]
    # on its share of the cores: joblib's workers set OMP_NUM_THREADS to cores // n_jobs,
    # which torch follows (its default, every core per job, would oversubscribe the machine)
    assert first["threads"] == second["threads"] == max(1, (os.cpu_count() or 1) // 2)


def test_installed_wheel_finds_its_configs(tmp_path):
    """`pip install .` (non-editable) ships conf/ inside the package as lab/conf."""
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path / "dist"),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    wheel = next((tmp_path / "dist").glob("*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {f"lab/conf/{p.relative_to(REPO / 'conf')}" for p in (REPO / "conf").rglob("*.yaml")}
    assert configs <= names, (
        f"not in the wheel (add the group to pyproject.toml): {configs - names}"
    )
    # the editable install of this checkout would serve a module the wheel lacks
    modules = {
        str(p.relative_to(REPO))
        for folder in ("lab", "hydra_plugins")  # hydra_plugins: the lab's Hydra sweeper
        for p in (REPO / folder).rglob("*.py")
    }
    assert modules <= names, (
        f"not in the wheel (add the package to pyproject.toml): {modules - names}"
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--target",
            str(tmp_path / "site"),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    done = lab_run(
        *CLI,
        "train.epochs=1",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
        module=True,
        env={"PYTHONPATH": str(tmp_path / "site")},
    )
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "run" / "results.json").read_text())["status"] == "complete"


def test_lab_data_root_is_where_datasets_are_read(tmp_path):
    write_mnist_like(tmp_path / "mine", n_train=200, n_test=100)
    run_dir = tmp_path / "run"
    done = lab_run(
        "logger=none",
        "train.epochs=1",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
        env={"LAB_DATA_ROOT": str(tmp_path / "mine")},
    )
    assert done.returncode == 0, done.stderr
    results = json.loads((run_dir / "results.json").read_text())
    assert results["config"]["data"]["root"] == str(tmp_path / "mine")
    assert sum(t["train_samples"] for t in results["tasks"]) == 200  # not the 60000 elsewhere
    assert sum(t["test_samples"] for t in results["tasks"]) == 100


def test_device_cuda_without_cuda_is_one_line(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    run_dir = tmp_path / "run"
    done = lab_run(*CLI, "device=cuda", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "lab-run: error: device='cuda' but torch sees no CUDA device; valid here: auto, cpu"
    )
    assert json.loads((run_dir / "results.json").read_text())["status"] == "failed"


def test_default_run_on_real_fashion_mnist(tmp_path):
    """The README's main job: naive fine-tuning on Split Fashion-MNIST, class-IL."""
    if not DEBIAN_FASHION_MNIST.is_dir():
        if os.environ.get("CI"):
            pytest.fail("CI must install dataset-fashion-mnist (.ci/run does)")
        pytest.skip("Fashion-MNIST not installed: apt-get install dataset-fashion-mnist")
    run_dir = tmp_path / "run"
    done = lab_run(f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "complete" and results["benchmark"] == "split_fmnist"
    final = results["acc_matrix"][-1]
    assert max(final[:4]) < 0.05  # the earlier tasks are forgotten ...
    assert final[4] > 0.95  # ... the last one is learned
    assert min(results["acc_matrix"][i][i] for i in range(5)) > 0.9
    assert results["metrics"]["forgetting"] > 0.9
