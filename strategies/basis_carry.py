"""Basis carry (cash-and-carry): hold the spot asset and short the perp of the same asset on one
exchange while funding pays the short.

Entry when the annualised trailing mean of the last `lookback` funding settlements exceeds
`entry_apr`; exit (sell the spot, buy back the perp) when it falls below `exit_apr`. While in,
both legs are kept at the same quantity, `notional / price` capped by the collateral buffer, and
brought back to that target when either leg drifts from it by more than `drift_tolerance` (the
cap moves with the price, so the tolerance is also how far the buffer may be eaten into by an
adverse move before the legs are cut).

Margin modes: sizing assumes the spot leg backs nothing (single-asset cross: the quote spent on
spot leaves the margin pool), which is also safe in multi-asset mode where the engine counts the
spot holding as collateral after its haircut; the buffer check then reads the engine's own pool
figures (`View.margin`), so the same params run in both modes. Base-asset units already in the
account at the first wake (e.g. BTC deposited as collateral) are not treated as the spot leg.
"""

from __future__ import annotations

import math

import attrs

from xmargin.ledger.commands import PlaceOrder
from xmargin.sim.strategy import Wakes
from xmargin.strategies.collateral import (FEE_ALLOWANCE, FundingHistory, annualised, buffer_validator,
                                   build_params, committed, duration, exchange_of, finite_number, instrument_key,
                                   margin_of, positive_int)


@attrs.frozen
class BasisCarryParams:
    """spot: spot instrument key (e.g. "binance:BTC/USDT"); perp: the perp of the same asset on the
    same exchange (e.g. "binance:BTC/USDT:USDT").
    notional: target notional of each leg, quote units (> 0).
    leverage: perp leverage (> 0, within the exchange's bracket maximum), default 3.
    entry_apr / exit_apr: enter when the annualised mean funding rate > entry_apr, exit when it is
    < exit_apr (exit_apr <= entry_apr), as fractions per year (0.1 = 10 %/yr), defaults 0.1 / 0.0.
    lookback: settlements in the trailing mean (>= 1; 1 = the last settled rate), default 3.
    collateral_buffer: fraction of collateral never committed as initial margin, [0, 1), default 0.5.
    drift_tolerance: relative leg drift from the target quantity that triggers a rebalance, default 0.1.
    every: wake interval (one wake per funding settlement at least), default "1h"."""

    spot: str = attrs.field(validator=instrument_key)
    perp: str = attrs.field(validator=instrument_key)
    notional: float = attrs.field(validator=finite_number(0.0, min_open=True))
    leverage: float = attrs.field(default=3.0, validator=finite_number(0.0, 125.0, min_open=True))
    entry_apr: float = attrs.field(default=0.1, validator=finite_number())
    exit_apr: float = attrs.field(default=0.0, validator=finite_number())
    lookback: int = attrs.field(default=3, validator=positive_int)
    collateral_buffer: float = attrs.field(default=0.5, validator=buffer_validator)
    drift_tolerance: float = attrs.field(default=0.1, validator=finite_number(0.0, 1.0, min_open=True))
    every: str = attrs.field(default="1h", validator=duration)

    def __attrs_post_init__(self):
        if self.exit_apr > self.entry_apr:
            raise ValueError(f"exit_apr = {self.exit_apr!r}: must be <= entry_apr ({self.entry_apr!r})")
        if exchange_of(self.spot) != exchange_of(self.perp):
            raise ValueError(f"spot = {self.spot!r}, perp = {self.perp!r}: both legs must be on the same exchange")
        if self.spot.count(":") != 1:
            raise ValueError(f"spot = {self.spot!r}: must be a spot key without a settle suffix, e.g. "
                             "'binance:BTC/USDT'")
        if self.perp.count(":") != 2:
            raise ValueError(f"perp = {self.perp!r}: must be a perp key 'exchange:BASE/QUOTE:SETTLE', e.g. "
                             "'binance:BTC/USDT:USDT'")
        spot_base = self.spot.split(":")[1].split("/")[0]
        perp_base = self.perp.split(":")[1].split("/")[0]
        if spot_base != perp_base:
            raise ValueError(f"spot = {self.spot!r}, perp = {self.perp!r}: must be the same base asset")


