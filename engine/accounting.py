"""Account valuation at given mark prices: unrealised PnL, margin balance, initial and
maintenance margin, margin ratio, free collateral, liquidation prices.

Pure functions over ledger state; the ledger itself never stores derived numbers. Each account is
valued per settlement asset (one cross pool per asset: single-asset mode), isolated positions on
their own. Money is in the pool's asset.
"""

from __future__ import annotations

import math

import attrs
import numpy as np

from engine import margin
from engine.state import Account, Position
from engine.venue import Catalog


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
    isolated_margin: float
    unrealized_pnl: float
    margin_balance: float
    initial_margin: float
    maintenance_margin: float
    margin_ratio: float
    free_collateral: float
    open_order_margin: float


def leverage_for(account: Account, catalog: Catalog, instrument: str) -> float:
    return account.leverage.get(instrument, catalog.venues[account.exchange].leverage)


def position_metrics(account: Account, catalog: Catalog, marks: np.ndarray) -> list[PositionMetrics]:
    """Metrics for every open position, with its liquidation price per the exchange formula
    (cross positions: with the other cross positions' maintenance margin and PnL held fixed)."""
    basics = []
    for position in account.positions.values():
        tradable = catalog.tradable(position.instrument)
        mark = float(marks[tradable.column])
        notional = abs(position.quantity) * mark
        basics.append((position, tradable, mark, notional, position.quantity * (mark - position.entry_price),
                       margin.maintenance_margin(notional, tradable.brackets)))
    cross_mm = {}
    cross_upnl = {}
    for position, _, _, _, upnl, mm in basics:
        if position.margin_mode == "cross":
            cross_mm[position.asset] = cross_mm.get(position.asset, 0.0) + mm
            cross_upnl[position.asset] = cross_upnl.get(position.asset, 0.0) + upnl
    out = []
    for position, tradable, mark, notional, upnl, mm in basics:
        lev = leverage_for(account, catalog, position.instrument)
        if position.margin_mode == "isolated":
            liq = margin.isolated_liquidation_price(position.quantity, position.entry_price,
                                                    position.isolated_margin, tradable.brackets)
            bankrupt = margin.bankruptcy_price(position.quantity, position.entry_price, position.isolated_margin)
        else:
            wallet = account.balance(position.asset)
            liq = margin.cross_liquidation_price(
                position.quantity, position.entry_price, wallet, tradable.brackets,
                other_maintenance_margin=cross_mm[position.asset] - mm,
                other_unrealized_pnl=cross_upnl[position.asset] - upnl)
            bankrupt = margin.bankruptcy_price(
                position.quantity, position.entry_price, wallet + cross_upnl[position.asset] - upnl)
        out.append(PositionMetrics(position.instrument, position.quantity, position.entry_price, mark, notional, upnl,
                                   notional / lev, mm, position.margin_mode, position.isolated_margin, lev, liq,
                                   bankrupt, position.asset))
    return out


def order_margin(account: Account, catalog: Catalog, prices: np.ndarray, asset: str) -> float:
    """Initial margin reserved by open orders that would increase exposure (settle `asset`)."""
    total = 0.0
    for order in account.orders.values():
        tradable = catalog.tradable(order.instrument)
        if not tradable.instrument.is_derivative or tradable.instrument.settle != asset or order.reduce_only:
            continue
        held = account.positions.get(order.instrument)
        held_quantity = held.quantity if held is not None else 0.0
        increase = abs(held_quantity + order.quantity) - abs(held_quantity)
        if increase > 0:
            price = order.limit_price if order.order_type == "limit" else float(prices[tradable.column])
            total += increase * price / order.leverage
    return total


def pool_metrics(account: Account, catalog: Catalog, marks: np.ndarray, prices: np.ndarray) -> dict[str, PoolMetrics]:
    """One `PoolMetrics` per asset the account holds or settles in.

    margin balance = cross wallet + cross unrealised PnL; margin ratio = maintenance / margin
    balance (inf when the balance is <= 0); free collateral = margin balance - initial margin of
    cross positions and open orders (isolated positions hold their own margin outside the pool).
    """
    assets = set(account.balances)
    assets.update(p.asset for p in account.positions.values())
    pools = {}
    for asset in sorted(assets):
        cross_wallet = account.balance(asset)
        isolated = 0.0
        upnl = 0.0
        cross_upnl = 0.0
        initial = 0.0
        maintenance = 0.0
        for position in account.positions.values():
            if position.asset != asset:
                continue
            tradable = catalog.tradable(position.instrument)
            mark = float(marks[tradable.column])
            pnl = position.quantity * (mark - position.entry_price)
            upnl += pnl
            if position.margin_mode == "isolated":
                isolated += position.isolated_margin
                continue
            notional = abs(position.quantity) * mark
            cross_upnl += pnl
            initial += notional / leverage_for(account, catalog, position.instrument)
            maintenance += margin.maintenance_margin(notional, tradable.brackets)
        reserved = order_margin(account, catalog, prices, asset)
        margin_balance = cross_wallet + cross_upnl
        ratio = maintenance / margin_balance if margin_balance > 0 else (math.inf if maintenance > 0 else 0.0)
        pools[asset] = PoolMetrics(account.exchange, asset, cross_wallet + isolated, cross_wallet, isolated, upnl,
                                   margin_balance, initial + reserved, maintenance, ratio,
                                   margin_balance - initial - reserved, reserved)
    return pools


def isolated_ratio(position: Position, tradable, mark: float) -> float:
    """Maintenance margin / (isolated margin + unrealised PnL) of one isolated position."""
    equity = position.isolated_margin + position.quantity * (mark - position.entry_price)
    mm = margin.maintenance_margin(abs(position.quantity) * mark, tradable.brackets)
    return mm / equity if equity > 0 else math.inf
