"""Linear probes and CKA (lab.analysis): the instruments on cases worked by hand, then in a
run: R untouched, P's metrics by the metrics module's definitions, a resume to the same P."""

from __future__ import annotations

import json
import subprocess

import pytest
import torch
from conftest import CLI
from heatmap_pixels import assert_png_shows
from test_finetune import PRETRAINED
from test_resume import interrupt_before_task

from lab.analysis.cka import centered_gram, cka, cka_probe_set, layer_grams
from lab.analysis.probe import fit_probes
from lab.checkpoint import CHECKPOINT
from lab.experiment import build, run_experiment, seed_everything
from lab.metrics import accuracy_metrics


def _blobs(n: int, d: int, generator: torch.Generator, shift: float):
    y = torch.randint(0, 2, (n,), generator=generator)
    z = torch.randn(n, d, generator=generator)
    z[:, 0] += shift * (2 * y - 1)  # separable along the first axis for a large shift
    return z, y


def test_a_probe_separates_what_is_separable_and_nothing_else():
    g = torch.Generator().manual_seed(0)
    (z, y), (z_test, y_test) = _blobs(1000, 20, g, 6.0), _blobs(1000, 20, g, 6.0)
    noise, noise_y = torch.randn(1000, 20, generator=g), torch.randint(0, 2, (1000,), generator=g)
    noise_test = torch.randn(2000, 20, generator=g)
    noise_test_y = torch.randint(0, 2, (2000,), generator=g)
    # two probes in one batched fit: the separable task, and labels that mean nothing
    probes = fit_probes([z, noise], [y, noise_y], [2, 2])
    separable = (probes.logits(0, z_test).argmax(1) == y_test).float().mean().item()
    shuffled = (probes.logits(1, noise_test).argmax(1) == noise_test_y).float().mean().item()
    assert separable > 0.99
    assert 0.45 < shuffled < 0.55  # chance: 0.5 ± 0.011 (one std) on 2000 test samples


def test_a_probe_with_fewer_classes_never_predicts_past_them():
    g = torch.Generator().manual_seed(1)
    z3 = torch.randn(300, 5, generator=g)
    y3 = torch.arange(300) % 3
    z3[torch.arange(300), y3] += 4.0
    z2, y2 = _blobs(200, 5, g, 4.0)
    probes = fit_probes([z3, z2], [y3, y2], [3, 2])
    logits = probes.logits(1, torch.randn(500, 5, generator=g))
    assert torch.isneginf(logits[:, 2]).all()  # no probability on a class the task lacks
    assert logits.argmax(1).max() <= 1
    assert (probes.logits(0, z3).argmax(1) == y3).float().mean() > 0.95


def test_cka_by_its_invariances():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 30, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(30, 30, generator=g, dtype=torch.float64))
    unrelated = torch.randn(500, 30, generator=g, dtype=torch.float64)
    gram = centered_gram(x)
    assert cka(gram, centered_gram(x)) == pytest.approx(1.0, abs=1e-12)
    assert cka(gram, centered_gram(x @ q)) == pytest.approx(1.0, abs=1e-10)  # orthogonal
    assert cka(gram, centered_gram(3.7 * x)) == pytest.approx(1.0, abs=1e-12)  # isotropic
    assert cka(gram, centered_gram(x + 5.0)) == pytest.approx(1.0, abs=1e-12)  # a shift
    # independent features: CKA ~ sqrt of their dimension over n, far from 1
    assert cka(gram, centered_gram(unrelated)) < 0.3
    # an anisotropic scaling is not an invariance: below 1
    scale = torch.ones(30, dtype=torch.float64)
    scale[0] = 20.0
    assert cka(gram, centered_gram(x * scale)) < 0.9


ANALYSIS = ["analysis.probe=true", "analysis.cka=true", "analysis.probe_samples=200"]


def test_probing_leaves_the_run_alone_and_resumes_to_the_same_probes(
    fast_config, tmp_path, monkeypatch
):
    # dropout: training draws from the global RNG, which the probes must never touch
    plain = run_experiment(fast_config("strategy=ewc", "model.dropout=0.2"), tmp_path / "plain")
    config = fast_config("strategy=ewc", "model.dropout=0.2", *ANALYSIS)
    probed = run_experiment(config, tmp_path / "probed")
    # the probes only read the model: R is the same, bit for bit
    assert probed["acc_matrix"] == plain["acc_matrix"]
    P, init = probed["probe_matrix"], probed["probe_init"]
    assert len(P) == len(init) == 5 and all(len(row) == 5 for row in P)
    assert probed["probe_metrics"] == accuracy_metrics(P, init)
    assert [list(row) for row in probed["cka"]] == [["backbone.layers.1", "backbone.layers.4"]] * 5
    assert all(0 < v <= 1 for row in probed["cka"] for v in row.values())
    assert probed["timing"]["analysis_s"] > 0
    # cut before task 2, then resumed: the same P and CKA rows, bit for bit
    with monkeypatch.context() as patch:
        interrupt_before_task(patch, "ewc", task_id=2)
        with pytest.raises(KeyboardInterrupt):
            run_experiment(config, tmp_path / "cut")
    assert (tmp_path / "cut" / CHECKPOINT).exists()
    resumed = run_experiment(config, tmp_path / "cut")
    assert resumed["probe_matrix"] == P and resumed["probe_init"] == init
    assert resumed["cka"] == probed["cka"] and resumed["acc_matrix"] == probed["acc_matrix"]


