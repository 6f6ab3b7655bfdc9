"""Shared helpers of the built-in strategies: parameter validators, the collateral buffer, a funding
history, and `CollateralRebalancer` (Transfer commands between exchange silos).

The collateral buffer
---------------------
Every built-in takes `collateral_buffer` (0 <= b < 1): never commit more than (1 - b) of an
account's collateral as initial margin; the rest stays free to absorb adverse moves and fees.
"Collateral" is what the engine reports for the pool that backs the position (`View.margin`):
the cross margin balance (wallet + cross unrealised PnL) plus the margin held by isolated
positions; "committed" is the cross initial margin plus the isolated margin. Strategies size new
exposure with `notional_budget` and shrink exposure when `committed > (1 - b) x collateral`.

Transfers and assets
--------------------
A Transfer moves one asset. The engine models no stablecoin conversion (there is no USDC/USDT
market in the sample), so `CollateralRebalancer` only sends an exchange an asset that it accepts
as collateral (by default the settle asset of the strategy's instruments there: USDT on
binance-usdm, USDC on Hyperliquid), and only from an exchange that holds that asset free. With
Binance USDT-M and Hyperliquid USDC this means: to let Hyperliquid draw on Binance, keep a USDC
reserve on the Binance account (`collateral = { USDT = ..., USDC = ... }`); the reverse direction
needs USDT on Hyperliquid, which it cannot use as margin. A Binance account in multi-asset mode
can accept USDC too: list it in the strategy's `collateral_assets`.
"""

from __future__ import annotations

import math
import re

import attrs

from xmargin._keys import unknown_keys
from xmargin.ledger.commands import Transfer

YEAR_HOURS = 24 * 365
FEE_ALLOWANCE = 0.001  # fraction of a notional kept aside for taker fees and slippage when sizing


# -- parameter validators: every message names the parameter and what is allowed ---------------------

def finite_number(minimum: float | None = None, maximum: float | None = None, *, min_open: bool = False,
                  max_open: bool = False):
    """A validator: a real number (not bool) within the given bounds."""

    def check(instance, attribute, value):
        low = "" if minimum is None else (f"> {minimum:g}" if min_open else f">= {minimum:g}")
        high = "" if maximum is None else (f"< {maximum:g}" if max_open else f"<= {maximum:g}")
        allowed = " and ".join(x for x in (low, high) if x) or "a finite number"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{attribute.name} = {value!r}: must be a number ({allowed})")
        if minimum is not None and (value <= minimum if min_open else value < minimum):
            raise ValueError(f"{attribute.name} = {value!r}: must be {allowed}")
        if maximum is not None and (value >= maximum if max_open else value > maximum):
            raise ValueError(f"{attribute.name} = {value!r}: must be {allowed}")

    return check


def positive_int(instance, attribute, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} = {value!r}: must be an integer >= 1")


def boolean(instance, attribute, value):
    if not isinstance(value, bool):
        raise ValueError(f"{attribute.name} = {value!r}: must be true or false")


def instrument_key(instance, attribute, value):
    if not isinstance(value, str) or value.count(":") < 1 or "/" not in value:
        raise ValueError(f"{attribute.name} = {value!r}: must be an instrument key 'exchange:symbol', "
                         "e.g. 'binance:BTC/USDT:USDT' (perp) or 'binance:BTC/USDT' (spot)")


def duration(instance, attribute, value):
    if not isinstance(value, str) or not re.fullmatch(r"[1-9]\d*[mhdw]", value):
        raise ValueError(f"{attribute.name} = {value!r}: must be a duration like '1h', '8h', '1d' "
                         "(a whole number of minutes, hours, days or weeks)")


def buffer_validator(instance, attribute, value):
    finite_number(0.0, 1.0, max_open=True)(instance, attribute, value)


def one_of(*options):
    def check(instance, attribute, value):
        if value not in options:
            raise ValueError(f"{attribute.name} = {value!r}: allowed {list(options)}")

    return check


def build_params(cls, params: dict, strategy: str):
    """`cls(**params)` with unknown keys reported by name (attrs would raise a bare TypeError)."""
    known = [a.name for a in attrs.fields(cls)]
    unknown = unknown_keys(params, known)
    if unknown:
        raise ValueError(f"{strategy}: unknown params {unknown}; allowed: {known}")
    missing = [a.name for a in attrs.fields(cls) if a.default is attrs.NOTHING and a.name not in params]
    if missing:
        raise ValueError(f"{strategy}: missing required params {missing}; see docs/strategies.md")
    return cls(**params)


def exchange_of(key: str) -> str:
    return key.split(":", 1)[0]


# -- the buffer ---------------------------------------------------------------------------------------

def collateral(pool) -> float:
    """The collateral of a pool: cross margin balance plus margin held by isolated positions."""
    return pool.margin_balance + pool.isolated_margin


def committed(pool) -> float:
    """Initial margin committed: cross initial margin (positions and open orders) + isolated margin."""
    return pool.initial_margin + pool.isolated_margin


def margin_budget(pool, buffer: float) -> float:
    """Initial margin that may still be committed in this pool: (1 - buffer) x collateral - committed
    (negative when the buffer is already breached)."""
    return (1.0 - buffer) * collateral(pool) - committed(pool)


