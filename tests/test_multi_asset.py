"""Multi-asset collateral on the REAL sample prices (datasets/sample, Binance 1h bars and marks).

(a) BTC as collateral for a USDT-settled ETH short: a BTC fall liquidates it, USDT collateral of the
    same haircut value does not. No real window of the sample has BTC falling while ETH does not
    fall as much, so the BTC fall is injected on top of the real prices with a stress shock
    (collateral-fall of BTC, -30 % from 2024-10-06 00:00 UTC, every BTC instrument of the run): it
    lowers the collateral only; the ETH short keeps its real path.
(b) spot in the ledger: a spot-long / perp-short hedge needs less extra margin in multi-asset mode.
(c) collateral revalued at every snapshot, before and after haircuts, moving with BTC.
(d) `xmargin verify` (xmargin.output.verify.verify_run) passes on these runs.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from xmargin.ledger import events as ev
from xmargin.ledger.commands import PlaceOrder
from xmargin.config import parse_config
from xmargin.ledger.apply import replay
from xmargin.sim.loop import Backtest
from xmargin.output.results import open_run
from xmargin.sim.runner import execute
from xmargin.sim.strategy import Wakes
from xmargin.analysis.stress import make_shock, to_ns
from xmargin.output.verify import verify_run

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "datasets/sample"
ETH = "binance:ETH/USDT:USDT"
BTC_PERP = "binance:BTC/USDT:USDT"
BTC_SPOT = "binance:BTC/USDT"
START, END = "2024-10-03", "2024-10-10"
SHOCK_AT = "2024-10-06T00:00"
BTC_COLLATERAL = 0.03
# 0.03 BTC at the first snapshot's BTC/USDT price x 0.95 (Binance 2021 ratio): the start snapshot holds
# the deposits at the first bar's open (2024-10-03 00:00), 60,649.27 in the sample's bars (BTC/USDT has no
# mark series: its last price); until snapshots carried their moment it was that bar's close, 60,988.01
BTC_HAIRCUT_VALUE = 0.03 * 60_649.27 * 0.95          # = 1,728.50 USD
USDT_COLLATERAL = round(BTC_HAIRCUT_VALUE, 2)        # the same haircut-free amount in USDT


def _config(collateral: dict, mode: str = "multi-asset", positions=None, strategy="hold",
            instruments=(ETH, BTC_SPOT), start=START, end=END, extra_params=None):
    params = {"positions": positions if positions is not None else {ETH: -20_000}, "leverage": {ETH: 20}}
    if strategy != "hold":
        params = dict(extra_params or {})
    return parse_config({
        "run": {"dataset": str(SAMPLE), "strategy": strategy, "start": start, "end": end,
                "instruments": list(instruments), "name": "multi"},
        "strategy": {"params": params},
        "exchanges": {"binance": {"rules": "binance-usdm", "margin_mode": mode, "collateral": collateral}}})


def _btc_fall():
    return make_shock("collateral-fall", SHOCK_AT, size="-30%", asset="BTC")


def _liquidations(result):
    return [e for e in result.events if isinstance(e, ev.PositionLiquidated)]


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The three runs of (a), written as run folders: BTC book shocked, USDT book shocked, BTC book
    unshocked (the control: the real BTC path alone does not liquidate it)."""
    out = tmp_path_factory.mktemp("multi")
    btc = execute(_config({"BTC": BTC_COLLATERAL}), out=out, run_id="btc", shocks=[_btc_fall()])
    usdt = execute(_config({"USDT": USDT_COLLATERAL}), out=out, run_id="usdt", shocks=[_btc_fall()])
    control = execute(_config({"BTC": BTC_COLLATERAL}), out=out, run_id="btc-no-shock")
    return {"btc": btc, "usdt": usdt, "control": control}


