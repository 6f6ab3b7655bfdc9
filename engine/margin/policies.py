"""The liquidation-policy registry: how a cross pool that reached maintenance is closed out.

A policy is a function that plans the closes of one breached unit, plus a frozen class of typed
parameters read from the rule file's `liquidation` table (validated when the file is read; an
error names the file and the key). `xmargin.margin.liquidation` turns the plan into events.

* `full`: every position of the pool closes at the rule set's `fill` price (the domino effect of
  a drained pool).
* `partial`: positions close at the trigger marks (the exchange's reducing market orders), worst
  unrealised PnL first, until the pool's equity is above the maintenance margin of what is left.
  Cooldown (`cooldown_seconds`, Hyperliquid 30 s): after a partial order, a unit still liquidatable
  within the cooldown has its whole positions closed (at once when one partial order does not
  suffice; at a later breach inside the cooldown, label "cooldown").
  Stepped: a position above `partial_above_notional` is reduced by `partial_fraction` of it at a
  time (rounded to its lot). Backstop: below `backstop_fraction` x maintenance (a gap) the whole
  pool goes to the exchange's backstop at the bankruptcy prices (Hyperliquid: 20 % steps above
  100k USDC, backstop at 2/3).

An isolated position always closes whole at the `fill` price (`close_isolated`), whatever the
account's policy. Adding a policy: a parameter class and a plan function here, an entry in
`POLICIES`, and its name and keys in the rule files that use it (docs/architecture.md).
"""

from __future__ import annotations

import math
from typing import Callable

import attrs
import numpy as np

from xmargin.errors import RulesError
from xmargin.margin.kernel import leg_maintenance_one, leg_value_one


def _fraction(low_open: bool):
    def check(instance, attribute, value):
        ok = (0 < value <= 1) if low_open else (0 <= value < 1)
        if not ok:
            interval = "(0, 1]" if low_open else "[0, 1)"
            raise ValueError(f"{attribute.name} = {value}: must be in {interval}")
    return check


@attrs.frozen
class FullParameters:
    """`full` takes no parameters."""


@attrs.frozen
class PartialParameters:
    """`partial`: step size and backstop. `partial_fraction` of a position above
    `partial_above_notional` (settle-asset units) closes per step; `backstop_fraction`: below that
    fraction of maintenance the pool goes to the backstop (0: never); `cooldown_seconds`: one step
    at a time, the next no sooner than that after it (Hyperliquid: 30 s; 0: every step at once)."""

    partial_fraction: float = attrs.field(default=1.0, converter=float, validator=_fraction(True))
    partial_above_notional: float = attrs.field(default=math.inf, converter=float)
    backstop_fraction: float = attrs.field(default=0.0, converter=float, validator=_fraction(False))
    cooldown_seconds: float = attrs.field(default=0.0, converter=float, validator=attrs.validators.ge(0.0))


@attrs.frozen
class Plan:
    """What to close: (position index, signed quantity closed) in order; `fill` "trigger" or
    "bankruptcy"; `label` the `policy` column of the events."""

    steps: tuple
    fill: str
    label: str


@attrs.frozen
class Breached:
    """A breached unit at its trigger marks, as the policies see it: the unit, the catalog (lot
    sizes), the trigger marks per leg, every leg's unrealised PnL and notional there (settle asset),
    the unit's equity and maintenance margin."""

    unit: object
    catalog: object
    triggers: np.ndarray
    unrealized_pnl: np.ndarray
    notional: np.ndarray
    equity: float
    maintenance_margin: float
    seconds_since_partial: float = float("inf")  # since this unit's last partial step (the cooldown)


def _everything(unit) -> tuple:
    return tuple((k, float(unit.legs.quantity[k])) for k in range(unit.positions))


def close_full(breached: Breached, rules) -> Plan:
    """Every position closes whole at the rule set's fill price."""
    return Plan(_everything(breached.unit), rules.fill, "full")


def close_isolated(breached: Breached, rules) -> Plan:
    """An isolated position closes whole at the rule set's fill price."""
    return Plan(_everything(breached.unit), rules.fill, "isolated")


def close_portfolio(breached: Breached, rules) -> Plan:
    """A portfolio-margin account below its requirement: every position closes at the rule set's
    fill price (the venues publish the account-level trigger and the order cancellation, not the
    steps by which they reduce a portfolio; partial steps are not modelled)."""
    return Plan(_everything(breached.unit), rules.fill, "portfolio")


