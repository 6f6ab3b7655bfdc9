"""Liquidation parameters that are rule data: Hyperliquid's partial liquidation of large positions
(20 % at a time above 100,000 USDC of notional) and its backstop (the whole pool when equity is
below 2/3 of maintenance), on hand-built bars so that every number is derived here.

Book: one cross account on the `hyperliquid` rule set (taker fee 0.045 %, no liquidation fee,
trigger fill), a flat 5 % maintenance rate, wallet 21,000 USDC, long 2,000 units bought at 100
(notional 200,000) at 10x: fee 90, wallet 20,910. Equity(P) = 20,910 + 2,000 (P - 100) and
maintenance 0.05 x 2,000 P = 100 P: liquidation at P = 179,090 / 1,900 = 94.2578947...
"""

from __future__ import annotations

import attrs
import pytest

from xmargin.ledger import commands as cmd
from xmargin.ledger import events as ev
from xmargin.venues.rules import load_rules
from helpers_feed import HOUR, T0, VenueSpec, flat_brackets, make_catalog, make_feed, of_type, perp, run

KEY = "hl:BTC/USDC:USDC"


def without_cooldown(rules):
    """The same rule set with no cooldown between partial steps: the stepping arithmetic on its own."""
    return attrs.evolve(rules, liquidation=attrs.evolve(
        rules.liquidation, parameters=attrs.evolve(rules.liquidation.parameters, cooldown_seconds=0.0)))


def book(bar_2, bar_3=None, rules=None):
    rules = rules or load_rules("hyperliquid")
    catalog = make_catalog({"hl": VenueSpec(rules=rules, collateral={"USDC": 21_000.0},
                                            leverage=10.0)},
                           [perp("hl", "BTC", settle="USDC")], tables={KEY: flat_brackets(0.05, 20.0)})
    bars = [(100, 100, 100, 100), (100, 100, 100, 100), bar_2, bar_3 or bar_2[3:] * 4]
    feed = make_feed((KEY,), [b[3] for b in bars], open=[b[0] for b in bars], high=[b[1] for b in bars],
                     low=[b[2] for b in bars])
    result, _ = run(catalog, feed, {0: [cmd.PlaceOrder.market(KEY, 2000.0)]})
    return result


