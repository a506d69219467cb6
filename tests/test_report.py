"""lab-report on run directories written by hand: grouping, numbers, files."""

from __future__ import annotations

import csv
import json
import os
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.text import Text
from scipy import stats

from lab.experiment import run_experiment
from lab.metrics import accuracy_metrics
from lab.report import figures, write_report
from lab.report.tables import latex_table

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


@pytest.fixture
def drawn(monkeypatch) -> dict:
    """The figures lab-report saves, by file stem, kept open to be read."""
    figs = {}
    save = figures._save

    def keep(fig, path):
        figs[path.name] = fig
        return save(fig, path)

    monkeypatch.setattr(figures, "_save", keep)
    return figs


def test_report_tables_by_hand(sweep, tmp_path):
    text = write_report([str(sweep)], tmp_path / "out").markdown.read_text()
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
    # forgetting against naive, paired over seeds 0, 1: differences -0.6, -0.7, so
    # t = -0.65 / (0.0707 / sqrt 2) = -13, df 1: p = 1 - 2 atan(13) / pi = 0.049 < 0.05,
    # the table's one test (ACC's differences are constant: no test; lambda=100 has 1 seed)
    assert "| **85.0 ± 7.1** | 20.0 ± 14.1† |" in rows["ewc lambda=10"]
    assert "Holm-corrected over the table's 1 comparison)" in class_table
    # one seed: the mean alone, no spread claimed
    assert "| 80.0 | **0.0** |" in rows["ewc lambda=100"]
    # incomplete, failed and diverged runs are listed, never averaged in
    assert "Incomplete, failed or diverged runs" in text
    assert f"| {sweep / '5'} | running | 1/2 |" in text
    assert f"| {sweep / '6'} | failed | 0/2 |" in text
    diverged = "complete, diverged (non-finite training loss in task 1)"
    assert f"| {sweep / '8'} | {diverged} | 2/2 |" in text
    assert "9 runs from" in text and "6 in the tables, 1 diverged, 2 incomplete or failed" in text


def test_report_figures_plot_the_means(sweep, tmp_path, drawn):
    """What each figure draws, read off the figure as it is saved, against the hand-worked
    means of the `sweep` fixture; and the files are real PNG and PDF images."""
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


def test_a_swept_setting_gets_acc_and_forgetting_against_it(tmp_path, drawn):
    """replay and der over mem_size 50/200/1000 (2 seeds each): one line per method, its
    points the means over seeds, read off the saved figure; a table sweeping no numeric
    setting, or two, has no such figure."""
    root = tmp_path / "memory"
    accs = {"replay": {50: 0.5, 200: 0.6, 1000: 0.8}, "der": {50: 0.6, 200: 0.7, 1000: 0.9}}
    for strategy, by_size in accs.items():
        for size, acc in by_size.items():
            for seed, shift in ((0, -0.05), (1, 0.05)):
                matrix = [[1.0, 0.0], [2 * (acc + shift) - 1.0, 1.0]]  # ACC = acc + shift
                params = {"mem_size": size, "alpha": 0.2} if strategy == "der" else {}
                params = {"mem_size": size, **params}
                write_run(root / f"{strategy}{size}_{seed}", strategy, seed, matrix, params=params)
    write_report([str(root)], tmp_path / "out")
    acc, forgetting = drawn["split_digits_class_sweep"].axes
    for strategy, by_size in accs.items():
        (line,) = [line for line in acc.lines if line.get_label() == strategy]
        assert line.get_xdata().tolist() == [50, 200, 1000]
        assert line.get_ydata().tolist() == pytest.approx([100 * a for a in by_size.values()])
    assert acc.get_xscale() == "log" and acc.get_xlabel() == "mem_size"
    assert len(forgetting.lines) == 2
    assert (tmp_path / "out" / "figures" / "split_digits_class_sweep.png").exists()
    assert "against strategy.mem_size" in (tmp_path / "out" / "report.md").read_text()
    drawn.clear()  # one value each: nothing is swept
    write_report([str(root / "replay50_0"), str(root / "der50_0")], tmp_path / "one")
    assert "split_digits_class_sweep" not in drawn
    grid = tmp_path / "grid"  # two numeric settings swept: no one axis to draw against
    for alpha, temperature in ((1, 1), (1, 2), (2, 1), (2, 2)):
        params = {"alpha": alpha, "temperature": temperature}
        write_run(grid / f"{alpha}_{temperature}", "lwf", 0, [[1, 0], [0.5, 1]], params=params)
    write_report([str(grid)], tmp_path / "grid_report")
    assert "split_digits_class_sweep" not in drawn


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
    text = write_report([str(sweep / "[23]")], tmp_path / "out").markdown.read_text()
    assert "ewc" in text and "naive" not in text


