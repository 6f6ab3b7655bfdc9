"""`decide`: turn a strategy's command into domain events, or a rejection event with the reason.

Checks mirror an exchange's order entry: known instrument, lot size, minimum notional, reduce-only,
a position no larger than the last tier's cap, leverage within the bracket's maximum at the new
notional, and enough free collateral for the initial margin plus the taker fee. Prices for the
checks are the last close (the fill itself happens at the next bar's open).
"""

from __future__ import annotations

import math

import attrs

from xmargin.ledger import commands as cmd
from xmargin.ledger import events as ev
from xmargin.margin import formulas as margin
from xmargin.margin.accounting import asset_price, free_collateral, leverage_for
from xmargin.margin.modes import venue_mode
from xmargin.ledger.apply import next_position
from xmargin.ledger.state import Ledger
from xmargin.ledger.transfers import decide_transfer

LOT_TOLERANCE = 1e-6
BEYOND_LARGEST = "above the largest the rules allow at any leverage"  # in the reason of such a refusal


def _reject(ts, exchange, instrument, order_id, quantity, reason, tag=""):
    return [ev.OrderRejected(ts, exchange, instrument, order_id, quantity, reason, tag)]


def exposure_increase(held: float, quantity: float) -> float:
    """How much |position| grows when `quantity` is added to a position of `held` (>= 0)."""
    return max(abs(held + quantity) - abs(held), 0.0)


def _position_text(table, size: float, asset: str, inverse: bool) -> str:
    """`size` in `table`'s unit, for a reason: contracts, else a notional in `asset`."""
    if table.unit == "contracts":
        return f"{size:,.0f} contracts"
    return f"{size:.8g} {asset}" if inverse else f"{size:,.2f} {asset}"


def beyond_largest_position(key: str, table, quantity: float, notional: float, contract_size: float,
                            asset: str, inverse: bool) -> str:
    """Why a position of `quantity` (|notional| in `asset`) is larger than any its venue takes, or ""
    when it is not: past the cap of `table`'s last tier (notional brackets, or OKX tiers in contracts;
    `contract_size` > 0 for inverse contracts), which no leverage lifts. Binance (-2027), Bybit, OKX
    and Hyperliquid refuse such an order at entry (docs/rules.md, "The largest position"); a table
    whose last tier is open (cap null) never refuses."""
    size, largest = table.position_size(quantity, notional, contract_size), table.largest()
    if not size > largest * (1 + 1e-9):
        return ""
    return (f"position larger than the venue takes: {key} would reach {_position_text(table, size, asset, inverse)}, "
            f"{BEYOND_LARGEST}, {_position_text(table, largest, asset, inverse)} (the last tier's cap), so the venue "
            "refuses the order. Fix: a smaller order (a lower leverage does not lift this cap)")


def _at_leverage(table, leverage: float, asset: str, inverse: bool) -> str:
    """The fix for a leverage above the bracket's: the largest position at that leverage."""
    largest = table.largest(leverage)
    held = f"at most {_position_text(table, largest, asset, inverse)}" if largest > 0 else "nothing (no tier allows it)"
    return f"; at {leverage:g}x the position may be {held}, so lower the leverage or place a smaller order"


def spot_buy_shortfall(account, context, instrument, notional: float, fee: float, prices=None) -> str:
    """Why a spot buy of `notional` (+ fee) cannot be paid, or "" when it can. Spot is never bought
    on credit: the quote balance must cover it, and the cross pool must stay above its initial margin
    (when the margin mode pools the bought coin with the quote asset, as multi-asset does, the coin
    itself counts back as collateral, as the mode counts it: after its haircut).
    `prices` = (marks, lasts) rows to value at; default the current bar's closes (decision time)."""
    catalog, feed, row = context.catalog, context.feed, context.row
    marks, lasts = prices if prices is not None else (feed.mark_close[row], feed.close[row])
    cost = notional + fee
    balance = account.balance(instrument.quote)
    if cost > balance + 1e-9:
        return f"insufficient {instrument.quote}: buying needs {cost:.2f}, the balance is {balance:.2f}"
    free = free_collateral(account, catalog, marks, lasts, instrument.quote)
    mode = venue_mode(catalog, account.exchange)
    if mode.pool_of(instrument.base) == mode.pool_of(instrument.quote):
        price = asset_price(catalog, account.exchange, instrument.base, marks)
        rules = catalog.venues[account.exchange].rules
        quantity = notional / price if price > 0 else 0.0
        cost -= mode.module.counted_collateral(rules, instrument.base, quantity, price)
    if cost > free + 1e-9:
        return f"insufficient free collateral: buying costs {cost:.2f} of it, free {free:.2f}"
    return ""


