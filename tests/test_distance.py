"""Distance to liquidation agrees with the liquidation a shock of that size actually causes.

Synthetic flat feed (helpers_feed), real Binance USDT-M brackets (several tiers crossed), zero
fees and slippage. Orders placed at the close of bar 0 fill at the open of bar 1; the distances
are read at the sample taken at the close of bar 2; the shock is a gap at the open of bar 3.
Multi-asset: BTC deposited as collateral (Binance ratio 0.95) backs a USDT-settled ETH short; the
collateral-fall shock moves every BTC market, hence the BTC collateral's price.
"""

from __future__ import annotations

import math

import polars as pl
import pytest

from xmargin.ledger import commands as cmd
from xmargin.ledger import events as ev
from xmargin.analysis.distance import run_distances
from xmargin.sim.loop import Backtest
from xmargin.analysis.stress import CollateralFall, PriceGap
from xmargin.venues.venue import Catalog
from helpers_feed import HOUR, T0, Scripted, VenueSpec, make_catalog, make_config, make_feed, of_type, perp, rules

BTC, ETH = "bx:BTC/USDT:USDT", "bx:ETH/USDT:USDT"
SAMPLE_TS = T0 + 3 * HOUR
STEP = 0.005


def setup(mode: str, collateral: float):
    rs = rules(maker_fee=0.0, taker_fee=0.0, policy="full")
    catalog = make_catalog({"bx": VenueSpec(rs, mode, {"USDT": collateral}, 10.0)}, [perp("bx", "BTC"), perp("bx", "ETH")])
    # BTC 50,000 / ETH 2,500, flat; 6 hourly bars
    feed = make_feed((BTC, ETH), [[50_000.0, 2_500.0]] * 6)
    return catalog, feed


def run(catalog, feed, shocks=()):
    # long 10 BTC (500k notional), short 200 ETH (500k): both cross several Binance brackets
    strategy = Scripted({0: [cmd.PlaceOrder.market(BTC, 10.0), cmd.PlaceOrder.market(ETH, -200.0)]})
    return Backtest(make_config(catalog, slippage_bps=0.0), feed=feed, catalog=catalog, strategy=strategy,
                    shocks=shocks).run()


def distances_at_sample(result) -> pl.DataFrame:
    table = run_distances(result)
    return table.filter((pl.col("ts").dt.epoch("ns") == SAMPLE_TS) & (pl.col("reason") == "sample"))


def liquidated(result) -> list:
    return of_type(result.events, ev.PositionLiquidated)


def positions_at(result, ts: int) -> dict:
    """The positions table's rows at snapshot time `ts` (ns), by instrument."""
    from types import SimpleNamespace

    from xmargin.output.snapshots import positions_table

    table = pl.from_arrow(positions_table(result)).filter(pl.col("ts").dt.epoch("ns") == ts)
    return {row["instrument"]: SimpleNamespace(**row) for row in table.iter_rows(named=True)}


def test_cross_all_together_distance_matches_the_gap_that_liquidates():
    catalog, feed = setup("cross", 120_000.0)
    result = run(catalog, feed)
    assert not liquidated(result)
    table = distances_at_sample(result)
    row = table.filter(pl.col("underlying") == "all").row(0, named=True)
    d = row["liquidation_distance"]
    assert row["unit"] == "cross:USDT" and 0.05 < d < 0.2
    assert 0 < row["warning_distance"] < d
    # pinned: long 10 BTC / short 200 ETH at 10x with 120k, real Binance brackets
    assert d == pytest.approx(0.1151, abs=1e-6)
    for size, expect in ((d + STEP, True), (d - STEP, False)):
        shocks = (PriceGap(SAMPLE_TS, (BTC,), -size), PriceGap(SAMPLE_TS, (ETH,), +size))
        shocked = run(catalog, feed, shocks)
        assert bool(liquidated(shocked)) is expect, (size, d)
        if expect:  # cross policy full: both legs go at the gap's open
            assert {e.instrument for e in liquidated(shocked)} == {BTC, ETH}
            assert {e.ts for e in liquidated(shocked)} == {SAMPLE_TS}


