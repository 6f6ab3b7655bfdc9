"""Portfolio-margin rules of an exchange, as dated variants (rule data, not code).

A rule file's optional `portfolio_margin` object:

    "portfolio_margin": {
      "sources": [...], "not_public": [...],
      "variants": [
        {"name": "okx-2025-01-06", "effective_from": "2025-01-06T08:00:00Z", "method": "stress", ...},
        ...
      ]
    }

Two methods (`xmargin.margin.portfolio` computes them):

* `"bracket"` (Binance Portfolio Margin, uniMMR): maintenance margin = the sum of every position's
  bracket maintenance margin (USDⓈ-M and COIN-M as in single-asset mode); equity = every balance
  at its price, positive balances after their collateral ratio, plus unrealised PnL; uniMMR =
  equity / maintenance margin; `levels` map uniMMR bands to actions; liquidation at
  uniMMR <= `liquidation_level`. Initial margin: notional / leverage per position.
* `"stress"` (OKX MR1..MR9, the Deribit grid, Bybit UTA): per underlying (one risk unit: spot,
  perps and futures of a base), loss = the worst revaluation over the `price_moves` (both signs);
  `extreme_moves` at `extreme_weight`; plus basis (`basis_annualised_move` x years to expiry x a
  dated future's notional), offsetting-futures contingency (`futures_contingency` x the smaller of
  the long and short futures notionals), a minimum charge (`minimum_charge_rate` x gross
  derivatives notional, scaled band by band on the increment above each band by
  `minimum_charge_bands`), then maintenance = max(max(MR1, MR6) + MR4 + contingency, MR7) and
  initial = `initial_factor` x maintenance. Terms only options produce (vega, theta, MR2, MR3) are
  zero: this engine trades no options.

Every numeric parameter may be a number or a mapping {asset group: number} with the key "others"
as the fallback; groups are comma-separated asset lists ("BTC,ETH").
A run uses the variant in force at its start (the last `effective_from` at or before it) unless the
config names one (`exchanges.<name>.portfolio_margin`); the run manifest records which. A variant
with `effective_from` null (e.g. the Deribit-style grid offered on every exchange for comparison)
is used only when named.
"""

from __future__ import annotations

import math

import attrs

from xmargin._keys import check_rule_keys
from xmargin.errors import RulesError
from xmargin.venues.instruments import parse_expiry

METHODS = ("bracket", "stress")


def _by_asset(value, asset: str, where: str) -> object:
    """A parameter for `asset`: the value itself, or the entry of its group in a mapping."""
    if not isinstance(value, dict):
        return value
    for group, entry in value.items():
        if asset in [a.strip() for a in group.split(",")]:
            return entry
    if "others" not in value:
        raise RulesError(f"{where}: no entry for {asset} and no 'others' fallback.")
    return value["others"]


@attrs.frozen
class Level:
    """A uniMMR band: `action` when uniMMR is in (above, at_or_below] (None: unbounded)."""

    above: float | None
    at_or_below: float | None
    action: str


@attrs.frozen
class PortfolioVariant:
    """One dated set of portfolio-margin parameters (see the module docstring)."""

    name: str
    effective_from_ns: int | None  # None: used only when a config names it
    method: str
    source: str
    parameters: dict = attrs.field(factory=dict, eq=False)
    levels: tuple[Level, ...] = ()
    liquidation_level: float = 1.0
    reduce_only_level: float = 0.0
    initial_factor: float = 1.0

    def value(self, key: str, asset: str, default=0.0):
        """Parameter `key` for underlying `asset` (numbers, lists of moves, band tables)."""
        if key not in self.parameters:
            return default
        return _by_asset(self.parameters[key], asset, f"portfolio_margin {self.name}.{key}")

    def moves(self, key: str, asset: str) -> tuple[float, ...]:
        """Symmetric price moves (fractions) for `asset`: each listed move with both signs, and 0."""
        listed = self.value(key, asset, ())
        listed = [listed] if isinstance(listed, (int, float)) else list(listed)
        return tuple(sorted({0.0, *(float(m) for m in listed), *(-float(m) for m in listed)}))

    def bands(self, asset: str) -> tuple[tuple[float, float], ...]:
        """((upper bound of the raw minimum charge, multiplier), ...) ascending; the last bound inf."""
        rows = self.value("minimum_charge_bands", asset, ())
        return tuple((math.inf if r["upto"] is None else float(r["upto"]), float(r["multiplier"])) for r in rows)


