"""`lab-run`: the Hydra entry point over conf/.

lab-run                                  # naive fine-tuning on Split Fashion-MNIST
lab-run strategy=joint scenario=task seed=1
lab-run -m seed=0,1,2                    # a sweep
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
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
from lab.preemption import Stopped, pass_on, stop_on_signals
from lab.tracking import write_json_atomic


def _expose_the_sweeper() -> None:
    """Hydra finds plugins by listing the hydra_plugins namespace package's folders, and an
    editable install (make install's `pip install -e`) serves the lab's sweeper through an
    import hook that such a listing does not see: add its folder, wherever it is found."""
    import importlib.util

    import hydra_plugins

    spec = importlib.util.find_spec("hydra_plugins.lab_hpo_sweeper")
    if spec is None or not spec.submodule_search_locations:
        return
    folder = str(Path(next(iter(spec.submodule_search_locations))).parent)
    if folder not in list(hydra_plugins.__path__):
        hydra_plugins.__path__.append(folder)


_expose_the_sweeper()


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


def show_progress(setting: str | bool, multirun: bool) -> bool:
    if setting != "auto":
        return bool(setting)
    return sys.stderr.isatty() and not multirun and not os.environ.get("CI")


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def hydra_main(cfg: DictConfig) -> float | None:
    hydra_config = HydraConfig.get()
    run_dir = Path(hydra_config.runtime.output_dir)
    multirun = hydra_config.mode == RunMode.MULTIRUN
    if not multirun:
        global _single_run_status
        _single_run_status = 0
    try:
        config = validate(cfg)
        with stop_on_signals():
            results = run_experiment(
                config,
                run_dir,
                show_progress(config["progress"], multirun),
                run_name=run_name(list(hydra_config.overrides.task)),
                group=Path(hydra_config.sweep.dir).name if multirun else None,
            )
    except Stopped as stopped:  # saved: results.json says so, the checkpoint is on disk
        print(f"lab-run: {run_dir}: {stopped}", file=sys.stderr)
        pass_on(stopped)
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


def groups() -> set[str]:
    """The config groups under conf/ (e.g. strategy, hydra/launcher)."""
    root = Path(config_dir())
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_dir()}


def unknown_override(overrides: list[str]) -> str | None:
    """One line naming an option of a config group, or a key, that the command line sets
    but the config does not have, with the valid ones; None when all exist (or when Hydra
    will explain the problem itself).

    Hydra reports such a typo over several lines, without the valid keys; this check runs
    first, on the config composed with the command's group choices.
    """
    from hydra import compose, initialize_config_dir  # a third of a second: only if needed

    for key, value in (o.lstrip("+").split("=", 1) for o in overrides if "=" in o):
        if key in groups() and not key.startswith("hydra"):  # hydra/* options come from plugins
            valid = sorted(p.stem for p in (Path(config_dir()) / key).glob("*.yaml"))
            for option in value.split(","):  # a sweep: strategy=naive,ewc
                if option not in valid:
                    return f"{key}={option} is not an option of {key}; valid: {', '.join(valid)}"
    pairs = [o.split("=", 1) for o in overrides if "=" in o and not o.startswith(("+", "~"))]
    keys = [k for k, _ in pairs if not k.startswith("hydra")]
    choices = [f"{k}={v.split(',')[0]}" for k, v in pairs if k in groups()]  # a sweep's first
    choices += [o for o in overrides if o.startswith("+") and o[1:].split("=")[0] in groups()]
    if _in_plain_configs(keys, choices):
        return None
    try:
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            cfg = compose(config_name="config", overrides=choices)
    except Exception:  # noqa: BLE001 - Hydra will report it with its own message
        return None
    for key in keys:
        if key in groups() or _has(cfg, key):
            continue
        parts = key.split(".")
        depth = 0  # the first part of the path that does not exist
        while _has(cfg, ".".join(parts[: depth + 1])):
            depth += 1
        parent = ".".join(parts[:depth])
        node = OmegaConf.select(cfg, parent) if parent else cfg
        if not isinstance(node, DictConfig):
            return f"{key}: {parent} is a value, it has no keys"
        bad = ".".join(parts[: depth + 1])
        return f"{bad} is not a key of {parent or 'the config'}; valid: {', '.join(map(str, node))}"
    return None


def _in_plain_configs(keys: list[str], choices: list[str]) -> bool:
    """Whether every key is in config.yaml or in its group's chosen option, read without
    Hydra; False also where that cannot tell (a +preset, a group option with defaults)."""
    if any(c.startswith("+") for c in choices):
        return False
    root = Path(config_dir())
    cfg = OmegaConf.load(root / "config.yaml")
    chosen = {
        group: option
        for entry in cfg.pop("defaults", [])
        if isinstance(entry, DictConfig)
        for group, option in entry.items()
    }
    chosen.update(c.split("=", 1) for c in choices)
    for group, option in chosen.items():
        if group.startswith("hydra") or option is None:
            continue
        node = OmegaConf.load(root / group / f"{option}.yaml")
        if "defaults" in node:
            return False
        cfg[group] = node
    return all(key in groups() or _has(cfg, key) for key in keys)


def _has(cfg: DictConfig, key: str) -> bool:
    """Whether the config has `key` (a mandatory value still ??? counts)."""
    parent, _, last = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    return isinstance(node, DictConfig) and last in node.keys()  # noqa: SIM118 - `in node` misses ???


def off_cluster(overrides: list[str]) -> str | None:
    """One line where the SLURM launcher is asked for on a machine without SLURM
    (submitit would raise 'Could not detect "srun"' with a traceback), else None."""
    if "hydra/launcher=slurm" not in overrides or shutil.which("srun"):
        return None
    return (
        "hydra/launcher=slurm needs a SLURM cluster, and this machine has no srun on PATH; "
        "valid here: hydra/launcher=joblib (parallel runs on this machine) or "
        "hydra/launcher=submitit_local (submitit's jobs, locally); on a cluster, run "
        "lab-run from a login node"
    )


# The exit status of a single run (not a sweep), once hydra_main has run it
_single_run_status: int | None = None


def _exit_without_teardown() -> None:
    """The last exit handler of a single run: after every other one (W&B's, Hydra's), flush
    the logs and the output and leave without Python's teardown, which frees one by one the
    objects that torch and its compiler stack made (a second on 2 cores, as long as a
    task's training). A sweep, or a command that ran nothing, exits the usual way."""
    if _single_run_status is None:
        return
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_single_run_status)


def main() -> None:
    """`lab-run`: checks the override keys, then runs the Hydra app."""
    overrides = [a for a in sys.argv[1:] if not a.startswith("-")]
    problem = unknown_override(overrides) or off_cluster(overrides)
    if problem:
        print(f"lab-run: error: {problem}", file=sys.stderr)
        sys.exit(2)
    atexit.register(_exit_without_teardown)  # the first registered runs last
    global _single_run_status
    status = 1  # an exception Python reports itself
    try:
        hydra_main()
        status = 0
    except SystemExit as stop:
        status = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
        raise
    finally:
        if _single_run_status is not None:  # set to 0 by hydra_main when it ran one run
            _single_run_status = status


if __name__ == "__main__":
    main()