def notional_budget(pool, buffer: float, leverage: float, release: float = 0.0) -> float:
    """The largest notional a position at `leverage` may have so that the pool stays within its buffer,
    given that `release` of the committed margin belongs to the position being sized (it is freed when
    that position is replaced). Never negative."""
    room = margin_budget(pool, buffer) + release
    return max(room, 0.0) / (1.0 / leverage + FEE_ALLOWANCE)


def margin_of(view, exchange: str, instruments) -> float:
    """Margin committed by the positions in `instruments` on `exchange`, whatever their margin mode:
    cross initial margin, or the margin an isolated position holds. It is what replacing these
    positions releases, so a strategy resizing them adds it back to its budget; counting only cross
    margin would make an isolated book's budget swing at every resize."""
    return sum(m.isolated_margin if m.margin_mode == "isolated" else m.initial_margin
               for m in view.positions(exchange) if m.instrument in instruments)


def buffer_breached(pool, buffer: float) -> bool:
    return committed(pool) > (1.0 - buffer) * collateral(pool) + 1e-9


# -- funding ------------------------------------------------------------------------------------------

def hourly_rate(view, key: str, rate: float) -> float:
    """A settled funding rate per hour: rate / the instrument's funding interval (hours)."""
    interval = view.instrument(key).funding_interval_hours or 8.0
    return rate / interval


class FundingHistory:
    """Settled funding rates seen by a strategy, one per settlement.

    The view only shows the last settled rate; `observe(view, key)` records it under its settlement
    time (the funding interval that contains the last closed bar), so a strategy woken at least once
    per interval (e.g. `every = "1h"`) sees every settlement, and waking twice in one interval does
    not count a rate twice.
    """

    def __init__(self):
        self._rates: dict[str, dict[int, float]] = {}

    def observe(self, view, key: str) -> None:
        rate = view.funding_rate(key)
        if not math.isfinite(rate):
            return
        bars = view.bars(key, 1)
        if len(bars["ts"]) == 0:
            return
        interval_ns = int((view.instrument(key).funding_interval_hours or 8.0) * 3_600_000_000_000)
        settlement = int(bars["ts"][-1]) // interval_ns * interval_ns
        self._rates.setdefault(key, {})[settlement] = float(rate)

    def last(self, key: str, count: int) -> list[float]:
        rates = self._rates.get(key, {})
        return [rates[t] for t in sorted(rates)[-count:]]

    def since(self, key: str, start_ns: int) -> list[float]:
        rates = self._rates.get(key, {})
        return [rates[t] for t in sorted(rates) if t >= start_ns]

    def mean(self, key: str, count: int) -> float:
        """Mean of the last `count` settlements (nan until `count` have been seen)."""
        values = self.last(key, count)
        return sum(values) / len(values) if len(values) == count else math.nan


def annualised(view, key: str, rate: float) -> float:
    """A funding rate per settlement as a simple annual rate (per hour x 8760)."""
    return hourly_rate(view, key, rate) * YEAR_HOURS


# -- transfers ----------------------------------------------------------------------------------------

@attrs.frozen
class CollateralRebalancer:
    """Tops up an exchange whose free collateral runs short with a Transfer from one that has spare.

    accepts: exchange -> assets it can use as collateral, first = the pool to watch (e.g.
    {"binance": ("USDT",), "hyperliquid": ("USDC",)}).
    trigger: act when a pool's free fraction (free collateral / collateral) falls below it.
    target: bring the short pool back to this free fraction; a source never gives below it.
    min_transfer: no transfer smaller than this (asset units).
    fee_allowance: kept aside at the source for the withdrawal fee.

    One transfer per destination at a time: nothing is sent to an exchange with a transfer in flight.
    The asset sent is one the destination accepts and the source holds (no conversion).
    """

    accepts: dict
    trigger: float
    target: float
    min_transfer: float = 100.0
    fee_allowance: float = 5.0

    def free_fraction(self, pool) -> float:
        base = collateral(pool)
        return (base - committed(pool)) / base if base > 0 else (1.0 if committed(pool) <= 0 else 0.0)

    def commands(self, view) -> list:
        in_flight = {t.destination for t in view.in_flight()}
        out = []
        spent: dict[tuple[str, str], float] = {}
        for destination, assets in sorted(self.accepts.items()):
            if destination in in_flight or not assets:
                continue
            pool = view.margin(destination, assets[0])
            base = collateral(pool)
            free = base - committed(pool)
            if self.free_fraction(pool) >= self.trigger:
                continue
            need = (self.target * base - free) / (1.0 - self.target)
            best = None
            for source in sorted(self.accepts):
                if source == destination:
                    continue
                for asset in assets:
                    spare = self.spare(view, source, asset) - spent.get((source, asset), 0.0)
                    if best is None or spare > best[0]:
                        best = (spare, source, asset)
            if best is None:
                continue
            spare, source, asset = best
            amount = math.floor(min(need, spare - self.fee_allowance) * 100) / 100
            if amount >= self.min_transfer:
                out.append(Transfer(asset, amount, source, destination))
                spent[(source, asset)] = spent.get((source, asset), 0.0) + amount + self.fee_allowance
        return out

    def spare(self, view, exchange: str, asset: str) -> float:
        """How much of `asset` can leave `exchange` and keep its free fraction >= target."""
        pool = view.margin(exchange, asset)
        held = view.balance(exchange, asset)
        if held <= 0:
            return 0.0
        base = collateral(pool)
        free = base - committed(pool)
        room = (free - self.target * base) / (1.0 - self.target)
        return max(min(room, free, held), 0.0)
