"""The strategy plugin contract: declare what wakes you, read a view, return commands.

A strategy is a class taking its `params` mapping (validated by the strategy itself) with:

    wakes(self) -> Wakes                         # declared once, before the run
    on_wake(self, view: View, wake: Wake) -> Iterable[command]

It never touches the ledger: it reads `View` (accounts, positions, prices, clock; bars only up to
the one that has just closed) and returns commands from `xmargin.ledger.commands`. Referenced in a config
as `module:Class` or by a name registered under the entry-point group `xmargin.strategies`.
"""

from __future__ import annotations

import importlib
import math
import sys
from bisect import bisect_right
from datetime import datetime, timezone
from importlib.metadata import entry_points

import attrs
import numpy as np

from xmargin.margin.accounting import PoolMetrics, PositionMetrics, pool_for, position_metrics
from xmargin.dataset.feed import iso_minutes
from xmargin.errors import ConfigError, DatasetError


@attrs.frozen
class Wakes:
    """What wakes a strategy. `every`: a timer interval such as '1h' (aligned to UTC midnight),
    `bars`: instruments whose every bar close wakes it ("*" for all), `funding`: after funding
    settlements of its positions, `fills`: after its orders fill, `margin_warnings`: after a
    margin warning or liquidation. It is always woken once at the first bar's close."""

    every: str | None = None
    bars: tuple[str, ...] = ()
    funding: bool = False
    fills: bool = False
    margin_warnings: bool = False


@attrs.frozen
class Wake:
    """Why the strategy is awake now: `reasons` among start, timer, bar, funding, fill,
    margin_warning; `events` are the triggering domain events (fills, warnings, liquidations)."""

    reasons: tuple[str, ...]
    events: tuple = ()


class View:
    """A read-only window on the run at the current bar close. Nothing here can change state."""

    __slots__ = ("_ledger", "_catalog", "_feed", "_row", "_now")

    def __init__(self, ledger, catalog, feed, row: int):
        self._ledger = ledger
        self._catalog = catalog
        self._feed = feed
        self._row = row
        self._now = int(feed.ts[row]) + feed.bar_ns

    @property
    def now_ns(self) -> int:
        """The current time: the close of the bar that has just completed (ns since epoch, UTC)."""
        return self._now

    @property
    def now(self) -> datetime:
        return datetime.fromtimestamp(self._now / 1e9, tz=timezone.utc)

    @property
    def instruments(self) -> tuple[str, ...]:
        return self._feed.keys

    @property
    def exchanges(self) -> tuple[str, ...]:
        return tuple(self._catalog.venues)

    def instrument(self, key: str):
        return self._catalog.tradable(key).instrument

    def price(self, key: str) -> float:
        """Last traded price: the close of the bar that has just completed (nan before its first bar)."""
        return float(self._feed.close[self._row, self._feed.column(key)])

    def mark(self, key: str) -> float:
        return float(self._feed.mark_close[self._row, self._feed.column(key)])

    def bars(self, key: str, count: int) -> dict[str, np.ndarray]:
        """The last `count` closed bars of an instrument (read-only arrays; no future rows)."""
        column = self._feed.column(key)
        first = max(0, self._row + 1 - count)
        out = {}
        for name in ("open", "high", "low", "close"):
            values = getattr(self._feed, name)[first:self._row + 1, column]
            values.flags.writeable = False
            out[name] = values
        times = self._feed.ts[first:self._row + 1]
        times.flags.writeable = False  # (a view of the run's own clock)
        out["ts"] = times
        return out

    def funding_rate(self, key: str) -> float:
        """The most recent settled funding rate of a perp (nan before the first settlement)."""
        rows, rates = self._feed.funding_by_column.get(self._feed.column(key), ((), ()))
        settled = bisect_right(rows, self._row)
        return float(rates[settled - 1]) if settled else math.nan

    def position(self, key: str) -> float:
        """Signed quantity held (0.0 when flat)."""
        self._feed.column(key)  # an unknown key is an error naming the known ones
        position = self._account(key.split(":", 1)[0]).positions.get(key)
        return position.quantity if position is not None else 0.0

    def _account(self, exchange: str):
        accounts = self._ledger.accounts
        if exchange not in accounts:
            raise DatasetError(f"unknown exchange {exchange!r}: this run has {sorted(accounts)} (the "
                               "[exchanges.<name>] tables of the config).")
        return accounts[exchange]

    def balance(self, exchange: str, asset: str) -> float:
        return self._account(exchange).balance(asset)

    def open_orders(self, exchange: str) -> tuple:
        return tuple(self._account(exchange).orders.values())

    def positions(self, exchange: str) -> list[PositionMetrics]:
        """Every open position of an account with its mark, PnL, margins and liquidation price."""
        return position_metrics(self._account(exchange), self._catalog, self._feed.mark_close[self._row], self._now)

    def margin(self, exchange: str, asset: str | None = None) -> PoolMetrics:
        """The margin figures of the pool backing `asset` (default: the account's first collateral
        asset); in multi-asset mode that is the one USD pool."""
        account = self._account(exchange)
        if asset is None:
            asset = next(iter(self._catalog.venues[exchange].collateral))
        pool = pool_for(account, self._catalog, self._feed.mark_close[self._row], self._feed.close[self._row], asset,
                        self._now)
        return pool or PoolMetrics(exchange, asset, *([0.0] * 11))

    def in_flight(self) -> tuple:
        return tuple(self._ledger.in_flight.values())

    def quantity_for(self, key: str, notional: float) -> float:
        """The order quantity for a signed notional in quote units at the last price, rounded toward
        zero to the lot: base units for linear contracts and spot, contracts (notional / contract
        size) for inverse ones."""
        instrument = self._catalog.tradable(key).instrument
        if instrument.is_inverse:
            return self.round_quantity(key, notional / instrument.contract_size)
        price = self.price(key)
        if not math.isfinite(price):
            moment = iso_minutes(self._now)
            raise ValueError(f"quantity_for({key!r}, {notional!r}): {key} has no price at {moment} (no bar of it "
                             "yet, or none in the dataset); size its orders once view.price(key) is a number, or "
                             "start the run after its first bar")
        return self.round_quantity(key, notional / price)

    def round_quantity(self, key: str, quantity: float) -> float:
        """Round toward zero to the instrument's lot size (a quantity that is not a finite number is
        refused: it comes from a missing price)."""
        return lot_rounded(key, quantity, self._catalog.tradable(key).instrument.lot_size)


