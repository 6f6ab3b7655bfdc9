"""`decide` refuses an order that takes a position past the largest one its venue takes: the cap of
the rule file's last tier (no leverage lifts it), and, at an explicit leverage, the cap of the last
tier allowing that leverage. Reducing orders are never refused for it; an open last tier never refuses.

Venue behaviour (docs/rules.md, "The largest position"): Binance USD-M/COIN-M refuse with -2027
"Exceeded the maximum allowable position at current leverage" (the brackets' notionalCap / qtyCap);
Bybit "orders exceeding max position value (per leverage) are rejected" (help 'Risk Limit (Perpetual
and Futures Contracts)', 2024-09-06); OKX "position tier rules set variable position limits for
different leverages" (okx.com/trade-market/position/margin); Hyperliquid `PerpMaxPosition` "Order would
cause position to exceed margin tier limit at current leverage" (hyperliquid.gitbook.io, API error
responses). Every number below is derived by hand from the rule files named.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xmargin.ledger import commands as cmd
from xmargin.ledger import events as ev
from xmargin.ledger.apply import apply
from xmargin.ledger.decide import decide
from xmargin.ledger.state import Ledger
from xmargin.sim.runner import summary_for
from xmargin.venues.instruments import Instrument
from xmargin.venues.rules import load_rules
from xmargin.venues.rules.ruleset import DATA_DIR
from helpers_feed import VenueSpec, context, make_catalog, make_feed, of_type, perp, run

TS = 1_000
VENUES = Path(__file__).resolve().parent / "fixtures" / "venues"  # venue metadata fixtures (README there)
BTC = "binance:BTC/USDT:USDT"


def ledger(exchange: str, asset: str, amount: float, mode: str = "cross") -> Ledger:
    return apply(Ledger.create({exchange: mode}), ev.CollateralDeposited(0, exchange, asset, amount))


def binance(prices):
    """binance-usdm BTCUSDT (snapshot 2024-10-24): 12 brackets; 20x up to 100,000,000 USDT (bracket
    [70M, 100M)), the last [1.2B, 1.8B) at 1x: 1,800,000,000 USDT is the largest position."""
    instrument = perp("binance", "BTC", lot_size=0.001)
    catalog = make_catalog({"binance": VenueSpec(load_rules("binance-usdm"), collateral={"USDT": 4e9})},
                           [instrument])
    return catalog, make_feed([instrument.key], prices)


def reason_of(events):
    assert isinstance(events[-1], ev.OrderRejected), events
    return events[-1].reason


def test_binance_position_just_under_the_last_cap_is_taken_just_over_refused():
    catalog, feed = binance([100_000.0])
    led, ctx = ledger("binance", "USDT", 4e9), context(catalog, feed)
    # 17,999.999 BTC x 100,000 = 1,799,999,900 USDT <= 1,800,000,000 (1x: IM 1.8e9 + fee 0.9M < 4e9)
    out = decide(led, ctx, cmd.PlaceOrder.market(BTC, 17_999.999, leverage=1), TS)
    assert isinstance(out[-1], ev.OrderAccepted) and out[-1].leverage == 1.0
    # the account default (10x) is lowered to the last bracket's 1x, as before
    assert isinstance(decide(led, ctx, cmd.PlaceOrder.market(BTC, 17_999.999), TS)[-1], ev.OrderAccepted)
    # 18,000.001 BTC = 1,800,000,100 USDT: beyond the last cap, at any leverage
    for leverage in (1, None):
        reason = reason_of(decide(led, ctx, cmd.PlaceOrder.market(BTC, 18_000.001, leverage=leverage), TS))
        assert reason.startswith(f"position larger than the venue takes: {BTC} would reach 1,800,000,100.00 USDT, "
                                 "above the largest the rules allow at any leverage, 1,800,000,000.00 USDT")
        assert "Fix: a smaller order" in reason
    # a short counts alike, and so do the open orders on the instrument: 10,000 resting + 8,000.001
    assert "1,800,000,100.00 USDT" in reason_of(decide(led, ctx, cmd.PlaceOrder.market(BTC, -18_000.001), TS))
    led = apply(led, decide(led, ctx, cmd.PlaceOrder.limit(BTC, 10_000.0, 90_000.0, leverage=1), TS)[-1])
    assert "1,800,000,100.00 USDT" in reason_of(decide(led, ctx, cmd.PlaceOrder.market(BTC, 8_000.001), TS))


def test_binance_at_an_explicit_leverage_the_cap_is_that_leverages_bracket():
    """At 20x BTCUSDT allows up to 100,000,000 USDT (Binance: 'the maximum allowable position at current
    leverage'); 1,000.001 BTC x 100,000 falls in [100M, 230M), max 10x."""
    catalog, feed = binance([100_000.0])
    led, ctx = ledger("binance", "USDT", 4e9), context(catalog, feed)
    assert isinstance(decide(led, ctx, cmd.PlaceOrder.market(BTC, 999.999, leverage=20), TS)[-1], ev.OrderAccepted)
    reason = reason_of(decide(led, ctx, cmd.PlaceOrder.market(BTC, 1_000.001, leverage=20), TS))
    assert reason == ("leverage 20 exceeds the maximum 10 for a notional of 100000100.00; at 20x the position may be "
                      "at most 100,000,000.00 USDT, so lower the leverage or place a smaller order")


def test_reducing_orders_past_the_cap_are_taken_increasing_ones_refused():
    """17,999.999 BTC bought at 100,000; BTC at 110,000: the position is worth 1,979,999,890 USDT,
    past the 1.8B cap. Closing part of it (reduce-only or not) is taken; adding 0.001 BTC is refused."""
    catalog, feed = binance([100_000.0, 110_000.0])
    led = ledger("binance", "USDT", 4e9)
    led = apply(led, ev.LeverageChanged(TS, "binance", BTC, 1.0))
    led = apply(led, ev.OrderFilled(TS, "binance", BTC, 1, 17_999.999, 100_000.0, "taker", 0.0, 0.0, "USDT",
                                    "perp", ""))
    ctx = context(catalog, feed, 1)
    for order in (cmd.PlaceOrder.market(BTC, -1.0, reduce_only=True), cmd.PlaceOrder.market(BTC, -1.0),
                  cmd.PlaceOrder.market(BTC, -17_999.999, reduce_only=True)):
        assert isinstance(decide(led, ctx, order, TS)[-1], ev.OrderAccepted), order
    reason = reason_of(decide(led, ctx, cmd.PlaceOrder.market(BTC, 0.001), TS))
    assert "would reach 1,980,000,000.00 USDT" in reason and "1,800,000,000.00 USDT" in reason
    # flipping to a short beyond the cap increases exposure: 17,999.999 -> -18,000.001 (1,980,000,110 USDT)
    assert "1,980,000,110.00 USDT" in reason_of(decide(led, ctx, cmd.PlaceOrder.market(BTC, -36_000.0), TS))


@pytest.fixture(scope="module")
def okx_tiers_file(tmp_path_factory):
    """`xmargin rules import --contracts` of the OKX position-tiers fixture (tests/fixtures/venues/README.md:
    BTC swap tier 1 up to 20,000 contracts at 100x, tier 2 up to 22,000 at 66.66x, maxSz inclusive) with
    OKX's instrument dump (BTC-USDT-SWAP ctVal 0.01 BTC) on top of okx-swap."""
    from xmargin.venues.metadata import read_metadata
    from xmargin.venues.rules.imported import rule_file_from, write_rule_file

    paths = [VENUES / "HANDWRITTEN_okx_v5_position_tiers_BTC-USDT_SWAP.json", VENUES / "okx_public_instruments_swap.json"]
    imported = rule_file_from(read_metadata(paths, "okx"), paths, exchange="okx", name="okx-tiers",
                              as_of="2025-01-01", contracts=True)
    return str(write_rule_file(imported, tmp_path_factory.mktemp("okx") / "okx-tiers.json"))


def test_okx_contract_tiers_cap_the_position_in_contracts(okx_tiers_file):
    instrument = perp("okx", "BTC", lot_size=0.01)
    catalog = make_catalog({"okx": VenueSpec(load_rules(okx_tiers_file), collateral={"USDT": 1e6})}, [instrument])
    # the cap is in contracts: it does not move with price (60,000 and 120,000 alike)
    for price in (60_000.0, 120_000.0):
        ctx, led = context(catalog, make_feed([instrument.key], [price])), ledger("okx", "USDT", 1e6)
        # 220 BTC = 22,000 contracts of 0.01 BTC, the last tier's maxSz: taken (at 120,000: 26,400,000 USDT
        # at 50x: IM 528,000 + fee 13,200 <= 1,000,000)
        out = decide(led, ctx, cmd.PlaceOrder.market(instrument.key, 220.0, leverage=50), TS)
        assert isinstance(out[-1], ev.OrderAccepted)
        reason = reason_of(decide(led, ctx, cmd.PlaceOrder.market(instrument.key, 220.01, leverage=50), TS))
        assert reason.startswith(f"position larger than the venue takes: {instrument.key} would reach 22,001 "
                                 "contracts, above the largest the rules allow at any leverage, 22,000 contracts")
    # at 100x OKX allows tier 1 only: 20,000 contracts; 200.01 BTC = 20,001 is refused with that cap
    reason = reason_of(decide(led, ctx, cmd.PlaceOrder.market(instrument.key, 200.01, leverage=100), TS))
    assert reason.endswith("at 100x the position may be at most 20,000 contracts, so lower the leverage or place a "
                           "smaller order")


def test_an_open_last_tier_never_refuses():
    """okx-swap ADAUSDT (announcement 2023-05-15): the tenth tier is open (max_contracts null);
    hyperliquid BTCUSDC: above 150M USDC 20x with no cap. Positions far beyond the last finite bound are taken."""
    ada = perp("okx", "ADA", lot_size=1.0)
    catalog = make_catalog({"okx": VenueSpec(load_rules("okx-swap"), collateral={"USDT": 1e9})}, [ada])
    ctx = context(catalog, make_feed([ada.key], [0.40]))
    # 1,000,000 contracts x 100 ADA x 0.40 = 40,000,000 USDT, at 10x (tier 10 allows 16.67x)
    assert isinstance(decide(ledger("okx", "USDT", 1e9), ctx, cmd.PlaceOrder.market(ada.key, 1e8, leverage=10),
                             TS)[-1], ev.OrderAccepted)
    hl = perp("hyperliquid", "BTC", settle="USDC", lot_size=0.001)
    catalog = make_catalog({"hyperliquid": VenueSpec(load_rules("hyperliquid"), collateral={"USDC": 1e10})}, [hl])
    ctx = context(catalog, make_feed([hl.key], [100_000.0]))
    # 50,000 BTC = 5,000,000,000 USDC at 20x
    assert isinstance(decide(ledger("hyperliquid", "USDC", 1e10), ctx,
                             cmd.PlaceOrder.market(hl.key, 50_000.0, leverage=20), TS)[-1], ev.OrderAccepted)


def coinm(tmp_path, name, last_cap):
    """binance-coinm BTCUSD (Binance FAQ 2020-06-11, notional in BTC; 100 USD contracts), its last level
    (1,000 BTC and up, 2x) closed at `last_cap` BTC when given (the live brackets end at a finite
    qtyCap; the FAQ's table leaves it open)."""
    data = json.loads((DATA_DIR / "binance-coinm.json").read_text())
    data["brackets"]["BTCUSD"][-1]["notional_cap"] = last_cap
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(data))
    instrument = Instrument(exchange="binance", symbol="BTC/USD:BTC", market="perp", base="BTC", quote="USD",
                            settle="BTC", contract="inverse", contract_size=100.0, funding_interval_hours=8.0,
                            lot_size=1.0)
    catalog = make_catalog({"binance": VenueSpec(load_rules(str(path)), collateral={"BTC": 5_000.0})}, [instrument])
    return instrument.key, context(catalog, make_feed([instrument.key], [20_000.0])), ledger("binance", "BTC", 5_000.0)


