"""Portfolio margin's whole-account order check (`xmargin.ledger.decide.whole_account_check` ->
`xmargin.margin.modes.portfolio.order_check`) values the account as the order would really leave it.

Binance Portfolio Margin (binance-pm-pro-2022-04-18, bracket method; docs/portfolio-margin.md; source
binance.com/en-IN/support/faq/binance-portfolio-margin-pro-maintenance-margin-ratio-calculation-
5e33af8e6ac04d57a1d0a3398e0a0752, as in engine/venues/rules/data/binance-usdm.json): equity = the
balances after their collateral ratio + the positions' unrealised PnL (USD), initial margin =
notional / leverage; uniMMR bands as in the rule file. Every expected figure here comes from the engine's own valuation of the
account state the order produces (`portfolio.risk_units` + the kernel), that state being built
with the ledger's own fill rule (`xmargin.ledger.apply.next_position`, realised PnL into the
balance); the tests check the decision follows those figures.
"""

from __future__ import annotations

import attrs
import numpy as np
import pytest

from xmargin.ledger import events as ev
from xmargin.ledger.apply import apply, next_position, replay
from xmargin.ledger.commands import PlaceOrder
from xmargin.ledger.decide import decide
from xmargin.ledger.state import Order, Position
from xmargin.margin import formulas
from xmargin.margin.kernel import valuate
from xmargin.margin.modes import portfolio as portfolio_mode
from xmargin.sim.execution import fill_events
from xmargin.venues.instruments import Instrument
from xmargin.venues.rules import load_rules
from xmargin.venues.venue import Catalog
from helpers_feed import T0, VenueSpec, context, empty_ledger, make_catalog, make_feed, of_type, perp, run, spot

BTC, ETH, SPOT = "binance:BTC/USDT:USDT", "binance:ETH/USDT:USDT", "binance:BTC/USDT"
INVERSE = "binance:BTC/USD:BTC"
PRICES = {BTC: 60_000.0, ETH: 3_000.0, SPOT: 60_000.0, INVERSE: 60_000.0}


def coin_margined() -> Instrument:
    return Instrument(exchange="binance", symbol="BTC/USD:BTC", market="perp", base="BTC", quote="USD", settle="BTC",
                      contract="inverse", contract_size=100.0, funding_interval_hours=8.0, lot_size=1.0)


def catalog(mode: str = "portfolio", collateral: dict | None = None) -> Catalog:
    venue = VenueSpec(load_rules("binance-usdm"), margin_mode=mode, collateral=collateral or {}, leverage=10)
    built = make_catalog({"binance": venue},
                         [perp("binance", "BTC"), perp("binance", "ETH"), spot("binance", "BTC"), coin_margined()])
    return Catalog.create(built.venues, built.tradables)  # BTC priced by its spot


def feed(rows: int = 3, btc: float = 60_000.0):
    prices = dict(PRICES, **{BTC: btc})
    return make_feed(list(prices), np.tile([prices[k] for k in prices], (rows, 1)))


def ledger_with(book, deposits: dict, fills=(), orders=()):
    """Deposits, then fills ((key, quantity, price), ...) replayed as the ledger's own events, then
    resting orders ((key, quantity, limit), ...) held as open orders."""
    events = [ev.CollateralDeposited(T0, "binance", asset, amount) for asset, amount in deposits.items()]
    events += [ev.OrderFilled(T0, "binance", key, n, quantity, price, "taker", 0.0, 0.0, "USDT", "perp", "")
               for n, (key, quantity, price) in enumerate(fills, start=1)]
    events += [ev.OrderAccepted(T0, "binance", key, 100 + n, quantity, "limit", limit, False, "cross", 10.0, "")
               for n, (key, quantity, limit) in enumerate(orders)]
    return replay(empty_ledger(book), events)


