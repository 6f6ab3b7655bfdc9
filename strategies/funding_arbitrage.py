"""Cross-exchange funding arbitrage: long the perp where funding is lower, short it where funding is
higher, same quantity on both exchanges (delta neutral, equal notional up to the basis).

Funding intervals differ (Binance 8h, Hyperliquid 1h), so rates are compared per hour
(rate / interval hours) and thresholds are annualised (per hour x 8760). The signal is the spread
of the trailing means over `lookback_hours`. Entry when |spread| > `entry_apr`; exit when the
spread in the direction held falls below `exit_apr` (it may flip; the next entry then takes the
other side). Each exchange is a separate collateral silo: the leg size is the smallest of
`notional` and what each exchange's collateral allows within `collateral_buffer`. The legs are
brought back to that target when either drifts from it by more than `drift_tolerance` (prices
move the target too: a losing silo's budget shrinks, so the tolerance is also how far the buffer
may be eaten into before the legs are cut), and, before any resizing, a
`CollateralRebalancer` sends collateral to an exchange whose free fraction falls below
`transfer_trigger` from one that has spare (see strategies/collateral.py for the asset rule: a
transfer moves an asset the destination accepts, from an exchange that holds it; no conversion).
"""

from __future__ import annotations

import math

import attrs

from xmargin.ledger.commands import PlaceOrder
from xmargin.sim.strategy import Wakes
from xmargin.strategies.collateral import (YEAR_HOURS, CollateralRebalancer, FundingHistory, buffer_validator,
                                   build_params, duration, exchange_of, finite_number,
                                   hourly_rate, margin_of, notional_budget)

HOUR_NS = 3_600_000_000_000


def _two_perps(instance, attribute, value):
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(k, str) and k.count(":") == 2 for k in value)):
        raise ValueError(f"{attribute.name} = {value!r}: must be two perp keys on different exchanges, e.g. "
                         "['binance:BTC/USDT:USDT', 'hyperliquid:BTC/USDC:USDC']")
    if exchange_of(value[0]) == exchange_of(value[1]):
        raise ValueError(f"{attribute.name} = {value!r}: the two perps must be on different exchanges")


def _assets_map(instance, attribute, value):
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, (list, tuple)) and v and all(isinstance(a, str) for a in v)
            for k, v in value.items()):
        raise ValueError(f"{attribute.name} = {value!r}: must map exchange -> list of assets, e.g. "
                         "{ binance = ['USDT', 'USDC'], hyperliquid = ['USDC'] }")


@attrs.frozen
class FundingArbitrageParams:
    """perps: the two perps of the same asset on two exchanges.
    notional: target notional of each leg, quote units (> 0).
    leverage: leverage of both legs (> 0), default 3.
    entry_apr: enter when |annualised per-hour funding spread| > entry_apr (> 0), default 0.1.
    exit_apr: exit when the spread in the held direction < exit_apr (< entry_apr), default 0.02.
    lookback_hours: trailing window of the funding means (hours, >= 1), default 24.
    drift_tolerance: relative deviation of a leg from the target that triggers a rebalance, default 0.1.
    collateral_buffer: fraction of each exchange's collateral never committed, [0, 1), default 0.5.
    transfer_trigger: free fraction (free collateral / collateral) below which an exchange is topped
    up by a transfer, [0, collateral_buffer], default 0.9 x collateral_buffer; the top-up brings it
    back to `collateral_buffer`, and a source never gives below that. 0 disables transfers.
    min_transfer: smallest transfer, asset units (>= 0), default 100.
    collateral_assets: exchange -> assets a transfer may bring there (first: the pool watched);
    default: the settle asset of the perp there.
    every: wake interval, default "1h" (Hyperliquid settles hourly)."""

    perps: tuple = attrs.field(converter=tuple, validator=_two_perps)
    notional: float = attrs.field(validator=finite_number(0.0, min_open=True))
    leverage: float = attrs.field(default=3.0, validator=finite_number(0.0, 125.0, min_open=True))
    entry_apr: float = attrs.field(default=0.1, validator=finite_number(0.0, min_open=True))
    exit_apr: float = attrs.field(default=0.02, validator=finite_number())
    lookback_hours: int = attrs.field(default=24, validator=finite_number(1.0))
    drift_tolerance: float = attrs.field(default=0.1, validator=finite_number(0.0, 1.0, min_open=True))
    collateral_buffer: float = attrs.field(default=0.5, validator=buffer_validator)
    transfer_trigger: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(finite_number(0.0, 1.0, max_open=True)))
    min_transfer: float = attrs.field(default=100.0, validator=finite_number(0.0))
    collateral_assets: dict = attrs.field(factory=dict, validator=_assets_map)
    every: str = attrs.field(default="1h", validator=duration)

    def __attrs_post_init__(self):
        if self.exit_apr >= self.entry_apr:
            raise ValueError(f"exit_apr = {self.exit_apr!r}: must be < entry_apr ({self.entry_apr!r})")
        if self.transfer_trigger is None:
            object.__setattr__(self, "transfer_trigger", 0.9 * self.collateral_buffer)
        if self.transfer_trigger > self.collateral_buffer:
            raise ValueError(f"transfer_trigger = {self.transfer_trigger!r}: must be <= collateral_buffer "
                             f"({self.collateral_buffer!r}), the level a top-up restores")
        exchanges = {exchange_of(k) for k in self.perps}
        unknown = set(self.collateral_assets) - exchanges
        if unknown:
            raise ValueError(f"collateral_assets: unknown exchanges {sorted(unknown)}; the perps trade on "
                             f"{sorted(exchanges)}")


