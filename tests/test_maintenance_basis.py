"""The same isolated short on real prices, liquidated per each exchange's documented formula.

Book: short 30,000 USDT of BTC perp, isolated at 20x, 2024-11-01..12-01 (BTC rallied from ~70k to
~99k, so the short is liquidated). Binance (binance-usdm) takes maintenance on the position's value
at the mark; Bybit (bybit-linear, `maintenance_basis = "entry"`) on its entry value, and liquidates
when the mark reaches LP = entry - side x (IM - MM) / size (Bybit help "Liquidation Price (USDT
Contract)"). The expected prices are computed here from the fill, by those formulas.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from xmargin.ledger import events as ev
from xmargin.config import parse_config
from xmargin.sim.loop import run_backtest

ROOT = Path(__file__).resolve().parents[1]
BTC = "binance:BTC/USDT:USDT"


def run(rules):
    return run_backtest(parse_config({
        "run": {"dataset": str(ROOT / "datasets" / "sample"), "strategy": "hold", "start": "2024-11-01",
                "end": "2024-12-01", "slippage_bps": 0.0},
        "strategy": {"params": {"positions": {BTC: -30000}, "margin_modes": {BTC: "isolated"}, "leverage": {BTC: 20}}},
        "exchanges": {"binance": {"rules": rules, "collateral": {"USDT": 20000}}}}))


def liquidation_of(result):
    (fill,) = [e for e in result.events if isinstance(e, ev.OrderFilled)]
    (liquidated,) = [e for e in result.events if isinstance(e, ev.PositionLiquidated)]
    funding = sum(e.amount for e in result.events if isinstance(e, ev.FundingSettled) and e.ts < liquidated.ts)
    return fill, liquidated, fill.margin_delta + funding


def test_binance_isolated_short_triggers_at_its_formula_with_maintenance_at_the_mark():
    fill, liquidated, margin = liquidation_of(run("binance-usdm"))
    q, entry = abs(fill.quantity), fill.price
    # BTCUSDT bracket 1 (0-50,000 notional): 0.4 %, cum 0 (2024-10-24 snapshot)
    rate, cum = 0.004, 0.0
    # short: LP = (WB + cum + q x EP) / (q x MMR + q)
    expected = (margin + cum + q * entry) / (q * rate + q)
    assert liquidated.trigger_price == pytest.approx(expected, rel=1e-12)
    assert q * expected < 50_000  # the bracket used is the one holding the liquidation notional


def test_bybit_isolated_short_triggers_at_its_formula_with_maintenance_at_entry():
    fill, liquidated, margin = liquidation_of(run("bybit-linear"))
    q, entry = abs(fill.quantity), fill.price
    maintenance_at_entry = 0.005 * q * entry  # BTCUSDT risk limit 1: 0.5 %
    expected = entry + (margin - maintenance_at_entry) / q  # side = -1
    assert liquidated.trigger_price == pytest.approx(expected, rel=1e-12)


def test_maintenance_basis_is_rule_data_and_only_moves_the_trigger(tmp_path):
    """A user rule file identical to bybit-linear but for `maintenance_basis = "mark"`: a short's
    notional grows as the price rises, so maintenance at the mark exceeds maintenance at entry and
    the mark-based trigger comes first (lower)."""
    import json

    data = json.loads((ROOT / "engine" / "venues" / "rules" / "data" / "bybit-linear.json").read_text())
    data["liquidation"]["maintenance_basis"] = "mark"
    custom = tmp_path / "bybit-mark.json"
    custom.write_text(json.dumps(data))
    fill, at_mark, margin = liquidation_of(run(str(custom)))
    _, at_entry, _ = liquidation_of(run("bybit-linear"))
    q, entry = abs(fill.quantity), fill.price
    assert at_mark.trigger_price == pytest.approx((margin + q * entry) / (q * 0.005 + q), rel=1e-12)
    assert at_mark.trigger_price < at_entry.trigger_price and at_mark.ts <= at_entry.ts


def test_a_bad_maintenance_basis_is_a_clear_rules_error(tmp_path):
    import json

    from xmargin.errors import RulesError
    from xmargin.venues.rules import load_rules

    data = json.loads((ROOT / "engine" / "venues" / "rules" / "data" / "bybit-linear.json").read_text())
    data["liquidation"]["maintenance_basis"] = "midpoint"
    custom = tmp_path / "bad.json"
    custom.write_text(json.dumps(data))
    with pytest.raises(RulesError, match="bad.json: liquidation: .*maintenance_basis 'mark' or 'entry'"):
        load_rules(str(custom))


def test_distance_to_liquidation_follows_the_entry_basis():
    """At every sample before the liquidation, the short's distance is LP / mark - 1 with LP its
    Bybit (entry-margined) liquidation price from the positions table."""
    import polars as pl

    from xmargin.output.snapshots import positions_table
    from xmargin.analysis.distance import run_distances

    result = run("bybit-linear")
    positions = pl.from_arrow(positions_table(result)).filter(pl.col("reason") == "sample")
    distance = run_distances(result).filter((pl.col("underlying") == "all") & (pl.col("reason") == "sample"))
    joined = positions.join(distance, on=["ts", "reason", "exchange", "events_applied"])
    assert joined.height > 100
    expected = joined["liquidation_price"] / joined["mark_price"] - 1
    assert joined["liquidation_distance"].to_list() == pytest.approx(expected.to_list(), rel=1e-9, abs=1e-12)