def test_cli_default_out_and_errors(sweep, tmp_path):
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "lab.report", str(sweep)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert (sweep / "report" / "report.md").exists()
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    assert "torch" not in imported  # results.json is read without it (1.6 s to import)
    missing = subprocess.run(
        ["lab-report", str(tmp_path / "nothing")], capture_output=True, text=True
    )
    assert missing.returncode == 2
    assert (
        missing.stderr.strip()
        == f"lab-report: error: no results.json at or below {tmp_path / 'nothing'}"
    )


def test_engines_side_by_side_and_the_pretrain_columns(tmp_path, drawn):
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
    report = write_report([str(root)], tmp_path / "out").markdown.read_text()
    assert "| Pretrain ACC | Pretrain forgetting |" in report
    # lab: pretrain ACC 0.80, 0.90 -> 85.0 ± 7.1, forgetting 10.0, 0.0 -> 5.0 ± 7.1
    lines = {line.split(" | ")[0]: line for line in report.splitlines() if "engine=" in line}
    assert lines["| naive engine=lab"].endswith("| **85.0 ± 7.1** | **5.0 ± 7.1** | 2 |")
    assert lines["| naive engine=avalanche"].endswith("| 65.0 ± 7.1 | 25.0 ± 7.1 | 2 |")
    # the trade-off figure: one point per engine at (final ACC, the source's final
    # accuracy), means over the seeds, with one std each way: ACC 75.0 (both seeds), the
    # source 85.0 ± 7.1 (lab) and 65.0 ± 7.1 (avalanche)
    panel = drawn["split_digits_class_pretrain"].axes[0]
    points = {c.get_label(): c for c in panel.containers}
    assert set(points) == {"naive engine=lab", "naive engine=avalanche"}
    for label, source in (("naive engine=lab", 85.0), ("naive engine=avalanche", 65.0)):
        point, _, (xerr, yerr) = points[label].lines
        assert point.get_xdata().tolist() == pytest.approx([75.0])
        assert point.get_ydata().tolist() == pytest.approx([source])
        (low, high) = yerr.get_segments()[0]
        assert [low[1], high[1]] == pytest.approx([source - 50**0.5, source + 50**0.5])
        assert np.ptp(xerr.get_segments()[0][:, 0]) == pytest.approx(0.0)  # no ACC spread
    assert (tmp_path / "out" / "figures" / "split_digits_class_pretrain.png").exists()
    rows = list(csv.DictReader((tmp_path / "out" / "table.csv").open()))
    mean = next(r for r in rows if r["kind"] == "mean" and "engine=lab" in r["method"])
    assert float(mean["pretrain_acc"]) == pytest.approx(0.85)


