"""Liquidating a leg settled in its coin inside a multi-asset (USD) pool: the insurance fund and the
fee cap count the unit's USD equity in the leg's coin.

The set-up of tests/test_compare_usd.py's multi-asset case with 20,000 USDT only: ax (binance-usdm
rules, multi-asset) is long 500 contracts of the inverse perp BTC/USD:BTC (100 USD each, settled in
BTC) from 50,000; USDT counts at its collateral ratio 0.9999 (engine/venues/rules/data/
binance-usdm.json): 19,998 USD. At a BTC price p the leg's PnL is 500 x 100 x (1/50,000 - 1/p) BTC,
at p USD each, so the pool's equity is 19,998 + 50,000 x (p / 50,000 - 1) = p - 30,002 USD. The
liquidation is asked at marks p (the unit valued at those prices: `breaches_at`, as the engine does
at a gapped open), on the run's final ledger (the position still open).

On main the USD amounts were booked as BTC: a deficit of 10,002 USD became 10,002 BTC credited by
the insurance fund, and the fee cap compared a BTC fee with USD equity.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_compare_usd import write_config

from xmargin.config import load_config
from xmargin.ledger import events as ev
from xmargin.margin.liquidation import liquidation_events
from xmargin.margin.modes import account_units
from xmargin.margin.risk import breaches_at
from xmargin.sim.loop import Backtest

INVERSE = "ax:BTC/USD:BTC"


def liquidated_at(tmp_path, price: float, liquidation: dict | None = None) -> list:
    """The events of liquidating ax's pool at BTC = `price` (`liquidation`: changes to the rule set's
    liquidation section)."""
    path = write_config(tmp_path, "binance-usdm", "multi-asset", "USDT = 20000")
    if liquidation:
        rules = tmp_path / "binance-usdm-no-fees.json"
        data = json.loads(rules.read_text())
        data["liquidation"].update(liquidation)
        rules.write_text(json.dumps(data))
    result = Backtest(load_config(path)).run()
    account = result.ledger.accounts["ax"]
    assert account.positions[INVERSE].quantity == 500
    assert account.balances.get("USDT") == 20_000 and not account.balances.get("BTC")
    catalog = result.catalog
    marks = np.full(len(result.feed.keys), 40_000.0)
    marks[catalog.tradables[INVERSE].column] = price
    ts = int(result.feed.ts[-1])
    (breach,) = breaches_at(account_units(catalog, account, marks, ts), marks, len(result.feed.ts) - 1,
                            np.array([0.7, 0.9]))
    return liquidation_events(result.ledger, catalog, breach, ts)


def test_the_insurance_fund_covers_a_usd_deficit_in_the_legs_coin(tmp_path):
    # at 20,000 the pool holds 20,000 - 30,002 = -10,002 USD: the position closes at 20,000 (realised
    # 500 x 100 x (1/50,000 - 1/20,000) = -1.5 BTC) and the fund credits 10,002 USD in BTC at 20,000
    closed, fund = liquidated_at(tmp_path, 20_000.0)
    assert isinstance(closed, ev.PositionLiquidated) and closed.price == 20_000 and closed.realized_pnl == -1.5
    assert isinstance(fund, ev.InsuranceFundUsed) and fund.asset == "BTC" and fund.credited
    assert fund.amount == pytest.approx(10_002 / 20_000, rel=1e-12)  # main: 10,002 (BTC)


def test_the_liquidation_fee_is_capped_by_the_usd_equity_left_in_the_legs_coin(tmp_path):
    # policy full, filled at the trigger, fee 5 % of the closed notional: at 31,000 the pool holds
    # 31,000 - 30,002 = 998 USD; the fee would be 5 % x 50,000 / 31,000 BTC (2,500 USD), capped at
    # the 998 USD left = 998 / 31,000 BTC (main: not capped, 0.0806 BTC against "998")
    (closed,) = liquidated_at(tmp_path, 31_000.0, {"policy": "full", "fill": "trigger", "fee_rate": 0.05})
    assert closed.quantity == -500 and closed.price == 31_000
    assert closed.realized_pnl == pytest.approx(50_000 * (1 / 50_000 - 1 / 31_000), rel=1e-12)
    assert closed.fee == pytest.approx(998 / 31_000, rel=1e-9)
