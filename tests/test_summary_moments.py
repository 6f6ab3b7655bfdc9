"""Summary figures mean what their names say: the moment a figure names is the one it was valued at,
and money is USD.

Synthetic hourly feed (helpers_feed), flat 5 % maintenance, no fees or slippage; every expected
number is derived by hand below. A long of 10 BTC is bought at the close of bar 0 and fills at the
open of bar 1 (100, i.e. 2024-10-01 01:00); bar 1 closes at 90 (02:00), bar 2 at 100 (03:00).
The snapshot taken after the fill is stamped 01:00 and valued there, at bar 1's open (100; until
snapshots carried their moment it held bar 1's close, 90, under 01:00): the lowest headroom and the
tightest distance belong to 02:00 (the sample at bar 1's close), when BTC was at 90.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest

from xmargin.analysis.compare import compare
from xmargin.config import parse_config
from xmargin.ledger import commands as cmd
from xmargin.output.results import open_run
from xmargin.sim.loop import Backtest
from xmargin.sim.runner import execute, summary_for
from xmargin.venues.venue import Catalog
from helpers_feed import HOUR, T0, Scripted, VenueSpec, flat_brackets, make_catalog, make_config, make_feed, perp, rules

ROOT = Path(__file__).resolve().parents[1]
BTC = "bx:BTC/USDT:USDT"
AT_BAR_1_CLOSE = str(datetime.fromtimestamp((T0 + 2 * HOUR) / 1e9, timezone.utc))  # 2024-10-01 02:00:00+00:00


def long_btc_run(mode: str):
    """250 USDT; long 10 BTC at 100 (1,000 notional, 5x: 200 initial margin), BTC 100 -> 90 -> 100."""
    rs = rules(maker_fee=0.0, taker_fee=0.0, policy="full")
    catalog = make_catalog({"bx": VenueSpec(rs, mode, {"USDT": 250.0}, 5.0)}, [perp("bx", "BTC")],
                           tables={BTC: flat_brackets(0.05, 50.0)})
    feed = make_feed((BTC,), [100.0, 90.0, 100.0, 100.0])
    strategy = Scripted({0: [cmd.PlaceOrder.market(BTC, 10.0)]})
    return Backtest(make_config(catalog, slippage_bps=0.0), feed=feed, catalog=catalog, strategy=strategy).run()


def long_btc(mode: str) -> dict:
    return summary_for(long_btc_run(mode))["exchanges"]["bx"]


def test_cross_lowest_headroom_and_tightest_moment_are_at_the_bar_close_they_were_valued_at():
    figures = long_btc("cross")
    # at 90: equity 250 - 10 x 10 = 150, maintenance 5 % x 900 = 45, ratio 0.3 (at 100: 50 / 250 = 0.2)
    low = figures["lowest_margin_headroom"]
    assert low["margin_ratio"] == pytest.approx(0.3, rel=1e-12) and low["headroom"] == pytest.approx(0.7, rel=1e-12)
    assert low["ts"] == AT_BAR_1_CLOSE  # was 01:00, when BTC was at 100 and the ratio 0.2
    # liquidation where 250 + 10 (p - 100) = 0.05 x 10 p: p = 750 / 9.5; from 90 that is a fall of 12.28 %
    tight = figures["tightest_moment"]
    assert tight["liquidation_distance"] == pytest.approx(1 - (750 / 9.5) / 90, rel=1e-9)
    assert tight["ts"] == AT_BAR_1_CLOSE


def test_isolated_lowest_headroom_is_at_the_bar_close_it_was_valued_at():
    figures = long_btc("isolated")
    # isolated margin 200; at 90 its equity is 200 - 100 = 100 and its maintenance 45: ratio 0.45
    low = figures["lowest_isolated_headroom"]
    assert low["margin_ratio"] == pytest.approx(0.45, rel=1e-12) and low["headroom"] == pytest.approx(0.55, rel=1e-12)
    assert low["ts"] == AT_BAR_1_CLOSE


COINM = parse_config({  # short 400 contracts of 100 USD at 25x on 0.1 BTC: liquidated by the 13:30 CPI spike
    "run": {"dataset": str(ROOT / "datasets/coinm-sample"), "strategy": "hold", "slippage_bps": 0.0},
    "strategy": {"params": {"positions": {"binance:BTC/USD:BTC": -40_000}, "leverage": {"binance:BTC/USD:BTC": 25}}},
    "exchanges": {"binance": {"rules": "binance-coinm", "margin_mode": "cross", "collateral": {"BTC": 0.1}}}})


def test_peak_initial_margin_of_a_coin_margined_pool_is_in_usd(tmp_path):
    """Binance COIN-M BTCUSD (datasets/coinm-sample, 2022-12-13). The pool's initial margin is 40,000 USD
    / 25 = 1,600 USD, i.e. 1,600 / price in BTC (about 0.09 BTC), which the summary printed as USD."""
    completed = execute(COINM, out=tmp_path, run_id="coinm")
    peak = completed.summary["exchanges"]["binance"]["peak_initial_margin"]
    # BTC counts at the collateral table's price (BTC/BUSD spot), a few dollars off the perp's own mark
    assert peak == pytest.approx(40_000 / 25, rel=2e-3)


def test_compare_money_of_a_coin_margined_run_is_in_usd(tmp_path):
    """compare's peak initial margin (and so its return on it) and liquidation loss and fees were BTC amounts
    added at par, beside a PnL in USD."""
    table, _ = compare(COINM, "cross", out=tmp_path, compare_id="coinm")
    row = table.row(0, named=True)
    assert row["peak_initial_margin"] == pytest.approx(40_000 / 25, rel=2e-3)
    assert row["return_on_peak_margin"] == pytest.approx(row["pnl"] / row["peak_initial_margin"], rel=1e-12)
    run = open_run(tmp_path / "coinm" / "cross")
    liquidations = run.liquidations.collect()
    assert liquidations.height == 1 and liquidations["asset"][0] == "BTC"
    # the loss in BTC at BTC's price at the liquidation (collateral table, the snapshot after it)
    price = (run.collateral.collect().filter((pl.col("asset") == "BTC") & (pl.col("ts") == liquidations["ts"][0]))
             ["price"][-1])
    assert row["liquidation_loss"] == pytest.approx(liquidations["realized_pnl"][0] * price, rel=1e-9)
    assert row["liquidation_loss"] < -100  # hundreds of USD, not a fraction of a BTC


def test_transfer_fees_in_total_are_usd_like_each_exchange_withdrawal_fees():
    """0.5 BTC sent from ax to bx (both multi-asset, BTC at 50,000) with a 0.0002 BTC withdrawal fee: 10 USD."""
    rs = rules(maker_fee=0.0, taker_fee=0.0)
    built = make_catalog({"ax": VenueSpec(rs, "multi-asset", {"BTC": 1.0}, 5.0,
                                          withdrawal_fees={"BTC": 0.0002}),
                          "bx": VenueSpec(rs, "multi-asset", {"USDT": 1000.0}, 5.0)},
                         [perp("ax", "BTC"), perp("bx", "BTC")])
    catalog = Catalog.create(built.venues, built.tradables)
    feed = make_feed(("ax:BTC/USDT:USDT", "bx:BTC/USDT:USDT"), [[50_000.0, 50_000.0]] * 3)
    strategy = Scripted({0: [cmd.Transfer("BTC", 0.5, "ax", "bx")]})
    result = Backtest(make_config(catalog), feed=feed, catalog=catalog, strategy=strategy).run()
    summary = summary_for(result)
    assert summary["exchanges"]["ax"]["withdrawal_fees"] == pytest.approx(0.0002 * 50_000, rel=1e-12)
    assert summary["total"]["transfers"]["count"] == 1
    assert summary["total"]["transfers"]["fees"] == pytest.approx(10.0, rel=1e-12)  # was 0.0002 (BTC)


def test_a_coin_transfer_cancels_out_in_the_book_when_the_coin_moves_in_flight():
    """1 BTC on ax, 1,000 USDT on bx (both multi-asset); at 01:00 (BTC 50,000) ax sends 0.5 BTC to bx (fee
    0.0002 BTC, 30 minutes); it lands at 01:30 inside a bar that closes at 60,000, where BTC stays. The book
    held 0.9998 BTC throughout: final equity 0.4998 x 60,000 + 1,000 + 0.5 x 60,000 = 60,988 on deposits of
    51,000, PnL 9,988. Valuing the arrival at 60,000 but the sending at 50,000 made 5,000 of it a flow."""
    rs = rules(maker_fee=0.0, taker_fee=0.0)
    built = make_catalog({"ax": VenueSpec(rs, "multi-asset", {"BTC": 1.0}, 5.0, withdrawal_fees={"BTC": 0.0002},
                                          transfer_delay_minutes={"BTC": 30}),
                          "bx": VenueSpec(rs, "multi-asset", {"USDT": 1000.0}, 5.0)},
                         [perp("ax", "BTC"), perp("bx", "BTC")])
    catalog = Catalog.create(built.venues, built.tradables)
    feed = make_feed(("ax:BTC/USDT:USDT", "bx:BTC/USDT:USDT"), [[50_000.0] * 2, [60_000.0] * 2, [60_000.0] * 2])
    strategy = Scripted({0: [cmd.Transfer("BTC", 0.5, "ax", "bx")]})
    result = Backtest(make_config(catalog), feed=feed, catalog=catalog, strategy=strategy).run()
    summary = summary_for(result)
    total, ax, bx = summary["total"], summary["exchanges"]["ax"], summary["exchanges"]["bx"]
    assert total["deposits"] == pytest.approx(51_000, rel=1e-12)
    assert total["final_equity"] == pytest.approx(60_988, rel=1e-12)
    assert total["pnl"] == pytest.approx(9_988, rel=1e-12)  # was 4,988
    # ax kept 0.4998 BTC (+4,998) and paid the 10 USD fee; the 0.5 BTC gained 5,000 in flight, landing on bx
    assert ax["pnl"] == pytest.approx(4_988, rel=1e-12) and bx["pnl"] == pytest.approx(5_000, rel=1e-12)
    assert total["collateral_consumed"]["amount"] == 0.0


def _reseal(folder: Path, summary: dict) -> None:
    """Rewrite the run's summary.json as a run would have written it (its hash and the manifest's digest)."""
    import json

    from xmargin.output.eventlog import file_hash
    from xmargin.output.writer import MANIFEST_DIGEST, manifest_digest

    (folder / "summary.json").write_text(json.dumps(summary, indent=2))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["summary.json"] = file_hash(folder / "summary.json")
    manifest[MANIFEST_DIGEST] = manifest_digest(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))


def test_a_summary_written_under_earlier_definitions_is_named_not_reported_as_a_mismatch(tmp_path):
    """summary.json records the definitions of its figures (`summary_version`). `xmargin verify` of a run
    whose summary was written before they were numbered (figures defined otherwise: here its peak
    initial margin) says so and verifies the rest; the same figure under today's definitions is a mismatch."""
    import json

    from click.testing import CliRunner

    from xmargin.analysis.summary import SUMMARY_VERSION
    from xmargin.cli.main import main
    from xmargin.output.writer import write_run_folder

    folder, summary = write_run_folder(long_btc_run("cross"), out=tmp_path, run_id="long")
    assert summary["summary_version"] == SUMMARY_VERSION == 3  # 3: snapshots valued at their own moment
    assert CliRunner().invoke(main, ["verify", str(folder)]).exit_code == 0
    older = json.loads(json.dumps(summary))
    del older["summary_version"]
    older["exchanges"]["bx"]["peak_initial_margin"] += 1.0
    _reseal(folder, older)
    result = CliRunner().invoke(main, ["verify", str(folder)])
    assert result.exit_code == 0, result.output
    assert "note: summary.json was written under summary definitions 1 (this xmargin: 3" in result.output
    older["summary_version"] = SUMMARY_VERSION
    _reseal(folder, older)
    result = CliRunner().invoke(main, ["verify", str(folder)])
    assert result.exit_code == 1 and "MISMATCH: summary.json exchanges.bx.peak_initial_margin" in result.output


