"""The estimated fee to close held in maintenance margin (OKX, Bybit's Unified Trading Account) and
the bankruptcy / initial-margin formulas that carry it, held to the venues' documented formulas and
worked examples (each cites its source)."""

from __future__ import annotations

import numpy as np
import pytest

from xmargin.ledger import events as ev
from xmargin.ledger.commands import PlaceOrder
from xmargin.margin import formulas as margin
from xmargin.venues.rules import load_rules
from helpers_feed import VenueSpec, brackets, make_catalog, make_feed, of_type, perp, run


def test_okx_rule_set_holds_the_taker_fee_in_every_tier():
    """OKX 'Tiered maintenance margin ratio rules' (2025-05-16, mirror): liquidation when equity <=
    maintenance margin + liquidation fees; isolated margin ratio = (margin + UPL) / (|Q| x mark x
    (MMR + fee))."""
    rules = load_rules("okx-swap")
    assert rules.fee_to_close == rules.taker_fee == 0.0005
    table = rules.brackets_for("BTCUSDT")
    published = rules.default_brackets
    assert table.brackets[0].maintenance_margin_rate == pytest.approx(published.brackets[0].maintenance_margin_rate
                                                                      + 0.0005)
    assert margin.maintenance_margin(100_000.0, table) == pytest.approx(100_000.0 * (0.01 + 0.0005))
    assert load_rules("binance-usdm").fee_to_close == 0.0  # Binance's maintenance has no close fee


@pytest.mark.parametrize("quantity", [1.0, -1.0])
def test_okx_isolated_liquidation_price_is_the_documented_one(quantity):
    """Solving OKX's margin ratio = 1 for a linear contract: LP_long = (EP - M/Q) / (1 - MMR - fee),
    LP_short = (EP + M/Q) / (1 + MMR + fee) (the same shape as Gate's and freqtrade's formulas)."""
    table = load_rules("okx-swap").brackets_for("BTCUSDT")
    entry, isolated_margin, mmr, fee = 60_000.0, 6_000.0, 0.01, 0.0005
    expected = ((entry - isolated_margin) / (1 - mmr - fee) if quantity > 0
                else (entry + isolated_margin) / (1 + mmr + fee))
    assert margin.isolated_liquidation_price(quantity, entry, isolated_margin, table) == pytest.approx(expected)


def test_okx_isolated_position_is_liquidated_at_that_price_in_a_run():
    instrument = perp("okx", "BTC", lot_size=0.001)
    catalog = make_catalog({"okx": VenueSpec(load_rules("okx-swap"), margin_mode="isolated",
                                             collateral={"USDT": 10_000.0})}, [instrument])
    closes = list(np.linspace(60_000.0, 50_000.0, 21))
    feed = make_feed([instrument.key], closes)
    result, _ = run(catalog, feed, {0: [PlaceOrder.market(instrument.key, 1.0, leverage=10)]})
    (fill,) = of_type(result.events, ev.OrderFilled)
    (liquidated,) = of_type(result.events, ev.PositionLiquidated)
    expected = (fill.price - fill.margin_delta) / (1 - 0.01 - 0.0005)
    assert liquidated.trigger_price == pytest.approx(expected, rel=1e-9)


def test_bybit_inverse_bankruptcy_price_with_the_fee_to_close():
    """help.bybit.com/hc/en-us/articles/360039261334 (inverse, cross; PRINTED): balance 0.5 BTC, long
    10,000 contracts at 8,000, taker 0.075 %: bankruptcy = 1.00075 x 10,000 / (10,000/8,000 + 0.5) =
    5,718.57. (The page's liquidation price, 5,739.50, does not follow from its own formula: 5,739.08;
    it is not asserted.)"""
    assert margin.contract_bankruptcy_price(10_000, 8_000.0, 0.5, True, 1.0, 0.00075) == pytest.approx(5_718.57,
                                                                                                          abs=5e-3)
    # without the fee: where equity is exactly zero
    assert margin.contract_bankruptcy_price(10_000, 8_000.0, 0.5, True, 1.0) == pytest.approx(10_000 / 1.75)


def test_linear_bankruptcy_price_leaves_the_fee_to_close():
    """At the bankruptcy price with a close fee f, margin + PnL = f x |Q| x price (derived)."""
    for quantity in (2.0, -2.0):
        price = margin.contract_bankruptcy_price(quantity, 50_000.0, 10_000.0, fee_to_close=0.00055)
        assert 10_000.0 + quantity * (price - 50_000.0) == pytest.approx(0.00055 * abs(quantity) * price)


def test_bybit_usdc_initial_margin_with_estimated_fee_to_close():
    """Bybit 'Initial Margin Calculation (USDC Perpetual & Futures)', 2025-09-02 (mirror; PRINTED): long
    0.5 BTC, entry 50,000, 10x, mark 50,500, taker 0.055 %: IM 0.5 x 50,500 / 10 = 2,525; fee to close
    0.5 x 50,000 x (1 - 0.1) x 0.055 % = 12.375; IM shown 2,537.375. Short: x (1 + 0.1) -> 15.125 (DERIVED)."""
    fee = margin.close_fee_at_bankruptcy(0.5, 50_000.0, 10.0, 0.00055)
    assert fee == pytest.approx(12.375)
    assert margin.initial_margin(0.5 * 50_500.0, 10.0) + fee == pytest.approx(2_537.375)
    assert margin.close_fee_at_bankruptcy(-0.5, 50_000.0, 10.0, 0.00055) == pytest.approx(15.125)


def test_bybit_legacy_order_cost_example():
    """mobie.io FAQ quoting Bybit (third-party; PRINTED): long 1 BTC at 10,000, 50x, taker 0.075 %: IM 200,
    open fee 7.5, bankruptcy 9,800, close fee 7.35, order cost 214.85."""
    close = margin.close_fee_at_bankruptcy(1.0, 10_000.0, 50.0, 0.00075)
    assert close == pytest.approx(7.35)
    assert margin.initial_margin(10_000.0, 50.0) + 10_000.0 * 0.00075 + close == pytest.approx(214.85)


def test_bybit_classic_isolated_liquidation_price_without_fee():
    """testnet.bybit.com 'Liquidation Price (USDT Contract)' (PRINTED): long 1 BTC at 20,000, 50x, MMR
    0.5 %: IM 400, MM 100, LP = 20,000 - (400 - 100) = 19,700 (Bybit classic: no fee term)."""
    table = brackets((0, None, 100, 0.005, 0.0))
    assert margin.isolated_liquidation_price_entry_mm(1.0, 20_000.0, 400.0, table) == pytest.approx(19_700.0)