def lot_rounded(key: str, quantity: float, lot: float) -> float:
    """`quantity` of instrument `key` rounded toward zero to `lot` (none when `lot` is 0); nan or
    inf is a ValueError naming the instrument (not numpy's 'cannot convert float NaN to integer',
    nor a nan passed on to an order)."""
    if not math.isfinite(quantity):
        raise ValueError(f"round_quantity({key!r}, {quantity!r}): not a finite quantity (a price or size that "
                         "is nan or inf: check view.price(key) before sizing)")
    if lot <= 0:
        return quantity
    return math.copysign(math.floor(abs(quantity) / lot + 1e-9) * lot, quantity)


def _import(module_name: str, folder):
    """Import `module_name`, looking in `folder` (the config's folder) first when given."""
    if folder is None:
        return importlib.import_module(module_name)
    entry = str(folder)
    sys.path.insert(0, entry)
    try:
        return importlib.import_module(module_name)
    finally:
        if entry in sys.path:
            sys.path.remove(entry)


def resolve_strategy(reference: str, folder=None):
    """`module:Class` or a name registered under the `xmargin.strategies` entry-point group.

    A `module:Class` module is looked up in `folder` (the config file's folder) first, then on
    the import path. Nothing found is called: it must be a class with `wakes` and `on_wake`."""
    if ":" in reference:
        module_name, _, class_name = reference.partition(":")
        try:
            module = _import(module_name, folder)
        except ImportError as exc:
            raise ConfigError(f"run.strategy = {reference!r}: cannot import module {module_name!r} ({exc}); put "
                              f"{module_name}.py next to the config or install it.") from exc
        try:
            found = getattr(module, class_name)
        except AttributeError as exc:
            raise ConfigError(f"run.strategy = {reference!r}: module {module_name!r} has no {class_name!r}.") from exc
    else:
        registered = {ep.name: ep for ep in entry_points(group="xmargin.strategies")}
        if reference not in registered:
            raise ConfigError(f"run.strategy = {reference!r}: not `module:Class` and not a registered strategy; "
                              f"registered: {sorted(registered)}.")
        found = registered[reference].load()
    if not isinstance(found, type):
        raise ConfigError(f"run.strategy = {reference!r}: that is a {type(found).__name__}, not a strategy class; "
                          "see docs/strategies.md.")
    missing = [m for m in ("wakes", "on_wake") if not callable(getattr(found, m, None))]
    if missing:
        raise ConfigError(f"run.strategy = {reference!r}: class {found.__name__} has no {' or '.join(missing)}() "
                          "method, so it is not a strategy; see docs/strategies.md.")
    return found


def build_strategy(reference: str, params: dict, folder=None):
    """The strategy instance; its `params` errors and its `wakes()` declaration are checked here."""
    cls = resolve_strategy(reference, folder)
    try:
        strategy = cls(dict(params))
    except (TypeError, ValueError, KeyError) as exc:
        raise ConfigError(f"strategy.params for {reference}: {exc}") from exc
    return strategy