def whole_account_check(account, context, instrument, quantity: float, price: float, fee: float, ts: int,
                        filling: int | None = None, prices=None, reduce_only: bool = False):
    """For a margin mode that margins the account as a whole (portfolio: `order_check`), why an order
    of `quantity` at `price` is refused ("" when it is not); None for the other modes, whose checks
    are per position. The check compares the account before and after the order, counted alike:
    at order time (`filling` None) both hold every open derivatives order of the account as filled
    at the last close (the margin the account reserves for them, like cross mode's open-order
    margin; reduce-only orders reserve nothing and are left out: counting them would credit a cut
    not yet made), and the order fills at the last close too; at its fill (`filling`: the order's
    id) the positions held and the fill at `price` (the other resting orders are not counted, as
    cross mode's fill check: `free_collateral(..., orders=False)`). A fill moves the account as the
    ledger does (`next_position`; realised PnL into the settle balance). A `reduce_only` order never
    takes the position past flat (its fill is clipped there): it stops at 0, and `fee` (the whole
    order's, in the settle asset; priced in USD at `price` for inverse contracts) is cut to the
    clipped part. Spot trades move the quote and base balances.
    `prices` = (marks, lasts) rows to value at; default the current bar's closes (decision time)."""
    mode = venue_mode(context.catalog, account.exchange)
    if not mode.margined_as_a_whole:
        return None
    catalog, feed, row = context.catalog, context.feed, context.row
    marks, lasts = prices if prices is not None else (feed.mark_close[row], feed.close[row])
    before = account if filling is not None else _with_open_orders(account, catalog, lasts)
    if instrument.is_inverse:
        fee *= price  # coin -> USD: |quantity| x contract size x rate
    if instrument.is_derivative:
        held = before.positions.get(instrument.key)
        start = held.quantity if held is not None else 0.0
        if reduce_only and start * (start + quantity) < 0:
            fee *= abs(start) / abs(quantity)
            quantity = -start
        at = price if filling is not None else float(lasts[catalog.tradable(instrument.key).column])
        after = _filled(before, catalog, instrument.key, quantity, at)
    else:
        balances = dict(before.balances)
        balances[instrument.quote] = balances.get(instrument.quote, 0.0) - quantity * price
        balances[instrument.base] = balances.get(instrument.base, 0.0) + quantity
        after = attrs.evolve(before, balances=balances)
    return mode.module.order_check(account, catalog, marks, ts, before, after, fee)


def _filled(account, catalog, key: str, quantity: float, price: float):
    """The account as a fill of `quantity` of derivative `key` at `price` leaves it, fees aside:
    the position as the ledger moves it (`next_position`), realised PnL into the settle balance."""
    instrument = catalog.tradable(key).instrument
    held = account.positions.get(key)
    balances, positions = account.balances, dict(account.positions)
    if held is not None and held.quantity * quantity < 0:
        closed = math.copysign(min(abs(quantity), abs(held.quantity)), held.quantity)
        balances = dict(balances)
        balances[instrument.settle] = balances.get(instrument.settle, 0.0) + margin.contract_pnl(
            closed, held.entry_price, price, instrument.is_inverse, instrument.contract_size)
    position = next_position(held, key, quantity, price, account.mode_for(key), instrument.settle, 0.0,
                             instrument.is_inverse)
    if position is None:
        positions.pop(key, None)
    else:
        positions[key] = position
    return attrs.evolve(account, balances=balances, positions=positions)


