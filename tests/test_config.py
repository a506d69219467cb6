"""Every config composes and validates; each bad value is one error naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.config import validate
from lab.errors import ConfigError
from lab.run import config_dir


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(config_dir()) / group).glob("*.yaml"))


def test_default_experiment(compose_cfg):
    config = validate(compose_cfg())
    assert config["benchmark"]["name"] == "split_fmnist"
    assert config["benchmark"]["num_tasks"] == 5
    assert config["strategy"]["name"] == "naive"
    assert config["model"]["name"] == "mlp" and config["model"]["hidden_sizes"] == [400, 400]
    assert config["scenario"] == "class" and config["engine"] == "lab"
    assert "hydra" not in config


@pytest.mark.parametrize("group", ["benchmark", "model", "strategy", "optimizer", "logger"])
def test_every_option_of_every_group_composes(compose_cfg, group):
    names = options(group)
    assert names, f"conf/{group} is empty"
    for name in names:
        config = validate(compose_cfg([f"{group}={name}"]))
        assert config[group]["name"] == name


@pytest.mark.parametrize("scenario", ["task", "domain", "class"])
def test_scenarios(compose_cfg, scenario):
    assert validate(compose_cfg([f"scenario={scenario}"]))["scenario"] == scenario


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["scenario=online"], "scenario='online' is invalid; valid: task, domain, class"),
        (["optimizer.lr=-0.1"], "optimizer.lr=-0.1 is invalid; valid: a number in (0, inf)"),
        (["optimizer.lr=fast"], "optimizer.lr='fast' is invalid"),
        (["benchmark.num_tasks=11"], "benchmark.num_tasks=11 is invalid; valid: 1..10"),
        (["benchmark.class_order=[0,1,2,3,4,5,6,7,8,8]"], "a permutation of 0..9, or null"),
        (["benchmark.class_order=[0,1,2]"], "benchmark.class_order=[0, 1, 2] is invalid"),
        (["scenario=domain", "benchmark.num_tasks=3"], "a divisor of 10 in domain-IL"),
        (["device=tpu"], "device='tpu' is invalid; valid: auto, cpu, cuda"),
        (["seed=1.5"], "seed=1.5 is invalid; valid: an integer"),
        (["train.epochs=0"], "train.epochs=0 is invalid; valid: an integer >= 1"),
        (["model.dropout=1.0"], "model.dropout=1.0 is invalid; valid: a number in [0, 1)"),
        (["model.activation=swish"], "valid: relu, tanh, gelu, sigmoid"),
        (["model.hidden_sizes=[400,-1]"], "model.hidden_sizes=[400, -1] is invalid"),
        (["+model.hiden=3"], "model.hiden is not a key of model; valid: name, activation"),
        (["+strategy.lamda=3"], "strategy.lamda is not a hyperparameter of naive"),
        (["progress=maybe"], "progress='maybe' is invalid; valid: auto, true, false"),
        (["benchmark=rotated_fmnist", "benchmark.angles=[0,90]"], "a list of 5 angles"),
    ],
)
def test_invalid_values_name_key_value_and_valid_ones(compose_cfg, overrides, message):
    with pytest.raises(ConfigError) as error:
        validate(compose_cfg(overrides))
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_unknown_group_option_lists_the_valid_ones(compose_cfg):
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException) as error:
        compose_cfg(["strategy=nope"])
    assert "naive" in str(error.value) and "joint" in str(error.value)
