"""Isolated margin: every position stands on its own margin by default.

The account's units are the same as in cross mode (a position opened explicitly in cross mode
still joins its settlement asset's pool); only the default mode of a new position differs.
"""

from __future__ import annotations

from xmargin.margin.modes.cross import (counted_collateral, pool_of, pool_order_margin, pool_value, risk_units,
                                        wallet_value)
from xmargin.margin.units import CROSS, ISOLATED

DEFAULT_POSITION_MODE = ISOLATED
POSITION_MODES = (ISOLATED, CROSS)

__all__ = ["DEFAULT_POSITION_MODE", "POSITION_MODES", "counted_collateral", "pool_of", "pool_order_margin", "pool_value",
           "risk_units", "wallet_value"]