def figures(account, book, prices, positions, balances=None):
    """(equity, initial margin) of `account` holding `positions` (and `balances`), by the engine."""
    state = attrs.evolve(account, positions=positions, balances=account.balances if balances is None else balances)
    (unit,) = portfolio_mode.risk_units(state, book, prices)
    value = valuate(unit.legs, prices[unit.columns])
    return float(value.equity[0]), float(value.initial_margin[0])


def grown(account, key, quantity, price, inverse=False):
    """`account`'s positions after a fill, by the ledger's rule (no realised PnL: a growing fill)."""
    positions = dict(account.positions)
    positions[key] = next_position(positions.get(key), key, quantity, price, "cross", "BTC" if inverse else "USDT",
                                   0.0, inverse)
    return positions


# --------------------------------------------------------------------------------- 1. the grown position's entry
def test_adding_to_a_winning_long_values_the_added_btc_at_its_price_not_the_old_entry():
    """Long 1 BTC bought at 50,000, the price now 60,000, 10,000 USDT: real equity 0.9999 x 10,000 +
    10,000 = 19,999. A target of long 3.8 needs 3.8 x 60,000 / 10 = 22,800: refused (at the order
    and at its fill). Valued at the old entry for all 3.8 BTC, equity came out 47,999."""
    book, data = catalog(), feed()
    ledger = ledger_with(book, {"USDT": 10_000.0}, fills=[(BTC, 1.0, 50_000.0)])
    account = ledger.accounts["binance"]
    marks = data.mark_close[1]
    fee = 2.8 * 60_000.0 * book.tradable(BTC).taker_fee
    equity, initial = figures(account, book, marks, grown(account, BTC, 2.8, 60_000.0))
    old_entry, _ = figures(account, book, marks, {BTC: Position(BTC, 3.8, 50_000.0, "cross", 0.0, "USDT")})
    assert equity - fee < initial < old_entry - fee  # the bug's figure would accept it
    assert initial == pytest.approx(22_800.0) and equity == pytest.approx(19_999.0)

    (rejected,) = decide(ledger, context(book, data, 1), PlaceOrder.market(BTC, 2.8), int(data.ts[1]))
    assert isinstance(rejected, ev.OrderRejected)
    assert f"initial margin would be {initial:.2f} USD" in rejected.reason
    assert f"against equity {equity - fee:.2f}" in rejected.reason
    # at the fill (bar 2 opens at 60,000): the same figures
    order = Order(7, BTC, 2.8, "market", float("nan"), False, "cross", 10.0, int(data.ts[1]), "")
    (at_fill,) = fill_events(ledger, context(book, data, 2), order, 60_000.0, "taker", int(data.ts[2]))
    assert isinstance(at_fill, ev.OrderRejected) and f"initial margin would be {initial:.2f}" in at_fill.reason
    # a target the real equity carries passes: long 3 (18,000)
    (accepted,) = decide(ledger, context(book, data, 1), PlaceOrder.market(BTC, 2.0), int(data.ts[1]))
    assert isinstance(accepted, ev.OrderAccepted)


def test_a_flip_is_valued_at_the_fill_price_with_the_closed_part_realised():
    """Long 1 BTC bought at 50,000, the price now 40,000 (a 10,000 loss), 20,000 USDT. Selling 3.5
    flips to short 2.5 at 40,000 (IM 10,000) and realises the loss: equity 0.9999 x 10,000 = 9,999,
    refused. Kept at the old entry the short showed +25,000 of profit (equity ~45,000)."""
    book, data = catalog(), feed(btc=40_000.0)
    ledger = ledger_with(book, {"USDT": 20_000.0}, fills=[(BTC, 1.0, 50_000.0)])
    account = ledger.accounts["binance"]
    marks = data.mark_close[1]
    fee = 3.5 * 40_000.0 * book.tradable(BTC).taker_fee
    realised = formulas.contract_pnl(1.0, 50_000.0, 40_000.0)
    flipped = {BTC: next_position(account.positions[BTC], BTC, -3.5, 40_000.0, "cross", "USDT", 0.0)}
    assert flipped[BTC].quantity == pytest.approx(-2.5) and flipped[BTC].entry_price == 40_000.0
    equity, initial = figures(account, book, marks, flipped, {"USDT": 20_000.0 + realised})
    old_entry, _ = figures(account, book, marks, {BTC: Position(BTC, -2.5, 50_000.0, "cross", 0.0, "USDT")})
    unrealised_dropped, _ = figures(account, book, marks, flipped)  # the fill price without the realised loss
    assert equity - fee < initial < unrealised_dropped - fee < old_entry - fee
    assert initial == pytest.approx(10_000.0) and equity == pytest.approx(0.9999 * 10_000.0)

    (rejected,) = decide(ledger, context(book, data, 1), PlaceOrder.market(BTC, -3.5), int(data.ts[1]))
    assert isinstance(rejected, ev.OrderRejected)
    assert f"initial margin would be {initial:.2f} USD" in rejected.reason
    assert f"against equity {equity - fee:.2f}" in rejected.reason


