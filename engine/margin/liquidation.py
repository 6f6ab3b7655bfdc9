"""Liquidation the way the rule set says: which positions close, at what price, with what fee,
and what the insurance fund absorbs.

- isolated position: closes whole at the rule set's `fill` price (bankruptcy: the trader loses
  exactly the position's margin; trigger: at the liquidation mark). It never loses more than its
  margin: a shortfall beyond it goes to the insurance fund, never to the wallet.
- cross pool, policy `full`: every position of the pool closes at the `fill` price (the domino
  effect of a drained pool). Bankruptcy prices for several positions: every price moves adversely
  by the same fraction r of its trigger mark, r = pool equity / sum(|q| x mark), so that the pool's
  equity is exactly zero.
- cross pool, policy `partial`: positions close at the trigger mark (the exchange's reducing
  market orders), worst unrealised PnL first, until the pool's equity is above the maintenance
  margin of what is left, or nothing is left. A position above the rule set's
  `partial_above_notional` is reduced by `partial_fraction` of it at a time (rounded to its lot),
  the worst position being chosen again after each step. Below `backstop_fraction` x maintenance
  (a gap) the whole pool goes to the backstop at the bankruptcy prices instead.

The liquidation fee is `fee_rate` x closed notional, capped by the equity left, so a fee never
creates a debt. Whatever a closed-out pool or isolated position still owes is covered by the
insurance fund (`InsuranceFundUsed`): with a bankruptcy fill that happens when a gap opens past the
bankruptcy prices with a bankruptcy fill, the trader still loses exactly the unit's money and the
fund's unwind loss at the market is recorded (`credited = False`: it does not touch the account).
"""

from __future__ import annotations

import math

import numpy as np

from xmargin.ledger import events as ev
from xmargin.margin import formulas as margin


def _partial_steps(unit, catalog, triggers, upnl, equity, rules, inverse, sizes) -> list[tuple[int, float]]:
    """(position index, quantity closed) in order, at the trigger marks, until the pool's equity is
    above the maintenance margin of what is left (or nothing is left)."""
    remaining = [float(q) for q in unit.quantities[:unit.positions]]
    per_unit_pnl = [float(upnl[k]) / remaining[k] if remaining[k] else 0.0 for k in range(unit.positions)]

    def mm(k: int, quantity: float) -> float:
        notional = margin.contract_notional(quantity, float(triggers[k]), bool(inverse[k]), float(sizes[k]))
        return margin.maintenance_margin(notional, unit.tables[k])

    maintenance = sum(mm(k, remaining[k]) for k in range(unit.positions))
    steps = []
    while any(remaining) and (not steps or equity <= maintenance):
        open_ = [k for k in range(unit.positions) if remaining[k]]
        k = min(open_, key=lambda j: (per_unit_pnl[j] * remaining[j], j))  # worst uPnL now, stable
        quantity = remaining[k]
        notional = margin.contract_notional(quantity, float(triggers[k]), bool(inverse[k]), float(sizes[k]))
        if notional > rules.partial_above_notional and rules.partial_fraction < 1:
            lot = catalog.tradable(unit.instruments[k]).instrument.lot_size
            chunk = abs(quantity) * rules.partial_fraction
            chunk = max(math.floor(chunk / lot + 1e-9) * lot, lot) if lot > 0 else chunk
            if chunk < abs(quantity) - 1e-12:
                quantity = np.copysign(chunk, quantity)
        closed_notional = margin.contract_notional(quantity, float(triggers[k]), bool(inverse[k]), float(sizes[k]))
        equity -= min(rules.fee_rate * closed_notional, max(equity, 0.0))
        after = remaining[k] - quantity
        maintenance += (mm(k, after) if abs(after) > 1e-12 else 0.0) - mm(k, remaining[k])
        remaining[k] = after if abs(after) > 1e-12 else 0.0
        steps.append((k, float(quantity)))
    return steps


def _pnl(quantities, entries, prices, inverse, sizes) -> np.ndarray:
    return np.array([margin.contract_pnl(q, e, p, bool(i), s)
                     for q, e, p, i, s in zip(quantities, entries, prices, inverse, sizes)])


