"""A small CNN backbone: two conv blocks (conv 3x3, activation, 2x2 max-pool), then a
fully connected layer. Works on any input of at least 4x4 pixels (digits' 8x8 too)."""

from __future__ import annotations

from torch import Tensor, nn

from lab.models.mlp import ACTIVATIONS


class CNN(nn.Module):
    def __init__(
        self,
        input_shape: tuple[int, int, int],
        channels: list[int],
        hidden_size: int,
        activation: str = "relu",
        dropout: float = 0.0,
    ):
        super().__init__()
        in_channels, height, width = input_shape
        layers: list[nn.Module] = []
        for out_channels in channels:
            layers += [
                nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
                ACTIVATIONS[activation](),
                nn.MaxPool2d(2),
            ]
            in_channels, height, width = out_channels, height // 2, width // 2
        layers += [nn.Flatten(), nn.Linear(in_channels * height * width, hidden_size)]
        layers.append(ACTIVATIONS[activation]())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        self.layers = nn.Sequential(*layers)
        self.out_features = hidden_size

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)
