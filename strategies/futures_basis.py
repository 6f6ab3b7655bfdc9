"""Futures basis (cash-and-carry on a dated future): long the spot (or the perp) and short a
quarterly future of the same asset on one exchange, collecting the future's premium as it
converges to the spot at expiry; roll to the next quarterly before expiry.

Which future: among the dataset's dated futures of the hedge's exchange, base and quote, the one
expiring soonest that has more than `roll_before` left and a price. Entry when that future's
annualised basis, (future / hedge - 1) / years to expiry, exceeds `entry_apr`; exit (both legs
closed) when the held future's basis falls below `exit_apr`. Roll: when the held future has
`roll_before` or less left, buy it back and sell the next one for the same quantity (the hedge leg
stays). A future that expired while held was settled by the exchange (`ContractExpired`): the
unhedged leg is then hedged again with the next future at the next wake.

Sizing: the short future gets `notional / hedge price` base units; the long side the same quantity,
split between the hedge and an optional `perp` by `perp_share` (rounded down to the lots).
Margin modes: any; in cross the spot costs cash that backs nothing, in multi-asset or portfolio
mode the engine counts it as collateral (with spot hedging). Base-asset units already in the
account at the first wake are not treated as the hedge leg.
"""

from __future__ import annotations

import math

import attrs

from xmargin.dataset.feed import timeframe_ns
from xmargin.ledger.commands import PlaceOrder
from xmargin.sim.strategy import Wakes
from xmargin.strategies.collateral import build_params, duration, exchange_of, finite_number, instrument_key

YEAR_NS = 365.0 * 86_400 * 1_000_000_000
@attrs.frozen
class FuturesBasisParams:
    """hedge: the long leg, a spot ("binance:BTC/USDT") or a perp ("binance:BTC/USDT:USDT") key.
    notional: target notional of each leg, quote units (> 0).
    leverage: leverage of the future (and of a perp hedge), default 3.
    entry_apr / exit_apr: enter above / exit below this annualised basis (fractions per year),
    defaults 0.0 / -1.0 (always enter, exit only on a deep backwardation).
    roll_before: roll when the held future has this long or less to expiry, default "2d".
    every: wake interval, default "1h".
    perp / perp_share: a perp of the same asset holding that share of the long side (0..1), so the
    book is spot + perp + future; default none."""

    hedge: str = attrs.field(validator=instrument_key)
    notional: float = attrs.field(validator=finite_number(0.0, min_open=True))
    perp: str | None = attrs.field(default=None)
    perp_share: float = attrs.field(default=0.0, validator=finite_number(0.0, 1.0))
    leverage: float = attrs.field(default=3.0, validator=finite_number(0.0, 125.0, min_open=True))
    entry_apr: float = attrs.field(default=0.0, validator=finite_number())
    exit_apr: float = attrs.field(default=-1.0, validator=finite_number())
    roll_before: str = attrs.field(default="2d", validator=duration)
    every: str = attrs.field(default="1h", validator=duration)

    def __attrs_post_init__(self):
        if self.exit_apr > self.entry_apr:
            raise ValueError(f"exit_apr = {self.exit_apr!r}: must be <= entry_apr ({self.entry_apr!r})")
        if self.perp_share and (self.perp is None or self.perp.count(":") != 2):
            raise ValueError(f"perp_share = {self.perp_share!r}: needs perp = a perp key 'exchange:BASE/QUOTE:SETTLE'")