class BasisCarry:
    def __init__(self, params: dict):
        self.params = build_params(BasisCarryParams, params, "basis-carry")
        self.exchange = exchange_of(self.params.spot)
        self.history = FundingHistory()
        self.base_reserve: float | None = None

    def wakes(self) -> Wakes:
        return Wakes(every=self.params.every, margin_warnings=True)

    # -- state ----------------------------------------------------------------------------------
    def spot_quantity(self, view) -> float:
        base = view.instrument(self.params.spot).base
        return view.balance(self.exchange, base) - (self.base_reserve or 0.0)

    def target_quantity(self, view, spot_quantity: float) -> float:
        """Equal quantity for both legs: notional / price, capped so that the perp's initial margin stays
        within (1 - buffer) of the cash left after buying the spot (the spot leg is assumed to back nothing)."""
        p = self.params
        price = view.price(p.spot)
        settle = view.instrument(p.perp).settle
        pool = view.margin(self.exchange, settle)
        perp_margin = margin_of(view, self.exchange, (p.perp,))  # cross initial or isolated margin
        other = committed(pool) - perp_margin
        perp = [m for m in view.positions(self.exchange) if m.instrument == p.perp]
        upnl = sum(m.unrealized_pnl for m in perp)
        held = sum(m.isolated_margin for m in perp)  # an isolated perp's margin has left the cash balance
        # equity of the carry: cash + the perp's margin held apart and PnL + our spot holding (at full value)
        equity = view.balance(self.exchange, settle) + held + upnl + max(spot_quantity, 0.0) * price
        keep = 1.0 - p.collateral_buffer
        cap = max(keep * equity - other, 0.0) / (1.0 / p.leverage + keep * (1.0 + FEE_ALLOWANCE) + FEE_ALLOWANCE)
        return view.round_quantity(p.perp, min(p.notional, cap) / price)

    def funding_apr(self, view) -> float:
        mean = self.history.mean(self.params.perp, self.params.lookback)
        return annualised(view, self.params.perp, mean) if math.isfinite(mean) else math.nan

    # -- the wake -------------------------------------------------------------------------------
    def on_wake(self, view, wake):
        p = self.params
        if self.base_reserve is None:
            self.base_reserve = view.balance(self.exchange, view.instrument(p.spot).base)
        self.history.observe(view, p.perp)
        if view.open_orders(self.exchange):
            return []
        price, perp_price = view.price(p.spot), view.price(p.perp)
        if not (math.isfinite(price) and math.isfinite(perp_price)):
            return []
        spot_qty = view.round_quantity(p.spot, max(self.spot_quantity(view), 0.0))
        if spot_qty * price < view.instrument(p.spot).min_notional:
            spot_qty = 0.0  # dust left by rounding is not a position
        perp_qty = view.position(p.perp)
        holding = spot_qty > 0 or perp_qty != 0
        apr = self.funding_apr(view)
        if holding and (not math.isfinite(apr) or apr < p.exit_apr):
            return self.close(spot_qty, perp_qty, "exit")
        if not holding:
            if math.isfinite(apr) and apr > p.entry_apr:
                target = self.target_quantity(view, 0.0)
                return self.move(view, 0.0, 0.0, target, "entry")
            return []
        target = self.target_quantity(view, spot_qty)
        drift = max(abs(spot_qty - target), abs(-perp_qty - target))
        if drift > p.drift_tolerance * max(target, 1e-12):
            return self.move(view, spot_qty, perp_qty, target, "rebalance")
        return []

    def move(self, view, spot_qty: float, perp_qty: float, target: float, tag: str) -> list:
        """Orders taking the spot leg to +target and the perp to -target (spot bought first so that its
        cost has left the pool before the perp's margin is checked at the fill)."""
        p = self.params
        orders = []
        spot_delta = view.round_quantity(p.spot, target - spot_qty)
        perp_delta = view.round_quantity(p.perp, -target - perp_qty)
        spot_min = view.instrument(p.spot).min_notional
        perp_min = view.instrument(p.perp).min_notional
        if abs(spot_delta) * view.price(p.spot) >= max(spot_min, 1e-9):
            orders.append(PlaceOrder.market(p.spot, spot_delta, tag=f"carry-{tag}"))
        if abs(perp_delta) * view.price(p.perp) >= max(perp_min, 1e-9) or (target == 0 and perp_qty != 0):
            orders.append(PlaceOrder.market(p.perp, perp_delta, leverage=p.leverage,
                                            reduce_only=perp_delta * perp_qty < 0 and abs(perp_delta) <= abs(perp_qty),
                                            tag=f"carry-{tag}"))
        return orders

    def close(self, spot_qty: float, perp_qty: float, tag: str) -> list:
        orders = []
        if perp_qty != 0:
            orders.append(PlaceOrder.market(self.params.perp, -perp_qty, reduce_only=True, tag=f"carry-{tag}"))
        if spot_qty > 0:
            orders.append(PlaceOrder.market(self.params.spot, -spot_qty, tag=f"carry-{tag}"))
        return orders
