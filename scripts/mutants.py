"""Break the code on purpose, one named bug at a time, and check that the tests notice.

    python scripts/mutants.py            # every mutant (270; about 35 min on one core)
    python scripts/mutants.py --list     # their names
    python scripts/mutants.py ewc-half lwf-t-squared   # some of them

Each mutant is one textual edit of one file (a sign, an index, a skipped call), applied
to a scratch copy of lab/, conf/, tests/ and pyproject.toml; the tests that guard that
code then run against the copy (PYTHONPATH puts it first, also for the `lab-run`
subprocesses of the tests). A mutant is killed when those tests fail, and survives when
they pass: a survivor is a bug the suite would let through. The script prints one line
per mutant and exits 1 if any survived, or if an edit no longer applies (the code it
targets moved: update the mutant). A mutant whose tests need a program that is not on
PATH here (`needs`: pdflatex for the LaTeX ones) is "skipped", with "needs pdflatex" on
its line: never run, never counted as survived. It is a tool to run, not part of
`make test`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
COPIED = ("lab", "conf", "tests", "pyproject.toml", "hydra_plugins")


@dataclass
class Mutant:
    name: str
    path: str  # relative to the repository
    old: str  # must occur exactly once in the file
    new: str
    tests: list[str]  # pytest node ids or files, run with -x
    needs: tuple[str, ...] = ()  # programs the tests need (on PATH); skipped without them


MUTANTS = [
    # the metrics of design.md
    Mutant(
        "bwt-sign",
        "lab/metrics.py",
        '"bwt": _mean_or_none([R[last, j] - R[j, j] for j in range(last)])',
        '"bwt": _mean_or_none([R[j, j] - R[last, j] for j in range(last)])',
        ["tests/test_metrics.py"],
    ),
    Mutant(
        "forgetting-includes-final-row",  # Mammoth's variant, not Chaudhry's
        "lab/metrics.py",
        '"forgetting": _mean_or_none([R[j:last, j].max() - R[last, j] for j in range(last)])',
        '"forgetting": _mean_or_none([R[j:, j].max() - R[last, j] for j in range(last)])',
        ["tests/test_metrics.py"],
    ),
    Mutant(
        "fwt-diagonal",
        "lab/metrics.py",
        'metrics["fwt"] = _mean_or_none([R[j - 1, j] - b[j] for j in range(1, k)])',
        'metrics["fwt"] = _mean_or_none([R[j, j] - b[j] for j in range(1, k)])',
        ["tests/test_metrics.py"],
    ),
    Mutant(
        "avg-inc-acc-whole-rows",
        "lab/metrics.py",
        '"avg_inc_acc": float(np.mean([R[i, : i + 1].mean() for i in range(k)]))',
        '"avg_inc_acc": float(np.mean([R[i].mean() for i in range(k)]))',
        ["tests/test_metrics.py"],
    ),
    # the methods' equations
    Mutant(
        "si-omega-sign",
        "lab/strategies/si.py",
        "omega -= g * (params[n].detach() - before[n])",
        "omega += g * (params[n].detach() - before[n])",
        [
            "tests/test_strategies.py::test_si_importance_is_the_path_integral_over_the_squared_displacement"
        ],
    ),
    Mutant(
        "si-displacement-from-the-last-step",
        "lab/strategies/si.py",
        "importance += self._omega[n] / ((theta - self._start[n]).square() + self.eps)",
        "importance += self._omega[n] / ((theta - self.anchor.get(n, theta)).square() + self.eps)",
        [
            "tests/test_strategies.py::test_si_importance_is_the_path_integral_over_the_squared_displacement"
        ],
    ),
    Mutant(
        "mas-signed-gradient",
        "lab/strategies/mas.py",
        "weight, bias = per_sample_sums(linears[name], delta, inputs[name], torch.abs)",
        "weight, bias = (  # |sum_n g_n|, not sum_n |g_n|\n"
        "            None if t is None else t.abs()\n"
        "            for t in per_sample_sums(linears[name], delta, inputs[name], lambda g: g)\n"
        "        )",
        ["tests/test_strategies.py::test_mas_importance_is_the_mean_absolute_output_sensitivity"],
    ),
    Mutant(
        "mas-alpha-swapped",
        "lab/strategies/mas.py",
        "+ (1 - self.alpha) * new[n]",
        "+ self.alpha * new[n]",
        ["tests/test_strategies.py::test_mas_importance_is_the_mean_absolute_output_sensitivity"],
    ),
    Mutant(
        "agem-projects-always",
        "lab/strategies/agem.py",
        "if not dot < 0:",
        "if False:",
        [
            "tests/test_rehearsal.py::test_agem_projects_a_conflicting_gradient_and_leaves_an_agreeing_one"
        ],
    ),
    Mutant(
        "eval-subset-ignores-seed",
        "lab/data/streams.py",
        "generator = torch.Generator().manual_seed(seed * 100_003 + task.id)",
        "generator = torch.Generator().manual_seed(task.id)",
        ["tests/test_streams.py"],
    ),
    Mutant(
        "images-standardised-before-rotation",
        "lab/data/images.py",
        """        if self.transform is not None:
            x = self.transform(x)
        return self.inputs(x, self.mean, self.std)""",
        """        if self.transform is not None and self.mean is not None:  # rotated standardised
            x = self.transform((x - self.mean) / self.std) * self.std + self.mean
        elif self.transform is not None:
            x = self.transform(x)
        return self.inputs(x, self.mean, self.std)""",
        ["tests/test_streams.py"],
    ),
    Mutant(
        "images-permutation-reversed",
        "lab/data/images.py",
        "x.flatten(1)[:, pixels]",
        "x.flatten(1)[:, pixels.flip(0)]",
        ["tests/test_streams.py"],
    ),
    Mutant(
        "ewc-sums-forget-the-older-tasks",
        "lab/strategies/ewc.py",
        "a, b, c = self.sums.get(n, (0.0, 0.0, 0.0))",
        "a, b, c = (0.0, 0.0, 0.0)",
        ["tests/test_strategies.py"],
    ),
    Mutant(
        "heatmap-numbers-on-long-streams",
        "lab/tracking/heatmap.py",
        "    return num_tasks <= ANNOTATED",
        "    return True",
        [
            "tests/test_report.py::test_long_streams_get_heatmaps_without_cell_numbers_and_with_a_colour_bar"
        ],
    ),
    Mutant(
        "agem-never-projects",
        "lab/strategies/agem.py",
        "if not dot < 0:",
        "if True:",
        [
            "tests/test_rehearsal.py::test_agem_keeps_patterns_per_exp_samples_of_each_task_and_remembers"
        ],
    ),
    Mutant(
        "report-sweep-over-two-settings",
        "lab/report/figures.py",
        "return swept[0] if len(swept) == 1 else None",
        "return swept[0] if swept else None",
        ["tests/test_report.py"],
    ),
    Mutant(
        "agem-projection-sign",
        "lab/strategies/agem.py",
        "p.grad = -scale * r if p.grad is None else p.grad - scale * r",
        "p.grad = scale * r if p.grad is None else p.grad + scale * r",
        [
            "tests/test_rehearsal.py::test_agem_projects_a_conflicting_gradient_and_leaves_an_agreeing_one"
        ],
    ),
    Mutant(
        "der-one-batch-for-both-terms",
        "lab/strategies/der.py",
        "for_ce = self.memory.draw(n, self.generator) if self.beta else None",
        "for_ce = for_mse if self.beta else None",
        [
            "tests/test_rehearsal.py::test_der_loss_is_ce_plus_alpha_mse_of_stored_logits_plus_beta_ce"
        ],
    ),
    Mutant(
        "der-logits-not-replaced",
        "lab/strategies/memory.py",
        "                self.logits[replaced.to(device)] = logits[last[replaced].to(device)]",
        "                pass",
        ["tests/test_rehearsal.py::test_reservoir_keeps_each_samples_logits_with_it"],
    ),
    Mutant(
        "avalanche-si-views",
        "lab/avalanche/strategies.py",
        '        _copy(self.syn_data["old_theta"])',
        "        pass",
        [
            "tests/test_avalanche.py::test_si_mapping_is_avalanches_plugin_with_real_copies_twice_lambda_and_no_clip"
        ],
    ),
    Mutant(
        "ewc-half",
        "lab/strategies/ewc.py",
        "return ce + self.lambda_ / 2 * self.penalty(model)",
        "return ce + self.lambda_ * self.penalty(model)",
        ["tests/test_strategies.py::test_ewc_penalty_value_and_gradient_for_a_hand_set_fisher"],
    ),
    Mutant(
        "ewc-fisher-not-squared",
        "lab/strategies/ewc.py",
        "weight, bias = per_sample_sums(module, delta, inputs[name], torch.square, weights)",
        "weight, bias = per_sample_sums(module, delta, inputs[name], torch.abs, weights)",
        ["tests/test_strategies.py"],
    ),
    Mutant(
        "ewc-online-gamma-ignored",
        "lab/strategies/ewc.py",
        "fisher = {n: self.gamma * running[n] + fisher[n] for n in fisher}",
        "fisher = {n: running[n] + fisher[n] for n in fisher}",
        [
            "tests/test_strategies.py",
            "tests/test_avalanche.py::test_ewc_mapping_importance_is_our_empirical_fisher_and_lambda_halve"
            "s",
        ],
    ),
    Mutant(
        "ewc-fisher-samples-ignored",
        "lab/strategies/ewc.py",
        "if self.fisher_samples is not None and self.fisher_samples < len(data):",
        "if False:",
        ["tests/test_strategies.py::test_fisher_on_a_subset_of_samples"],
    ),
    Mutant(
        "lwf-t-squared",
        "lab/strategies/lwf.py",
        "return temperature**2 * F.kl_div(",
        "return F.kl_div(",
        ["tests/test_strategies.py"],
    ),
    Mutant(
        "weight-decay-strength-ignored",
        "lab/strategies/weight_decay.py",
        "return replace(settings, weight_decay=self.strength, decoupled_weight_decay=decoupled)",
        "return replace(settings, decoupled_weight_decay=decoupled)",
        ["tests/test_strategies.py"],
    ),
    # the pre-trained start
    Mutant(
        "source-not-anchored",
        "lab/experiment.py",
        "        strategy.after_task(model, stream.source, [stream.source])",
        "        pass",
        [
            "tests/test_finetune.py::test_the_source_is_an_earlier_task_in_every_regime",
            "tests/test_finetune.py::test_ewc_anchors_the_pretrained_weights_with_the_source_fishe"
            "r",
        ],
    ),
    # augmentation
    Mutant(
        "crop-centre-only",
        "lab/augment.py",
        "dy = torch.randint(0, 2 * p + 1, (n, 1), generator=generator, device=x.device)",
        "dy = torch.full((n, 1), p, device=x.device)",
        ["tests/test_finetune.py::test_augmentation_by_hand"],
    ),
    Mutant(
        "flip-never",
        "lab/augment.py",
        "mirrored = torch.rand(n, generator=generator, device=x.device) < 0.5",
        "mirrored = torch.rand(n, generator=generator, device=x.device) < 0.0",
        [
            "tests/test_finetune.py::test_augmentation_by_hand",
            "tests/test_finetune.py::test_each_augmentation_changes_training",
        ],
    ),
    # the training loop
    Mutant(
        "class-mask-off",
        "lab/engine.py",
        "            if mask is not None:\n                logits = logits + mask",
        "            if False:\n                logits = logits + mask",
        ["tests/test_engine.py"],
    ),
    # resume and the run directory
    Mutant(
        "rng-not-restored",
        "lab/experiment.py",
        '    set_rng_states(checkpoint["rng"])',
        "    pass",
        ["tests/test_resume.py::test_interrupted_run_resumes_to_the_same_matrix"],
    ),
    Mutant(
        "augment-generator-not-restored",
        "lab/experiment.py",
        '    setup.augment_generator.set_state(checkpoint["augment_generator"].cpu())',
        "    pass",
        ["tests/test_resume.py::test_interrupted_run_resumes_to_the_same_matrix"],
    ),
    Mutant(
        "results-not-atomic",  # written in place: a write cut short leaves half a file
        "lab/tracking/results.py",
        '    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")\n'
        "    try:\n"
        '        with os.fdopen(fd, "w") as f:',
        '    tmp = path\n    try:\n        with open(path, "w") as f:',
        ["tests/test_faults.py::test_a_write_cut_short_leaves_the_last_whole_results_json"],
    ),
    Mutant(
        "l2-anchor-at-start",  # anchored at the first task's weights, not the last task's
        "lab/strategies/l2.py",
        "self.anchor = {n: p.detach().clone() for n, p in penalised_parameters(model).items()}",
        "self.anchor = self.anchor or {\n"
        "            n: p.detach().clone() for n, p in penalised_parameters(model).items()\n"
        "        }",
        ["tests/test_strategies.py"],
    ),
    Mutant(
        "strategy-generator-not-restored",  # a sampled Fisher, a Fisher on a subset
        "lab/strategies/base.py",
        '        self.generator.set_state(state["generator"].cpu())',
        "        pass",
        ["tests/test_resume.py::test_interrupted_run_resumes_to_the_same_matrix"],
    ),
    Mutant(
        "source-bwt-sign",
        "lab/metrics.py",
        '"bwt": final - init_acc,',
        '"bwt": init_acc - final,',
        ["tests/test_finetune.py::test_the_sources_column_and_metrics_by_hand"],
    ),
    # what the command line promises
    Mutant(
        "avalanche-online-gamma-ignored",
        "lab/avalanche/strategies.py",
        'decay_factor=params["gamma"] if online else None,',
        "decay_factor=1.0 if online else None,",
        [
            "tests/test_avalanche.py::test_ewc_mapping_importance_is_our_empirical_fisher_and_lambda_halve"
            "s",
        ],
    ),
    Mutant(
        "progress-bars-in-a-multirun",
        "lab/run.py",
        'return sys.stderr.isatty() and not multirun and not os.environ.get("CI")',
        'return sys.stderr.isatty() and not os.environ.get("CI")',
        ["tests/test_run.py::test_progress_bars_on_a_terminal_but_not_in_a_multirun"],
    ),
    Mutant(
        "report-curve-of-the-first-seed",
        "lab/report/figures.py",
        "mean, std = column.mean(0), _std(column)",
        "mean, std = column[0], _std(column)",
        ["tests/test_report.py::test_report_figures_plot_the_means"],
    ),
    # lab-report's statistics, LaTeX, figures and W&B (issue 12)
    Mutant(
        "one-seed-claims-a-spread",
        "lab/report/stats.py",
        "return Cell(mean, None, len(x), None)",
        "return Cell(mean, 0.0, len(x), None)",
        ["tests/test_report.py::test_statistics_by_hand"],
    ),
    Mutant(
        "holm-not-monotone",
        "lab/report/stats.py",
        "running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))",
        "running = min(1.0, (len(p_values) - rank) * p_values[i])",
        ["tests/test_report.py::test_statistics_by_hand"],
    ),
    Mutant(
        "welch-assumes-equal-variances",
        "lab/report/stats.py",
        "stats.ttest_ind(a, b, equal_var=False)",
        "stats.ttest_ind(a, b)",
        ["tests/test_report.py::test_statistics_by_hand"],
    ),
    Mutant(
        "ci-normal-not-student",
        "lab/report/stats.py",
        "low, high = stats.t.interval(LEVEL, len(x) - 1, loc=mean, scale=sem)",
        "low, high = stats.norm.interval(LEVEL, loc=mean, scale=sem)",
        ["tests/test_report.py::test_statistics_by_hand"],
    ),
    Mutant(
        "tex-underscore-unescaped",
        "lab/report/tables.py",
        '    "_": r"\\_",\n',
        "",
        ["tests/test_report.py::test_table_tex_compiles_with_pdflatex"],
        needs=("pdflatex",),
    ),
    Mutant(
        "figures-one-colour-for-all-bars",
        "lab/report/figures.py",
        "color=[colors[g.label] for g in groups],",
        'color="tab:red",',
        ["tests/test_report.py::test_figures_fit_a_paper"],
    ),
    Mutant(
        "figures-titles-overlap",
        "lab/report/figures.py",
        'layout="constrained",',
        "",
        ["tests/test_report.py::test_figures_fit_a_paper"],
    ),
    Mutant(
        "report-panel-key-the-logger-never-writes",
        "lab/report/wandb_report.py",
        'keys.metric("forgetting")',
        '"metrics/forgetting_final"',
        ["tests/test_wandb.py::test_a_sweep_is_one_wandb_group_named_for_its_directory"],
    ),
    Mutant(
        "summary-run-outside-the-sweeps-group",
        "lab/report/wandb_export.py",
        "group=target.group,",
        "group=None,",
        ["tests/test_wandb.py::test_a_sweep_is_one_wandb_group_named_for_its_directory"],
    ),
    Mutant(
        "wandb-error-loses-the-exit-status",
        "lab/report/wandb_export.py",
        '            _fail("the W&B Report", error, report.out)\n            status = 1',
        '            _fail("the W&B Report", error, report.out)',
        ["tests/test_report.py::test_wandb_without_an_api_key_is_one_error_line"],
    ),
    # representation forgetting (issue 13)
    Mutant(
        "probe-slice-from-the-global-rng",
        "lab/analysis/probe.py",
        "return torch.randperm(n, generator=generator)[:samples].to(task.train_y.device)",
        "return torch.randperm(n)[:samples].to(task.train_y.device)",
        [
            "tests/test_analysis.py::test_probing_leaves_the_run_alone_and_resumes_to_the_same_probes"
        ],
    ),
    Mutant(
        "cka-uncentred",
        "lab/analysis/cka.py",
        "    x = x - x.mean(0, keepdim=True)",
        "    x = x",
        ["tests/test_analysis.py::test_cka_by_its_invariances"],
    ),
    Mutant(
        "probe-metrics-of-r",
        "lab/tracking/results.py",
        'self.data["probe_matrix"], self.data["probe_init"]',
        'self.data["acc_matrix"], self.data["init_acc"]',
        [
            "tests/test_analysis.py::test_probing_leaves_the_run_alone_and_resumes_to_the_same_probes"
        ],
    ),
    Mutant(
        "probe-classes-unmasked",
        "lab/analysis/probe.py",
        'mask[t, kt:] = float("-inf")',
        "pass",
        ["tests/test_analysis.py::test_a_probe_with_fewer_classes_never_predicts_past_them"],
    ),
    Mutant(
        "probe-trains-the-model",
        "lab/analysis/probe.py",
        "    model.eval()\n    n = len(x) if index is None else len(index)",
        "    model.train()\n    n = len(x) if index is None else len(index)",
        [
            "tests/test_analysis.py::test_probing_leaves_the_run_alone_and_resumes_to_the_same_probes"
        ],
    ),
    Mutant(
        "avalanche-config-not-written-first",
        "lab/avalanche/__init__.py",
        "\n_write_avalanche_config()\n",
        "\n",
        ["tests/test_avalanche.py::test_a_new_machine_gets_avalanches_config_file_whole"],
    ),
    Mutant(
        "identity-first-ignored",
        "lab/experiment.py",
        'identity_first=b.get("identity_first", True),',
        "identity_first=True,",
        ["tests/test_streams.py"],
    ),
    Mutant(
        "lab-data-root-ignored",
        "conf/config.yaml",
        "root: ${oc.env:LAB_DATA_ROOT,data}",
        "root: data",
        ["tests/test_run.py::test_lab_data_root_is_where_datasets_are_read"],
    ),
    Mutant(
        "wandb-group-not-the-sweep",
        "lab/run.py",
        "group=Path(hydra_config.sweep.dir).name if multirun else None,",
        "group=None,",
        ["tests/test_wandb.py::test_a_sweep_is_one_wandb_group_named_for_its_directory"],
    ),
    Mutant(
        "digits-keep-the-general-ewc-default",
        "conf/benchmark/split_digits.yaml",
        "  ewc: 300.0",
        "  ewc: 1000.0",
        ["tests/test_strategies.py::test_default_strengths_train_stably_on_digits"],
    ),
    # a faulty world
    Mutant(
        "damaged-data-file-raises",
        "lab/data/datasets.py",
        "        except UNREADABLE as error:",
        "        except ImportError as error:",
        ["tests/test_faults.py"],
    ),
    Mutant(
        "damaged-checkpoint-raises",
        "lab/checkpoint.py",
        "    except Exception as error:  # noqa: BLE001",
        "    except ImportError as error:  # noqa: BLE001",
        ["tests/test_faults.py"],
    ),
    Mutant(
        "divergence-not-recorded",
        "lab/tracking/results.py",
        '            self.data["diverged"].append(task)',
        "            pass",
        ["tests/test_faults.py"],
    ),
    Mutant(
        "report-averages-diverged-runs",
        "lab/report/runs.py",
        'return self.status == "complete" and not self.results.get("diverged")',
        'return self.status == "complete"',
        ["tests/test_report.py"],
    ),
    # fixed costs and clusters (issue 14)
    Mutant(
        "heatmap-never-drawn",
        "lab/experiment.py",
        "        draw_heatmaps(run_dir, results.data)\n",
        "        pass\n",
        ["tests/test_run.py::test_digits_run_writes_the_run_directory_contract"],
    ),
    Mutant(
        "decoded-copy-ignored",
        "lab/data/datasets.py",
        "    if copy is not None and copy.is_file():",
        "    if False:",
        ["tests/test_datasets.py::test_gzipped_files_are_decoded_once_into_data_root"],
    ),
    # the larger image datasets and their decode-once cache (issue 26)
    Mutant(
        "cifar100-coarse-labels",
        "lab/data/datasets.py",
        'label_key=b"fine_labels"',
        'label_key=b"coarse_labels"',
        [
            "tests/test_image_datasets.py::test_cifar100_reads_torchvisions_pickles_as_uint8_with_fine_labels"
        ],
    ),
    Mutant(
        "decoded-images-cache-ignored",
        "lab/data/decoded.py",
        "    if path.is_file():",
        "    if False:",
        ["tests/test_image_datasets.py::test_images_are_decoded_once_and_memory_mapped_after"],
    ),
    Mutant(
        "decoded-images-key-without-mtime",
        "lab/data/decoded.py",
        "{stat.st_size}:{stat.st_mtime_ns}",
        "{stat.st_size}",
        ["tests/test_image_datasets.py::test_images_are_decoded_once_and_memory_mapped_after"],
    ),
    Mutant(
        "decoded-images-temp-left-behind",
        "lab/data/decoded.py",
        "    finally:\n        Path(tmp).unlink(missing_ok=True)",
        "    except DataFileError:\n        raise",
        ["tests/test_image_datasets.py::test_a_truncated_jpeg_is_named_in_one_line"],
    ),
    Mutant(
        "resize-nearest",
        "lab/data/decoded.py",
        "image.resize((size, size), Image.Resampling.BILINEAR)",
        "image.resize((size, size), Image.Resampling.NEAREST)",
        ["tests/test_image_datasets.py::test_decoding_by_hand_rgb_and_a_direct_bilinear_resize"],
    ),
    Mutant(
        "resize-centre-crop",  # shorter side to size, then the centre
        "lab/data/decoded.py",
        "image.resize((size, size), Image.Resampling.BILINEAR)",
        '__import__("PIL.ImageOps").ImageOps.fit(image, (size, size), Image.Resampling.BILINEAR)',
        ["tests/test_image_datasets.py::test_decoding_by_hand_rgb_and_a_direct_bilinear_resize"],
    ),
    Mutant(
        "damaged-image-raises",
        "lab/data/decoded.py",
        "    except Exception as error:  # noqa: BLE001 - a damaged file",
        "    except ImportError as error:  # noqa: BLE001 - a damaged file",
        ["tests/test_image_datasets.py::test_a_truncated_jpeg_is_named_in_one_line"],
    ),
    Mutant(
        "split-seed-ignored",
        "lab/data/folders.py",
        "np.random.default_rng([seed, zlib.crc32(name.encode())])",
        "np.random.default_rng([0, zlib.crc32(name.encode())])",
        [
            "tests/test_image_datasets.py::test_image_folder_in_one_folder_is_split_per_class_by_its_seed"
        ],
    ),
    Mutant(
        "split-floors-the-test-share",
        "lab/data/folders.py",
        "int(len(files) * test_fraction + 0.5)",
        "int(len(files) * test_fraction)",
        [
            "tests/test_image_datasets.py::test_imagenet_r_is_split_80_20_per_class_with_a_fixed_seed"
        ],
    ),
    Mutant(
        "cub-split-inverted",
        "lab/data/folders.py",
        'is_train[image_id] == "1"',
        'is_train[image_id] == "0"',
        ["tests/test_image_datasets.py::test_cub200_keeps_its_own_split_with_labels_from_0"],
    ),
    Mutant(
        "cub-labels-from-1",
        "lab/data/folders.py",
        "int(labels[image_id]) - 1",
        "int(labels[image_id])",
        ["tests/test_image_datasets.py::test_cub200_keeps_its_own_split_with_labels_from_0"],
    ),
    Mutant(
        "tinyimagenet-wnids-in-file-order",
        "lab/data/folders.py",
        'wnids = sorted(row[0] for row in _lines(directory / "wnids.txt", 1))',
        'wnids = [row[0] for row in _lines(directory / "wnids.txt", 1)]',
        ["tests/test_image_datasets.py::test_tinyimagenet_train_and_labelled_val"],
    ),
    Mutant(
        "store-size-not-passed",
        "lab/experiment.py",
        'options = {"store_size": config["data"].get("store_size")}',
        "options = {}",
        [
            "tests/test_image_datasets.py::test_image_folder_options_reach_the_loader_and_its_classes_are_checked_when_counted"
        ],
    ),
    Mutant(
        "image-folder-classes-never-checked",
        "lab/experiment.py",
        'check_split(b, config["scenario"], dataset.num_classes)  # counted only now',
        "pass",
        [
            "tests/test_image_datasets.py::test_image_folder_options_reach_the_loader_and_its_classes_are_checked_when_counted"
        ],
    ),
    # timm backbones, the model's inputs, precision and the new users' faults (issue 26)
    Mutant(
        "inputs-model-mean-ignored",
        "lab/data/inputs.py",
        "        if self.mean is not None:\n            mean, std = _statistics(",
        "        if False:\n            mean, std = _statistics(",
        ["tests/test_timm.py::test_resize_channels_and_normalisation_of_a_two_image_batch_by_hand"],
    ),
    Mutant(
        "inputs-grey-not-expanded",
        "lab/data/inputs.py",
        "            x = x.expand(-1, self.channels, -1, -1)",
        "            pass",
        ["tests/test_timm.py::test_resize_channels_and_normalisation_of_a_two_image_batch_by_hand"],
    ),
    Mutant(
        "inputs-nearest-for-bilinear",
        "lab/data/inputs.py",
        'if interpolation == "nearest":',
        "if True:",
        ["tests/test_timm.py::test_resize_channels_and_normalisation_of_a_two_image_batch_by_hand"],
    ),
    Mutant(
        "fisher-tokens-sum-of-squares",  # the per-sample gradient over tokens is a sum
        "lab/strategies/ewc.py",
        "bias += (f(delta[i : i + step].sum(1)) * w[i : i + step, None]).sum(0)",
        "bias += (f(delta[i : i + step]).sum(1) * w[i : i + step, None]).sum(0)",
        ["tests/test_timm.py::test_ewcs_fisher_over_token_sequences_equals_per_sample_gradients"],
    ),
    Mutant(
        "timm-classifier-in-the-module-tree",
        "lab/models/timm_backbone.py",
        'object.__setattr__(self, "pretrained_classifier", classifier)',
        "self.pretrained_classifier = classifier",
        ["tests/test_timm.py::test_a_weights_file_loads_bit_for_bit_with_its_classifier_aside"],
    ),
    Mutant(
        "timm-lora-on-the-patch-embedding",
        "lab/models/timm_backbone.py",
        "if isinstance(module, nn.Linear | nn.Conv2d) and name != first",
        "if isinstance(module, nn.Linear | nn.Conv2d)",
        [
            "tests/test_timm.py::test_lora_adapts_a_vits_attention_and_mlp_and_never_its_patch_embedding"
        ],
    ),
    Mutant(
        "timm-missing-keys-unchecked",  # a file of another architecture loads nothing
        "lab/models/timm_backbone.py",
        "            if missing:\n",
        "            if False:\n",
        ["tests/test_timm.py::test_a_weights_file_of_another_architecture_names_the_first_misfit"],
    ),
    Mutant(
        "timm-groups-fine",  # timm's fine grouping: blocks and the final norm apart
        "lab/models/timm_backbone.py",
        "self.model.group_matcher(coarse=True)",
        "self.model.group_matcher(coarse=False)",
        [
            "tests/test_timm.py::test_a_vits_layer_groups_follow_timms_grouping_and_freezing_keeps_them"
        ],
    ),
    Mutant(
        "precision-autocast-never",
        "lab/precision.py",
        '    if precision == "fp32":\n        return contextlib.nullcontext()',
        "    if True:\n        return contextlib.nullcontext()",
        ["tests/test_timm.py::test_bf16_on_the_cpu_trains_within_a_point_of_fp32"],
    ),
    Mutant(
        "compile-failure-not-undone",
        "lab/precision.py",
        "        backbone._compiled_call_impl = None  # nn.Module.compile's switch, undone",
        "        pass",
        ["tests/test_timm.py::test_a_compile_failure_falls_back_in_one_line"],
    ),
    Mutant(
        "non-finite-strength-accepted",
        "lab/strategies/__init__.py",
        "if isinstance(value, float) and not math.isfinite(value):",
        "if False:",
        ["tests/test_timm.py::test_a_new_users_faults_are_one_line[nan-strength]"],
    ),
    Mutant(
        "slurm-off-cluster-unchecked",
        "lab/run.py",
        "problem = unknown_override(overrides) or off_cluster(overrides)",
        "problem = unknown_override(overrides)",
        ["tests/test_timm.py::test_a_new_users_faults_are_one_line[slurm-off-cluster]"],
    ),
    Mutant(
        "wandb-imported-by-every-run",
        "lab/tracking/wandb_run.py",
        "from lab.tracking import wandb_keys as keys\n",
        "import wandb  # noqa: F401\nfrom lab.tracking import wandb_keys as keys\n",
        ["tests/test_run.py::test_a_run_imports_neither_wandb_nor_torchvision_unless_it_uses_them"],
    ),
    Mutant(
        "report-imports-torch",
        "lab/tracking/results.py",
        "import numpy as np\n",
        "import numpy as np\nimport torch  # noqa: F401\n",
        ["tests/test_report.py::test_cli_default_out_and_errors"],
    ),
    Mutant(
        "stopped-run-exits-0",
        "lab/preemption.py",
        "    sys.exit(128 + stopped.signum)",
        "    sys.exit(0)",
        [
            "tests/test_cluster.py::test_sigterm_stops_a_run_after_saving_and_the_same_command_resumes_it"
        ],
    ),
    Mutant(
        "wheel-without-analysis",
        "pyproject.toml",
        '"lab.report", "lab.analysis",',
        '"lab.report",',
        ["tests/test_run.py::test_installed_wheel_finds_its_configs"],
    ),
    # rehearsal (issue 27)
    Mutant(
        "reservoir-count-off-by-one",  # the k-th sample replaces with probability c/(k-1)
        "lab/strategies/memory.py",
        "self.offered + room + 1, self.offered + n + 1, dtype=torch.float64",
        "self.offered + room, self.offered + n, dtype=torch.float64",
        [
            "tests/test_rehearsal.py::test_reservoir_keeps_the_nth_sample_with_probability_capacity_over_n"
        ],
    ),
    Mutant(
        "class-balanced-first-of-each-class",
        "lab/strategies/memory.py",
        "pick = index[torch.randperm(len(index), generator=generator)[:quota]]",
        "pick = index[:quota]",
        ["tests/test_rehearsal.py::test_class_balanced_draws_each_classs_share_uniformly"],
    ),
    Mutant(
        "per-task-first-samples",
        "lab/strategies/memory.py",
        "pick = torch.randperm(len(task_data), generator=generator)[: self.capacity]",
        "pick = torch.arange(len(task_data))[: self.capacity]",
        ["tests/test_rehearsal.py::test_per_task_memory_draws_each_task_uniformly"],
    ),
    Mutant(
        "memory-draws-from-the-global-rng",
        "lab/strategies/memory.py",
        "return torch.randint(len(self), (n,), generator=generator).to(self.data.y.device)",
        "return torch.randint(len(self), (n,)).to(self.data.y.device)",
        ["tests/test_rehearsal.py::test_a_memory_never_draws_from_the_global_rng"],
    ),
    Mutant(
        "agem-reference-from-the-global-rng",
        "lab/strategies/agem.py",
        "index = torch.randperm(len(self.memory), generator=self.generator)[: self.sample_size]",
        "index = torch.randperm(len(self.memory))[: self.sample_size]",
        ["tests/test_rehearsal.py::test_a_memory_never_draws_from_the_global_rng"],
    ),
    Mutant(
        "der-old-samples-get-new-logits",
        "lab/strategies/memory.py",
        "logits = self.logits[pick.to(source.y.device)] if key in old else None",
        "logits = None",
        [
            "tests/test_rehearsal.py::test_der_class_balanced_logits_in_eval_mode_and_kept_by_old_samples"
        ],
    ),
    Mutant(
        "replay-batch-size-ignored",
        "lab/strategies/replay.py",
        "self.memory.sample(self.replay_batch_size or len(batch), self.generator)",
        "self.memory.sample(len(batch), self.generator)",
        ["tests/test_rehearsal.py::test_replay_batch_size_samples_join_each_batch"],
    ),
    Mutant(
        "der-stores-the-memorys-logits",
        "lab/strategies/der.py",
        "_widened(model, logits[:n].detach())",
        "_widened(model, logits[-n:].detach())",
        ["tests/test_rehearsal.py::test_der_stores_the_logits_of_the_current_batch"],
    ),
    Mutant(
        "der-mse-over-every-entry",
        "lab/strategies/der.py",
        "return difference.square().sum() / both.sum()",
        "return difference.square().sum() / both.numel()",
        ["tests/test_rehearsal.py::test_der_mse_is_the_mean_over_the_entries_finite_on_both_sides"],
    ),
    Mutant(
        "der-end-of-task-logits-in-train-mode",
        "lab/strategies/der.py",
        "    model.eval()\n",
        "    model.train()\n",
        [
            "tests/test_rehearsal.py::test_der_class_balanced_logits_in_eval_mode_and_kept_by_old_samples"
        ],
    ),
    Mutant(
        "agem-reference-on-the-whole-memory",
        "lab/strategies/agem.py",
        "generator=self.generator)[: self.sample_size]",
        "generator=self.generator)",
        [
            "tests/test_rehearsal.py::test_agem_reference_gradient_is_on_sample_size_samples_of_the_memory"
        ],
    ),
    # SI, the quadratic penalty and standardisation (issue 27)
    Mutant(
        "si-importance-of-the-last-task-only",
        "lab/strategies/si.py",
        "importance = self.importance.setdefault(n, torch.zeros_like(theta))",
        "importance = self.importance[n] = torch.zeros_like(theta)",
        ["tests/test_strategies.py::test_si_importance_is_summed_over_the_tasks"],
    ),
    Mutant(
        "quadratic-gradient-without-the-2",
        "lab/strategies/quadratic.py",
        "grads = torch._foreach_mul(ctx.weighted, 2 * grad)",
        "grads = torch._foreach_mul(ctx.weighted, grad)",
        [
            "tests/test_strategies.py::test_quadratic_penalty_value_and_gradient_for_a_hand_set_importance"
        ],
    ),
    Mutant(
        "si-anchor-stays-at-the-source",  # the first anchor kept: the pre-trained weights
        "lab/strategies/si.py",
        "        self.anchor = weights\n",
        "        self.anchor = self.anchor or weights\n",
        [
            "tests/test_strategies.py::test_si_after_a_source_anchors_it_with_no_importance_then_watches_the_stream"
        ],
    ),
    Mutant(
        "standardised-over-all-channels",
        "lab/data/streams.py",
        "return whole.mean(dim=(0, 2, 3), keepdim=True), whole.std(dim=(0, 2, 3), keepdim=True)",
        "return whole.mean().expand(1, x.shape[1], 1, 1), whole.std().expand(1, x.shape[1], 1, 1)",
        ["tests/test_streams.py::test_standardisation_is_per_channel_on_a_colour_benchmark"],
    ),
    # probes and CKA (issue 27)
    Mutant(
        "probe-test-features-unstandardised",
        "lab/analysis/probe.py",
        "        z = (z - self.mean[t]) / self.std[t]\n",
        "",
        [
            "tests/test_analysis.py::test_a_probe_reads_test_features_as_it_standardised_its_training_features"
        ],
    ),
    Mutant(
        "cka-always-one",
        "lab/analysis/cka.py",
        'return (hsic / norm).item() if norm > 0 else float("nan")',
        "return 1.0",
        ["tests/test_analysis.py::test_cka_after_training_by_hand"],
    ),
    Mutant(
        "probe-heatmap-of-r",  # probe_matrix.png drawn from the accuracy matrix
        "lab/tracking/summary.py",
        "            matrix, init = with_source_column(results, probe=True)",
        "            matrix, init = with_source_column(results)",
        ["tests/test_analysis.py::test_lab_run_prints_and_writes_the_probes"],
    ),
    # the report's statistics and figures, preemption, Avalanche's mappings (issue 27)
    Mutant(
        "marks-from-the-raw-p",
        "lab/report/stats.py",
        "return self.p_holm is not None and self.p_holm < ALPHA",
        "return self.p is not None and self.p < ALPHA",
        ["tests/test_report.py::test_marks_follow_the_holm_corrected_p_not_the_raw_one"],
    ),
    Mutant(
        "paired-by-position",
        "lab/report/stats.py",
        "b = np.array([baseline[s] for s in sorted(values)])",
        "b = np.array(list(baseline.values()))",
        ["tests/test_report.py::test_a_paired_test_pairs_the_runs_by_seed_not_by_their_order"],
    ),
    Mutant(
        "pretrain-figure-of-the-first-seed",
        "lab/report/figures.py",
        "            x.mean(),\n            y.mean(),\n            xerr=",
        "            x[0],\n            y[0],\n            xerr=",
        ["tests/test_report.py::test_engines_side_by_side_and_the_pretrain_columns"],
    ),
    Mutant(
        "heatmap-colour-scale-autoscaled",  # the colours no longer mean the same accuracy
        "lab/tracking/heatmap.py",
        'image = ax.imshow(values, cmap="viridis", vmin=0, vmax=100, aspect="auto")',
        'image = ax.imshow(values, cmap="viridis", aspect="auto")',
        [
            "tests/test_run.py::test_digits_run_writes_the_run_directory_contract",
            "tests/test_avalanche.py::test_strategies_through_avalanche_write_a_complete_run_dir",
        ],
    ),
    Mutant(
        "stopped-run-heatmap-before-the-last-row",  # a stopped run's figure lags its file
        "lab/tracking/summary.py",
        '    if not results.get("acc_matrix"):\n        return\n',
        '    if not results.get("acc_matrix"):\n        return\n'
        '    if results.get("status") == "failed":\n'
        '        results = {**results, "acc_matrix": results["acc_matrix"][:-1]}\n',
        [
            "tests/test_cluster.py::test_sigterm_stops_a_run_after_saving_and_the_same_command_resumes_it"
        ],
    ),
    Mutant(
        "second-signal-not-ignored",
        "lab/preemption.py",
        "    if _received:  # a second signal while the run saves: ignored\n        return\n",
        "",
        ["tests/test_cluster.py::test_a_second_signal_while_the_run_saves_is_ignored"],
    ),
    Mutant(
        "avalanche-replay-buffers-swapped",
        "lab/avalanche/strategies.py",
        'buffer = ReservoirSamplingBuffer if policy == "reservoir" else ClassBalancedBuffer',
        'buffer = ClassBalancedBuffer if policy == "reservoir" else ReservoirSamplingBuffer',
        ["tests/test_avalanche.py::test_replay_mapping_policy_is_the_buffer_class"],
    ),
    Mutant(
        "avalanche-agem-arguments-swapped",
        "lab/avalanche/strategies.py",
        'AGEMPlugin(params["patterns_per_exp"], params["sample_size"])',
        'AGEMPlugin(params["sample_size"], params["patterns_per_exp"])',
        [
            "tests/test_avalanche.py::test_agem_and_der_mappings_pass_each_setting_to_its_own_argument"
        ],
    ),
    Mutant(
        "avalanche-der-alpha-beta-swapped",
        "lab/avalanche/strategies.py",
        'alpha=params["alpha"],\n            beta=params["beta"],',
        'alpha=params["beta"],\n            beta=params["alpha"],',
        [
            "tests/test_avalanche.py::test_agem_and_der_mappings_pass_each_setting_to_its_own_argument"
        ],
    ),
    # class-IL scored task-IL by masking (issue 27)
    Mutant(
        "task-masked-unmasked",
        "lab/engine.py",
        "chosen = outputs[logits[:, outputs].argmax(1)]",
        "chosen = logits.argmax(1)",
        ["tests/test_engine.py::test_a_class_il_run_is_also_scored_task_il_by_masking"],
    ),
    Mutant(
        "task-masked-metrics-of-r",
        "lab/tracking/results.py",
        'self.data["metrics_task_masked"] = accuracy_metrics(masked, init)',
        'self.data["metrics_task_masked"] = accuracy_metrics(self.data["acc_matrix"], init)',
        ["tests/test_engine.py::test_a_class_il_run_is_also_scored_task_il_by_masking"],
    ),
    Mutant(
        "report-task-masked-column-of-r",
        "lab/report/runs.py",
        'return (results.get("metrics_task_masked") or {}).get(metric[len("task_masked_") :])',
        'return (results.get("metrics") or {}).get(metric[len("task_masked_") :])',
        ["tests/test_report.py::test_task_il_masked_column_by_hand"],
    ),
    Mutant(
        "wandb-task-masked-row-of-r",
        "lab/experiment.py",
        'else (task.task_masked, results.data.get("metrics_task_masked", {})),',
        'else (task.accuracies, results.data.get("metrics_task_masked", {})),',
        ["tests/test_wandb.py::test_what_a_run_logs"],
    ),
    # the reproducibility contract (issue 27)
    Mutant(
        "report-blind-to-thread-counts",
        "lab/report/runs.py",
        'for k in ("device", "device_name", "threads") if k in run.results',
        'for k in ("device", "device_name") if k in run.results',
        [
            "tests/test_report.py::test_a_table_of_runs_on_other_thread_counts_or_versions_says_so_in_one_line"
        ],
    ),
    Mutant(
        "numpy-version-not-recorded",
        "lab/tracking/results.py",
        '        "numpy": np.__version__,\n',
        "",
        ["tests/test_run.py::test_digits_run_writes_the_run_directory_contract"],
    ),
    # the digits read and split without scikit-learn (issue 27: the suite's time)
    Mutant(
        "stratified-ties-not-random",  # the largest remainders first, in index order
        "lab/data/stratified.py",
        "floored[rng.choice(tied, size=add_now, replace=False)] += 1",
        "floored[tied[:add_now]] += 1",
        [
            "tests/test_datasets.py::test_the_stratified_split_is_scikit_learns_in_its_order_and_its_ties"
        ],
    ),
    Mutant(
        "stratified-test-size-rounded-down",
        "lab/data/stratified.py",
        "num_test = math.ceil(test_fraction * len(labels))",
        "num_test = int(test_fraction * len(labels))",
        [
            "tests/test_datasets.py::test_the_stratified_split_is_scikit_learns_in_its_order_and_its_ties"
        ],
    ),
    Mutant(
        "stratified-no-final-shuffle",
        "lab/data/stratified.py",
        "return rng.permutation(train), rng.permutation(test)",
        "return np.array(train), np.array(test)",
        [
            "tests/test_datasets.py::test_the_stratified_split_is_scikit_learns_in_its_order_and_its_ties"
        ],
    ),
    Mutant(
        "stratified-test-counts-from-all",  # not from what the train side left
        "lab/data/stratified.py",
        "test_counts = _approximate_mode(class_counts - train_counts, num_test, rng)",
        "test_counts = _approximate_mode(class_counts, num_test, rng)",
        [
            "tests/test_datasets.py::test_the_stratified_split_is_scikit_learns_in_its_order_and_its_ties"
        ],
    ),
    Mutant(
        "digits-pixels-over-255",  # the csv holds 0-16
        "lab/data/datasets.py",
        "astype(np.float32) / 16.0)",
        "astype(np.float32) / 255.0)",
        [
            "tests/test_datasets.py::test_digits_are_scikit_learns_images_and_split_read_without_importing_it"
        ],
    ),
    Mutant(
        "digits-split-seed-1",
        "lab/data/datasets.py",
        "stratified_split(labels, test_fraction, seed=0)",
        "stratified_split(labels, test_fraction, seed=1)",
        [
            "tests/test_datasets.py::test_digits_are_scikit_learns_images_and_split_read_without_importing_it"
        ],
    ),
    # what a pre-trained model forgets, and the remedies (issue 29)
    Mutant(
        "pretrain-model-head-not-loaded",  # the source head left at its random init
        "lab/experiment.py",
        "        model.source_head.load_state_dict(own_head.state_dict())\n",
        "        pass\n",
        [
            "tests/test_pretrained_forgetting.py::test_a_source_saved_in_timms_layout_is_the_models_own_with_the_same_column"
        ],
    ),
    Mutant(
        "timm-file-classifier-dropped",  # timm's loader then drops a head of another width
        "lab/models/timm_backbone.py",
        '            kwargs["pretrained_cfg_overlay"]["num_classes"] = classes\n',
        "",
        [
            "tests/test_pretrained_forgetting.py::test_a_source_saved_in_timms_layout_is_the_models_own_with_the_same_column"
        ],
    ),
    Mutant(
        "timm-build-moves-the-heads-rng",  # what timm draws then sets the lab's heads
        "lab/models/timm_backbone.py",
        "        with torch.random.fork_rng(devices=[]):\n            torch.manual_seed(seed)\n",
        "        if True:\n",
        [
            "tests/test_pretrained_forgetting.py::test_a_source_saved_in_timms_layout_is_the_models_own_with_the_same_column"
        ],
    ),
    Mutant(
        "imagenet-val-flat-layout-misread",
        "lab/data/folders.py",
        'wnid = path.parent.name if path.parent != directory else path.stem.rsplit("_", 1)[-1]',
        'wnid = path.parent.name if path.parent != directory else path.stem.split("_", 1)[-1]',
        [
            "tests/test_pretrained_forgetting.py::test_imagenet_val_reads_torchvisions_and_the_hubs_layouts_with_in1ks_labels"
        ],
    ),
    Mutant(
        "imagenet-crop-not-centred",
        "lab/data/folders.py",
        "    left, top = round((new[0] - size) / 2), round((new[1] - size) / 2)",
        "    left, top = 0, 0",
        [
            "tests/test_pretrained_forgetting.py::test_imagenets_evaluation_view_is_the_centre_of_the_shorter_side_at_size_over_0875"
        ],
    ),
    Mutant(
        "eval-samples-overlap-the-fisher-set",
        "lab/pretrain.py",
        "        rest[test_rows] = False\n",
        "",
        [
            "tests/test_pretrained_forgetting.py::test_eval_samples_draws_that_many_per_class_and_the_fisher_reads_the_rest"
        ],
    ),
    Mutant(
        "l2-sp-anchor-moves-with-each-task",  # lab's l2, not L2-SP
        "lab/strategies/l2_sp.py",
        "        if self.start is None:\n            self.start = {",
        "        if True:\n            self.start = {",
        [
            "tests/test_pretrained_forgetting.py::test_l2_sp_is_alpha_half_toward_the_start_plus_beta_half_on_the_heads"
        ],
    ),
    Mutant(
        "l2-sp-heads-toward-the-start-too",
        "lab/strategies/l2_sp.py",
        "        return ce + self.alpha / 2 * toward_start + self.beta / 2 * heads",
        "        return ce + self.alpha / 2 * toward_start + self.beta * heads",
        [
            "tests/test_pretrained_forgetting.py::test_l2_sp_is_alpha_half_toward_the_start_plus_beta_half_on_the_heads"
        ],
    ),
    Mutant(
        "wise-ft-interpolates-loras-a",
        "lab/strategies/wise_ft.py",
        'n: end[n] if ".lora_A." in n else torch.lerp(s0, end[n].to(s0.dtype), alpha)',
        "n: torch.lerp(s0, end[n].to(s0.dtype), alpha)",
        ["tests/test_pretrained_forgetting.py::test_wise_ft_interpolates_every_tensor_but_loras_a"],
    ),
    Mutant(
        "wise-ft-alpha-reversed",
        "lab/strategies/wise_ft.py",
        "self._floating(model), self.alpha))",
        "self._floating(model), 1 - self.alpha))",
        [
            "tests/test_pretrained_forgetting.py::test_wise_ft_curve_runs_from_the_pre_trained_source_to_plain_fine_tuning"
        ],
    ),
    Mutant(
        "wise-ft-curve-from-the-final-backbone",  # no pre-trained end: a flat curve
        "lab/strategies/wise_ft.py",
        "            self._load(model, interpolated(self.start, final, alpha))",
        "            self._load(model, interpolated(final, final, alpha))",
        [
            "tests/test_pretrained_forgetting.py::test_wise_ft_curve_runs_from_the_pre_trained_source_to_plain_fine_tuning"
        ],
    ),
    Mutant(
        "lp-ft-backbone-not-frozen",
        "lab/engine.py",
        "        p.requires_grad_(id(p) in heads)\n",
        "        p.requires_grad_(True)\n",
        [
            "tests/test_pretrained_forgetting.py::test_lp_ft_trains_the_heads_alone_first_and_gives_the_rest_back"
        ],
    ),
    Mutant(
        "lp-ft-skipped",
        "lab/engine.py",
        "        if finetune.lp_epochs:  # LP-FT: the heads alone first (lab.finetune)",
        "        if False:",
        [
            "tests/test_pretrained_forgetting.py::test_lp_ft_runs_end_to_end_and_differs_from_fine_tuning"
        ],
    ),
    Mutant(
        "pareto-front-keeps-dominated-points",
        "lab/report/figures.py",
        "(x2 >= x and y2 >= y) and (x2 > x or y2 > y)",
        "(x2 > x and y2 > y)",
        [
            "tests/test_pretrained_forgetting.py::test_the_pareto_front_and_the_mean_wise_ft_curve_by_hand"
        ],
    ),
    # text streams on a Hugging Face encoder (issue 32)
    Mutant(
        "text-batch-not-cut",  # every batch at the stream's whole width
        "lab/data/tokens.py",
        "longest = max(int(lengths.max()), 1) if len(batch) else 1",
        "longest = batch.shape[1] - 1",
        [
            "tests/test_text.py::test_a_batch_is_cut_to_its_longest_sequence_with_the_mask_from_the_lengths"
        ],
    ),
    Mutant(
        "text-mask-one-pad-more",
        "lab/data/tokens.py",
        "mask = (torch.arange(longest, device=batch.device)[None, :] < lengths[:, None]).long()",
        "mask = (torch.arange(longest, device=batch.device)[None, :] <= lengths[:, None]).long()",
        [
            "tests/test_text.py::test_a_batch_is_cut_to_its_longest_sequence_with_the_mask_from_the_lengths"
        ],
    ),
    Mutant(
        "hf-mean-pooling-counts-pads",
        "lab/models/hf_backbone.py",
        "weights = mask.to(hidden.dtype).unsqueeze(-1)",
        "weights = torch.ones_like(mask, dtype=hidden.dtype).unsqueeze(-1)",
        ["tests/test_text.py::test_cls_and_mean_pooling_by_hand_and_pads_change_nothing"],
    ),
    Mutant(
        "hf-cls-pooling-last-position",
        "lab/models/hf_backbone.py",
        "return hidden[:, 0]",
        "return hidden[:, -1]",
        ["tests/test_text.py::test_cls_and_mean_pooling_by_hand_and_pads_change_nothing"],
    ),
    Mutant(
        "mlm-masks-the-next-token",  # the mask one position off the token scored
        "lab/models/hf_mlm.py",
        "masked[rows, 1 + columns] = tokenizer.mask_token_id",
        "masked[rows, 2 + columns] = tokenizer.mask_token_id",
        ["tests/test_text.py::test_the_mlm_column_by_hand_on_a_three_sentence_text"],
    ),
    Mutant(
        "mlm-masks-special-tokens",
        "lab/models/hf_mlm.py",
        "        if not special\n",
        "        if True\n",
        ["tests/test_text.py::test_the_mlm_column_by_hand_on_a_three_sentence_text"],
    ),
    Mutant(
        "mlm-accuracy-per-row",  # correct masked tokens over the text's lines
        "lab/models/hf_mlm.py",
        "return correct.item() / len(text.targets)",
        "return correct.item() / len(text.masked)",
        ["tests/test_text.py::test_the_mlm_column_by_hand_on_a_three_sentence_text"],
    ),
    Mutant(
        "csv-missing-column-unchecked",
        "lab/data/text.py",
        "            if column not in columns:",
        "            if False:",
        [
            "tests/test_text.py::test_a_bad_csv_file_gets_one_line_naming_the_file_the_row_and_the_valid_values"
        ],
    ),
    Mutant(
        "csv-empty-text-kept",
        "lab/data/text.py",
        "            if not text:",
        "            if False:",
        [
            "tests/test_text.py::test_a_bad_csv_file_gets_one_line_naming_the_file_the_row_and_the_valid_values"
        ],
    ),
    Mutant(
        "csv-unknown-label-unchecked",
        "lab/data/text.py",
        "            if label not in labels:",
        "            if False:",
        [
            "tests/test_text.py::test_a_bad_csv_file_gets_one_line_naming_the_file_the_row_and_the_valid_values"
        ],
    ),
    Mutant(
        "tokens-cache-ignores-max-length",
        "lab/data/text.py",
        'f"{TOKENIZE}:{tokenizer_key(tokenizer)}:{max_length}"',
        'f"{TOKENIZE}:{tokenizer_key(tokenizer)}"',
        ["tests/test_text.py::test_csv_tasks_are_tokenised_once_into_a_cache_keyed_by_max_length"],
    ),
    Mutant(
        "ewc-broadcast-embedding-not-expanded",  # BERT's positions: one delta for the batch
        "lab/strategies/ewc.py",
        "if isinstance(module, torch.nn.Embedding) and len(output) == 1 and n > 1:",
        "if False:",
        [
            "tests/test_text.py::test_ewc_and_mas_closed_forms_match_per_sample_autograd_on_embeddings_and_norms"
        ],
    ),
    Mutant(
        "ewc-layernorm-batch-gradient",  # the square of the batch's sum, not the sum of squares
        "lab/strategies/ewc.py",
        "return (f(per_weight) * scale).sum(0), bias",
        "return f((per_weight * scale).sum(0)), bias",
        [
            "tests/test_text.py::test_ewc_and_mas_closed_forms_match_per_sample_autograd_on_embeddings_and_norms"
        ],
    ),
    # tuning on validation data, the first tasks, the Optuna sweeper (issue 33)
    Mutant(
        "validation-slice-trained-on",
        "lab/data/streams.py",
        "train_rows = (in_task & ~held).nonzero()[:, 0]",
        "train_rows = in_task.nonzero()[:, 0]",
        [
            "tests/test_hpo.py::test_the_validation_slice_is_seeded_per_class_and_disjoint_from_training"
        ],
    ),
    Mutant(
        "validation-slice-unseeded",
        "lab/data/streams.py",
        "generator = torch.Generator().manual_seed(seed * 1_000_003 + 17)",
        "generator = torch.Generator().manual_seed(17)",
        [
            "tests/test_hpo.py::test_the_validation_slice_is_seeded_per_class_and_disjoint_from_training"
        ],
    ),
    Mutant(
        "validation-run-evaluates-the-test-sets",
        "lab/data/streams.py",
        """    if evaluate_on == "validation":  # the held-out rows are what is evaluated""",
        """    if False:""",
        ["tests/test_hpo.py::test_a_validation_run_reads_no_test_set"],
    ),
    Mutant(
        "results-json-without-the-split",
        "lab/experiment.py",
        'results.data["eval_split"] = split',
        'results.data["eval_split"] = "test"',
        ["tests/test_hpo.py::test_a_validation_run_reads_no_test_set"],
    ),
    Mutant(
        "tuning-tasks-kept-in-the-final-stream",
        "lab/data/streams.py",
        'chosen = stream.tasks[:tuning_tasks] if part == "tuning" else stream.tasks[tuning_tasks:]',
        'chosen = stream.tasks[:tuning_tasks] if part == "tuning" else stream.tasks',
        ["tests/test_hpo.py::test_tuning_tasks_tune_on_the_first_k_and_report_on_the_rest"],
    ),
    Mutant(
        "report-mixes-splits",
        "lab/report/runs.py",
        "    if len(by_split) < 2:\n        return",
        "    if True:\n        return",
        ["tests/test_hpo.py::test_the_report_refuses_to_mix_splits_and_names_the_split"],
    ),
    Mutant(
        "caption-without-the-split",
        "lab/report/tables.py",
        'text += "; " + measured_on(table) + "."',
        'text += "."',
        ["tests/test_hpo.py::test_the_report_refuses_to_mix_splits_and_names_the_split"],
    ),
    Mutant(
        "diverged-trial-scored",
        "lab/hpo.py",
        '    if results.get("diverged"):\n        return None',
        "    if False:\n        return None",
        ["tests/test_hpo.py::test_a_failed_diverged_or_unscored_trial_has_no_objective"],
    ),
    Mutant(
        "failed-trial-told-as-zero",
        "hydra_plugins/lab_hpo_sweeper/sweeper.py",
        "study.tell(number, state=TrialState.FAIL)\n                log.warning",
        "study.tell(number, 0.0)\n                log.warning",
        [
            "tests/test_hpo.py::test_the_sweeper_records_failed_trials_as_failed_and_resumes_a_cut_trial"
        ],
    ),
    Mutant(
        "cut-trial-not-run-again",
        "hydra_plugins/lab_hpo_sweeper/sweeper.py",
        "for cut in [t for t in study.trials if t.state == TrialState.RUNNING]:",
        "for cut in []:",
        [
            "tests/test_hpo.py::test_the_sweeper_records_failed_trials_as_failed_and_resumes_a_cut_trial"
        ],
    ),
    Mutant(
        "finished-search-not-said",
        "hydra_plugins/lab_hpo_sweeper/sweeper.py",
        "if len(finished) >= settings.trials:",
        "if False:",
        [
            "tests/test_hpo.py::test_the_sweeper_records_failed_trials_as_failed_and_resumes_a_cut_trial"
        ],
    ),
    Mutant(
        "best-trial-minimises-acc",
        "lab/hpo.py",
        'sign = 1 if directions[0] == "maximize" else -1',
        "sign = -1",
        [
            "tests/test_hpo.py::test_the_sweeper_records_failed_trials_as_failed_and_resumes_a_cut_trial"
        ],
    ),
    Mutant(
        "best-command-without-the-preset-strategy",
        "lab/hpo.py",
        "kept.insert(0, f\"strategy={choices['strategy']}\")",
        "pass",
        [
            "tests/test_hpo.py::test_a_search_on_digits_completes_resumes_after_a_kill_and_best_reruns_its_config"
        ],
    ),
    # the PEFT menu (issue 30): each mode's equation, trainable set and refusal
    Mutant(
        "ia3-scales-fc1-not-fc2",  # the MLP's input, not its inner activation
        "lab/finetune/ia3.py",
        'feedforward = [f"model.blocks.{i}.mlp.fc2" for i in range(len(vit.blocks))]',
        'feedforward = [f"model.blocks.{i}.mlp.fc1" for i in range(len(vit.blocks))]',
        ["tests/test_peft.py::test_ia3_rescales_keys_values_and_the_mlps_activation_by_hand"],
    ),
    Mutant(
        "bitfit-trains-norm-weights-too",
        "lab/finetune/bitfit.py",
        "        p.requires_grad_(is_bias(name))",
        '        p.requires_grad_(is_bias(name) or "norm" in name)',
        [
            "tests/test_peft.py::test_each_modes_trainable_set_exactly",
            "tests/test_peft.py::test_bitfit_on_an_mlp_trains_its_biases_alone",
        ],
    ),
    Mutant(
        "adapter-up-not-zero-at-init",
        "lab/finetune/adapter.py",
        "        nn.init.zeros_(self.up.weight)\n",
        "",
        ["tests/test_peft.py::test_the_adapters_branch_is_zero_at_the_start_and_by_hand"],
    ),
    Mutant(
        "adapter-parallel-unscaled",
        "lab/finetune/adapter.py",
        "        return self.scale * self.up(self.act(self.down(h)))",
        "        return self.up(self.act(self.down(h)))",
        ["tests/test_peft.py::test_the_adapters_branch_is_zero_at_the_start_and_by_hand"],
    ),
    Mutant(
        "adapter-sequential-reads-the-input",  # Houlsby's adapter reads f(h), not h
        "lab/finetune/adapter.py",
        "        return output + self(output)",
        "        return output + self(args[0])",
        ["tests/test_peft.py::test_the_adapters_branch_is_zero_at_the_start_and_by_hand"],
    ),
    Mutant(
        "vpt-prompts-before-the-class-token",
        "lab/finetune/vpt.py",
        "        return (torch.cat([x[:, :p], prompts, rest], dim=1), *args[1:])",
        "        return (torch.cat([prompts, x[:, :p], rest], dim=1), *args[1:])",
        [
            "tests/test_peft.py::test_vpts_tokens_sit_after_the_class_token_and_the_output_ignores_them"
        ],
    ),
    Mutant(
        "vpt-prompts-kept-to-the-pooling",
        "lab/finetune/vpt.py",
        "        return torch.cat([output[:, :p], output[:, p + self.tokens.shape[1] :]], dim=1)",
        "        return output",
        [
            "tests/test_peft.py::test_vpts_tokens_sit_after_the_class_token_and_the_output_ignores_them"
        ],
    ),
    Mutant(
        "vpt-deep-prompts-appended-not-replaced",
        "lab/finetune/vpt.py",
        "        rest = x[:, p:] if self.insert else x[:, p + self.tokens.shape[1] :]",
        "        rest = x[:, p:]",
        [
            "tests/test_peft.py::test_vpts_tokens_sit_after_the_class_token_and_the_output_ignores_them"
        ],
    ),
    Mutant(
        "prefix-values-not-prepended",
        "lab/finetune/prefix.py",
        "    v = torch.cat([values.to(v.dtype), v], dim=2)",
        "    v = torch.cat([v[:, :, : values.shape[2]], v], dim=2)",
        ["tests/test_peft.py::test_prefix_keys_and_values_join_the_attention_by_hand"],
    ),
    Mutant(
        "prefix-unfused-unscaled",
        "lab/finetune/prefix.py",
        "        weights = (q * dim**-0.5) @ k.transpose(-2, -1)",
        "        weights = q @ k.transpose(-2, -1)",
        ["tests/test_peft.py::test_prefix_keys_and_values_join_the_attention_by_hand"],
    ),
    Mutant(
        "vit-mode-not-refused-on-an-mlp",
        "lab/finetune/registry.py",
        "    if chosen.supports(backbone):\n        return\n",
        "    if chosen.supports(backbone) or True:\n        return\n",
        ["tests/test_peft.py::test_a_vit_mode_on_an_mlp_is_refused_in_one_line"],
    ),
    Mutant(
        "per-task-in-class-il-allowed",
        "lab/config.py",
        """    if config["finetune"]["per_task"] and config["scenario"] != "task":""",
        """    if config["finetune"]["per_task"] and config["scenario"] == "none":""",
        ["tests/test_peft.py::test_bad_peft_values_are_one_line"],
    ),
    Mutant(
        "per-task-originals-trainable",  # the source's modules would train with every task
        "lab/finetune/per_task.py",
        "        for n in names:\n            params[n].requires_grad_(False)\n",
        "",
        ["tests/test_peft.py::test_task_1s_training_leaves_task_0s_modules_bit_for_bit"],
    ),
    Mutant(
        "per-task-always-the-first-set",
        "lab/finetune/per_task.py",
        "backbone.task_modules.of(task_ids), (x,)",
        "backbone.task_modules.of(0), (x,)",
        ["tests/test_peft.py::test_task_1s_training_leaves_task_0s_modules_bit_for_bit"],
    ),
    Mutant(
        "per-task-mixed-batch-one-set",
        "lab/finetune/per_task.py",
        "        if len(ids) > 1:",
        "        if len(ids) > 99:",
        ["tests/test_peft.py::test_task_1s_training_leaves_task_0s_modules_bit_for_bit"],
    ),
    Mutant(
        "engine-ignores-the-task-id-for-features",
        "lab/engine.py",
        "            features = model.features(batch.x, task_ids)",
        "            features = model.features(batch.x, None)",
        ["tests/test_peft.py::test_task_1s_training_leaves_task_0s_modules_bit_for_bit"],
    ),
    Mutant(
        "trainable-parameters-heads-counted-in-backbone",
        "lab/finetune/__init__.py",
        '    return {"backbone_modules": backbone, "heads": total - backbone, "total": total}',
        '    return {"backbone_modules": total, "heads": total - backbone, "total": total}',
        ["tests/test_peft.py::test_each_modes_trainable_set_exactly"],
    ),
    Mutant(
        "report-train-time-column-dropped",
        "lab/report/tables.py",
        ', ("train_s", "Train time (s)", 0)]',
        "]",
        ["tests/test_peft.py::test_the_report_shows_trainable_parameters_and_train_time"],
    ),
    Mutant(
        "wandb-trainable-parameters-not-in-summary",
        "lab/tracking/wandb_run.py",
        '                self.run.summary[f"trainable_parameters_{key}"] = value',
        "                pass",
        ["tests/test_wandb.py::test_what_a_run_logs"],
    ),
    Mutant(
        "ewc-fisher-of-unreached-layers",
        "lab/strategies/ewc.py",
        "    linears = {name: module for name, module in linears.items() if name in outputs}\n",
        "",
        [
            "tests/test_strategies.py::test_class_il_ewc_after_a_source_gives_the_stream_head_zero_fisher"
        ],
    ),
    # a method's own modules and steps (Strategy.attach, Strategy.train_steps)
    Mutant(
        "attach-skipped-on-resume",
        "lab/experiment.py",
        "    setup.strategy.attach(setup.model, setup.stream)\n",
        "",
        [
            "tests/test_engine.py::test_a_method_attaches_its_modules_before_the_optimizer_and_a_resume"
        ],
    ),
    Mutant(
        "train-steps-ignored",
        "lab/engine.py",
        "    steps = strategy.train_steps(task, steps)\n",
        "",
        [
            "tests/test_engine.py::test_a_method_attaches_its_modules_before_the_optimizer_and_a_resume"
        ],
    ),
    # issue 31: slca
    Mutant(
        "slca-covariance-biased",
        "lab/strategies/slca.py",
        "covariance = torch.cov(h.T) + ridge",
        "covariance = torch.cov(h.T, correction=0) + ridge",
        [
            "tests/test_ptm_slca.py::test_class_statistics_are_the_mean_and_the_unbiased_covariance_plus_the_ridge"
        ],
    ),
    Mutant(
        "slca-no-covariance-ridge",
        "lab/strategies/slca.py",
        "torch.cov(h.T) + ridge * torch.eye",
        "torch.cov(h.T) + 0 * torch.eye",
        [
            "tests/test_ptm_slca.py::test_class_statistics_are_the_mean_and_the_unbiased_covariance_plus_the_ridge"
        ],
    ),
    Mutant(
        "slca-samples-from-global-rng",
        "lab/strategies/slca.py",
        "z = torch.randn(count, mean.shape[0], generator=generator)",
        "z = torch.randn(count, mean.shape[0])",
        [
            "tests/test_ptm_slca.py::test_alignment_samples_come_from_the_strategys_generator_with_each_classs_moments"
        ],
    ),
    Mutant(
        "slca-cholesky-transposed",
        "lab/strategies/slca.py",
        "torch.matmul(scale_tril, z.unsqueeze(-1))",
        "torch.matmul(scale_tril.T, z.unsqueeze(-1))",
        [
            "tests/test_ptm_slca.py::test_alignment_samples_come_from_the_strategys_generator_with_each_classs_moments"
        ],
    ),
    Mutant(
        "slca-old-means-not-shrunk",
        "lab/strategies/slca.py",
        "scale = 1 - self.mean_shrink + self.mean_shrink * (k + 1) / seen",
        "scale = 1.0",
        [
            "tests/test_ptm_slca.py::test_alignment_samples_come_from_the_strategys_generator_with_each_classs_moments"
        ],
    ),
    Mutant(
        "slca-logit-norm-max-not-mean",
        "lab/strategies/slca.py",
        "    ).mean(dim=-1, keepdim=True)\n    return logits / norms / tau",
        "    ).amax(dim=-1, keepdim=True)\n    return logits / norms / tau",
        [
            "tests/test_ptm_slca.py::test_logit_normalisation_divides_by_the_mean_of_each_tasks_norm_over_tau"
        ],
    ),
    Mutant(
        "slca-logit-norm-without-tau",
        "lab/strategies/slca.py",
        "return logits / norms / tau",
        "return logits / norms",
        [
            "tests/test_ptm_slca.py::test_logit_normalisation_divides_by_the_mean_of_each_tasks_norm_over_tau"
        ],
    ),
    Mutant(
        "slca-loss-over-every-output",
        "lab/strategies/slca.py",
        "F.cross_entropy(logits[:, outputs].float(), position[batch.y])",
        "F.cross_entropy(logits.float(), batch.y)",
        [
            "tests/test_ptm_slca.py::test_the_slow_learners_loss_is_the_cross_entropy_over_the_tasks_own_classes"
        ],
    ),
    Mutant(
        "slca-alignment-without-momentum",
        "lab/strategies/slca.py",
        "momentum=self.ca_momentum,",
        "momentum=0.0,",
        [
            "tests/test_ptm_slca.py::test_one_alignment_epoch_is_sgd_with_momentum_on_the_seen_rows_by_hand"
        ],
    ),
    Mutant(
        "slca-alignment-without-weight-decay",
        "lab/strategies/slca.py",
        "            weight_decay=decay,\n",
        "            weight_decay=0.0,\n",
        [
            "tests/test_ptm_slca.py::test_one_alignment_epoch_is_sgd_with_momentum_on_the_seen_rows_by_hand"
        ],
    ),
    Mutant(
        "slca-alignment-at-a-fixed-lr",
        "lab/strategies/slca.py",
        "lr=self.ca_lr if self.ca_lr is not None else self.lr,",
        "lr=0.01,",
        [
            "tests/test_ptm_slca.py::test_one_alignment_epoch_is_sgd_with_momentum_on_the_seen_rows_by_hand"
        ],
    ),
    Mutant(
        "slca-alignment-unshuffled",
        "lab/strategies/slca.py",
        "inputs, targets = inputs[order], targets[order]",
        "pass",
        [
            "tests/test_ptm_slca.py::test_one_alignment_epoch_is_sgd_with_momentum_on_the_seen_rows_by_hand"
        ],
    ),
    Mutant(
        "slca-aligned-rows-not-written-back",
        "lab/strategies/slca.py",
        "            head.weight[index] = weight\n",
        "",
        [
            "tests/test_ptm_slca.py::test_one_alignment_epoch_is_sgd_with_momentum_on_the_seen_rows_by_hand"
        ],
    ),
    Mutant(
        "slca-head-init-from-global-rng",
        "lab/strategies/slca.py",
        "std=0.02, generator=self.generator)",
        "std=0.02)",
        [
            "tests/test_ptm_slca.py::test_the_heads_start_as_the_references_from_the_strategys_generator"
        ],
    ),
    Mutant(
        "slca-any-scenario",
        "lab/config.py",
        "        if valid is not None and value not in valid:",
        "        if False:",
        ["tests/test_ptm_slca.py::test_hyperparameters_are_checked_and_other_scenarios_refused"],
    ),
    Mutant(
        "slca-lr-ratio-ignored",
        "lab/strategies/slca.py",
        '"lr": group["lr"] * self.lr_ratio}',
        '"lr": group["lr"]}',
        [
            "tests/test_ptm_slca.py::test_the_backbone_trains_at_lr_ratio_times_the_heads_lr_without_the_optimizers_decay"
        ],
    ),
    Mutant(
        "slca-param-groups-hook-not-called",
        "lab/engine.py",
        "groups = strategy.param_groups(model, ft.param_groups(model, finetune, settings_i.lr))",
        "groups = ft.param_groups(model, finetune, settings_i.lr)",
        [
            "tests/test_ptm_slca.py::test_the_backbone_trains_at_lr_ratio_times_the_heads_lr_without_the_optimizers_decay"
        ],
    ),
    Mutant(
        "slca-optimizer-keeps-its-decay",
        "lab/strategies/slca.py",
        "return dataclasses.replace(settings, weight_decay=0.0)",
        "return settings",
        [
            "tests/test_ptm_slca.py::test_the_backbone_trains_at_lr_ratio_times_the_heads_lr_without_the_optimizers_decay",
            "tests/test_ptm_slca.py::test_the_slow_learner_moves_only_the_rows_of_the_tasks_own_classes",
        ],
    ),
    Mutant(
        "slca-decay-on-every-row",
        "lab/strategies/slca.py",
        "p.grad[rows] = p.grad[rows].add(p[rows], alpha=self.weight_decay)",
        "p.grad.add_(p, alpha=self.weight_decay)",
        [
            "tests/test_ptm_slca.py::test_the_slow_learner_moves_only_the_rows_of_the_tasks_own_classes"
        ],
    ),
    Mutant(
        "slca-no-recall-before-the-next-task",
        "lab/strategies/slca.py",
        "if self.unaligned is not None:  # the reference's",
        "if False:  # the reference's",
        [
            "tests/test_ptm_slca.py::test_alignment_follows_every_task_but_the_first_and_the_next_task_trains_from_before_it"
        ],
    ),
    Mutant(
        "slca-aligns-after-the-first-task",
        "lab/strategies/slca.py",
        "if len(tasks) > 1 and self.ca_epochs > 0:",
        "if self.ca_epochs > 0:",
        [
            "tests/test_ptm_slca.py::test_alignment_follows_every_task_but_the_first_and_the_next_task_trains_from_before_it"
        ],
    ),
    Mutant(
        "slca-unaligned-head-not-resumed",
        "lab/strategies/slca.py",
        'self.unaligned = state["unaligned"]',
        "self.unaligned = None",
        ["tests/test_ptm_slca.py::test_slca_resumes_bit_for_bit_after_a_cut_before_task_2"],
    ),
    # issue 31: prompt (L2P, DualPrompt, CODA-Prompt: lab/strategies/prompting.py and theirs)
    Mutant(
        "prompt-top-n-lowest",
        "lab/strategies/prompting.py",
        "    idx = similarity.topk(n, dim=1).indices\n",
        "    idx = (-similarity).topk(n, dim=1).indices\n",
        [
            "tests/test_ptm_prompt.py::test_top_n_takes_the_keys_of_highest_cosine_and_the_batchwise_vote_the_most_chosen"
        ],
    ),
    Mutant(
        "prompt-batchwise-ignored",
        "lab/strategies/prompting.py",
        "    if not batchwise:\n",
        "    if True:\n",
        [
            "tests/test_ptm_prompt.py::test_top_n_takes_the_keys_of_highest_cosine_and_the_batchwise_vote_the_most_chosen"
        ],
    ),
    Mutant(
        "prompt-pull-not-per-sample",
        "lab/strategies/prompting.py",
        "    return (chosen_keys * query.unsqueeze(1)).sum() / len(query)\n",
        "    return (chosen_keys * query.unsqueeze(1)).sum()\n",
        [
            "tests/test_ptm_prompt.py::test_the_pull_constraint_is_the_chosen_keys_cosines_summed_over_the_batch_divided_by_it"
        ],
    ),
    Mutant(
        "prompt-train-mask-off",
        "lab/strategies/prompting.py",
        "    current[task.outputs] = True\n",
        "    current[:] = True\n",
        [
            "tests/test_ptm_prompt.py::test_the_train_mask_is_the_cross_entropy_over_the_current_tasks_classes"
        ],
    ),
    Mutant(
        "prompt-unseen-classes-score",
        "lab/strategies/prompting.py",
        '        return logits.masked_fill(~self.seen, float("-inf"))\n',
        "        return logits\n",
        ["tests/test_ptm_prompt.py::test_unseen_classes_score_minus_infinity_until_their_task"],
    ),
    Mutant(
        "prompt-seen-not-checkpointed",
        "lab/strategies/prompting.py",
        "dtype=torch.bool))\n",
        "dtype=torch.bool), persistent=False)\n",
        [
            "tests/test_ptm_prompt.py::test_each_method_learns_the_stream_from_frozen_weights_and_resumes_bit_for_bit[l2p]"
        ],
    ),
    Mutant(
        "prompt-backbone-trains",
        "lab/strategies/prompting.py",
        "        model.backbone.requires_grad_(False)\n        model.heads[0] = SeenClassesHead",
        "        model.heads[0] = SeenClassesHead",
        [
            "tests/test_ptm_prompt.py::test_each_method_learns_the_stream_from_frozen_weights_and_resumes_bit_for_bit[dualprompt]"
        ],
    ),
    Mutant(
        "prompt-no-clipping",
        "lab/strategies/prompting.py",
        "        if self.clip_grad > 0:",
        "        if False:",
        ["tests/test_ptm_prompt.py::test_gradients_are_clipped_to_clip_grad_before_the_step"],
    ),
    Mutant(
        "prompt-scenario-unchecked",
        "lab/config.py",
        "        _check_strategy_setting(config, strategy)\n",
        "",
        ["tests/test_ptm_prompt.py::test_what_the_methods_cannot_run_is_refused_in_one_line"],
    ),
    Mutant(
        "l2p-prompt-without-position",
        "lab/strategies/l2p.py",
        "        chosen = vit.pos_drop(chosen + vit.pos_embed[:, :1].to(chosen.dtype))\n",
        "        chosen = vit.pos_drop(chosen)\n",
        [
            "tests/test_ptm_prompt.py::test_l2p_puts_the_chosen_prompts_after_the_class_token_and_reads_their_mean"
        ],
    ),
    Mutant(
        "l2p-head-reads-class-token",
        "lab/strategies/l2p.py",
        "        return head_input(vit, out[:, 1 : 1 + chosen.shape[1]].mean(dim=1))\n",
        "        return head_input(vit, out[:, 0])\n",
        [
            "tests/test_ptm_prompt.py::test_l2p_puts_the_chosen_prompts_after_the_class_token_and_reads_their_mean"
        ],
    ),
    Mutant(
        "l2p-pull-pushes",
        "lab/strategies/l2p.py",
        '        return -self.coeff * self.step_terms["pull"]\n',
        '        return self.coeff * self.step_terms["pull"]\n',
        [
            "tests/test_ptm_prompt.py::test_the_loss_is_the_masked_cross_entropy_and_the_methods_own_term[l2p]"
        ],
    ),
    Mutant(
        "dualprompt-own-e-prompt-at-test",
        "lab/strategies/dualprompt.py",
        "        own = self.own_slots(self.task.id) if backbone.training else None\n",
        "        own = self.own_slots(self.task.id)\n",
        [
            "tests/test_ptm_prompt.py::test_dualprompt_trains_the_tasks_own_e_prompt_and_tests_the_best_matching_key"
        ],
    ),
    Mutant(
        "dualprompt-key-matching-in-training",
        "lab/strategies/dualprompt.py",
        "        if own is not None:  # training",
        "        if False:  # training",
        [
            "tests/test_ptm_prompt.py::test_dualprompt_trains_the_tasks_own_e_prompt_and_tests_the_best_matching_key"
        ],
    ),
    Mutant(
        "dualprompt-new-e-prompt-not-copied",
        "lab/strategies/dualprompt.py",
        "] = e[:, :, previous.start : previous.stop]\n",
        "] = e[:, :, current.start : current.stop]\n",
        [
            "tests/test_ptm_prompt.py::test_dualprompt_starts_a_new_tasks_e_prompt_from_the_last_ones"
        ],
    ),
    Mutant(
        "dualprompt-key-value-swapped",
        "lab/strategies/dualprompt.py",
        "            prefixes[layer] = (kv[0], kv[1])\n",
        "            prefixes[layer] = (kv[1], kv[0])\n",
        [
            "tests/test_ptm_prompt.py::test_dualprompt_prefixes_are_the_g_prompt_and_the_chosen_e_prompts_key_and_value_halves"
        ],
    ),
    Mutant(
        "dualprompt-pull-pushes",
        "lab/strategies/dualprompt.py",
        '        return -self.coeff * self.step_terms["pull"]\n',
        '        return self.coeff * self.step_terms["pull"]\n',
        [
            "tests/test_ptm_prompt.py::test_the_loss_is_the_masked_cross_entropy_and_the_methods_own_term[dualprompt]"
        ],
    ),
    Mutant(
        "coda-alpha-without-attention",
        "lab/strategies/coda_prompt.py",
        "    attended = F.normalize(q.unsqueeze(1) * attention.unsqueeze(0), dim=2)  # (B, M, d)\n",
        "    attended = F.normalize(q.unsqueeze(1).expand(-1, len(attention), -1), dim=2)\n",
        [
            "tests/test_ptm_prompt.py::test_coda_attention_weights_are_the_cosine_of_the_attended_query_and_the_key"
        ],
    ),
    Mutant(
        "coda-alpha-key-unnormalised",
        "lab/strategies/coda_prompt.py",
        '    return torch.einsum("bkd,kd->bk", attended, F.normalize(keys, dim=1))\n',
        '    return torch.einsum("bkd,kd->bk", attended, keys)\n',
        [
            "tests/test_ptm_prompt.py::test_coda_attention_weights_are_the_cosine_of_the_attended_query_and_the_key"
        ],
    ),
    Mutant(
        "coda-ortho-summed",
        "lab/strategies/coda_prompt.py",
        "    return (gram - torch.eye(len(t), device=t.device, dtype=t.dtype)).square().mean()\n",
        "    return (gram - torch.eye(len(t), device=t.device, dtype=t.dtype)).square().sum()\n",
        [
            "tests/test_ptm_prompt.py::test_coda_orthogonality_penalty_is_the_mean_squared_distance_of_the_gram_to_identity"
        ],
    ),
    Mutant(
        "coda-ortho-off",
        "lab/strategies/coda_prompt.py",
        '        return self.ortho_mu * self.step_terms["ortho"]\n',
        "        return 0.0\n",
        [
            "tests/test_ptm_prompt.py::test_the_loss_is_the_masked_cross_entropy_and_the_methods_own_term[coda_prompt]"
        ],
    ),
    Mutant(
        "coda-keys-values-swapped",
        "lab/strategies/coda_prompt.py",
        "            prefixes[i] = (kv[:, :, :half], kv[:, :, half:])\n",
        "            prefixes[i] = (kv[:, :, half:], kv[:, :, :half])\n",
        [
            "tests/test_ptm_prompt.py::test_coda_prefixes_are_the_weighted_sum_of_components_split_into_keys_and_values"
        ],
    ),
    Mutant(
        "coda-gram-schmidt-no-projection",
        "lab/strategies/coda_prompt.py",
        "        out[k] = v - coefficients @ earlier\n",
        "        out[k] = v\n",
        [
            "tests/test_ptm_prompt.py::test_gram_schmidt_makes_a_tasks_rows_orthonormal_to_the_earlier_ones_and_zeroes_the_rest"
        ],
    ),
    Mutant(
        "coda-gram-schmidt-unnormalised",
        "lab/strategies/coda_prompt.py",
        "    out[start:end] = out[start:end] / out[start:end].norm(dim=1, keepdim=True)\n",
        "",
        [
            "tests/test_ptm_prompt.py::test_gram_schmidt_makes_a_tasks_rows_orthonormal_to_the_earlier_ones_and_zeroes_the_rest"
        ],
    ),
    Mutant(
        "coda-gram-schmidt-later-rows-kept",
        "lab/strategies/coda_prompt.py",
        "    out = torch.zeros_like(flat)\n",
        "    out = flat.clone()\n",
        [
            "tests/test_ptm_prompt.py::test_gram_schmidt_makes_a_tasks_rows_orthonormal_to_the_earlier_ones_and_zeroes_the_rest"
        ],
    ),
    Mutant(
        "coda-earlier-components-train",
        "lab/strategies/coda_prompt.py",
        "        return torch.cat([t[:start].detach(), t[start:end]]) if training else t[:end]\n",
        "        return t[:end]\n",
        [
            "tests/test_ptm_prompt.py::test_coda_trains_the_current_tasks_components_alone_and_tests_on_all_so_far"
        ],
    ),
    Mutant(
        "coda-no-new-components",
        "lab/strategies/coda_prompt.py",
        "        if task.id > 0:  # the new task's components",
        "        if False:  # the new task's components",
        [
            "tests/test_ptm_prompt.py::test_coda_trains_the_current_tasks_components_alone_and_tests_on_all_so_far"
        ],
    ),
    # issue 31: proto (SimpleCIL, APER, RanPAC, finetune.mode=ssf)
    Mutant(
        "aper-source-reads-the-concatenation",
        "lab/strategies/aper.py",
        "        if not head.adapted or (isinstance(task_ids, int) and task_ids == SOURCE):",
        "        if not head.adapted:",
        [
            "tests/test_ptm_proto.py::test_aper_scores_the_pretraining_source_on_the_adapted_backbone"
        ],
    ),
    Mutant(
        "proto-prototype-sum",
        "lab/strategies/prototypes.py",
        "features[labels == c].mean(0)",
        "features[labels == c].sum(0)",
        [
            "tests/test_ptm_proto.py::test_prototypes_are_class_means_scored_by_cosine_and_an_unbuilt_class_never_wins"
        ],
    ),
    Mutant(
        "proto-unbuilt-class-scores-0",
        "lab/strategies/prototypes.py",
        '        return logits.masked_fill(~self.known, float("-inf"))\n',
        "        return logits\n",
        [
            "tests/test_ptm_proto.py::test_prototypes_are_class_means_scored_by_cosine_and_an_unbuilt_class_never_wins"
        ],
    ),
    Mutant(
        "proto-features-not-normalised",
        "lab/strategies/prototypes.py",
        "F.linear(F.normalize(features, p=2, dim=1), F.normalize(weight, p=2, dim=1))",
        "F.linear(features, F.normalize(weight, p=2, dim=1))",
        [
            "tests/test_ptm_proto.py::test_prototypes_are_class_means_scored_by_cosine_and_an_unbuilt_class_never_wins"
        ],
    ),
    Mutant(
        "simplecil-trains",
        "lab/strategies/simplecil.py",
        "    def train_steps(self, task: Task, steps: int) -> int:\n        return 0\n",
        "    def train_steps(self, task: Task, steps: int) -> int:\n        return steps\n",
        ["tests/test_ptm_proto.py::test_simplecil_classifies_by_the_cosine_to_its_class_means"],
    ),
    Mutant(
        "simplecil-prototypes-in-train-mode",
        "lab/strategies/prototypes.py",
        "    return features_of(model, task.train_x)\n",
        "    return torch.cat([model.train().features(task.train_x[i : i + 256]) for i in"
        " range(0, len(task.train_x), 256)]).detach()\n",
        ["tests/test_ptm_proto.py::test_simplecil_classifies_by_the_cosine_to_its_class_means"],
    ),
    Mutant(
        "aper-no-concatenation",
        "lab/strategies/aper.py",
        "        return torch.cat([frozen(x), backbone(x)], dim=1)\n",
        "        return backbone(x)\n",
        [
            "tests/test_ptm_proto.py::test_aper_adapts_on_the_first_task_then_concatenates_the_pretrained_features"
        ],
    ),
    Mutant(
        "aper-frozen-copy-is-the-adapted-backbone",
        "lab/strategies/aper.py",
        "model.frozen_backbone = copy.deepcopy(model.backbone).requires_grad_(False)",
        "model.frozen_backbone = model.backbone",
        [
            "tests/test_ptm_proto.py::test_aper_adapts_on_the_first_task_then_concatenates_the_pretrained_features"
        ],
    ),
    Mutant(
        "aper-trains-every-task",
        "lab/strategies/aper.py",
        "        return steps if task.id == self.first else 0\n",
        "        return steps\n",
        [
            "tests/test_ptm_proto.py::test_aper_adapts_on_the_first_task_then_concatenates_the_pretrained_features"
        ],
    ),
    Mutant(
        "aper-not-frozen-after-the-session",
        "lab/strategies/aper.py",
        "            head.adapted.fill_(True)\n            model.requires_grad_(False)\n",
        "            head.adapted.fill_(True)\n",
        [
            "tests/test_ptm_proto.py::test_aper_adapts_on_the_first_task_then_concatenates_the_pretrained_features"
        ],
    ),
    Mutant(
        "first-session-head-over-every-class",
        "lab/strategies/prototypes.py",
        '        return self.adapt(features).masked_fill(self.outside_first, float("-inf"))\n',
        "        return self.adapt(features)\n",
        [
            "tests/test_ptm_proto.py::test_aper_adapts_on_the_first_task_then_concatenates_the_pretrained_features"
        ],
    ),
    Mutant(
        "ranpac-no-relu",
        "lab/strategies/ranpac.py",
        "        return F.relu(features @ self.projection.to(features.dtype))\n",
        "        return features @ self.projection.to(features.dtype)\n",
        ["tests/test_ptm_proto.py::test_ranpac_grows_its_gram_and_reads_out_by_ridge"],
    ),
    Mutant(
        "ranpac-gram-of-the-last-task-alone",
        "lab/strategies/ranpac.py",
        "        self.gram += h.T @ h\n",
        "        self.gram = h.T @ h\n",
        ["tests/test_ptm_proto.py::test_ranpac_grows_its_gram_and_reads_out_by_ridge"],
    ),
    Mutant(
        "ranpac-ridge-without-lambda",
        "lab/strategies/ranpac.py",
        "torch.linalg.solve(gram + lambda_ * eye, targets)",
        "torch.linalg.solve(gram + eye, targets)",
        ["tests/test_ptm_proto.py::test_ridge_readout_is_the_closed_form"],
    ),
    Mutant(
        "ranpac-lambda-fit-on-half",
        "lab/strategies/ranpac.py",
        "FIT_FRACTION = 0.8",
        "FIT_FRACTION = 0.5",
        ["tests/test_ptm_proto.py::test_lambda_is_the_grid_value_with_the_least_held_out_error"],
    ),
    Mutant(
        "ranpac-lambda-most-error",
        "lab/strategies/ranpac.py",
        "    best = min(range(len(grid)), key=lambda i: (errors[i], i))\n",
        "    best = max(range(len(grid)), key=lambda i: (errors[i], i))\n",
        ["tests/test_ptm_proto.py::test_lambda_is_the_grid_value_with_the_least_held_out_error"],
    ),
    Mutant(
        "ranpac-unlearnt-class-scores-0",
        "lab/strategies/ranpac.py",
        "        logits = self.expand(features) @ self.readout.to(features.dtype)\n"
        '        return logits.masked_fill(~self.known, float("-inf"))\n',
        "        return self.expand(features) @ self.readout.to(features.dtype)\n",
        ["tests/test_ptm_proto.py::test_ranpac_grows_its_gram_and_reads_out_by_ridge"],
    ),
    Mutant(
        "ranpac-gram-not-resumed",
        "lab/strategies/ranpac.py",
        '        self.gram, self.targets = state["gram"], state["targets"]\n',
        '        self.targets = state["targets"]\n',
        ["tests/test_ptm_proto.py::test_a_cut_run_resumes_bit_for_bit[ranpac]"],
    ),
    Mutant(
        "ranpac-lambdas-not-resumed",
        "lab/strategies/ranpac.py",
        '        self.lambdas = list(state["lambdas"])\n',
        "        self.lambdas = []\n",
        ["tests/test_ptm_proto.py::test_a_cut_run_resumes_bit_for_bit[ranpac]"],
    ),
    Mutant(
        "ssf-no-shift",
        "lab/finetune/ssf.py",
        "        return x * self.scale + self.shift\n",
        "        return x * self.scale\n",
        [
            "tests/test_ptm_proto.py::test_ssf_scales_and_shifts_after_pilots_ops_and_starts_as_the_same_function"
        ],
    ),
    Mutant(
        "ssf-misses-qkv",
        "lab/finetune/ssf.py",
        "ops += [block.norm1, block.attn.qkv, block.attn.proj, block.norm2]",
        "ops += [block.norm1, block.attn.proj, block.norm2]",
        [
            "tests/test_ptm_proto.py::test_ssf_scales_and_shifts_after_pilots_ops_and_starts_as_the_same_function"
        ],
    ),
    Mutant(
        "ssf-backbone-not-frozen",
        "lab/finetune/ssf.py",
        "    vit = vit_of(model.backbone)\n"
        "    model.backbone.requires_grad_(False)\n"
        "    for op in targets(vit):",
        "    vit = vit_of(model.backbone)\n    for op in targets(vit):",
        [
            "tests/test_ptm_proto.py::test_ssf_scales_and_shifts_after_pilots_ops_and_starts_as_the_same_function"
        ],
    ),
    Mutant(
        "ssf-not-identity-at-init",
        "lab/finetune/ssf.py",
        "        self.scale = nn.Parameter(torch.ones(width))\n",
        "        self.scale = nn.Parameter(torch.full((width,), 1.01))\n",
        [
            "tests/test_ptm_proto.py::test_ssf_scales_and_shifts_after_pilots_ops_and_starts_as_the_same_function"
        ],
    ),
    Mutant(
        "proto-scenario-not-checked",
        "lab/strategies/aper.py",
        '    scenarios = ("class",)  # lab.config refuses the others in one line\n',
        "",
        ["tests/test_ptm_proto.py::test_each_config_composes_and_class_il_is_their_scenario"],
    ),
    Mutant(
        "proto-any-finetune-mode",
        "lab/config.py",
        "    if adapts and mode not in ADAPTATION_MODES:\n",
        "    if False:\n",
        ["tests/test_ptm_proto.py::test_the_first_session_adapts_what_the_backbone_has"],
    ),
]


