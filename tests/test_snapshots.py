"""The vectorised snapshot projection (xmargin.output.snapshots) must give the numbers of the scalar
account valuation (xmargin.margin.accounting) that strategies see, row by row, on real runs: cross with
liquidations, mixed isolated, two exchanges with transfers, and multi-asset collateral. Both callers
value the margin modes' risk units with the valuation kernel (xmargin.margin.kernel: `valuate` for
the tables, the scalar `unit_one` for the View), so this holds the kernel's two paths equal on real
accounts, and the tables' assembly (pools, isolated positions, liquidation prices) to the View's."""

from __future__ import annotations

import math
from pathlib import Path

import attrs
import numpy as np
import polars as pl
import pytest

from xmargin.margin.accounting import collateral_metrics, pool_metrics, position_metrics
from xmargin.config import load_config, parse_config
from xmargin.sim.loop import run_backtest
from xmargin.output.snapshots import collateral_table, equity_base_table, positions_table

ROOT = Path(__file__).resolve().parents[1]


def _close(a, b) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    if math.isnan(a) and math.isnan(b):
        return True
    if math.isinf(a) or math.isinf(b):
        return a == b
    return math.isclose(a, b, rel_tol=1e-11, abs_tol=1e-8)


def _compare(rows: list[dict], expected: list, what: str) -> None:
    assert len(rows) == len(expected), f"{what}: {len(rows)} rows, scalar valuation gives {len(expected)}"
    for n, (row, metrics) in enumerate(zip(rows, expected)):
        for name, value in attrs.asdict(metrics).items():
            if name == "exchange":
                continue
            assert _close(row[name], value), f"{what} row {n} {name}: table {row[name]!r}, scalar {value!r}"


def _moment_prices(feed, catalog, snapshot, lasts: bool) -> np.ndarray:
    """Every column's price at the snapshot's moment, row by row in Python (the tables gather them
    at once): the bar's open or close, the path's nearer or farther extreme, or the extreme adverse
    to what the account holds at that price (a coin's balance, else a position; nothing held: low)."""
    row = snapshot.row
    o, h, l, c = ((feed.open, feed.high, feed.low, feed.close) if lasts else
                  (feed.mark_open, feed.mark_high, feed.mark_low, feed.mark_close))
    moment = snapshot.valued_at
    if moment in ("open", "close"):
        return (o if moment == "open" else c)[row].copy()
    out = np.empty(len(feed.keys))
    held = {catalog.tradable(k).column: p.quantity for k, p in snapshot.account.positions.items()}
    for asset, amount in snapshot.account.balances.items():
        column = catalog.asset_columns.get((snapshot.account.exchange, asset))
        if column is not None and amount:
            held[column] = amount
    for k in range(len(out)):
        high, low, start = float(h[row, k]), float(l[row, k]), float(o[row, k])
        high_first = high - start <= start - low
        out[k] = {"near extreme": high if high_first else low, "far extreme": low if high_first else high,
                  "adverse extreme": low if held.get(k, 1.0) > 0 else high}[moment]
    return out


def _check(result) -> None:
    feed, catalog = result.feed, result.catalog
    pools, positions, balances = [], [], []
    for snapshot in result.snapshots:
        marks, last = (_moment_prices(feed, catalog, snapshot, lasts) for lasts in (False, True))
        pools.extend(pool_metrics(snapshot.account, catalog, marks, last).values())
        positions.extend(position_metrics(snapshot.account, catalog, marks))
        balances.extend(collateral_metrics(snapshot.account, catalog, marks))
    _compare(pl.from_arrow(equity_base_table(result)).to_dicts(), pools, "equity")
    _compare(pl.from_arrow(positions_table(result)).to_dicts(), positions, "positions")
    _compare(pl.from_arrow(collateral_table(result)).to_dicts(), balances, "collateral")
    assert positions, "the run should hold positions"


@pytest.mark.parametrize("example", ["hold", "core_hedge_isolated", "funding_arbitrage"])
def test_projection_matches_scalar_valuation(example):
    config = load_config(ROOT / "examples" / f"{example}.toml")
    _check(run_backtest(config))


def test_projection_matches_scalar_valuation_in_multi_asset_mode():
    config = parse_config({
        "run": {"dataset": str(ROOT / "datasets" / "sample"), "strategy": "hold", "start": "2025-01-01",
                "end": "2025-02-01"},
        "strategy": {"params": {"positions": {"binance:ETH/USDT:USDT": -30000, "binance:BTC/USDT:USDT": 10000},
                                "margin_modes": {"binance:BTC/USDT:USDT": "isolated"}}},
        "exchanges": {"binance": {"rules": "binance-usdm", "margin_mode": "multi-asset",
                                  "collateral": {"BTC": 0.2, "ETH": 1.0, "USDT": 500}}}})
    _check(run_backtest(config))


