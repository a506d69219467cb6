"""Any timm model as a backbone (model=timm model.arch=NAME), at its own input size.

    model=timm model.arch=vit_base_patch16_224.augreg_in21k model.pretrained=true
    model=timm model.arch=resnet50.a1_in1k model.weights=~/weights/resnet50.safetensors

The backbone is timm's feature extractor (the model with `num_classes=0`: pooled
features of width `num_features`); the lab's heads go on top. What the model was
pre-trained with comes from timm itself:

- weights: `pretrained=true` takes the hub's (online, cached by huggingface_hub);
  `weights=PATH` loads a local .safetensors, .pth or .npz through timm's own loader
  (`pretrained_cfg_overlay=dict(file=PATH)`: its filters and checkpoint conversions);
- inputs: `timm.data.resolve_model_data_config` gives the input size, interpolation,
  mean and std, which every batch is made to (lab.data.inputs); `input_size=N` asks for
  another square size (passed as `img_size` to models that take it, e.g. ViTs);
- layer groups: timm's `group_matcher` (a ViT's stem, then each block, the final norm
  joined to the last block as timm groups it; a ResNet's or ConvNeXt's stem, then each
  stage), for freezing, layer-wise lr decay, progressive unfreezing, probes and CKA;
- the pre-trained classifier, where the weights have one, is kept aside as
  `pretrained_classifier` (a frozen nn.Linear outside the module tree: it is not
  trained, not regularised and not in the state_dict), for measuring what the model
  forgets of its pre-training.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lab.data.inputs import INTERPOLATIONS, ModelInputs
from lab.errors import ConfigError, WeightsError, brief
from lab.models.groups import LayerGroup

log = logging.getLogger(__name__)

WEIGHT_FILES = (".safetensors", ".pth", ".pt", ".bin", ".npz")


def known_arch(arch: str) -> bool:
    import timm

    return timm.is_model(arch.split(".")[0])


def unknown_arch_message(arch: str) -> str:
    import timm

    base = arch.split(".")[0]
    close = timm.list_models(f"*{base[:4]}*")[:8] if len(base) >= 4 else []
    hint = f" (close: {', '.join(close)})" if close else ""
    return (
        f"model.arch={arch!r} is not a timm model{hint}; valid: any name of "
        "timm.list_models(), with a pretrained tag from timm.list_pretrained(), e.g. "
        "vit_base_patch16_224.augreg_in21k, resnet50.a1_in1k, convnext_tiny, test_vit"
    )


class TimmBackbone(nn.Module):
    """timm's `arch` without its classifier; its output is the pooled feature vector."""

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        arch: str,
        pretrained: bool = False,
        weights: str | None = None,
        input_size: int | None = None,
        drop_path_rate: float = 0.0,
    ):
        super().__init__()
        self.arch = arch
        self.pretrained = pretrained or weights is not None
        # built from a seed drawn from the global RNG, under a fork of it: what timm draws
        # (a 1,000-way classifier, or one of a weights file's width) then never moves the
        # RNG that the lab's heads are drawn from after, so a model loaded from weights gets
        # the same heads as the run that trained them
        seed = int(torch.randint(2**62, (), dtype=torch.int64))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = _create(arch, pretrained, weights, input_size, drop_path_rate)
        classifier = model.get_classifier() if model.num_classes else None
        if isinstance(classifier, nn.Linear):
            classifier = copy.deepcopy(classifier).requires_grad_(False)
        else:  # no classifier, or one that is not a plain linear layer
            classifier = None
        model.reset_classifier(0)
        self.model = model
        self.out_features = model.num_features
        # kept out of the module tree: the stream never trains it (see the docstring)
        object.__setattr__(self, "pretrained_classifier", classifier)
        self.inputs = _model_inputs(model, input_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def layer_groups(self) -> list[LayerGroup]:
        """timm's coarse grouping, by the modules each group's parameters belong to."""
        from timm.models import group_parameters

        params = dict(self.model.named_parameters())
        grouped = group_parameters(self.model, self.model.group_matcher(coarse=True))
        groups = []
        for names in grouped.values():
            top = _top_modules(self.model, set(names))
            owners = [next((t for t, _ in top if n.startswith(t + ".")), n) for n in names]
            label = "+".join(dict.fromkeys(owners))  # e.g. blocks.3, or conv1+bn1
            output = top[-1][1] if top else self.model
            groups.append(
                LayerGroup(f"backbone.model.{label}", [(n, params[n]) for n in names], output)
            )
        return groups

    def timm_state_dict(self, classifier: nn.Linear | None) -> dict[str, Tensor]:
        """The weights in timm's own layout, with `classifier` (e.g. a source head the lab
        trained) under the model's classifier name (pretrained_cfg["classifier"]): a file
        of them loads with model.weights, the classifier as pretrained_classifier."""
        state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        if classifier is not None:
            name = (self.model.pretrained_cfg or {}).get("classifier") or "head"
            name = name[0] if isinstance(name, list | tuple) else name
            state[f"{name}.weight"] = classifier.weight.detach().cpu().contiguous()
            state[f"{name}.bias"] = classifier.bias.detach().cpu().contiguous()
        return state

    def lora_targets(self) -> list[str]:
        """Every Linear and Conv2d but the input's first convolution (a ViT's patch
        embedding), which LoRA leaves alone unless it is named; names in the backbone."""
        first = (self.model.pretrained_cfg or {}).get("first_conv") or ""
        first = first if isinstance(first, str) else ""
        return [
            f"model.{name}"
            for name, module in self.model.named_modules()
            if isinstance(module, nn.Linear | nn.Conv2d) and name != first
        ]


def _create(
    arch: str, pretrained: bool, weights: str | None, input_size: int | None, drop_path: float
) -> nn.Module:
    """timm.create_model with the configured weights; each failure a one-line error."""
    import timm

    if not known_arch(arch):
        raise ConfigError(unknown_arch_message(arch))
    kwargs: dict[str, Any] = {}
    if drop_path:
        kwargs["drop_path_rate"] = drop_path
    if input_size is not None:
        kwargs["img_size"] = input_size
    load = pretrained or weights is not None
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"model.weights={weights}: no such file; valid: a {', '.join(WEIGHT_FILES)} "
                "file of this architecture (e.g. saved by timm or downloaded from its hub page)"
            )
        kwargs["pretrained_cfg_overlay"] = {"file": str(path)}
        if path.suffix == ".npz":  # the original JAX ViT checkpoints: timm's own converter
            kwargs["pretrained_cfg_overlay"]["custom_load"] = True

        classes = _file_classes(arch, path)
        if classes is not None:  # a classifier of another width than the architecture's
            kwargs["num_classes"] = classes
            # timm's loader drops a classifier whose width is not the config's: say it is
            kwargs["pretrained_cfg_overlay"]["num_classes"] = classes

    def create(**extra: Any) -> nn.Module:
        try:
            return timm.create_model(arch, pretrained=load, **kwargs, **extra)
        except TypeError as error:  # a model that takes no img_size: it takes any size
            if "img_size" not in kwargs or "img_size" not in str(error):
                raise
            kwargs.pop("img_size")
            return timm.create_model(arch, pretrained=load, **kwargs, **extra)

    try:
        try:
            return create()  # with the pre-trained classifier, if the weights have one
        except (RuntimeError, KeyError) as error:
            if weights is None or not _missing_classifier(error):
                raise
            # a weights file of the features alone: timm then loads without strictness,
            # so what it found missing is checked here
            with _missing_keys() as missing:
                model = create(num_classes=0)
            if missing:
                raise RuntimeError(f"missing keys: {', '.join(missing)}") from None
            return model
    except ConfigError:
        raise
    except Exception as error:  # noqa: BLE001 - a download or a file: one line each
        if weights is not None:
            raise WeightsError(_file_mismatch(arch, Path(weights).expanduser(), error)) from None
        raise WeightsError(
            f"model.arch={arch} model.pretrained=true: the weights could not be downloaded "
            f"({brief(error)}); run once with internet (huggingface_hub caches them in "
            "~/.cache/huggingface), or download the weights file and pass model.weights=PATH"
        ) from None


