"""Money flows: what each event moves into or out of each account, per asset.

Conservation rule of the ledger: applying an event changes an account's money in an asset
(wallet balance plus the margin of its isolated positions in that asset, `Account.wallet_total`)
by exactly the event's flow here, and money in flight changes by the transfer's amount. Every
event type registers a rule (an empty one when it moves no money); tests/test_events.py checks
that every event type has an applier and a rule, and the property tests and `xmargin verify`
check the rule on real runs.
"""

from __future__ import annotations

from typing import Callable

from xmargin.ledger import events as ev

_FLOWS: dict[type, Callable] = {}


def flows_of(*event_types):
    def register(function):
        for event_type in event_types:
            _FLOWS[event_type] = function
        return function

    return register


def flow_rules() -> dict[type, Callable]:
    return dict(_FLOWS)


def flows(event) -> dict[tuple[str, str], float]:
    """(exchange, asset) -> change of the account's money in that asset that `event` implies."""
    return _FLOWS[type(event)](event)


def in_flight_flow(event) -> dict[str, float]:
    """asset -> change of the money in flight between exchanges that `event` implies."""
    if isinstance(event, ev.TransferSent):
        return {event.asset: event.amount}
    if isinstance(event, ev.TransferArrived):
        return {event.asset: -event.amount}
    return {}


@flows_of(ev.CollateralDeposited, ev.FundingSettled, ev.TransferArrived)
def _credited(e) -> dict:
    return {(e.exchange, e.asset): e.amount}


@flows_of(ev.OrderFilled)
def _filled(e: ev.OrderFilled) -> dict:
    if e.market == "spot":  # the base arrives, the quote leaves
        base = e.instrument.split(":", 1)[1].split("/")[0]
        out = {(e.exchange, base): e.quantity}
        out[(e.exchange, e.asset)] = out.get((e.exchange, e.asset), 0.0) - e.quantity * e.price
        return out
    return {(e.exchange, e.asset): e.realized_pnl}  # margin moved to or from the position stays in


@flows_of(ev.FeeCharged)
def _fee(e: ev.FeeCharged) -> dict:
    return {(e.exchange, e.asset): -e.amount}


@flows_of(ev.PositionLiquidated, ev.ContractExpired)
def _liquidated(e) -> dict:
    """A liquidation or a settlement at expiry: realised PnL in, fee out (released isolated margin stays)."""
    return {(e.exchange, e.asset): e.realized_pnl - e.fee}


@flows_of(ev.InsuranceFundUsed)
def _insurance(e: ev.InsuranceFundUsed) -> dict:
    return {(e.exchange, e.asset): e.amount} if e.credited else {}  # not credited: the fund's own loss


@flows_of(ev.CollateralConverted)
def _converted(e: ev.CollateralConverted) -> dict:
    out = {(e.exchange, e.from_asset): -e.from_amount}
    out[(e.exchange, e.to_asset)] = out.get((e.exchange, e.to_asset), 0.0) + e.to_amount
    return out


@flows_of(ev.TransferSent)
def _sent(e: ev.TransferSent) -> dict:
    return {(e.exchange, e.asset): -(e.amount + e.fee)}


@flows_of(ev.OrderAccepted, ev.OrderRejected, ev.OrderCancelled, ev.LeverageChanged, ev.MarginModeChanged,
          ev.IsolatedMarginAdjusted, ev.MarginWarningRaised, ev.TransferRejected, ev.RunStopped)
def _none(e) -> dict:
    """Moves no money (IsolatedMarginAdjusted moves it between the wallet and a position: both count)."""
    return {}
