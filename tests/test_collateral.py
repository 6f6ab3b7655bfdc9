"""Golden collateral valuation from the exchanges' published examples (shared/exchange-rules/),
rule-file validation of `collateral_ratios`, and Binance auto-exchange on a hand-built account."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import numpy as np
import pytest

from xmargin.margin.accounting import collateral_metrics, pool_metrics
from xmargin.margin.auto_exchange import conversion_events
from xmargin.margin.collateral import (collateral_value, effective_quantity,
                               haircut_amount, schedule_for, schedule_from)
from xmargin.errors import RulesError
from xmargin.venues.rules import load_rules
from xmargin.ledger.state import Account
from xmargin.venues.venue import Catalog
from helpers_feed import VenueSpec, make_catalog, perp, spot

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "exchange-rules"  # beside the repository, as in CI
# the tier tables as printed in collateral_tier_examples.json (copied so the test runs without shared/)
BYBIT_BTC = {"unit": "coin", "tiers": [
    {"from": 0, "to": 10, "ratio": 0.98}, {"from": 10, "to": 20, "ratio": 0.95},
    {"from": 20, "to": 30, "ratio": 0.9}, {"from": 30, "to": 40, "ratio": 0.85},
    {"from": 40, "to": 50, "ratio": 0.8}, {"from": 50, "to": None, "ratio": 0}]}
OKX_BETH_BEFORE = {"unit": "usd", "tiers": [
    {"from": 0, "to": 1_000_000, "ratio": 0.8}, {"from": 1_000_000, "to": 2_000_000, "ratio": 0.75},
    {"from": 2_000_000, "to": 4_000_000, "ratio": 0.5}, {"from": 4_000_000, "to": None, "ratio": 0}]}
OKX_BETH_AFTER = {"unit": "usd", "tiers": [
    {"from": 0, "to": 2_000_000, "ratio": 0.95}, {"from": 2_000_000, "to": 4_000_000, "ratio": 0.85},
    {"from": 4_000_000, "to": 8_000_000, "ratio": 0.5}, {"from": 8_000_000, "to": None, "ratio": 0}]}
BITGET_USDT = {"unit": "usd", "tiers": [
    {"from": 0, "to": 5_000_000, "ratio": 1}, {"from": 5_000_000, "to": 10_000_000, "ratio": 0.98},
    {"from": 10_000_000, "to": 20_000_000, "ratio": 0.975}]}


def test_copied_tables_match_the_shared_files():
    """The literals above are the numbers of shared/exchange-rules/collateral_tier_examples.json."""
    if not (SHARED / "collateral_tier_examples.json").is_file():
        pytest.skip("shared exchange-rules folder not available")
    data = json.loads((SHARED / "collateral_tier_examples.json").read_text())
    assert data["bybit_uta_example"]["BTC"] == BYBIT_BTC["tiers"]
    assert data["okx_BETH_discount_rate"]["before"] == OKX_BETH_BEFORE["tiers"]
    assert data["okx_BETH_discount_rate"]["after"] == OKX_BETH_AFTER["tiers"]
    assert data["bitget_usdt_example"]["USDT"] == BITGET_USDT["tiers"]
    binance = json.loads((SHARED / "binance_multi_assets_collateral_2021.json").read_text())
    ratios = {a["asset"]: a["collateral_value_ratio"] for a in binance["assets"]}
    assert load_rules("binance-usdm").collateral_ratios == ratios
    assert load_rules("bybit-linear").collateral_ratios["BTC"] == BYBIT_BTC


# ---------------------------------------------------------------------------------------- Bybit UTA (coin tiers)
@pytest.mark.parametrize("coins, expected_coins", [
    # Bybit help "Assets Collateral Value Ratio List UTA": marginal brackets in coin quantity
    (5, 5 * 0.98),
    (10, 10 * 0.98),
    (25, 10 * 0.98 + 10 * 0.95 + 5 * 0.9),                                   # 23.8 BTC
    (50, 10 * 0.98 + 10 * 0.95 + 10 * 0.9 + 10 * 0.85 + 10 * 0.8),          # 44.8 BTC
    (60, 10 * 0.98 + 10 * 0.95 + 10 * 0.9 + 10 * 0.85 + 10 * 0.8 + 10 * 0),  # beyond 50: ratio 0
])
def test_bybit_uta_btc_tiers(coins, expected_coins):
    schedule = schedule_from("BTC", BYBIT_BTC)
    price = 60_000.0
    assert haircut_amount(coins, schedule) == pytest.approx(expected_coins, rel=1e-12)
    assert collateral_value(coins, price, schedule) == pytest.approx(expected_coins * price, rel=1e-12)
    # coin tiers: the effective quantity is the haircut coin amount whatever the price
    assert effective_quantity(coins, price, schedule) == pytest.approx(expected_coins)
    assert effective_quantity(coins, 1.0, schedule) == pytest.approx(expected_coins)


def test_bybit_uta_25_btc_golden_number():
    """25 BTC at 60,000 USD: 10x0.98 + 10x0.95 + 5x0.9 = 23.8 BTC = 1,428,000 USD."""
    rules = load_rules("bybit-linear")
    assert collateral_value(25.0, 60_000.0, schedule_for(rules, "BTC")) == pytest.approx(1_428_000.0)


# ---------------------------------------------------------------------------------------- OKX BETH (USD tiers)
def test_okx_beth_before_and_after_2024_07_18():
    """GlobeNewswire 2024-07-18 'OKX Adjusts Discount Rates for BETH': 3,000,000 USD of BETH.
    before: 1M x 0.8 + 1M x 0.75 + 1M x 0.5 = 2,050,000; after: 2M x 0.95 + 1M x 0.85 = 2,750,000."""
    before, after = schedule_from("BETH", OKX_BETH_BEFORE), schedule_from("BETH", OKX_BETH_AFTER)
    price = 3_000.0
    coins = 1_000.0  # 3,000,000 USD
    assert collateral_value(coins, price, before) == pytest.approx(2_050_000.0)
    assert collateral_value(coins, price, after) == pytest.approx(2_750_000.0)
    # USD tiers: the ratio depends on the price; 500 BETH (1.5M USD) after: all in the first tier
    assert collateral_value(500.0, price, after) == pytest.approx(1_500_000 * 0.95)
    assert collateral_value(500.0, price, before) == pytest.approx(800_000 + 500_000 * 0.75)
    # 10,000,000 USD after: 1.9M + 1.7M + 2.0M + 0 = 5,600,000
    assert collateral_value(10_000_000 / price, price, after) == pytest.approx(5_600_000.0)
    # effective coin amount at a price: value / price
    assert effective_quantity(coins, price, before) == pytest.approx(2_050_000.0 / price)


# ---------------------------------------------------------------------------------------- Bitget USDT
def test_bitget_usdt_example():
    """Bitget cross-discount page: USDT at 1 up to 5M, 0.98 to 10M, 0.975 to 20M.
    12,000,000 USDT -> 5M + 5M x 0.98 + 2M x 0.975 = 11,850,000 USD."""
    schedule = schedule_from("USDT", BITGET_USDT)
    assert collateral_value(12_000_000.0, 1.0, schedule) == pytest.approx(11_850_000.0)
    assert collateral_value(4_000_000.0, 1.0, schedule) == pytest.approx(4_000_000.0)
    # the table ends at 20M: beyond the last tier nothing more counts
    assert collateral_value(25_000_000.0, 1.0, schedule) == pytest.approx(5e6 + 5e6 * 0.98 + 10e6 * 0.975)


# ---------------------------------------------------------------------------------------- Binance 2021 flat ratios
def test_binance_2021_flat_ratios():
    """Binance FAQ 29b45c485d664028b9ca1cdf90b24f6f (2021-05-28): BTC 0.95, USDT 0.9999, BUSD 1."""
    rules = load_rules("binance-usdm")
    assert collateral_value(1.0, 60_000.0, schedule_for(rules, "BTC")) == pytest.approx(57_000.0)
    assert collateral_value(10_000.0, 1.0, schedule_for(rules, "USDT")) == pytest.approx(9_999.0)
    assert collateral_value(10_000.0, 1.0, schedule_for(rules, "BUSD")) == pytest.approx(10_000.0)
    assert collateral_value(100.0, 150.0, schedule_for(rules, "SOL")) == pytest.approx(13_500.0)
    # an asset the exchange does not list counts at 0; an unlisted stablecoin at 1
    assert collateral_value(5.0, 100.0, schedule_for(rules, "DOGE")) == 0.0
    assert collateral_value(5.0, 1.0, schedule_for(rules, "FDUSD")) == 5.0


def test_negative_balances_count_at_full_value():
    """Bybit UTA rules: 'ratio applies only to positive balances; negative balances count at 100%'."""
    for entry in (BYBIT_BTC, OKX_BETH_AFTER, 0.95, 0.0):
        schedule = schedule_from("X", entry)
        assert haircut_amount(-3.0, schedule) == -3.0
        assert collateral_value(-3.0, 60_000.0, schedule) == pytest.approx(-180_000.0)
        assert effective_quantity(-3.0, 60_000.0, schedule) == -3.0
    assert collateral_value(0.0, 60_000.0, schedule_from("BTC", BYBIT_BTC)) == 0.0


def test_collateral_metrics_and_pool_on_a_multi_asset_account():
    """Binance multi-asset: 1 BTC at 60,000 (x0.95) + 10,000 USDT (x0.9999) - 2,000 USDC liability."""
    catalog = _catalog("multi-asset", [perp("binance", "BTC"), spot("binance", "BTC")])
    account = attrs.evolve(Account.empty("binance", "multi-asset"),
                           balances={"BTC": 1.0, "USDT": 10_000.0, "USDC": -2_000.0})
    marks = np.array([60_100.0, 60_000.0])  # the spot column prices BTC
    rows = {m.asset: m for m in collateral_metrics(account, catalog, marks)}
    assert rows["BTC"].price == 60_000.0 and rows["BTC"].value == 60_000.0
    assert rows["BTC"].collateral_value == pytest.approx(57_000.0)
    assert rows["USDT"].collateral_value == pytest.approx(9_999.0)
    assert rows["USDC"].collateral_value == pytest.approx(-2_000.0)
    pool = pool_metrics(account, catalog, marks, marks)["USD"]
    assert pool.wallet_balance == pytest.approx(68_000.0)
    assert pool.collateral_value == pytest.approx(57_000.0 + 9_999.0 - 2_000.0)
    assert pool.free_collateral == pytest.approx(64_999.0)


# ---------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("entry, fragment", [
    ({"unit": "coin", "tiers": [{"from": 0, "to": 10, "ratio": 0.98}, {"from": 12, "to": None, "ratio": 0.9}]},
     "tiers[1]"),                                                      # gap between 10 and 12
    ({"unit": "coin", "tiers": [{"from": 5, "to": None, "ratio": 0.9}]}, "tiers[0]"),  # not from 0
    ({"unit": "coin", "tiers": [{"from": 0, "to": 10, "ratio": 1.2}]}, "tiers[0]"),     # ratio > 1
    ({"unit": "coin", "tiers": [{"from": 0, "to": 10, "ratio": -0.1}]}, "tiers[0]"),    # ratio < 0
    ({"unit": "coin", "tiers": [{"from": 0, "to": 0, "ratio": 0.9}]}, "tiers[0]"),      # empty slice
    ({"unit": "btc", "tiers": [{"from": 0, "to": None, "ratio": 0.9}]}, "unit"),
    ("0.95", "expected a ratio"),
])
def test_schedule_from_errors_name_the_asset(entry, fragment):
    with pytest.raises(RulesError) as info:
        schedule_from("WBTC", entry)
    assert "collateral_ratios.WBTC" in str(info.value)
    assert fragment in str(info.value)


@pytest.mark.parametrize("ratio", [1.5, -0.1, float("nan")])
def test_flat_ratio_outside_0_1_is_rejected(ratio):
    with pytest.raises(RulesError, match="collateral_ratios.WBTC"):
        schedule_from("WBTC", ratio)


def test_bad_rule_file_fails_at_load_with_the_file_named(tmp_path):
    data = json.loads((ROOT / "engine/venues/rules/data/bybit-linear.json").read_text())
    data["collateral_ratios"]["BTC"]["tiers"][2]["from"] = 21  # 20..21 missing
    path = tmp_path / "bybit-broken.json"
    path.write_text(json.dumps(data))
    with pytest.raises(RulesError) as info:
        load_rules(str(path))
    message = str(info.value)
    assert str(path) in message and "collateral_ratios.BTC.tiers[2]" in message


# ---------------------------------------------------------------------------------------- auto-exchange
def _catalog(mode, instruments):
    """make_catalog + the asset price columns (Catalog.create): BTC priced from its spot column."""
    venues = {"binance": VenueSpec(load_rules("binance-usdm"), margin_mode=mode, collateral={})}
    built = make_catalog(venues, instruments)
    return Catalog.create(built.venues, built.tradables)


def _binance_multi_asset(balances):
    catalog = _catalog("multi-asset", [perp("binance", "BTC"), spot("binance", "BTC"), spot("binance", "ETH")])
    account = attrs.evolve(Account.empty("binance", "multi-asset"), balances=dict(balances))
    return catalog, account


def test_auto_exchange_follows_the_binance_faq_example():
    """binance_multi_assets_collateral_2021.json auto_exchange: threshold -10,000 USD; 'balance
    -20,000 -> 20,000/97.5% = 20,513 worth of BTC converted'. BTC at 50,000: 0.41025641 BTC sold."""
    catalog, account = _binance_multi_asset({"BTC": 2.0, "USDT": -20_000.0})
    marks = np.array([50_010.0, 50_000.0, 3_000.0])
    (event,) = conversion_events(account, catalog, marks, ts=1)
    assert event.from_asset == "BTC" and event.to_asset == "USDT"
    assert event.price == 50_000.0 and event.fee == 0.0
    assert event.to_amount == pytest.approx(20_000 / 0.975)              # 20,512.82 USDT
    assert round(event.to_amount) == 20_513
    assert event.from_amount == pytest.approx(20_000 / 0.975 / 50_000)   # 0.4102564 BTC
    # applied to the ledger: USDT back above zero (+512.82), BTC reduced
    from xmargin.ledger.apply import apply
    from xmargin.ledger.state import Ledger

    ledger = Ledger(accounts={"binance": account}, in_flight={})
    after = apply(ledger, event).accounts["binance"]
    assert after.balances["USDT"] == pytest.approx(20_000 / 0.975 - 20_000)
    assert after.balances["BTC"] == pytest.approx(2.0 - 20_000 / 0.975 / 50_000)


