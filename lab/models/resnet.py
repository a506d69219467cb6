"""ResNet-18 (He et al. 2016) from torchvision as a backbone, for users with real
pre-trained weights and GPUs.

`weights=None` (the default) starts from scratch; a torchvision weights name (e.g.
"IMAGENET1K_V1" or "DEFAULT") downloads ImageNet weights, which needs the internet.
`small_input=True` adapts it to 28x28 / 32x32 images as CIFAR ResNets do: the stem's 7x7
stride-2 convolution becomes 3x3 stride 1 and the max-pool goes, so a 32x32 image keeps a
4x4 map before the last stage instead of 1x1 (the new stem starts from scratch). Inputs
with other than 3 channels get a stem for their channels; with pre-trained weights and
the original stem, its RGB kernels are summed, the usual way to feed grey images.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lab.errors import WeightsError, brief


class ResNet18(nn.Module):
    def __init__(
        self,
        input_shape: tuple[int, int, int],
        weights: str | None = None,
        small_input: bool = True,
    ):
        import torchvision  # seconds to import: only for this model

        super().__init__()
        self.weights = weights
        self.pretrained = weights is not None  # kept as loaded, not re-initialised
        try:
            net = torchvision.models.resnet18(weights=weights)
        except Exception as error:  # noqa: BLE001 - offline: URLError; a cut file: others
            raise WeightsError(
                f"model.weights={weights}: torchvision's ResNet-18 weights could not be "
                f"downloaded ({brief(error)}); run once with internet (torch caches them in "
                f"{torch.hub.get_dir()}/checkpoints), or use model.weights=null, or "
                "model=timm model.arch=resnet18.a1_in1k model.weights=PATH for a local file"
            ) from None
        channels = input_shape[0]
        if small_input:
            net.conv1 = nn.Conv2d(channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
            net.maxpool = nn.Identity()
        elif channels != 3:
            conv = nn.Conv2d(channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
            with torch.no_grad():
                conv.weight.copy_(net.conv1.weight.sum(1, keepdim=True).expand_as(conv.weight))
            net.conv1 = conv
        stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        # layer groups from input to output: stem, then the four stages
        self.layers = nn.Sequential(
            stem, net.layer1, net.layer2, net.layer3, net.layer4, net.avgpool, nn.Flatten()
        )
        self.out_features = net.fc.in_features

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)
