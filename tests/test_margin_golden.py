"""Worked examples for xmargin.margin.formulas, each with its source.

Numbers from third parties are cited by repository + path or URL; hand-derived numbers show the
derivation in the comment. Binance brackets of the built-in rule set are the 2024-10-24 snapshot
(freqtrade/freqtrade commit c9ae5e1e9ff2, freqtrade/exchange/binance_leverage_tiers.json).
"""

from __future__ import annotations

import math

import pytest

from xmargin.margin import formulas as m
from xmargin.venues.rules import load_rules
from xmargin.venues.rules.ruleset import Bracket, BracketTable


def one_bracket(rate: float, amount: float, lev: float = 1.0) -> BracketTable:
    """A table whose single bracket carries an example's (MMR, maintenance amount) at every notional.

    Used where a source states the bracket parameters at the liquidation notional but not the whole
    table; the liquidation formula only ever uses the bracket at the liquidation notional.
    """
    return BracketTable.from_brackets([Bracket(0.0, math.inf, lev, rate, amount)])


def table(rows) -> BracketTable:
    """[(floor, cap, max_leverage, rate, amount)] -> BracketTable (cap None = open)."""
    return BracketTable.from_brackets(
        [Bracket(float(f), math.inf if c is None else float(c), float(l), r, float(a)) for f, c, l, r, a in rows])


@pytest.fixture(scope="module")
def binance():
    return load_rules("binance-usdm")


# ----------------------------------------------------------------------------- Binance / freqtrade
# Source for 1-4: freqtrade/freqtrade tests/exchange/test_binance.py, test_liquidation_price_binance
# (parameters marked "From calc example": Binance's USDⓈ-M liquidation-price FAQ example,
# https://www.binance.com/en/support/faq/b3c689c1f50a44cabb3a84e663b81d93). Expected prices rounded to 2 dp.
ETH = dict(quantity=3683.979, entry=1456.84, mark=1335.18, mmr=0.10, cum=135365.0)
BTC = dict(quantity=109.488, entry=32481.98, mark=31967.27, mmr=0.025, cum=16300.0)
WB = 1535443.01


def test_01_binance_isolated_long_eth_freqtrade():
    lp = m.isolated_liquidation_price(ETH["quantity"], ETH["entry"], WB, one_bracket(ETH["mmr"], ETH["cum"]))
    assert round(lp, 2) == 1114.78


def test_02_binance_isolated_long_btc_freqtrade():
    lp = m.isolated_liquidation_price(BTC["quantity"], BTC["entry"], WB, one_bracket(BTC["mmr"], BTC["cum"]))
    assert round(lp, 2) == 18778.73


def test_03_binance_cross_long_eth_with_btc_open_freqtrade():
    # TMM1 = MM of BTCUSDT at its mark = 109.488 x 31967.27 x 2.5% - 16300 = 71200.81144 (Binance example),
    # UPNL1 = (31967.27 - 32481.98) x 109.488 = -56354.57
    other = one_bracket(BTC["mmr"], BTC["cum"])
    tmm1 = m.maintenance_margin(BTC["quantity"] * BTC["mark"], other)
    upnl1 = m.unrealized_pnl(BTC["quantity"], BTC["entry"], BTC["mark"])
    assert tmm1 == pytest.approx(71200.81144, abs=1e-3)
    assert round(upnl1, 2) == -56354.57
    lp = m.cross_liquidation_price(ETH["quantity"], ETH["entry"], WB, one_bracket(ETH["mmr"], ETH["cum"]),
                                   other_maintenance_margin=tmm1, other_unrealized_pnl=upnl1)
    assert round(lp, 2) == 1153.26


def test_04_binance_cross_long_btc_with_eth_open_freqtrade():
    # TMM1 = 3683.979 x 1335.18 x 10% - 135365 = 356512.508 ; UPNL1 = (1335.18 - 1456.84) x 3683.979 = -448192.89
    other = one_bracket(ETH["mmr"], ETH["cum"])
    tmm1 = m.maintenance_margin(ETH["quantity"] * ETH["mark"], other)
    upnl1 = m.unrealized_pnl(ETH["quantity"], ETH["entry"], ETH["mark"])
    assert tmm1 == pytest.approx(356512.508, abs=1e-2)
    assert round(upnl1, 2) == -448192.89
    lp = m.cross_liquidation_price(BTC["quantity"], BTC["entry"], WB, one_bracket(BTC["mmr"], BTC["cum"]),
                                   other_maintenance_margin=tmm1, other_unrealized_pnl=upnl1)
    assert round(lp, 2) == 26316.89