def test_a_fill_is_valued_at_its_own_price_slippage_included():
    """10,000 USDT, a market buy of 1.6 BTC filled at 60,300 (the open 60,000 plus slippage): the
    account holds 1.6 BTC bought 480 USD above the mark, equity 9,999 - 480 - fee < IM 9,600:
    refused at the fill. Valued at the open (as the check did), equity was 9,951 and it filled."""
    book, data = catalog(), feed()
    ledger = ledger_with(book, {"USDT": 10_000.0})
    account = ledger.accounts["binance"]
    fee = 1.6 * 60_300.0 * book.tradable(BTC).taker_fee
    equity, initial = figures(account, book, data.mark_open[2], grown(account, BTC, 1.6, 60_300.0))
    at_open, _ = figures(account, book, data.mark_open[2], grown(account, BTC, 1.6, 60_000.0))
    assert equity - fee < initial < at_open - fee and initial == pytest.approx(9_600.0)
    order = Order(7, BTC, 1.6, "market", float("nan"), False, "cross", 10.0, int(data.ts[1]), "")
    (rejected,) = fill_events(ledger, context(book, data, 2), order, 60_300.0, "taker", int(data.ts[2]))
    assert isinstance(rejected, ev.OrderRejected) and f"against equity {equity - fee:.2f}" in rejected.reason


# --------------------------------------------------------------------------------- 2. other instruments' orders
def test_open_orders_on_other_instruments_count_when_an_order_is_placed():
    """10,000 USDT: long 1.5 BTC (9,000 of initial margin) then long 30 ETH (9,000) at one bar. The
    second is refused when placed: with the first counted as filled the account needs 18,000,
    as a cross account reserves the open orders' margin. It used to be refused only at its fill."""
    book, data = catalog(collateral={"USDT": 10_000.0}), feed()
    script = {0: [PlaceOrder.market(BTC, 1.5), PlaceOrder.market(ETH, 30.0)]}
    result, _ = run(book, data, script)
    (rejected,) = of_type(result.events, ev.OrderRejected)
    assert rejected.instrument == ETH and not rejected.reason.startswith("at fill")
    (accepted,) = of_type(result.events, ev.OrderAccepted)
    (filled,) = of_type(result.events, ev.OrderFilled)
    assert accepted.instrument == filled.instrument == BTC
    # the figures of the refusal: both orders filled at the last close (bar 0)
    account = replay(empty_ledger(book), [e for e in result.events if isinstance(e, ev.CollateralDeposited)]
                     ).accounts["binance"]
    fee = 30.0 * 3_000.0 * book.tradable(ETH).taker_fee
    equity, initial = figures(account, book, data.mark_close[0], {
        BTC: Position(BTC, 1.5, 60_000.0, "cross", 0.0, "USDT"), ETH: Position(ETH, 30.0, 3_000.0, "cross", 0.0,
                                                                                 "USDT")})
    assert initial == pytest.approx(18_000.0)
    assert f"initial margin would be {initial:.2f} USD" in rejected.reason
    assert f"against equity {equity - fee:.2f}" in rejected.reason


