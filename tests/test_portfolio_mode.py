"""Portfolio margin as a margin mode, through the engine: a hedge netted across spot and futures,
account-level liquidation (orders cancelled first, at the venue's requirement), the whole-account
order check, Binance's reduce-only band, time to expiry in the basis charge.

Expected numbers are derived here from the published formulas (Binance PM: liquidation at
uniMMR = equity / maintenance <= 1.05, reduce-only at <= 1.2; delivery bracket 2 % / 500 above
50,000 notional), not read from the engine.
"""

from __future__ import annotations

import attrs
import numpy as np
import pytest

from xmargin.ledger import events as ev
from xmargin.ledger.apply import replay
from xmargin.ledger.commands import PlaceOrder
from xmargin.ledger.decide import decide
from xmargin.ledger.state import Order, Position
from xmargin.margin.accounting import pool_metrics
from xmargin.margin.kernel import valuate
from xmargin.margin.modes import portfolio as portfolio_mode
from xmargin.margin.portfolio import portfolio_book, valuate_book
from xmargin.sim.execution import fill_events
from xmargin.venues.instruments import Instrument
from xmargin.venues.rules import load_rules
from xmargin.venues.venue import Catalog
from helpers_feed import (HOUR, T0, VenueSpec, context, empty_ledger, make_catalog, make_feed, of_type, perp, run,
                          spot)

FUTURE = "binance:BTC/USDT:USDT-241227"
SPOT = "binance:BTC/USDT"


def quarterly() -> Instrument:
    return Instrument(exchange="binance", symbol="BTC/USDT:USDT-241227", market="future", base="BTC", quote="USDT",
                      settle="USDT", lot_size=0.001, expiry="2024-12-27T08:00:00Z")


def catalog(mode: str, collateral: dict, rules: str = "binance-usdm", variant: str | None = None) -> Catalog:
    built = make_catalog({"binance": VenueSpec(load_rules(rules), margin_mode=mode, collateral=collateral,
                                               leverage=25)}, [spot("binance", "BTC", lot_size=1e-5), quarterly()])
    venues = dict(built.venues)
    if variant is not None:
        venues["binance"] = attrs.evolve(venues["binance"],
                                         portfolio_variant=venues["binance"].rules.portfolio.variant(variant, None))
    return Catalog.create(venues, built.tradables)  # with the asset price columns: BTC priced by its spot


def path(start: float, end: float, bars: int) -> list:
    return list(np.linspace(start, end, bars))


def test_a_spot_hedge_saves_the_short_future_in_portfolio_mode_only():
    closes = path(60_000.0, 84_000.0, 30)  # +40 %
    feed = make_feed([SPOT, FUTURE], np.column_stack([closes, closes]))
    script = {0: [PlaceOrder.market(FUTURE, -1.0, leverage=10)]}
    cross, _ = run(catalog("cross", {"USDT": 12_000.0, "BTC": 1.0}), feed, script)
    assert of_type(cross.events, ev.PositionLiquidated)  # the cross USDT pool does not see the BTC
    pm, _ = run(catalog("portfolio", {"USDT": 12_000.0, "BTC": 1.0}), feed, script)
    assert not of_type(pm.events, ev.PositionLiquidated)
    assert FUTURE in pm.ledger.accounts["binance"].positions
    # the run used the Binance variant in force at its first bar, and its pool is the one USD pool
    assert pm.catalog.venues["binance"].portfolio_variant.name == "binance-pm-pro-2022-04-18"
    marks = feed.mark_close[-1]
    (pool,) = pool_metrics(pm.ledger.accounts["binance"], pm.catalog, marks, feed.close[-1], int(feed.ts[-1])).values()
    entry = pm.ledger.accounts["binance"].positions[FUTURE].entry_price
    # the rule set's (2021 Multi-Assets) ratios: USDT 0.9999, BTC 0.95
    equity = 0.9999 * pm.ledger.accounts["binance"].balance("USDT") + 0.95 * 84_000.0 + (entry - 84_000.0)
    assert pool.asset == "USD" and pool.margin_balance == pytest.approx(equity)
    assert pool.maintenance_margin == pytest.approx(1.05 * (0.02 * 84_000.0 - 500.0))  # delivery bracket 2