def test_05_binance_faq_maintenance_amount_recurrence():
    # Binance USDⓈ-M FAQ (b3c689c1f50a44cabb3a84e663b81d93): "Maintenance Amount on Level 3
    # = 250,000 x (1% - 0.5%) + 50 USDT = 1,300 USDT".
    assert m.next_maintenance_amount(250_000, 0.01, 0.005, 50.0) == pytest.approx(1300.0)
    # COIN-M FAQ (ceccfcfb4e3a45e3b48b0b1bb1a8ae46): "BTCUSD Level 5 = 50 BTC x (5% - 2.5%) + 0.56 BTC = 1.81 BTC".
    assert m.next_maintenance_amount(50, 0.05, 0.025, 0.56) == pytest.approx(1.81)


def test_06_freqtrade_binance_tiers_ada_busd(binance):
    # Tiers from freqtrade/freqtrade tests/exchange/test_binance.py, test_fill_leverage_tiers_binance
    # (ADA/BUSD, Binance API shape). Hand-derived: 750,000 is in [500k, 1M): 10%, cum 27,500, 5x
    # -> MM = 750,000 x 0.10 - 27,500 = 47,500 ; 100,000 is the floor of tier 2: 100,000 x 5% - 2,500 = 2,500
    # = 100,000 x 2.5% - 0 (continuous).
    ada = table([(0, 100_000, 20, 0.025, 0.0), (100_000, 500_000, 10, 0.05, 2500.0),
                 (500_000, 1_000_000, 5, 0.1, 27500.0), (1_000_000, 2_000_000, 3, 0.15, 77500.0),
                 (2_000_000, 5_000_000, 2, 0.25, 277500.0), (5_000_000, 30_000_000, 1, 0.5, 1527500.0)])
    assert m.maintenance_margin(750_000, ada) == pytest.approx(47_500.0)
    assert m.max_leverage(750_000, ada) == 5
    assert m.maintenance_margin(100_000, ada) == pytest.approx(2_500.0)
    assert m.maintenance_amounts([b.notional_floor for b in ada.brackets],
                                 [b.maintenance_margin_rate for b in ada.brackets]) == pytest.approx(
        [0.0, 2500.0, 27500.0, 77500.0, 277500.0, 1527500.0])


# ----------------------------------------------------------------------------- Binance, 349-symbol brackets
def test_07_mm_btcusdt_bracket3(binance):
    # BTCUSDT bracket 3: [600k, 3M) 75x, MMR 0.65 %, cum 950. MM(1,000,000) = 6,500 - 950 = 5,550.
    t = binance.brackets_for("BTCUSDT")
    assert m.maintenance_margin(1_000_000, t) == pytest.approx(5_550.0)
    assert m.max_leverage(1_000_000, t) == 75
    # boundary 600,000: bracket 2 gives 600,000 x 0.5% - 50 = 2,950; bracket 3 gives 3,900 - 950 = 2,950
    assert m.maintenance_margin(600_000, t) == pytest.approx(2_950.0)


def test_08_mm_ethusdt_bracket5_and_vectorised(binance):
    # ETHUSDT bracket 5: [12M, 50M) 25x, 2 %, cum 131,450: MM(20M) = 400,000 - 131,450 = 268,550.
    # SOLUSDT bracket 5: [4M, 8M) 20x, 2.5 %, cum 28,380: MM(5M) = 125,000 - 28,380 = 96,620.
    import numpy as np

    eth = binance.brackets_for("ETHUSDT")
    assert m.maintenance_margin(20_000_000, eth) == pytest.approx(268_550.0)
    got = m.maintenance_margin_array(np.array([20_000_000.0, 40_000.0]), eth)
    # 40,000 in bracket 1: 0.4 % -> 160
    assert got.tolist() == pytest.approx([268_550.0, 160.0])
    sol = binance.brackets_for("SOLUSDT")
    assert m.maintenance_margin(5_000_000, sol) == pytest.approx(96_620.0)
    assert m.effective_leverage(50, 5_000_000, sol) == 20


def test_09_binance_isolated_short_btcusdt(binance):
    # Hand-derived with Binance's formula and the BTCUSDT table: short 10 BTC at 60,000 with 20x
    # (isolated margin 30,000). Entry notional 600,000 -> bracket 3 (0.65 %, cum 950):
    # LP = (30,000 + 950 + 10 x 60,000) / (10 x 0.0065 + 10) = 630,950 / 10.065 = 62,687.53;
    # notional at LP 626,875 is in [600k, 3M): consistent.
    lp = m.isolated_liquidation_price(-10, 60_000, 30_000, binance.brackets_for("BTCUSDT"))
    assert lp == pytest.approx(630_950 / 10.065)
    assert round(lp, 2) == 62687.53


