"""`apply(ledger, event) -> ledger`: one pure function per event type.

Nothing else changes ledger state. Replaying a run's event log through `replay` from the same
initial ledger reproduces its final state exactly (the floats are combined in the same order).
"""

from __future__ import annotations

from typing import Callable

import attrs

from xmargin.ledger import events as ev
from xmargin.margin.formulas import average_entry
from xmargin.ledger.state import Account, InFlight, Ledger, Order, Position

_APPLIERS: dict[type, Callable] = {}


def applies(event_type):
    def register(function):
        _APPLIERS[event_type] = function
        return function

    return register


def apply(ledger: Ledger, event) -> Ledger:
    """Fold one event into the ledger."""
    return _APPLIERS[type(event)](ledger, event)


applier_of = _APPLIERS.__getitem__  # event type -> its apply function (the event loop's direct dispatch)


def replay(ledger: Ledger, events) -> Ledger:
    for event in events:
        ledger = _APPLIERS[type(event)](ledger, event)
    return ledger


# The ledger applies a few hundred thousand events in a long run: these two build the new frozen
# values directly (what attrs.evolve does, without its per-call field introspection).
def _account(a: Account, balances=None, positions=None, orders=None, leverage=None, margin_modes=None,
             warning_levels=None, insurance_used=None) -> Account:
    return Account(a.exchange, a.margin_mode,
                   a.balances if balances is None else balances,
                   a.positions if positions is None else positions,
                   a.orders if orders is None else orders,
                   a.leverage if leverage is None else leverage,
                   a.margin_modes if margin_modes is None else margin_modes,
                   a.warning_levels if warning_levels is None else warning_levels,
                   a.insurance_used if insurance_used is None else insurance_used)


def _with_account(ledger: Ledger, account: Account, order_id: int | None = None) -> Ledger:
    """The ledger with `account` replaced; `order_id`: an order id now used (the next one is above it)."""
    accounts = dict(ledger.accounts)
    accounts[account.exchange] = account
    next_order_id = ledger.next_order_id if order_id is None else max(ledger.next_order_id, order_id + 1)
    return Ledger(accounts, ledger.in_flight, next_order_id, ledger.next_transfer_id, ledger.stopped)


def _credit(account: Account, asset: str, amount: float) -> Account:
    balances = dict(account.balances)
    balances[asset] = balances.get(asset, 0.0) + amount
    return _account(account, balances=balances)


def _positions_with(account: Account, instrument: str, position: Position | None) -> tuple[dict, dict | None]:
    """(positions, warning levels or None when unchanged) with `instrument`'s position replaced or
    removed; a closed position's margin-warning level goes with it."""
    positions = dict(account.positions)
    if position is not None:
        positions[instrument] = position
        return positions, None
    positions.pop(instrument, None)
    if instrument not in account.warning_levels:
        return positions, None
    levels = dict(account.warning_levels)
    del levels[instrument]
    return positions, levels


def _set_position(account: Account, instrument: str, position: Position | None) -> Account:
    """Replace or remove a position; a closed position's margin-warning level goes with it."""
    positions, levels = _positions_with(account, instrument, position)
    return _account(account, positions=positions, warning_levels=levels)


def _drop_order(account: Account, order_id: int) -> Account:
    orders = dict(account.orders)
    orders.pop(order_id, None)
    return _account(account, orders=orders)


def next_position(position: Position | None, instrument: str, quantity: float, price: float, margin_mode: str,
                  asset: str, margin_delta: float, inverse: bool = False) -> Position | None:
    """The position after a fill of `quantity` at `price`: average entry when adding (harmonic for
    inverse contracts), entry kept when reducing, the fill price when flipping. Margin moves by
    `margin_delta` (isolated)."""
    if position is None:
        return Position(instrument, quantity, price, margin_mode, margin_delta, asset)
    new_quantity = position.quantity + quantity
    margin = position.isolated_margin + margin_delta
    if abs(new_quantity) < 1e-12:
        return None
    if position.quantity * quantity > 0:
        entry = average_entry(position.quantity, position.entry_price, quantity, price, inverse)
    elif position.quantity * new_quantity > 0:
        entry = position.entry_price
    else:
        entry = price
    return Position(instrument, new_quantity, entry, position.margin_mode, margin, asset)


