"""Collateral valuation: what an asset balance is worth as margin on an exchange.

In multi-asset mode every positive balance counts at price x the exchange's collateral value
ratio; tiered ratios apply slice by slice (marginal brackets: the first slice of a holding at one
ratio, the next at a lower one). A negative balance is a liability and counts at full value.
Stablecoins are valued at 1 USD. In single-asset mode only the settlement asset backs positions.

Rule files give `collateral_ratios` per asset either as a number (one ratio for any amount) or as
`{"unit": "coin" | "usd", "tiers": [{"from": 0, "to": 10, "ratio": 0.98}, ...]}` (`to` null for
no upper bound). Tiers in coin units make the haircut a constant coin amount for a constant
balance, which the vectorised margin scan uses; tiers in USD are converted to an effective coin
amount at the price at the start of each scanned stretch (documented approximation).
"""

from __future__ import annotations

import math

import attrs

from xmargin._keys import check_rule_keys
from xmargin.errors import RulesError

STABLECOINS = ("USDT", "USDC", "USD", "BUSD", "FDUSD", "DAI")


@attrs.frozen
class CollateralTier:
    """Ratio applied to the slice [start, end) of a holding (coin units or USD, see `unit`)."""

    start: float
    end: float
    ratio: float


@attrs.frozen
class CollateralSchedule:
    asset: str
    unit: str
    tiers: tuple[CollateralTier, ...]


def schedule_from(asset: str, entry) -> CollateralSchedule:
    """Parse one `collateral_ratios` entry of a rule file (number or tier table)."""
    if isinstance(entry, (int, float)) and not isinstance(entry, bool):
        if not 0 <= entry <= 1:  # also rejects nan
            raise RulesError(f"collateral_ratios.{asset} = {entry!r}: a ratio must be between 0 and 1.")
        return CollateralSchedule(asset, "coin", (CollateralTier(0.0, math.inf, float(entry)),))
    if not isinstance(entry, dict) or "tiers" not in entry:
        raise RulesError(f"collateral_ratios.{asset}: expected a ratio or {{unit, tiers}}, got {entry!r}.")
    check_rule_keys(entry, ("unit", "tiers"), f"collateral_ratios.{asset}")
    unit = entry.get("unit", "coin")
    if unit not in ("coin", "usd"):
        raise RulesError(f"collateral_ratios.{asset}.unit = {unit!r}: 'coin' or 'usd'.")
    if not isinstance(entry["tiers"], list) or not entry["tiers"]:
        raise RulesError(f"collateral_ratios.{asset}.tiers = {entry['tiers']!r}: a non-empty list of "
                         "{\"from\", \"to\", \"ratio\"} rows.")
    tiers = []
    previous_end = 0.0
    for n, tier in enumerate(entry["tiers"]):
        here = f"collateral_ratios.{asset}.tiers[{n}]"
        check_rule_keys(tier, ("from", "to", "ratio"), here)
        values = [tier.get("from"), tier.get("ratio"), *([] if tier.get("to") is None else [tier["to"]])]
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in values):
            raise RulesError(f"{here}: from, ratio (and to, or null: no bound) must be finite numbers, got {tier}.")
        start = float(tier["from"])
        end = math.inf if tier.get("to") is None else float(tier["to"])
        ratio = float(tier["ratio"])
        if start != previous_end or end <= start or not 0 <= ratio <= 1:
            raise RulesError(f"{here}: tiers must be contiguous from 0 with "
                             f"0 <= ratio <= 1, got {tier}.")
        if n < len(entry["tiers"]) - 1 and end == math.inf:
            raise RulesError(f"{here}: to null (no bound) is allowed on the last tier only.")
        tiers.append(CollateralTier(start, end, ratio))
        previous_end = end
    return CollateralSchedule(asset, unit, tuple(tiers))


def haircut_amount(amount: float, schedule: CollateralSchedule) -> float:
    """`amount` (in the schedule's unit) after the tiered ratios; negative amounts count in full."""
    if amount <= 0:
        return amount
    total = 0.0
    for tier in schedule.tiers:
        if amount <= tier.start:
            break
        total += (min(amount, tier.end) - tier.start) * tier.ratio
    return total


def collateral_value(balance: float, price: float, schedule: CollateralSchedule) -> float:
    """USD value of a balance as collateral (after haircuts; liabilities at full value)."""
    if balance <= 0:
        return balance * price
    if schedule.unit == "coin":
        return haircut_amount(balance, schedule) * price
    return haircut_amount(balance * price, schedule)


def effective_quantity(balance: float, price: float, schedule: CollateralSchedule) -> float:
    """The coin amount whose full value equals the haircut value at `price` (for linear scans)."""
    if balance <= 0 or schedule.unit == "coin":
        return haircut_amount(balance, schedule)
    return collateral_value(balance, price, schedule) / price if price > 0 else 0.0


def schedule_for(rules, asset: str) -> CollateralSchedule:
    """The rule set's schedule for `asset`; an asset the exchange does not list counts at 0
    (stablecoins it does not list count at 1: the exchange's own settlement currencies)."""
    entry = rules.collateral_ratios.get(asset)
    if entry is None:
        entry = 1.0 if asset in STABLECOINS else 0.0
    return schedule_from(asset, entry)


def pooled_collateral(rules, balances: dict, price_of) -> tuple[float, list]:
    """One pool of every balance (multi-asset and portfolio margin): (the stablecoins' collateral
    value, [(column, asset, haircut coin amount)] of the other coins). `price_of(asset)` gives
    (feed column or None, price); a coin without a column or a finite price is left out."""
    base, legs = 0.0, []
    for asset in sorted(balances):
        balance = balances[asset]
        if balance == 0:
            continue
        schedule = schedule_for(rules, asset)
        if asset in STABLECOINS:
            base += collateral_value(balance, 1.0, schedule)
            continue
        column, price = price_of(asset)
        if column is None or not math.isfinite(price):
            continue
        legs.append((column, asset, effective_quantity(balance, price, schedule)))
    return base, legs
