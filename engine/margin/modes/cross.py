"""Cross margin: one pool per settlement asset backs every cross position settled in it.

The pool's constant is the wallet balance of that asset; only the settlement asset itself counts
as collateral (stablecoins, or the coin of a coin-margined account). Isolated positions (mixed
mode) stand on their own margin.
"""

from __future__ import annotations

from xmargin.margin.collateral import STABLECOINS
from xmargin.margin import incremental
from xmargin.margin.units import (CROSS, ISOLATED, RiskUnit, build_unit, cross_unit_name, isolated_units, order_margin,
                                  warned_pools)


def pool_of(asset: str) -> str:
    """The pool that money settled in `asset` belongs to: the asset itself."""
    return asset


def _pools(account) -> tuple[dict[str, list], list]:
    """({pool asset: its cross positions by instrument} for every asset the account holds, settles
    positions in, or carries a warning for; the isolated positions by instrument)."""
    pools: dict[str, list] = {asset: [] for asset in account.balances}
    if account.warning_levels:
        for asset in warned_pools(account):
            pools.setdefault(asset, [])
    isolated = []
    positions = account.positions
    for key in sorted(positions):
        position = positions[key]
        members = pools.setdefault(position.asset, [])
        if position.margin_mode == CROSS:
            members.append(position)
        else:
            isolated.append(position)
    return pools, isolated


def risk_units(account, catalog, prices=None) -> list[RiskUnit]:
    """A pool per asset the account holds, settles positions in, or carries a warning for (by
    asset; its cross positions by instrument), then the isolated positions. `prices` are unused
    (a single-asset pool does not move with collateral prices)."""
    pools, isolated = _pools(account)
    units = [build_unit(account, catalog, asset=asset, name=cross_unit_name(asset), isolated=False,
                        positions=pools[asset], base=account.balance(asset)) for asset in sorted(pools)]
    return units + isolated_units(account, catalog, isolated) if isolated else units


def pool_value(account, catalog, marks, pool: str):
    """`unit_one` of the pool's unit (None when the account has no such pool) without building the
    account's units, carried over from the pool's last state valued (`xmargin.margin.incremental`):
    what a fill checks on an account state nothing else values, one fill after another."""
    if pool not in account.balances and not any(p.asset == pool for p in account.positions.values()) \
            and not (account.warning_levels and pool in warned_pools(account)):
        return None  # no such pool (`_pools` has one per balance, settlement asset and warned pool)
    return incremental.pool_value(account, catalog, marks, pool)


def pool_order_margin(account, catalog, prices, pool: str) -> float:
    """Initial margin reserved by the open orders of positions settled in `pool` (at `prices`,
    the last closes, for market orders)."""
    return order_margin(account, catalog, prices, pool) if account.orders else 0.0


def wallet_value(account, catalog, prices, pool: str) -> float:
    """The pool's wallet balance (cross, excluding isolated margin), in the pool's asset."""
    return account.balance(pool)


def counted_collateral(rules, asset: str, balance: float, price: float) -> float:
    """What a balance adds to its pool as collateral: the settlement stablecoins at full value;
    another coin backs only its own (coin-margined) pool, not the stablecoin pools."""
    return balance * price if asset in STABLECOINS else 0.0


DEFAULT_POSITION_MODE = CROSS
POSITION_MODES = (CROSS, ISOLATED)
