"""Execution: fill resting orders against a bar, settle funding. Each returns domain events.

Market orders fill at the bar's open moved by the slippage (buys up, sells down) and pay the
taker fee. A buy limit fills when the bar trades below its price (sell: above): at the limit as
maker, or at the open as taker when the bar opens through it. Nothing fills on a missing bar.
"""

from __future__ import annotations

import math

from xmargin.ledger import events as ev
from xmargin.margin import formulas as margin
from xmargin.margin.accounting import free_collateral
from xmargin.margin.units import ISOLATED
from xmargin.ledger.decide import exposure_increase, spot_buy_shortfall, whole_account_check


def fill_price(order, open_: float, high: float, low: float, slippage: float) -> tuple[float, str] | None:
    """(price, liquidity) of `order` on a bar, or None when it does not fill on this bar."""
    if order.order_type == "market":
        return open_ * (1.0 + slippage if order.quantity > 0 else 1.0 - slippage), "taker"
    limit = order.limit_price
    if order.quantity > 0:
        if open_ <= limit:
            return open_, "taker"
        if low < limit:
            return limit, "maker"
    else:
        if open_ >= limit:
            return open_, "taker"
        if high > limit:
            return limit, "maker"
    return None


def fill_events(ledger, context, order, price: float, liquidity: str, ts: int) -> list:
    """OrderFilled + FeeCharged for one order, or OrderRejected when margin no longer suffices."""
    catalog = context.catalog
    account = ledger.accounts[order.instrument.split(":", 1)[0]]
    tradable = catalog.tradable(order.instrument)
    instrument = tradable.instrument
    fee_rate = tradable.taker_fee if liquidity == "taker" else tradable.maker_fee
    notional = abs(order.quantity) * price
    fee = notional * fee_rate
    exchange = account.exchange
    # At the fill (the bar's open) only the open prices are known: never the bar's close.
    prices = (context.feed.mark_open[context.row], context.feed.open[context.row])
    if not instrument.is_derivative:
        whole = whole_account_check(account, context, instrument, order.quantity, price, fee, ts, order.order_id,
                                    prices)
        if whole:
            return [ev.OrderRejected(ts, exchange, order.instrument, order.order_id, order.quantity,
                                     f"at fill: {whole}", order.tag)]
        if order.quantity > 0 and whole is None:
            shortfall = spot_buy_shortfall(account, context, instrument, notional, fee, prices)
            if shortfall:
                return [ev.OrderRejected(ts, exchange, order.instrument, order.order_id, order.quantity,
                                         f"at fill: {shortfall}", order.tag)]
        elif account.balance(instrument.base) + 1e-12 < -order.quantity:
            return [ev.OrderRejected(ts, exchange, order.instrument, order.order_id, order.quantity,
                                     f"insufficient {instrument.base} at fill", order.tag)]
        return [ev.OrderFilled(ts, exchange, order.instrument, order.order_id, order.quantity, price, liquidity,
                               0.0, 0.0, instrument.quote, "spot", order.tag),
                ev.FeeCharged(ts, exchange, order.instrument, order.order_id, instrument.quote, fee)]

    position = account.positions.get(order.instrument)
    held = position.quantity if position is not None else 0.0
    quantity = order.quantity
    inverse, size = instrument.is_inverse, instrument.contract_size
    if order.reduce_only:
        if held == 0 or held * quantity > 0:
            return [ev.OrderCancelled(ts, exchange, order.instrument, order.order_id,
                                      "reduce-only order has no position left to reduce")]
        if abs(quantity) > abs(held):
            quantity = -held
    fee = margin.contract_notional(quantity, price, inverse, size) * fee_rate  # settle asset
    # the whole account valued as the fill leaves it: a reduce-only order at its clipped quantity
    whole = whole_account_check(account, context, instrument, quantity, price, fee, ts, order.order_id, prices)
    if whole:
        return [ev.OrderRejected(ts, exchange, order.instrument, order.order_id, order.quantity,
                                 f"at fill: {whole}", order.tag)]
    closed = min(abs(quantity), abs(held)) if held * quantity < 0 else 0.0
    realized = margin.contract_pnl(math.copysign(closed, held), position.entry_price, price, inverse, size) \
        if closed else 0.0
    increase = exposure_increase(held, quantity)
    mode = position.margin_mode if position is not None else account.mode_for(order.instrument)
    margin_delta = 0.0
    if increase > 0 and whole is None:
        free = free_collateral(account, catalog, *prices, instrument.settle, orders=False)  # the open
        # orders' margin (this order is one of them) is not reserved against the fill
        required = margin.contract_notional(increase, price, inverse, size) / order.leverage + fee
        if required > free + max(realized, 0.0) + 1e-9:
            digits = ".8g" if inverse else ".2f"
            return [ev.OrderRejected(ts, exchange, order.instrument, order.order_id, order.quantity,
                                     f"insufficient margin at fill: needs {required:{digits}} {instrument.settle}, "
                                     f"free collateral {free:{digits}}", order.tag)]
    if mode == ISOLATED:
        if closed and position is not None:
            margin_delta -= position.isolated_margin * closed / abs(held)
        if increase > 0:
            margin_delta += margin.contract_notional(increase, price, inverse, size) / order.leverage
    return [ev.OrderFilled(ts, exchange, order.instrument, order.order_id, quantity, price, liquidity, realized,
                           margin_delta, instrument.settle, instrument.market, order.tag, inverse),
            ev.FeeCharged(ts, exchange, order.instrument, order.order_id, instrument.settle, fee)]


def funding_events(ledger, context, row: int, settlements) -> list:
    """FundingSettled for every position on an instrument settling funding at this bar.

    payment = quantity x mark x rate, paid by longs when the rate is positive (the account
    receives `-quantity x mark x rate`). The mark is the mark price at the bar's open.
    """
    feed = context.feed
    out = []
    ts = int(feed.ts[row])
    for column, rate in settlements:
        key = feed.keys[column]
        exchange = key.split(":", 1)[0]
        position = ledger.accounts[exchange].positions.get(key)
        if position is None:
            continue
        mark = float(feed.mark_open[row, column])
        if not math.isfinite(mark):
            continue
        instrument = context.catalog.tradable(key).instrument
        amount = -math.copysign(margin.contract_notional(position.quantity, mark, instrument.is_inverse,
                                                         instrument.contract_size), position.quantity) * rate
        out.append(ev.FundingSettled(ts, exchange, key, position.asset, position.quantity, mark, float(rate), amount,
                                     position.is_isolated))
    return out