def _file_classes(arch: str, path: Path) -> int | None:
    """The width of the classifier a .safetensors or .pth weights file holds (under the
    architecture's classifier name), or None (none there, another format, unreadable: timm's
    loader then says what is wrong)."""
    import timm

    name = timm.models.get_pretrained_cfg(arch.split(".")[0])
    classifier = (name.classifier if name is not None else None) or "head"
    classifier = classifier[0] if isinstance(classifier, list | tuple) else classifier
    key = f"{classifier}.weight"
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), "pt") as file:
                if key not in file.keys():  # noqa: SIM118 - safe_open has no __contains__
                    return None
                return int(file.get_slice(key).get_shape()[0])
        if path.suffix in (".pth", ".pt", ".bin"):
            state = torch.load(path, map_location="cpu", weights_only=True)
            state = state.get("state_dict", state) if isinstance(state, dict) else state
            weight = state.get(key) if isinstance(state, dict) else None
            return int(weight.shape[0]) if weight is not None and weight.ndim == 2 else None
    except Exception:  # noqa: BLE001 - timm's own loader names what is wrong with the file
        return None
    return None


@contextlib.contextmanager
def _missing_keys() -> Iterator[list[str]]:
    """The keys timm reports missing while it loads pretrained weights non-strictly (its
    builder logs them, after its own checkpoint filters have run)."""
    missing: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            found = re.match(r"Missing keys \((.*?)\) discovered", record.getMessage())
            if found:
                missing.extend(found.group(1).split(", "))

    builder = logging.getLogger("timm.models._builder")
    handler, level = Collect(logging.INFO), builder.level
    builder.addHandler(handler)
    builder.setLevel(logging.INFO)
    try:
        yield missing
    finally:
        builder.removeHandler(handler)
        builder.setLevel(level)