def test_at_a_fill_other_resting_orders_are_not_counted_as_cross_mode_does():
    """Resting: a buy of 3 BTC and a sell of 3 BTC far above the market. When the buy fills, the
    account holds long 3 (IM 18,000) on 9,999 of equity whatever the sell does later: refused, in
    portfolio mode as in cross mode (its fill check leaves the open orders out). Counting the sell
    as filled (as the check did) netted the buy to flat and let it through."""
    outcomes = {}
    for mode in ("portfolio", "cross"):
        book, data = catalog(mode), feed()
        ledger = ledger_with(book, {"USDT": 10_000.0}, orders=[(BTC, 3.0, 61_000.0), (BTC, -3.0, 90_000.0)])
        buy = ledger.accounts["binance"].orders[100]
        outcomes[mode] = fill_events(ledger, context(book, data, 2), buy, 60_000.0, "taker", int(data.ts[2]))
    for events in outcomes.values():
        assert [type(e) for e in events] == [ev.OrderRejected] and "at fill" in events[0].reason
    book = catalog()
    account = ledger_with(book, {"USDT": 10_000.0}).accounts["binance"]
    equity, initial = figures(account, book, feed().mark_open[2], grown(account, BTC, 3.0, 60_000.0))
    assert f"initial margin would be {initial:.2f} USD" in outcomes["portfolio"][0].reason
    assert initial == pytest.approx(18_000.0) and equity < initial


# --------------------------------------------------------------------------------- 3. before and after alike
def test_a_cut_is_judged_against_the_account_with_its_open_orders():
    """Long 1 BTC, a resting buy of 1 more, 8,000 USDT (over-committed). Selling 0.5 lowers the
    exposure the account has committed to (2 -> 1.5 BTC: IM 12,000 -> 9,000): accepted as a cut.
    Compared with the bare position (1 BTC: 6,000) as before, it looked like a rise and was refused."""
    book, data = catalog(), feed()
    ledger = ledger_with(book, {"USDT": 8_000.0}, fills=[(BTC, 1.0, 60_000.0)], orders=[(BTC, 1.0, 55_000.0)])
    account = ledger.accounts["binance"]
    marks = data.mark_close[1]
    _, held_initial = figures(account, book, marks, account.positions)
    committed, committed_initial = figures(account, book, marks, grown(account, BTC, 1.0, 60_000.0))
    _, after_initial = figures(account, book, marks, grown(account, BTC, 0.5, 60_000.0))
    assert held_initial < after_initial < committed_initial and committed < after_initial
    (accepted,) = decide(ledger, context(book, data, 1), PlaceOrder.market(BTC, -0.5), int(data.ts[1]))
    assert isinstance(accepted, ev.OrderAccepted)
    # adding instead (0.5 more on top of the resting buy: 2.5 BTC) is refused with that figure
    _, more_initial = figures(account, book, marks, grown(account, BTC, 1.5, 60_000.0))
    (rejected,) = decide(ledger, context(book, data, 1), PlaceOrder.market(BTC, 0.5), int(data.ts[1]))
    assert f"initial margin would be {more_initial:.2f} USD" in rejected.reason


