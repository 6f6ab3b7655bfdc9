"""How an exchange settles its dated (fixed-expiry) futures: the settlement-price window and fee.

Rule data (a rule file's optional `delivery` object):

    "delivery": {
      "settlement_windows": [
        {"effective_from": "2019-01-01T00:00:00Z", "minutes": 60, "source": "..."},
        {"effective_from": "2024-11-11T08:00:00Z", "minutes": 30, "source": "..."}
      ],
      "fee": "taker",            # or a number (fraction of the settled notional)
      "sources": ["..."]
    }

The settlement price is the average index price over the window that ends at the expiry; the
window in force is the last one whose `effective_from` is at or before the expiry (older windows
stay as dated rows). A rule set without `delivery` uses `DEFAULT_WINDOW_MINUTES` (the 30-minute
average that Binance, Bybit, Deribit and OKX publish as of 2026) and the taker fee, and says so.
"""

from __future__ import annotations

import math

import attrs

from xmargin._keys import check_rule_keys
from xmargin.errors import RulesError
from xmargin.venues.instruments import parse_expiry

DEFAULT_WINDOW_MINUTES = 30.0
MINUTE_NS = 60_000_000_000


@attrs.frozen
class SettlementWindow:
    """From `effective_from_ns` (ns, UTC) on, the settlement price averages the last `minutes`."""

    effective_from_ns: int
    minutes: float
    source: str = ""


@attrs.frozen
class DeliveryRules:
    """Settlement windows in force by date (ascending) and the settlement fee: "taker" (the rule
    set's taker rate, Binance's documented rule) or a fraction of the settled notional."""

    windows: tuple[SettlementWindow, ...] = (SettlementWindow(0, DEFAULT_WINDOW_MINUTES, "default"),)
    fee: object = "taker"
    documented: bool = False

    def window_ns(self, expiry_ns: int) -> int:
        """Length of the settlement-price window (ns) for a contract expiring at `expiry_ns`."""
        current = self.windows[0]
        for window in self.windows:
            if window.effective_from_ns <= expiry_ns:
                current = window
        return int(current.minutes * MINUTE_NS)

    def fee_rate(self, taker_fee: float) -> float:
        """Settlement fee as a fraction of the settled notional."""
        return float(taker_fee) if self.fee == "taker" else float(self.fee)


def delivery_from(data, where: str) -> DeliveryRules:
    """Parse a rule file's `delivery` object (None: the documented default)."""
    if data is None:
        return DeliveryRules()
    if not isinstance(data, dict):
        raise RulesError(f"{where}: 'delivery' must be an object with settlement_windows and fee.")
    check_rule_keys(data, ("settlement_windows", "fee", "sources"), f"{where}: delivery")
    windows = []
    for n, entry in enumerate(data.get("settlement_windows", [])):
        check_rule_keys(entry, ("effective_from", "minutes", "source"), f"{where}: delivery.settlement_windows[{n}]")
        try:
            moment = parse_expiry(entry["effective_from"])
            minutes = entry["minutes"]
            if isinstance(minutes, (bool, str)):
                raise ValueError(f"minutes = {minutes!r} is not a number")
            minutes = float(minutes)
        except (KeyError, TypeError, ValueError) as exc:
            raise RulesError(f"{where}: delivery.settlement_windows[{n}]: {exc}; each row needs effective_from "
                             "(ISO date-time) and minutes (> 0).") from exc
        if not 0 < minutes < math.inf:
            raise RulesError(f"{where}: delivery.settlement_windows[{n}].minutes = {minutes}: must be > 0.")
        windows.append(SettlementWindow(int(moment.timestamp()) * 1_000_000_000, minutes, str(entry.get("source", ""))))
    if not windows:
        raise RulesError(f"{where}: delivery.settlement_windows is empty; give at least one dated row.")
    windows.sort(key=lambda w: w.effective_from_ns)
    fee = data.get("fee", "taker")
    if fee != "taker" and not (isinstance(fee, (int, float)) and 0 <= fee < 0.01):
        raise RulesError(f"{where}: delivery.fee = {fee!r}: 'taker' or a fraction in [0, 0.01).")
    return DeliveryRules(windows=tuple(windows), fee=fee, documented=True)