def _bankruptcy_prices(unit, triggers, equity, notionals, inverse, sizes) -> np.ndarray:
    """Prices where the unit's equity is zero, every position's price moved adversely by the same
    fraction r of its trigger mark (collateral legs stay at the trigger). Linear positions only:
    r = equity / sum of notionals in closed form; with inverse contracts r is found by bisection."""
    positions = unit.positions
    direction = np.where(np.arange(len(triggers)) < positions, np.sign(unit.quantities), 0.0)
    if not inverse.any():
        total = float(notionals[:positions].sum())
        return triggers * (1.0 - direction * (equity / total if total > 0 else 0.0))

    def equity_at(r: float) -> float:
        moved = triggers * (1.0 - direction * r)
        return unit.equity_base + float(_pnl(unit.quantities, unit.entries, moved, inverse, sizes).sum())

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


def liquidation_events(ledger, catalog, breach, ts: int) -> list:
    """Events for one breach found by `xmargin.margin.risk.scan` (`breach.prices` are the trigger marks)."""
    unit = breach.unit
    rules = catalog.venues[unit.exchange].rules.liquidation
    account = ledger.accounts[unit.exchange]
    triggers = breach.prices
    quantities, entries = unit.quantities, unit.entries
    inverse = unit.inverse if unit.inverse is not None else np.zeros(len(quantities), dtype=bool)
    sizes = unit.sizes if unit.sizes is not None else np.ones(len(quantities))
    upnl = _pnl(quantities, entries, triggers, inverse, sizes)
    equity = unit.equity_base + float(upnl.sum())
    notionals = np.array([margin.contract_notional(q, p, bool(i), s)
                          for q, p, i, s in zip(quantities, triggers, inverse, sizes)])

    partial = not unit.isolated and rules.policy == "partial"
    total_mm = sum(margin.maintenance_margin(notionals[k], unit.tables[k]) for k in range(unit.positions))
    fill_rule = rules.fill
    if partial and rules.backstop_fraction and equity < rules.backstop_fraction * total_mm:
        partial, fill_rule, policy = False, "bankruptcy", "backstop"  # too deep for the book: the backstop
    else:
        policy = "partial" if partial else ("isolated" if unit.isolated else "full")
    if partial:
        steps = _partial_steps(unit, catalog, triggers, upnl, equity, rules, inverse, sizes)
        fills = triggers
    else:
        steps = [(k, float(quantities[k])) for k in range(unit.positions)]
        fills = _bankruptcy_prices(unit, triggers, equity, notionals, inverse, sizes) \
            if fill_rule == "bankruptcy" else triggers

    events = []
    left = equity
    remaining = {k: float(quantities[k]) for k in range(unit.positions)}
    for k, quantity in steps:
        key = unit.instruments[k]
        position = account.positions[key]
        fill = float(fills[k])
        inverse_k, size_k = bool(inverse[k]), float(sizes[k])
        realized = float(margin.contract_pnl(quantity, entries[k], fill, inverse_k, size_k))
        left += realized - float(margin.contract_pnl(quantity, entries[k], triggers[k], inverse_k, size_k))
        fee = min(rules.fee_rate * margin.contract_notional(quantity, fill, inverse_k, size_k), max(left, 0.0))
        left -= fee
        released = position.isolated_margin * quantity / remaining[k] if remaining[k] else 0.0
        remaining[k] -= quantity
        events.append(ev.PositionLiquidated(ts, unit.exchange, key, -quantity, fill, float(triggers[k]), realized,
                                            fee, released, position.asset, unit.isolated, policy))
    # `left` is now what the unit is worth with the closed positions gone; when nothing is left at
    # risk and it is negative, the insurance fund absorbs it (in the first closed position's asset).
    closed_out = steps and not any(abs(q) > 1e-12 for q in remaining.values())
    if closed_out and left < -1e-9:
        first = account.positions[unit.instruments[steps[0][0]]]
        events.append(ev.InsuranceFundUsed(ts, unit.exchange, first.instrument, first.asset, float(-left)))
    elif closed_out and not partial and fill_rule == "bankruptcy" and equity < -1e-9:
        # a gap past the bankruptcy prices: the trader loses exactly what the unit held (filled at
        # bankruptcy), the fund unwinds at the market and loses the rest: recorded, not credited
        first = account.positions[unit.instruments[steps[0][0]]]
        events.append(ev.InsuranceFundUsed(ts, unit.exchange, first.instrument, first.asset, float(-equity),
                                           credited=False))
    return events