def test_task_il_masked_column_by_hand(tmp_path):
    """Class-IL runs that recorded acc_matrix_task_masked: a "Task-IL (masked)" column of
    its ACC (mean ± std over seeds), the note that says what it is, the CSV's
    task_masked_acc and task_masked_forgetting, and a W&B Report panel of it."""
    from lab.report.wandb_report import panels

    root = tmp_path / "runs"
    for seed, late in enumerate([0.8, 0.6]):
        path = root / f"naive{seed}"
        write_run(path, "naive", seed, [[0.9, 0.0], [0.0, 1.0]])
        results = json.loads((path / "results.json").read_text())
        masked = [[1.0, 0.5], [late, 1.0]]  # ACC (late + 1) / 2: 0.9 and 0.8
        results.update(
            acc_matrix_task_masked=masked,
            init_acc_task_masked=[0.5, 0.5],
            metrics_task_masked=accuracy_metrics(masked, [0.5, 0.5]),
        )
        (path / "results.json").write_text(json.dumps(results))
    report = write_report([str(root)], tmp_path / "out")
    text = report.markdown.read_text()
    assert "| Learning acc. | Task-IL (masked) | Seeds |" in text
    (row,) = [line for line in text.splitlines() if line.startswith("| naive |")]
    assert row.endswith("| **85.0 ± 7.1** | 2 |")
    assert "Task-IL (masked): the ACC of the same class-IL models with each task's outputs" in text
    (mean,) = [
        r for r in csv.DictReader((tmp_path / "out" / "table.csv").open()) if r["kind"] == "mean"
    ]
    assert float(mean["task_masked_acc"]) == pytest.approx(0.85)
    assert float(mean["task_masked_forgetting"]) == pytest.approx(0.3)  # 1.0 - 0.8, 1.0 - 0.6
    titles = [getattr(panel, "title", None) for panel in panels(2, task_masked=True)]
    assert "Task-IL (masked) ACC" in titles
    assert "Task-IL (masked) ACC" not in [getattr(p, "title", None) for p in panels(2)]


def test_a_table_of_runs_on_other_thread_counts_or_versions_says_so_in_one_line(
    fast_config, tmp_path
):
    """Two runs of one config and seed, at 1 and 2 threads: each records its thread count,
    and lab-report's table warns in one line that its runs differ in it; a run edited to
    another torch version adds that to the line. Runs that agree (or record nothing, as
    hand-written ones) get no warning. (In this process, at torch.set_num_threads: what a
    lab-run's OMP_NUM_THREADS sets, test_run's joblib test shows.)"""
    root = tmp_path / "runs"
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results = run_experiment(fast_config("train.epochs=1"), root / str(threads))
            assert results["threads"] == threads
    finally:
        torch.set_num_threads(before)
    text = write_report([str(root)], tmp_path / "out").markdown.read_text()
    (line,) = [line for line in text.splitlines() if line.startswith("Warning:")]
    assert line == (
        "Warning: this table mixes runs that differ in threads 1, 2; a config and seed give "
        "the same numbers only on the same device, thread count and library versions."
    )
    edited = json.loads((root / "2" / "results.json").read_text())
    edited["versions"]["torch"] = "0.0.1"
    (root / "2" / "results.json").write_text(json.dumps(edited))
    text = write_report([str(root)], tmp_path / "out").markdown.read_text()
    torch_version = json.loads((root / "1" / "results.json").read_text())["versions"]["torch"]
    assert f"differ in threads 1, 2; torch 0.0.1, {torch_version};" in text
    (root / "2" / "results.json").unlink()
    assert "Warning:" not in write_report([str(root)], tmp_path / "out").markdown.read_text()


def _run(root, name, strategy, seed, acc, forgetting, params=None):
    """A 2-task run with the given ACC and forgetting: R = [[0.9, 0], [b, c]] with
    forgetting = 0.9 - b and ACC = (b + c) / 2."""
    b = 0.9 - forgetting
    write_run(root / name, strategy, seed, [[0.9, 0.0], [b, 2 * acc - b]], params=params)


def add_analysis(run_dir, probe_matrix, probe_init, cka=None):
    """Give a hand-written run the fields analysis.probe (and .cka) write."""
    results = json.loads((run_dir / "results.json").read_text())
    results.update(
        probe_matrix=probe_matrix,
        probe_init=probe_init,
        probe_metrics=accuracy_metrics(probe_matrix, probe_init),
    )
    if cka is not None:
        results["cka"] = [{"backbone.layers.1": a, "backbone.layers.3": b} for a, b in cka]
    (run_dir / "results.json").write_text(json.dumps(results))


