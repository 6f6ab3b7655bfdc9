"""Account valuation at given mark prices: unrealised PnL, margin balance, initial and
maintenance margin, margin ratio, free collateral, liquidation prices.

Pure functions over ledger state; the ledger itself never stores derived numbers. In single-asset
modes an account has one cross pool per settlement asset (money in that asset); in multi-asset mode
one pool, "USD", where every balance counts at its price times the exchange's collateral ratio
(`xmargin.margin.collateral`). Isolated positions stand on their own margin in either case.
"""

from __future__ import annotations

import math

import attrs
import numpy as np

from xmargin.margin import formulas as margin
from xmargin.margin.collateral import STABLECOINS, collateral_value, schedule_for
from xmargin.ledger.state import Account, Position
from xmargin.venues.venue import Catalog

MULTI_ASSET_POOL = "USD"


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


def is_multi_asset(catalog: Catalog, exchange: str) -> bool:
    return catalog.venues[exchange].margin_mode == "multi-asset"


def pool_key(catalog: Catalog, exchange: str, asset: str) -> str:
    """The pool that `asset` belongs to on `exchange`: itself, or "USD" in multi-asset mode."""
    return MULTI_ASSET_POOL if is_multi_asset(catalog, exchange) else asset


def asset_price(catalog: Catalog, exchange: str, asset: str, prices: np.ndarray) -> float:
    """USD price of an asset as `exchange` values it (stablecoins at 1; nan when unknown)."""
    if asset in STABLECOINS:
        return 1.0
    column = catalog.asset_columns.get((exchange, asset))
    return float(prices[column]) if column is not None else math.nan


def pool_for(account: Account, catalog: Catalog, marks: np.ndarray, prices: np.ndarray, asset: str):
    """The PoolMetrics backing positions settled in `asset` (None when the account has none)."""
    return pool_metrics(account, catalog, marks, prices).get(pool_key(catalog, account.exchange, asset))


def value_of(position: Position, tradable, mark: float) -> tuple[float, float]:
    """(notional, unrealised PnL) of a position at `mark`, in its settle asset (coin for inverse)."""
    instrument = tradable.instrument
    inverse, size = instrument.is_inverse, instrument.contract_size
    return (margin.contract_notional(position.quantity, mark, inverse, size),
            margin.contract_pnl(position.quantity, position.entry_price, mark, inverse, size))


def leverage_for(account: Account, catalog: Catalog, instrument: str) -> float:
    return account.leverage.get(instrument, catalog.venues[account.exchange].leverage)


def position_metrics(account: Account, catalog: Catalog, marks: np.ndarray) -> list[PositionMetrics]:
    """Metrics for every open position, with its liquidation price per the exchange formula
    (cross positions: with the other cross positions' maintenance margin and PnL held fixed, and
    in multi-asset mode the pool's collateral value after haircuts as the wallet balance, held at
    today's collateral prices)."""
    multi_asset = is_multi_asset(catalog, account.exchange)
    wallets = {}
    if multi_asset:
        wallets[MULTI_ASSET_POOL] = _multi_asset_pool(account, catalog, marks, marks).collateral_value
    basics = []
    for position in account.positions.values():
        tradable = catalog.tradable(position.instrument)
        mark = float(marks[tradable.column])
        notional, pnl = value_of(position, tradable, mark)
        basics.append((position, tradable, mark, notional, pnl, margin.maintenance_margin(notional, tradable.brackets)))
    cross_mm = {}
    cross_upnl = {}
    for position, _, _, _, upnl, mm in basics:
        if position.margin_mode == "cross":
            key = MULTI_ASSET_POOL if multi_asset else position.asset
            cross_mm[key] = cross_mm.get(key, 0.0) + mm
            cross_upnl[key] = cross_upnl.get(key, 0.0) + upnl
    out = []
    basis = catalog.venues[account.exchange].rules.liquidation.maintenance_basis
    for position, tradable, mark, notional, upnl, mm in basics:
        lev = leverage_for(account, catalog, position.instrument)
        inverse, size = tradable.instrument.is_inverse, tradable.instrument.contract_size
        if position.margin_mode == "isolated":
            if basis == "entry" and not inverse:  # the exchange margins it on its entry value
                mm = margin.maintenance_margin(abs(position.quantity) * position.entry_price, tradable.brackets)
            liq = margin.isolated_liquidation_price_by_rule(position.quantity, position.entry_price,
                                                            position.isolated_margin, tradable.brackets, inverse,
                                                            size, basis)
            bankrupt = margin.contract_bankruptcy_price(position.quantity, position.entry_price,
                                                        position.isolated_margin, inverse, size)
        else:
            key = MULTI_ASSET_POOL if multi_asset else position.asset
            wallet = wallets[key] if multi_asset else account.balance(position.asset)
            liq = margin.contract_liquidation_price(
                position.quantity, position.entry_price, wallet, tradable.brackets, inverse, size,
                other_maintenance_margin=cross_mm[key] - mm, other_unrealized_pnl=cross_upnl[key] - upnl)
            bankrupt = margin.contract_bankruptcy_price(position.quantity, position.entry_price,
                                                        wallet + cross_upnl[key] - upnl, inverse, size)
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
            instrument = tradable.instrument
            total += margin.contract_notional(increase, price, instrument.is_inverse,
                                              instrument.contract_size) / order.leverage
    return total