def test_an_order_adding_to_a_resting_flip_is_not_taken_for_a_cut():
    """Long 1 BTC and a resting sell of 1.5 (the account committed to short 0.5), 4,000 USDT. Another
    sell of 0.3 takes the committed short to 0.8 (IM 3,000 -> 4,800 > equity 3,999.6): refused.
    Compared with the bare long 1 (6,000) as before, 4,800 looked like a cut and passed."""
    book, data = catalog(), feed()
    ledger = ledger_with(book, {"USDT": 4_000.0}, fills=[(BTC, 1.0, 60_000.0)], orders=[(BTC, -1.5, 65_000.0)])
    account = ledger.accounts["binance"]
    marks = data.mark_close[1]
    fee = 0.3 * 60_000.0 * book.tradable(BTC).taker_fee
    committed = next_position(account.positions[BTC], BTC, -1.5, 60_000.0, "cross", "USDT", 0.0)
    after = next_position(committed, BTC, -0.3, 60_000.0, "cross", "USDT", 0.0)
    _, held_initial = figures(account, book, marks, account.positions)
    _, committed_initial = figures(account, book, marks, {BTC: committed})
    equity, initial = figures(account, book, marks, {BTC: after})  # entries at 60,000: nothing realised
    assert committed_initial < initial < held_initial and initial > equity - fee
    (rejected,) = decide(ledger, context(book, data, 1), PlaceOrder.market(BTC, -0.3), int(data.ts[1]))
    assert isinstance(rejected, ev.OrderRejected)
    assert f"initial margin would be {initial:.2f} USD" in rejected.reason


# --------------------------------------------------------------------------------- 4. fees of inverse contracts
def test_an_inverse_contracts_fee_is_taken_from_equity_in_usd():
    """Short 100 contracts of 100 USD (coin-margined) at 60,000: IM 10,000 / 10 = 1,000 USD, taker
    fee 100 x 100 x rate USD (Binance COIN-M: fee = notional in coin x rate, i.e. 10,000 / 60,000 x
    rate BTC). USDT is chosen so equity sits half the USD fee above the margin: refused. Taking the
    fee's coin amount off USD equity (~0.0000833 x ...) let it through."""
    book, data = catalog(), feed()
    rate = book.tradable(INVERSE).taker_fee
    fee_usd = 100 * 100.0 * rate
    account = ledger_with(book, {"USDT": 1.0}).accounts["binance"]
    marks = data.mark_close[1]
    positions = grown(account, INVERSE, -100.0, 60_000.0, inverse=True)
    per_usdt, initial = figures(account, book, marks, positions)
    usdt = (initial + fee_usd / 2) / per_usdt  # equity is the USDT at its ratio (the short opens at the mark)
    equity, _ = figures(account, book, marks, positions, {"USDT": usdt})
    assert initial == pytest.approx(1_000.0) and equity - fee_usd < initial < equity - fee_usd / 60_000.0
    ledger = ledger_with(book, {"USDT": usdt})
    (rejected,) = decide(ledger, context(book, data, 1), PlaceOrder.market(INVERSE, -100.0), int(data.ts[1]))
    assert isinstance(rejected, ev.OrderRejected)
    assert f"against equity {equity - fee_usd:.2f}" in rejected.reason
    # the fee as the fill charges it (FeeCharged, BTC) is the same amount: coin x price = USD
    order = Order(7, INVERSE, -100.0, "market", float("nan"), False, "cross", 10.0, int(data.ts[1]), "")
    (at_fill,) = fill_events(ledger, context(book, data, 2), order, 60_000.0, "taker", int(data.ts[2]))
    assert f"against equity {equity - fee_usd:.2f}" in at_fill.reason
    # with a little more USDT it passes and fills; the fee charged is the one the check took off
    richer = ledger_with(book, {"USDT": usdt + fee_usd})
    filled = fill_events(richer, context(book, data, 2), order, 60_000.0, "taker", int(data.ts[2]))
    assert [type(e) for e in filled] == [ev.OrderFilled, ev.FeeCharged]
    assert filled[1].asset == "BTC" and filled[1].amount * 60_000.0 == pytest.approx(fee_usd)
    assert apply(richer, filled[0]).accounts["binance"].positions[INVERSE].quantity == -100.0