def _short_account_run(extra_script=None, closes=None):
    closes = closes or path(60_000.0, 63_000.0, 31)
    feed = make_feed([SPOT, FUTURE], np.column_stack([closes, closes]))
    script = {0: [PlaceOrder.market(FUTURE, -1.0, leverage=25)], 1: [PlaceOrder.limit(SPOT, 0.001, 1_000.0)]}
    script.update(extra_script or {})
    book = catalog("portfolio", {"USDT": 3_000.0})
    result, _ = run(book, feed, script)
    return result, book, feed


def test_account_level_liquidation_at_unimmr_1_05_cancels_orders_first():
    result, book, feed = _short_account_run()
    (fill,) = [e for e in of_type(result.events, ev.OrderFilled) if e.instrument == FUTURE]
    (fee,) = [e for e in of_type(result.events, ev.FeeCharged) if e.instrument == FUTURE]
    # equity 0.9999 (3,000 - fee) + (entry - P) = 1.05 x (0.02 P - 500) (USDT at Binance's 0.9999 ratio)
    trigger = (0.9999 * (3_000.0 - fee.amount) + fill.price + 525.0) / 1.021
    (liquidated,) = of_type(result.events, ev.PositionLiquidated)
    assert liquidated.policy == "portfolio" and liquidated.quantity == pytest.approx(1.0)
    assert liquidated.trigger_price == pytest.approx(trigger, rel=1e-9)
    cancelled = of_type(result.events, ev.OrderCancelled)
    assert [c.reason for c in cancelled] == ["liquidation: open orders are cancelled first"]
    order = result.events.index(cancelled[0])
    assert order < result.events.index(liquidated) and cancelled[0].ts == liquidated.ts
    assert replay(empty_ledger(book), result.events) == result.ledger


def test_reduce_only_band_refuses_new_exposure_but_not_a_cut():
    # hold the price where 1.05 < uniMMR <= 1.2: 62,080 <= P < 62,189 (derived as above)
    closes = [60_000.0] * 3 + [62_120.0] * 10
    more = PlaceOrder.market(FUTURE, -0.01)
    cut = PlaceOrder.market(FUTURE, 0.01, reduce_only=True)
    result, _, _ = _short_account_run({5: [more, cut]}, closes)
    rejected = [e for e in of_type(result.events, ev.OrderRejected) if e.instrument == FUTURE]
    assert len(rejected) == 1 and rejected[0].quantity == -0.01
    assert "uniMMR" in rejected[0].reason and "at or below 1.2" in rejected[0].reason
    assert not of_type(result.events, ev.PositionLiquidated)
    assert result.ledger.accounts["binance"].positions[FUTURE].quantity == pytest.approx(-0.99)