# ------------------------------------------------------------------------------------------------ (a)
def test_btc_collateral_fall_liquidates_the_eth_short(runs):
    """Short 20,000 USDT of ETH perp at 20x (8.435 ETH filled at 2,370.75 on 2024-10-03 01:00) on
    0.03 BTC. BTC -30 % from 2024-10-06: the pool loses ~400 USD of collateral while ETH climbs
    to ~2,510 on 2024-10-07 (short loses ~1,190); the pool reaches maintenance at 2024-10-07 02:30
    (the second path point of the 02:00 bar) and the ETH short is closed."""
    result = runs["btc"].result
    (fill,) = [e for e in result.events if isinstance(e, ev.OrderFilled)]
    assert (fill.instrument, fill.quantity, fill.price) == (ETH, -8.435, pytest.approx(2370.752901))
    liquidations = _liquidations(result)
    assert len(liquidations) == 1
    (liq,) = liquidations
    assert liq.instrument == ETH and liq.quantity == pytest.approx(8.435) and not liq.isolated
    assert _iso(liq.ts) == "2024-10-07T02:30"
    assert liq.price == pytest.approx(2511.5495, rel=1e-6)
    assert liq.realized_pnl == pytest.approx(-8.435 * (2511.5495183 - 2370.752901), rel=1e-6)
    assert runs["btc"].summary["total"]["liquidations"] == 1


def test_liquidation_point_is_where_equity_meets_maintenance_from_raw_prices(runs):
    """Recompute the pool from the raw Parquet files (not the engine's feed): at the 02:00 bar of
    2024-10-07, on the path open -> extreme nearer the open -> other extreme -> close, the shocked
    pool (0.03 BTC x 0.95 x 0.7 x BTC/USDT price + short PnL at the ETH mark) has equity above
    maintenance (0.4 % of notional, bracket 1 of ETHUSDT) at 02:00 and 02:15, at or below it at 02:30."""
    bar = to_ns("2024-10-07T02:00")

    def path(file):
        frame = pl.read_parquet(file).filter(pl.col("ts").dt.epoch("ns") == bar).row(0, named=True)
        o, h, lo, c = frame["open"], frame["high"], frame["low"], frame["close"]
        near, far = (h, lo) if h - o <= o - lo else (lo, h)
        return np.array([o, near, far, c])

    btc = path(SAMPLE / "bars/binance/spot/BTC_USDT-1h.parquet") * 0.7
    eth = path(SAMPLE / "mark/binance/perp/ETH_USDT_USDT-1h.parquet")
    result = runs["btc"].result
    (liq,) = _liquidations(result)
    before = replay(result.initial_ledger, [e for e in result.events if e.ts < liq.ts])
    usdt = before.accounts["binance"].balances["USDT"]  # -fee + funding received so far
    usdt_value = usdt * 0.9999 if usdt > 0 else usdt     # a liability would count in full
    equity = BTC_COLLATERAL * 0.95 * btc + usdt_value + (-8.435) * (eth - 2370.752901)
    maintenance = 8.435 * eth * 0.004
    # the liquidation is stamped 02:30 = path point 2 of 4: above maintenance at points 0 and 1
    assert equity[0] > maintenance[0] and equity[1] > maintenance[1] and equity[2] <= maintenance[2]


def test_same_book_on_usdt_collateral_survives_the_same_shock(runs):
    result = runs["usdt"].result
    assert _liquidations(result) == []
    equity = open_run(runs["usdt"].path).equity.collect()
    assert equity["margin_ratio"].max() < 0.2          # tightest ~0.137 on 2024-10-07
    assert runs["usdt"].summary["total"]["liquidations"] == 0
    # control: the BTC book without the shock is not liquidated either: the fall did it
    assert _liquidations(runs["control"].result) == []


def test_usdt_book_starts_with_the_same_collateral_value(runs):
    first = {name: open_run(runs[name].path).equity.collect().row(0, named=True) for name in ("btc", "usdt")}
    assert first["btc"]["collateral_value"] == pytest.approx(BTC_HAIRCUT_VALUE)
    # USDT counts at 0.9999 on Binance: 1,728.50 x 0.9999
    assert first["usdt"]["collateral_value"] == pytest.approx(USDT_COLLATERAL * 0.9999)
    assert first["btc"]["collateral_value"] == pytest.approx(first["usdt"]["collateral_value"], rel=1e-3)


