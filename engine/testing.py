"""A small fake `View` for strategy unit tests: no engine, no dataset.

Set prices, funding rates, balances and positions directly; `margin()` derives a simple cross pool
per settle asset (margin balance = wallet + unrealised PnL, initial margin = notional / leverage)
unless the test puts its own figures in `view.pools[(exchange, asset)]`.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np

from xmargin.margin.units import CROSS
from xmargin.venues.instruments import Instrument
from xmargin.sim.strategy import Wake, lot_rounded

HOUR_NS = 3_600_000_000_000
T0 = 1_727_740_800_000_000_000  # 2024-10-01T00:00:00Z


def instrument(key: str, lot: float = 0.001, min_notional: float = 5.0, funding_hours: float | None = None):
    exchange, symbol = key.split(":", 1)
    base, rest = symbol.split("/")
    quote, _, settle = rest.partition(":")
    market = "perp" if settle else "spot"
    if market == "perp" and funding_hours is None:
        funding_hours = 1.0 if exchange == "hyperliquid" else 8.0
    return Instrument(exchange=exchange, symbol=symbol, market=market, base=base, quote=quote,
                      settle=settle or quote, funding_interval_hours=funding_hours, lot_size=lot,
                      min_notional=min_notional)


def pool(exchange, asset, margin_balance, initial_margin=0.0, isolated_margin=0.0):
    """A PoolMetrics-like record with the fields the strategies read."""
    free = margin_balance - initial_margin
    return SimpleNamespace(exchange=exchange, asset=asset, wallet_balance=margin_balance + isolated_margin,
                           cross_wallet_balance=margin_balance, collateral_value=margin_balance,
                           isolated_margin=isolated_margin, unrealized_pnl=0.0, margin_balance=margin_balance,
                           initial_margin=initial_margin, maintenance_margin=0.0, margin_ratio=0.0,
                           free_collateral=free, open_order_margin=0.0)


class FakeView:
    def __init__(self, instruments: dict, leverage: float = 3.0):
        self._instruments = {k: v if isinstance(v, Instrument) else instrument(k, **v) for k, v in instruments.items()}
        self.now_ns = T0
        self.prices: dict[str, float] = {}
        self.funding: dict[str, float] = {}
        self.closes: dict[str, list] = {}
        self.balances: dict[tuple[str, str], float] = {}
        self.held: dict[str, tuple[float, float, str, float]] = {}  # key -> (qty, entry, mode, isolated margin)
        self.pools: dict[tuple[str, str], object] = {}
        self.orders: dict[str, tuple] = {}
        self.transfers: list = []
        self.leverage = leverage

    # -- driving the fake -------------------------------------------------------------------------
    def advance(self, hours: float = 1.0):
        self.now_ns += int(hours * HOUR_NS)
        for key, price in self.prices.items():
            self.closes.setdefault(key, []).append(price)

    def set_position(self, key: str, quantity: float, entry: float | None = None, mode: str = CROSS,
                     isolated_margin: float = 0.0):
        if quantity == 0:
            self.held.pop(key, None)
        else:
            self.held[key] = (quantity, self.prices[key] if entry is None else entry, mode, isolated_margin)

    # -- the View API -----------------------------------------------------------------------------
    @property
    def instruments(self):
        return tuple(self._instruments)

    @property
    def exchanges(self):
        return tuple(sorted({i.exchange for i in self._instruments.values()}))

    def instrument(self, key):
        return self._instruments[key]

    def price(self, key):
        return self.prices.get(key, math.nan)

    def mark(self, key):
        return self.price(key)

    def bars(self, key, count):
        closes = np.array(self.closes.get(key, [])[-count:], dtype=float)
        ts = self.now_ns - HOUR_NS * np.arange(len(closes), 0, -1, dtype=np.int64)
        return {"open": closes, "high": closes, "low": closes, "close": closes, "ts": ts}

    def funding_rate(self, key):
        return self.funding.get(key, math.nan)

    def position(self, key):
        return self.held.get(key, (0.0,))[0]

    def balance(self, exchange, asset):
        return self.balances.get((exchange, asset), 0.0)

    def open_orders(self, exchange):
        return self.orders.get(exchange, ())

    def positions(self, exchange):
        out = []
        for key, (qty, entry, mode, iso) in self.held.items():
            if key.split(":", 1)[0] != exchange:
                continue
            mark = self.price(key)
            notional = abs(qty) * mark
            out.append(SimpleNamespace(instrument=key, quantity=qty, entry_price=entry, mark_price=mark,
                                       notional=notional, unrealized_pnl=qty * (mark - entry),
                                       initial_margin=notional / self.leverage, maintenance_margin=0.0,
                                       margin_mode=mode, isolated_margin=iso, leverage=self.leverage,
                                       liquidation_price=math.nan, bankruptcy_price=math.nan,
                                       asset=self._instruments[key].settle))
        return out

    def margin(self, exchange, asset=None):
        if (exchange, asset) in self.pools:
            return self.pools[(exchange, asset)]
        cross = [m for m in self.positions(exchange) if m.asset == asset and m.margin_mode == CROSS]
        isolated = sum(m.isolated_margin for m in self.positions(exchange) if m.asset == asset)
        balance = self.balance(exchange, asset)
        return pool(exchange, asset, balance + sum(m.unrealized_pnl for m in cross),
                    sum(m.initial_margin for m in cross), isolated)

    def in_flight(self):
        return tuple(self.transfers)

    def round_quantity(self, key, quantity):
        return lot_rounded(key, quantity, self._instruments[key].lot_size)


def wake(*reasons, events=()):
    return Wake(tuple(reasons) or ("timer",), tuple(events))
