"""Properties of collateral and transfers (hypothesis, modest budget).

* money is conserved across exchanges after every event: for each asset, the sum over exchanges of
  wallet totals (incl. isolated margin) + what is in flight = deposits + PnL flows - trading and
  liquidation fees - withdrawal fees (+ spot and conversion flows);
* nothing in flight counts as collateral: the pools see only the accounts' balances, TransferSent
  touches only the source (amount + fee out) and TransferArrived only the destination (amount in);
* haircut_amount is monotone, 1-Lipschitz (continuous) and never more than the amount.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xmargin.ledger import events as ev
from xmargin.margin.accounting import pool_metrics
from xmargin.margin.collateral import collateral_value, haircut_amount, schedule_from
from xmargin.ledger.commands import PlaceOrder, Transfer
from xmargin.ledger.apply import apply
from xmargin.margin.risk import risk_units
from xmargin.ledger.flows import flows
from xmargin.venues.venue import Catalog
from helpers_feed import VenueSpec, make_catalog, make_feed, perp, rules, run, spot

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BARS = 24
KEYS = ("binance:ETH/USDT:USDT", "binance:BTC/USDT", "bybit:ETH/USDT:USDT")


def _catalog(binance_mode: str):
    venues = {
        "binance": VenueSpec(rules("binance-usdm", fee_rate=0.01), margin_mode=binance_mode,
                             collateral={"USDT": 2000.0, "BTC": 0.4}, withdrawal_fees={"USDT": 1.5},
                             transfer_delay_minutes={"USDT": 90.0, "BTC": 30.0}),
        "bybit": VenueSpec(rules("bybit-linear"), margin_mode="cross", collateral={"USDT": 2000.0},
                           transfer_delay_minutes={"USDT": 45.0}),
    }
    built = make_catalog(venues, [perp("binance", "ETH"), spot("binance", "BTC"), perp("bybit", "ETH")])
    return Catalog.create(built.venues, built.tradables)


@st.composite
def scenarios(draw):
    eth_steps = draw(st.lists(st.floats(-0.12, 0.12), min_size=BARS, max_size=BARS))
    btc_steps = draw(st.lists(st.floats(-0.1, 0.06), min_size=BARS, max_size=BARS))
    eth = 2500.0 * np.cumprod(1.0 + np.array(eth_steps))
    btc = 60_000.0 * np.cumprod(1.0 + np.array(btc_steps))
    # lasting gaps from a drawn bar on: liquidations, insurance and auto-exchange get exercised
    eth[draw(st.integers(1, BARS - 1)):] *= 1.0 + draw(st.sampled_from([0.3, -0.3, 0.0, 0.5, -0.5]))
    btc[draw(st.integers(1, BARS - 1)):] *= 1.0 + draw(st.sampled_from([-0.5, 0.0, -0.3, 0.2]))
    spread = draw(st.floats(-0.01, 0.01))
    close = np.column_stack([eth, btc, eth * (1.0 + spread)])
    funding = draw(st.lists(st.tuples(st.integers(1, BARS - 1), st.sampled_from([0, 2]),
                                      st.floats(-0.003, 0.003)), max_size=4, unique_by=lambda f: (f[0], f[1])))
    commands = st.one_of(
        st.builds(lambda k, lots: PlaceOrder.market(k, lots * 0.01), st.sampled_from([KEYS[0], KEYS[2]]),
                  st.integers(-1500, 1500).filter(bool)),
        st.builds(lambda lots: PlaceOrder.market(KEYS[1], lots * 0.001), st.integers(-20, 20).filter(bool)),
        st.builds(lambda amount, src: Transfer("USDT", amount, src, "bybit" if src == "binance" else "binance"),
                  st.floats(1.0, 2500.0), st.sampled_from(["binance", "bybit"])),
        st.builds(lambda amount: Transfer("BTC", amount, "binance", "bybit"), st.floats(0.001, 0.06)),
    )
    script = draw(st.dictionaries(st.integers(0, BARS - 2), st.lists(commands, min_size=1, max_size=3),
                                  max_size=8))
    # an opening book at the first bar so that the gaps hit positions (10x default leverage)
    opening = [PlaceOrder.market(KEYS[0], draw(st.sampled_from([-12.0, 12.0, -30.0, 30.0]))),
               PlaceOrder.market(KEYS[2], draw(st.sampled_from([6.0, -6.0, 0.5])))]
    script[0] = opening + script.get(0, [])
    mode = draw(st.sampled_from(["cross", "multi-asset"]))
    return mode, make_feed(KEYS, close, funding=funding), script


def _flows(event) -> dict:
    """(exchange, asset) -> wallet change implied by one event: the ledger's own rule."""
    return flows(event)


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-7 * max(1.0, abs(a), abs(b))


