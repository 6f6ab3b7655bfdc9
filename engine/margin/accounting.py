"""Account valuation at given mark prices: unrealised PnL, margin balance, initial and
maintenance margin, margin ratio, free collateral, liquidation prices.

Pure functions over ledger state; the ledger itself never stores derived numbers. The account's
margin mode (`xmargin.margin.modes`) turns it into risk units and the valuation kernel's scalar path
(`xmargin.margin.kernel.unit_one`, `valuate_one` in parts) values them: a pool per settlement asset in
single-asset modes (money in that asset), one "USD" pool in multi-asset mode; isolated positions
stand on their own margin and are reported with the pool of their settlement asset.
"""

from __future__ import annotations

import math

import attrs
import numpy as np

from xmargin._memos import memo
from xmargin.margin import formulas as margin
from xmargin.margin.kernel import required_one, unit_one
from xmargin.margin.modes import account_units, multi_asset, venue_mode
from xmargin.margin.units import asset_price, leverage_for, order_margin
from xmargin.ledger.state import Account

MULTI_ASSET_POOL = multi_asset.POOL

__all__ = ["MULTI_ASSET_POOL", "CollateralMetrics", "PoolMetrics", "PositionMetrics", "asset_price", "collateral_metrics",
           "free_collateral", "leverage_for", "order_margin", "pool_for", "pool_key", "pool_metrics", "position_metrics"]


@attrs.frozen
class PositionMetrics:
    instrument: str
    quantity: float
    entry_price: float
    mark_price: float
    notional: float
    unrealized_pnl: float
    initial_margin: float
    maintenance_margin: float
    margin_mode: str
    isolated_margin: float
    leverage: float
    liquidation_price: float
    bankruptcy_price: float
    asset: str


@attrs.frozen
class PoolMetrics:
    """One account's cross pool in one asset (plus what its isolated positions hold)."""

    exchange: str
    asset: str
    wallet_balance: float
    cross_wallet_balance: float
    collateral_value: float
    isolated_margin: float
    unrealized_pnl: float
    margin_balance: float
    initial_margin: float
    maintenance_margin: float
    margin_ratio: float
    free_collateral: float
    open_order_margin: float


@attrs.frozen
class CollateralMetrics:
    """One asset balance of an account and what it is worth as collateral (USD)."""

    asset: str
    balance: float
    price: float
    value: float
    collateral_value: float


def pool_key(catalog, exchange: str, asset: str) -> str:
    """The pool that `asset` belongs to on `exchange` (its margin mode decides)."""
    return venue_mode(catalog, exchange).pool_of(asset)


def pool_for(account: Account, catalog, marks: np.ndarray, prices: np.ndarray, asset: str, now_ns: int | None = None):
    """The PoolMetrics backing positions settled in `asset` (None when the account has none)."""
    return pool_metrics(account, catalog, marks, prices, now_ns).get(pool_key(catalog, account.exchange, asset))


def free_collateral(account: Account, catalog, marks: np.ndarray, prices: np.ndarray, asset: str,
                    now_ns: int | None = None, orders: bool = True) -> float:
    """`pool_for(...).free_collateral` (0 when the account has no such pool: nothing backs it) without valuing the
    other pools or building the PoolMetrics: what order checks read, several times per bar."""
    mode = venue_mode(catalog, account.exchange)
    pool = mode.pool_of(asset)
    value_pool = None if orders else getattr(mode.module, "pool_value", None)
    if value_pool is not None:  # a fill's check: an account state nothing else values, its pool from its rows
        value = value_pool(account, catalog, marks, pool)
        if value is None:
            return 0.0
        _, pnl, collateral, _, initial = value
        return (collateral + pnl) - initial
    for unit in account_units(catalog, account, marks, now_ns):
        if not unit.isolated and unit.asset == pool:
            _, _, margin_balance, initial, _ = _cross_pool(mode, account, catalog, marks, prices, unit, orders)
            return margin_balance - initial
    return 0.0


_VALUED: dict[int, tuple] = memo()  # id(unit) -> (unit, its leg prices, unit_one's result)


def _valued(unit, marks) -> tuple[list, float, float, float, float]:
    """`xmargin.margin.kernel.unit_one` of a unit at the feed row `marks`; the last result per
    unit is kept (units are immutable and shared while the account's positions do not change,
    so the orders of one wake-up value each pool once). A unit margined as a whole (portfolio
    margin) takes its maintenance and initial margin from its requirement."""
    rows = unit.rows
    if rows:
        values = marks.tolist()
        prices = [values[row[0]] for row in rows]
    else:
        prices = []
    hit = _VALUED.get(id(unit))
    if hit is not None and hit[0] is unit and hit[1] == prices:
        return hit[2]
    if len(_VALUED) >= 64:
        _VALUED.clear()
    value = unit_one(unit.rows, unit.base, prices)
    if unit.requirement is not None:
        legs, pnl, collateral, _, _ = value
        value = (legs, pnl, collateral, *required_one(unit.requirement, prices))
    _VALUED[id(unit)] = (unit, prices, value)
    return value


def _pool_scale(catalog, exchange: str, pool: str, asset: str, marks) -> float:
    """Price of money in `asset` in its pool's currency (1 when the pool is the asset itself)."""
    return 1.0 if pool == asset else asset_price(catalog, exchange, asset, marks)


def _cross_pool(mode, account, catalog, marks, prices, unit, orders: bool) -> tuple[float, float, float, float, float]:
    """(cross PnL, collateral, margin balance, initial margin with open orders, the orders' share) of
    a cross pool's unit."""
    _, cross_pnl, collateral, _, initial = _valued(unit, marks)
    reserved = mode.module.pool_order_margin(account, catalog, prices, unit.asset) if orders else 0.0
    return cross_pnl, collateral, collateral + cross_pnl, initial + reserved, reserved


