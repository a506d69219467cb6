"""Sweeps through submitit, on this machine and on a stand-in SLURM, and preemption.

A run that gets SIGTERM or SIGUSR2 (what SLURM and submitit send before they stop a job)
stops after saving, and resumes after its last completed task, bit for bit. The SLURM
tests run hydra-submitit-launcher and submitit as they are, with sbatch, srun, sacct and
scontrol replaced by the scripts in tests/fake_slurm (they run the array's tasks here).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import psutil
import pytest
from conftest import CLI, run_here
from heatmap_pixels import assert_png_shows
from test_resume import wait_for_rows

import lab.experiment
from lab.preemption import Stopped, stop_on_signals
from lab.tracking import RunResults

FAKE_SLURM = Path(__file__).parent / "fake_slurm"
# ~0.5 s per task: time to signal a run between two tasks
SLOW = [*CLI, "strategy=ewc", "train.epochs=15", "model.dropout=0.2"]


def process_writing(run_dir: Path) -> psutil.Process:
    """The process whose run writes run_dir: the one holding its run.log open."""
    log = str(run_dir / "run.log")
    for process in psutil.process_iter():
        try:
            if any(f.path == log for f in process.open_files()):
                return process
        except psutil.Error:
            continue
    raise AssertionError(f"no process holds {log} open")


def lab_run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        ["lab-run", *args], cwd=cwd, capture_output=True, text=True, env={**os.environ, **env}
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def matrices(sweep: Path, runs: int) -> list[list[list[float]]]:
    results = [json.loads((sweep / str(i) / "results.json").read_text()) for i in range(runs)]
    assert [r["status"] for r in results] == ["complete"] * runs
    return [r["acc_matrix"] for r in results]


@pytest.mark.e2e
def test_sigterm_stops_a_run_after_saving_and_the_same_command_resumes_it(tmp_path):
    command = [*SLOW, f"hydra.run.dir={tmp_path / 'run'}"]
    process = subprocess.Popen(
        ["lab-run", *command], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    wait_for_rows(process, tmp_path / "run" / "results.json", at_least=1)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM
    assert "stopped by SIGTERM" in stderr.decode()
    stopped = json.loads((tmp_path / "run" / "results.json").read_text())
    assert stopped["status"] == "failed" and stopped["error"].startswith("stopped by SIGTERM")
    assert 1 <= len(stopped["acc_matrix"]) < 5
    # drawn when it stopped: the rows it had, cell by cell
    assert_png_shows(tmp_path / "run" / "acc_matrix.png", stopped)
    assert (tmp_path / "run" / "checkpoint.pt").is_file()

    resumed = lab_run(command, tmp_path)
    assert "resuming" in resumed.stdout + resumed.stderr
    whole = run_here(SLOW, tmp_path / "whole")
    final = json.loads((tmp_path / "run" / "results.json").read_text())
    assert final["status"] == "complete"
    assert final["acc_matrix"] == whole["acc_matrix"]


def test_a_second_signal_while_the_run_saves_is_ignored(fast_config, tmp_path, monkeypatch):
    """SIGUSR2 after task 1's row; then, while the stopped run writes results.json, a
    SIGTERM (SLURM's, right after its warning): ignored, so the run still saves that it was
    stopped by the first, with both rows, and only the first signal stops it."""
    record, finish = lab.experiment.Recorder.__call__, RunResults.finish

    def signal_after_task_1(self, task):
        record(self, task)
        if task.index == 1:
            os.kill(os.getpid(), signal.SIGUSR2)

    def finish_under_fire(self, status, total_s, error=None):
        os.kill(os.getpid(), signal.SIGTERM)
        finish(self, status, total_s, error)

    monkeypatch.setattr(lab.experiment.Recorder, "__call__", signal_after_task_1)
    monkeypatch.setattr(RunResults, "finish", finish_under_fire)
    with stop_on_signals(), pytest.raises(Stopped) as stopped:
        lab.experiment.run_experiment(fast_config("train.epochs=1"), tmp_path)
    assert stopped.value.signum == signal.SIGUSR2
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["status"] == "failed" and saved["error"].startswith("stopped by SIGUSR2")
    assert len(saved["acc_matrix"]) == 2 and (tmp_path / "checkpoint.pt").is_file()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handlers are back


@pytest.mark.e2e
def test_submitit_local_sweep_runs_each_job_in_its_process_as_the_basic_launcher_does(tmp_path):
    sweep = tmp_path / "sweep"
    grid = ["-m", *CLI, "seed=0,1"]
    lab_run([*grid, "hydra/launcher=submitit_local", f"hydra.sweep.dir={sweep}"], tmp_path)
    assert matrices(sweep, 2) == uninterrupted(CLI, tmp_path / "basic")
    jobs = [d for d in (sweep / ".submitit").iterdir() if d.name.isdigit()]
    assert len(jobs) == 2  # one folder per job, named for its process id
    assert all((d / f"{d.name}_0_result.pkl").is_file() for d in jobs)

    stamps = [(sweep / str(i) / "results.json").stat().st_mtime_ns for i in range(2)]
    again = lab_run([*grid, "hydra/launcher=submitit_local", f"hydra.sweep.dir={sweep}"], tmp_path)
    assert [(sweep / str(i) / "results.json").stat().st_mtime_ns for i in range(2)] == stamps
    logs = "".join(p.read_text() for p in (sweep / ".submitit").rglob("*_log.*"))
    assert logs.count("holds a complete run of this config: nothing to do") == 2, again.stderr


def uninterrupted(overrides: list[str], root: Path) -> list[list[list[float]]]:
    """The matrices of seeds 0 and 1 run here, one after the other: what the basic
    launcher's sweep of them gives."""
    return [
        run_here([*overrides, f"seed={seed}"], root / str(seed))["acc_matrix"] for seed in (0, 1)
    ]


def slurm_env(tmp_path: Path) -> dict[str, str]:
    return {
        "PATH": f"{FAKE_SLURM}{os.pathsep}{os.environ['PATH']}",
        "FAKE_SLURM_DIR": str(tmp_path / "slurm"),
    }


SLURM = [
    "hydra/launcher=slurm",
    "hydra.launcher.partition=gpu",
    "hydra.launcher.account=forgetting",
    "hydra.launcher.qos=high",
    "hydra.launcher.gpus_per_node=null",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=4",
    "hydra.launcher.timeout_min=30",
    "hydra.launcher.array_parallelism=1",
]


@pytest.mark.e2e
def test_slurm_sweep_submits_one_array_and_a_preempted_task_resumes_bit_for_bit(tmp_path):
    sweep = tmp_path / "sweep"
    command = ["-m", *SLOW, "seed=0,1", *SLURM, f"hydra.sweep.dir={sweep}"]
    env = {**os.environ, **slurm_env(tmp_path)}
    process = subprocess.Popen(
        ["lab-run", *command], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    wait_for_rows(process, sweep / "0" / "results.json", at_least=1)
    process_writing(sweep / "0").send_signal(signal.SIGUSR2)  # as SLURM does, --signal=USR2@N
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr.decode()[-3000:]

    script = next((tmp_path / "slurm").glob("sbatch-*.sh")).read_text()
    for line in (
        "#SBATCH --partition=gpu",
        "#SBATCH --account=forgetting",
        "#SBATCH --qos=high",
        "#SBATCH --cpus-per-task=1",
        "#SBATCH --mem=4GB",
        "#SBATCH --time=30",
        "#SBATCH --array=0-1%1",
        "#SBATCH --signal=USR2@120",
        "export WANDB_MODE=",
    ):
        assert line in script, f"{line!r} not in the sbatch script:\n{script}"
    assert "--gpus-per-node" not in script  # gpus_per_node=null: a CPU job
    assert "-m submitit.core._submit" in script
    assert (tmp_path / "slurm" / "scontrol.log").read_text().startswith("requeue 4200_0")

    log = next(sweep.glob(".submitit/4200_0/4200_0_0_log.err")).read_text()
    assert "stopped by SIGUSR2" in log
    assert matrices(sweep, 2) == uninterrupted(SLOW, tmp_path / "basic")
    assert "resuming" in (sweep / "0" / "run.log").read_text()