@applies(ev.CollateralDeposited)
def _deposited(ledger: Ledger, e: ev.CollateralDeposited) -> Ledger:
    return _with_account(ledger, _credit(ledger.accounts[e.exchange], e.asset, e.amount))


@applies(ev.OrderAccepted)
def _accepted(ledger: Ledger, e: ev.OrderAccepted) -> Ledger:
    account = ledger.accounts[e.exchange]
    orders = dict(account.orders)
    orders[e.order_id] = Order(e.order_id, e.instrument, e.quantity, e.order_type, e.limit_price, e.reduce_only,
                               e.margin_mode, e.leverage, e.ts, e.tag)
    return _with_account(ledger, _account(account, orders=orders), e.order_id)


@applies(ev.OrderRejected)
def _rejected(ledger: Ledger, e: ev.OrderRejected) -> Ledger:
    account = _drop_order(ledger.accounts[e.exchange], e.order_id)
    return _with_account(ledger, account, e.order_id)


@applies(ev.OrderCancelled)
def _cancelled(ledger: Ledger, e: ev.OrderCancelled) -> Ledger:
    return _with_account(ledger, _drop_order(ledger.accounts[e.exchange], e.order_id))


@applies(ev.OrderFilled)
def _filled(ledger: Ledger, e: ev.OrderFilled) -> Ledger:
    account = ledger.accounts[e.exchange]
    orders = dict(account.orders)
    orders.pop(e.order_id, None)
    balances = dict(account.balances)
    if e.market == "spot":  # base and quote balances move
        base = e.instrument.split(":", 1)[1].split("/")[0]
        balances[base] = balances.get(base, 0.0) + e.quantity
        balances[e.asset] = balances.get(e.asset, 0.0) + -e.quantity * e.price
        return _with_account(ledger, _account(account, balances=balances, orders=orders))
    order_mode = account.mode_for(e.instrument)
    position = next_position(account.positions.get(e.instrument), e.instrument, e.quantity, e.price, order_mode,
                             e.asset, e.margin_delta, e.inverse)
    balances[e.asset] = balances.get(e.asset, 0.0) + (e.realized_pnl - e.margin_delta)
    positions, levels = _positions_with(account, e.instrument, position)
    return _with_account(ledger, _account(account, balances=balances, positions=positions, orders=orders,
                                          warning_levels=levels))


@applies(ev.FeeCharged)
def _fee(ledger: Ledger, e: ev.FeeCharged) -> Ledger:
    return _with_account(ledger, _credit(ledger.accounts[e.exchange], e.asset, -e.amount))


@applies(ev.FundingSettled)
def _funding(ledger: Ledger, e: ev.FundingSettled) -> Ledger:
    account = ledger.accounts[e.exchange]
    if e.isolated:
        position = account.positions[e.instrument]
        position = attrs.evolve(position, isolated_margin=position.isolated_margin + e.amount)
        return _with_account(ledger, _set_position(account, e.instrument, position))
    return _with_account(ledger, _credit(account, e.asset, e.amount))


def _set_setting(ledger: Ledger, exchange: str, setting: str, instrument: str, value) -> Ledger:
    """One entry of a per-instrument setting of the account (leverage, margin mode, warning level)."""
    account = ledger.accounts[exchange]
    values = dict(getattr(account, setting))
    values[instrument] = value
    return _with_account(ledger, attrs.evolve(account, **{setting: values}))


@applies(ev.LeverageChanged)
def _leverage(ledger: Ledger, e: ev.LeverageChanged) -> Ledger:
    return _set_setting(ledger, e.exchange, "leverage", e.instrument, e.leverage)


@applies(ev.MarginModeChanged)
def _mode(ledger: Ledger, e: ev.MarginModeChanged) -> Ledger:
    return _set_setting(ledger, e.exchange, "margin_modes", e.instrument, e.margin_mode)