def test_single_underlying_distance_matches_a_one_leg_gap():
    catalog, feed = setup("cross", 120_000.0)
    result = run(catalog, feed)
    table = distances_at_sample(result)
    btc = table.filter(pl.col("underlying") == "BTC").row(0, named=True)["liquidation_distance"]
    eth = table.filter(pl.col("underlying") == "ETH").row(0, named=True)["liquidation_distance"]
    all_ = table.filter(pl.col("underlying") == "all").row(0, named=True)["liquidation_distance"]
    assert all_ < btc and all_ < eth  # both legs moving against the book is worse than either alone
    # one leg moves, the other keeps its PnL and maintenance: the cross liquidation price of
    # xmargin.margin.accounting (the other positions held fixed)
    positions = positions_at(result, SAMPLE_TS)
    assert btc == pytest.approx(1 - positions[BTC].liquidation_price / 50_000.0, rel=1e-9)
    assert eth == pytest.approx(positions[ETH].liquidation_price / 2_500.0 - 1, rel=1e-9)
    for size, expect in ((btc + STEP, True), (btc - STEP, False)):
        assert bool(liquidated(run(catalog, feed, (PriceGap(SAMPLE_TS, (BTC,), -size),)))) is expect
    for size, expect in ((eth + STEP, True), (eth - STEP, False)):
        assert bool(liquidated(run(catalog, feed, (PriceGap(SAMPLE_TS, (ETH,), +size),)))) is expect


def test_isolated_distance_is_the_liquidation_price_and_matches_a_gap():
    catalog, feed = setup("isolated", 120_000.0)
    result = run(catalog, feed)
    table = distances_at_sample(result)
    rows = {r["unit"]: r for r in table.filter(pl.col("underlying") == "all").iter_rows(named=True)}
    assert set(rows) == {BTC, ETH}
    positions = positions_at(result, SAMPLE_TS)
    # long BTC: distance = 1 - LP / mark (Binance isolated formula, xmargin.margin.formulas)
    assert rows[BTC]["liquidation_distance"] == pytest.approx(1 - positions[BTC].liquidation_price / 50_000.0,
                                                              rel=1e-9)
    assert rows[ETH]["liquidation_distance"] == pytest.approx(positions[ETH].liquidation_price / 2_500.0 - 1,
                                                              rel=1e-9)
    d = rows[BTC]["liquidation_distance"]
    for size, expect in ((d + STEP, True), (d - STEP, False)):
        events = liquidated(run(catalog, feed, (PriceGap(SAMPLE_TS, (BTC,), -size),)))
        assert [e.instrument for e in events] == ([BTC] if expect else [])


def test_equity_table_carries_the_all_together_distance_and_summary_the_tightest_moment():
    from xmargin.output.writer import equity_table
    from xmargin.sim.runner import summary_for

    catalog, feed = setup("cross", 120_000.0)
    result = run(catalog, feed)
    equity = pl.from_arrow(equity_table(result))
    assert {"warning_distance", "liquidation_distance"} <= set(equity.columns)
    first = equity.row(0, named=True)
    assert math.isinf(first["liquidation_distance"])  # before the fill: nothing at risk
    at_sample = equity.filter((pl.col("ts").dt.epoch("ns") == SAMPLE_TS) & (pl.col("reason") == "sample"))
    assert at_sample["liquidation_distance"][0] == pytest.approx(0.1151, abs=1e-6)
    tight = summary_for(result)["total"]["tightest_moment"]
    assert tight["exchange"] == "bx" and tight["liquidation_distance"] == pytest.approx(0.1151, abs=1e-6)


def test_a_long_covered_to_zero_is_never_liquidated():
    catalog, feed = setup("cross", 1_000_000.0)
    strategy = Scripted({0: [cmd.PlaceOrder.market(BTC, 1.0)]})
    result = Backtest(make_config(catalog, slippage_bps=0.0), feed=feed, catalog=catalog, strategy=strategy).run()
    table = distances_at_sample(result)
    assert table.filter(pl.col("underlying") == "all")["liquidation_distance"].to_list() == [math.inf]


# ------------------------------------------------------------------------------------ multi-asset
def multi_asset_setup():
    """1 BTC of collateral (47,500 after the 0.95 haircut), no stablecoin; the ETH short (300 at
    2,500, 20x) is 30,000 under water at the sample (ETH 2,600): equity 17,500, maintenance 4,120."""
    rs = rules(maker_fee=0.0, taker_fee=0.0, policy="full")
    built = make_catalog({"bx": VenueSpec(rs, "multi-asset", {"BTC": 1.0}, 20.0)},
                         [perp("bx", "BTC"), perp("bx", "ETH")])
    catalog = Catalog.create(built.venues, built.tradables)  # asset_columns: BTC priced by its perp
    feed = make_feed((BTC, ETH), [[50_000.0, 2_500.0]] * 2 + [[50_000.0, 2_600.0]] * 4)
    return catalog, feed


def run_multi_asset(catalog, feed, shocks=()):
    strategy = Scripted({0: [cmd.PlaceOrder.market(ETH, -300.0)]})
    return Backtest(make_config(catalog, slippage_bps=0.0), feed=feed, catalog=catalog, strategy=strategy,
                    shocks=shocks).run()


