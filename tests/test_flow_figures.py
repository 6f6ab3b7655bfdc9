"""Flow-adjusted figures of the run summary against a hand calculation (datasets/sample, real prices).

The run of tests/test_transfers.py: Hyperliquid shorts 8.4334 ETH at 20x on 1,500 USDC; Binance
(multi-asset, 5,000 USDC) sends 1,000 USDC to Hyperliquid at 2024-10-07 01:00 (fee 1 USDC, arrives
01:30), which saves the short. By hand, from the event log's fill (price, fee), funding settlements
and the Hyperliquid ETH closes (its mark: Hyperliquid has no mark file in the sample):

    Hyperliquid PnL(t) = -8.4334 x (close(t) - fill price) - fee + funding settled before t
    Binance PnL(t)     = -1 (the withdrawal fee) from 01:00 on, 0 before
    collateral consumed = max over t of -PnL(t); the book's = max over t of -(sum of both)

Deposits and transfers are never PnL: Binance's 1,000 USDC transfer out is not a drawdown.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from xmargin.ledger import events as ev
from xmargin.sim.runner import execute
from test_transfers import config, rescue

ROOT = Path(__file__).resolve().parents[1]
HOUR_NS = 3_600_000_000_000


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return execute(config(rescue("2024-10-07T01:00")), out=tmp_path_factory.mktemp("flows"), run_id="in-time")


def hand_pnl(run) -> pl.DataFrame:
    """Per bar close from the fill on: Hyperliquid's and Binance's PnL, by the formulas above."""
    events = run.result.events
    (fill,) = [e for e in events if isinstance(e, ev.OrderFilled)]
    fee = sum(e.amount for e in events if isinstance(e, ev.FeeCharged) and e.exchange == "hyperliquid")
    (sent,) = [e for e in events if isinstance(e, ev.TransferSent)]
    funding = pl.DataFrame({"at": [e.ts for e in events if isinstance(e, ev.FundingSettled)],
                            "funding": [e.amount for e in events if isinstance(e, ev.FundingSettled)]},
                           schema={"at": pl.Int64, "funding": pl.Float64})
    bars = (pl.read_parquet(ROOT / "datasets/sample/bars/hyperliquid/perp/ETH_USDC_USDC-1h.parquet")
            .select((pl.col("ts").dt.epoch("ns") + HOUR_NS).alias("at"), "close")
            .filter((pl.col("at") >= fill.ts) & (pl.col("at") <= run.result.feed.ts[-1] + HOUR_NS)).sort("at"))
    # a sample at a bar close has seen the settlements before it (the one at that very time comes after)
    settled = bars.join_asof(funding.sort("at").with_columns(pl.col("funding").cum_sum()), on="at",
                             strategy="backward", allow_exact_matches=False)
    settled = settled.with_columns(pl.col("funding").fill_null(0.0))
    return settled.select(
        "at", (fill.quantity * (pl.col("close") - fill.price) - fee + pl.col("funding")).alias("hyperliquid"),
        pl.when(pl.col("at") >= sent.ts).then(-sent.fee).otherwise(0.0).alias("binance"))


def test_collateral_consumed_matches_the_hand_calculation(run):
    hand = hand_pnl(run)
    summary = run.summary
    for exchange in ("hyperliquid", "binance"):
        worst = hand.sort(exchange).row(0, named=True)
        consumed = summary["exchanges"][exchange]["collateral_consumed"]
        assert consumed["amount"] == pytest.approx(-worst[exchange], abs=1e-6), exchange
    hyperliquid = summary["exchanges"]["hyperliquid"]["collateral_consumed"]
    assert hyperliquid["ts"].startswith("2024-10-07 03:00")  # ETH's close at 2,505.6
    # deposits + transfers in - transfers out - equity at that moment (the definition, read literally)
    assert hyperliquid["net_flows"] == pytest.approx(2500.0) and hyperliquid["equity"] == pytest.approx(
        2500.0 - hyperliquid["amount"])
    assert summary["exchanges"]["binance"]["collateral_consumed"]["amount"] == pytest.approx(1.0)
    book = hand.select((pl.col("hyperliquid") + pl.col("binance")).alias("book"))["book"]
    assert summary["total"]["collateral_consumed"]["amount"] == pytest.approx(-book.min(), abs=1e-6)


def test_flows_are_never_drawdown_and_the_book_has_one(run):
    hand = hand_pnl(run)
    exchanges = run.summary["exchanges"]
    # Binance only sent 1,000 USDC away: its drawdown is the 1 USDC fee, not the transfer
    assert exchanges["binance"]["max_drawdown"] == pytest.approx(1.0)
    assert exchanges["binance"]["pnl"] == pytest.approx(-1.0)
    for exchange in ("hyperliquid",):
        series = hand[exchange]
        assert exchanges[exchange]["max_drawdown"] == pytest.approx((series.cum_max() - series).max(), abs=1e-6)
    book = hand["hyperliquid"] + hand["binance"]
    total = run.summary["total"]
    assert total["max_drawdown"] == pytest.approx((book.cum_max() - book).max(), abs=1e-6)
    assert total["max_drawdown"] > exchanges["hyperliquid"]["max_drawdown"] > 0
    assert total["drawdown"]["hours_under_water"] > 0
    stats = total["statistics"]
    assert stats["capital"] == pytest.approx(6500.0)  # the deposits; transfers move money, add none
    assert stats["return_on_capital"] == pytest.approx(total["pnl"] / 6500.0)
    assert stats["volatility"] > 0 and stats["sharpe"] is not None and stats["sortino"] is not None


def test_cagr_of_a_large_return_over_hours_is_not_applicable_not_a_crash():
    """+21 % in 2 hours annualises to 1.21 ** 4380 (about e ** 835), past the largest float (about
    e ** 709): the summary must not fail (it raised OverflowError); CAGR is n/a, the return on
    capital is still 0.21. A modest return over the same 2 hours keeps its CAGR: 1.0001 ** 4380 - 1."""
    from datetime import datetime, timedelta, timezone

    from xmargin.analysis.performance import statistics

    start = datetime(2025, 1, 1, tzinfo=timezone.utc)
    times = [start + timedelta(hours=h) for h in range(3)]
    large = statistics(pl.DataFrame({"ts": times, "pnl": [0.0, 105.0, 210.0]}), 1_000.0)
    assert large["return_on_capital"] == pytest.approx(0.21)
    assert large["cagr"] is None
    modest = statistics(pl.DataFrame({"ts": times, "pnl": [0.0, 0.0, 0.1]}), 1_000.0)
    assert modest["cagr"] == pytest.approx(1.0001 ** 4380 - 1.0, rel=1e-12)