@applies(ev.IsolatedMarginAdjusted)
def _adjusted(ledger: Ledger, e: ev.IsolatedMarginAdjusted) -> Ledger:
    account = ledger.accounts[e.exchange]
    position = account.positions[e.instrument]
    position = attrs.evolve(position, isolated_margin=position.isolated_margin + e.amount)
    account = _credit(_set_position(account, e.instrument, position), e.asset, -e.amount)
    return _with_account(ledger, account)


@applies(ev.MarginWarningRaised)
def _warning(ledger: Ledger, e: ev.MarginWarningRaised) -> Ledger:
    return _set_setting(ledger, e.exchange, "warning_levels", e.instrument, e.level)


@applies(ev.PositionLiquidated)
def _liquidated(ledger: Ledger, e: ev.PositionLiquidated) -> Ledger:
    """Close `quantity` of the position at `price`: the released isolated margin and the realised
    PnL return to the wallet, the fee leaves it. A shortfall arrives as InsuranceFundUsed."""
    account = ledger.accounts[e.exchange]
    position = account.positions[e.instrument]
    remaining = position.quantity + e.quantity
    if abs(remaining) < 1e-12:
        new_position = None
    else:
        new_position = attrs.evolve(position, quantity=remaining,
                                    isolated_margin=position.isolated_margin - e.margin_released)
    account = _set_position(account, e.instrument, new_position)
    account = _credit(account, e.asset, e.margin_released + e.realized_pnl - e.fee)
    return _with_account(ledger, account)


@applies(ev.ContractExpired)
def _expired(ledger: Ledger, e: ev.ContractExpired) -> Ledger:
    """The position is gone; its realised PnL and released margin return to the wallet, the fee leaves it."""
    account = _set_position(ledger.accounts[e.exchange], e.instrument, None)
    account = _credit(account, e.asset, e.margin_released + e.realized_pnl - e.fee)
    return _with_account(ledger, account)


@applies(ev.InsuranceFundUsed)
def _insurance(ledger: Ledger, e: ev.InsuranceFundUsed) -> Ledger:
    account = ledger.accounts[e.exchange]
    if e.credited:
        account = _credit(account, e.asset, e.amount)
    used = dict(account.insurance_used)
    used[e.asset] = used.get(e.asset, 0.0) + e.amount
    return _with_account(ledger, attrs.evolve(account, insurance_used=used))


@applies(ev.CollateralConverted)
def _converted(ledger: Ledger, e: ev.CollateralConverted) -> Ledger:
    account = _credit(_credit(ledger.accounts[e.exchange], e.from_asset, -e.from_amount), e.to_asset, e.to_amount)
    return _with_account(ledger, account)


@applies(ev.TransferSent)
def _sent(ledger: Ledger, e: ev.TransferSent) -> Ledger:
    ledger = _with_account(ledger, _credit(ledger.accounts[e.exchange], e.asset, -(e.amount + e.fee)))
    in_flight = dict(ledger.in_flight)
    in_flight[e.transfer_id] = InFlight(e.transfer_id, e.exchange, e.destination, e.asset, e.amount, e.arrives_ts)
    return attrs.evolve(ledger, in_flight=in_flight, next_transfer_id=max(ledger.next_transfer_id, e.transfer_id + 1))


@applies(ev.TransferArrived)
def _arrived(ledger: Ledger, e: ev.TransferArrived) -> Ledger:
    in_flight = dict(ledger.in_flight)
    in_flight.pop(e.transfer_id, None)
    ledger = attrs.evolve(ledger, in_flight=in_flight)
    return _with_account(ledger, _credit(ledger.accounts[e.exchange], e.asset, e.amount))


@applies(ev.TransferRejected)
def _transfer_rejected(ledger: Ledger, e: ev.TransferRejected) -> Ledger:
    return attrs.evolve(ledger, next_transfer_id=max(ledger.next_transfer_id, e.transfer_id + 1))


@applies(ev.RunStopped)
def _stopped(ledger: Ledger, e: ev.RunStopped) -> Ledger:
    return attrs.evolve(ledger, stopped=True)
