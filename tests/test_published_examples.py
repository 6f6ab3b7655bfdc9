"""The exchanges' own worked examples, reproduced through xmargin's public valuation API.

Every case below states an example as its venue printed it (inputs, result, the page and the day it
was read) and checks what the engine itself reports for that book:
`xmargin.margin.accounting.position_metrics` / `pool_metrics` (the numbers of the positions and
equity tables) for margins, PnL and liquidation prices, and a run (`Backtest`) for fees and
realised PnL. Nothing here recomputes the venue's formula in the test; the printed figure is the
expectation, with a tolerance that matches how the page rounds (said at each case).

Pages read 2026-11-29 through the stored-pages search (mirrors marked as such).
What xmargin does not model is said where it matters: hedge mode (Binance's formula has LONG and
SHORT terms for one symbol; xmargin keeps one net position per instrument, Binance's one-way mode).
"""

from __future__ import annotations

import attrs
import numpy as np
import pytest

from xmargin.ledger import events as ev
from xmargin.ledger.commands import PlaceOrder
from xmargin.ledger.state import Account, Position
from xmargin.margin.accounting import pool_metrics, position_metrics
from xmargin.venues.instruments import Instrument
from xmargin.venues.rules import load_rules
from helpers_feed import VenueSpec, brackets, make_catalog, make_feed, of_type, perp, run


def inverse_perp(exchange: str, base: str, contract_size: float) -> Instrument:
    """A coin-margined perpetual: `contract_size` USD per contract, settled in `base`."""
    return Instrument(exchange=exchange, symbol=f"{base}/USD:{base}", market="perp", base=base, quote="USD",
                      settle=base, contract="inverse", contract_size=contract_size, funding_interval_hours=8.0,
                      lot_size=1.0)


def account(exchange: str, mode: str, balances: dict, positions, leverage: dict | None = None) -> Account:
    """An account holding `positions` [(instrument, quantity, entry, margin_mode, isolated_margin)]."""
    held = {}
    for instrument, quantity, entry, margin_mode, isolated_margin in positions:
        held[instrument.key] = Position(instrument.key, quantity, entry, margin_mode, isolated_margin,
                                        instrument.settle)
    return attrs.evolve(Account.empty(exchange, mode), balances=dict(balances), positions=held,
                        leverage=dict(leverage or {}), margin_modes={k: p.margin_mode for k, p in held.items()})


def metrics(account_, catalog, marks) -> dict:
    return {m.instrument: m for m in position_metrics(account_, catalog, np.array(marks, float))}


# ------------------------------------------------------------------------------ Binance USDⓈ-M
# "How to Calculate Liquidation Price of USDⓈ-M Futures Contracts",
# https://www.binance.com/en/support/faq/b3c689c1f50a44cabb3a84e663b81d93 (formula page; its worked
# example's numbers as carried into freqtrade/freqtrade tests/exchange/test_binance.py,
# test_liquidation_price_binance, "From calc example"): wallet balance 1,535,443.01 USDT;
# BTCUSDT long 109.488 at 32,481.98, mark 31,967.27, bracket 2.5 % / cum 16,300;
# ETHUSDT long 3,683.979 at 1,456.84, mark 1,335.18, bracket 10 % / cum 135,365.
# Printed: cross LP ETH 1,153.26 and BTC 26,316.89; isolated (the wallet as the position's margin)
# ETH 1,114.78 and BTC 18,778.73; TMM1 = 71,200.81144 (BTC), UPNL1 = -56,354.57 (BTC).
# Prices printed to 2 dp: asserted to +-0.005 (half a cent).
WB = 1_535_443.01
ETH_BOOK = (3_683.979, 1_456.84, 1_335.18, brackets((0, None, 10, 0.10, 135_365.0)))
BTC_BOOK = (109.488, 32_481.98, 31_967.27, brackets((0, None, 10, 0.025, 16_300.0)))


def _binance_faq(mode: str):
    eth, btc = perp("binance", "ETH"), perp("binance", "BTC")
    catalog = make_catalog({"binance": VenueSpec(load_rules("binance-usdm"), margin_mode="cross", collateral={})},
                           [eth, btc], tables={eth.key: ETH_BOOK[3], btc.key: BTC_BOOK[3]})
    isolated = WB if mode == "isolated" else 0.0
    book = account("binance", "cross", {"USDT": 0.0 if mode == "isolated" else WB},
                   [(eth, ETH_BOOK[0], ETH_BOOK[1], mode, isolated), (btc, BTC_BOOK[0], BTC_BOOK[1], mode, isolated)],
                   leverage={eth.key: 10.0, btc.key: 10.0})
    return eth, btc, metrics(book, catalog, [ETH_BOOK[2], BTC_BOOK[2]]), book, catalog


def test_binance_usdm_faq_cross_two_positions_one_way():
    """One-way mode (the formula's BOTH terms; the hedge-mode LONG/SHORT terms are not modelled)."""
    eth, btc, found, book, catalog = _binance_faq("cross")
    assert found[eth.key].liquidation_price == pytest.approx(1_153.26, abs=0.005)
    assert found[btc.key].liquidation_price == pytest.approx(26_316.89, abs=0.005)
    # the other contract's terms, as printed in the example (TMM1 to 5 dp, UPNL1 to 2 dp)
    assert found[btc.key].maintenance_margin == pytest.approx(71_200.81144, abs=5e-6)
    assert found[btc.key].unrealized_pnl == pytest.approx(-56_354.57, abs=0.005)
    # the pool: margin ratio = total maintenance / margin balance (Binance's definition)
    (pool,) = pool_metrics(book, catalog, np.array([ETH_BOOK[2], BTC_BOOK[2]]), np.array([ETH_BOOK[2], BTC_BOOK[2]])
                           ).values()
    assert pool.margin_balance == pytest.approx(WB + found[eth.key].unrealized_pnl + found[btc.key].unrealized_pnl)
    assert pool.margin_ratio == pytest.approx((found[eth.key].maintenance_margin + found[btc.key].maintenance_margin)
                                              / pool.margin_balance)


def test_binance_usdm_faq_isolated():
    eth, btc, found, _, _ = _binance_faq("isolated")
    assert found[eth.key].liquidation_price == pytest.approx(1_114.78, abs=0.005)
    assert found[btc.key].liquidation_price == pytest.approx(18_778.73, abs=0.005)
