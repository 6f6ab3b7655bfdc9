"""Core hedge plus isolated speculation (mixed margin mode in one account).

A delta-neutral core in cross margin (long `hedge_long` / short `hedge_short`: a spot-perp carry
such as BTC spot / BTC perp, or a perp pair), plus one high-leverage directional perp position
opened with `margin_mode = "isolated"`: its loss is capped at its own margin, so its liquidation
cannot draw on the cross pool that backs the hedge.

At the first wake both are opened, scaled down together if needed so that the cross initial
margin plus the isolated margin stay within (1 - collateral_buffer) of the account's collateral
(a spot leg's cost leaves the pool first). Every `every` (and after a margin warning) the hedge
legs are brought back to equal quantity at the entry notional when they drift by more than
`drift_tolerance`. The speculative position is left alone: it runs until the end or until it is
liquidated; with `reopen_spec = true` it is opened again at the next wake after a liquidation.
"""

from __future__ import annotations

import math

import attrs

from xmargin.ledger.commands import PlaceOrder
from xmargin.ledger.events import PositionLiquidated
from xmargin.sim.strategy import Wakes
from xmargin.strategies.collateral import (FEE_ALLOWANCE, boolean, buffer_validator, build_params, collateral, committed,
                                   duration, exchange_of, finite_number, instrument_key)


def _nonzero(instance, attribute, value):
    finite_number()(instance, attribute, value)
    if value == 0:
        raise ValueError(f"{attribute.name} = 0: must be non-zero (+ long, - short)")


@attrs.frozen
class CoreHedgeIsolatedParams:
    """hedge_long: spot or perp key of the core's long leg (e.g. "binance:BTC/USDT").
    hedge_short: perp key of the core's short leg (e.g. "binance:BTC/USDT:USDT").
    hedge_notional: notional of each core leg, quote units (> 0).
    hedge_leverage: leverage of the core's perp legs, cross margin (> 0), default 3.
    spec: perp key of the speculative position (e.g. "binance:ETH/USDT:USDT").
    spec_notional: its notional, quote units, + long / - short (non-zero).
    spec_leverage: its leverage, isolated margin (> 0), default 20.
    reopen_spec: reopen the speculative position after a liquidation, default false.
    every: rebalance interval of the core, default "1d".
    drift_tolerance: relative drift of a core leg that triggers a rebalance, default 0.1.
    collateral_buffer: fraction of the account's collateral never committed, [0, 1), default 0.5."""

    hedge_long: str = attrs.field(validator=instrument_key)
    hedge_short: str = attrs.field(validator=instrument_key)
    hedge_notional: float = attrs.field(validator=finite_number(0.0, min_open=True))
    spec: str = attrs.field(validator=instrument_key)
    spec_notional: float = attrs.field(validator=_nonzero)
    hedge_leverage: float = attrs.field(default=3.0, validator=finite_number(0.0, 125.0, min_open=True))
    spec_leverage: float = attrs.field(default=20.0, validator=finite_number(0.0, 125.0, min_open=True))
    reopen_spec: bool = attrs.field(default=False, validator=boolean)
    every: str = attrs.field(default="1d", validator=duration)
    drift_tolerance: float = attrs.field(default=0.1, validator=finite_number(0.0, 1.0, min_open=True))
    collateral_buffer: float = attrs.field(default=0.5, validator=buffer_validator)

    def __attrs_post_init__(self):
        exchanges = {exchange_of(k) for k in (self.hedge_long, self.hedge_short, self.spec)}
        if len(exchanges) != 1:
            raise ValueError(f"hedge_long, hedge_short, spec are on {sorted(exchanges)}: all three must be on one "
                             "exchange (the point is an isolated position inside the hedge's cross account)")
        if self.hedge_short.count(":") != 2 or self.spec.count(":") != 2:
            raise ValueError("hedge_short and spec must be perp keys 'exchange:BASE/QUOTE:SETTLE'")
        if self.spec in (self.hedge_long, self.hedge_short):
            raise ValueError(f"spec = {self.spec!r}: must not be one of the hedge legs (one position per "
                             "instrument; it would share the hedge's margin mode)")