class FuturesBasis:
    def __init__(self, params: dict):
        self.params = build_params(FuturesBasisParams, params, "futures-basis")
        self.exchange = exchange_of(self.params.hedge)
        self.roll_ns = timeframe_ns(self.params.roll_before)  # parsed once, read at every wake
        self.base_reserve: float | None = None

    def wakes(self) -> Wakes:
        return Wakes(every=self.params.every, margin_warnings=True)

    # -- reading the view -----------------------------------------------------------------------
    def futures(self, view) -> list:
        """Keys of the dated futures matching the hedge, soonest expiry first."""
        hedge = view.instrument(self.params.hedge)
        found = [view.instrument(k) for k in view.instruments]
        found = [i for i in found if i.market == "future" and i.exchange == hedge.exchange and i.base == hedge.base
                 and i.quote == hedge.quote and i.contract == "linear"]
        return [i.key for i in sorted(found, key=lambda i: (i.expiry_ns, i.key))]

    def time_left(self, view, key: str) -> int:
        return view.instrument(key).expiry_ns - view.now_ns

    def next_future(self, view, exclude: str = "") -> str | None:
        """The soonest future with more than `roll_before` left and a price."""
        limit = self.roll_ns
        for key in self.futures(view):
            if key != exclude and self.time_left(view, key) > limit and math.isfinite(view.price(key)):
                return key
        return None

    def basis_apr(self, view, key: str) -> float:
        """Annualised premium of the future over the hedge: (F / S - 1) / years to expiry."""
        years = self.time_left(view, key) / YEAR_NS
        if years <= 0:
            return math.nan
        return (view.price(key) / view.price(self.params.hedge) - 1.0) / years

    def hedge_quantity(self, view) -> float:
        """The long side held now: the hedge (spot balance beyond the reserve, or perp position) plus
        the optional perp."""
        hedge = view.instrument(self.params.hedge)
        if hedge.is_derivative:
            held = view.position(self.params.hedge)
        else:
            held = view.round_quantity(self.params.hedge, max(view.balance(self.exchange, hedge.base)
                                                              - (self.base_reserve or 0.0), 0.0))
        if self.params.perp is not None:
            held += view.position(self.params.perp)
        return held

    def target(self, view, future: str) -> float:
        price = view.price(self.params.hedge)
        quantity = self.params.notional / price
        return min(view.round_quantity(self.params.hedge, quantity), view.round_quantity(future, quantity))

    def long_orders(self, view, quantity: float, tag: str) -> list:
        """Orders buying `quantity` of the long side (negative: selling it), split hedge / perp."""
        p = self.params
        perp_part = view.round_quantity(p.perp, quantity * p.perp_share) if p.perp is not None else 0.0
        hedge_part = view.round_quantity(p.hedge, quantity - perp_part)
        orders = []
        for key, part in ((p.hedge, hedge_part), (p.perp, perp_part)):
            if key is None or part == 0:
                continue
            derivative = view.instrument(key).is_derivative
            orders.append(PlaceOrder.market(key, part, leverage=p.leverage if derivative and part > 0 else None,
                                            reduce_only=derivative and part < 0, tag=tag))
        return orders

    # -- the wake -------------------------------------------------------------------------------
    def on_wake(self, view, wake):
        p = self.params
        hedge = view.instrument(p.hedge)
        if self.base_reserve is None:
            self.base_reserve = 0.0 if hedge.is_derivative else view.balance(self.exchange, hedge.base)
        if view.open_orders(self.exchange) or not math.isfinite(view.price(p.hedge)):
            return []
        held = [k for k in self.futures(view) if view.position(k) != 0]
        hedge_qty = self.hedge_quantity(view)
        if hedge_qty * view.price(p.hedge) < hedge.min_notional:
            hedge_qty = 0.0  # dust left by rounding is not a position
        if held:
            current = held[0]
            short = view.position(current)
            if self.basis_apr(view, current) < p.exit_apr:
                return self.close(view, hedge_qty, held, "exit")
            if self.time_left(view, current) <= self.roll_ns:
                following = self.next_future(view, exclude=current)
                # at or past the expiry the exchange settles it: only the next one is sold
                orders = [PlaceOrder.market(current, -short, reduce_only=True, tag="basis-roll")] \
                    if self.time_left(view, current) > 0 else []
                if following is not None:
                    orders.append(PlaceOrder.market(following, short, leverage=p.leverage, tag="basis-roll"))
                return orders
            return []
        candidate = self.next_future(view)
        if candidate is None:
            return self.close(view, hedge_qty, [], "no-future") if hedge_qty else []
        if hedge_qty > 0:  # the held future expired (settled by the exchange): hedge again
            quantity = min(hedge_qty, view.round_quantity(candidate, hedge_qty))
            return [PlaceOrder.market(candidate, -quantity, leverage=p.leverage, tag="basis-rehedge")]
        if self.basis_apr(view, candidate) <= p.entry_apr:
            return []
        quantity = self.target(view, candidate)
        if quantity * view.price(candidate) < view.instrument(candidate).min_notional:
            return []
        return self.long_orders(view, quantity, "basis-entry") + [
            PlaceOrder.market(candidate, -quantity, leverage=p.leverage, tag="basis-entry")]

    def close(self, view, hedge_qty: float, futures: list, tag: str) -> list:
        orders = [PlaceOrder.market(k, -view.position(k), reduce_only=True, tag=f"basis-{tag}") for k in futures]
        p = self.params
        for key in (p.hedge, p.perp):
            if key is None:
                continue
            instrument = view.instrument(key)
            held = view.position(key) if instrument.is_derivative else view.round_quantity(
                key, max(view.balance(self.exchange, instrument.base) - (self.base_reserve or 0.0), 0.0))
            if held > 0:
                orders.append(PlaceOrder.market(key, -held, reduce_only=instrument.is_derivative, tag=f"basis-{tag}"))
        return orders
