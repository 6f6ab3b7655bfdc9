"""Every snapshot is valued at the prices of its own moment (`Snapshot.valued_at`, the valuation
tables' `valued_at`): the state after a bar's open events at that bar's open marks, an intrabar
breach at its path point's marks, a strategy's orders, samples and the end at closes.

Synthetic hourly feeds (helpers_feed), flat 5 % maintenance, no fees or slippage; every expected
number is derived by hand below. Before snapshots carried their moment, the first two tests' rows
held the bar's close marks (the fill's row: uPnL 10 x (119 - 80) = 390; the liquidation's: ETH at
its close 45).
"""

from __future__ import annotations

import polars as pl
import pytest

from xmargin.ledger import commands as cmd
from xmargin.output.results import open_run
from xmargin.sim.loop import Backtest
from xmargin.sim.runner import execute
from xmargin.venues.venue import Catalog
from xmargin.output.snapshots import collateral_table, equity_base_table, positions_table
from helpers_feed import HOUR, T0, Scripted, VenueSpec, flat_brackets, make_catalog, make_config, make_feed, perp, rules

BTC, ETH = "bx:BTC/USDT:USDT", "bx:ETH/USDT:USDT"


def _table(make, result) -> pl.DataFrame:
    return pl.from_arrow(make(result)).with_columns(pl.col("ts").dt.epoch("ns").alias("ns"))


def gapped_fill_run():
    """1,000 USDT cross, 5x. A long of 10 BTC ordered at bar 0's close (100) fills at bar 1's open,
    which gaps to 80 (marks: open 81, close 119; last close 120)."""
    rs = rules(maker_fee=0.0, taker_fee=0.0)
    catalog = make_catalog({"bx": VenueSpec(rs, "cross", {"USDT": 1000.0}, 5.0)}, [perp("bx", "BTC")],
                           tables={BTC: flat_brackets(0.05, 50.0)})
    close = [100.0, 120.0, 120.0]
    feed = make_feed((BTC,), close, open=[100.0, 80.0, 120.0],
                     marks={"open": [99.0, 81.0, 119.0], "close": [101.0, 119.0, 121.0]})
    strategy = Scripted({0: [cmd.PlaceOrder.market(BTC, 10.0)]})
    return Backtest(make_config(catalog, slippage_bps=0.0), feed=feed, catalog=catalog, strategy=strategy).run()


def test_a_fill_at_a_gapped_open_is_valued_at_the_open_marks():
    result = gapped_fill_run()
    equity = _table(equity_base_table, result)
    (fill,) = equity.filter((pl.col("reason") == "event") & (pl.col("ns") == T0 + HOUR)).to_dicts()
    assert fill["valued_at"] == "open"
    # wallet 1,000 (no fee); 10 BTC bought at the open 80, marked at the open's mark 81: uPnL 10 x 1 = 10
    assert fill["cross_wallet_balance"] == 1000.0
    assert fill["unrealized_pnl"] == pytest.approx(10 * (81 - 80), rel=1e-12)
    assert fill["margin_balance"] == pytest.approx(1000 + 10, rel=1e-12)
    assert fill["maintenance_margin"] == pytest.approx(0.05 * 10 * 81, rel=1e-12)  # 40.5
    assert fill["initial_margin"] == pytest.approx(10 * 81 / 5, rel=1e-12)  # 162
    (position,) = _table(positions_table, result).filter(pl.col("ns") == T0 + HOUR).to_dicts()
    assert position["mark_price"] == 81.0 and position["entry_price"] == 80.0
    # the sample at bar 1's close (02:00) is the close's: 10 x (119 - 80) = 390
    (sample,) = equity.filter((pl.col("reason") == "sample") & (pl.col("ns") == T0 + 2 * HOUR)).to_dicts()
    assert sample["valued_at"] == "close" and sample["unrealized_pnl"] == pytest.approx(390.0, rel=1e-12)
    # the start (deposits at the first bar's open) and the strategy's order (bar 0's close): their own moments
    moments = equity.select("reason", "ns", "valued_at").rows()
    assert moments[0] == ("start", T0, "open")
    assert ("event", T0 + HOUR, "close") not in moments  # (an accepted order changes no balance: no snapshot)
    assert {row[2] for row in moments if row[0] in ("sample", "final")} == {"close"}