def _with_open_orders(account, catalog, lasts):
    """The account as if its open derivatives orders (reduce-only ones aside) had filled, in the
    order placed, at the last closes `lasts`."""
    for order in account.orders.values():
        tradable = catalog.tradable(order.instrument)
        if tradable.instrument.is_derivative and not order.reduce_only:
            account = _filled(account, catalog, order.instrument, order.quantity, float(lasts[tradable.column]))
    return account


def decide(ledger: Ledger, context, command, ts: int) -> list:
    """Events for one command at time `ts` (ns)."""
    handler = _HANDLERS.get(type(command))
    if handler is None:
        raise TypeError(f"not a command: {command!r}; see xmargin.ledger.commands")
    return handler(ledger, context, command, ts)


def _place(ledger: Ledger, context, c: cmd.PlaceOrder, ts: int) -> list:
    catalog, feed, row = context.catalog, context.feed, context.row
    order_id = ledger.next_order_id
    exchange = c.instrument.split(":", 1)[0]
    if c.instrument not in catalog.tradables:
        return _reject(ts, exchange, c.instrument, order_id, c.quantity,
                       f"unknown instrument {c.instrument!r}; this run trades {sorted(catalog.tradables)}", c.tag)
    tradable = catalog.tradable(c.instrument)
    instrument = tradable.instrument
    account = ledger.accounts[exchange]

    def reject(reason):
        return _reject(ts, exchange, c.instrument, order_id, c.quantity, reason, c.tag)

    if not math.isfinite(c.quantity) or c.quantity == 0:
        return reject(f"quantity {c.quantity} must be a non-zero finite number")
    if instrument.expiry is not None and ts >= instrument.expiry_ns:
        return reject(f"{c.instrument} expired at {instrument.expiry}: a dated future takes no orders after its "
                      "expiry (open positions were settled then); trade the next contract")
    if instrument.lot_size > 0:
        lots = abs(c.quantity) / instrument.lot_size
        if abs(lots - round(lots)) > LOT_TOLERANCE * max(1.0, lots):
            return reject(f"quantity {c.quantity} is not a multiple of the lot size {instrument.lot_size}")
    price = float(feed.close[row, tradable.column])
    if not math.isfinite(price):
        return reject("no price yet for this instrument (before its first bar)")
    if c.order_type == "limit" and not (math.isfinite(c.limit_price) and c.limit_price > 0):
        return reject(f"limit price {c.limit_price} must be a positive number")
    reference = c.limit_price if c.order_type == "limit" else price
    held_position = account.positions.get(c.instrument)
    held = held_position.quantity if held_position is not None else 0.0
    pending = sum(o.quantity for o in account.orders.values() if o.instrument == c.instrument) \
        if account.orders else 0
    after = held + pending + c.quantity  # the position if every order on it filled
    closes_all = abs(after) < 1e-12
    increase = exposure_increase(held + pending, c.quantity)
    if c.reduce_only and increase > 0:
        return reject(f"reduce-only order {c.quantity} would increase the position {held + pending}")
    inverse, size = instrument.is_inverse, instrument.contract_size
    order_value = abs(c.quantity) * (size if inverse else reference)  # quote units (USD for inverse)
    if order_value < instrument.min_notional and not (c.reduce_only or closes_all):
        return reject(f"notional {order_value:.2f} {instrument.quote} is below the minimum {instrument.min_notional}")
    notional = margin.contract_notional(c.quantity, reference, inverse, size)  # settle asset

    out = []
    if not instrument.is_derivative:
        base = instrument.base
        fee = notional * tradable.taker_fee
        whole = whole_account_check(account, context, instrument, c.quantity, reference, fee, ts)
        if c.quantity > 0 and c.quantity * reference + fee > account.balance(instrument.quote) + 1e-9:
            return reject(f"insufficient {instrument.quote}: buying needs {c.quantity * reference + fee:.2f}, the "
                          f"balance is {account.balance(instrument.quote):.2f}")
        if whole:
            return reject(whole)
        if c.quantity > 0 and whole is None:
            shortfall = spot_buy_shortfall(account, context, instrument, notional, fee)
            if shortfall:
                return reject(shortfall)
        elif c.quantity < 0 and account.balance(base) + 1e-12 < -c.quantity:
            return reject(f"insufficient {base}: selling {-c.quantity} but the balance is {account.balance(base)}")
        out.append(ev.OrderAccepted(ts, exchange, c.instrument, order_id, c.quantity, c.order_type,
                                    c.limit_price, c.reduce_only, "spot", 1.0, c.tag))
        return out

    mode = account.mode_for(c.instrument)
    venue = venue_mode(catalog, exchange)
    if c.margin_mode is not None and c.margin_mode not in venue.position_modes:
        return reject(f"margin mode {c.margin_mode} is not available in a {account.margin_mode} account; "
                      f"allowed {list(venue.position_modes)}")
    if c.margin_mode is not None and c.margin_mode != mode:
        if held != 0 or pending != 0:
            return reject(f"margin mode {c.margin_mode} requested but the position is open in {mode} mode")
        out.append(ev.MarginModeChanged(ts, exchange, c.instrument, c.margin_mode))
        mode = c.margin_mode
    leverage = leverage_for(account, catalog, c.instrument)
    if c.leverage is not None:
        leverage = float(c.leverage)
    new_notional = margin.contract_notional(after, reference, inverse, size)
    cap = margin.max_leverage(new_notional, tradable.brackets.for_quantity(after, size if inverse else 0.0))
    beyond = increase > 0 and beyond_largest_position(c.instrument, tradable.brackets, after, new_notional,
                                                      size if inverse else 0.0, instrument.settle, inverse)
    if beyond:
        return reject(beyond)
    if leverage > cap:
        if c.leverage is not None:
            return reject(f"leverage {leverage:g} exceeds the maximum {cap:g} for a notional of {new_notional:.2f}"
                          + _at_leverage(tradable.brackets, leverage, instrument.settle, inverse))
        leverage = cap  # the account's leverage is lowered to the bracket's (the venues refuse instead: docs/rules.md)
    if not leverage > 0:  # (nan too: it would poison every margin figure of the position)
        return reject(f"leverage {leverage} must be a positive number")
    if c.leverage is not None and c.leverage != account.leverage.get(c.instrument):
        out.append(ev.LeverageChanged(ts, exchange, c.instrument, leverage))
    whole = whole_account_check(account, context, instrument, c.quantity, reference,
                                notional * tradable.taker_fee, ts,
                                reduce_only=c.reduce_only) if venue.margined_as_a_whole else None
    if whole:
        return reject(whole)
    if increase > 0 and whole is None:
        required = margin.contract_notional(increase, reference, inverse, size) / leverage + notional * tradable.taker_fee
        free = free_collateral(account, catalog, feed.mark_close[row], feed.close[row], instrument.settle)
        if required > free + 1e-9:
            digits = ".8g" if inverse else ".2f"  # coin amounts need more than cents
            return reject(f"insufficient margin: the order needs {required:{digits}} {instrument.settle} (initial "
                          f"margin at {leverage:g}x plus taker fee), free collateral is {free:{digits}}")
    out.append(ev.OrderAccepted(ts, exchange, c.instrument, order_id, c.quantity, c.order_type, c.limit_price,
                                c.reduce_only, mode, leverage, c.tag))
    return out


