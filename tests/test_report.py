"""lab-report on run directories written by hand: grouping, numbers, files."""

from __future__ import annotations

import csv
import json
import struct
import subprocess
import sys

import numpy as np
import pytest

from lab.metrics import accuracy_metrics
from lab.report import figures, write_report

TASKS = [
    {"id": 0, "classes": [0, 1], "description": "classes 0,1"},
    {"id": 1, "classes": [2, 3], "description": "classes 2,3"},
]


def write_run(
    path, strategy, seed, matrix, status="complete", params=None, scenario="class", diverged=()
):
    config = {
        "benchmark": {"name": "split_digits", "num_tasks": 2},
        "strategy": {"name": strategy, **(params or {})},
        "scenario": scenario,
        "seed": seed,
        "device": "cpu",
        "logger": {"name": "none"},
    }
    results = {
        "schema_version": 1,
        "status": status,
        "benchmark": "split_digits",
        "scenario": scenario,
        "strategy": strategy,
        "seed": seed,
        "tasks": TASKS,
        "acc_matrix": matrix,
        "init_acc": [0.5, 0.5],
        "metrics": accuracy_metrics(matrix, [0.5, 0.5]),
        "diverged": list(diverged),
        "config": config,
    }
    path.mkdir(parents=True)
    (path / "results.json").write_text(json.dumps(results))


@pytest.fixture
def sweep(tmp_path):
    root = tmp_path / "sweep"
    # naive: ACC 0.50 and 0.60 -> 55.0 ± 7.1; forgetting 0.90 and 0.80 -> 85.0 ± 7.1
    write_run(root / "0", "naive", 0, [[0.9, 0.0], [0.0, 1.0]])
    write_run(root / "1", "naive", 1, [[1.0, 0.1], [0.2, 1.0]])
    # ewc lambda=10: ACC 0.80 and 0.90 -> 85.0 ± 7.1; forgetting 0.30 and 0.10 -> 20.0 ± 14.1
    write_run(root / "2", "ewc", 0, [[0.9, 0.0], [0.6, 1.0]], params={"lambda": 10})
    write_run(root / "3", "ewc", 1, [[0.9, 0.0], [0.8, 1.0]], params={"lambda": 10})
    # ewc lambda=100, one seed
    write_run(root / "4", "ewc", 0, [[0.9, 0.0], [0.9, 0.7]], params={"lambda": 100})
    # not aggregated: a run killed after task 0, and a failed one
    write_run(root / "5", "naive", 2, [[0.9, 0.0]], status="running")
    write_run(root / "6", "naive", 3, [], status="failed")
    # complete, but its loss went non-finite in task 1: averaged in, naive would be 40.0
    write_run(root / "8", "naive", 4, [[0.9, 0.0], [0.1, 0.0]], diverged=[1])
    # another scenario: its own table
    write_run(root / "7", "naive", 0, [[1.0, 0.5], [0.9, 1.0]], scenario="task")
    return root


def test_report_tables_by_hand(sweep, tmp_path):
    report = write_report([str(sweep)], tmp_path / "out")
    text = report.read_text()
    assert "## split_digits, class-IL" in text and "## split_digits, task-IL" in text
    class_table = text.split("## split_digits, class-IL")[1].split("##")[0]
    rows = {
        line.split("|")[1].strip(): line
        for line in class_table.splitlines()
        if line.startswith("| ") and "Method" not in line
    }
    assert set(rows) == {"naive", "ewc lambda=10", "ewc lambda=100"}
    assert "| 55.0 ± 7.1 | 85.0 ± 7.1 |" in rows["naive"]
    assert rows["naive"].rstrip().endswith("| 2 |")
    # best ACC: ewc lambda=10 (85.0); lowest forgetting: ewc lambda=100 (0.0)
    assert "| **85.0 ± 7.1** | 20.0 ± 14.1 |" in rows["ewc lambda=10"]
    assert "| 80.0 ± 0.0 | **0.0 ± 0.0** |" in rows["ewc lambda=100"]
    # incomplete, failed and diverged runs are listed, never averaged in
    assert "Incomplete, failed or diverged runs" in text
    assert f"| {sweep / '5'} | running | 1/2 |" in text
    assert f"| {sweep / '6'} | failed | 0/2 |" in text
    diverged = "complete, diverged (non-finite training loss in task 1)"
    assert f"| {sweep / '8'} | {diverged} | 2/2 |" in text
    assert "9 runs from" in text and "6 in the tables, 1 diverged, 2 incomplete or failed" in text


