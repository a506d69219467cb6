"""A faulty world: damaged data files and checkpoints, and training that diverges.

Each gets one line, never a traceback, and loses nothing already computed.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import CLI, FAST
from test_datasets import write_mnist_like
from test_resume import interrupt_before_task
from wandb_records import offline_run

from lab.checkpoint import CHECKPOINT
from lab.data import datasets
from lab.errors import DataFileError
from lab.experiment import run_experiment
from lab.tracking import results as results_module

IMAGES = "train-images-idx3-ubyte"


def not_gzip(directory: Path) -> Path:
    """What a proxy's error page saved under the download's name looks like."""
    path = directory / f"{IMAGES}.gz"
    path.write_bytes(b"<html><body>502 Bad Gateway</body></html>")
    return path


def cut_gzip(directory: Path) -> Path:
    path = directory / f"{IMAGES}.gz"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def cut_idx(directory: Path) -> Path:
    """An uncompressed copy cut short (its header promises more images than it holds)."""
    path = directory / IMAGES
    path.write_bytes(gzip.decompress((directory / f"{IMAGES}.gz").read_bytes())[:-100])
    return path


REMEDY = "delete it so that it is downloaded again, or replace it with an intact copy"


@pytest.mark.e2e
def test_a_damaged_data_file_is_one_line_and_a_failed_run(tmp_path):
    write_mnist_like(tmp_path / "data")
    path = not_gzip(tmp_path / "data")
    run_dir = tmp_path / "run"
    done = subprocess.run(
        ["lab-run", "logger=none", f"data.root={tmp_path / 'data'}", f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"lab-run: error: {path} cannot be read (BadGzipFile: Not a gzipped file (b'<h')); {REMEDY}"
    ]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "failed"
    assert results["error"] == done.stderr.strip().removeprefix("lab-run: error: ")


@pytest.mark.parametrize(
    "damage, reason",
    [
        (cut_gzip, "EOFError: Compressed file ended before the end-of-stream marker was reached"),
        (cut_idx, "ValueError: 23436 bytes where its header promises 23536"),
    ],
)
def test_a_cut_data_file_names_itself(fast_config, tmp_path, damage, reason):
    write_mnist_like(tmp_path / "data")
    path = damage(tmp_path / "data")
    config = fast_config("benchmark=split_fmnist", f"data.root={tmp_path / 'data'}")
    with pytest.raises(DataFileError) as error:
        run_experiment(config, tmp_path / "run")
    assert str(error.value) == f"{path} cannot be read ({reason}); {REMEDY}"
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["status"] == "failed" and results["error"] == str(error.value)


def test_a_damaged_debian_copy_says_to_reinstall_the_package(fast_config, tmp_path, monkeypatch):
    write_mnist_like(tmp_path / "debian")
    path = not_gzip(tmp_path / "debian")
    monkeypatch.setattr(datasets, "DEBIAN_FASHION_MNIST", tmp_path / "debian")
    config = fast_config("benchmark=split_fmnist", f"data.root={tmp_path / 'empty'}")
    with pytest.raises(DataFileError) as error:
        run_experiment(config, tmp_path / "run")
    assert str(error.value).startswith(f"{path} cannot be read (BadGzipFile")
    assert str(error.value).endswith(
        "; reinstall it: apt-get install --reinstall dataset-fashion-mnist"
    )


def test_data_damaged_before_a_resume_keeps_the_finished_tasks(fast_config, tmp_path, monkeypatch):
    data = tmp_path / "data"
    write_mnist_like(data, n_train=200, n_test=100)
    config = fast_config("benchmark=split_fmnist", f"data.root={data}", "train.epochs=2")
    whole = run_experiment(config, tmp_path / "whole")
    with monkeypatch.context() as patch:
        interrupt_before_task(patch, "naive", task_id=2)
        with pytest.raises(KeyboardInterrupt):
            run_experiment(config, tmp_path / "run")
    intact = (data / f"{IMAGES}.gz").read_bytes()
    not_gzip(data)
    with pytest.raises(DataFileError):
        run_experiment(config, tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["status"] == "failed" and saved["error"].endswith(REMEDY)
    assert saved["acc_matrix"] == whole["acc_matrix"][:2]  # the two finished tasks stay
    (data / f"{IMAGES}.gz").write_bytes(intact)
    resumed = run_experiment(config, tmp_path / "run")
    assert resumed["status"] == "complete" and resumed["acc_matrix"] == whole["acc_matrix"]


def truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def garbage(path: Path) -> None:
    path.write_bytes(b"\0" * 1000)


def foreign(path: Path) -> None:
    """A torch file, but not a lab checkpoint: a bare state_dict copied over it."""
    import torch

    torch.save({"weight": torch.zeros(2)}, path)


@pytest.mark.parametrize(
    "damage, reason",
    [
        (truncated, "RuntimeError: PytorchStreamReader failed"),
        (garbage, "RuntimeError: Cannot use ``weights_only=True`` with files saved in the legacy"),
        (foreign, "KeyError: 'no model, strategy, generator, augment_generator, results, rng'"),
    ],
)
def test_a_damaged_checkpoint_warns_once_and_the_run_starts_again(
    fast_config, tmp_path, monkeypatch, caplog, damage, reason
):
    config = fast_config("train.epochs=2", "model.dropout=0.2")
    whole = run_experiment(config, tmp_path / "whole")
    with monkeypatch.context() as patch:
        interrupt_before_task(patch, "naive", task_id=3)
        with pytest.raises(KeyboardInterrupt):
            run_experiment(config, tmp_path / "run")
    checkpoint = tmp_path / "run" / CHECKPOINT
    damage(checkpoint)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        results = run_experiment(config, tmp_path / "run")
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warning.startswith(f"{checkpoint} cannot be read ({reason}")
    assert warning.endswith(
        "the run starts again from its first task (its results so far "
        "cannot be trusted without the model that made them)"
    )
    assert not any("resuming" in r.getMessage() for r in caplog.records)
    # from the first task again: the same matrix as a run never cut
    assert results["status"] == "complete" and results["acc_matrix"] == whole["acc_matrix"]


@pytest.mark.e2e
def test_lab_run_with_a_damaged_checkpoint_prints_no_traceback(fast_config, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    with monkeypatch.context() as patch:
        interrupt_before_task(patch, "naive", task_id=2)
        with pytest.raises(KeyboardInterrupt):
            run_experiment(fast_config(), run_dir)
    truncated(run_dir / CHECKPOINT)
    done = subprocess.run(
        ["lab-run", *CLI, f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    assert "Traceback" not in output
    assert [line for line in output.splitlines() if "WARNING" in line] == [
        line for line in output.splitlines() if f"{run_dir / CHECKPOINT} cannot be read" in line
    ]
    assert json.loads((run_dir / "results.json").read_text())["status"] == "complete"


def test_divergence_is_recorded_per_task(fast_config, tmp_path, caplog):
    # EWC's curvature far past what SGD can follow: task 0 has no penalty, task 1 explodes
    config = fast_config("strategy=ewc", "strategy.lambda=1e12", "train.epochs=2")
    with caplog.at_level(logging.WARNING, logger="lab.experiment"):
        results = run_experiment(config, tmp_path)
    assert results["status"] == "complete" and results["diverged"] == [1, 2, 3, 4]
    assert results["train_loss"][0] > 0 and results["train_loss"][1:] == [None] * 4
    warnings = [r.getMessage() for r in caplog.records]
    assert [w.split(" in task ")[1][0] for w in warnings] == ["1", "2", "3", "4"]
    saved = (tmp_path / "results.json").read_text()
    assert "NaN" not in saved and json.loads(saved)["diverged"] == [1, 2, 3, 4]
    healthy = run_experiment(fast_config("train.epochs=2"), tmp_path / "healthy")
    assert healthy["diverged"] == [] and None not in healthy["train_loss"]


@pytest.mark.e2e
def test_a_sweep_keeps_its_diverged_run_out_of_the_report(tmp_path):
    sweep = tmp_path / "sweep"
    fast = [o for o in FAST if not o.startswith("logger")]
    done = subprocess.run(
        ["lab-run", "-m", *fast, "train.epochs=2", "optimizer.lr=0.05,1e6", "seed=0"]
        + [f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "WANDB_MODE": "offline"},
    )
    assert done.returncode == 0, done.stderr
    runs = {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/results.json")}
    lrs = {name: r["config"]["optimizer"]["lr"] for name, r in runs.items()}
    assert {name: r["diverged"] for name, r in runs.items()} == {
        name: [0, 1, 2, 3, 4] if lr == 1e6 else [] for name, lr in lrs.items()
    }
    for name, lr in lrs.items():  # the W&B run of a diverged run is tagged, the others not
        run = offline_run(sweep / name)
        assert run["tags"] == (["diverged"] if lr == 1e6 else [])
        assert json.loads(run["summary"]["diverged"]) == runs[name]["diverged"]
    reported = subprocess.run(["lab-report", str(sweep)], capture_output=True, text=True)
    assert reported.returncode == 0, reported.stderr
    report = (sweep / "report" / "report.md").read_text()
    table = report.split("## split_digits, class-IL")[1].split("##")[0]
    rows = [line for line in table.splitlines() if line.startswith("| naive")]
    (healthy,) = [runs[n]["metrics"]["acc"] for n, lr in lrs.items() if lr == 0.05]
    assert len(rows) == 1 and rows[0].startswith(f"| naive | **{100 * healthy:.1f}** |")
    assert rows[0].rstrip().endswith("| 1 |")
    for name, lr in lrs.items():
        listed = f"| {sweep / name} | complete, diverged (non-finite training loss in task "
        assert (listed in report) == (lr == 1e6)


def test_a_write_cut_short_leaves_the_last_whole_results_json(fast_config, tmp_path, monkeypatch):
    """results.json is written to a temporary file and renamed over the old one: a write
    that fails half way (a full disk, a kill) leaves the previous version whole."""

    def dump_half_when_three_rows(data, f, **kwargs):
        text = json.dumps(data, **kwargs)
        if len(data.get("acc_matrix", [])) < 3:
            f.write(text)
            return
        f.write(text[: len(text) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(results_module, "json", SimpleNamespace(dump=dump_half_when_three_rows))
    with pytest.raises(OSError, match="No space left on device"):
        run_experiment(fast_config("train.epochs=1"), tmp_path)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["status"] == "running" and len(saved["acc_matrix"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