@attrs.frozen
class PortfolioRules:
    variants: tuple[PortfolioVariant, ...]
    sources: tuple[str, ...] = ()
    not_public: tuple[str, ...] = ()

    def variant(self, name: str | None, start_ns: int | None) -> PortfolioVariant:
        """The named variant, else the one in force at `start_ns` (the earliest when before all)."""
        if name:
            for variant in self.variants:
                if variant.name == name:
                    return variant
            raise RulesError(f"portfolio_margin = {name!r}: no such variant; this rule set has "
                             f"{[v.name for v in self.variants]}.")
        dated = sorted((v for v in self.variants if v.effective_from_ns is not None),
                       key=lambda v: v.effective_from_ns)
        if not dated:
            raise RulesError("portfolio_margin: no dated variant; name one in exchanges.<name>.portfolio_margin.")
        current = dated[0]
        for variant in dated:
            if start_ns is not None and variant.effective_from_ns <= start_ns:
                current = variant
        return current


def _levels(rows, where: str) -> tuple[Level, ...]:
    out = []
    for n, row in enumerate(rows):
        try:
            out.append(Level(None if row.get("above") is None else float(row["above"]),
                             None if row.get("at_or_below") is None else float(row["at_or_below"]), str(row["action"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise RulesError(f"{where}.levels[{n}]: {exc}; each level needs above, at_or_below, action.") from exc
    return tuple(out)


def _at_least(entry: dict, key: str, default: float, low: float, here: str) -> float:
    value = entry.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value < math.inf:
        raise RulesError(f"{here}.{key} = {value!r}: must be a finite number >= {low:g}.")
    return float(value)


def _check_leaves(value, here: str) -> None:
    """Every number of a variant's method parameters (moves, weights, bands; by asset group or not) is
    a finite fraction >= 0; besides numbers only `minimum_charge_rate = "taker"` and a band's `upto`
    null (no bound) are allowed."""
    if isinstance(value, dict):
        for key, item in value.items():
            _check_leaves(item, f"{here}.{key}")
    elif isinstance(value, list):
        for n, item in enumerate(value):
            _check_leaves(item, f"{here}[{n}]")
    elif not ((value is None and here.endswith(".upto")) or (value == "taker" and here.endswith("minimum_charge_rate"))
              or (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < math.inf)):
        raise RulesError(f"{here} = {value!r}: must be a finite number >= 0 (moves and rates are fractions: 0.04 = "
                         "4 %).")


def portfolio_from(data, where: str) -> PortfolioRules | None:
    """Parse a rule file's `portfolio_margin` object (None when the rule set has none)."""
    if data is None:
        return None
    check_rule_keys(data, ("variants", "sources", "not_public"), f"{where}: portfolio_margin")
    variants = []
    for n, entry in enumerate(data.get("variants", [])):
        here = f"{where}: portfolio_margin.variants[{n}]"
        try:
            name, method = str(entry["name"]), entry["method"]
            moment = None if entry.get("effective_from") is None else parse_expiry(entry["effective_from"])
        except (KeyError, ValueError) as exc:
            raise RulesError(f"{here}: {exc}; each variant needs name, method and effective_from "
                            "(null: only when a config names it).") from exc
        if method not in METHODS:
            raise RulesError(f"{here}: method {method!r}: one of {list(METHODS)}.")
        known = {"name", "method", "effective_from", "source", "levels", "liquidation_level", "reduce_only_level",
                 "initial_factor", "notes"}
        parameters = {k: v for k, v in entry.items() if k not in known}
        allowed = {"price_moves", "extreme_moves", "extreme_weight", "basis_annualised_move", "futures_contingency",
                   "minimum_charge_rate", "minimum_charge_bands"}
        unknown = sorted(set(parameters) - allowed)
        if unknown:
            raise RulesError(f"{here}: unknown keys {unknown}; allowed: {sorted(known | allowed)}.")
        _check_leaves(parameters, here)
        initial_factor = _at_least(entry, "initial_factor", 1.0, 1.0, here)
        liquidation_level = _at_least(entry, "liquidation_level", 1.0, 1.0, here)
        variants.append(PortfolioVariant(
            name=name, effective_from_ns=None if moment is None else int(moment.timestamp()) * 1_000_000_000,
            method=method,
            source=str(entry.get("source", "")), parameters=parameters,
            levels=_levels(entry.get("levels", []), here), liquidation_level=liquidation_level,
            reduce_only_level=_at_least(entry, "reduce_only_level", 0.0, 0.0, here), initial_factor=initial_factor))
    if not variants:
        raise RulesError(f"{where}: portfolio_margin.variants is empty.")
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise RulesError(f"{where}: portfolio_margin variant names repeat: {names}.")
    return PortfolioRules(tuple(variants), tuple(data.get("sources", ())), tuple(data.get("not_public", ())))
