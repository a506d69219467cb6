"""`lab-run`: the Hydra entry point over conf/.

lab-run                                  # naive fine-tuning on Split Fashion-MNIST
lab-run strategy=joint scenario=task seed=1
lab-run -m seed=0,1,2                    # a sweep
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from lab.config import validate
from lab.errors import LabError
from lab.experiment import run_experiment
from lab.tracking import write_json_atomic

log = logging.getLogger("lab")


def config_dir() -> str:
    """conf/ of the source tree, or lab/conf where a wheel installed it."""
    packaged = Path(__file__).resolve().parent / "conf"
    if packaged.is_dir():
        return str(packaged)
    return str(Path(__file__).resolve().parent.parent / "conf")


def run_name(overrides: list[str]) -> str:
    """A readable W&B name: the command-line overrides, less the seed and Hydra's own."""
    kept = [
        o.lstrip("+~")
        for o in overrides
        if not o.lstrip("+~").startswith(("seed=", "hydra.", "hydra/", "logger", "progress="))
    ]
    return " ".join(kept) or "default"


def share_cores(n_jobs: int | None) -> None:
    """Give each of n_jobs parallel jobs its share of the cores: torch's default (every
    core per job) oversubscribes the machine and slows a parallel sweep many times over."""
    cores = os.cpu_count() or 1
    if n_jobs:
        jobs = cores if n_jobs < 0 else n_jobs
        torch.set_num_threads(max(1, cores // jobs))


def show_progress(setting: str | bool, multirun: bool) -> bool:
    if setting != "auto":
        return bool(setting)
    return sys.stderr.isatty() and not multirun and not os.environ.get("CI")


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def main(cfg: DictConfig) -> float | None:
    hydra_config = HydraConfig.get()
    run_dir = Path(hydra_config.runtime.output_dir)
    multirun = hydra_config.mode == RunMode.MULTIRUN
    share_cores(OmegaConf.select(hydra_config, "launcher.n_jobs", default=None))
    try:
        config = validate(cfg)
        results = run_experiment(
            config,
            run_dir,
            show_progress(config["progress"], multirun),
            run_name=run_name(list(hydra_config.overrides.task)),
            group=Path(hydra_config.sweep.dir).name if multirun else None,
        )
    except LabError as error:
        print(f"lab-run: error: {error}", file=sys.stderr)
        if not (run_dir / "results.json").exists():  # a config error: nothing ran
            write_json_atomic(
                run_dir / "results.json",
                {
                    "schema_version": 1,
                    "status": "failed",
                    "error": str(error),
                    "config": OmegaConf.to_container(cfg, resolve=False),
                },
            )
        if multirun:  # the sweep's other runs go on
            return None
        sys.exit(2)
    finally:
        if torch.cuda.is_available():  # the next run of a sweep in this process starts clean
            torch.cuda.empty_cache()
    return results["metrics"]["acc"]


if __name__ == "__main__":
    main()
