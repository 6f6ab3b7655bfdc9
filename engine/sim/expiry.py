"""Dated futures at expiry: the settlement price and the events that close what is still open.

The venues settle a dated future at the average *index* price over a window that ends at the
expiry (Binance: the last 30 minutes since 2024-11-11, the last hour before; the rule set's
`delivery` data holds the dated windows). What this engine can average, best first:

1. the dataset's `index` table for the future, if it has one (`index/` rows of that instrument);
2. the future's mark series (`mark/`), else its last (trade) price, as loaded in the feed.

Each bar is taken at its close: the settlement price is the mean of the closes of the bars that
close inside (expiry - window, expiry]. Bars longer than the window leave one bar, the one closing
at the expiry, so its close stands in for the average. Every `ContractExpired` event says which
series and how many bars were used (`settlement_source`), and the run manifest lists them.

The settlement happens at the first feed row whose bar opens at or after the expiry; a run whose
data ends before the expiry leaves the position open (and says so in `Settlement.row is None`).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import attrs
import numpy as np
import polars as pl

from xmargin.ledger import events as ev
from xmargin.margin import formulas as margin
from xmargin.dataset.feed import READ_ERRORS, timeframe_ns, unreadable_dataset
from xmargin.dataset.tables import scan


@attrs.frozen
class Settlement:
    """One dated future of the run: when it expires, where in the feed, and at what price."""

    key: str
    column: int
    expiry_ns: int
    row: int | None  # first feed row opening at or after the expiry; None when the data ends before it
    price: float
    source: str

    def describe(self) -> dict:
        return {"instrument": self.key, "expiry": _iso(self.expiry_ns), "settlement_price": self.price,
                "source": self.source, "settled_in_run": self.row is not None}


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _index_average(dataset, key: str, bar_ns: int, start_ns: int, end_ns: int) -> tuple[float, int]:
    """(mean close, bars) of the dataset's index rows for `key` closing in (start_ns, end_ns]."""
    if dataset is None or not Path(dataset).is_dir():
        return float("nan"), 0
    try:
        frame = scan(dataset, "index", instruments=[key])
        if frame is None:
            return float("nan"), 0
        closes = (frame.select(pl.col("ts").dt.epoch("ns").alias("ts"), "timeframe", "close")
                  .filter((pl.col("ts") > start_ns - 86_400_000_000_000) & (pl.col("ts") < end_ns))
                  .collect())
    except READ_ERRORS as exc:  # a damaged index file (a run with the validation skipped)
        raise unreadable_dataset(dataset, exc) from exc
    if not closes.height:
        return float("nan"), 0
    length = {t: timeframe_ns(t) for t in closes["timeframe"].unique().to_list()}
    ends = closes["ts"].to_numpy() + np.array([length[t] for t in closes["timeframe"].to_list()], dtype=np.int64)
    inside = (ends > start_ns) & (ends <= end_ns)
    if not inside.any():
        return float("nan"), 0
    return float(closes["close"].to_numpy()[inside].mean()), int(inside.sum())


def settlement_price(feed, column: int, expiry_ns: int, window_ns: int, dataset=None,
                     key: str = "") -> tuple[float, str]:
    """(price, source): the mean close of the bars closing in (expiry - window, expiry], from the
    dataset's index table when it has rows for `key` there, else the feed's mark (or last) closes."""
    start_ns = expiry_ns - window_ns
    minutes = window_ns / 60e9
    price, bars = _index_average(dataset, key, feed.bar_ns, start_ns, expiry_ns)
    if bars:
        return price, f"index: mean of {bars} bar close(s) in the {minutes:g} min before expiry"
    ends = feed.ts + feed.bar_ns
    inside = (ends > start_ns) & (ends <= expiry_ns) & feed.has_bar[:, column]
    series = feed.mark_source.get(feed.keys[column], "last")
    if inside.any():
        value = float(feed.mark_close[inside, column].mean())
        return value, (f"{series} (no index series): mean of {int(inside.sum())} bar close(s) in the "
                       f"{minutes:g} min before expiry")
    before = np.flatnonzero((ends <= expiry_ns) & feed.has_bar[:, column])
    if before.size:
        row = int(before[-1])
        return float(feed.mark_close[row, column]), (
            f"{series} (no index series, no bar in the {minutes:g} min window): close of the last bar, "
            f"ending {_iso(int(ends[row]))}")
    return float("nan"), "no price before expiry"


def settlement_schedule(catalog, feed, dataset=None) -> list[Settlement]:
    """Every dated future of the catalog with its settlement row and price, in expiry order."""
    out = []
    for key, tradable in catalog.tradables.items():
        instrument = tradable.instrument
        expiry_ns = instrument.expiry_ns
        if expiry_ns is None:
            continue
        rules = catalog.venues[instrument.exchange].rules
        window = rules.delivery.window_ns(expiry_ns)
        row = int(np.searchsorted(feed.ts, expiry_ns, side="left"))
        if row >= len(feed.ts):
            out.append(Settlement(key, tradable.column, expiry_ns, None, float("nan"), "data ends before expiry"))
            continue
        price, source = settlement_price(feed, tradable.column, expiry_ns, window, dataset, key)
        if not rules.delivery.documented:
            source += f"; rule set {rules.name} publishes no delivery rule: a {window / 60e9:g} min window assumed"
        out.append(Settlement(key, tradable.column, expiry_ns, row, price, source))
    return sorted(out, key=lambda s: (s.expiry_ns, s.key))


def expiry_events(ledger, catalog, settlement: Settlement) -> list:
    """Cancel every resting order on the expired contract, then settle every open position on it."""
    tradable = catalog.tradable(settlement.key)
    instrument = tradable.instrument
    exchange = instrument.exchange
    account = ledger.accounts.get(exchange)
    if account is None:
        return []
    ts = settlement.expiry_ns
    events = [ev.OrderCancelled(ts, exchange, settlement.key, order_id, "contract expired")
              for order_id, order in sorted(account.orders.items()) if order.instrument == settlement.key]
    position = account.positions.get(settlement.key)
    if position is not None:
        inverse, size = instrument.is_inverse, instrument.contract_size
        price = settlement.price
        realized = float(margin.contract_pnl(position.quantity, position.entry_price, price, inverse, size))
        fee_rate = catalog.venues[exchange].rules.delivery.fee_rate(tradable.taker_fee)
        fee = fee_rate * float(margin.contract_notional(position.quantity, price, inverse, size))
        events.append(ev.ContractExpired(ts, exchange, settlement.key, position.quantity, price, realized, fee,
                                         position.isolated_margin, position.asset, settlement.source))
    return events
