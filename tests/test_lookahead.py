"""No look-ahead: a strategy sees only bars that have closed, and fills only at prices it could have
traded at (the next bar's open for market orders; a limit only when a later bar trades through)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from xmargin.ledger.commands import PlaceOrder
from xmargin.config import parse_config
from xmargin.ledger.events import OrderFilled
from xmargin.sim.loop import Backtest
from xmargin.sim.strategy import Wakes

ROOT = Path(__file__).resolve().parents[1]
ETH = "binance:ETH/USDT:USDT"


class Recorder:
    """Records what it can see at each wake; buys at market on the 3rd wake, places a limit on the 5th."""

    def __init__(self, params):
        self.seen = []
        self.limit_price = None
        self.count = 0

    def wakes(self):
        return Wakes(bars=(ETH,))

    def on_wake(self, view, wake):
        self.count += 1
        bars = view.bars(ETH, 10_000)
        self.seen.append((view.now_ns, int(bars["ts"][-1]), view.price(ETH), len(bars["close"])))
        if self.count == 3:
            return [PlaceOrder.market(ETH, 1.0)]
        if self.count == 5:
            self.limit_price = float(np.floor(view.price(ETH) * 0.99))
            return [PlaceOrder.limit(ETH, 1.0, self.limit_price)]
        return []


@pytest.fixture(scope="module")
def run():
    config = parse_config({
        "run": {"dataset": str(ROOT / "datasets/sample"), "strategy": "tests.test_lookahead:Recorder",
                "start": "2024-10-01", "end": "2024-10-20", "slippage_bps": 2.0, "instruments": [ETH]},
        "exchanges": {"binance": {"rules": "binance-usdm", "collateral": {"USDT": 100_000}}}})
    backtest = Backtest(config)
    result = backtest.run()
    return backtest.strategy, result


def test_a_strategy_sees_only_closed_bars(run):
    strategy, result = run
    feed = result.feed
    column = feed.column(ETH)
    for row, (now, last_ts, price, count) in enumerate(strategy.seen):
        assert last_ts + feed.bar_ns == now  # the newest visible bar is the one that has just closed
        assert count == row + 1  # nothing of later bars
        assert price == feed.close[row, column]


def test_bars_handed_to_a_strategy_are_read_only(run):
    strategy, result = run
    from xmargin.sim.strategy import View

    view = View(result.ledger, result.catalog, result.feed, 10)
    bars = view.bars(ETH, 5)
    for name in ("open", "high", "low", "close", "ts"):  # the times too: they are the run's own clock
        with pytest.raises(ValueError):
            bars[name][0] = 0
    assert int(result.feed.ts[6]) == int(bars["ts"][0])


def test_a_market_order_fills_at_the_next_open_plus_slippage(run):
    strategy, result = run
    feed = result.feed
    column = feed.column(ETH)
    market = [e for e in result.events if isinstance(e, OrderFilled) and e.order_id == 1][0]
    decided_at = strategy.seen[2][0]  # the close of the 3rd bar
    assert market.ts == decided_at == int(feed.ts[3])
    assert market.price == pytest.approx(feed.open[3, column] * (1 + 2e-4), rel=1e-12)
    assert market.price != feed.close[2, column]


def test_a_limit_order_fills_only_when_a_later_bar_trades_through(run):
    strategy, result = run
    feed = result.feed
    column = feed.column(ETH)
    limit = [e for e in result.events if isinstance(e, OrderFilled) and e.order_id == 2][0]
    placed_row = 4
    fill_row = int(np.searchsorted(feed.ts, limit.ts))
    assert fill_row > placed_row
    lows = feed.low[placed_row + 1:fill_row, column]
    assert (lows >= strategy.limit_price).all()  # no earlier bar traded below the limit
    assert feed.low[fill_row, column] < strategy.limit_price
    expected = min(strategy.limit_price, feed.open[fill_row, column])
    assert limit.price == expected
    assert limit.liquidity == ("maker" if limit.price == strategy.limit_price else "taker")
