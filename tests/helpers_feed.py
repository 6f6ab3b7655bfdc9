"""Build small synthetic runs in memory: a `Feed` from numpy arrays, a `Catalog` with chosen rule
sets and brackets, a `RunConfig` without a dataset folder, and a scripted strategy.

Tests drive `Backtest(config, feed=..., catalog=..., strategy=...)` with these, so every price,
bracket and fee is chosen by the test and numbers can be derived by hand.
"""

from __future__ import annotations

import math
from pathlib import Path

import attrs
import numpy as np

from xmargin.config import RunConfig
from xmargin.dataset.feed import Feed
from xmargin.venues.instruments import Instrument
from xmargin.sim.loop import Backtest, RunContext
from xmargin.venues.rules import load_rules
from xmargin.venues.rules.ruleset import Bracket, BracketTable, LiquidationRules
from xmargin.ledger.state import Ledger
from xmargin.sim.strategy import Wakes
from xmargin.venues.venue import Catalog, Tradable, Venue

HOUR = 3_600_000_000_000
T0 = 1_727_740_800_000_000_000  # 2024-10-01T00:00:00Z in ns


def brackets(*rows) -> BracketTable:
    """[(floor, cap, max_leverage, maintenance_rate, maintenance_amount)]; cap None = open."""
    return BracketTable.from_brackets(
        [Bracket(float(f), math.inf if c is None else float(c), float(l), float(r), float(a))
         for f, c, l, r, a in rows])


def flat_brackets(rate: float = 0.05, max_leverage: float = 50.0) -> BracketTable:
    """One bracket: MM = rate x notional at every notional, leverage up to `max_leverage`."""
    return brackets((0, None, max_leverage, rate, 0.0))


def rules(base: str = "binance-usdm", policy: str | None = None, fill: str | None = None,
          fee_rate: float | None = None, maker_fee: float | None = None, taker_fee: float | None = None):
    """A built-in rule set with its liquidation policy / fill / fee and trading fees overridden."""
    rs = load_rules(base)
    liq = rs.liquidation
    liq = LiquidationRules(policy=policy or liq.policy, fill=fill or liq.fill,
                           fee_rate=liq.fee_rate if fee_rate is None else fee_rate)
    return attrs.evolve(rs, liquidation=liq,
                        maker_fee=rs.maker_fee if maker_fee is None else maker_fee,
                        taker_fee=rs.taker_fee if taker_fee is None else taker_fee)


def perp(exchange: str, base: str, settle: str = "USDT", lot_size: float = 0.001,
         min_notional: float = 0.0) -> Instrument:
    return Instrument(exchange=exchange, symbol=f"{base}/{settle}:{settle}", market="perp", base=base,
                      quote=settle, settle=settle, funding_interval_hours=8.0, lot_size=lot_size,
                      min_notional=min_notional)


def spot(exchange: str, base: str, quote: str = "USDT", lot_size: float = 0.001) -> Instrument:
    return Instrument(exchange=exchange, symbol=f"{base}/{quote}", market="spot", base=base, quote=quote,
                      settle=quote, lot_size=lot_size)


@attrs.frozen
class VenueSpec:
    rules: object
    margin_mode: str = "cross"
    collateral: dict = attrs.field(factory=lambda: {"USDT": 1000.0})
    leverage: float = 10.0
    withdrawal_fees: dict = attrs.field(factory=dict)
    transfer_delay_minutes: dict = attrs.field(factory=dict)


def make_catalog(venues: dict, instruments, tables: dict | None = None) -> Catalog:
    """`venues`: name -> VenueSpec; `instruments`: Instruments in column order; `tables`: key ->
    BracketTable (default: the rule set's table for the symbol)."""
    built = {name: Venue(exchange=name, rules=spec.rules, margin_mode=spec.margin_mode,
                         collateral=dict(spec.collateral), leverage=spec.leverage,
                         withdrawal_fees=dict(spec.withdrawal_fees),
                         transfer_delay_minutes=dict(spec.transfer_delay_minutes))
             for name, spec in venues.items()}
    tradables = {}
    for column, instrument in enumerate(instruments):
        rs = built[instrument.exchange].rules
        table = (tables or {}).get(instrument.key) or rs.brackets_for(instrument.native_id)
        tradables[instrument.key] = Tradable(instrument=instrument, column=column, brackets=table,
                                             maker_fee=rs.maker_fee, taker_fee=rs.taker_fee)
    return Catalog(venues=built, tradables=tradables)


