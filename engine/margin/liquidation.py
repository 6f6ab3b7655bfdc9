"""Liquidation events for a breached risk unit: which positions close, at what price, with what
fee, and what the insurance fund absorbs.

What closes is the rule set's liquidation policy (`xmargin.margin.policies`: full, partial with
steps and backstop; an isolated position always closes whole; a portfolio-margin account cancels
its open orders and closes every position, its coin balances staying as they are). The prices: the trigger marks, or
the bankruptcy prices, where every position's price moves adversely by the same fraction r of its
trigger mark so that the unit's equity is exactly zero (closed form for linear positions,
bisection with inverse ones; the equity is the valuation kernel's).

The liquidation fee is `fee_rate` x closed notional, capped by the equity left, so a fee never
creates a debt. Whatever a closed-out pool or isolated position still owes is covered by the
insurance fund (`InsuranceFundUsed`): when a gap opens past the bankruptcy prices with a
bankruptcy fill, the trader still loses exactly the unit's money and the fund's unwind loss at
the market is recorded (`credited = False`: it does not touch the account).
"""

from __future__ import annotations

import numpy as np

from xmargin.ledger import events as ev
from xmargin.margin.kernel import equity_one, leg_value_one, valuate
from xmargin.margin.policies import POLICIES, Breached, close_isolated, close_portfolio


def _bankruptcy_prices(unit, triggers, equity: float, notionals: np.ndarray) -> np.ndarray:
    """Prices where the unit's equity is zero, every position's price moved adversely by the same
    fraction r of its trigger mark (collateral legs stay at the trigger). Linear positions only:
    r = equity / sum of notionals in closed form; with inverse contracts r is found by bisection."""
    positions = unit.positions
    direction = np.where(np.arange(len(triggers)) < positions, np.sign(unit.legs.quantity), 0.0)
    if not unit.inverse.any():
        total = float(notionals[:positions].sum())
        return triggers * (1.0 - direction * (equity / total if total > 0 else 0.0))

    def equity_at(r: float) -> float:
        return equity_one(unit.rows, unit.base, (triggers * (1.0 - direction * r)).tolist())

    low, high = 0.0, 1.0 - 1e-12
    if equity_at(high) > 0:  # cannot reach zero before a long's price does: close at the extreme
        return triggers * (1.0 - direction * high)
    for _ in range(80):
        middle = 0.5 * (low + high)
        if equity_at(middle) > 0:
            low = middle
        else:
            high = middle
    return triggers * (1.0 - direction * high)


def cancelled_orders(account, units, ts: int, reason: str) -> list:
    """OrderCancelled for the open orders that a liquidation of `units` (risk units of `account`)
    cancels before the positions close. The venues cancel first: Binance "the system will first
    cancel all open orders" (Liquidation Protocol, binance.com/en/support/faq/360033525271, as
    mirrored at docs.traderwagon.com/faq/futures-trading-introduction/liquidation-protocol, read
    2026-11); Bybit "all active orders will be canceled and the position will be taken over by the
    liquidation engine" (Liquidation Process, bybitglobal.com help article 000001098, 2024-01-24);
    OKX cancels orders, then liquidates partially, then fully. A pool or a whole-account unit
    cancels every open order of the account; an isolated position the orders on its instrument."""
    if any(not unit.isolated for unit in units):
        chosen = sorted(account.orders.items())
    else:
        instruments = {key for unit in units for key in unit.instruments}
        chosen = [(order_id, order) for order_id, order in sorted(account.orders.items())
                  if order.instrument in instruments]
    return [ev.OrderCancelled(ts, account.exchange, order.instrument, order_id, reason) for order_id, order in chosen]


def liquidation_events(ledger, catalog, breach, ts: int, last_partial_ns: int | None = None) -> list:
    """Events for one breach found by `xmargin.margin.risk.scan` (`breach.prices` are the trigger marks);
    `last_partial_ns`: when this unit last had a partial step (the policy's cooldown)."""
    unit = breach.unit
    rules = catalog.venues[unit.exchange].rules.liquidation
    account = ledger.accounts[unit.exchange]
    triggers = breach.prices
    legs = unit.legs
    value = valuate(legs, triggers)
    equity = float(value.equity[0])
    since = (ts - last_partial_ns) / 1e9 if last_partial_ns is not None else float("inf")
    breached = Breached(unit, catalog, triggers, value.unrealized_pnl, value.notional, equity,
                        float(value.maintenance_margin[0]), since)
    # (the open orders are cancelled before: `cancelled_orders`, once per account for the units breached together)
    events = []
    if unit.requirement is not None:  # account-level: close every position
        plan = close_portfolio(breached, rules)
    else:
        plan = close_isolated(breached, rules) if unit.isolated else POLICIES[rules.policy].plan(breached, rules)
    fills = triggers if plan.fill == "trigger" else _bankruptcy_prices(unit, triggers, equity, value.notional)

    left = equity  # in the unit's currency; a leg's money x its scale (its settle asset's price in it)
    remaining = {k: float(legs.quantity[k]) for k in range(unit.positions)}
    entries, sizes, scales = legs.entry.tolist(), legs.size.tolist(), legs.scale.tolist()
    for k, quantity in plan.steps:
        key = unit.instruments[k]
        position = account.positions[key]
        fill = float(fills[k])
        notional, realized = leg_value_one(quantity, entries[k], sizes[k], fill)  # (settle asset)
        left += (realized - leg_value_one(quantity, entries[k], sizes[k], float(triggers[k]))[1]) * scales[k]
        fee = min(rules.fee_rate * notional, max(left, 0.0) / scales[k])
        left -= fee * scales[k]
        released = position.isolated_margin * quantity / remaining[k] if remaining[k] else 0.0
        remaining[k] -= quantity
        events.append(ev.PositionLiquidated(ts, unit.exchange, key, -quantity, fill, float(triggers[k]), realized,
                                            fee, released, position.asset, unit.isolated, plan.label))
    # `left` is now what the unit is worth with the closed positions gone; when nothing is left at
    # risk and it is negative, the insurance fund absorbs it (in the first closed position's asset:
    # the unit's currency / that asset's price in it, e.g. USD / BTC's price in a multi-asset pool).
    closed_out = plan.steps and not any(abs(q) > 1e-12 for q in remaining.values())
    first_leg = plan.steps[0][0] if plan.steps else 0
    if closed_out and left < -1e-9:
        first = account.positions[unit.instruments[first_leg]]
        events.append(ev.InsuranceFundUsed(ts, unit.exchange, first.instrument, first.asset,
                                           float(-left) / scales[first_leg]))
    elif closed_out and plan.label != "partial" and plan.fill == "bankruptcy" and equity < -1e-9:
        # a gap past the bankruptcy prices: the trader loses exactly what the unit held (filled at
        # bankruptcy), the fund unwinds at the market and loses the rest: recorded, not credited
        first = account.positions[unit.instruments[first_leg]]
        events.append(ev.InsuranceFundUsed(ts, unit.exchange, first.instrument, first.asset,
                                           float(-equity) / scales[first_leg], credited=False))
    return events