def test_auto_exchange_threshold_and_order_of_sources():
    marks = np.array([50_010.0, 50_000.0, 3_000.0])
    # above the threshold (-10,000): nothing happens
    catalog, account = _binance_multi_asset({"BTC": 2.0, "USDT": -9_999.0})
    assert conversion_events(account, catalog, marks, ts=1) == []
    # largest collateral value first: ETH (10 x 3,000 = 30,000) before BTC (0.1 x 50,000 = 5,000)
    catalog, account = _binance_multi_asset({"BTC": 0.1, "ETH": 10.0, "USDT": -20_000.0})
    (event,) = conversion_events(account, catalog, marks, ts=1)
    assert event.from_asset == "ETH" and event.from_amount == pytest.approx(20_000 / 0.975 / 3_000)
    # BTC (50,000) is larger than ETH (6,000) and covers it all: one event
    catalog, account = _binance_multi_asset({"BTC": 1.0, "ETH": 2.0, "USDT": -20_000.0})
    (only,) = conversion_events(account, catalog, marks, ts=1)
    assert (only.from_asset, only.from_amount) == ("BTC", pytest.approx(20_000 / 0.975 / 50_000))
    # not enough of the first (ETH 15,000 > BTC 10,000): all of it, the rest from the next
    catalog, account = _binance_multi_asset({"BTC": 0.2, "ETH": 5.0, "USDT": -20_000.0})
    first, second = conversion_events(account, catalog, marks, ts=1)
    assert first.from_asset == "ETH" and first.from_amount == pytest.approx(5.0)        # 15,000 USD, all of it
    remaining = 20_000 - 15_000
    assert second.from_asset == "BTC" and second.to_amount == pytest.approx(remaining / 0.975)
    # single-asset cross mode never converts
    cross = _catalog("cross", [perp("binance", "BTC"), spot("binance", "BTC"), spot("binance", "ETH")])
    assert conversion_events(account, cross, marks, ts=1) == []