def _matrix(values, rows: int, columns: int) -> np.ndarray:
    out = np.array(values, dtype=np.float64)
    if out.ndim == 1:
        out = out[:, None]
    assert out.shape == (rows, columns), out.shape
    return out.copy()


def make_feed(keys, close, open=None, high=None, low=None, marks=None, funding=(), t0: int = T0,
              bar_ns: int = HOUR) -> Feed:
    """A dense Feed. `close` (rows x instruments, or one column as a list). `open` defaults to the
    previous close (the first row: its close), `high`/`low` to max/min(open, close). `marks` is an
    optional dict open/high/low/close of arrays (default: the last prices). `funding`: (row, column,
    rate) triples."""
    keys = tuple(keys)
    close = np.array(close, dtype=np.float64)
    if close.ndim == 1:
        close = close[:, None]
    rows, columns = close.shape
    if open is None:
        open = np.vstack([close[:1], close[:-1]])
    open = _matrix(open, rows, columns)
    high = np.maximum(open, close) if high is None else _matrix(high, rows, columns)
    low = np.minimum(open, close) if low is None else _matrix(low, rows, columns)
    marks = marks or {}
    mark = {name: _matrix(marks[name], rows, columns) if name in marks else default.copy()
            for name, default in (("open", open), ("high", high), ("low", low), ("close", close))}
    funding = sorted(funding)
    f_row = np.array([f[0] for f in funding], dtype=np.int64)
    ts = t0 + bar_ns * np.arange(rows, dtype=np.int64)
    return Feed(keys=keys, ts=ts, bar_ns=bar_ns, open=open, high=high, low=low, close=close,
                has_bar=np.ones((rows, columns), dtype=bool), mark_open=mark["open"], mark_high=mark["high"],
                mark_low=mark["low"], mark_close=mark["close"], mark_source={k: "mark" for k in keys},
                funding_row=f_row, funding_column=np.array([f[1] for f in funding], dtype=np.int64),
                funding_rate=np.array([f[2] for f in funding], dtype=np.float64),
                funding_ts=ts[f_row] if len(funding) else np.array([], dtype=np.int64),
                fingerprint="synthetic")


def make_config(catalog: Catalog, intrabar: str = "path", on_liquidation: str = "continue",
                slippage_bps: float = 0.0, warning_thresholds=(0.7, 0.9), sample_interval_ns: int = HOUR) -> RunConfig:
    return RunConfig(dataset=Path("."), strategy="helpers_feed:Scripted", params={}, exchanges={},
                     slippage_bps=slippage_bps, sample_interval_ns=sample_interval_ns, intrabar=intrabar,
                     on_liquidation=on_liquidation, warning_thresholds=tuple(warning_thresholds))


class Scripted:
    """Returns `script[row]` (a list of commands) when woken at the close of bar `row`; wakes at
    every bar. Records every wake as (row, reasons, events)."""

    def __init__(self, script: dict | None = None, margin_warnings: bool = False, fills: bool = False):
        self.script = dict(script or {})
        self.margin_warnings = margin_warnings
        self.fills = fills
        self.woken: list = []

    def wakes(self) -> Wakes:
        return Wakes(bars=("*",), margin_warnings=self.margin_warnings, fills=self.fills)

    def on_wake(self, view, wake):
        row = int((view.now_ns - T0) // HOUR) - 1
        self.woken.append((row, wake.reasons, wake.events))
        return list(self.script.get(row, ()))


def run(catalog, feed, script=None, strategy=None, **config):
    """Run a Backtest on the synthetic feed; returns (RunResult, strategy)."""
    strategy = strategy or Scripted(script)
    result = Backtest(make_config(catalog, **config), feed=feed, catalog=catalog, strategy=strategy).run()
    return result, strategy


def empty_ledger(catalog: Catalog) -> Ledger:
    """The ledger before anything happened (no deposits): what a run's event log replays onto."""
    return Ledger.create({name: venue.margin_mode for name, venue in catalog.venues.items()})


def context(catalog: Catalog, feed: Feed, row: int = 0) -> RunContext:
    return RunContext(catalog, feed, row)


def of_type(events, cls) -> list:
    return [e for e in events if isinstance(e, cls)]
