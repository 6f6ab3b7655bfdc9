"""The margin watch's scan of a multi-asset (USD) pool holding a leg settled in its coin: the leg's
scale (BTC's USD price) moves with BTC's mark along the path, as its PnL does.

The set-up of tests/test_compare_usd.py's multi-asset case: ax on binance-usdm rules (no fees,
multi-asset, partial policy: a single position closes whole at the trigger marks) buys 500 contracts of the inverse perp BTC/USD:BTC
(100 USD each, settled in BTC; BTC's price on ax is this perp's mark) at the 01:00 open, 50,000; the
bars are flat (open = high = low = close): 50,000 at 00:00 and 01:00, 40,000 at 02:00 and 03:00,
50,000 after. `hold` does nothing more, so the watch's stretch runs from the fill (its units valued at
the 01:00 close, BTC = 50,000) to the end. binance-usdm counts BTC at a collateral ratio of 0.95 and
USDT at 0.9999 (engine/venues/rules/data/binance-usdm.json) and lists no BTCUSD brackets: the default
(BLZUSDT's) 5 % x notional - 625.

At a BTC price p the leg's PnL is 500 x 100 x (1/50,000 - 1/p) BTC, at p USD each: 50,000 x (p /
50,000 - 1) = p - 50,000 USD; its notional 500 x 100 / p BTC is 50,000 USD whatever p, so its
maintenance stays 5 % x 50,000 - 625 = 1,875 USD.

On main the scan held the leg's scale at the stretch start's 50,000 while its mark moved: at p the
PnL counted 50,000 x 50,000 x (1/50,000 - 1/p) USD (-33,333 at 30,000 instead of -20,000).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_compare_usd import write_config

from xmargin.analysis.stress import PriceGap, to_ns
from xmargin.config import load_config
from xmargin.ledger import events as ev
from xmargin.margin.modes import account_units
from xmargin.margin.risk import path_prices, provably_quiet, scale_path, stretch_extremes, unit_curves
from xmargin.margin.units import RiskUnit
from xmargin.sim.loop import Backtest
from xmargin.venues.rules import load_rules

INVERSE = "ax:BTC/USD:BTC"
AT = "2024-01-01T03:00"


def ax_events(config, shocks=()) -> list:
    result = Backtest(config, shocks=shocks).run()
    return [e for e in result.events if getattr(e, "exchange", "") == "ax"]


def of(events, kind) -> list:
    return [e for e in events if isinstance(e, kind)]


@pytest.mark.parametrize("mode, intrabar", [("multi-asset", "path"), ("multi-asset", "worst-case"),
                                            ("multi-asset", "close"), ("portfolio", "path")])
def test_a_pool_whose_true_equity_covers_a_gap_is_not_liquidated(tmp_path, mode, intrabar):
    # 1 BTC + 1,000 USDT; BTC gaps 25 % from 40,000 to 30,000 at 03:00: collateral 999.9 + 0.95 x 30,000
    # = 29,499.9, PnL 30,000 - 50,000 = -20,000: equity 9,499.9 against 1,875 (ratio 0.197, under the
    # first warning at 0.7). Main: PnL 50,000 x 50,000 x (1/50,000 - 1/30,000) = -33,333 USD, equity
    # -3,833: liquidated at 30,000 with a deficit. The portfolio account (one USD unit too, its
    # requirement from binance-usdm's portfolio method) holds the same equity: not liquidated either
    # (main: liquidated at 30,000).
    path = write_config(tmp_path, "binance-usdm", mode, "BTC = 1.0, USDT = 1000")
    path.write_text(path.read_text().replace("[run]\n", f'[run]\nintrabar = "{intrabar}"\n', 1))
    events = ax_events(load_config(path), (PriceGap(to_ns(AT), (INVERSE,), -0.25),))
    assert len(of(events, ev.OrderFilled)) == 1
    assert not of(events, ev.PositionLiquidated) and not of(events, ev.InsuranceFundUsed)
    assert not of(events, ev.MarginWarningRaised)


def test_a_gap_past_bankruptcy_leaves_the_usd_deficit_at_the_gaps_coin_price(tmp_path):
    # 20,000 USDT (19,998 USD counted); BTC gaps 50 % from 40,000 to 20,000 at the 03:00 open: equity
    # 19,998 + 20,000 - 50,000 = -10,002 USD. The position closes at the trigger, the open's 20,000,
    # realised 500 x 100 x (1/50,000 - 1/20,000) = -1.5 BTC, and the fund credits the 10,002 USD in BTC
    # at 20,000: 0.5001 BTC. Main: the pool valued at BTC = 50,000 held 19,998 - 1.5 x 50,000 = -55,002
    # USD: 55,002 / 50,000 = 1.10004 BTC credited.
    path = write_config(tmp_path, "binance-usdm", "multi-asset", "USDT = 20000")
    events = ax_events(load_config(path), (PriceGap(to_ns(AT), (INVERSE,), -0.5),))
    (closed,) = of(events, ev.PositionLiquidated)
    (fund,) = of(events, ev.InsuranceFundUsed)
    assert closed.ts == to_ns(AT) and closed.quantity == -500
    assert closed.price == closed.trigger_price == 20_000
    assert closed.realized_pnl == pytest.approx(-1.5, rel=1e-12)
    assert fund.asset == "BTC" and fund.credited and fund.amount == pytest.approx(10_002 / 20_000, rel=1e-9)


def test_a_breach_inside_a_bar_triggers_where_the_moving_coin_price_meets_maintenance(tmp_path):
    # 20,000 USDT, liquidation fee 5 % of the closed notional; the 03:00 bar opens at 40,000, dips to
    # 20,000 (the path: open, high 40,000 (nearer), low, close) and closes at 40,000. Equity p - 30,002
    # meets 1,875 at p = 31,877: linear in p, so the path's interpolation between 40,000 (equity 9,998)
    # and 20,000 (-10,002) finds it exactly. The position closes at the trigger, 31,877 (realised
    # 50,000 x (1/50,000 - 1/31,877) BTC), the pool valued at BTC = 31,877: its 1,875 USD of equity
    # caps the fee (5 % x 50,000 / 31,877 BTC = 2,500 USD) at 1,875 / 31,877 BTC. Main: the pool held
    # BTC at 50,000 (PnL 50,000 - 2.5e9 / p USD: -55,002 USD of equity at the low), and its one-position
    # liquidation-price formula read the 19,998 USD as coins: trigger clamped to the low, 20,000.
    path = write_config(tmp_path, "binance-usdm", "multi-asset", "USDT = 20000")
    rules = tmp_path / "binance-usdm-no-fees.json"
    data = json.loads(rules.read_text())
    data["liquidation"]["fee_rate"] = 0.05
    rules.write_text(json.dumps(data))
    dip = datetime(2024, 1, 1, 3, tzinfo=timezone.utc)
    for kind in ("bars", "mark"):
        file = tmp_path / "data" / kind / "ax" / "perp" / "BTC_USD_BTC-1h.parquet"
        table = pl.read_parquet(file)
        table.with_columns(low=pl.when(pl.col("ts") == dip).then(20_000.0).otherwise(pl.col("low"))).write_parquet(file)
    events = ax_events(load_config(path))
    (closed,) = of(events, ev.PositionLiquidated)
    assert closed.ts == to_ns(AT) + 2 * 3_600_000_000_000 // 4  # the path's third point (the low)
    assert closed.trigger_price == pytest.approx(31_877, rel=1e-12) and closed.price == closed.trigger_price
    assert closed.quantity == -500
    assert closed.realized_pnl == pytest.approx(50_000 * (1 / 50_000 - 1 / 31_877), rel=1e-9)
    assert closed.fee == pytest.approx(1_875 / 31_877, rel=1e-9)
    assert not of(events, ev.InsuranceFundUsed)


def test_a_short_coin_settled_leg_is_liquidated_when_its_coin_rises_past_its_equity(tmp_path):
    # 20,000 USDT, short 500 contracts from 50,000; BTC gaps +87.5 % at 03:00, from 40,000 to 75,000
    # (93,750 after). The short's PnL -500 x 100 x (1/50,000 - 1/p) BTC at p is 50,000 - p USD: equity
    # 69,998 - p, below 1,875 from p = 68,123: liquidated at the 03:00 open, 75,000, the deficit 5,002
    # USD credited as 5,002 / 75,000 BTC. Main valued the coin at the stretch start's 50,000 (equity
    # -30,002 + 2.5e9 / p: 3,331 USD at 75,000, 1,042 of maintenance) and liquidated an hour later at
    # 93,750 (its cheap quiet bound used the same stale price).
    path = write_config(tmp_path, "binance-usdm", "multi-asset", "USDT = 20000")
    path.write_text(path.read_text().replace('"ax:BTC/USD:BTC" = 50000', '"ax:BTC/USD:BTC" = -50000'))
    events = ax_events(load_config(path), (PriceGap(to_ns(AT), (INVERSE,), 0.875),))
    (closed,) = of(events, ev.PositionLiquidated)
    (fund,) = of(events, ev.InsuranceFundUsed)
    assert closed.ts == to_ns(AT) and closed.quantity == 500 and closed.price == closed.trigger_price == 75_000
    assert closed.realized_pnl == pytest.approx(-50_000 * (1 / 50_000 - 1 / 75_000), rel=1e-12)
    assert fund.asset == "BTC" and fund.amount == pytest.approx(5_002 / 75_000, rel=1e-9)


def test_the_quiet_bound_takes_the_coin_price_at_its_worst_end(tmp_path):
    # The short pool of the test above, valued at BTC = 50,000 (the stretch's start), over a stretch whose
    # BTC marks run from 50,000 to 68,000. At 68,000 its equity is 69,998 - 68,000 = 1,998 USD against
    # 1,875: margin ratio 0.94, a warning at least: not quiet. The bound: the leg's BTC PnL at the high,
    # -50,000 x (1/50,000 - 1/68,000) BTC, at BTC's high (68,000): equity 1,998; maintenance at the
    # largest coin notional (1 BTC, at the low) x the high, 5 % x 68,000 - 625 = 2,775: False. Main held
    # BTC at 50,000 in the bound: equity -30,002 + 2.5e9 / 68,000 = 6,762 against 1,213 (ratio 0.18):
    # "provably quiet". Over 50,000 .. 52,000: equity 19,998 - 50,000 x (1/50,000 - 1/52,000) x 52,000 =
    # 17,998, maintenance 5 % x 52,000 - 625 = 1,975: quiet (ratio 0.11 < 0.7).
    path = write_config(tmp_path, "binance-usdm", "multi-asset", "USDT = 20000")
    path.write_text(path.read_text().replace('"ax:BTC/USD:BTC" = 50000', '"ax:BTC/USD:BTC" = -50000'))
    result = Backtest(load_config(path)).run()
    account = result.ledger.accounts["ax"]
    assert account.positions[INVERSE].quantity == -500
    width = len(result.feed.keys)
    (pool,) = account_units(result.catalog, account, np.full(width, 50_000.0), int(result.feed.ts[-1]))
    assert pool.scale_columns == ((0, result.catalog.tradables[INVERSE].column),)
    thresholds = np.array([0.7, 0.9])
    assert not provably_quiet(pool, ([68_000.0] * width, [50_000.0] * width), thresholds)
    assert provably_quiet(pool, ([52_000.0] * width, [50_000.0] * width), thresholds)


TABLE = load_rules("binance-usdm").brackets_for("BTCUSDT")
bar = st.tuples(*[st.floats(min_value=1_000.0, max_value=100_000.0)] * 4)  # open, two extremes, close


@settings(max_examples=60, deadline=None)
@given(legs=st.lists(st.tuples(st.booleans(), st.floats(min_value=-5.0, max_value=5.0).filter(lambda q: abs(q) > 1e-3),
                               st.floats(min_value=1_000.0, max_value=100_000.0), st.integers(0, 2)),
                     min_size=1, max_size=3),
       base=st.floats(min_value=0.0, max_value=500_000.0), bars=st.lists(st.tuples(bar, bar, bar), min_size=1, max_size=4),
       mode=st.sampled_from(["path", "worst-case", "close"]))
def test_the_quiet_bound_with_moving_scales_never_misses_a_path_point(legs, base, bars, mode):
    # Legs (inverse or linear, quantity, entry, coin column) on marks of feed columns 0 .. 2; each
    # leg's scale is the mark of its coin column (the leg's own or another) along the same path. When
    # `provably_quiet` says so, every path point of the full scan is below the first warning.
    rows = tuple((k % 3, q * (100 if inverse else 1), entry, 100.0 if inverse else 0.0, TABLE, 10.0, None, 1.0)
                 for k, (inverse, q, entry, _) in enumerate(legs))
    unit = RiskUnit("ax", "USD", "cross:USD", False, tuple(f"x{k}" for k in range(len(rows))), rows, base, 0,
                    len(rows), scale_columns=tuple((k, coin) for k, (_, _, _, coin) in enumerate(legs)))
    marks = np.array(bars)  # (bars, columns, open / extremes / close)
    first, second = marks[:, :, 1], marks[:, :, 2]
    feed = SimpleNamespace(mark_open=marks[:, :, 0], mark_high=np.maximum.reduce([first, second, marks[:, :, 0],
                                                                                  marks[:, :, 3]]),
                           mark_low=np.minimum.reduce([first, second, marks[:, :, 0], marks[:, :, 3]]),
                           mark_close=marks[:, :, 3])
    unit = unit.at_scales(feed.mark_close[0, [coin for _, coin in unit.scale_columns]])
    thresholds = np.array([0.7, 0.9])
    if provably_quiet(unit, stretch_extremes(feed, 0, len(bars)), thresholds):
        prices = path_prices(feed, 0, len(bars), unit.columns, unit.quantities, mode)
        equity, maintenance = unit_curves(unit, prices, scale_path(unit, feed, 0, len(bars), mode))
        assert np.all(maintenance < 0.7 * equity * (1 + 1e-9))


@pytest.mark.parametrize("intrabar", ["path", "worst-case"])
def test_a_liquidated_pool_with_a_moving_scale_streams_the_same_bytes_as_kept(tmp_path, monkeypatch, intrabar):
    # 0.3 BTC + 5,000 USDT under the long inverse leg; BTC gaps 30 % at 03:00 (40,000 -> 28,000): the pool
    # is liquidated at the gap with its scale at the gap's coin price and the fund credits BTC. A
    # command-line run (`keep_result=False`: the log and the valuation tables written a few rows at a
    # time while the run goes on) writes the same files as a kept run written after it.
    from xmargin.output import eventlog, writer
    from xmargin.sim.runner import execute

    monkeypatch.setattr(writer, "SNAPSHOT_ROWS", 3)
    monkeypatch.setattr(eventlog, "EVENT_BATCH", 2)
    path = write_config(tmp_path, "binance-usdm", "multi-asset", "BTC = 0.3, USDT = 5000")
    path.write_text(path.read_text().replace("[run]\n", f'[run]\nintrabar = "{intrabar}"\n', 1))
    config = load_config(path)
    shocks = (PriceGap(to_ns(AT), (INVERSE,), -0.3),)
    kept, streamed = (execute(config, out=tmp_path / "runs", run_id=str(keep), keep_result=keep, shocks=shocks).path
                      for keep in (True, False))
    events = pl.read_ipc(kept / "events.arrow")
    assert set(events["type"]) >= {"PositionLiquidated", "InsuranceFundUsed"}
    for name in ("events", "equity", "positions", "distance", "collateral"):
        assert (kept / f"{name}.arrow").read_bytes() == (streamed / f"{name}.arrow").read_bytes(), name
