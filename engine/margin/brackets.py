"""Maintenance-margin bracket tables: the tiers of one symbol, as a rule file gives them.

Pure data with numpy columns for vectorised lookups; `xmargin.margin.formulas` and the valuation
kernel read them, `xmargin.venues.rules` builds them from rule files.
"""

from __future__ import annotations

from bisect import bisect_right

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