def test_coin_collateral_is_valued_at_the_moment_of_its_snapshot():
    """A BTC balance (multi-asset) in the collateral table: the start at the first open mark, samples at closes."""
    rs = rules(maker_fee=0.0, taker_fee=0.0)
    built = make_catalog({"bx": VenueSpec(rs, "multi-asset", {"BTC": 0.5}, 5.0)}, [perp("bx", "BTC")])
    catalog = Catalog.create(built.venues, built.tradables)  # (BTC priced at its perp's marks)
    feed = make_feed((BTC,), [100.0, 110.0], marks={"open": [90.0, 100.0], "close": [95.0, 105.0]})
    result = Backtest(make_config(catalog), feed=feed, catalog=catalog, strategy=Scripted()).run()
    collateral = _table(collateral_table, result)
    start = collateral.filter(pl.col("reason") == "start").to_dicts()[0]
    assert (start["valued_at"], start["price"], start["value"]) == ("open", 90.0, 45.0)  # 0.5 x 90
    sample = collateral.filter((pl.col("reason") == "sample") & (pl.col("ns") == T0 + HOUR)).to_dicts()[0]
    assert (sample["valued_at"], sample["price"]) == ("close", 95.0)


def liquidated_run(intrabar: str, btc_close: float = 95.0):
    """Isolated, 1,000 USDT, 5x: long 1 BTC at 100 (margin 20: liquidated where 20 + (p - 100) = 0.05 p,
    p = 84.21) and short 1 ETH at 50 (margin 10, far from its own liquidation at 57.14). Bar 2: BTC
    open 100, high 105, low 70, close 95; ETH open 50, high 52, low 40, close 45. Path order (the
    extreme nearer the open first): BTC 100, 105, 70, 95; ETH 50, 52, 40, 45."""
    rs = rules(maker_fee=0.0, taker_fee=0.0, policy="full")
    catalog = make_catalog({"bx": VenueSpec(rs, "isolated", {"USDT": 1000.0}, 5.0)},
                           [perp("bx", "BTC"), perp("bx", "ETH")],
                           tables={BTC: flat_brackets(0.05, 50.0), ETH: flat_brackets(0.05, 50.0)})
    close = [[100.0, 50.0], [100.0, 50.0], [btc_close, 45.0], [btc_close, 45.0]]
    feed = make_feed((BTC, ETH), close, open=[[100.0, 50.0]] * 3 + [[btc_close, 45.0]],
                     high=[[100.0, 50.0], [100.0, 50.0], [105.0, 52.0], [btc_close, 45.0]],
                     low=[[100.0, 50.0], [100.0, 50.0], [70.0, 40.0], [btc_close, 45.0]])
    strategy = Scripted({0: [cmd.PlaceOrder.market(BTC, 1.0), cmd.PlaceOrder.market(ETH, -1.0)]})
    config = make_config(catalog, intrabar=intrabar, warning_thresholds=())
    return Backtest(config, feed=feed, catalog=catalog, strategy=strategy).run()


@pytest.mark.parametrize("intrabar, point, moment, eth", [
    ("path", 2, "far extreme", 40.0),  # BTC breaches at its far extreme (70); ETH's far extreme is its low
    ("worst-case", 1, "adverse extreme", 52.0),  # every holding at its adverse extreme: BTC long 70, ETH short 52
])
def test_an_intrabar_liquidation_is_valued_at_its_path_point(intrabar, point, moment, eth):
    result = liquidated_run(intrabar)
    points = {"path": 4, "worst-case": 3}[intrabar]
    at = T0 + 2 * HOUR + point * HOUR // points
    positions = _table(positions_table, result).filter(pl.col("ns") == at)
    (row,) = positions.to_dicts()  # BTC is gone; the ETH short remains
    assert (row["reason"], row["valued_at"], row["instrument"]) == ("event", moment, ETH)
    assert row["mark_price"] == eth
    assert row["unrealized_pnl"] == pytest.approx(-1.0 * (eth - 50.0), rel=1e-12)
    assert row["maintenance_margin"] == pytest.approx(0.05 * eth, rel=1e-12)
    (pool,) = _table(equity_base_table, result).filter(pl.col("ns") == at).to_dicts()
    assert pool["valued_at"] == moment
    assert pool["isolated_margin"] == pytest.approx(10.0, rel=1e-12)  # ETH's 50 / 5
    assert pool["unrealized_pnl"] == pytest.approx(50.0 - eth, rel=1e-12)


def test_close_mode_values_a_breach_at_the_close():
    # BTC's close 95 is above its liquidation price 84.21: no liquidation, every snapshot at an open or a close
    assert {s.valued_at for s in liquidated_run("close").snapshots} == {"open", "close"}
    # closing at 80, below it: the watch sees the breach at bar 2's close, and the snapshot after it is the close's
    positions = _table(positions_table, liquidated_run("close", btc_close=80.0))
    (row,) = positions.filter((pl.col("reason") == "event") & (pl.col("instrument") == ETH)
                              & (pl.col("events_applied") == positions["events_applied"].max())).to_dicts()
    assert row["valued_at"] == "close" and row["mark_price"] == 45.0
    assert positions.filter((pl.col("reason") == "event") & (pl.col("events_applied") == row["events_applied"])
                            ).height == 1  # (BTC liquidated)