def test_the_lowest_headroom_can_be_a_fill_at_a_gapped_open_valued_there():
    """Every snapshot is valued at its own moment, so the summary reads them all: the state after a
    fill at a bar's open is a real moment. Long 10 BTC filled at 100 (bar 1's open); at bar 1's
    close (100) one more BTC is bought, and it fills at bar 2's open, a gap to 97 (02:00); bar 2
    closes at 100 again. At 02:00 after the fill: equity 250 + 10 x (97 - 100) = 220, maintenance
    5 % x 11 x 97 = 53.35, ratio 0.2425 (no warning at 0.7). The closes read 50 / 250 = 0.2 (at
    02:00, bar 1's close) and 55 / 253 (03:00). Liquidation from there where
    250 + 10 (p - 100) + (p - 97) = 0.05 x 11 p: p = 847 / 10.45, a fall of 1 - p / 97. The old
    summary skipped event rows and said 55 / 253 at 03:00."""
    rs = rules(maker_fee=0.0, taker_fee=0.0, policy="full")
    catalog = make_catalog({"bx": VenueSpec(rs, "cross", {"USDT": 250.0}, 5.0)}, [perp("bx", "BTC")],
                           tables={BTC: flat_brackets(0.05, 50.0)})
    feed = make_feed((BTC,), [100.0, 100.0, 100.0, 100.0], open=[100.0, 100.0, 97.0, 100.0])
    strategy = Scripted({0: [cmd.PlaceOrder.market(BTC, 10.0)], 1: [cmd.PlaceOrder.market(BTC, 1.0)]})
    result = Backtest(make_config(catalog, slippage_bps=0.0), feed=feed, catalog=catalog, strategy=strategy).run()
    figures = summary_for(result)["exchanges"]["bx"]
    low = figures["lowest_margin_headroom"]
    assert low["margin_ratio"] == pytest.approx(53.35 / 220.0, rel=1e-12)
    assert low["ts"] == AT_BAR_1_CLOSE  # 02:00: bar 2's open, after the fill
    tight = figures["tightest_moment"]
    assert tight["liquidation_distance"] == pytest.approx(1 - (847 / 10.45) / 97, rel=1e-9)
    assert tight["ts"] == AT_BAR_1_CLOSE
