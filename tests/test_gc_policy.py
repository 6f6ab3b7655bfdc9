"""The run's garbage-collection policy (xmargin.sim.loop.few_collections): the engine's long-lived log
is scanned at most once, yet cyclic garbage a strategy makes during a run is still collected, the
run gives the same events as with Python's default collector, and the collector is restored after."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import pytest

from xmargin.config import parse_config
from xmargin.ledger.commands import PlaceOrder
from xmargin.sim import loop
from xmargin.sim.loop import Backtest, few_collections
from xmargin.sim.strategy import Wakes

ROOT = Path(__file__).resolve().parents[1]
ETH = "binance:ETH/USDT:USDT"


class _Node:
    def __init__(self):
        self.me = self  # a reference cycle: only the cyclic collector frees it


class CycleMaker:
    """Makes 200 self-referencing objects at every hourly wake and drops them; trades now and then."""

    def __init__(self, params):
        self.count = 0
        self.live = []  # weak references to every object made

    def wakes(self):
        return Wakes(every="1h")

    def on_wake(self, view, wake):
        self.count += 1
        for _ in range(200):
            self.live.append(weakref.ref(_Node()))
        if self.count % 24 == 1:
            return [PlaceOrder.market(ETH, 0.5 if self.count % 48 == 1 else -0.5)]
        return []


def _config():
    return parse_config({
        "run": {"dataset": str(ROOT / "datasets/sample"), "strategy": "tests.test_gc_policy:CycleMaker",
                "start": "2024-10-01", "end": "2024-10-11", "instruments": [ETH]},
        "exchanges": {"binance": {"rules": "binance-usdm", "collateral": {"USDT": 100_000}}}})


def test_cyclic_garbage_of_a_strategy_is_collected_during_the_run():
    """With the policy as shipped: a strategy dropping 200 cyclic objects an hour over 10 days."""
    before = gc.get_threshold()
    backtest = Backtest(_config())
    collections = []
    callback = lambda phase, info: collections.append(info["collected"]) if phase == "stop" else None  # noqa: E731
    gc.callbacks.append(callback)
    try:
        events = backtest.run().events
    finally:
        gc.callbacks.remove(callback)
    live = backtest.strategy.live
    made = len(live)
    alive = sum(ref() is not None for ref in live)
    assert made == 200 * backtest.strategy.count and made > 40_000
    # freed by the young collections inside the run (what the last one had not yet seen is still alive)
    assert len(collections) >= 3 and sum(collections) >= made - alive > 0.75 * made
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
    assert any(type(e).__name__ == "OrderFilled" for e in events)


def test_the_policy_changes_no_event(monkeypatch):
    monkeypatch.setattr(loop, "GC_YOUNG_THRESHOLD", 2_000)
    with_policy = Backtest(_config()).run().events
    monkeypatch.setattr(loop, "few_collections", _default_collector)
    default = Backtest(_config()).run().events
    assert with_policy == default


def test_nested_policies_restore_the_collector():
    before = gc.get_threshold()
    with few_collections():
        with few_collections():
            assert gc.get_threshold()[0] >= loop.GC_YOUNG_THRESHOLD
        assert gc.get_threshold()[0] >= loop.GC_YOUNG_THRESHOLD
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
    assert loop._freeze_survivors not in gc.callbacks


class _default_collector:
    """Python's collector as it is (the policy off)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_overlapping_policies_restore_the_collector():
    """Two runs in threads that enter and leave out of order (A in, B in, A out, B out): the
    collector is restored when the last one leaves, not set to the policy's threshold for good."""
    import threading

    before = gc.get_threshold()
    entered_a, entered_b, a_left = threading.Event(), threading.Event(), threading.Event()

    def run_a():
        with few_collections():
            entered_a.set()
            entered_b.wait(5)
        a_left.set()

    def run_b():
        entered_a.wait(5)
        with few_collections():
            entered_b.set()
            a_left.wait(5)
            assert gc.get_threshold()[0] >= loop.GC_YOUNG_THRESHOLD  # B's run still has the policy

    threads = [threading.Thread(target=run_a), threading.Thread(target=run_b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert all(e.is_set() for e in (entered_a, entered_b, a_left))
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
    assert loop._freeze_survivors not in gc.callbacks


def test_a_run_that_raises_restores_the_collector():
    before = gc.get_threshold()
    with pytest.raises(RuntimeError):
        with few_collections():
            gc.collect(0)  # a collection inside: its survivors are frozen
            assert gc.get_freeze_count() > 0
            raise RuntimeError("strategy failed")
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
    assert loop._freeze_survivors not in gc.callbacks and loop._policy_users == 0


def test_callbacks_cleared_by_someone_else_still_restore_the_collector():
    """Another library clearing gc.callbacks during a run does not leave the process at the policy's
    threshold with everything frozen (the exit restores the collector before anything that can fail)."""
    before = gc.get_threshold()
    with few_collections():
        gc.callbacks.clear()
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0 and loop._policy_users == 0
