"""`hydra/sweeper=lab_hpo`: the search's settings are the config's `hpo` block (conf/hpo/),
so that `hpo.trials=8` reads as any other key; the sweeper's own node holds its class."""

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore


@dataclass
class LabHpoSweeperConf:
    _target_: str = "hydra_plugins.lab_hpo_sweeper.sweeper.LabHpoSweeper"


ConfigStore.instance().store(
    group="hydra/sweeper", name="lab_hpo", node=LabHpoSweeperConf, provider="forgetting-lab"
)
