"""Net exposure per underlying when the book is flat part of the time: the positions table has no
rows for flat instruments, so a flat sample must count as 0 exposure, not stretch the last held one.

By hand (hourly samples t0..t11, USDT collateral only, ETH perps on two exchanges):
  t0       long 10,000 on binance, short 10,000 on hyperliquid: gross 20,000, net 0
  t1       the short is gone: gross 10,000, net 10,000 (|net|/gross 100 %)
  t2..t10  flat: gross 0, net 0
  t11      hedged again as at t0
So |net|/gross is above 0.5 for one hour (t1 -> t2), not ten (t1 -> t11); with the default
8 h threshold this is no one-legged hedge, and the final net/gross are those of t11 (0 / 20,000).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import polars as pl
import pytest

from xmargin.analysis.exposure import exposure_figures, exposure_series

T0 = datetime(2024, 10, 1, tzinfo=timezone.utc)
LONG, SHORT = "binance:ETH/USDT:USDT", "hyperliquid:ETH/USDC:USDC"


def frames(last_flat: bool = False):
    hours = range(12)
    collateral = pl.DataFrame([{"ts": T0 + timedelta(hours=h), "reason": "sample", "exchange": exchange,
                                "events_applied": h, "asset": asset, "balance": 5000.0, "price": 1.0, "value": 5000.0}
                               for h in hours for exchange, asset in (("binance", "USDT"), ("hyperliquid", "USDC"))])
    held = {0: [LONG, SHORT], 1: [LONG], 11: [] if last_flat else [LONG, SHORT]}
    positions = pl.DataFrame([{"ts": T0 + timedelta(hours=h), "reason": "sample",
                               "exchange": instrument.split(":")[0], "events_applied": h, "instrument": instrument,
                               "quantity": 4.0 if instrument == LONG else -4.0, "notional": 10000.0,
                               "mark_price": 2500.0, "asset": "USDT" if instrument == LONG else "USDC"}
                              for h, instruments in held.items() for instrument in instruments])
    return positions, collateral


def test_flat_samples_count_as_zero_exposure():
    series = exposure_series(*frames())
    assert series.height == 12  # every sample, held or not
    assert series["gross"].to_list() == [20000.0, 10000.0, *[0.0] * 9, 20000.0]
    assert series["net"].to_list() == [0.0, 10000.0, *[0.0] * 9, 0.0]
    figures = exposure_figures(series, {"ETH"}, 0.5, 8.0)["ETH"]
    assert figures["hours_above_ratio"] == pytest.approx(1.0)  # t1 -> t2 only
    assert not figures["one_legged"]
    assert figures["peak_net_share"] == 1.0 and figures["net_at_peak"] == 10000.0
    assert (figures["final_net"], figures["final_gross"]) == (0.0, 20000.0)


def test_a_book_that_ends_flat_ends_with_zero_exposure():
    figures = exposure_figures(exposure_series(*frames(last_flat=True)), {"ETH"}, 0.5, 8.0)["ETH"]
    assert (figures["final_net"], figures["final_gross"]) == (0.0, 0.0)
    assert figures["peak_gross"] == 20000.0