def test_auto_exchange_after_a_fill_at_the_open_sells_at_the_open_price():
    """The run's auto-exchange at a bar's open prices the coin it sells at that open, not at the
    bar's close (a look-ahead: the loop passed the close). Binance multi-asset, 2 BTC + 1,000 USDT;
    short 100 ETH filled at 1,000 (bar 1's open), closed at bar 2's open at 1,200: realised
    -20,000 USDT, fees 5 bps of 100,000 and 120,000 (50 + 60), so USDT = 1,000 - 110 - 20,000 =
    -19,110, below the -10,000 threshold. BTC opens bar 2 at 50,000 and closes it at 40,000: the
    conversion sells 19,110 / 0.975 / 50,000 BTC at 50,000 (the old code: at 40,000)."""
    from helpers_feed import make_feed, run
    from xmargin.ledger import events as ev
    from xmargin.ledger.commands import PlaceOrder

    venues = {"binance": VenueSpec(load_rules("binance-usdm"), margin_mode="multi-asset",
                                   collateral={"BTC": 2.0, "USDT": 1_000.0})}
    built = make_catalog(venues, [perp("binance", "ETH"), spot("binance", "BTC")])
    catalog = Catalog.create(built.venues, built.tradables)
    eth, btc = "binance:ETH/USDT:USDT", "binance:BTC/USDT"
    close = np.array([[1_000.0, 50_000.0], [1_200.0, 50_000.0], [1_200.0, 40_000.0], [1_200.0, 40_000.0]])
    opens = np.array([[1_000.0, 50_000.0], [1_000.0, 50_000.0], [1_200.0, 50_000.0], [1_200.0, 40_000.0]])
    feed = make_feed([eth, btc], close, open=opens)
    result, _ = run(catalog, feed, {0: [PlaceOrder.market(eth, -100.0)], 1: [PlaceOrder.market(eth, 100.0)]})
    fills = [e for e in result.events if isinstance(e, ev.OrderFilled)]
    assert [(f.price, f.realized_pnl) for f in fills] == [(1_000.0, 0.0), (1_200.0, pytest.approx(-20_000.0))]
    (converted,) = [e for e in result.events if isinstance(e, ev.CollateralConverted)]
    deficit = 1_000.0 - 0.0005 * 100_000 - 0.0005 * 120_000 - 20_000.0
    assert deficit == pytest.approx(-19_110.0)
    assert converted.ts == fills[1].ts  # at bar 2's open, with the fill
    assert converted.price == 50_000.0
    assert converted.from_asset == "BTC" and converted.to_asset == "USDT"
    assert converted.from_amount == pytest.approx(19_110.0 / 0.975 / 50_000.0)


