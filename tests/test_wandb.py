"""W&B tracking: what is logged (through a recording fake), failures, and a real offline run."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
from conftest import FAST
from test_resume import interrupt_before_task
from wandb_records import logged_keys, offline_artifacts, offline_run

from lab.experiment import run_experiment
from lab.report.wandb_report import load_spec
from lab.run import run_name


class FakeRun:
    def __init__(self, **kwargs):
        self.init = kwargs
        self.id = "fake123"
        self.logged: list[dict] = []
        self.metrics: list[tuple] = []
        self.summary: dict = {}
        self.artifacts: list = []
        self.finished_with = None
        self.settings = types.SimpleNamespace(sync_dir="/fake/sync")

    def define_metric(self, name, step_metric=None):
        self.metrics.append((name, step_metric))

    def log(self, values):
        self.logged.append(values)

    def log_artifact(self, artifact):
        self.artifacts.append(artifact)

    def finish(self, exit_code=0):
        self.finished_with = exit_code


class FakeTable:
    def __init__(self, columns):
        self.columns, self.data = columns, []

    def add_data(self, *row):
        self.data.append(list(row))


class FakeArtifact:
    def __init__(self, name, type):
        self.name, self.type, self.files = name, type, []

    def add_file(self, path):
        self.files.append(Path(path).name)


@pytest.fixture
def fake_wandb(monkeypatch):
    """A wandb module that records every run it is asked to create."""
    runs: list[FakeRun] = []
    module = types.ModuleType("wandb")

    def init(**kwargs):
        runs.append(FakeRun(**kwargs))
        return runs[-1]

    module.init = init
    module.Table = FakeTable
    module.Artifact = FakeArtifact
    module.Image = lambda path: ("image", Path(path).name)
    module.Settings = lambda **kwargs: kwargs
    monkeypatch.setitem(sys.modules, "wandb", module)
    return runs


def test_what_a_run_logs(fake_wandb, fast_config, tmp_path):
    config = fast_config("logger.tags=[paper,fmnist]", "train.epochs=2")
    results = run_experiment(config, tmp_path, run_name="strategy=naive", group="sweep-1")
    (run,) = fake_wandb
    assert run.init["config"] == config
    assert run.init["dir"] == str(tmp_path)
    assert run.init["group"] == "sweep-1" and run.init["name"] == "strategy=naive"
    assert run.init["job_type"] == "naive" and run.init["tags"] == ["paper", "fmnist"]
    assert run.init["mode"] == "disabled" and run.init["project"] == "forgetting-lab"
    assert ("eval/*", "task") in run.metrics and ("metrics/*", "task") in run.metrics
    assert ("train/*", "train/step") in run.metrics

    per_task = [entry for entry in run.logged if "task" in entry]
    assert [entry["task"] for entry in per_task] == [0, 1, 2, 3, 4]
    for i, entry in enumerate(per_task):
        assert [entry[f"eval/acc_task_{j}"] for j in range(5)] == results["acc_matrix"][i]
    assert per_task[-1]["metrics/acc"] == results["metrics"]["acc"]
    # class-IL: the same model scored Task-IL by masking, beside it
    assert ("task_masked/*", "task") in run.metrics
    for i, entry in enumerate(per_task):
        masked = [entry[f"task_masked/acc_task_{j}"] for j in range(5)]
        assert masked == results["acc_matrix_task_masked"][i]
    assert per_task[-1]["task_masked/acc"] == results["metrics_task_masked"]["acc"]
    assert run.summary["task_masked_acc"] == results["metrics_task_masked"]["acc"]
    losses = [entry for entry in run.logged if "train/loss" in entry]
    assert [e["train/step"] for e in losses] == list(range(len(losses)))
    assert {e["train/task"] for e in losses} == {0, 1, 2, 3, 4}

    (tables,) = [entry for entry in run.logged if "acc_matrix/long" in entry]
    long, wide = tables["acc_matrix/long"], tables["acc_matrix/wide"]
    assert long.columns == ["trained_task", "eval_task", "accuracy"]
    assert long.data == [
        [i, j, a] for i, row in enumerate(results["acc_matrix"]) for j, a in enumerate(row)
    ]
    assert wide.columns == ["after_task"] + [f"task_{j}" for j in range(5)]
    assert wide.data == [[i, *row] for i, row in enumerate(results["acc_matrix"])]
    assert tables["acc_matrix/heatmap"] == ("image", "acc_matrix.png")

    for key, value in results["metrics"].items():
        assert run.summary[key] == value
    for key, value in results["trainable_parameters"].items():  # what the regime trains
        assert run.summary[f"trainable_parameters_{key}"] == value
    assert run.summary["status"] == "complete"
    (artifact,) = run.artifacts
    assert artifact.type == "results"
    assert artifact.files == ["results.json", "acc_matrix.csv", "acc_matrix.png"]
    assert run.finished_with == 0


def test_the_pretraining_source_is_logged_apart(fake_wandb, fast_config, tmp_path):
    config = fast_config(
        "pretrain=source",
        "pretrain.classes=[0,1,2,3,4]",
        "benchmark.class_order=[5,6,7,8,9]",
        "benchmark.num_tasks=2",
    )
    results = run_experiment(config, tmp_path)
    (run,) = fake_wandb
    per_task = [entry for entry in run.logged if "task" in entry]
    assert [e["eval/acc_pretrain"] for e in per_task] == results["pretrain"]["acc"]
    assert "eval/acc_task_2" not in per_task[-1]  # the stream's columns stay the stream's
    for key, value in results["pretrain"]["metrics"].items():
        assert per_task[-1][f"metrics/pretrain_{key}"] == value
        assert run.summary[f"pretrain_{key}"] == value


def test_runs_in_one_process_each_get_their_own_finished_run(fake_wandb, fast_config, tmp_path):
    for seed in (0, 1):  # as Hydra's basic launcher runs a sweep
        run_experiment(fast_config(f"seed={seed}", "train.epochs=1"), tmp_path / str(seed))
    assert len(fake_wandb) == 2
    assert all(run.finished_with == 0 for run in fake_wandb)
    assert fake_wandb[0].init["reinit"] == "finish_previous"


def test_broken_wandb_init_leaves_a_complete_run(
    fake_wandb, fast_config, tmp_path, caplog, monkeypatch
):
    def broken(**kwargs):
        raise ConnectionError("network unreachable\nsecond line")

    monkeypatch.setattr(sys.modules["wandb"], "init", broken)
    with caplog.at_level(logging.ERROR):
        results = run_experiment(fast_config("train.epochs=1"), tmp_path)
    assert results["status"] == "complete"
    assert json.loads((tmp_path / "results.json").read_text())["status"] == "complete"
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [
        "W&B init failed (ConnectionError: network unreachable); "
        "W&B is off for this run, the local results are complete"
    ]


def test_wandb_failing_mid_run_stops_logging_but_not_the_run(fake_wandb, fast_config, tmp_path):
    original_init = sys.modules["wandb"].init

    def init(**kwargs):
        run = original_init(**kwargs)
        calls = {"n": 0}

        def log(values):
            calls["n"] += 1
            if calls["n"] > 3:
                raise RuntimeError("wandb internal error")
            run.logged.append(values)

        run.log = log
        return run

    sys.modules["wandb"].init = init
    results = run_experiment(fast_config("train.epochs=1"), tmp_path)
    assert results["status"] == "complete" and len(results["acc_matrix"]) == 5
    assert len(fake_wandb[0].logged) == 3
    assert fake_wandb[0].finished_with == 0  # the run is still closed


def test_a_resumed_run_opens_a_new_wandb_run(fake_wandb, fast_config, tmp_path, monkeypatch):
    config = fast_config("train.epochs=1")
    with monkeypatch.context() as patch:
        interrupt_before_task(patch, "naive", task_id=2)
        with pytest.raises(KeyboardInterrupt):
            run_experiment(config, tmp_path)
    results = run_experiment(config, tmp_path)
    cut, resumed = fake_wandb
    assert cut.finished_with == 1 and resumed.finished_with == 0
    assert [e["task"] for e in cut.logged if "task" in e] == [0, 1]
    assert [e["task"] for e in resumed.logged if "task" in e] == [2, 3, 4]  # the rest
    (tables,) = [e for e in resumed.logged if "acc_matrix/wide" in e]  # then the whole matrix
    assert tables["acc_matrix/wide"].data == [[i, *r] for i, r in enumerate(results["acc_matrix"])]
    assert resumed.summary["acc"] == results["metrics"]["acc"]


@pytest.mark.parametrize("failing", ["final logging", "finish"])
def test_wandb_failing_at_the_end_leaves_a_complete_run(
    fake_wandb, fast_config, tmp_path, caplog, monkeypatch, failing
):
    original_init = sys.modules["wandb"].init

    def init(**kwargs):
        run = original_init(**kwargs)
        log = run.log

        def log_all_but_the_tables(values):
            if failing == "final logging" and "acc_matrix/long" in values:
                raise RuntimeError("upload failed")
            log(values)

        def finish(exit_code=0):
            if failing == "finish":
                raise RuntimeError("wandb service died")
            run.finished_with = exit_code

        run.log, run.finish = log_all_but_the_tables, finish
        return run

    monkeypatch.setattr(sys.modules["wandb"], "init", init)
    with caplog.at_level(logging.INFO):
        results = run_experiment(fast_config("train.epochs=1"), tmp_path)
    assert results["status"] == "complete"
    assert json.loads((tmp_path / "results.json").read_text())["status"] == "complete"
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    reason = "upload failed" if failing == "final logging" else "wandb service died"
    assert errors == [
        f"W&B {failing} failed (RuntimeError: {reason}); "
        "W&B is off for this run, the local results are complete"
    ]
    # after a failed final logging the run is still closed
    assert (fake_wandb[0].finished_with == 0) == (failing == "final logging")


def test_run_name_leaves_out_seed_and_hydra():
    overrides = [
        "strategy=ewc",
        "seed=3",
        "hydra.run.dir=x",
        "+ablation=methods",
        "logger.mode=offline",
    ]
    assert run_name(overrides) == "strategy=ewc ablation=methods"
    assert run_name(["seed=1"]) == "default"


def lab_run(*args, cwd, env=None):
    return subprocess.run(
        ["lab-run", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.e2e
def test_offline_run_table_equals_results_json(tmp_path):
    fast = [o for o in FAST if not o.startswith("logger")]
    done = lab_run(
        *fast, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, env={"WANDB_MODE": "offline"}
    )
    assert done.returncode == 0, done.stderr
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    (offline,) = (tmp_path / "run" / "wandb").glob("offline-run-*")
    (long_file,) = offline.glob("files/media/table/acc_matrix/long_*.table.json")
    long = json.loads(long_file.read_text())
    assert long["columns"] == ["trained_task", "eval_task", "accuracy"]
    matrix = [[None] * 5 for _ in range(5)]
    for i, j, accuracy in long["data"]:
        matrix[i][j] = accuracy
    assert matrix == results["acc_matrix"]
    (wide_file,) = offline.glob("files/media/table/acc_matrix/wide_*.table.json")
    assert [row[1:] for row in json.loads(wide_file.read_text())["data"]] == results["acc_matrix"]
    assert list(offline.glob("files/media/images/acc_matrix/heatmap_*.png"))
    assert f"wandb sync {offline}" in done.stdout + done.stderr


@pytest.mark.e2e
def test_a_100_task_stream_fills_the_wandb_tables_and_the_report(tmp_path):
    """100 permuted tasks (one step each), W&B offline: the tables hold the whole
    100 x 100 matrix, results.json times every task, and lab-report reads the run."""
    run_dir = tmp_path / "run"
    done = lab_run(
        "benchmark=permuted_fmnist",
        "benchmark.dataset=digits",
        "benchmark.num_tasks=100",
        "scenario=domain",
        "train.iterations=1",
        "eval.samples_per_task=20",
        "model.hidden_sizes=[32]",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
        env={"WANDB_MODE": "offline"},
    )
    assert done.returncode == 0, done.stderr
    results = json.loads((run_dir / "results.json").read_text())
    assert len(results["acc_matrix"]) == 100 and len(results["timing"]["tasks"]) == 100
    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    (long_file,) = offline.glob("files/media/table/acc_matrix/long_*.table.json")
    cells = {(i, j): a for i, j, a in json.loads(long_file.read_text())["data"]}
    assert len(cells) == 100 * 100
    assert [[cells[i, j] for j in range(100)] for i in range(100)] == results["acc_matrix"]
    (wide_file,) = offline.glob("files/media/table/acc_matrix/wide_*.table.json")
    wide = json.loads(wide_file.read_text())
    assert len(wide["columns"]) == 101 and [r[1:] for r in wide["data"]] == results["acc_matrix"]
    report = subprocess.run(["lab-report", str(run_dir)], capture_output=True, text=True)
    assert report.returncode == 0, report.stderr
    assert "mean accuracy on the tasks seen" in (run_dir / "report" / "report.md").read_text()


@pytest.mark.e2e
def test_a_sweep_is_one_wandb_group_named_for_its_directory(tmp_path):
    sweep = tmp_path / "my-ablation"
    fast = [o for o in FAST if not o.startswith("logger")]
    done = lab_run(
        "-m",
        *fast,
        "train.epochs=1",
        "seed=0,1",
        "analysis.probe=true",  # and the probes and CKA are mirrored too
        "analysis.cka=true",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        env={"WANDB_MODE": "offline"},
    )
    assert done.returncode == 0, done.stderr
    first, second = (offline_run(sweep / str(job)) for job in (0, 1))
    assert first["group"] == second["group"] == "my-ablation"
    assert first["job_type"] == second["job_type"] == "naive"
    assert first["name"] == second["name"] != ""  # the seeds of a configuration share it
    results = [json.loads((sweep / str(job) / "results.json").read_text()) for job in (0, 1)]
    assert results[0]["wandb"]["group"] == "my-ablation" and results[0]["wandb"]["id"]
    logged = logged_keys(sweep / "0")
    probes = {f"probe/acc_task_{j}" for j in range(5)} | {"probe_metrics/acc", "probe_acc"}
    assert probes | {"cka/backbone.layers.1", "cka/backbone.layers.3"} <= logged
    assert "probe_matrix/heatmap/_type" in logged

    # the sweep, shared: a summary run in its group, and a W&B Report's spec (dry run)
    spec_file = tmp_path / "report.json"
    done = subprocess.run(
        ["lab-report", str(sweep), "--wandb", "--wandb-report", "--dry-run", str(spec_file)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "WANDB_MODE": "offline"},
    )
    assert done.returncode == 0, done.stderr
    report_dir = sweep / "report"
    summary = offline_run(report_dir)
    assert summary["group"] == "my-ablation" and summary["job_type"] == "report"
    assert f"wandb sync {report_dir / 'wandb'}" in done.stdout
    (offline,) = report_dir.glob("wandb/offline-run-*")
    (table_file,) = offline.glob("files/media/table/report/table_*.table.json")
    table = json.loads(table_file.read_text())
    assert table["columns"][:9] == [
        "benchmark",
        "scenario",
        "method",
        "metric",
        "mean",
        "std",
        "n",
        "ci_low",
        "ci_high",
    ]
    assert table["columns"][9:] == ["p_value", "p_holm", "test", "significant", "baseline"]
    rows = {row[3]: dict(zip(table["columns"], row, strict=True)) for row in table["data"]}
    accs = [r["metrics"]["acc"] for r in results]
    assert rows["acc"]["method"] == "naive" and rows["acc"]["n"] == 2
    assert rows["acc"]["mean"] == pytest.approx(sum(accs) / 2)
    assert rows["acc"]["std"] == pytest.approx(abs(accs[0] - accs[1]) / 2**0.5)
    assert rows["acc"]["ci_low"] < rows["acc"]["mean"] < rows["acc"]["ci_high"]
    assert list(offline.glob("files/media/images/report/figures/*_accuracy_*.png"))
    (artifact,) = [a for a in offline_artifacts(report_dir) if a["type"] == "report"]
    assert artifact["name"] == "report-my-ablation"
    assert {"report.md", "table.tex", "table.csv"} <= set(artifact["files"])
    assert {f"figures/{p.name}" for p in (report_dir / "figures").iterdir()} <= set(
        artifact["files"]
    )

    # the Report: the group's runs less the summary run, grouped by name (seeds averaged,
    # std band), panels of keys the runs logged, and a spec that loads back
    spec = json.loads(spec_file.read_text())
    assert load_spec(spec).title == "Forgetting: split_digits, class-IL"
    (grid,) = [b for b in spec["spec"]["blocks"] if b["type"] == "panel-grid"]
    (runset,) = grid["metadata"]["runSets"]
    filters = {(f["key"]["name"], f["op"], f["value"]) for f in runset["filters"]["filters"]}
    assert filters == {("group", "=", "my-ablation"), ("jobType", "!=", "report")}
    assert runset["grouping"] == [{"section": "run", "name": "displayName"}]
    panels = grid["metadata"]["panelBankSectionConfig"]["panels"]
    asked = set()
    for panel in panels:
        config = panel["config"]
        asked.update(config.get("metrics", []) + config.get("mediaKeys", []))
        asked.update([config["xAxis"]] if "xAxis" in config else [])
        if panel["viewType"] == "Weave":
            asked.add(config["panel2Config"]["exp"]["fromOp"]["inputs"]["key"]["val"])
        if panel["viewType"] == "Run History Line Plot":
            assert (config["groupAgg"], config["groupArea"]) == ("mean", "stddev")
    assert {k for k in asked if k not in logged and f"{k}/_type" not in logged} == set()
    assert {"metrics/acc", "metrics/forgetting", "eval/acc_task_0", "eval/acc_task_1"} <= asked
    assert {"acc_matrix/wide", "acc_matrix/heatmap", "probe_metrics/acc"} <= asked
    assert {"cka/backbone.layers.1", "cka/backbone.layers.3"} <= asked
    assert {p["viewType"] for p in panels} >= {"Bar Chart", "Run Comparer", "Media Browser"}


@pytest.mark.e2e
def test_logger_none_writes_no_wandb_files(tmp_path):
    fast = [o for o in FAST if not o.startswith("logger")]
    done = lab_run(*fast, "logger=none", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "run" / "results.json").exists()
    assert not list(tmp_path.rglob("wandb"))


@pytest.mark.e2e
def test_online_without_login_still_completes(tmp_path):
    """A real W&B failure: online mode with no API key (and no ~/.netrc)."""
    env = {k: v for k, v in os.environ.items() if k != "WANDB_API_KEY"}
    env["HOME"] = str(tmp_path)
    fast = [o for o in FAST if not o.startswith("logger")]
    done = subprocess.run(
        [
            "lab-run",
            *fast,
            "train.epochs=1",
            "logger.mode=online",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "run" / "results.json").read_text())["status"] == "complete"
    errors = [line for line in (done.stdout + done.stderr).splitlines() if "W&B" in line]
    assert len(errors) == 1 and "W&B init failed" in errors[0] and "API key" in errors[0]