def _missing_classifier(error: Exception) -> bool:
    text = str(error)
    return "Missing key" in text and re.search(r"\b(head|fc|classifier)\.", text) is not None


def _file_mismatch(arch: str, path: Path, error: Exception) -> str:
    """Which key of the weights file does not fit the architecture, and both shapes."""
    import timm
    from timm.models import load_state_dict

    where = f"model.weights={path} does not fit model.arch={arch}"
    try:
        state = load_state_dict(str(path))
    except Exception as unreadable:  # noqa: BLE001 - not a weights file at all
        return (
            f"model.weights={path} cannot be read as weights ({brief(unreadable)}); valid: "
            f"a {', '.join(WEIGHT_FILES)} state dict"
        )
    own = timm.create_model(arch, pretrained=False).state_dict()
    for key, value in own.items():
        if key not in state:
            return f"{where}: it has no {key} (shape {tuple(value.shape)}); {_remedy(arch)}"
        if tuple(state[key].shape) != tuple(value.shape):
            return (
                f"{where}: {key} is {tuple(state[key].shape)} in the file, "
                f"{tuple(value.shape)} in the model; {_remedy(arch)}"
            )
    extra = next((k for k in state if k not in own), None)
    if extra is not None:
        return f"{where}: the file has {extra}, which the model does not; {_remedy(arch)}"
    return f"{where} ({brief(error)}); {_remedy(arch)}"


def _remedy(arch: str) -> str:
    return f"valid: weights saved from {arch} itself (or set model.arch to the file's)"


def _model_inputs(model: nn.Module, input_size: int | None) -> ModelInputs:
    from timm.data import resolve_model_data_config

    config = resolve_model_data_config(model)
    _, height, width = config["input_size"]
    if input_size is not None:
        height = width = input_size
    interpolation = config.get("interpolation", "bilinear")
    if interpolation not in INTERPOLATIONS:  # e.g. "random": a training-time choice
        interpolation = "bilinear"
    return ModelInputs(
        size=(height, width),
        interpolation=interpolation,
        channels=config["input_size"][0],
        mean=tuple(float(m) for m in config["mean"]),
        std=tuple(float(s) for s in config["std"]),
    )


def _top_modules(model: nn.Module, names: set[str]) -> list[tuple[str, nn.Module]]:
    """The largest modules all of whose parameters are in `names`, in module order."""
    inside = [
        (name, module)
        for name, module in model.named_modules()
        if name
        and any(True for _ in module.parameters())
        and all(f"{name}.{n}" in names for n, _ in module.named_parameters())
    ]
    kept = {name for name, _ in inside}
    return [(n, m) for n, m in inside if n.rpartition(".")[0] not in kept]