# ------------------------------------------------------------------------------------------------ (c)
def test_collateral_table_before_and_after_haircuts_moves_with_btc(runs):
    collateral = open_run(runs["btc"].path).collateral.collect()
    btc = collateral.filter(pl.col("asset") == "BTC").sort("events_applied", "ts")
    assert btc.height > 100  # every hourly sample and every event snapshot
    assert (btc["value"] - btc["balance"] * btc["price"]).abs().max() < 1e-9
    assert (btc["collateral_value"] - 0.95 * btc["value"]).abs().max() < 1e-9
    # the price is the BTC/USDT close of the shocked feed at each snapshot
    feed = runs["btc"].result.feed
    column = feed.column(BTC_SPOT)
    samples = btc.filter(pl.col("reason") == "sample")
    rows = np.searchsorted(feed.ts, samples["ts"].dt.epoch("ns").to_numpy() - feed.bar_ns)
    np.testing.assert_allclose(samples["price"].to_numpy(), feed.close[rows, column])
    # across the shock the value falls by 30 % (same balance, price x 0.7)
    before = samples.filter(pl.col("ts").dt.epoch("ns") == to_ns(SHOCK_AT)).row(0, named=True)
    after = samples.filter(pl.col("ts").dt.epoch("ns") == to_ns(SHOCK_AT) + feed.bar_ns).row(0, named=True)
    raw = pl.read_parquet(SAMPLE / "bars/binance/spot/BTC_USDT-1h.parquet")
    close_at = {int(t): c for t, c in zip(raw["ts"].dt.epoch("ns"), raw["close"])}
    assert before["price"] == pytest.approx(close_at[to_ns(SHOCK_AT) - feed.bar_ns])
    assert after["price"] == pytest.approx(0.7 * close_at[to_ns(SHOCK_AT)])
    # the pool's collateral_value in the equity table is the sum of the per-asset rows
    equity = open_run(runs["btc"].path).equity.collect()
    per_snapshot = collateral.group_by("events_applied", "ts", "reason").agg(pl.col("collateral_value").sum())
    joined = equity.join(per_snapshot, on=["events_applied", "ts", "reason"], suffix="_assets")
    assert joined.height == equity.height
    assert (joined["collateral_value"] - joined["collateral_value_assets"]).abs().max() < 1e-6
    # the unshocked control's collateral tracks the real BTC price: it rises with BTC 2024-10-03 -> 10
    control = open_run(runs["control"].path).collateral.collect().filter(
        (pl.col("asset") == "BTC") & (pl.col("reason") == "sample"))
    assert np.corrcoef(control["price"].to_numpy(), control["collateral_value"].to_numpy())[0, 1] > 0.999


# ------------------------------------------------------------------------------------------------ (d)
@pytest.mark.parametrize("name", ["btc", "usdt", "control"])
def test_verify_passes(runs, name):
    assert verify_run(runs[name].path) == []


# ------------------------------------------------------------------------------------------------ (b)
class SpotThenShort:
    """Buy `spot` of BTC/USDT at the first wake; once it has filled, short `short` of the BTC perp."""

    def __init__(self, params):
        self.spot = float(params["spot"])
        self.short = float(params["short"])
        self.step = 0
        self.free_after = {}

    def wakes(self):
        return Wakes(bars=(BTC_SPOT,))

    def on_wake(self, view, wake):
        self.step += 1
        if self.step == 1:
            return [PlaceOrder.market(BTC_SPOT, self.spot)]
        if self.step == 2:
            self.free_after["spot"] = view.margin("binance", "USDT").free_collateral
            return [PlaceOrder.market(BTC_PERP, -self.short, leverage=10)]
        if self.step == 4:
            self.free_after["hedge"] = view.margin("binance", "USDT").free_collateral
        return []


def _hedge(mode: str, spot: float, short: float):
    config = _config({"USDT": 10_000}, mode=mode, strategy="tests.test_multi_asset:SpotThenShort",
                     instruments=(BTC_PERP, BTC_SPOT), start="2024-10-03", end="2024-10-04",
                     extra_params={"spot": spot, "short": short})
    backtest = Backtest(config)
    return backtest.run(), backtest.strategy