def test_inverse_caps_are_in_the_coin(tmp_path):
    key, ctx, led = coinm(tmp_path, "closed", 2_000.0)
    # 399,999 contracts x 100 USD / 20,000 = 1,999.995 BTC at 2x: IM 999.9975 + fee 1.0 BTC: taken
    assert isinstance(decide(led, ctx, cmd.PlaceOrder.market(key, 399_999.0, leverage=2), TS)[-1], ev.OrderAccepted)
    reason = reason_of(decide(led, ctx, cmd.PlaceOrder.market(key, 400_001.0, leverage=2), TS))
    assert reason.startswith(f"position larger than the venue takes: {key} would reach 2000.005 BTC, above the "
                             "largest the rules allow at any leverage, 2000 BTC")
    # the built-in table (last level open): the same order is taken
    key, ctx, led = coinm(tmp_path, "open", None)
    assert isinstance(decide(led, ctx, cmd.PlaceOrder.market(key, 400_001.0, leverage=2), TS)[-1], ev.OrderAccepted)
    # at 100x BTCUSD allows up to 20 BTC (level 2, [10, 20)): 4,001 contracts = 20.005 BTC is refused
    assert reason_of(decide(led, ctx, cmd.PlaceOrder.market(key, 4_001.0, leverage=100), TS)).endswith(
        "at 100x the position may be at most 20 BTC, so lower the leverage or place a smaller order")