def test_report_figures_plot_the_means(sweep, tmp_path, monkeypatch):
    """What each figure draws, read off the figure as it is saved, against the hand-worked
    means of the `sweep` fixture; and the files are real PNG and PDF images."""
    drawn = {}
    save = figures._save

    def keep(fig, path):
        drawn[path.name] = fig
        return save(fig, path)

    monkeypatch.setattr(figures, "_save", keep)
    out = tmp_path / "out"
    write_report([str(sweep)], out)
    labels = ["naive", "ewc lambda=10", "ewc lambda=100"]
    # accuracy on task j after each task, mean over seeds (%): one panel per task
    curves = {
        ("naive", 0): [95.0, 10.0],
        ("naive", 1): [5.0, 100.0],
        ("ewc lambda=10", 0): [90.0, 70.0],
        ("ewc lambda=100", 1): [0.0, 70.0],
    }
    panels = drawn["split_digits_class_accuracy"].axes
    for (label, task), expected in curves.items():
        (line,) = [line for line in panels[task].lines if line.get_label() == label]
        assert line.get_ydata().tolist() == pytest.approx(expected)
    bars = drawn["split_digits_class_forgetting"].axes[0]
    assert [t.get_text() for t in bars.get_xticklabels()] == labels
    assert [p.get_height() for p in bars.patches] == pytest.approx([85.0, 20.0, 0.0])
    grid = drawn["split_digits_class_matrices"].axes
    mean_naive = [[95.0, 5.0], [10.0, 100.0]]
    assert grid[0].get_title() == "naive (n=2)"
    np.testing.assert_allclose(grid[0].images[0].get_array(), mean_naive)
    for stem in ("class_accuracy", "class_matrices", "class_forgetting", "task_forgetting"):
        png = (out / "figures" / f"split_digits_{stem}.png").read_bytes()
        width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and width > 300 and height > 200
        assert (out / "figures" / f"split_digits_{stem}.pdf").read_bytes()[:5] == b"%PDF-"


def test_report_files(sweep, tmp_path):
    out = tmp_path / "out"
    write_report([str(sweep)], out)
    tex = (out / "table.tex").read_text()
    assert r"\toprule" in tex and r"\bottomrule" in tex and r"\textbf{85.0 $\pm$ 7.1}" in tex
    assert "ewc lambda=10 &" in tex
    with open(out / "table.csv") as f:
        rows = list(csv.DictReader(f))
    runs = [r for r in rows if r["kind"] == "run"]
    means = [r for r in rows if r["kind"] == "mean"]
    assert len(runs) == 6 and len(means) == 4  # 6 complete runs in 4 groups
    naive = next(r for r in means if r["method"] == "naive" and r["scenario"] == "class")
    assert float(naive["acc"]) == pytest.approx(0.55) and naive["n_seeds"] == "2"
    assert float(naive["acc_std"]) == pytest.approx(0.0707107, rel=1e-5)


def test_globs_and_single_run_dirs(sweep, tmp_path):
    text = write_report([str(sweep / "[23]")], tmp_path / "out").read_text()
    assert "ewc" in text and "naive" not in text


def test_cli_default_out_and_errors(sweep, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "lab.report", str(sweep)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert (sweep / "report" / "report.md").exists()
    missing = subprocess.run(
        ["lab-report", str(tmp_path / "nothing")], capture_output=True, text=True
    )
    assert missing.returncode == 2
    assert (
        missing.stderr.strip()
        == f"lab-report: error: no results.json at or below {tmp_path / 'nothing'}"
    )


def test_engines_side_by_side_and_the_pretrain_columns(tmp_path):
    root = tmp_path / "runs"
    for engine, final in (("lab", 0.8), ("avalanche", 0.6)):
        for seed in (0, 1):
            path = root / f"{engine}{seed}"
            write_run(path, "naive", seed, [[0.9, 0.0], [0.5, 1.0]])
            results = json.loads((path / "results.json").read_text())
            results["config"]["engine"] = engine
            # the source: 0.9 after pre-training, then 0.85 and `final` (+0.1 for seed 1)
            accs = [0.85, final + 0.1 * seed]
            results["pretrain"] = {
                "description": "digits classes 5,6",
                "init_acc": 0.9,
                "acc": accs,
                "metrics": {"acc": accs[-1], "bwt": accs[-1] - 0.9, "forgetting": 0.9 - accs[-1]},
            }
            (path / "results.json").write_text(json.dumps(results))
    report = write_report([str(root)], tmp_path / "out").read_text()
    assert "| Pretrain ACC | Pretrain forgetting |" in report
    # lab: pretrain ACC 0.80, 0.90 -> 85.0 ± 7.1, forgetting 10.0, 0.0 -> 5.0 ± 7.1
    lines = {line.split(" | ")[0]: line for line in report.splitlines() if "engine=" in line}
    assert lines["| naive engine=lab"].endswith("| **85.0 ± 7.1** | **5.0 ± 7.1** | 2 |")
    assert lines["| naive engine=avalanche"].endswith("| 65.0 ± 7.1 | 25.0 ± 7.1 | 2 |")
    assert (tmp_path / "out" / "figures" / "split_digits_class_pretrain.png").exists()
    rows = list(csv.DictReader((tmp_path / "out" / "table.csv").open()))
    mean = next(r for r in rows if r["kind"] == "mean" and "engine=lab" in r["method"])
    assert float(mean["pretrain_acc"]) == pytest.approx(0.85)