@pytest.fixture
def tested_sweep(tmp_path):
    """naive (the baseline) and ewc on seeds 0-2 (paired), lwf on seeds 3-4 (Welch),
    joint on one seed (no test)."""
    root = tmp_path / "tested"
    for seed, (acc, forgetting) in enumerate([(0.50, 0.40), (0.60, 0.30), (0.55, 0.35)]):
        _run(root, f"naive{seed}", "naive", seed, acc, forgetting)
    for seed, (acc, forgetting) in enumerate([(0.80, 0.10), (0.85, 0.05), (0.90, 0.10)]):
        _run(root, f"ewc{seed}", "ewc", seed, acc, forgetting)
    for seed, (acc, forgetting) in zip((3, 4), [(0.60, 0.20), (0.70, 0.30)], strict=True):
        _run(root, f"lwf{seed}", "lwf", seed, acc, forgetting)
    _run(root, "joint0", "joint", 0, 0.95, 0.0)
    return root


def test_statistics_by_hand(tested_sweep, tmp_path):
    """lab-report --ci: cells, CIs, tests and Holm's correction against values worked by
    hand (closed forms of the t distribution for df 2; Welch's df by its formula)."""
    out = tmp_path / "out"
    done = subprocess.run(
        ["lab-report", str(tested_sweep), "--out", str(out), "--ci"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    rows = {
        r["method"]: r for r in csv.DictReader((out / "table.csv").open()) if r["kind"] == "mean"
    }
    naive, ewc, lwf, joint = (rows[m] for m in ("naive", "ewc", "lwf", "joint"))
    # naive ACC 0.50, 0.60, 0.55: mean 0.55, std 0.05; 95% CI 0.55 ± t(0.975, 2) 0.05/sqrt 3
    half = 4.302652729911275 * 0.05 / 3**0.5
    assert float(naive["acc"]) == pytest.approx(0.55) and naive["acc_n"] == "3"
    assert float(naive["acc_std"]) == pytest.approx(0.05)
    assert float(naive["acc_ci_low"]) == pytest.approx(0.55 - half)
    assert float(naive["acc_ci_high"]) == pytest.approx(0.55 + half)
    # ewc - naive, paired: ACC differences 0.30, 0.25, 0.35 -> t^2 = 108; forgetting
    # differences -0.30, -0.25, -0.25 -> t^2 = 256. For df 2, p = 1 - sqrt(t^2 / (2 + t^2)).
    p_acc, p_forgetting = 1 - (108 / 110) ** 0.5, 1 - (256 / 258) ** 0.5
    assert float(ewc["acc_p"]) == pytest.approx(p_acc, rel=1e-6)
    assert float(ewc["forgetting_p"]) == pytest.approx(p_forgetting, rel=1e-6)
    assert ewc["acc_test"] == "paired t-test" and lwf["acc_test"] == "Welch's t-test"
    # lwf (seeds 3, 4) against naive: Welch. ACC 0.60, 0.70 vs 0.50, 0.60, 0.55:
    # se^2 = 0.005/2 + 0.0025/3, t = 0.1 / se, df = se^4 / ((0.005/2)^2 + (0.0025/3)^2 / 2)
    se2 = 0.005 / 2 + 0.0025 / 3
    t, df = 0.1 / se2**0.5, se2**2 / ((0.005 / 2) ** 2 + (0.0025 / 3) ** 2 / 2)
    p_welch = 2 * stats.t.sf(t, df)
    assert float(lwf["acc_p"]) == pytest.approx(p_welch, rel=1e-6)
    assert float(lwf["forgetting_p"]) == pytest.approx(p_welch, rel=1e-6)  # mirror image
    # Holm over the 4 tests, p sorted: p_forgetting x4, p_acc x3, p_welch x2, p_welch x1
    assert float(ewc["forgetting_p_holm"]) == pytest.approx(4 * p_forgetting, rel=1e-6)
    assert float(ewc["acc_p_holm"]) == pytest.approx(3 * p_acc, rel=1e-6)
    assert float(lwf["acc_p_holm"]) == pytest.approx(min(1, 2 * p_welch), rel=1e-6)
    assert float(lwf["forgetting_p_holm"]) == pytest.approx(min(1, 2 * p_welch), rel=1e-6)
    # one seed: no std, no CI, no test
    assert joint["acc_n"] == "1" and joint["acc_std"] == joint["acc_ci_low"] == ""
    assert joint["acc_p"] == ""
    # the table: ewc's cells marked (0.0155 and 0.0274 < 0.05), lwf's not; joint's mean alone
    table = {line.split(" | ")[0]: line for line in done.stdout.splitlines()}
    assert "| 85.0 ± 5.0 [72.6, 97.4]† | 8.3 ± 2.9 [1.2, 15.5]† |" in table["| ewc"]
    assert "| 65.0 ± 7.1 [1.5, 128.5] | 25.0 ± 7.1 [-38.5, 88.5] |" in table["| lwf"]
    assert "| **95.0** | **0.0** |" in table["| joint"] and "± 0.0" not in table["| joint"]
    assert (
        "†: differs from naive at α = 0.05 (paired t-test where both ran the same seeds, "
        "Welch's t-test otherwise, two-sided, on ACC and forgetting; Holm-corrected over "
        "the table's 4 comparisons)." in done.stdout
    )


def _mean_rows(out) -> dict[str, dict]:
    return {
        r["method"]: r for r in csv.DictReader((out / "table.csv").open()) if r["kind"] == "mean"
    }


def test_marks_follow_the_holm_corrected_p_not_the_raw_one(tmp_path):
    """Against naive, paired over seeds 0-2 (df 2: p = 1 - |t| / sqrt(2 + t^2)): ewc's ACC
    differences 0.08, 0.12, 0.16 give t = 0.12 / (0.04 / sqrt 3) = 5.196, p = 0.0351, under
    0.05; its forgetting differences 0.1, -0.1, 0.05 a large p; lwf's ACC differences 0.29,
    0.30, 0.31 p = 0.0011 (its forgetting, equal to naive's, no test). Holm over the 3:
    0.0011 x 3 = 0.0033 (marked), 0.0351 x 2 = 0.0702 (not marked, though the raw p is)."""
    root = tmp_path / "runs"
    naive = [(0.50, 0.40), (0.60, 0.30), (0.55, 0.35)]
    for seed, (acc, forgetting) in enumerate(naive):
        _run(root, f"naive{seed}", "naive", seed, acc, forgetting)
        d_acc, d_forgetting = (0.08, 0.12, 0.16)[seed], (0.1, -0.1, 0.05)[seed]
        _run(root, f"ewc{seed}", "ewc", seed, acc + d_acc, forgetting + d_forgetting)
        _run(root, f"lwf{seed}", "lwf", seed, acc + (0.29, 0.30, 0.31)[seed], forgetting)
    report = write_report([str(root)], tmp_path / "out")
    rows = _mean_rows(tmp_path / "out")
    t = 0.12 / (0.04 / 3**0.5)
    p_ewc = 1 - t / (2 + t**2) ** 0.5
    assert float(rows["ewc"]["acc_p"]) == pytest.approx(p_ewc, rel=1e-4)
    assert float(rows["ewc"]["acc_p_holm"]) == pytest.approx(2 * p_ewc, rel=1e-4)
    assert float(rows["ewc"]["acc_p"]) < 0.05 < float(rows["ewc"]["acc_p_holm"])
    assert float(rows["lwf"]["acc_p_holm"]) < 0.05 and rows["lwf"]["forgetting_p"] == ""
    lines = {line.split(" | ")[0]: line for line in report.markdown.read_text().splitlines()}
    ewc_acc, lwf_acc = lines["| ewc"].split(" | ")[1], lines["| lwf"].split(" | ")[1]
    assert ewc_acc == "67.0 ± 7.8" and lwf_acc == "**85.0 ± 5.6**†"
    assert "Holm-corrected over the table's 3 comparisons" in report.markdown.read_text()
    tex = {line.split(" & ")[0]: line for line in latex_table(report.tables[0]).splitlines()}
    assert r"$^\dagger$" not in tex["ewc"] and r"$^\dagger$" in tex["lwf"]


def test_a_paired_test_pairs_the_runs_by_seed_not_by_their_order(tmp_path):
    """naive's runs listed in the order of seeds 2, 0, 1 and ewc's in 0, 1, 2: the paired
    differences are ewc's minus naive's of the same seed, 0.30, 0.25, 0.38 (t = 8.19, df 2,
    p = 1 - |t| / sqrt(2 + t^2) = 0.0146); paired by position they would be 0.28, 0.35,
    0.30 (t = 14.9, p = 0.0045)."""
    root = tmp_path / "runs"
    naive = {0: 0.50, 1: 0.60, 2: 0.52}
    for name, seed in (("a", 2), ("b", 0), ("c", 1)):
        _run(root, f"naive-{name}", "naive", seed, naive[seed], 0.4)
    for seed, acc in enumerate([0.80, 0.85, 0.90]):
        _run(root, f"x-ewc{seed}", "ewc", seed, acc, 0.1 + 0.01 * seed)
    report = write_report([str(root)], tmp_path / "out")
    (naive_group,) = [g for g in report.tables[0].groups if g.strategy == "naive"]
    assert [r.results["seed"] for r in naive_group.runs] == [2, 0, 1]
    ewc = _mean_rows(tmp_path / "out")["ewc"]
    assert ewc["acc_test"] == "paired t-test"
    d = np.array([0.30, 0.25, 0.38])
    t = d.mean() / (d.std(ddof=1) / 3**0.5)
    assert float(ewc["acc_p"]) == pytest.approx(1 - t / (2 + t**2) ** 0.5, rel=1e-6)
    assert float(ewc["acc_p"]) == pytest.approx(0.0146, abs=1e-4)


def test_baseline_by_name_and_its_errors(tested_sweep, tmp_path):
    out = tmp_path / "out"
    done = subprocess.run(
        ["lab-report", str(tested_sweep), "--out", str(out), "--baseline", "ewc"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    rows = {
        r["method"]: r for r in csv.DictReader((out / "table.csv").open()) if r["kind"] == "mean"
    }
    assert rows["naive"]["baseline"] == "ewc" and rows["naive"]["acc_p"] != ""
    assert rows["ewc"]["acc_p"] == ""
    bad = subprocess.run(
        ["lab-report", str(tested_sweep), "--out", str(out), "--baseline", "replay"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip() == (
        "lab-report: error: --baseline 'replay' is not a method of these runs; "
        "valid: 'ewc', 'joint', 'lwf', 'naive'"
    )


def test_table_tex_compiles_with_pdflatex(tmp_path):
    """table.tex inside a minimal article with booktabs: pdflatex must stop on no error,
    with method names holding _, %, & and $."""
    pdflatex = shutil.which("pdflatex")
    if pdflatex is None:
        if os.environ.get("CI"):
            pytest.fail("pdflatex is missing: .ci/run installs texlive-latex-recommended")
        pytest.skip("pdflatex is not installed (apt-get install texlive-latex-recommended)")
    root = tmp_path / "runs"
    for seed in (0, 1):
        for i, note in enumerate(["lr_0.1 & 50% off", "cost=$5 #1 ~x^2 {a}"]):
            _run(
                root,
                f"{i}-{seed}",
                "ewc",
                seed,
                0.6 + 0.1 * i + 0.01 * seed,
                0.2,
                params={"note": note},
            )
            _run(
                root,
                f"n{i}-{seed}",
                "naive",
                seed,
                0.5 + 0.02 * seed,
                0.4 + 0.01 * i,
                params={"note": note},
            )
    write_report([str(root)], tmp_path / "out", baseline="naive note=lr_0.1 & 50% off", ci=True)
    (tmp_path / "paper.tex").write_text(
        "\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
        "\\input{out/table.tex}\n\\end{document}\n"
    )
    done = subprocess.run(
        [pdflatex, "-interaction=nonstopmode", "-halt-on-error", "paper.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    log = (tmp_path / "paper.log").read_text(errors="replace")
    assert done.returncode == 0 and "\n! " not in log, done.stdout[-2000:]
    assert (tmp_path / "paper.pdf").read_bytes()[:5] == b"%PDF-"
    tex = (tmp_path / "out" / "table.tex").read_text()
    assert r"ewc note=lr\_0.1 \& 50\% off" in tex and r"\$5 \#1" in tex
    assert r"\$\pm\$" not in tex and r"Mean $\pm$ std" in tex


def test_figures_fit_a_paper(tested_sweep, tmp_path, drawn):
    """Every figure: each method one colour everywhere, no title over another title or
    over another panel, and no text under 6 pt once the figure is set at one-column width
    (3.5 in)."""
    # a second table (task-IL) with the methods in another order
    for seed in (0, 1):
        write_run(tested_sweep / f"t-ewc{seed}", "ewc", seed, [[1, 0.5], [0.9, 1]], scenario="task")
        write_run(
            tested_sweep / f"t-naive{seed}", "naive", seed, [[1, 0.5], [0.8, 1]], scenario="task"
        )
    for run_dir in tested_sweep.iterdir():  # the class-IL runs probed, with CKA
        if not run_dir.name.startswith("t-"):
            add_analysis(run_dir, [[0.9, 0.5], [0.8, 0.9]], [0.5, 0.5], cka=[(0.9, 0.8)] * 2)
    write_report([str(tested_sweep)], tmp_path / "out")
    assert set(drawn) == {
        f"split_digits_{s}_{kind}"
        for s in ("class", "task")
        for kind in ("accuracy", "matrices", "forgetting")
    } | {"split_digits_class_probes", "split_digits_class_cka"}
    colors = {}
    for name, fig in drawn.items():
        for line in fig.axes[0].lines if not name.endswith("probes") else []:
            if not line.get_label().startswith("_"):
                colors.setdefault(line.get_label(), set()).add(to_hex(line.get_color()))
        if name.endswith("forgetting"):
            ax = fig.axes[0]
            for label, bar in zip(ax.get_xticklabels(), ax.patches, strict=True):
                colors.setdefault(label.get_text(), set()).add(to_hex(bar.get_facecolor()))
        if name.endswith(("matrices", "probes")):
            for ax in fig.axes:
                if ax.get_visible() and ax.get_title():
                    label = ax.get_title().rsplit(" (n=", 1)[0]
                    colors.setdefault(label, set()).add(to_hex(ax.title.get_color()))
    assert set(colors) == {"naive", "ewc", "lwf", "joint"}
    assert all(len(c) == 1 for c in colors.values()), colors
    assert len({c.pop() for c in colors.values()}) == 4
    for name, fig in drawn.items():
        renderer = FigureCanvasAgg(fig).get_renderer()  # a closed figure keeps no canvas
        width = fig.get_tightbbox(renderer).width  # inches, as saved
        scale = min(1.0, 3.5 / width)
        texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
        smallest = min(t.get_fontsize() for t in texts) * scale
        assert smallest >= 6, f"{name}: {smallest:.1f} pt at one-column width"
        titles = [fig._suptitle] if fig._suptitle else []
        titles += [ax.title for ax in fig.axes if ax.get_visible() and ax.get_title()]
        boxes = [t.get_window_extent(renderer) for t in titles]
        for i, a in enumerate(boxes):
            for b in boxes[i + 1 :]:
                assert not a.overlaps(b), f"{name}: two titles overlap"
        for title, box in zip(titles, boxes, strict=True):
            for ax in fig.axes:
                if ax.get_visible() and ax.axison and title is not ax.title:
                    assert not box.overlaps(ax.get_window_extent(renderer)), (
                        f"{name}: '{title.get_text()}' over a panel"
                    )


@pytest.mark.parametrize("flag", ["--wandb-report", "--wandb"])
def test_wandb_without_an_api_key_is_one_error_line(tested_sweep, tmp_path, flag):
    """Online with no API key: one error line, exit 1, and the local report stays."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(HOME=str(tmp_path), WANDB_MODE="online")
    out = tmp_path / "out"
    done = subprocess.run(
        ["lab-report", str(tested_sweep), "--out", str(out), flag],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("lab-report: error: the W&B"), errors
    assert errors[0].endswith(f"the local report in {out} is complete")
    assert "| ewc |" in (out / "report.md").read_text() and (out / "table.tex").exists()


def test_probe_columns_and_figures_by_hand(tmp_path, drawn):
    """Runs with linear probes: the Probe ACC / Probe forgetting columns (the metrics'
    definitions on P), head against probe per method, and CKA per layer."""
    root = tmp_path / "probed"
    for seed, (late, cka) in enumerate([(0.6, 0.9), (0.8, 0.7)]):
        _run(root, f"naive{seed}", "naive", seed, 0.5, 0.4)
        # P: probe ACC = (late + 0.9) / 2; probe forgetting = 0.9 - late
        add_analysis(
            root / f"naive{seed}",
            [[0.9, 0.5], [late, 0.9]],
            [0.5, 0.6],
            cka=[(1.0, cka), (0.95, cka - 0.1)],
        )
    report = write_report([str(root)], tmp_path / "out").markdown.read_text()
    assert "| Probe ACC | Probe forgetting | Seeds |" in report
    # probe ACC 0.75 and 0.85 -> 80.0 ± 7.1; probe forgetting 0.3 and 0.1 -> 20.0 ± 14.1
    (row,) = [line for line in report.splitlines() if line.startswith("| naive |")]
    assert row.endswith("| **80.0 ± 7.1** | **20.0 ± 14.1** | 2 |")
    panel = drawn["split_digits_class_probes"].axes[0]
    head, probe, start = (line.get_ydata().tolist() for line in panel.lines)
    assert head == pytest.approx([50.0, 50.0])  # R's last row: [0.5, 0.5] in both runs
    assert probe == pytest.approx([70.0, 90.0])  # P's last row, mean of the two runs
    assert start == pytest.approx([50.0, 60.0])
    layer3 = drawn["split_digits_class_cka"].axes[1]
    assert layer3.get_title() == "layers.3"
    assert layer3.lines[0].get_ydata().tolist() == pytest.approx([0.8, 0.7])
    rows = [
        r for r in csv.DictReader((tmp_path / "out" / "table.csv").open()) if r["kind"] == "mean"
    ]
    assert float(rows[0]["probe_acc"]) == pytest.approx(0.8)


def test_long_streams_get_heatmaps_without_cell_numbers_and_with_a_colour_bar(tmp_path, drawn):
    """Up to 20 tasks every cell of a matrix is written out; a 50-task matrix gets a colour
    bar and every third task's tick instead (its 2,550 numbers would be unreadable): the
    report's mean matrices and a run's acc_matrix.png alike; and the per-task panels an
    aggregate form."""
    from lab.tracking.heatmap import acc_matrix_figure

    n = 50
    matrix = np.tril(np.full((n, n), 0.5)) + np.eye(n) * 0.4
    for seed in (0, 1):
        path = tmp_path / "long" / str(seed)
        write_run(path, "naive", seed, [[0.9, 0.0], [0.5, 1.0]])
        results = json.loads((path / "results.json").read_text())
        results["tasks"] = [{"id": t, "classes": [0, 1], "description": f"p{t}"} for t in range(n)]
        results.update(acc_matrix=matrix.tolist(), init_acc=[0.1] * n)
        results["metrics"] = accuracy_metrics(results["acc_matrix"], results["init_acc"])
        (path / "results.json").write_text(json.dumps(results))
    write_report([str(tmp_path / "long")], tmp_path / "out")
    grid = drawn["split_digits_class_matrices"]
    panel, colour_bar = grid.axes[0], grid.axes[-1]
    assert len(panel.texts) == 0 and len(grid.axes) == 2
    assert colour_bar.get_ylabel() == "accuracy (%)"
    assert len(panel.get_xticks()) == 17  # tasks 0, 3, ..., 48

    # and the per-task panels give way to their aggregate: after task i, the mean accuracy
    # on tasks 0..i (here (0.5 i + 0.9) / (i + 1)), and task 0's (0.9, then 0.5)
    seen, first = drawn["split_digits_class_accuracy"].axes
    (line,) = seen.lines
    expected = [100 * (0.5 * i + 0.9) / (i + 1) for i in range(n)]
    assert line.get_ydata() == pytest.approx(expected)
    assert first.lines[0].get_ydata() == pytest.approx([90.0] + [50.0] * (n - 1))
    report = (tmp_path / "out" / "report.md").read_text()
    assert "mean accuracy on the tasks seen, and on task 0" in report

    run = acc_matrix_figure(matrix.tolist(), [0.1] * n, [f"T{t}" for t in range(n)])
    assert len(run.axes[0].texts) == 0 and len(run.axes) == 2
    short = acc_matrix_figure(matrix[:5, :5].tolist(), [0.1] * 5, [f"T{t}" for t in range(5)])
    assert len(short.axes[0].texts) == 6 * 5 and len(short.axes) == 1