def test_a_run_counts_the_refused_order_and_changes_nothing():
    catalog, feed = binance([100_000.0, 100_000.0, 100_000.0])
    result, _ = run(catalog, feed, {0: [cmd.PlaceOrder.market(BTC, 18_000.001, leverage=1)],
                                    1: [cmd.PlaceOrder.market(BTC, 1.0)]})
    (rejected,) = of_type(result.events, ev.OrderRejected)
    assert "above the largest the rules allow at any leverage" in rejected.reason
    assert not of_type(result.events, ev.LeverageChanged)  # a refused order changes nothing, not even leverage
    (filled,) = of_type(result.events, ev.OrderFilled)
    assert filled.quantity == 1.0
    summary = summary_for(result)
    assert summary["exchanges"]["binance"]["rejected_orders"] == 1 and summary["total"]["rejected_orders"] == 1
    # the summary's rejections group it under its own kind, the instrument and numbers aside
    assert [(r["kind"], r["count"]) for r in summary["rejections"]] == [("position larger than the venue takes", 1)]


def test_an_account_leverage_the_bracket_does_not_allow_is_lowered_and_the_summary_warns():
    """`decide` lowers the account's leverage to the bracket's maximum where the venues refuse the
    order (docs/rules.md): the run does it, but says so. Brackets: up to 1,000 notional 20x, above
    it 5x; the account's leverage is 10x. A 5 BTC buy at 100 (500 notional) is margined at 10x; the
    next 15 BTC take the position to 2,000, in the 5x bracket: accepted at 5x, one order lowered.
    An order with its own leverage (4x, allowed) is not counted."""
    from helpers_feed import brackets, rules

    key = "bx:BTC/USDT:USDT"
    catalog = make_catalog({"bx": VenueSpec(rules(), "cross", {"USDT": 10_000.0}, 10.0)}, [perp("bx", "BTC")],
                           tables={key: brackets((0, 1_000, 20, 0.01, 0), (1_000, None, 5, 0.05, 40))})
    feed = make_feed((key,), [100.0, 100.0, 100.0, 100.0])
    result, _ = run(catalog, feed, {0: [cmd.PlaceOrder.market(key, 5.0)], 1: [cmd.PlaceOrder.market(key, 15.0)],
                                    2: [cmd.PlaceOrder.market(key, 1.0, leverage=4.0)]})
    accepted = of_type(result.events, ev.OrderAccepted)
    assert [(a.quantity, a.leverage) for a in accepted] == [(5.0, 10.0), (15.0, 5.0), (1.0, 4.0)]
    lowered = [w for w in result.warnings if "margined at the bracket's maximum" in w]
    assert lowered == [
        "exchanges.bx.leverage: 1 order(s) on bx:BTC/USDT:USDT took the position past what its bracket allows at "
        "the account's 10x (first at 2024-10-01 02:00:00) and were margined at the bracket's maximum (down to 5x); "
        "Binance (-2027), OKX and Hyperliquid refuse such an order at the account's leverage (docs/rules.md, "
        "'The largest position'). Fix: a lower leverage for bx:BTC/USDT:USDT (exchanges.bx.leverage or "
        "SetLeverage) or smaller orders"]
    assert lowered[0] in summary_for(result)["warnings"]
