"""Cross margin: one pool per settlement asset backs every cross position settled in it.

The pool's constant is the wallet balance of that asset; only the settlement asset itself counts
as collateral (stablecoins, or the coin of a coin-margined account). Isolated positions (mixed
mode) stand on their own margin.
"""

from __future__ import annotations

from xmargin.margin.collateral import STABLECOINS
from xmargin.margin.units import (CROSS, ISOLATED, RiskUnit, build_unit, cross_unit_name, isolated_units, order_margin,
                                  warned_pools)


def pool_of(asset: str) -> str:
    """The pool that money settled in `asset` belongs to: the asset itself."""
    return asset


def risk_units(account, catalog, prices=None, order_prices=None) -> list[RiskUnit]:
    """A pool per asset the account holds, settles positions in, or carries a warning for (by
    asset; its cross positions by instrument), then the isolated positions. `prices` are unused
    (a single-asset pool does not move with collateral prices); `order_prices` (last closes), when
    given, price the open orders' reserved initial margin."""
    assets = set(account.balances) | {p.asset for p in account.positions.values()} | warned_pools(account)
    units = []
    for asset in sorted(assets):
        positions = [p for _, p in sorted(account.positions.items()) if p.asset == asset and p.margin_mode == CROSS]
        reserved = order_margin(account, catalog, order_prices, asset) if order_prices is not None else 0.0
        units.append(build_unit(account, catalog, asset=asset, name=cross_unit_name(asset), isolated=False,
                                positions=positions, base=account.balance(asset), reserved=reserved))
    return units + isolated_units(account, catalog)


def wallet_value(account, catalog, prices, pool: str) -> float:
    """The pool's wallet balance (cross, excluding isolated margin), in the pool's asset."""
    return account.balance(pool)


def counted_collateral(rules, asset: str, balance: float, price: float) -> float:
    """What a balance adds to its pool as collateral: the settlement stablecoins at full value;
    another coin backs only its own (coin-margined) pool, not the stablecoin pools."""
    return balance * price if asset in STABLECOINS else 0.0


DEFAULT_POSITION_MODE = CROSS
POSITION_MODES = (CROSS, ISOLATED)