def scratch_copy(into: Path) -> None:
    for name in COPIED:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, into / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, into / name)


def apply(mutant: Mutant, root: Path) -> str | None:
    """Edit the copy; returns why it could not, or None."""
    path = root / mutant.path
    text = path.read_text()
    count = text.count(mutant.old)
    if count != 1:
        return f"the code to mutate occurs {count} times in {mutant.path} (expected once)"
    path.write_text(text.replace(mutant.old, mutant.new))
    return None


def run(mutant: Mutant) -> tuple[str, float, str]:
    """'killed', 'survived', 'stale' (the edit no longer applies) or 'skipped' (a program
    its tests need is missing here: never counted as survived), seconds, detail."""
    missing = [program for program in mutant.needs if shutil.which(program) is None]
    if missing:
        return "skipped", 0.0, f"needs {', '.join(missing)} (not on PATH here)"
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"mutant-{mutant.name}-") as tmp:
        root = Path(tmp)
        scratch_copy(root)
        problem = apply(mutant, root)
        if problem:
            return "stale", 0.0, problem
        env = {**os.environ, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1"}
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *mutant.tests],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
        )
    elapsed = time.perf_counter() - started
    lines = done.stdout.strip().splitlines()
    summary = lines[-1] if lines else done.stderr.strip()[-200:]
    if done.returncode == 0:
        if " passed" not in summary:  # every test skipped: nothing was checked
            return "error", elapsed, f"no test ran: {summary}"
        return "survived", elapsed, summary
    if done.returncode == 1:  # tests failed: the bug was seen
        failed = next((line for line in lines if line.startswith("FAILED")), summary)
        return "killed", elapsed, failed
    return "error", elapsed, f"pytest exit {done.returncode}: {summary}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="mutants to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    args = parser.parse_args(argv)
    known = {m.name: m for m in MUTANTS}
    if args.list:
        for m in MUTANTS:
            needs = f"  (needs {', '.join(m.needs)})" if m.needs else ""
            print(f"{m.name:32} {m.path}{needs}")
        return 0
    unknown = [n for n in args.names if n not in known]
    if unknown:
        print(
            f"mutants.py: error: unknown mutant {', '.join(unknown)}; valid: {', '.join(known)}",
            file=sys.stderr,
        )
        return 2
    chosen = [known[n] for n in args.names] or MUTANTS
    outcomes = []
    for mutant in chosen:
        outcome, seconds, detail = run(mutant)
        outcomes.append(outcome)
        print(f"{outcome:9} {mutant.name:32} {seconds:6.1f} s  {detail}", flush=True)
    survivors, skipped = outcomes.count("survived"), outcomes.count("skipped")
    bad = len(outcomes) - outcomes.count("killed") - skipped
    print(
        f"{len(chosen)} mutants: {outcomes.count('killed')} killed, {survivors} survived, "
        f"{bad - survivors} stale or broken, {skipped} skipped (a program they need is missing)"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