def test_a_large_position_is_liquidated_a_fifth_at_a_time():
    # The stepping arithmetic with the cooldown switched off (the shipped Hyperliquid file has its 30 s
    # cooldown: see the cooldown test below for what the venue does with this book).
    # bar 2: 100 -> 93 -> closes 95; bar 3: 95 -> 90 -> closes 90
    result = book((100, 100, 93, 95), (95, 95, 90, 90), rules=without_cooldown(load_rules("hyperliquid")))
    liquidations = of_type(result.events, ev.PositionLiquidated)
    # by hand, step after step: with q units left and wallet w, equity(P) = w + q (P - 100) meets
    # maintenance 0.05 q P at P = (100 q - w) / (0.95 q); then 20 % of q closes there while the
    # notional q P exceeds 100,000 (all of it otherwise), and w takes the realised loss
    quantity, wallet, expected = 2000.0, 20_910.0, []
    while quantity > 0:
        trigger = (100 * quantity - wallet) / (0.95 * quantity)
        if trigger < 90:  # the lowest price the bars reach
            break
        chunk = 0.2 * quantity if quantity * trigger > 100_000 else quantity
        expected.append((-round(chunk, 3), trigger))
        wallet += chunk * (trigger - 100)
        quantity -= round(chunk, 3)
    assert expected[:2] == [(-400.0, pytest.approx(179_090 / 1_900)), (-320.0, pytest.approx(93.01771, rel=1e-6))]
    assert [(e.quantity, e.trigger_price) for e in liquidations] == [
        (q, pytest.approx(p, rel=1e-9)) for q, p in expected]
    assert all(e.policy == "partial" and e.price == e.trigger_price for e in liquidations)
    # 94.26 and 93.02 are both crossed on the way down to bar 2's low of 93; the rest on bar 3
    assert [e.ts for e in liquidations[:2]] == [T0 + 2 * HOUR + HOUR // 2] * 2
    assert all(e.ts >= T0 + 3 * HOUR for e in liquidations[2:])
    left = result.ledger.accounts["hl"].positions.get(KEY)
    assert (left.quantity if left else 0.0) == pytest.approx(quantity)
    assert result.ledger.accounts["hl"].balance("USDC") == pytest.approx(wallet, rel=1e-9)


def test_a_position_below_the_threshold_is_closed_whole():
    catalog_rules = load_rules("hyperliquid").liquidation
    assert catalog_rules.partial_above_notional == 100_000 and catalog_rules.partial_fraction == 0.2
    # the same book at a tenth of the size: 200 units, wallet scaled: one close of everything
    catalog = make_catalog({"hl": VenueSpec(rules=load_rules("hyperliquid"), collateral={"USDC": 2_100.0},
                                            leverage=10.0)},
                           [perp("hl", "BTC", settle="USDC")], tables={KEY: flat_brackets(0.05, 20.0)})
    bars = [(100, 100, 100, 100), (100, 100, 100, 100), (100, 100, 93, 95), (95, 95, 95, 95)]
    feed = make_feed((KEY,), [b[3] for b in bars], open=[b[0] for b in bars], high=[b[1] for b in bars],
                     low=[b[2] for b in bars])
    result, _ = run(catalog, feed, {0: [cmd.PlaceOrder.market(KEY, 200.0)]})
    (liquidated,) = of_type(result.events, ev.PositionLiquidated)
    assert liquidated.quantity == -200.0 and KEY not in result.ledger.accounts["hl"].positions


def test_a_gap_below_two_thirds_of_maintenance_goes_to_the_backstop():
    # bar 2 gaps open at 90: equity 20,910 - 20,000 = 910 < 2/3 x maintenance 9,000 = 6,000
    result = book((90, 90, 89, 90))
    liquidations = of_type(result.events, ev.PositionLiquidated)
    assert [(e.quantity, e.policy, e.trigger_price) for e in liquidations] == [(-2000.0, "backstop", 90.0)]
    # the backstop takes the whole position at the bankruptcy price: the trader loses everything
    # in the pool (bankruptcy 100 - 20,910 / 2,000 = 89.545), nothing more
    assert liquidations[0].price == pytest.approx(100 - 20_910 / 2_000, rel=1e-12)
    assert result.ledger.accounts["hl"].balance("USDC") == pytest.approx(0.0, abs=1e-9)
    assert liquidations[0].ts == T0 + 2 * HOUR


def test_with_hyperliquid_cooldown_a_pool_still_liquidatable_within_30_s_closes_whole():
    """Hyperliquid (venue-facts 2026-11, docs.tings.xyz quoting the HL docs): after a partial order a
    30 s cooldown, during which liquidation orders are for the full position. Same book as above with
    the shipped rule file (`cooldown_seconds = 30`): 400 close at 94.26 (a fifth), and when the path reaches
    93.02 in the same stretch of the bar (the same instant here) the remaining 1,600 close whole."""
    cooled = load_rules("hyperliquid")
    assert cooled.liquidation.parameters.cooldown_seconds == 30.0
    catalog = make_catalog({"hl": VenueSpec(rules=cooled, collateral={"USDC": 21_000.0}, leverage=10.0)},
                           [perp("hl", "BTC", settle="USDC")], tables={KEY: flat_brackets(0.05, 20.0)})
    bars = [(100, 100, 100, 100), (100, 100, 100, 100), (100, 100, 93, 95), (95, 95, 90, 90)]
    feed = make_feed((KEY,), [b[3] for b in bars], open=[b[0] for b in bars], high=[b[1] for b in bars],
                     low=[b[2] for b in bars])
    result, _ = run(catalog, feed, {0: [cmd.PlaceOrder.market(KEY, 2000.0)]})
    first, rest = of_type(result.events, ev.PositionLiquidated)
    assert (first.quantity, first.policy) == (-400.0, "partial")
    assert first.trigger_price == pytest.approx(179_090 / 1_900, rel=1e-9)
    assert (rest.quantity, rest.policy) == (-1600.0, "cooldown") and rest.ts - first.ts < 30 * 10**9
    assert rest.trigger_price == pytest.approx(93.01771, rel=1e-6)  # where the rest reached maintenance
    assert KEY not in result.ledger.accounts["hl"].positions
