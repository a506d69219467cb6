"""Every config composes and validates; each bad value is one error naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.config import AVALANCHE_ONLY, validate
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


@pytest.mark.parametrize(
    "group", ["benchmark", "model", "strategy", "optimizer", "pretrain", "logger"]
)
def test_every_option_of_every_group_composes(compose_cfg, group):
    names = options(group)
    assert names, f"conf/{group} is empty"
    for name in names:
        extra = [f"engine={'avalanche' if name in AVALANCHE_ONLY else 'lab'}"]
        if group == "pretrain" and name == "file":
            extra.append("pretrain.path=weights.pt")  # mandatory
        if group == "benchmark" and name == "image_folder":
            extra.append("benchmark.root=flowers")  # mandatory
        if group == "model" and name == "timm":
            extra.append("model.arch=test_vit")  # mandatory
        text = ["model=hf", "model.arch=bert-base-uncased", "benchmark=text_cl5"]
        if (group, name) in (("benchmark", "text_cl5"), ("model", "hf"), ("pretrain", "mlm")):
            extra += [t for t in text if not t.startswith(f"{group}=")]  # a text model and data
        if group == "benchmark" and name == "text_csv":
            extra += [*text[:2], "benchmark.train=[a.csv]", "benchmark.test=[b.csv]"]
        if group == "pretrain" and name == "mlm":
            extra.append("pretrain.path=wiki.txt")  # mandatory
        config = validate(compose_cfg([f"{group}={name}", *extra]))
        assert config[group]["name"] == name


def test_finetune_modes_pretrains_on_half_the_classes_and_streams_the_other_half():
    config = validate(compose_with_hydra(["+ablation=finetune_modes"]))
    assert config["pretrain"]["name"] == "source" and config["pretrain"]["classes"] == [
        0,
        1,
        2,
        3,
        4,
    ]
    assert config["pretrain"]["dataset"] == config["benchmark"]["dataset"] == "fashion_mnist"
    assert config["benchmark"]["class_order"] == [5, 6, 7, 8, 9]


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
        (["benchmark.class_order=[0,1,2,3,4,5,6,7,8,8]"], "distinct classes of 0..9"),
        (["benchmark.class_order=[0,1,12]"], "benchmark.class_order=[0, 1, 12] is invalid"),
        (["benchmark.class_order=[5,6,7]", "benchmark.num_tasks=4"], "valid: 1..3 (the stream"),
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


ABLATIONS = {
    "methods": {"strategy", "seed"},
    "long_stream": {"strategy", "seed"},
    "probing": {"scenario", "strategy", "seed"},
    "scenarios": {"scenario", "strategy", "seed"},
    "ewc_lambda": {"strategy.lambda", "seed"},
    "lwf_alpha_temperature": {"strategy.alpha", "strategy.temperature", "seed"},
    "weight_decay_strength": {"strategy.strength", "seed"},
    "training_regime": {
        "optimizer.lr",
        "train.batch_size",
        "train.epochs",
        "model.dropout",
        "seed",
    },
    "finetune_modes": {"finetune.mode", "strategy", "seed"},
    "peft_modes": {"finetune", "strategy", "seed"},
    "memory_size": {"strategy", "strategy.mem_size", "seed"},
    "pretrained_forgetting": {"regime", "strategy", "seed"},
    "lora_vs_full": {"optimizer.lr", "finetune.lora.rank", "finetune.lora.alpha", "seed"},
    "ptm_methods": {"strategy", "seed"},
}


def compose_with_hydra(overrides):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(config_name="config", overrides=overrides, return_hydra_config=True)


def test_every_ablation_preset_is_listed_and_composes():
    assert set(options("ablation")) == set(ABLATIONS)
    for name, swept in ABLATIONS.items():
        cfg = compose_with_hydra([f"+ablation={name}"])
        assert str(cfg.hydra.mode) == "RunMode.MULTIRUN"
        assert set(cfg.hydra.sweeper.params) == swept
        assert cfg.hydra.sweep.dir.startswith(f"multirun/{name}")
        validate(cfg)
        for value in str(cfg.hydra.sweeper.params.get("strategy", "")).split(","):
            if value:  # every swept strategy exists
                validate(compose_with_hydra([f"+ablation={name}", f"strategy={value}"]))


def test_each_regime_sets_the_finetune_mode_and_lp_ft_its_probe_epochs():
    modes = {}
    for regime in options("regime"):
        finetune = validate(compose_with_hydra([f"regime={regime}"]))["finetune"]
        modes[regime] = (finetune["mode"], finetune["lp_epochs"])
    assert modes == {
        "full": ("full", 0),
        "freeze": ("freeze", 0),
        "linear_probe": ("linear_probe", 0),
        "lora": ("lora", 0),
        "lp_ft": ("full", 2),
    }


def test_the_probing_preset_turns_the_analysis_on():
    cfg = compose_with_hydra(["+ablation=probing"])
    assert cfg.analysis.probe is True and cfg.analysis.cka is True
    assert compose_with_hydra([]).analysis.probe is False  # off by default


def test_the_long_stream_preset_is_50_permuted_tasks_of_one_epoch():
    cfg = validate(compose_with_hydra(["+ablation=long_stream"]))
    assert cfg["benchmark"]["name"] == "permuted_fmnist" and cfg["benchmark"]["num_tasks"] == 50
    assert cfg["scenario"] == "domain" and cfg["train"]["epochs"] == 1
    ewc = validate(compose_with_hydra(["+ablation=long_stream", "strategy=ewc"]))
    assert ewc["strategy"]["lambda"] == 10.0  # stable over 100 tasks, unlike 5 tasks' 100
    longer = compose_with_hydra(["+ablation=long_stream", "benchmark.num_tasks=100"])
    assert longer.hydra.sweep.dir == "multirun/long_stream/permuted_fmnist_100_domain"


def test_strength_ablations_select_their_strategy():
    assert compose_with_hydra(["+ablation=ewc_lambda"]).strategy.name == "ewc"
    assert compose_with_hydra(["+ablation=lwf_alpha_temperature"]).strategy.name == "lwf"
    assert compose_with_hydra(["+ablation=weight_decay_strength"]).strategy.name == "weight_decay"


def test_launchers_compose():
    joblib = compose_with_hydra(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"])
    assert joblib.hydra.launcher._target_.endswith("JoblibLauncher")
    assert joblib.hydra.launcher.n_jobs == 2
    slurm = compose_with_hydra(["hydra/launcher=slurm", "hydra.launcher.partition=gpu"])
    assert slurm.hydra.launcher._target_.endswith("SlurmLauncher")
    assert slurm.hydra.launcher.partition == "gpu"
    assert slurm.hydra.launcher.gpus_per_node == 1 and slurm.hydra.launcher.timeout_min == 60


def test_unknown_top_level_key(compose_cfg):
    with pytest.raises(ConfigError, match="seeed is not a key of the config; valid: scenario"):
        validate(compose_cfg(["+seeed=1"]))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["optimzer.lr=0.1"], "optimzer is not a key of the config; valid: benchmark, model"),
        (
            ["optimizer.lrr=0.1"],
            "optimizer.lrr is not a key of optimizer; valid: name, lr, momentum",
        ),
        (["seeed=1"], "seeed is not a key of the config; valid: benchmark"),
        (
            ["strategy=ewc", "strategy.lamda=3"],
            "strategy.lamda is not a key of strategy; valid: name, lambda",
        ),
        (["seed.x=1"], "seed.x: seed is a value, it has no keys"),
        (
            ["strategy=nope"],
            "strategy=nope is not an option of strategy; valid: agem, aper, coda_prompt, der",
        ),
        (
            ["strategy=naive,ewcc"],
            "strategy=ewcc is not an option of strategy; valid: agem, aper, coda_prompt, der",
        ),
        (["+ablation=method"], "ablation=method is not an option of ablation; valid: ewc_lambda"),
        (["strategy=naive,ewc", "strategy.lamda=1"], "strategy.lamda is not a key of strategy"),
    ],
)
def test_mistyped_override_keys_are_named_with_the_valid_ones(overrides, message):
    from lab.run import unknown_override

    assert unknown_override(overrides).startswith(message)


@pytest.mark.parametrize(
    "overrides",
    [
        ["strategy=ewc", "strategy.lambda=3", "seed=0,1,2"],
        ["+ablation=ewc_lambda", "strategy.lambda=5"],
        [
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            "benchmark.class_order=[1,0,2,3,4,5,6,7,8,9]",
        ],
        ["+strategy.new_key=1"],  # appending is the user's explicit choice; validate() judges it
    ],
)
def test_valid_overrides_pass_the_key_check(overrides):
    from lab.run import unknown_override

    assert unknown_override(overrides) is None