def close_partial(breached: Breached, rules) -> Plan:
    """Worst position first at the trigger marks, in steps, until equity is above the maintenance
    of what is left; the whole pool to the backstop at bankruptcy prices when equity is below
    `backstop_fraction` x maintenance."""
    parameters = rules.parameters
    if parameters.backstop_fraction and breached.equity < parameters.backstop_fraction * breached.maintenance_margin:
        return Plan(_everything(breached.unit), "bankruptcy", "backstop")
    if parameters.cooldown_seconds > 0 and breached.seconds_since_partial < parameters.cooldown_seconds:
        return Plan(_everything(breached.unit), "trigger", "cooldown")  # still liquidatable in the cooldown
    steps = tuple(_partial_steps(breached, rules))
    if parameters.cooldown_seconds > 0 and len(steps) > 1:
        # one partial order starts the cooldown; still liquidatable within it (at once), the rest closes whole
        first_index, first_quantity = steps[0]
        rest = tuple((k, float(breached.unit.legs.quantity[k]) - (first_quantity if k == first_index else 0.0))
                     for k in range(breached.unit.positions))
        steps = (steps[0],) + tuple((k, q) for k, q in rest if abs(q) > 1e-12)
    return Plan(steps, "trigger", "partial")


def _partial_steps(breached: Breached, rules) -> list[tuple[int, float]]:
    unit, triggers = breached.unit, breached.triggers
    legs, parameters = unit.legs, rules.parameters
    size = legs.size.tolist()
    entry = legs.entry.tolist()
    scale = legs.scale.tolist()
    tables = unit.tables
    remaining = [float(q) for q in legs.quantity[:unit.positions]]
    per_unit_pnl = [float(breached.unrealized_pnl[k]) / remaining[k] if remaining[k] else 0.0
                    for k in range(unit.positions)]

    def notional(k: int, quantity: float) -> float:
        return leg_value_one(quantity, entry[k], size[k], float(triggers[k]))[0]

    def maintenance(k: int, quantity: float) -> float:
        return leg_maintenance_one(notional(k, quantity), tables[k], None, scale[k])

    equity = breached.equity
    total = sum(maintenance(k, remaining[k]) for k in range(unit.positions))
    steps = []
    while any(remaining) and (not steps or equity <= total):
        open_ = [k for k in range(unit.positions) if remaining[k]]
        k = min(open_, key=lambda j: (per_unit_pnl[j] * remaining[j], j))  # worst uPnL now, stable
        quantity = remaining[k]
        if notional(k, quantity) > parameters.partial_above_notional and parameters.partial_fraction < 1:
            lot = breached.catalog.tradable(unit.instruments[k]).instrument.lot_size
            chunk = abs(quantity) * parameters.partial_fraction
            chunk = max(math.floor(chunk / lot + 1e-9) * lot, lot) if lot > 0 else chunk
            if chunk < abs(quantity) - 1e-12:
                quantity = float(np.copysign(chunk, quantity))
        equity -= min(rules.fee_rate * notional(k, quantity), max(equity, 0.0))
        after = remaining[k] - quantity
        total += (maintenance(k, after) if abs(after) > 1e-12 else 0.0) - maintenance(k, remaining[k])
        remaining[k] = after if abs(after) > 1e-12 else 0.0
        steps.append((k, float(quantity)))
    return steps


@attrs.frozen
class LiquidationPolicy:
    """One registered policy: its plan function and its typed parameters (`parameters`, whose
    field names are the keys of the rule file's `liquidation` table; the rule file's key
    `backstop_maintenance_fraction` reads into `backstop_fraction`)."""

    name: str
    plan: Callable
    parameters: type
    summary: str


POLICIES: dict[str, LiquidationPolicy] = {p.name: p for p in (
    LiquidationPolicy("full", close_full, FullParameters, "close the whole pool at the fill price"),
    LiquidationPolicy("partial", close_partial, PartialParameters,
                      "worst position first, stepped above a notional, backstop below a maintenance fraction"),
)}
RULE_FILE_KEYS = {"backstop_maintenance_fraction": "backstop_fraction"}  # rule-file key -> parameter name


def rule_file_keys() -> tuple[str, ...]:
    """The `liquidation` keys of a rule file naming a parameter of some registered policy."""
    names = {field.name for p in POLICIES.values() for field in attrs.fields(p.parameters)}
    files = {name: key for key, name in RULE_FILE_KEYS.items()}
    return tuple(sorted(files.get(name, name) for name in names))


def parameters_from(policy: str, table: dict, where: str):
    """The typed parameters of `policy` from a rule file's `liquidation` table. Errors name
    `where` (the file) and the key: a value that is not a number or out of range, or a key of
    another policy."""
    cls = POLICIES[policy].parameters
    names = {field.name for field in attrs.fields(cls)}
    every = {field.name for p in POLICIES.values() for field in attrs.fields(p.parameters)}
    values = {}
    for key, value in table.items():
        name = RULE_FILE_KEYS.get(key, key)
        if name not in every:
            continue
        if name not in names:
            raise RulesError(f"{where}: liquidation.{key} is a parameter of another policy; policy {policy!r} "
                             f"takes {sorted(names) or 'no parameters'}.")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RulesError(f"{where}: liquidation.{key} = {value!r}: must be a number.")
        values[name] = value
    try:
        return cls(**values)
    except ValueError as exc:
        raise RulesError(f"{where}: liquidation: {exc}.") from exc
