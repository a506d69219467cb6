"""Weight decay toward zero, as a method of its own in the tables.

Krogh & Hertz (1992): shrink every weight toward 0 at each step, through the optimizer:

    coupled    g <- g + lambda * theta            (= lambda/2 * ||theta||^2 added to the loss)
    decoupled  theta <- theta - lr * lambda * theta, outside the adaptive/momentum update
               (Loshchilov & Hutter 2019, "Decoupled weight decay regularization")

`strength` is lambda; it replaces optimizer.weight_decay under this strategy. With
decoupled=null the optimizer's own kind is used: coupled for SGD and Adam, decoupled for
AdamW. Unlike L2 and EWC it pulls toward 0, not toward the previous task's weights, so it
limits how far any task can move the weights rather than protecting a particular task.
Under any other strategy, optimizer.weight_decay stays available ("EWC + weight decay").
"""

from __future__ import annotations

from dataclasses import replace

from lab.errors import ConfigError
from lab.optim import OptimizerSettings
from lab.strategies.base import Strategy


class WeightDecay(Strategy):
    name = "weight_decay"

    def __init__(self, strength: float = 1e-4, decoupled: bool | None = None):
        if not isinstance(strength, int | float) or strength < 0:
            raise ConfigError(f"strategy.strength={strength!r} is invalid; valid: a number >= 0")
        if decoupled is not None and not isinstance(decoupled, bool):
            raise ConfigError(
                f"strategy.decoupled={decoupled!r} is invalid; valid: true, false, null"
            )
        self.strength = float(strength)
        self.decoupled = decoupled

    def optimizer_settings(self, settings: OptimizerSettings) -> OptimizerSettings:
        decoupled = settings.decoupled_weight_decay if self.decoupled is None else self.decoupled
        return replace(settings, weight_decay=self.strength, decoupled_weight_decay=decoupled)