def test_a_hedging_order_is_accepted_where_cross_refuses_it():
    """Deribit-style grid: 1 BTC at 0.95 against a 1 BTC short leaves a 5 % delta: 16 % x 3,000 =
    480 USD of maintenance, 600 of initial margin, inside 1,000 USDT; cross wants 6,000 at 10x."""
    closes = [60_000.0] * 5
    feed = make_feed([SPOT, FUTURE], np.column_stack([closes, closes]))
    script = {0: [PlaceOrder.market(FUTURE, -1.0, leverage=10)]}
    cross, _ = run(catalog("cross", {"USDT": 1_000.0, "BTC": 1.0}), feed, script)
    assert "insufficient margin" in of_type(cross.events, ev.OrderRejected)[0].reason
    pm, _ = run(catalog("portfolio", {"USDT": 1_000.0, "BTC": 1.0}, variant="deribit-grid"), feed, script)
    assert not of_type(pm.events, ev.OrderRejected)
    account = pm.ledger.accounts["binance"]
    (pool,) = pool_metrics(account, pm.catalog, feed.mark_close[-1], feed.close[-1], int(feed.ts[-1])).values()
    entry = account.positions[FUTURE].entry_price
    delta = 0.95 * 60_000.0 - 60_000.0
    assert pool.maintenance_margin == pytest.approx(0.16 * abs(delta) + 0.0, rel=1e-9)
    assert pool.initial_margin == pytest.approx(1.25 * pool.maintenance_margin)
    assert pool.margin_balance == pytest.approx(0.9999 * account.balance("USDT") + 0.95 * 60_000.0 + (entry - 60_000.0))
    # naked, the same short needs 1.25 x 16 % x 60,000 = 12,000: refused with the portfolio reason
    naked, _ = run(catalog("portfolio", {"USDT": 1_000.0}, variant="deribit-grid"), feed, script)
    assert "portfolio initial margin would be 12000.00" in of_type(naked.events, ev.OrderRejected)[0].reason


def test_basis_charge_shrinks_with_time_to_expiry():
    """OKX MR4 (the engine's reading, announcement 2025-01-02 'before' rate 7.5 % a year for BTC):
    7.5 % x years left x notional of the dated future."""
    okx_catalog = make_catalog({"okx": VenueSpec(load_rules("okx-swap"), margin_mode="portfolio")},
                               [Instrument(exchange="okx", symbol="BTC/USDT:USDT-241227", market="future", base="BTC",
                                           quote="USDT", settle="USDT", expiry="2024-12-27T08:00:00Z")])
    ledger = empty_ledger(okx_catalog)
    account = attrs.evolve(ledger.accounts["okx"], positions={
        "okx:BTC/USDT:USDT-241227": _position("okx:BTC/USDT:USDT-241227", -2.0, 60_000.0)})
    variant = load_rules("okx-swap").portfolio.variant("okx-pm-before-2025-01-06", None)
    prices = np.array([60_000.0])
    expiry = okx_catalog.tradable("okx:BTC/USDT:USDT-241227").instrument.expiry_ns
    for days in (80, 20, 0):
        now = expiry - days * 24 * HOUR
        terms = valuate_book(portfolio_book(account, okx_catalog, variant, prices, now), prices).terms["BTC"]
        assert terms["MR4"][0] == pytest.approx(0.075 * days / 365 * 120_000.0)


def _position(key, quantity, entry):
    return Position(key, quantity, entry, "cross", 0.0, "USDT")


def test_scan_and_tables_value_the_same_unit():
    """The surveillance unit and the View's pool are the same valuation (kernel + requirement)."""
    result, book, feed = _short_account_run(closes=[60_000.0] * 4)
    account = result.ledger.accounts["binance"]
    row = len(feed.ts) - 1
    (unit,) = portfolio_mode.risk_units(account, book, feed.mark_close[row], int(feed.ts[row]))
    value = valuate(unit.legs, feed.mark_close[row][unit.columns])
    (pool,) = pool_metrics(account, book, feed.mark_close[row], feed.close[row], int(feed.ts[row])).values()
    assert pool.maintenance_margin == pytest.approx(float(value.maintenance_margin[0]))
    assert pool.margin_balance == pytest.approx(float(value.equity[0]))
    assert T0 < int(feed.ts[row])


