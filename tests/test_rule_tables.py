"""Tier tables and dated rule variants as published (sources in the rule files; the rows pinned
here are the printed ones)."""

from __future__ import annotations

import pytest

from xmargin.config import parse_config
from xmargin.errors import ConfigError, RulesError
from xmargin.margin import formulas as margin
from xmargin.venues.rules import load_rules
from helpers_feed import VenueSpec, make_catalog, perp

ROOT_DATASET = "datasets/sample"
MONTH_2024_10 = 1_727_740_800 * 10**9
MONTH_2026_12 = 1_796_083_200 * 10**9


def test_bybit_btcusdt_has_the_20_published_tiers():
    """Bybit 'Margin Parameters' (mirror bybitx.global/pt-PT, about 2024-25): tier 1 2,000,000 / 100x /
    0.50 % / 0; tier 9 10,000,000 / 45x / 1.30 % / 46,000; tier 20 80,000,000 / 14x / 4.50 % / 1,482,000."""
    table = load_rules("bybit-linear").brackets_for("BTCUSDT")
    rows = [(b.notional_floor, b.max_leverage, b.maintenance_margin_rate, b.maintenance_amount) for b in table.brackets]
    assert len(rows) == 20
    assert rows[0] == (0.0, 100.0, 0.005, 0.0)
    assert rows[8] == (8_500_000.0, 45.0, 0.013, pytest.approx(46_000.0))
    assert rows[19] == (75_000_000.0, 14.0, 0.045, pytest.approx(1_482_000.0))
    # MM = PV x MMR - deduction, continuous at the tier boundaries
    assert margin.maintenance_margin(3_000_000.0, table) == pytest.approx(3_000_000 * 0.0063 - 3_020)
    assert margin.maintenance_margin(2_600_000.0, table) == pytest.approx(2_600_000 * 0.0056 - 1_200)


def test_hyperliquid_btc_margin_tiers():
    """Hyperliquid docs (margin-tiers): BTC 40x up to 150M USDC, 20x above; MM = half the initial margin at
    max leverage: 1.25 %, then 2.5 % with deduction 150M x 1.25 % = 1,875,000."""
    table = load_rules("hyperliquid").brackets_for("BTCUSDC")
    rows = [(b.notional_floor, b.max_leverage, b.maintenance_margin_rate, b.maintenance_amount) for b in table.brackets]
    assert rows == [(0.0, 40.0, 0.0125, 0.0), (150_000_000.0, 20.0, 0.025, pytest.approx(1_875_000.0))]


def test_binance_multi_assets_ratios_are_dated_variants():
    """The 2021 table (BUSD 1.0, SOL 0.9, auto-exchange at -10,000) stays for earlier runs; the table as it
    stands (BTC/ETH/BNB 0.95, FDUSD 0.989, BUSD gone, -5,000 for Regular/VIP1) is in force from 2026-11."""
    rules = load_rules("binance-usdm")
    old, new = rules.in_force(MONTH_2024_10), rules.in_force(MONTH_2026_12)
    assert old is rules and old.collateral_ratios["BUSD"] == 1.0 and old.auto_exchange.threshold_usd == -10_000
    assert new.variant_name == "binance-multi-assets-2026-11"
    assert new.collateral_ratios["FDUSD"] == 0.989 and "BUSD" not in new.collateral_ratios
    assert new.auto_exchange.threshold_usd == -5_000
    assert rules.in_force(MONTH_2024_10, "binance-multi-assets-2026-11").variant_name == new.variant_name
    assert rules.in_force(MONTH_2026_12, "binance-usdm") is rules  # the file's own tables, by name
    with pytest.raises(RulesError, match="rules variant 'binance-2019'"):
        rules.in_force(None, "binance-2019")


def test_a_run_takes_the_variant_in_force_at_its_first_bar_unless_the_config_names_one():
    catalog = make_catalog({"binance": VenueSpec(load_rules("binance-usdm"))}, [perp("binance", "BTC")])
    assert catalog.with_rules_in_force({}, MONTH_2024_10).venues["binance"].rules.variant_name == ""
    later = catalog.with_rules_in_force({}, MONTH_2026_12).venues["binance"].rules
    assert later.variant_name == "binance-multi-assets-2026-11"
    named = catalog.with_rules_in_force({"binance": "binance-multi-assets-2026-11"}, MONTH_2024_10)
    assert named.venues["binance"].rules.collateral_ratios["FDUSD"] == 0.989


def test_config_names_an_unknown_variant():
    data = {"run": {"dataset": ROOT_DATASET, "strategy": "hold"},
            "exchanges": {"binance": {"rules": "binance-usdm", "collateral": {"USDT": 1000},
                                      "rules_variant": "binance-2019"}}}
    with pytest.raises(ConfigError, match=r"exchanges.binance.rules variant 'binance-2019'"):
        parse_config(data)