def test_adding_to_an_inverse_long_averages_its_entry_harmonically():
    """Long 100 contracts of 100 USD bought at 50,000, the price now 60,000 (+2,000 USD); add 300
    at 60,000: the ledger's entry is 400 / (100 / 50,000 + 300 / 60,000) = 57,142.86 (harmonic),
    the PnL still 2,000; IM 40,000 / 10 = 4,000. With the USDT set 100 USD below / above what the
    order needs, it is refused / accepted; the weighted arithmetic mean (57,500: PnL 1,739) would
    refuse both and the old entry for all 400 (PnL 8,000) accept both."""
    book, data = catalog(), feed()
    fee_usd = 300 * 100.0 * book.tradable(INVERSE).taker_fee
    bought = ev.OrderFilled(T0, "binance", INVERSE, 1, 100.0, 50_000.0, "taker", 0.0, 0.0, "BTC", "perp", "", True)
    held = replay(empty_ledger(book), [bought]).accounts["binance"]
    positions = grown(held, INVERSE, 300.0, 60_000.0, inverse=True)
    assert positions[INVERSE].entry_price == pytest.approx(400 / (100 / 50_000 + 300 / 60_000), rel=1e-12)
    marks = data.mark_close[1]
    at_zero, initial = figures(held, book, marks, positions, {"USDT": 0.0})
    per_usdt = figures(held, book, marks, positions, {"USDT": 1.0})[0] - at_zero
    arithmetic = {INVERSE: Position(INVERSE, 400.0, 57_500.0, "cross", 0.0, "BTC")}
    old_entry = {INVERSE: Position(INVERSE, 400.0, 50_000.0, "cross", 0.0, "BTC")}
    assert initial == pytest.approx(4_000.0) and at_zero == pytest.approx(2_000.0)
    for gap, refused in ((-100.0, True), (100.0, False)):
        usdt = (initial + fee_usd + gap - at_zero) / per_usdt
        assert figures(held, book, marks, positions, {"USDT": usdt})[0] - fee_usd == pytest.approx(initial + gap)
        assert (figures(held, book, marks, old_entry, {"USDT": usdt})[0] - fee_usd > initial
                > figures(held, book, marks, arithmetic, {"USDT": usdt})[0] - fee_usd)
        ledger = replay(empty_ledger(book), [ev.CollateralDeposited(T0, "binance", "USDT", usdt), bought])
        (decided,) = decide(ledger, context(book, data, 1), PlaceOrder.market(INVERSE, 300.0), int(data.ts[1]))
        assert isinstance(decided, ev.OrderRejected if refused else ev.OrderAccepted)


def test_a_resting_reduce_only_order_is_not_credited_as_a_cut():
    """Long 1 BTC at 60,000, a resting reduce-only sell of 1 (a take-profit), 10,000 USDT. A buy of
    0.8 leaves long 1.8 (IM 10,800 > equity 9,999) unless the take-profit fills: refused, in
    portfolio mode as in cross mode (which reserves nothing for reduce-only orders either).
    Counting the take-profit as filled would value the account at long 0.8 (4,800) and accept."""
    decisions = {}
    for mode in ("portfolio", "cross"):
        book, data = catalog(mode), feed()
        ledger = ledger_with(book, {"USDT": 10_000.0}, fills=[(BTC, 1.0, 60_000.0)])
        ledger = apply(ledger, ev.OrderAccepted(T0, "binance", BTC, 100, -1.0, "limit", 70_000.0, True, "cross",
                                                10.0, ""))
        (decisions[mode],) = decide(ledger, context(book, data, 1), PlaceOrder.market(BTC, 0.8), int(data.ts[1]))
    assert all(isinstance(d, ev.OrderRejected) for d in decisions.values())
    book = catalog()
    account = ledger_with(book, {"USDT": 10_000.0}, fills=[(BTC, 1.0, 60_000.0)]).accounts["binance"]
    equity, initial = figures(account, book, feed().mark_close[1], grown(account, BTC, 0.8, 60_000.0))
    _, credited = figures(account, book, feed().mark_close[1], {BTC: Position(BTC, 0.8, 60_000.0, "cross", 0.0,
                                                                              "USDT")})
    assert credited < equity < initial == pytest.approx(10_800.0)
    assert f"initial margin would be {initial:.2f} USD" in decisions["portfolio"].reason
