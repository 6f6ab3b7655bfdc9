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
  margin of what is left, or nothing is left.

The liquidation fee is `fee_rate` x closed notional, capped by the equity left, so a fee never
creates a debt. Whatever a closed-out pool or isolated position still owes is covered by the
insurance fund (`InsuranceFundUsed`).
"""

from __future__ import annotations

import numpy as np

from engine import events as ev
from engine import margin


def _partial_order(unit, upnl, notionals, equity, fee_rate) -> list[int]:
    maintenance = [margin.maintenance_margin(notionals[k], unit.tables[k]) for k in range(unit.positions)]
    remaining = sum(maintenance)
    chosen = []
    for k in np.argsort(upnl[:unit.positions], kind="stable").tolist():
        if chosen and equity > remaining:
            break
        chosen.append(k)
        equity -= min(fee_rate * notionals[k], max(equity, 0.0))
        remaining -= maintenance[k]
    return chosen


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
    """Events for one breach found by `engine.risk.scan` (`breach.prices` are the trigger marks)."""
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
    if partial:
        order = _partial_order(unit, upnl, notionals, equity, rules.fee_rate)
        fills = triggers
        policy = "partial"
    else:
        order = list(range(unit.positions))
        if rules.fill == "bankruptcy":
            fills = _bankruptcy_prices(unit, triggers, equity, notionals, inverse, sizes)
        else:
            fills = triggers
        policy = "isolated" if unit.isolated else "full"

    events = []
    left = equity
    for k in order:
        key = unit.instruments[k]
        position = account.positions[key]
        fill = float(fills[k])
        realized = float(margin.contract_pnl(quantities[k], entries[k], fill, bool(inverse[k]), float(sizes[k])))
        left += realized - float(upnl[k])
        fee = min(rules.fee_rate * float(notionals[k]), max(left, 0.0))
        left -= fee
        events.append(ev.PositionLiquidated(ts, unit.exchange, key, float(-quantities[k]), fill, float(triggers[k]),
                                            realized, fee, position.isolated_margin, position.asset, unit.isolated,
                                            policy))
    # `left` is now what the unit is worth with the closed positions gone; when nothing is left at
    # risk and it is negative, the insurance fund absorbs it (in the first closed position's asset).
    if len(order) == unit.positions and left < -1e-9:
        first = account.positions[unit.instruments[order[0]]]
        events.append(ev.InsuranceFundUsed(ts, unit.exchange, first.instrument, first.asset, float(-left)))
    return events
