"""Maintenance-margin bracket tables: the tiers of one symbol, as a rule file gives them.

Pure data with numpy columns for vectorised lookups; `xmargin.margin.formulas` and the valuation
kernel read them, `xmargin.venues.rules` builds them from rule files.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

import attrs
import numpy as np


@attrs.frozen
class Bracket:
    """One maintenance-margin tier: applies to notional in [notional_floor, notional_cap).

    Maintenance margin = notional x maintenance_margin_rate - maintenance_amount (quote units).
    """

    notional_floor: float
    notional_cap: float
    max_leverage: float
    maintenance_margin_rate: float
    maintenance_amount: float


@attrs.frozen(eq=False)
class BracketTable:
    """The brackets of one symbol, with numpy columns for vectorised lookups in the event loop."""

    brackets: tuple[Bracket, ...]
    floors: np.ndarray
    rates: np.ndarray
    amounts: np.ndarray
    max_leverages: np.ndarray
    floor_list: tuple = ()  # the same columns as Python floats, for scalar lookups (bisect, no numpy call)
    rate_list: tuple = ()
    amount_list: tuple = ()

    unit = "notional"  # brackets by notional (ContractTiers: by contracts)

    @classmethod
    def from_brackets(cls, brackets) -> "BracketTable":
        brackets = tuple(brackets)
        floors = tuple(float(b.notional_floor) for b in brackets)
        rates = tuple(float(b.maintenance_margin_rate) for b in brackets)
        amounts = tuple(float(b.maintenance_amount) for b in brackets)
        return cls(
            brackets=brackets,
            floors=np.array(floors, dtype=np.float64),
            rates=np.array(rates, dtype=np.float64),
            amounts=np.array(amounts, dtype=np.float64),
            max_leverages=np.array([b.max_leverage for b in brackets], dtype=np.float64),
            floor_list=floors, rate_list=rates, amount_list=amounts,
        )

    def index(self, notional: float) -> int:
        """Index of the bracket holding |notional| (floor <= notional < cap)."""
        return max(bisect_right(self.floor_list, abs(notional)) - 1, 0)

    def bracket(self, notional: float) -> Bracket:
        return self.brackets[self.index(notional)]

    def position_size(self, quantity: float, notional: float, contract_size: float = 0.0) -> float:
        """A position's size in this table's unit: |notional| (settle units: quote, or coin for inverse)."""
        return abs(notional)

    def largest(self, leverage: float = 0.0) -> float:
        """The largest position (|notional|) the venue takes at `leverage` (x; 0: at any leverage): the
        cap of the last bracket allowing that leverage (inf when it is open, 0 when none allows it).
        Venues refuse an order taking the position past it (Binance -2027 "Exceeded the maximum
        allowable position at current leverage"; see docs/rules.md, "The largest position")."""
        if leverage <= 0:
            return self.brackets[-1].notional_cap
        allowed = [b.notional_cap for b in self.brackets if b.max_leverage >= leverage]
        return allowed[-1] if allowed else 0.0

    def for_quantity(self, quantity: float, contract_size: float = 0.0) -> "BracketTable":
        """The table margining a position of `quantity`: a notional table margins every size itself
        (a `ContractTiers` table answers with the one tier its size in contracts falls in)."""
        return self

    def with_added_rate(self, rate: float) -> "BracketTable":
        """Every bracket's maintenance rate plus `rate` (a fee to close held in maintenance margin);
        the amounts' recurrence is unchanged."""
        return BracketTable.from_brackets(
            attrs.evolve(b, maintenance_margin_rate=b.maintenance_margin_rate + rate) for b in self.brackets)


@attrs.frozen
class ContractTier:
    """One position tier counted in contracts, as OKX publishes them: positions of more than
    `contracts_floor` and at most `contracts_cap` contracts (OKX `minSz`..`maxSz`, `maxSz` inclusive)
    hold maintenance margin = notional x `maintenance_margin_rate` on the whole position."""

    contracts_floor: float
    contracts_cap: float
    max_leverage: float
    maintenance_margin_rate: float


@attrs.frozen(eq=False)
class ContractTiers:
    """A symbol's tiers counted in contracts (rule file `{"unit": "contracts", ...}`).

    The tier is chosen by the position's size in contracts, which does not move with price (unlike a
    notional bracket). `contract_value` is the venue's contract value (OKX `ctVal x ctMult`): base
    units per contract for a linear swap, quote units (USD) per contract for an inverse one. At valuation `for_quantity` turns the tier of a position into a one-bracket
    notional table (rate of that tier, no deduction), which every margin formula reads as usual.
    """

    tiers: tuple[ContractTier, ...]
    contract_value: float
    _resolved: dict = attrs.field(factory=dict, repr=False)  # tier index -> one-bracket BracketTable

    unit = "contracts"

    def contracts(self, quantity: float, contract_size: float = 0.0) -> float:
        """|quantity| in the venue's contracts: the engine's linear quantity is in base units, its
        inverse quantity in contracts of `contract_size` quote units (`contract_size` > 0)."""
        held = abs(quantity) * contract_size if contract_size > 0 else abs(quantity)
        return held / self.contract_value

    def index(self, contracts: float) -> int:
        """Index of the tier holding `contracts` (floor < contracts <= cap; 0 contracts: the first)."""
        caps = [t.contracts_cap for t in self.tiers]
        return min(bisect_left(caps, contracts * (1 - 1e-12)), len(caps) - 1)

    def position_size(self, quantity: float, notional: float, contract_size: float = 0.0) -> float:
        """A position's size in this table's unit: contracts (`contracts`; the notional is not needed)."""
        return self.contracts(quantity, contract_size)

    def largest(self, leverage: float = 0.0) -> float:
        """The largest position (contracts) the venue takes at `leverage` (x; 0: at any leverage): the
        last tier allowing that leverage's `maxSz` (inclusive; inf when open, 0 when no tier allows it)."""
        if leverage <= 0:
            return self.tiers[-1].contracts_cap
        allowed = [t.contracts_cap for t in self.tiers if t.max_leverage >= leverage]
        return allowed[-1] if allowed else 0.0

    def for_quantity(self, quantity: float, contract_size: float = 0.0) -> BracketTable:
        i = self.index(self.contracts(quantity, contract_size))
        table = self._resolved.get(i)
        if table is None:
            tier = self.tiers[i]
            table = self._resolved[i] = BracketTable.from_brackets(
                [Bracket(0.0, float("inf"), tier.max_leverage, tier.maintenance_margin_rate, 0.0)])
        return table

    def with_added_rate(self, rate: float) -> "ContractTiers":
        return ContractTiers(tuple(attrs.evolve(t, maintenance_margin_rate=t.maintenance_margin_rate + rate)
                                   for t in self.tiers), self.contract_value)