def _cancel(ledger: Ledger, context, c: cmd.CancelOrder, ts: int) -> list:
    account = ledger.accounts.get(c.exchange)
    order = account.orders.get(c.order_id) if account is not None else None
    if order is None:
        return [ev.OrderRejected(ts, c.exchange, "", c.order_id, 0.0, f"cancel: no open order {c.order_id}", "")]
    return [ev.OrderCancelled(ts, c.exchange, order.instrument, c.order_id, "cancelled by strategy")]


def _set_leverage(ledger: Ledger, context, c: cmd.SetLeverage, ts: int) -> list:
    exchange = c.instrument.split(":", 1)[0]
    if c.instrument not in context.catalog.tradables:
        return _reject(ts, exchange, c.instrument, 0, 0.0, f"set leverage: unknown instrument {c.instrument!r}")
    tradable = context.catalog.tradable(c.instrument)
    position = ledger.accounts[exchange].positions.get(c.instrument)
    instrument = tradable.instrument
    mark = float(context.feed.mark_close[context.row, tradable.column])
    notional = margin.contract_notional(position.quantity, mark, instrument.is_inverse, instrument.contract_size) \
        if position else 0.0
    cap = margin.max_leverage(notional, tradable.brackets.for_quantity(position.quantity if position else 0.0,
                                                                       instrument.contract_size
                                                                       if instrument.is_inverse else 0.0))
    if not (0 < c.leverage <= cap):
        return _reject(ts, exchange, c.instrument, 0, 0.0,
                       f"set leverage: {c.leverage:g} is outside (0, {cap:g}] for a notional of {notional:.2f}")
    return [ev.LeverageChanged(ts, exchange, c.instrument, c.leverage)]