@pytest.mark.parametrize("mode", ["cross", "multi-asset"])
def test_spot_buy_moves_balances_with_fees(mode):
    result, _ = _hedge(mode, 0.1, 0.1)
    fills = [e for e in result.events if isinstance(e, ev.OrderFilled)]
    spot_fill = next(e for e in fills if e.market == "spot")
    fee = next(e for e in result.events if isinstance(e, ev.FeeCharged) and e.order_id == spot_fill.order_id)
    assert fee.amount == pytest.approx(0.1 * spot_fill.price * 0.001)  # Binance spot taker 0.1 % (not USD-M's 0.05 %)
    after_spot = result.initial_ledger
    upto = result.events.index(fee) + 1
    balances = replay(result.initial_ledger, result.events[:upto]).accounts["binance"].balances
    assert balances["BTC"] == pytest.approx(0.1)
    assert balances["USDT"] == pytest.approx(10_000 - 0.1 * spot_fill.price - fee.amount)
    assert after_spot.accounts["binance"].balances == {}


def test_spot_long_perp_short_needs_less_margin_in_multi_asset_mode():
    """10,000 USDT; buy 0.1 BTC spot (~6,100 USDT) then short 0.1 BTC perp at 10x (IM ~610).
    Single-asset cross: the BTC bought backs nothing, free = 10,000 - cost - fees - IM (~3,280).
    Multi-asset: the BTC counts at 0.95 and USDT at 0.9999: free is larger by ~0.95 x 6,100."""
    cross, cross_strategy = _hedge("cross", 0.1, 0.1)
    multi, multi_strategy = _hedge("multi-asset", 0.1, 0.1)
    for result in (cross, multi):
        assert sum(isinstance(e, ev.OrderFilled) for e in result.events) == 2
    price = next(e.price for e in multi.events if isinstance(e, ev.OrderFilled) and e.market == "spot")
    gap_after_spot = multi_strategy.free_after["spot"] - cross_strategy.free_after["spot"]
    # cross free = U; multi free = 0.9999 U + 0.95 x 0.1 x BTC price (the mark of BTC/USDT spot)
    assert gap_after_spot == pytest.approx(0.95 * 0.1 * price - 0.0001 * cross_strategy.free_after["spot"],
                                           rel=0.02)
    gap_after_hedge = multi_strategy.free_after["hedge"] - cross_strategy.free_after["hedge"]
    assert gap_after_hedge > 0.9 * 0.1 * price
    assert cross_strategy.free_after["hedge"] == pytest.approx(10_000 - 0.1 * price * (1 + 0.0005) - 610, abs=80)


def test_largest_short_the_same_cash_allows():
    """0.15 BTC spot (~9,150 USDT of 10,000) then a 0.15 BTC short at 10x (IM ~915): cross mode
    rejects it (only ~845 USDT free), multi-asset mode accepts it (the spot BTC backs it)."""
    cross, _ = _hedge("cross", 0.15, 0.15)
    multi, _ = _hedge("multi-asset", 0.15, 0.15)
    rejected = [e for e in cross.events if isinstance(e, ev.OrderRejected)]
    assert len(rejected) == 1 and rejected[0].instrument == BTC_PERP
    assert "insufficient margin" in rejected[0].reason
    assert not any(isinstance(e, ev.OrderRejected) for e in multi.events)
    perp_fill = [e for e in multi.events if isinstance(e, ev.OrderFilled) and e.market == "perp"]
    assert len(perp_fill) == 1 and perp_fill[0].quantity == pytest.approx(-0.15)


def test_hedge_runs_verify(tmp_path):
    for mode in ("cross", "multi-asset"):
        config = _config({"USDT": 10_000}, mode=mode, strategy="tests.test_multi_asset:SpotThenShort",
                         instruments=(BTC_PERP, BTC_SPOT), start="2024-10-03", end="2024-10-05",
                         extra_params={"spot": 0.1, "short": 0.1})
        completed = execute(config, out=tmp_path, run_id=mode)
        assert verify_run(completed.path) == []