@attrs.frozen
class CollateralMetrics:
    """One asset balance of an account and what it is worth as collateral (USD)."""

    asset: str
    balance: float
    price: float
    value: float
    collateral_value: float


def collateral_metrics(account: Account, catalog: Catalog, marks: np.ndarray) -> list[CollateralMetrics]:
    """Every balance before and after haircuts. Single-asset modes count only stablecoins (the
    settlement assets) as collateral; multi-asset mode counts every asset at its ratio."""
    multi_asset = is_multi_asset(catalog, account.exchange)
    rules = catalog.venues[account.exchange].rules
    out = []
    for asset in sorted(account.balances):
        balance = account.balances[asset]
        price = asset_price(catalog, account.exchange, asset, marks)
        value = balance * price
        if multi_asset:
            counted = collateral_value(balance, price, schedule_for(rules, asset)) if math.isfinite(price) else 0.0
        else:
            counted = value if asset in STABLECOINS else 0.0
        out.append(CollateralMetrics(asset, balance, price, value, counted))
    return out


def pool_metrics(account: Account, catalog: Catalog, marks: np.ndarray, prices: np.ndarray) -> dict[str, PoolMetrics]:
    """One `PoolMetrics` per asset the account holds or settles in.

    margin balance = cross wallet + cross unrealised PnL; margin ratio = maintenance / margin
    balance (inf when the balance is <= 0); free collateral = margin balance - initial margin of
    cross positions and open orders (isolated positions hold their own margin outside the pool).
    """
    if is_multi_asset(catalog, account.exchange):
        return {MULTI_ASSET_POOL: _multi_asset_pool(account, catalog, marks, prices)}
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
            notional, pnl = value_of(position, tradable, float(marks[tradable.column]))
            upnl += pnl
            if position.margin_mode == "isolated":
                isolated += position.isolated_margin
                continue
            cross_upnl += pnl
            initial += notional / leverage_for(account, catalog, position.instrument)
            maintenance += margin.maintenance_margin(notional, tradable.brackets)
        reserved = order_margin(account, catalog, prices, asset)
        margin_balance = cross_wallet + cross_upnl
        ratio = maintenance / margin_balance if margin_balance > 0 else (math.inf if maintenance > 0 else 0.0)
        pools[asset] = PoolMetrics(account.exchange, asset, cross_wallet + isolated, cross_wallet, cross_wallet,
                                   isolated, upnl, margin_balance, initial + reserved, maintenance, ratio,
                                   margin_balance - initial - reserved, reserved)
    return pools


def _multi_asset_pool(account: Account, catalog: Catalog, marks: np.ndarray, prices: np.ndarray) -> PoolMetrics:
    """Every balance at its price (wallet) and after haircuts (collateral); positions of every
    settlement asset in one cross pool, in USD."""
    exchange = account.exchange
    rules = catalog.venues[exchange].rules
    wallet = 0.0
    collateral = 0.0
    for asset, balance in account.balances.items():
        price = asset_price(catalog, exchange, asset, marks)
        if not math.isfinite(price):
            continue
        wallet += balance * price
        collateral += collateral_value(balance, price, schedule_for(rules, asset))
    isolated = upnl = cross_upnl = initial = maintenance = 0.0
    for position in account.positions.values():
        tradable = catalog.tradable(position.instrument)
        settle_price = asset_price(catalog, exchange, position.asset, marks)
        notional, pnl = value_of(position, tradable, float(marks[tradable.column]))
        notional *= settle_price
        pnl *= settle_price
        upnl += pnl
        if position.margin_mode == "isolated":
            isolated += position.isolated_margin * settle_price
            continue
        cross_upnl += pnl
        initial += notional / leverage_for(account, catalog, position.instrument)
        maintenance += margin.maintenance_margin(notional, tradable.brackets)
    reserved = sum(order_margin(account, catalog, prices, asset) for asset in STABLECOINS)
    margin_balance = collateral + cross_upnl
    ratio = maintenance / margin_balance if margin_balance > 0 else (math.inf if maintenance > 0 else 0.0)
    return PoolMetrics(exchange, MULTI_ASSET_POOL, wallet + isolated, wallet, collateral, isolated, upnl,
                       margin_balance, initial + reserved, maintenance, ratio, margin_balance - initial - reserved,
                       reserved)