def _set_mode(ledger: Ledger, context, c: cmd.SetMarginMode, ts: int) -> list:
    exchange = c.instrument.split(":", 1)[0]
    account = ledger.accounts.get(exchange)
    if account is None or c.instrument not in context.catalog.tradables:
        return _reject(ts, exchange, c.instrument, 0, 0.0, f"set margin mode: unknown instrument {c.instrument!r}")
    if c.instrument in account.positions or any(o.instrument == c.instrument for o in account.orders.values()):
        return _reject(ts, exchange, c.instrument, 0, 0.0,
                       "set margin mode: close the position and cancel its orders first")
    return [ev.MarginModeChanged(ts, exchange, c.instrument, c.margin_mode)]


def _adjust(ledger: Ledger, context, c: cmd.AdjustIsolatedMargin, ts: int) -> list:
    exchange = c.instrument.split(":", 1)[0]
    account = ledger.accounts.get(exchange)
    position = account.positions.get(c.instrument) if account is not None else None
    if position is None or not position.is_isolated:
        return _reject(ts, exchange, c.instrument, 0, 0.0, "adjust margin: no isolated position on this instrument")
    if not math.isfinite(c.amount) or c.amount == 0:
        return _reject(ts, exchange, c.instrument, 0, 0.0,
                       f"adjust margin: amount {c.amount} must be a non-zero finite number")
    tradable = context.catalog.tradable(c.instrument)
    if c.amount > 0:
        free = free_collateral(account, context.catalog, context.feed.mark_close[context.row],
                               context.feed.close[context.row], position.asset)
        if c.amount > free + 1e-9:
            return _reject(ts, exchange, c.instrument, 0, 0.0,
                           f"adjust margin: adding {c.amount:.2f} {position.asset} but free collateral is {free:.2f}")
    else:
        mark = float(context.feed.mark_close[context.row, tradable.column])
        instrument = tradable.instrument
        notional = margin.contract_notional(position.quantity, mark, instrument.is_inverse, instrument.contract_size)
        upnl = margin.contract_pnl(position.quantity, position.entry_price, mark, instrument.is_inverse,
                                   instrument.contract_size)
        keep = notional / leverage_for(account, context.catalog, c.instrument)
        removable = max(position.isolated_margin + min(upnl, 0.0) - keep, 0.0)
        if -c.amount > removable + 1e-9:
            return _reject(ts, exchange, c.instrument, 0, 0.0,
                           f"adjust margin: removing {-c.amount:.2f} but only {removable:.2f} can leave the position")
    return [ev.IsolatedMarginAdjusted(ts, exchange, c.instrument, position.asset, c.amount)]


_HANDLERS = {
    cmd.PlaceOrder: _place,
    cmd.CancelOrder: _cancel,
    cmd.SetLeverage: _set_leverage,
    cmd.SetMarginMode: _set_mode,
    cmd.AdjustIsolatedMargin: _adjust,
    cmd.Transfer: decide_transfer,
}