@pytest.mark.e2e
def test_lab_run_prints_and_writes_the_probes(tmp_path):
    run_dir = tmp_path / "run"
    done = subprocess.run(
        ["lab-run", *CLI, "train.epochs=2", *ANALYSIS, f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads((run_dir / "results.json").read_text())
    printed = done.stdout + done.stderr
    assert "linear-probe accuracy matrix (%)" in printed
    last = "  after T4  " + "".join(f"{100 * a:9.1f}" for a in results["probe_matrix"][-1])
    assert last in printed
    acc = results["probe_metrics"]["acc"]
    assert f"probe metrics: acc={100 * acc:.2f}%" in printed
    last_cka = ", ".join(f"{name}={value:.3f}" for name, value in results["cka"][-1].items())
    assert f"CKA with the start, after the last task: {last_cka}\n" in printed
    assert all(value < 1.0 for value in results["cka"][-1].values())  # the features moved
    assert_png_shows(run_dir / "probe_matrix.png", results, probe=True)
    assert_png_shows(run_dir / "acc_matrix.png", results)


def test_a_frozen_backbone_keeps_its_probes_and_its_cka_exactly(fast_config, tmp_path):
    """Pre-trained on digits 0-4, a task-IL stream over 5-9 with the backbone frozen
    (finetune.mode=linear_probe): the features never change, so every P row equals the
    init row, the source's probe stays where it started, and CKA is 1 for every layer."""
    config = fast_config(*PRETRAINED, "finetune.mode=linear_probe", *ANALYSIS)
    results = run_experiment(config, tmp_path / "run")
    assert results["probe_matrix"] == [results["probe_init"]] * 2
    source = results["pretrain"]
    assert source["probe_acc"] == [source["probe_init_acc"]] * 2
    assert source["probe_metrics"]["forgetting"] == 0.0
    assert all(v == pytest.approx(1.0, abs=1e-9) for row in results["cka"] for v in row.values())


def test_a_probe_reads_test_features_as_it_standardised_its_training_features():
    """Features far from standard (mean 10, std 5 in every dimension): the probe is fitted on
    them standardised with the training slice's mean and std, and reads the test features
    with the same mean and std, W (z - mean) / std + b; test features read as they are
    (mean 10) would all fall on one side of the boundary: 50% instead of > 99%."""
    g = torch.Generator().manual_seed(0)
    (z, y), (z_test, y_test) = _blobs(1000, 20, g, 6.0), _blobs(1000, 20, g, 6.0)
    z, z_test = 10 + 5 * z, 10 + 5 * z_test
    probes = fit_probes([z], [y], [2])
    logits = probes.logits(0, z_test)
    standard = (z_test - z.mean(0)) / z.std(0)
    torch.testing.assert_close(logits, standard @ probes.weight[0].T + probes.bias[0])
    assert (logits.argmax(1) == y_test).float().mean() > 0.99


def test_cka_after_training_by_hand(fast_config, tmp_path):
    """A naive class-IL run: each layer's CKA after the last task, recomputed here from the
    initial weights (the same seed) and the final ones (the checkpoint) on the run's probe
    set, equals the recorded one; training moved the features, so it is below 1."""
    config = fast_config("analysis.cka=true", "analysis.cka_samples=300", "keep_checkpoint=true")
    results = run_experiment(config, tmp_path)
    seed_everything(0)
    stream, model, _ = build(config, torch.device("cpu"))
    x = cka_probe_set(stream.tasks, 300, 0)
    start = layer_grams(model, x)
    model.load_state_dict(torch.load(tmp_path / CHECKPOINT, weights_only=True)["model"])
    end = layer_grams(model, x)
    expected = {name: cka(end[name], start[name].float().double()) for name in start}
    assert list(results["cka"][-1]) == list(expected)
    for name, value in results["cka"][-1].items():
        assert value == pytest.approx(expected[name], abs=1e-6)
        assert value < 0.95
    assert results["cka"][-1] != results["cka"][0]  # it drifts from task to task