def test_projection_matches_scalar_valuation_for_entry_margined_isolated_and_inverse_positions():
    """Bybit margins isolated positions on entry value; COIN-M positions are valued in the coin."""
    bybit = parse_config({
        "run": {"dataset": str(ROOT / "datasets" / "sample"), "strategy": "hold", "start": "2024-11-01",
                "end": "2024-12-01"},
        "strategy": {"params": {"positions": {"binance:BTC/USDT:USDT": -30000, "binance:ETH/USDT:USDT": 20000},
                                "margin_modes": {"binance:BTC/USDT:USDT": "isolated"},
                                "leverage": {"binance:BTC/USDT:USDT": 20}}},
        "exchanges": {"binance": {"rules": "bybit-linear", "collateral": {"USDT": 20000},
                                  "allow_default_brackets": True}}})  # bybit-linear lists BTCUSDT only
    _check(run_backtest(bybit))
    inverse = parse_config({
        "run": {"dataset": str(ROOT / "datasets" / "coinm-sample"), "strategy": "hold"},
        "strategy": {"params": {"positions": {"binance:BTC/USD:BTC": -40000}, "leverage": {"binance:BTC/USD:BTC": 25}}},
        "exchanges": {"binance": {"rules": "binance-coinm", "collateral": {"BTC": 0.1}}}})
    _check(run_backtest(inverse))


class Idle:
    """Never trades: every snapshot is an account of cash only."""

    def __init__(self, params):
        pass

    def wakes(self):
        from xmargin.sim.strategy import Wakes

        return Wakes(every="1d")

    def on_wake(self, view, wake):
        return []


@pytest.mark.parametrize("margin_mode", ["cross", "multi-asset"])
def test_an_account_of_cash_only_is_valued_at_its_cash(margin_mode):
    """A run (or a chunk of snapshots) where no account holds a position: the pool's margin balance,
    collateral value and free collateral are the deposit, as the View says, not 0 (the stacked legs
    of units without rows used to drop the units' constants)."""
    config = parse_config({
        "run": {"dataset": str(ROOT / "datasets" / "sample"), "strategy": "tests.test_snapshots:Idle",
                "start": "2024-10-01", "end": "2024-10-05"},
        "exchanges": {"binance": {"rules": "binance-usdm", "margin_mode": margin_mode,
                                  "collateral": {"USDT": 100_000}}}})
    result = run_backtest(config)
    equity = pl.from_arrow(equity_base_table(result))
    assert equity.height == len(result.snapshots) > 90
    marks = result.feed.mark_close[result.snapshots[-1].row]
    pool = next(iter(pool_metrics(result.snapshots[-1].account, result.catalog, marks, marks).values()))
    # cross: the USDT wallet itself; multi-asset: USDT at Binance's 0.9999 collateral ratio
    expected = 100_000.0 if margin_mode == "cross" else 99_990.0
    assert pool.margin_balance == pool.free_collateral == pool.collateral_value == pytest.approx(expected, abs=1e-9)
    for column in ("margin_balance", "collateral_value", "free_collateral"):
        assert equity[column].to_list() == pytest.approx([pool.margin_balance] * equity.height, abs=1e-9), column


def test_a_position_left_out_of_the_units_is_an_error_not_another_positions_row():
    """The positions table matches each position to its leg by (snapshot, instrument). Units given by
    a caller (`project(..., units=)`) that leave a position out must stop the projection with an
    error naming it, not give that row the figures of another position (it once showed the ETH
    row with the BTC short's quantity, entry and mark)."""
    from xmargin.errors import RunError
    from xmargin.output.snapshots import project, snapshot_units

    config = load_config(ROOT / "examples" / "hold.toml", margin_modes=["binance=isolated"], end="2024-10-03")
    result = run_backtest(config)
    units, owner = snapshot_units(result.snapshots, result.catalog, result.feed)
    _, positions, _ = project(result.snapshots, result.catalog, result.feed, units=(units, owner))
    left_out = max(n for n, unit in enumerate(units) if unit.name == "binance:ETH/USDT:USDT")
    snapshot = owner[left_out]
    eth = positions.filter((pl.col("snapshot") == snapshot) & (pl.col("instrument") == "binance:ETH/USDT:USDT"))
    assert eth["quantity"].to_list() == [result.snapshots[snapshot].account.positions["binance:ETH/USDT:USDT"].quantity]
    assert eth["quantity"][0] > 0  # the long ETH leg of the hold
    kept = [n for n in range(len(units)) if n != left_out]
    with pytest.raises(RunError, match=rf"snapshot {snapshot}.*binance:ETH/USDT:USDT.*none of its risk units"):
        project(result.snapshots, result.catalog, result.feed,
                units=([units[n] for n in kept], [owner[n] for n in kept]))