@pytest.mark.parametrize("intrabar", ["path", "worst-case"])
def test_streamed_and_kept_tables_are_the_same_bytes(tmp_path, monkeypatch, intrabar):
    """`execute(keep_result=False)` values the snapshots a chunk at a time during the run (one snapshot
    per chunk here), the kept run all at once after it: the same files, moments included."""
    from xmargin.output import writer

    monkeypatch.setattr(writer, "SNAPSHOT_ROWS", 1)
    folders = []
    for keep in (True, False):
        result = liquidated_run(intrabar)  # (the feed and catalog of a fresh run)
        options = dict(feed=result.feed, catalog=result.catalog, strategy=Scripted(
            {0: [cmd.PlaceOrder.market(BTC, 1.0), cmd.PlaceOrder.market(ETH, -1.0)]}))
        folders.append(execute(result.config, out=tmp_path, run_id=f"{intrabar}-{keep}", keep_result=keep,
                               **options).path)
    for name in ("equity", "positions", "distance", "collateral"):
        assert (folders[0] / f"{name}.arrow").read_bytes() == (folders[1] / f"{name}.arrow").read_bytes(), name
    moments = set(open_run(folders[1]).equity.collect()["valued_at"])
    assert moments == {"open", "close", {"path": "far extreme", "worst-case": "adverse extreme"}[intrabar]}


def test_verify_names_tables_written_before_rows_carried_their_moment(tmp_path):
    """A run folder of run-folder schema_version 1 (every row at its bar's close) verifies, with a note
    saying so; a current one has no such note."""
    import json

    from click.testing import CliRunner

    from xmargin.cli.main import main
    from xmargin.output.writer import MANIFEST_DIGEST, manifest_digest, write_run_folder

    from test_summary_moments import long_btc_run

    folder, _ = write_run_folder(long_btc_run("cross"), out=tmp_path, run_id="long")
    note = "note: the valuation tables were written under run-folder schema_version 1"
    current = CliRunner().invoke(main, ["verify", str(folder)])
    assert current.exit_code == 0 and note not in current.output, current.output
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["schema_version"] = 1
    manifest[MANIFEST_DIGEST] = manifest_digest(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    older = CliRunner().invoke(main, ["verify", str(folder)])
    assert older.exit_code == 0 and note in older.output, older.output


def test_worst_case_values_collateral_coins_at_their_adverse_extreme():
    """Multi-asset, 0.02 BTC of collateral (BTC at 50,000) under a short of 1 ETH at 1,000. Bar 2: ETH up to
    1,300, BTC down to 48,000. `worst-case` puts every holding at its adverse extreme at point 1, as the
    margin watch valued it: the short ETH at its high, the BTC balance (a long holding) at its low. There the
    ratio crosses the 0.1 warning (maintenance 5 % x 1,300 = 65 against about 0.02 x 48,000 x haircut - 300),
    and the snapshot after the warning holds those prices."""
    rs = rules(maker_fee=0.0, taker_fee=0.0)
    built = make_catalog({"bx": VenueSpec(rs, "multi-asset", {"BTC": 0.02}, 5.0)},
                         [perp("bx", "BTC"), perp("bx", "ETH")], tables={BTC: flat_brackets(0.05, 50.0), ETH: flat_brackets(0.05, 50.0)})
    catalog = Catalog.create(built.venues, built.tradables)
    flat = [50_000.0, 1_000.0]
    feed = make_feed((BTC, ETH), [flat, flat, flat, flat], open=[flat] * 4,
                     high=[flat, flat, [50_000.0, 1_300.0], flat], low=[flat, flat, [48_000.0, 1_000.0], flat])
    strategy = Scripted({0: [cmd.PlaceOrder.market(ETH, -1.0)]})
    config = make_config(catalog, intrabar="worst-case", warning_thresholds=(0.1,))
    result = Backtest(config, feed=feed, catalog=catalog, strategy=strategy).run()
    at = T0 + 2 * HOUR + HOUR // 3
    (coin,) = _table(collateral_table, result).filter((pl.col("ns") == at) & (pl.col("asset") == "BTC")).to_dicts()
    assert (coin["reason"], coin["valued_at"]) == ("event", "adverse extreme")
    assert coin["price"] == 48_000.0 and coin["value"] == pytest.approx(0.02 * 48_000, rel=1e-12)
    (short,) = _table(positions_table, result).filter(pl.col("ns") == at).to_dicts()
    assert short["mark_price"] == 1_300.0 and short["unrealized_pnl"] == pytest.approx(-300.0, rel=1e-12)
    (pool,) = _table(equity_base_table, result).filter(pl.col("ns") == at).to_dicts()
    assert pool["maintenance_margin"] == pytest.approx(65.0, rel=1e-12) and pool["margin_ratio"] > 0.1
