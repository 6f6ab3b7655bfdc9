"""Incremental pool valuation (xmargin.margin.incremental, what a fill checks) is the kernel's
`unit_one` over the pool's freshly built rows, bit for bit, along any sequence of account states:
positions changed, opened, closed, moved between cross and isolated or between settlement pools,
leverage settings changed, prices moved, several exchanges interleaved. And the cost of one more
fill does not grow with the number of open positions."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers_feed import VenueSpec, make_catalog, perp, rules
from xmargin.ledger.state import Account, Position
from xmargin.margin import incremental, units
from xmargin.margin.kernel import unit_one
from xmargin.margin.modes import cross

BASES = ("BTC", "ETH", "SOL", "XRP", "DOGE", "ADA")
INSTRUMENTS = [perp(exchange, base, settle) for exchange in ("a", "b") for base in BASES for settle in ("USDT", "USDC")]
CATALOG = make_catalog({"a": VenueSpec(rules("binance-usdm")), "b": VenueSpec(rules("bybit-linear"))}, INSTRUMENTS)
KEYS = [i.key for i in INSTRUMENTS]
OWN = {name: [k for k in KEYS if k.startswith(name + ":")] for name in ("a", "b")}  # 12 per exchange


class _Forgetful(dict):
    def __setitem__(self, key, value):
        pass


def _fresh(account, marks, pool):
    """The pool's unit as cross mode builds it, valued by unit_one with every memo off."""
    saved_rows = units._ROW_MEMO
    units._ROW_MEMO = _Forgetful()
    try:
        for unit in cross.risk_units(account, CATALOG):
            if not unit.isolated and unit.asset == pool:
                return unit_one(unit.rows, unit.base, [float(marks[row[0]]) for row in unit.rows])
        return None
    finally:
        units._ROW_MEMO = saved_rows


step = st.one_of(
    st.tuples(st.just("trade"), st.integers(0, 11), st.sampled_from([-2.5, -1.0, -0.001, 0.5, 1.0, 3.0]),
              st.sampled_from(["cross", "isolated"])),
    st.tuples(st.just("close"), st.integers(0, 11)),
    st.tuples(st.just("reopen"), st.integers(0, 11)),  # closed and reopened in the other mode
    st.tuples(st.just("leverage"), st.integers(0, 11), st.sampled_from([2.0, 5.0, 20.0])),
    st.tuples(st.just("prices"), st.integers(0, 10_000)),
    st.tuples(st.just("balance"), st.floats(-1_000, 1_000)),
    st.tuples(st.just("same")),
)


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(st.tuples(st.sampled_from(["a", "b"]), step), min_size=1, max_size=40))
def test_incremental_pool_value_is_unit_one_of_fresh_rows(steps):
    incremental._LAST.clear()
    accounts = {name: Account(name, "cross", {"USDT": 10_000.0, "USDC": 5_000.0}, {}, {}, {}, {}, {}, {})
                for name in ("a", "b")}
    rng = np.random.default_rng(0)
    marks = rng.uniform(0.5, 70_000, len(KEYS))
    for exchange, action in steps:
        account = accounts[exchange]
        if action[0] == "trade":
            key = OWN[exchange][action[1]]
            held = account.positions.get(key)
            quantity = (held.quantity if held is not None else 0.0) + action[2]
            positions = dict(account.positions)
            if abs(quantity) < 1e-12:
                positions.pop(key, None)
            else:
                mode = held.margin_mode if held is not None else action[3]
                settle = key.rsplit(":", 1)[1]
                positions[key] = Position(key, quantity, float(marks[KEYS.index(key)]) * 0.99, mode,
                                          100.0 if mode == "isolated" else 0.0, settle)
            account = Account(exchange, "cross", account.balances, positions, {}, account.leverage, {}, {}, {})
        elif action[0] == "close":
            positions = dict(account.positions)
            positions.pop(OWN[exchange][action[1]], None)
            account = Account(exchange, "cross", account.balances, positions, {}, account.leverage, {}, {}, {})
        elif action[0] == "reopen":
            key = OWN[exchange][action[1]]
            held = account.positions.get(key)
            if held is None:
                continue
            positions = dict(account.positions)  # between two checks: the key keeps its place
            mode = "isolated" if held.margin_mode == "cross" else "cross"
            positions[key] = Position(key, held.quantity, held.entry_price, mode,
                                      100.0 if mode == "isolated" else 0.0, held.asset)
            account = Account(exchange, "cross", account.balances, positions, {}, account.leverage, {}, {}, {})
        elif action[0] == "leverage":
            leverage = dict(account.leverage)
            leverage[OWN[exchange][action[1]]] = action[2]
            account = Account(exchange, "cross", account.balances, account.positions, {}, leverage, {}, {}, {})
        elif action[0] == "prices":
            marks = np.random.default_rng(action[1]).uniform(0.5, 70_000, len(KEYS))
        elif action[0] == "balance":
            balances = dict(account.balances)
            balances["USDT"] += action[1]
            account = Account(exchange, "cross", balances, account.positions, {}, account.leverage, {}, {}, {})
        accounts[exchange] = account
        for pool in ("USDT", "USDC"):
            got = cross.pool_value(account, CATALOG, marks, pool)
            want = _fresh(account, marks, pool)
            assert got == want, (exchange, pool, action)


def test_a_fill_on_a_wide_pool_revalues_one_leg():
    """Of a pool of 6 positions, the state after one fill revalues only the changed leg: the
    kernel's leg valuation runs once, not 6 times (the cost of a fill does not grow with the book).
    As in the ledger, the new account state shares the dicts the fill did not change."""
    incremental._LAST.clear()
    keys = [k for k in KEYS if k.startswith("a:") and k.endswith(":USDT")]
    marks = np.linspace(1.0, 60_000.0, len(KEYS))
    positions = {k: Position(k, 1.0 + n, 10.0 * (n + 1), "cross", 0.0, "USDT") for n, k in enumerate(keys)}
    account = Account("a", "cross", {"USDT": 50_000.0}, positions, {}, {}, {}, {}, {})
    assert cross.pool_value(account, CATALOG, marks, "USDT") == _fresh(account, marks, "USDT")
    calls = []
    original = incremental.leg_figures
    incremental.leg_figures = lambda row, price: calls.append(row) or original(row, price)
    try:
        changed = dict(positions)
        changed[keys[3]] = Position(keys[3], 7.5, 42.0, "cross", 0.0, "USDT")
        after = Account("a", "cross", {"USDT": 49_990.0}, changed, {}, account.leverage, {}, {}, {})
        assert cross.pool_value(after, CATALOG, marks, "USDT") == _fresh(after, marks, "USDT")
    finally:
        incremental.leg_figures = original
    assert len(calls) == 1 and calls[0][1] == 7.5