def test_the_watch_builds_a_stretch_s_units_at_its_first_point_not_the_bar_s_close():
    """A multi-asset pool's USD-unit collateral tiers are linearised at the prices its units are
    built at (`effective_quantity`). The margin watch scans a stretch from bar `start`'s open, so it
    builds them at that open: it used the bar's close, a later price of the bar it scans. 1 BTC
    under USD tiers [0, 45,000) at 1 and above at 0.5; bar 0 opens at 40,000 and closes at 60,000.
    At the open the whole 40,000 counts: the leg holds 1 BTC; at the close 45,000 + 0.5 x 15,000 =
    52,500, i.e. 0.875 BTC, which the old code scanned from the open on."""
    from helpers_feed import Scripted, make_config, make_feed
    from xmargin.margin.collateral import effective_quantity, schedule_from
    from xmargin.sim.loop import Backtest

    tiers = {"unit": "usd", "tiers": [{"from": 0, "to": 45_000, "ratio": 1.0}, {"from": 45_000, "to": None,
                                                                                "ratio": 0.5}]}
    rs = attrs.evolve(load_rules("binance-usdm"), collateral_ratios={"BTC": tiers})
    venues = {"binance": VenueSpec(rs, margin_mode="multi-asset", collateral={"BTC": 1.0, "USDT": 0.0})}
    built = make_catalog(venues, [perp("binance", "ETH"), spot("binance", "BTC")])
    catalog = Catalog.create(built.venues, built.tradables)
    feed = make_feed(["binance:ETH/USDT:USDT", "binance:BTC/USDT"],
                     np.array([[1_000.0, 60_000.0], [1_000.0, 60_000.0]]),
                     open=np.array([[1_000.0, 40_000.0], [1_000.0, 60_000.0]]))
    backtest = Backtest(make_config(catalog), feed=feed, catalog=catalog, strategy=Scripted())
    backtest.run()  # (nothing traded: the ledger holds the deposits)
    schedule = schedule_from("BTC", tiers)
    assert effective_quantity(1.0, 40_000.0, schedule) == 1.0
    assert effective_quantity(1.0, 60_000.0, schedule) == pytest.approx(52_500.0 / 60_000.0)
    (pool,) = backtest._risk_units(0, 0)
    assert pool.legs.quantity.tolist() == [1.0]  # the BTC collateral leg, built at bar 0's open
    (pool,) = backtest._risk_units(1, 0)
    assert pool.legs.quantity.tolist() == [pytest.approx(0.875)]  # bar 1 opens at 60,000
