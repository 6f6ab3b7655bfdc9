"""Pairs hedge: long one perp, short another (e.g. long ETH / short SOL, or long ETH / short BTC),
sized by notional or by a rolling beta, rebalanced periodically.

The long leg targets `notional`; the short leg `hedge_ratio x notional`, where the ratio is 1
(`hedge = "notional"`) or the OLS beta of the long leg's hourly log returns on the short leg's over
the last `beta_bars` bars (`hedge = "beta"`, clamped to `beta_limits`). Both legs are capped so
that the initial margin of each exchange stays within (1 - collateral_buffer) of its collateral.
Every `every` (and after a margin warning) each leg is brought back to its target when it has
drifted from it by more than `drift_tolerance`. The strategy waits until both instruments trade
(e.g. Binance's SOL perp only from 2025-02-01 in the sample).
"""

from __future__ import annotations

import math

import attrs
import numpy as np

from xmargin.ledger.commands import PlaceOrder
from xmargin.sim.strategy import Wakes
from xmargin.strategies.collateral import (buffer_validator, build_params, duration, exchange_of, finite_number,
                                   instrument_key, margin_of, notional_budget, one_of, positive_int)


def _limits(instance, attribute, value):
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
            or not 0 < value[0] <= value[1]):
        shown = list(value) if isinstance(value, tuple) else value
        raise ValueError(f"{attribute.name} = {shown!r}: must be [low, high] with 0 < low <= high, e.g. [0.25, 4.0]")


@attrs.frozen
class PairsHedgeParams:
    """long / short: perp keys of the two legs (e.g. "binance:ETH/USDT:USDT", "binance:BTC/USDT:USDT").
    notional: target notional of the long leg, quote units (> 0).
    hedge: "notional" (short notional = long notional) or "beta" (short = beta x long), default "notional".
    beta_bars: bars in the rolling beta window (>= 2), default 168 (a week of 1h bars).
    beta_limits: [low, high] clamp of the beta, default [0.25, 4.0].
    leverage: leverage of both legs (> 0), default 3.
    every: rebalance interval, default "1d".
    drift_tolerance: relative deviation of a leg from its target that triggers a trade, default 0.1.
    collateral_buffer: fraction of each exchange's collateral never committed, [0, 1), default 0.5."""

    long: str = attrs.field(validator=instrument_key)
    short: str = attrs.field(validator=instrument_key)
    notional: float = attrs.field(validator=finite_number(0.0, min_open=True))
    hedge: str = attrs.field(default="notional", validator=one_of("notional", "beta"))
    beta_bars: int = attrs.field(default=168, validator=positive_int)
    beta_limits: tuple = attrs.field(default=(0.25, 4.0), converter=tuple, validator=_limits)
    leverage: float = attrs.field(default=3.0, validator=finite_number(0.0, 125.0, min_open=True))
    every: str = attrs.field(default="1d", validator=duration)
    drift_tolerance: float = attrs.field(default=0.1, validator=finite_number(0.0, 1.0, min_open=True))
    collateral_buffer: float = attrs.field(default=0.5, validator=buffer_validator)

    def __attrs_post_init__(self):
        if self.long == self.short:
            raise ValueError(f"long = short = {self.long!r}: the two legs must be different instruments")
        for name in ("long", "short"):
            if getattr(self, name).count(":") != 2:
                raise ValueError(f"{name} = {getattr(self, name)!r}: must be a perp key "
                                 "'exchange:BASE/QUOTE:SETTLE', e.g. 'binance:ETH/USDT:USDT'")
        if self.hedge == "beta" and self.beta_bars < 2:
            raise ValueError(f"beta_bars = {self.beta_bars!r}: must be >= 2 when hedge = 'beta'")


def rolling_beta(long_close: np.ndarray, short_close: np.ndarray) -> float:
    """OLS beta of the long leg's log returns on the short leg's (nan when undefined)."""
    if len(long_close) != len(short_close) or len(long_close) < 3:
        return math.nan
    if not (np.all(np.isfinite(long_close)) and np.all(np.isfinite(short_close))):
        return math.nan
    r_long = np.diff(np.log(long_close))
    r_short = np.diff(np.log(short_close))
    variance = float(np.var(r_short))
    if variance <= 0:
        return math.nan
    return float(np.mean((r_long - r_long.mean()) * (r_short - r_short.mean())) / variance)


class PairsHedge:
    def __init__(self, params: dict):
        self.params = build_params(PairsHedgeParams, params, "pairs-hedge")
        self.last_ratio = math.nan

    def wakes(self) -> Wakes:
        return Wakes(every=self.params.every, margin_warnings=True)

    def hedge_ratio(self, view) -> float:
        p = self.params
        if p.hedge == "notional":
            return 1.0
        long_bars = view.bars(p.long, p.beta_bars + 1)["close"]
        short_bars = view.bars(p.short, p.beta_bars + 1)["close"]
        if len(long_bars) < p.beta_bars + 1:
            return math.nan
        beta = rolling_beta(long_bars, short_bars)
        return min(max(beta, p.beta_limits[0]), p.beta_limits[1]) if math.isfinite(beta) else math.nan

    def targets(self, view, ratio: float) -> tuple[float, float]:
        """(long quantity, short quantity) within every exchange's buffer budget."""
        p = self.params
        weights = {}
        for key, weight in ((p.long, 1.0), (p.short, ratio)):
            weights[exchange_of(key)] = weights.get(exchange_of(key), 0.0) + weight
        notional = p.notional
        for exchange, weight in weights.items():
            own = margin_of(view, exchange, (p.long, p.short))  # released on resize, cross or isolated
            settle = view.instrument(p.long if exchange_of(p.long) == exchange else p.short).settle
            budget = notional_budget(view.margin(exchange, settle), p.collateral_buffer, p.leverage, release=own)
            notional = min(notional, budget / weight)
        return (view.round_quantity(p.long, notional / view.price(p.long)),
                view.round_quantity(p.short, -ratio * notional / view.price(p.short)))

    def on_wake(self, view, wake):
        p = self.params
        if any(view.open_orders(exchange_of(k)) for k in (p.long, p.short)):
            return []
        if not all(math.isfinite(view.price(k)) for k in (p.long, p.short)):
            return []
        ratio = self.hedge_ratio(view)
        if not math.isfinite(ratio):
            return []
        self.last_ratio = ratio
        orders = []
        for key, target in zip((p.long, p.short), self.targets(view, ratio)):
            held = view.position(key)
            delta = view.round_quantity(key, target - held)
            if abs(delta) <= p.drift_tolerance * abs(target) and target != 0:
                continue
            if delta == 0 or abs(delta) * view.price(key) < view.instrument(key).min_notional:
                continue
            reduce = held * delta < 0 and abs(delta) <= abs(held)
            orders.append(PlaceOrder.market(key, delta, leverage=None if reduce else p.leverage,
                                            reduce_only=reduce, tag="pairs"))
        # reductions first: they free margin for the increases at the fill
        return sorted(orders, key=lambda o: not o.reduce_only)