@SETTINGS
@given(scenarios())
def test_money_is_conserved_across_exchanges_and_nothing_in_flight_counts(scenario):
    mode, feed, script = scenario
    catalog = _catalog(mode)
    result, _ = run(catalog, feed, script)
    ledger = result.initial_ledger
    # per asset: deposits + PnL flows - fees - withdrawal fees, transfers excluded
    expected: dict[str, float] = {}
    assets = ("USDT", "BTC")
    sent_any = False
    for event in result.events:
        before = ledger
        ledger = apply(ledger, event)
        flows = _flows(event)
        for (exchange, asset), amount in flows.items():
            if isinstance(event, ev.TransferSent):
                expected[asset] = expected.get(asset, 0.0) - event.fee  # only the fee leaves the system
            elif not isinstance(event, ev.TransferArrived):
                expected[asset] = expected.get(asset, 0.0) + amount
        # every account moves by exactly this event's own flows: a transfer touches the source when
        # sent and the destination only when it arrives
        for exchange, account in ledger.accounts.items():
            for asset in assets:
                change = account.wallet_total(asset) - before.accounts[exchange].wallet_total(asset)
                assert _close(change, flows.get((exchange, asset), 0.0)), (event, exchange, asset, change)
        for asset in assets:
            held = sum(a.wallet_total(asset) for a in ledger.accounts.values())
            flying = sum(t.amount for t in ledger.in_flight.values() if t.asset == asset)
            assert _close(held + flying, expected.get(asset, 0.0)), (event, asset, held, flying)
        if ledger.in_flight:
            sent_any = True
            _check_pools_exclude_in_flight(ledger, catalog, feed)
    assert not result.ledger.in_flight or sent_any


def _check_pools_exclude_in_flight(ledger, catalog, feed) -> None:
    """The pools and the risk scan value the accounts' balances only; in-flight money is absent."""
    marks = feed.mark_close[-1]
    rules_ = {name: venue.rules for name, venue in catalog.venues.items()}
    for exchange, account in ledger.accounts.items():
        pools = pool_metrics(account, catalog, marks, marks)
        if exchange == "binance" and catalog.venues[exchange].margin_mode == "multi-asset":
            from xmargin.margin.collateral import schedule_for

            counted = 0.0
            for asset, balance in account.balances.items():
                price = 1.0 if asset == "USDT" else float(marks[catalog.asset_columns[(exchange, asset)]])
                counted += collateral_value(balance, price, schedule_for(rules_[exchange], asset))
            assert _close(pools["USD"].collateral_value, counted)
        else:
            for asset, pool in pools.items():
                assert _close(pool.cross_wallet_balance, account.balance(asset))
    for unit in risk_units(ledger, catalog, marks):
        if unit.isolated:
            continue
        account = ledger.accounts[unit.exchange]
        if unit.asset != "USD":
            assert _close(unit.equity_base, account.balance(unit.asset))


# ------------------------------------------------------------------------------------------------ haircuts
@st.composite
def schedules(draw):
    count = draw(st.integers(1, 6))
    bounds = sorted(draw(st.lists(st.floats(0.01, 1e6, allow_nan=False), min_size=count - 1,
                                  max_size=count - 1, unique=True)))
    open_end = draw(st.booleans())
    edges = [0.0, *bounds] + ([None] if open_end else [bounds[-1] * 2 if bounds else 10.0])
    ratios = draw(st.lists(st.floats(0.0, 1.0), min_size=count, max_size=count))
    unit = draw(st.sampled_from(["coin", "usd"]))
    return schedule_from("X", {"unit": unit, "tiers": [
        {"from": edges[n], "to": edges[n + 1], "ratio": ratios[n]} for n in range(count)]})


amounts = st.floats(-1e7, 1e7, allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(schedules(), amounts, amounts)
def test_haircut_amount_is_monotone_continuous_and_at_most_the_amount(schedule, a, b):
    low, high = sorted((a, b))
    h_low, h_high = haircut_amount(low, schedule), haircut_amount(high, schedule)
    slack = 1e-9 * max(1.0, abs(low), abs(high))
    assert h_low <= h_high + slack                               # monotone
    assert h_high - h_low <= (high - low) + slack                # 1-Lipschitz: continuous, ratios <= 1
    for x, h in ((low, h_low), (high, h_high)):
        assert h <= x + slack                                    # never more than the amount
        if x <= 0:
            assert h == x                                        # liabilities at full value
        else:
            assert h >= 0
    # at a tier boundary both sides agree (no jump)
    for tier in schedule.tiers[1:]:
        edge = tier.start
        step = edge * 1e-12
        jump = abs(haircut_amount(edge, schedule) - haircut_amount(edge - step, schedule))
        assert jump <= 2 * step + 1e-9 * max(1.0, edge)


@settings(max_examples=200, deadline=None)
@given(schedules(), st.floats(0.0, 1e4), st.floats(0.01, 1e5))
def test_collateral_value_never_exceeds_the_value(schedule, balance, price):
    value = collateral_value(balance, price, schedule)
    assert 0.0 <= value <= balance * price * (1 + 1e-12) + 1e-9
