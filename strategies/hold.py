"""Hold: open fixed positions at the first bar close and keep them. The simplest hedged book,
useful to compare margin modes on the same exposure (e.g. long ETH / short SOL)."""

from __future__ import annotations

import attrs

from xmargin.ledger.commands import PlaceOrder
from xmargin.sim.strategy import Wakes
from xmargin.strategies.collateral import build_params


@attrs.frozen
class HoldParams:
    """positions: instrument key -> notional in quote units (+ long, - short; inverse contracts:
    USD, turned into contracts of the instrument's contract size).
    margin_modes: instrument key -> isolated | cross (optional, mixed mode).
    leverage: instrument key -> leverage (optional)."""

    positions: dict = attrs.field(validator=attrs.validators.instance_of(dict))
    margin_modes: dict = attrs.field(factory=dict)
    leverage: dict = attrs.field(factory=dict)


class Hold:
    def __init__(self, params: dict):
        self.params = build_params(HoldParams, params, "hold")
        self.opened = False

    def wakes(self) -> Wakes:
        return Wakes()

    def on_wake(self, view, wake):
        if self.opened:
            return []
        self.opened = True
        orders = []
        for key, notional in self.params.positions.items():
            quantity = view.quantity_for(key, notional)
            orders.append(PlaceOrder.market(key, quantity, margin_mode=self.params.margin_modes.get(key),
                                            leverage=self.params.leverage.get(key)))
        return orders
