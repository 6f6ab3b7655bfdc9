"""The two benchmark workloads shared with the peer engines (shared/bench/README.md).

W1 `Passive`: woken at every bar of every instrument, does nothing. Measures the loop's cost of
handing each bar to a strategy.

W2 `HedgedRebalance`: at the first wake, long BTC on venue A / short BTC on venue B with the same
quantity (notional_usd / price on A, rounded to the lot), the same for ETH; every hour (= every 60
one-minute bars, `Wakes(every="1h")`) each leg is brought back to `notional_usd` with a market
order. About 35,000 orders in the year. The taker fee is the configured rule set's (binance-usdm:
5 bps; the peers used 4 bps).

Referenced in a config as `bench.strategies:Passive` / `bench.strategies:HedgedRebalance`
(run from the repository root, or with the repository root on sys.path).
"""

from __future__ import annotations

from xmargin.ledger.commands import PlaceOrder
from xmargin.sim.strategy import Wakes

DEFAULT_PAIRS = (("venuea:BTC/USDT:USDT", "venueb:BTC/USDT:USDT"),
                 ("venuea:ETH/USDT:USDT", "venueb:ETH/USDT:USDT"))


class Passive:
    """W1: handed every bar, returns nothing."""

    def __init__(self, params: dict):
        if params:
            raise ValueError(f"Passive takes no params, got {sorted(params)}")

    def wakes(self) -> Wakes:
        return Wakes(bars=("*",))

    def on_wake(self, view, wake):
        return None


class HedgedRebalance:
    """W2: long leg / short leg per pair, each rebalanced to `notional_usd` every `every`.

    params: notional_usd (default 50,000), every (default "1h"), pairs (list of [long, short]
    instrument keys; default BTC and ETH on venuea (long) / venueb (short))."""

    def __init__(self, params: dict):
        params = dict(params)
        self.notional = float(params.pop("notional_usd", 50_000.0))
        self.every = str(params.pop("every", "1h"))
        self.pairs = tuple(tuple(p) for p in params.pop("pairs", DEFAULT_PAIRS))
        if params:
            raise ValueError(f"unknown params {sorted(params)}; allowed: notional_usd, every, pairs")
        if self.notional <= 0:
            raise ValueError("notional_usd must be > 0")
        if any(len(p) != 2 for p in self.pairs):
            raise ValueError("pairs: each entry is [long instrument, short instrument]")
        self.started = False

    def wakes(self) -> Wakes:
        return Wakes(every=self.every)

    def on_wake(self, view, wake):
        orders = []
        if not self.started:
            self.started = True
            for long_key, short_key in self.pairs:
                quantity = view.round_quantity(long_key, self.notional / view.price(long_key))
                orders.append(PlaceOrder.market(long_key, quantity))
                orders.append(PlaceOrder.market(short_key, -quantity))
            return orders
        for long_key, short_key in self.pairs:
            for key, sign in ((long_key, 1.0), (short_key, -1.0)):
                target = view.round_quantity(key, sign * self.notional / view.price(key))
                delta = view.round_quantity(key, target - view.position(key))
                if delta != 0.0:
                    orders.append(PlaceOrder.market(key, delta))
        return orders