# ------------------------------------------------------------------ reduce-only orders larger than the position
@pytest.mark.parametrize("rules, variant, usdt", [
    # Deribit-style grid: spot 1 BTC (0.95), short 10 perp; unclipped, a reduce-only buy of 20 is valued as spot +
    # long 10: IM 1.25 x 16 % x 10.95 x 60,000 = 131,400 against equity ~117,000; clipped (flat): spot only,
    # IM 1.25 x 16 % x 0.95 x 60,000 = 11,400.
    ("binance-usdm", "deribit-grid", 60_000.0),
    # Bybit UTA PM (the variant in force, +-15 %): spot only 8,820 against spot + long 10 98,820; equity ~88,800.
    ("bybit-linear", None, 30_000.0),
])
def test_a_reduce_only_order_larger_than_the_short_is_valued_as_the_flat_position_it_produces(rules, variant, usdt):
    """The engine clips a reduce-only fill to the position (it never opens or flips one), so the
    whole-account check must value the account flat, not long `buy - short` (decide accepts a
    reduce-only order up to twice the position: it does not grow |position|)."""
    price, short, buy = 60_000.0, 10.0, 20.0
    exchange = rules.split("-")[0]
    spot_key, perp_key = f"{exchange}:BTC/USDT", f"{exchange}:BTC/USDT:USDT"
    built = make_catalog({exchange: VenueSpec(load_rules(rules), margin_mode="portfolio", collateral={}, leverage=10)},
                         [spot(exchange, "BTC", lot_size=1e-5), perp(exchange, "BTC")])
    venues = dict(built.venues)
    if variant is not None:
        venues[exchange] = attrs.evolve(venues[exchange],
                                        portfolio_variant=venues[exchange].rules.portfolio.variant(variant, None))
    book = Catalog.create(venues, built.tradables)
    feed = make_feed([spot_key, perp_key], np.full((3, 2), price))
    ts, marks, closes = int(feed.ts[1]), feed.mark_close[1], feed.close[1]
    ledger = replay(empty_ledger(book), [
        ev.CollateralDeposited(T0, exchange, "USDT", usdt), ev.CollateralDeposited(T0, exchange, "BTC", 1.0),
        ev.OrderFilled(T0, exchange, perp_key, 1, -short, price, "taker", 0.0, 0.0, "USDT", "perp", "")])
    account = ledger.accounts[exchange]
    taker = book.tradable(perp_key).taker_fee
    fee = buy * price * taker  # what the decide-time check charged (the whole order)

    def figures(positions):
        (unit,) = portfolio_mode.risk_units(attrs.evolve(account, positions=positions), book, marks, ts)
        value = valuate(unit.legs, marks[unit.columns])
        return float(value.equity[0]), float(value.maintenance_margin[0]), float(value.initial_margin[0])

    equity, maintenance, now_initial = figures(account.positions)
    flat_equity, _, flat_initial = figures({})
    long_equity, _, long_initial = figures({perp_key: _position(perp_key, buy - short, price)})
    assert flat_equity == pytest.approx(equity) and long_equity == pytest.approx(equity)  # at the entry price
    assert maintenance <= now_initial < equity - fee < long_initial and flat_initial < equity - fee
    # the same numbers through the mode's own check: the flat target passes, the crossed one is refused
    flat, crossed = (attrs.evolve(account, positions=positions)
                     for positions in ({}, {perp_key: _position(perp_key, buy - short, price)}))
    assert portfolio_mode.order_check(account, book, marks, ts, account, flat, fee) == ""
    assert f"initial margin would be {long_initial:.2f}" in portfolio_mode.order_check(
        account, book, marks, ts, account, crossed, fee)

    # decide: accepted (its target is clipped at flat)
    (accepted,) = decide(ledger, context(book, feed, 1), PlaceOrder.market(perp_key, buy, reduce_only=True), ts)
    assert isinstance(accepted, ev.OrderAccepted) and accepted.quantity == buy
    # fill (checked on its own: a resting order): clipped to the short, the account ends flat
    order = Order(7, perp_key, buy, "market", float("nan"), True, "cross", 10.0, ts, "")
    filled = fill_events(ledger, context(book, feed, 2), order, price, "taker", int(feed.ts[2]))
    assert [type(e) for e in filled] == [ev.OrderFilled, ev.FeeCharged]
    assert filled[0].quantity == pytest.approx(short) and filled[1].amount == pytest.approx(short * price * taker)
    assert perp_key not in replay(ledger, filled).accounts[exchange].positions