def pool_metrics(account: Account, catalog, marks: np.ndarray, prices: np.ndarray,
                 now_ns: int | None = None, orders: bool = True) -> dict[str, PoolMetrics]:
    """One `PoolMetrics` per pool of the account's margin mode.

    margin balance = the pool unit's equity (cross wallet or collateral value after haircuts, plus
    cross unrealised PnL); margin ratio = maintenance / margin balance (inf when the balance is
    <= 0); free collateral = margin balance - initial margin of cross positions and open orders
    (isolated positions hold their own margin outside the pool). `orders=False` leaves the open
    orders out (open order margin 0, free collateral = margin balance - positions' initial margin):
    what a fill checks, since the order being filled is one of them.
    """
    mode = venue_mode(catalog, account.exchange)
    units = account_units(catalog, account, marks, now_ns)
    isolated: dict[str, list] = {}
    for unit in units:
        if unit.isolated:
            pool = mode.pool_of(unit.asset)
            scale = _pool_scale(catalog, account.exchange, pool, unit.asset, marks)
            _, pnl, _, _, _ = _valued(unit, marks)
            held = isolated.setdefault(pool, [0.0, 0.0])
            held[0] += unit.base * scale
            held[1] += pnl * scale
    pools = {}
    for unit in units:
        if unit.isolated:
            continue
        cross_pnl, collateral, margin_balance, initial, reserved = _cross_pool(mode, account, catalog, marks, prices,
                                                                               unit, orders)
        maintenance = _valued(unit, marks)[3]
        cross_wallet = mode.module.wallet_value(account, catalog, marks, unit.asset)
        isolated_margin, isolated_pnl = isolated.get(unit.asset, (0.0, 0.0))
        ratio = maintenance / margin_balance if margin_balance > 0 else (math.inf if maintenance > 0 else 0.0)
        pools[unit.asset] = PoolMetrics(account.exchange, unit.asset, cross_wallet + isolated_margin, cross_wallet,
                                        collateral, isolated_margin, cross_pnl + isolated_pnl, margin_balance,
                                        initial, maintenance, ratio, margin_balance - initial, reserved)
    return pools


def position_metrics(account: Account, catalog, marks: np.ndarray, now_ns: int | None = None) -> list[PositionMetrics]:
    """Metrics for every open position (in the account's order), with its liquidation price per
    the exchange formula (cross positions: with the other cross positions' maintenance margin and
    PnL held fixed, and the pool's collateral value after haircuts as the wallet balance, held at
    today's collateral prices)."""
    basis = catalog.venues[account.exchange].rules.liquidation.maintenance_basis
    fee_to_close = catalog.venues[account.exchange].rules.fee_to_close
    found = {}
    for unit in account_units(catalog, account, marks, now_ns):
        legs, cross_pnl, wallet, cross_maintenance, _ = _valued(unit, marks)
        for k in range(unit.positions):
            found[unit.instruments[k]] = (unit, legs[k], wallet, cross_pnl, cross_maintenance, unit.rows[k][6])
    out = []
    for key, position in account.positions.items():
        unit, (notional, pnl, maintenance), wallet, cross_pnl, cross_maintenance, fixed = found[key]
        tradable = catalog.tradable(key)
        inverse, size = tradable.instrument.is_inverse, tradable.instrument.contract_size
        leverage = leverage_for(account, catalog, key)
        table = tradable.brackets.for_quantity(position.quantity, size if inverse else 0.0)
        if unit.requirement is not None:  # account-level liquidation: see xmargin.analysis.distance; the
            liquidation = bankrupt = math.nan  # position's margins stay its bracket figures, on its own
        elif unit.isolated:
            liquidation = margin.isolated_liquidation_price_by_rule(position.quantity, position.entry_price,
                                                                    position.isolated_margin, table,
                                                                    inverse, size, basis)
            bankrupt = margin.contract_bankruptcy_price(position.quantity, position.entry_price,
                                                        position.isolated_margin, inverse, size, fee_to_close)
        else:
            if fixed is not None:  # cross, margined on its entry value (Bybit classic)
                liquidation = margin.entry_value_liquidation_price(
                    position.quantity, position.entry_price, wallet, fixed, inverse, size,
                    other_maintenance_margin=cross_maintenance - maintenance, other_unrealized_pnl=cross_pnl - pnl)
            else:
                liquidation = margin.contract_liquidation_price(
                    position.quantity, position.entry_price, wallet, table, inverse, size,
                    other_maintenance_margin=cross_maintenance - maintenance, other_unrealized_pnl=cross_pnl - pnl)
            bankrupt = margin.contract_bankruptcy_price(position.quantity, position.entry_price,
                                                        wallet + cross_pnl - pnl, inverse, size, fee_to_close)
        out.append(PositionMetrics(key, position.quantity, position.entry_price, float(marks[tradable.column]),
                                   notional, pnl, notional / leverage, maintenance, position.margin_mode,
                                   position.isolated_margin, leverage, liquidation, bankrupt, position.asset))
    return out


def collateral_metrics(account: Account, catalog, marks: np.ndarray) -> list[CollateralMetrics]:
    """Every balance before and after haircuts, as the account's margin mode counts it (single-asset
    modes: only stablecoins; multi-asset: every asset at its collateral ratio)."""
    mode = venue_mode(catalog, account.exchange)
    rules = catalog.venues[account.exchange].rules
    out = []
    for asset in sorted(account.balances):
        balance = account.balances[asset]
        price = asset_price(catalog, account.exchange, asset, marks)
        out.append(CollateralMetrics(asset, balance, price, balance * price,
                                     mode.module.counted_collateral(rules, asset, balance, price)))
    return out