class CoreHedgeIsolated:
    def __init__(self, params: dict):
        self.params = build_params(CoreHedgeIsolatedParams, params, "core-hedge-isolated")
        self.exchange = exchange_of(self.params.spec)
        self.scale: float | None = None  # fraction of the configured sizes opened at entry
        self.spec_liquidated = 0
        self.base_reserve = 0.0

    def wakes(self) -> Wakes:
        return Wakes(every=self.params.every, margin_warnings=True, fills=False)

    def is_spot(self, view, key: str) -> bool:
        return not view.instrument(key).is_derivative

    def long_quantity(self, view) -> float:
        key = self.params.hedge_long
        if self.is_spot(view, key):
            quantity = view.balance(self.exchange, view.instrument(key).base) - self.base_reserve
            quantity = view.round_quantity(key, max(quantity, 0.0))
            return quantity if quantity * view.price(key) >= view.instrument(key).min_notional else 0.0
        return view.position(key)

    def entry_scale(self, view) -> float:
        """The largest s <= 1 with s x (hedge IM + spec margin) <= (1 - b) x (collateral - s x spot cost)."""
        p = self.params
        pool = view.margin(self.exchange, view.instrument(p.spec).settle)
        keep = 1.0 - p.collateral_buffer
        perp_legs = 1 + (0 if self.is_spot(view, p.hedge_long) else 1)
        need = (perp_legs * p.hedge_notional / p.hedge_leverage + abs(p.spec_notional) / p.spec_leverage
                + FEE_ALLOWANCE * (perp_legs * p.hedge_notional + abs(p.spec_notional)))
        spot_cost = p.hedge_notional * (1.0 + FEE_ALLOWANCE) if self.is_spot(view, p.hedge_long) else 0.0
        room = keep * collateral(pool) - committed(pool)
        return max(min(1.0, room / (need + keep * spot_cost)), 0.0)

    def on_wake(self, view, wake):
        p = self.params
        if view.open_orders(self.exchange):
            return []
        if not all(math.isfinite(view.price(k)) for k in (p.hedge_long, p.hedge_short, p.spec)):
            return []
        liquidated = [e for e in wake.events if isinstance(e, PositionLiquidated) and e.instrument == p.spec]
        self.spec_liquidated += len(liquidated)
        orders = []
        if self.scale is None:
            if self.is_spot(view, p.hedge_long):
                self.base_reserve = view.balance(self.exchange, view.instrument(p.hedge_long).base)
            self.scale = self.entry_scale(view)
            if self.scale <= 0:
                return []
            orders += self.hedge_orders(view, 0.0, 0.0, "core-entry")
            orders += self.spec_order(view)
            return orders
        if view.position(p.spec) == 0 and p.reopen_spec and self.spec_liquidated and not liquidated:
            orders += self.spec_order(view)
        long_qty, short_qty = self.long_quantity(view), view.position(p.hedge_short)
        target = self.hedge_target(view)
        drift = max(abs(long_qty - target), abs(-short_qty - target))
        if target > 0 and drift > p.drift_tolerance * target:
            orders = self.hedge_orders(view, long_qty, short_qty, "core-rebalance") + orders
        return orders

    def hedge_target(self, view) -> float:
        p = self.params
        quantity = self.scale * p.hedge_notional / view.price(p.hedge_short)
        return view.round_quantity(p.hedge_long, view.round_quantity(p.hedge_short, quantity))

    def hedge_orders(self, view, long_qty: float, short_qty: float, tag: str) -> list:
        p = self.params
        target = self.hedge_target(view)
        out = []
        for key, goal, held in ((p.hedge_long, target, long_qty), (p.hedge_short, -target, short_qty)):
            delta = view.round_quantity(key, goal - held)
            if delta == 0 or abs(delta) * view.price(key) < view.instrument(key).min_notional:
                continue
            if self.is_spot(view, key):
                out.append(PlaceOrder.market(key, delta, tag=tag))
            else:
                reduce = held * delta < 0 and abs(delta) <= abs(held)
                out.append(PlaceOrder.market(key, delta, margin_mode="cross", reduce_only=reduce,
                                             leverage=None if reduce else p.hedge_leverage, tag=tag))
        return out

    def spec_order(self, view) -> list:
        p = self.params
        quantity = view.round_quantity(p.spec, self.scale * p.spec_notional / view.price(p.spec))
        if quantity == 0:
            return []
        return [PlaceOrder.market(p.spec, quantity, margin_mode="isolated", leverage=p.spec_leverage, tag="spec")]
