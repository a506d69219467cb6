"""Backbones and head layouts in every scenario; weight initialisation."""

from __future__ import annotations

import pytest
import torch

from lab.models import build_model

OPTIONS = {
    "mlp": {"hidden_sizes": [32, 16], "activation": "tanh", "dropout": 0.2},
    "cnn": {"channels": [4, 8], "hidden_size": 16},
}


@pytest.mark.parametrize("name", ["mlp", "cnn"])
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
def test_single_head_shapes(name, shape):
    model = build_model(name, shape, [10], **OPTIONS[name])
    assert model(torch.randn(5, *shape)).shape == (5, 10)
    assert not model.multi_head


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_multi_head_task_il(name):
    torch.manual_seed(0)
    model = build_model(name, (1, 8, 8), [2, 3, 2], **OPTIONS[name]).eval()
    x = torch.randn(6, 1, 8, 8)
    assert model(x, 1).shape == (6, 3)
    ids = torch.tensor([0, 1, 2, 1, 0, 2])
    mixed = model(x, ids)
    assert mixed.shape == (6, 3)
    for row, t in enumerate(ids.tolist()):
        width = [2, 3, 2][t]
        torch.testing.assert_close(mixed[row, :width], model(x[row : row + 1], t)[0])
        assert torch.isinf(mixed[row, width:]).all()  # padding of narrower heads
    with pytest.raises(ValueError, match="needs the task id"):
        model(x)


@torch.no_grad()
def test_initialisations():
    torch.manual_seed(0)
    model = build_model("mlp", (1, 28, 28), [10], init="xavier", hidden_sizes=[400])
    first = model.backbone.layers[1]
    assert torch.all(first.bias == 0)
    bound = (6 / (784 + 400)) ** 0.5  # Glorot uniform
    assert float(first.weight.abs().max()) <= bound
    assert float(first.weight.abs().max()) > 0.95 * bound

    model = build_model("mlp", (1, 28, 28), [10], init="kaiming", hidden_sizes=[400])
    first = model.backbone.layers[1]
    assert float(first.weight.std()) == pytest.approx((2 / 784) ** 0.5, rel=0.02)  # He normal

    torch.manual_seed(0)
    default = build_model("mlp", (1, 28, 28), [10], hidden_sizes=[400])
    assert float(default.backbone.layers[1].weight.abs().max()) <= 1 / 784**0.5  # PyTorch's
    with pytest.raises(ValueError, match="valid: default, kaiming, xavier"):
        build_model("mlp", (1, 8, 8), [10], init="orthogonal", hidden_sizes=[4])
