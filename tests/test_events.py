"""Every event type has exactly one applier (xmargin.ledger.apply) and a money-flow rule
(xmargin.ledger.flows), and applying any event moves each account's money per asset (wallet plus
isolated margin) by exactly its rule and the money in flight by the transfer: checked here on a
hand-built log that uses every event type, and on random runs in tests/test_collateral_properties.py
and tests/test_ledger_properties.py."""

from __future__ import annotations

from collections import defaultdict

import pytest

from xmargin.ledger import events as ev
from xmargin.ledger.apply import _APPLIERS, apply
from xmargin.ledger.flows import flow_rules, flows, in_flight_flow
from xmargin.ledger.state import Ledger

BTC = "a:BTC/USDT:USDT"
SPOT = "a:ETH/USDT"
FUTURE = "b:BTC/USDT:USDT-241227"
T = 1_700_000_000_000_000_000


def test_every_event_type_has_an_applier_and_a_flow_rule():
    types = set(ev.event_types().values())
    assert types == set(_APPLIERS), ("event types without an applier", types - set(_APPLIERS))
    assert types == set(flow_rules()), ("event types without a money-flow rule", types - set(flow_rules()))


def _log() -> list:
    """A log that uses every event type once or more (amounts chosen so that nothing cancels)."""
    return [
        ev.CollateralDeposited(T, "a", "USDT", 10_000.0),
        ev.CollateralDeposited(T, "b", "USDT", 500.0),
        ev.MarginModeChanged(T, "a", BTC, "isolated"),
        ev.LeverageChanged(T, "a", BTC, 5.0),
        ev.OrderAccepted(T, "a", BTC, 1, 0.1, "market", 0.0, False, "isolated", 5.0, ""),
        ev.OrderFilled(T + 1, "a", BTC, 1, 0.1, 50_000.0, "taker", 0.0, 1_000.0, "USDT", "perp", ""),
        ev.FeeCharged(T + 1, "a", BTC, 1, "USDT", 2.5),
        ev.FundingSettled(T + 2, "a", BTC, "USDT", 0.1, 50_000.0, 0.0001, -0.5, True),
        ev.IsolatedMarginAdjusted(T + 3, "a", BTC, "USDT", 200.0),
        ev.MarginWarningRaised(T + 4, "a", BTC, 1, 0.7, 0.75),
        ev.OrderAccepted(T + 4, "a", BTC, 2, -0.05, "limit", 51_000.0, True, "isolated", 5.0, ""),
        ev.OrderCancelled(T + 5, "a", BTC, 2, "cancelled by strategy"),
        ev.OrderRejected(T + 5, "a", BTC, 3, 1.0, "insufficient margin", ""),
        ev.PositionLiquidated(T + 6, "a", BTC, -0.04, 45_000.0, 45_500.0, -200.0, 1.5, 480.0, "USDT", True,
                              "isolated"),
        ev.PositionLiquidated(T + 6, "a", BTC, -0.06, 40_000.0, 40_500.0, -600.0, 0.0, 719.5, "USDT", True,
                              "isolated"),
        ev.InsuranceFundUsed(T + 6, "a", BTC, "USDT", 12.0),
        ev.InsuranceFundUsed(T + 6, "a", BTC, "USDT", 30.0, credited=False),
        ev.OrderAccepted(T + 7, "a", SPOT, 4, 2.0, "market", 0.0, False, "spot", 1.0, ""),
        ev.OrderFilled(T + 8, "a", SPOT, 4, 2.0, 2_000.0, "taker", 0.0, 0.0, "USDT", "spot", ""),
        ev.CollateralConverted(T + 9, "a", "ETH", 0.5, "USDT", 990.0, 2_000.0, 10.0),
        ev.TransferSent(T + 10, "a", 1, "b", "USDT", 1_000.0, 1.0, T + 20),
        ev.TransferRejected(T + 10, "a", 2, "b", "USDT", 1e9, "insufficient"),
        ev.TransferArrived(T + 20, "b", 1, "a", "USDT", 1_000.0),
        ev.OrderFilled(T + 20, "b", FUTURE, 5, 0.01, 50_000.0, "taker", 0.0, 0.0, "USDT", "future", ""),
        ev.ContractExpired(T + 21, "b", FUTURE, 0.01, 51_000.0, 10.0, 0.255, 0.0, "USDT", "index mean"),
        ev.RunStopped(T + 21, "a", "on_liquidation = stop"),
    ]


def _money(ledger) -> dict:
    out = defaultdict(float)
    for exchange, account in ledger.accounts.items():
        for asset in set(account.balances) | {p.asset for p in account.positions.values()}:
            out[exchange, asset] = account.wallet_total(asset)
    return out


def test_applying_any_event_moves_money_exactly_by_its_flow_rule():
    log = _log()
    assert {type(e) for e in log} == set(ev.event_types().values())  # the log covers every type
    ledger = Ledger.create({"a": "cross", "b": "cross"})
    for event in log:
        before, flying_before = _money(ledger), defaultdict(float)
        for t in ledger.in_flight.values():
            flying_before[t.asset] += t.amount
        ledger = apply(ledger, event)
        after = _money(ledger)
        expected = flows(event)
        for key in set(before) | set(after) | set(expected):
            assert after[key] - before[key] == pytest.approx(expected.get(key, 0.0), abs=1e-9), (event, key)
        flying = defaultdict(float)
        for t in ledger.in_flight.values():
            flying[t.asset] += t.amount
        for asset in set(flying) | set(flying_before) | set(in_flight_flow(event)):
            assert flying[asset] - flying_before[asset] == pytest.approx(in_flight_flow(event).get(asset, 0.0))
    # the log's net effect, by hand: deposits 10,500; fee 2.5; funding -0.5; liquidations -200 - 1.5
    # and -600; insurance +12; spot: +2 ETH, -4,000 USDT; conversion -0.5 ETH, +990 USDT; withdrawal
    # fee 1 (the 1,000 arrived); the future settled at expiry: +10 PnL, -0.255 settlement fee
    money = _money(ledger)
    assert money["a", "USDT"] + money["b", "USDT"] == pytest.approx(
        10_500 - 2.5 - 0.5 - 201.5 - 600 + 12 - 4_000 + 990 - 1.0 + 10.0 - 0.255, abs=1e-9)
    assert not ledger.accounts["b"].positions
    assert money["a", "ETH"] == pytest.approx(1.5) and ledger.stopped