def test_multi_asset_btc_collateral_alone_can_liquidate_a_usdt_eth_short():
    catalog, feed = multi_asset_setup()
    result = run_multi_asset(catalog, feed)
    assert not liquidated(result)
    table = distances_at_sample(result)
    assert set(table["unit"]) == {"cross:USD"} and set(table["asset"]) == {"USD"}
    rows = {r["underlying"]: r for r in table.iter_rows(named=True)}
    assert set(rows) == {"BTC", "ETH", "all"}
    btc = rows["BTC"]["liquidation_distance"]
    # 47,500 x (1 - x) - 30,000 = 4,120 (ETH's maintenance does not move with BTC)
    assert math.isfinite(btc) and btc == pytest.approx(1 - 34_120 / 47_500, rel=1e-9)  # 0.28168
    assert 0 < rows["BTC"]["warning_distance"] < btc
    for size, expect in ((btc + STEP, True), (btc - STEP, False)):
        events = liquidated(run_multi_asset(catalog, feed, (CollateralFall(SAMPLE_TS, "BTC", -size),)))
        assert [e.instrument for e in events] == ([ETH] if expect else []), (size, btc)
        assert all(e.ts == SAMPLE_TS for e in events)


def test_multi_asset_eth_alone_and_all_together_match_the_shocks():
    catalog, feed = multi_asset_setup()
    result = run_multi_asset(catalog, feed)
    table = distances_at_sample(result)
    rows = {r["underlying"]: r["liquidation_distance"] for r in table.iter_rows(named=True)}
    eth, all_ = rows["ETH"], rows["all"]
    # ETH alone: the short's cross liquidation price with the collateral at today's prices
    positions = positions_at(result, SAMPLE_TS)
    assert eth == pytest.approx(positions[ETH].liquidation_price / 2_600.0 - 1, rel=1e-9)
    # all together: the BTC collateral falls while the ETH short rises, tighter than either
    assert all_ < eth < rows["BTC"]
    assert all_ == pytest.approx(0.016071, abs=1e-6)  # pinned
    for size, expect in ((eth + STEP, True), (eth - STEP, False)):
        assert bool(liquidated(run_multi_asset(catalog, feed, (PriceGap(SAMPLE_TS, (ETH,), +size),)))) is expect
    for size, expect in ((all_ + STEP, True), (all_ - STEP, False)):
        shocks = (CollateralFall(SAMPLE_TS, "BTC", -size), PriceGap(SAMPLE_TS, (ETH,), +size))
        assert bool(liquidated(run_multi_asset(catalog, feed, shocks))) is expect, (size, all_)


def test_multi_asset_equity_table_carries_the_usd_pool_distance():
    from xmargin.output.writer import equity_table

    catalog, feed = multi_asset_setup()
    result = run_multi_asset(catalog, feed)
    equity = pl.from_arrow(equity_table(result))
    at_sample = equity.filter((pl.col("ts").dt.epoch("ns") == SAMPLE_TS) & (pl.col("reason") == "sample"))
    assert at_sample["asset"].to_list() == ["USD"]
    all_ = distances_at_sample(result).filter(pl.col("underlying") == "all")["liquidation_distance"][0]
    assert at_sample["liquidation_distance"][0] == all_


def test_constant_legs_summed_apart_give_the_same_distances_as_valued_legs(monkeypatch):
    """The search adds each single-underlying case's fixed maintenance of the unit's other legs after
    the kernel's sum instead of valuing it as a leg: every distance equals the plain search's, bit for
    bit (cross: long BTC / short ETH, several snapshots; isolated: one leg per unit, no constant)."""
    from xmargin.analysis import distance
    from xmargin.output.snapshots import snapshot_units

    plain = distance.first_crossings
    for mode, collateral in (("cross", 120_000.0), ("cross", 60_000.0), ("isolated", 120_000.0)):
        catalog, feed = setup(mode, collateral)
        result = run(catalog, feed)
        units = snapshot_units(result.snapshots, catalog, feed)
        fast = distance.distance_table(result.snapshots, catalog, feed, (0.7, 0.9), units)
        with monkeypatch.context() as patched:
            patched.setattr(distance, "first_crossings",
                            lambda legs, mark, direction, ks, constant_legs=0: plain(legs, mark, direction, ks))
            slow = distance.distance_table(result.snapshots, catalog, feed, (0.7, 0.9), units)
        assert fast.height > 6 and fast.equals(slow)
        assert fast["liquidation_distance"].to_list() == slow["liquidation_distance"].to_list()
        assert fast["warning_distance"].to_list() == slow["warning_distance"].to_list()
        assert (fast["underlying"] != "all").any() and fast["liquidation_distance"].is_finite().any()
