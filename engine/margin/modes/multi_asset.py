"""Multi-asset margin: one USD pool per account, every balance counting at its price times the
exchange's collateral ratio (`xmargin.margin.collateral`), every cross position of any settlement
asset in it.

Legs for the kernel: the stablecoins' collateral value is the constant; every other balance with
a price on this exchange is a collateral leg of its haircut coin amount at `prices` (exact for
coin-unit ratio tiers; USD-unit tiers are linearised at `prices`, the start of a scanned stretch);
positions settled in another asset count at that asset's price (scale). Isolated positions stand on
their own margin.
"""

from __future__ import annotations

import math

from xmargin.margin.collateral import STABLECOINS, collateral_value, pooled_collateral, schedule_for
from xmargin.margin.units import (CROSS, ISOLATED, RiskUnit, asset_price, asset_price_column, build_unit,
                                  cross_unit_name, isolated_units, order_margin)

POOL = "USD"


def pool_of(asset: str) -> str:
    """Every asset belongs to the one USD pool."""
    return POOL


def risk_units(account, catalog, prices=None) -> list[RiskUnit]:
    """The USD pool (collateral legs valued from `prices`; balances without a finite price there
    are left out), then the isolated positions."""
    rules = catalog.venues[account.exchange].rules
    base, legs = pooled_collateral(rules, account.balances, lambda asset: (
        catalog.asset_columns.get((account.exchange, asset)), asset_price(catalog, account.exchange, asset, prices)))
    collateral = [(column, amount) for column, _, amount in legs]
    positions = [p for _, p in sorted(account.positions.items()) if p.margin_mode == CROSS]
    scales = [asset_price(catalog, account.exchange, p.asset, prices) for p in positions]
    columns = [asset_price_column(catalog, account.exchange, p.asset) if prices is not None else None
               for p in positions]
    pool = build_unit(account, catalog, asset=POOL, name=cross_unit_name(POOL), isolated=False, positions=positions,
                      base=base, collateral=collateral, scales=scales, scale_columns=columns)
    return [pool] + isolated_units(account, catalog)


def pool_order_margin(account, catalog, prices, pool: str) -> float:
    """Initial margin reserved by open orders of positions settled in any stablecoin (at `prices`,
    the last closes, for market orders)."""
    if not account.orders:
        return 0.0
    return sum(order_margin(account, catalog, prices, asset) for asset in STABLECOINS)


def wallet_value(account, catalog, prices, pool: str) -> float:
    """Every balance at its price, before haircuts (USD); balances without a price are left out."""
    total = 0.0
    for asset, balance in account.balances.items():
        price = asset_price(catalog, account.exchange, asset, prices)
        if math.isfinite(price):
            total += balance * price
    return total


def counted_collateral(rules, asset: str, balance: float, price: float) -> float:
    """A balance's collateral value after the exchange's haircut (0 without a price)."""
    return collateral_value(balance, price, schedule_for(rules, asset)) if math.isfinite(price) else 0.0


DEFAULT_POSITION_MODE = CROSS
POSITION_MODES = (CROSS, ISOLATED)