def test_10_binance_isolated_long_bracket_change(binance):
    # Binance FAQ note: if the notional at the liquidation price is in another bracket, recompute with
    # that bracket. Long 10 BTC at 61,000, isolated margin 30,500 (20x). Entry notional 610,000 ->
    # bracket 3: LP = (30,500 + 950 - 610,000) / (0.065 - 10) = 58,233.52, notional 582,335 < 600k ->
    # bracket 2 (0.5 %, cum 50): LP = (30,500 + 50 - 610,000) / (0.05 - 10) = 579,450 / 9.95 = 58,236.18,
    # notional 582,362 in [50k, 600k): consistent.
    lp = m.isolated_liquidation_price(10, 61_000, 30_500, binance.brackets_for("BTCUSDT"))
    assert lp == pytest.approx(579_450 / 9.95)
    assert round(lp, 2) == 58236.18


def test_11_binance_cross_short_ethusdt(binance):
    # Hand-derived: cross account, WB 50,000, other positions MM 1,000 and UPNL -2,000; short 100 ETH at
    # 2,500 (notional 250,000 -> ETHUSDT bracket 2: 0.5 %, cum 50):
    # LP = (50,000 - 1,000 - 2,000 + 50 + 250,000) / (100 x 0.005 + 100) = 297,050 / 100.5 = 2,955.72;
    # notional 295,572 in [50k, 600k): consistent.
    lp = m.cross_liquidation_price(-100, 2_500, 50_000, binance.brackets_for("ETHUSDT"),
                                   other_maintenance_margin=1_000, other_unrealized_pnl=-2_000)
    assert round(lp, 2) == 2955.72


def test_12_binance_long_unliquidatable_returns_zero(binance):
    # Binance FAQ: "If the liquidation price is less than 0, the UI display would be '--'".
    # Long 1 BTC at 100 with 200 isolated margin: LP formula gives (200 + 0 - 100)/(0.004 - 1) < 0 -> 0.0.
    assert m.isolated_liquidation_price(1, 100, 200, binance.brackets_for("BTCUSDT")) == 0.0
    assert m.bankruptcy_price(1, 100, 200) == 0.0


# ----------------------------------------------------------------------------- Hyperliquid
def test_13_hyperliquid_btc_long_docs_formula():
    # Hyperliquid docs (trading/liquidations): liq_price = price - side x margin_available / position_size
    # / (1 - l x side), l = 1 / maintenance leverage (MMR), margin_available (isolated) = isolated margin
    # - maintenance margin. (Formula text read via https://www.cortex-vigil.com/wiki/liquidations and
    # https://docs.hyena.trade/trading/liquidation, which quote it; the official page excerpt seen here
    # stopped before it.) BTC tier 1: 40x -> MMR 1.25 % (trading/margin-tiers: MMR = IM at max lev / 2).
    # Long 1 BTC at 100,000, 40x: margin 2,500, MM 1,250, margin_available 1,250:
    # liq = 100,000 - 1,250 / 1 / (1 - 0.0125) = 98,734.18.
    rules = load_rules("hyperliquid")
    t = rules.brackets_for("BTCUSDC")
    assert t.brackets[0].maintenance_margin_rate == pytest.approx(0.0125)
    hl = 100_000 - 1 * (2_500 - 1_250) / 1 / (1 - 0.0125)
    lp = m.isolated_liquidation_price(1, 100_000, m.initial_margin(100_000, 40), t)
    assert lp == pytest.approx(hl) and round(lp, 2) == 98734.18


def test_14_hyperliquid_eth_short_and_tier_deduction():
    # Same docs formula, short (side -1): ETH 25x -> MMR 2 %. Short 10 ETH at 3,000, margin 1,200,
    # MM 600: liq = 3,000 + 600 / 10 / (1 + 0.02) = 3,058.82.
    # Tier 2 (>100M, 15x): MMR = 1/30, deduction = 100M x (1/30 - 0.02) = 1,333,333.33 (docs recurrence).
    t = load_rules("hyperliquid").brackets_for("ETHUSDC")
    lp = m.isolated_liquidation_price(-10, 3_000, 1_200, t)
    assert lp == pytest.approx(3_000 + 600 / 10 / 1.02) and round(lp, 2) == 3058.82
    assert t.brackets[1].maintenance_amount == pytest.approx(100e6 * (1 / 30 - 0.02), rel=1e-9)


# ----------------------------------------------------------------------------- Bybit
def test_15_bybit_isolated_long_entry_mm():
    # Bybit help "Liquidation Price (USDT Contract)" Example 1
    # (https://testnet.bybit.com/en-US/help-center/s/article/Liquidation-Price-USDT-Contract):
    # long 1 BTC at 20,000, 50x, MMR 0.5 %: IM 400, MM 100, LP = 20,000 - (400 - 100) = 19,700.
    t = load_rules("bybit-linear").brackets_for("BTCUSDT")
    assert m.isolated_liquidation_price_entry_mm(1, 20_000, m.initial_margin(20_000, 50), t) == pytest.approx(19_700)
    # The Binance-style solution (MM at the liquidation price) is close but not identical:
    # (400 - 20,000) / (0.005 - 1) = 19,698.49.
    assert m.isolated_liquidation_price(1, 20_000, 400, t) == pytest.approx(19_600 / 0.995)


