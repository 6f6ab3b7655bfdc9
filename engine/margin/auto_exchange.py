"""Auto-exchange in multi-asset mode: a negative stablecoin balance is covered by selling other
collateral, as the rule set's `auto_exchange` policy says (Binance's Multi-Assets FAQ rule)."""

from __future__ import annotations

import math

from xmargin.ledger.events import CollateralConverted
from xmargin.margin.collateral import STABLECOINS
from xmargin.margin.modes import venue_mode
from xmargin.margin.units import asset_price


def conversion_events(account, catalog, marks, ts: int) -> list:
    """Auto-exchange in a margin mode that converts negative balances (multi-asset), where the
    rule set has `auto_exchange` (`xmargin.venues.rules.AutoExchange`): a stablecoin balance below
    `threshold_usd` is brought back to zero by selling the other assets, the largest collateral
    value first, `deficit / cover_ratio` worth at their current price, less `fee_rate`."""
    policy = catalog.venues[account.exchange].rules.auto_exchange
    if policy is None or not venue_mode(catalog, account.exchange).auto_exchange:
        return []
    threshold, cover_ratio, fee_rate = policy.threshold_usd, policy.cover_ratio, policy.fee_rate
    balances = dict(account.balances)
    out = []
    for asset in sorted(a for a in balances if a in STABLECOINS):
        deficit = -balances[asset]
        if -deficit >= threshold:
            continue
        sources = []
        for other in balances:
            if other == asset or balances[other] <= 0:
                continue
            price = asset_price(catalog, account.exchange, other, marks)
            if math.isfinite(price) and price > 0:
                sources.append((-balances[other] * price, other, price))
        for _, other, price in sorted(sources):
            if deficit <= 1e-9:
                break
            wanted = deficit / cover_ratio / (1.0 - fee_rate)
            sold = min(balances[other], wanted / price)
            gross = sold * price
            fee = gross * fee_rate
            out.append(CollateralConverted(ts, account.exchange, other, sold, asset, gross - fee, price, fee))
            balances[other] -= sold
            deficit -= gross - fee
    return out
