"""The search: Optuna's TPE sampler, asked and told, each trial launched by the configured
Hydra launcher (basic, joblib, submitit) as one job of the multirun.

- The study is stored in the sweep dir (hpo.db, SQLite): run the same command again and
  the search resumes. A trial that was running when the search was cut runs again in its
  own run dir, which resumes after its last completed task; a finished search says so.
- A trial's objective is read from its results.json (lab.hpo.objective); a trial that
  failed, diverged or has no finite objective is told to Optuna as failed, never as 0.
- hpo.json, beside the study, is rewritten after every trial: lab-report reads it.
"""

from __future__ import annotations

import fcntl
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.core.utils import JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from lab import hpo
from lab.errors import ConfigError
from lab.tracking import write_json_atomic

log = logging.getLogger(__name__)
STUDY = "hpo"
# keys that may change when a search resumes: how many trials, how many at once, and what
# does not change what a run computes (lab.experiment.RESUMABLE_CHANGES)
RESUMABLE = ("hpo.trials=", "hpo.batch=", "logger", "progress=", "keep_checkpoint=")


class LabHpoSweeper(Sweeper):
    def __init__(self) -> None:
        self.config: DictConfig | None = None
        self.launcher = None
        self.hydra_context: HydraContext | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        try:
            return self._sweep(list(arguments))
        except ConfigError as error:  # one line, as lab-run's own errors
            print(f"lab-run: error: {error}", file=sys.stderr)
            sys.exit(2)

    # --------------------------------------------------------------------------- setup

    def _check(self, arguments: list[str], settings: hpo.Settings) -> None:
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        for override in parser.parse_overrides(arguments):
            if override.is_sweep_override():
                raise ConfigError(
                    f"{override.input_line} sweeps inside a search; valid: one value per key "
                    "(the search's trials are its sweep: search a key in hpo.params)"
                )
        for param in settings.params:
            parent, _, last = param.key.rpartition(".")
            node = OmegaConf.select(self.config, parent) if parent else self.config
            if not isinstance(node, DictConfig) or last not in node:
                valid = ", ".join(map(str, node)) if isinstance(node, DictConfig) else "none"
                raise ConfigError(
                    f"hpo.params.{param.key}: {param.key} is not a key of the config; "
                    f"valid in {parent or 'the config'}: {valid}"
                )

    def _open_study(self, sweep_dir: Path, settings: hpo.Settings, identity: dict[str, Any]):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        storage = f"sqlite:///{(sweep_dir / hpo.STORAGE).resolve()}"
        names = optuna.study.get_all_study_names(storage)
        if STUDY in names:
            study = optuna.load_study(study_name=STUDY, storage=storage)
            saved = study.user_attrs.get("identity", {})
            for key in identity:
                if saved.get(key) != identity[key]:
                    raise ConfigError(
                        f"{sweep_dir} holds a search of another {key} ({saved.get(key)!r} "
                        f"there, {identity[key]!r} now); resume with the same command "
                        "(hpo.trials and hpo.batch may change), or choose another "
                        "hydra.sweep.dir"
                    )
        else:
            study = optuna.create_study(
                study_name=STUDY, storage=storage, directions=settings.direction
            )
            study.set_user_attr("identity", identity)
        # seeded by the search's seed and the trials so far: a resumed search goes on
        # reproducibly from where it stopped
        study.sampler = optuna.samplers.TPESampler(
            seed=settings.seed + len(study.trials), n_startup_trials=settings.startup_trials
        )
        return study

    # --------------------------------------------------------------------------- the search

    def _sweep(self, arguments: list[str]) -> list[Any]:
        from optuna.trial import TrialState

        config = self.config
        if "hpo" not in config:
            raise ConfigError(
                "hydra/sweeper=lab_hpo needs a search's settings; valid: +hpo=NAME "
                "(conf/hpo/: ewc, lwf, der, si, mas, lr_epochs)"
            )
        settings = hpo.settings(OmegaConf.to_container(config.hpo, resolve=True))
        self._check(arguments, settings)
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        lock = open(sweep_dir / "hpo.lock", "w")  # noqa: SIM115 - held for the whole search
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                f"another search is running in {sweep_dir} (it holds hpo.lock); valid: wait "
                "for it, or choose another hydra.sweep.dir"
            ) from None
        OmegaConf.save(config, sweep_dir / "multirun.yaml")
        plain = OmegaConf.to_container(
            OmegaConf.masked_copy(config, [k for k in config if k != "hydra"]), resolve=True
        )
        choices = OmegaConf.to_container(config.hydra.runtime.choices)
        identity = {
            "overrides": sorted(a for a in arguments if not a.startswith(RESUMABLE)),
            "objective": settings.objective,
            "direction": settings.direction,
            "space": {p.key: p.describe() for p in settings.params},
        }
        self.sweep_dir, self.settings, self.arguments = sweep_dir, settings, arguments
        self.started = time.perf_counter()
        previous = hpo.read_summary(sweep_dir) or {}
        self.elapsed_before = previous.get("elapsed_s", 0.0)
        self.run_dirs = {t["number"]: t["run_dir"] for t in previous.get("trials", [])}
        self.reasons = {t["number"]: t.get("reason") for t in previous.get("trials", [])}
        self.header = {
            "schema_version": 1,
            "name": settings.name,
            "strategy": plain["strategy"]["name"],
            "benchmark": plain["benchmark"]["name"],
            "scenario": plain["scenario"],
            "eval_split": plain["eval"]["split"],
            "objective": settings.objective,
            "direction": settings.direction,
            "space": identity["space"],
            "trials_wanted": settings.trials,
            "storage": hpo.STORAGE,
            "overrides": arguments,
            "rerun_overrides": hpo.rerun_overrides(arguments, choices, plain),
        }
        if plain["eval"]["split"] == "test":
            log.warning(
                "this search is scored on the test sets (eval.split=test): the numbers it "
                "finds are not a fair test result; tune with eval.split=validation"
            )
        study = self._open_study(sweep_dir, settings, identity)
        returns = []
        finished = [t for t in study.trials if t.state.is_finished()]
        if len(finished) >= settings.trials:
            self._write(study, "finished")
            print(
                f"lab-run: {self._describe(study, 'is already finished')}; more trials: "
                f"hpo.trials={settings.trials + 10} (the same command)"
            )
            return returns
        for cut in [t for t in study.trials if t.state == TrialState.RUNNING]:
            if set(cut.params) != {p.key for p in settings.params}:  # cut before its draw
                self.reasons[cut.number] = "cut before its parameters were drawn"
                study.tell(cut.number, state=TrialState.FAIL)
                continue
            log.info("trial %d was cut: it runs again, resuming its run dir", cut.number)
            params = {p.key: cut.params[p.key] for p in settings.params}
            returns.append(self._launch(study, [(cut.number, params)]))
        while True:
            done = sum(t.state.is_finished() for t in study.trials)
            left = settings.trials - done
            if left <= 0:
                break
            asked = [study.ask() for _ in range(min(settings.batch, left))]
            batch = [(t.number, {p.key: p.suggest(t) for p in settings.params}) for t in asked]
            returns.append(self._launch(study, batch))
        self._write(study, "finished")
        print(f"lab-run: {self._describe(study, 'finished')}; lab-report {sweep_dir} --best")
        return returns

    def _launch(self, study: Any, batch: list[tuple[int, dict[str, Any]]]) -> list[Any]:
        """Run the batch's trials (consecutive numbers: their job numbers) and tell each."""
        from optuna.trial import TrialState

        searched = {p.key for p in self.settings.params}
        kept = [a for a in self.arguments if a.lstrip("+~").split("=", 1)[0] not in searched]
        overrides = [tuple(kept + hpo.overrides_of(params)) for _, params in batch]
        try:
            self.validate_batch_is_legal(overrides)
        except Exception as error:  # noqa: BLE001 - a search space the config cannot take
            for number, _ in batch:
                study.tell(number, state=TrialState.FAIL)
            raise ConfigError(f"hpo.params: {overrides[0]} cannot be composed: {error}") from None
        self._write(study, "running")
        results = self.launcher.launch(overrides, initial_job_idx=batch[0][0])
        for (number, params), result in zip(batch, results, strict=True):
            hydra_cfg = result.hydra_cfg
            if hydra_cfg is not None:
                run_dir = Path(hydra_cfg.hydra.runtime.output_dir)
            else:
                run_dir = self.sweep_dir / str(number)
            try:
                self.run_dirs[number] = str(run_dir.resolve().relative_to(self.sweep_dir.resolve()))
            except ValueError:  # a subdir outside the sweep dir
                self.run_dirs[number] = str(run_dir.resolve())
            values, reason = hpo.objective(run_dir, self.settings.objective)
            if result.status == JobStatus.FAILED and values is None:
                error = result._return_value
                reason = reason or f"{type(error).__name__}: {error}"
            if values is None:
                self.reasons[number] = reason
                study.tell(number, state=TrialState.FAIL)
                log.warning("trial %d failed: %s", number, reason)
            else:
                study.tell(number, values if self.settings.multi else values[0])
                shown = ", ".join(
                    f"{m}={v:.4f}" for m, v in zip(self.settings.objective, values, strict=True)
                )
                log.info("trial %d: %s (%s)", number, shown, " ".join(hpo.overrides_of(params)))
            self._write(study, "running")
        return list(results)

    # --------------------------------------------------------------------------- hpo.json

    def _best(self, study: Any) -> list[int]:
        complete = [t for t in study.trials if t.values is not None and t.state.name == "COMPLETE"]
        if not complete:
            return []
        if self.settings.multi:
            return [t.number for t in study.best_trials]
        return [study.best_trial.number]

    def _describe(self, study: Any, what: str) -> str:
        trials = [t for t in study.trials if t.state.is_finished()]
        complete = sum(t.state.name == "COMPLETE" for t in trials)
        text = (
            f"the search in {self.sweep_dir} {what}: {len(trials)} trials "
            f"({complete} complete, {len(trials) - complete} failed)"
        )
        best = self._best(study)
        if best and not self.settings.multi:
            trial = study.trials[best[0]]
            params = " ".join(hpo.overrides_of(trial.params))
            text += f"; best: trial {trial.number}, {self.settings.objective[0]}="
            text += f"{trial.value:.4f} ({params})"
        elif best:
            text += f"; Pareto front: trials {', '.join(map(str, best))}"
        return text

    def _write(self, study: Any, status: str) -> None:
        keys = [p.key for p in self.settings.params]
        trials = [
            {
                "number": t.number,
                "state": t.state.name,
                "params": {k: t.params[k] for k in keys if k in t.params},
                "values": t.values,
                "run_dir": self.run_dirs.get(t.number, str(t.number)),
                "reason": self.reasons.get(t.number) if t.state.name == "FAIL" else None,
            }
            for t in study.get_trials(deepcopy=False)
        ]
        elapsed = self.elapsed_before + time.perf_counter() - self.started
        write_json_atomic(
            self.sweep_dir / hpo.SUMMARY,
            {
                **self.header,
                "status": status,
                "elapsed_s": elapsed,
                "trials": trials,
                "best": self._best(study),
            },
        )