def test_16_bybit_tier_illustration_mm():
    # Bybit help "Maintenance Margin (USDT Contract)", XYZUSDT illustration: tiers 0-1,000 2 %,
    # 1,000-2,000 2.5 %, 2,000-3,000 3 %, 3,000-4,000 3.5 %; "any excess beyond a tier is calculated at
    # the new tier's MMR". Hand-derived for 2,500: 1,000 x 2 % + 1,000 x 2.5 % + 500 x 3 % = 60
    # = 2,500 x 3 % - (1,000 x 0.5 % + 2,000 x 0.5 %) (deduction form).
    floors, rates = [0, 1_000, 2_000, 3_000], [0.02, 0.025, 0.03, 0.035]
    amounts = m.maintenance_amounts(floors, rates)
    xyz = table([(f, (floors + [None])[i + 1], 10, r, a) for i, (f, r, a) in enumerate(zip(floors, rates, amounts))])
    assert m.maintenance_margin(2_500, xyz) == pytest.approx(60.0)


def test_17_bybit_bankruptcy_price_long():
    # Bybit bankruptcy price example (quoted at https://mobie.io/faq/what-is-bybits-bankruptcy-price-how-can-i-calculate-it):
    # long 1 BTC at 10,000 with 50x: bankruptcy = 10,000 x (1 - 2 %) = 9,800.
    assert m.bankruptcy_price(1, 10_000, m.initial_margin(10_000, 50)) == pytest.approx(9_800)
    # short mirror (hand-derived): 10,000 x (1 + 2 %) = 10,200
    assert m.bankruptcy_price(-1, 10_000, 200) == pytest.approx(10_200)


# ----------------------------------------------------------------------------- inverse (COIN-M)
def test_18_binance_coinm_maintenance_example():
    # Binance COIN-M FAQ (ceccfcfb4e3a45e3b48b0b1bb1a8ae46): 100 BTCUSD contracts (100 USD each), mark
    # 25,000: notional = 100 x 100 / 25,000 = 0.4 BTC, level 1 (0.4 %), MM = 0.4 x 0.4 % - 0 = 0.0016 BTC.
    n = m.inverse_notional(100, 100, 25_000)
    assert n == pytest.approx(0.4)
    assert m.maintenance_margin(n, one_bracket(0.004, 0.0)) == pytest.approx(0.0016)


def test_19_inverse_isolated_long_hand_derived():
    # Binance COIN-M formula, hand-derived: long 100 contracts x 100 USD at 50,000 (0.2 BTC), isolated
    # margin 0.02 BTC (10x), MMR 0.4 %, cum 0:
    # LP = |Q| cs (MMR + 1) / (WB + cum + |Q| cs / EP) = 10,000 x 1.004 / (0.02 + 0.2) = 45,636.36.
    # Check: margin + PnL at LP = 0.02 + 10,000 (1/50,000 - 1/LP) = MM = 10,000 / LP x 0.4 %.
    t = one_bracket(0.004, 0.0)
    lp = m.inverse_isolated_liquidation_price(100, 50_000, 0.02, t, contract_size=100)
    assert round(lp, 2) == 45636.36
    equity = 0.02 + m.inverse_unrealized_pnl(100, 50_000, lp, contract_size=100)
    assert equity == pytest.approx(m.maintenance_margin(m.inverse_notional(100, 100, lp), t), rel=1e-9)


def test_20_inverse_short_fully_collateralised_is_inf():
    # Hand-derived: short 100 x 100 USD at 50,000 (0.2 BTC) with 1 BTC margin: the denominator
    # 1 + 0 - 0.2 > 0 and the numerator 10,000 x (0.004 - 1) < 0 -> no positive LP -> inf.
    assert m.inverse_isolated_liquidation_price(-100, 50_000, 1.0, one_bracket(0.004, 0.0), 100) == math.inf


def test_21_margin_ratio():
    # Definition (Binance: margin ratio = maintenance margin / margin balance; liquidation at 100 %).
    # Toobit-style worked numbers (support.toobit.com, Liquidation Introduction): MM 150, margin 300,
    # UPNL -170 -> 150 / 130 = 115.38 %.
    assert round(m.margin_ratio(150, 300 - 170) * 100, 2) == 115.38
    assert m.margin_ratio(1, 0) == math.inf