class FundingArbitrage:
    def __init__(self, params: dict):
        self.params = build_params(FundingArbitrageParams, params, "funding-arbitrage")
        self.history = FundingHistory()
        self.direction = 0  # +1: long perps[0] / short perps[1]; -1: the reverse; 0: flat
        self.rebalancer: CollateralRebalancer | None = None

    def wakes(self) -> Wakes:
        return Wakes(every=self.params.every, margin_warnings=True)

    def spread_apr(self, view) -> float:
        """Annualised per-hour funding of perps[1] minus perps[0], trailing means (nan until each perp
        has settled at least once in the window). > 0: perps[1] pays more, short it."""
        start = view.now_ns - int(self.params.lookback_hours * HOUR_NS) - HOUR_NS
        means = []
        for key in self.params.perps:
            rates = self.history.since(key, start)
            if not rates:
                return math.nan
            means.append(hourly_rate(view, key, sum(rates) / len(rates)))
        return (means[1] - means[0]) * YEAR_HOURS

    def _rebalancer(self, view) -> CollateralRebalancer:
        if self.rebalancer is None:
            p = self.params
            accepts = {exchange_of(k): tuple(p.collateral_assets.get(exchange_of(k), (view.instrument(k).settle,)))
                       for k in p.perps}
            self.rebalancer = CollateralRebalancer(accepts=accepts, trigger=p.transfer_trigger,
                                                   target=p.collateral_buffer, min_transfer=p.min_transfer)
        return self.rebalancer

    def target_quantity(self, view) -> float:
        """Quantity of each leg: notional / price, capped by every exchange's buffer budget, rounded to
        both lot sizes."""
        p = self.params
        price = max(view.price(k) for k in p.perps)
        notional = p.notional
        for key in p.perps:
            exchange = exchange_of(key)
            pool = view.margin(exchange, view.instrument(key).settle)
            own = margin_of(view, exchange, (key,))  # released when the leg is resized, cross or isolated
            notional = min(notional, notional_budget(pool, p.collateral_buffer, p.leverage, release=own))
        quantity = notional / price
        for key in p.perps:
            quantity = view.round_quantity(key, quantity)
        return quantity

    def on_wake(self, view, wake):
        p = self.params
        for key in p.perps:
            self.history.observe(view, key)
        if any(view.open_orders(exchange_of(k)) for k in p.perps):
            return []
        if not all(math.isfinite(view.price(k)) for k in p.perps):
            return []
        held = [view.position(k) for k in p.perps]
        if self.direction == 0 and any(held):  # e.g. a leg left after a liquidation
            self.direction = 1 if held[0] > 0 or held[1] < 0 else -1
        spread = self.spread_apr(view)
        commands: list = []
        if self.direction != 0 and (not math.isfinite(spread) or self.direction * spread < p.exit_apr):
            self.direction = 0
            return [PlaceOrder.market(k, -q, reduce_only=True, tag="arb-exit") for k, q in zip(p.perps, held) if q]
        if self.direction == 0:
            if math.isfinite(spread) and abs(spread) > p.entry_apr:
                self.direction = 1 if spread > 0 else -1
                commands += self.orders(view, held, self.target_quantity(view), "entry")
            return commands
        # collateral first: top up a silo that runs short; legs are resized on the next wake, once the
        # transfer has arrived (a transfer in flight backs nothing)
        if p.transfer_trigger > 0:
            commands += self._rebalancer(view).commands(view)
        if commands or view.in_flight():
            return commands
        target = self.target_quantity(view)
        drift = max(abs(abs(q) - target) for q in held)
        if drift > p.drift_tolerance * max(target, 1e-12):
            commands += self.orders(view, held, target, "rebalance")
        return commands

    def orders(self, view, held, target: float, tag: str) -> list:
        out = []
        signs = (self.direction, -self.direction)
        for key, sign, quantity in zip(self.params.perps, signs, held):
            delta = view.round_quantity(key, sign * target - quantity)
            if delta == 0 or abs(delta) * view.price(key) < view.instrument(key).min_notional:
                continue
            reduce = quantity * delta < 0 and abs(delta) <= abs(quantity)
            out.append(PlaceOrder.market(key, delta, leverage=None if reduce else self.params.leverage,
                                         reduce_only=reduce, tag=f"arb-{tag}"))
        return out
