"""Remake the manual's figures: run the sweep behind each, report it, copy the figure.

    python scripts/docs_figures.py --list                 # the figures and their commands
    python scripts/docs_figures.py methods_class_il_accuracy
    python scripts/docs_figures.py                        # all of them (about an hour on 2 cores)
    python scripts/docs_figures.py --dry-run              # print the commands only

Every figure that docs/ (or the README) shows is docs/img/NAME.png, and its caption names
this script and NAME (tests/test_docs.py checks both ways). A figure is a lab-report
figure of one sweep: `lab-run` runs the sweep (a sweep run again skips its complete runs),
`lab-report` writes its report, and the figure is copied from the report's figures/.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
IMAGES = REPO / "docs" / "img"
PARALLEL = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]


@dataclass(frozen=True)
class Figure:
    sweep: tuple[str, ...]  # lab-run's overrides
    report: str  # the sweep directory lab-report reads
    made: str  # the figure's file in the report's figures/

    def commands(self) -> list[list[str]]:
        return [["lab-run", *self.sweep], ["lab-report", self.report]]


FIGURES = {
    "methods_class_il_accuracy": Figure(
        ("+ablation=methods", *PARALLEL),
        "multirun/methods/split_fmnist_class",
        "split_fmnist_class_accuracy.png",
    ),
    "finetune_modes_pretrain": Figure(
        ("+ablation=finetune_modes", *PARALLEL, "logger=none"),
        "multirun/finetune_modes",
        "split_fmnist_task_pretrain.png",
    ),
    "pretrained_forgetting_pretrain": Figure(
        ("+ablation=pretrained_forgetting", *PARALLEL, "logger=none"),
        "multirun/pretrained_forgetting",
        "split_fmnist_task_pretrain.png",
    ),
    "pretrained_forgetting_wise_ft": Figure(
        ("+ablation=pretrained_forgetting", *PARALLEL, "logger=none"),
        "multirun/pretrained_forgetting",
        "split_fmnist_task_wise_ft.png",
    ),
    "peft_modes_retention": Figure(
        ("+ablation=peft_modes", "logger=none"),
        "multirun/peft_modes",
        "split_digits_task_retention_params.png",
    ),
    "probing_class_il_probes": Figure(
        ("+ablation=probing", *PARALLEL),
        "multirun/probing/split_fmnist",
        "split_fmnist_class_probes.png",
    ),
    "probing_class_il_cka": Figure(
        ("+ablation=probing", *PARALLEL),
        "multirun/probing/split_fmnist",
        "split_fmnist_class_cka.png",
    ),
    "memory_size_class_il_sweep": Figure(
        ("+ablation=memory_size", *PARALLEL),
        "multirun/memory_size/split_fmnist_class",
        "split_fmnist_class_sweep.png",
    ),
    "long_stream_accuracy": Figure(
        ("+ablation=long_stream",),
        "multirun/long_stream/permuted_fmnist_50_domain",
        "permuted_fmnist_domain_accuracy.png",
    ),
}


def executable(name: str) -> str:
    """lab-run / lab-report beside this Python (a venv's), else on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else name


def remake(name: str, dry_run: bool = False) -> Path:
    figure = FIGURES[name]
    for command in figure.commands():
        print("$", " ".join(command), flush=True)
        if not dry_run:
            subprocess.run([executable(command[0]), *command[1:]], cwd=REPO, check=True)
    target = IMAGES / f"{name}.png"
    source = REPO / figure.report / "report" / "figures" / figure.made
    print(f"cp {source.relative_to(REPO)} {target.relative_to(REPO)}")
    if not dry_run:
        shutil.copyfile(source, target)
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help="figures (default: all)")
    parser.add_argument("--list", action="store_true", help="the figures and their commands")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in FIGURES]
    if unknown:
        parser.error(f"unknown figure {', '.join(unknown)}; valid: {', '.join(FIGURES)}")
    if args.list:
        for name, figure in FIGURES.items():
            commands = " && ".join(" ".join(c) for c in figure.commands())
            print(f"{name}: {commands}  ->  figures/{figure.made}")
        return
    for name in args.names or FIGURES:
        remake(name, args.dry_run)


if __name__ == "__main__":
    main()
