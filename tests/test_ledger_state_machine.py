"""Stateful test: the ledger, driven through `decide` -> `fill_events` / `funding_events` -> `apply`,
against a tiny reference model written from scratch here (balances, and per position its quantity,
average entry and isolated margin).

Two accounts: "bx" (cross) and "bi" (isolated), one BTC perp each (lot 0.001, flat 1 % maintenance
bracket up to 50x, account leverage 10x, taker fee 0.05 %). The feed has a single row whose prices
the machine rewrites, so every command is checked and filled at the current price.
"""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from xmargin.ledger import commands as cmd
from xmargin.ledger import events as ev
from xmargin.ledger.decide import decide
from xmargin.sim.execution import fill_events, funding_events
from xmargin.ledger.apply import apply
from xmargin.ledger.state import Ledger
from helpers_feed import VenueSpec, context, flat_brackets, make_catalog, make_feed, perp, rules

KEYS = ("bx:BTC/USDT:USDT", "bi:BTC/USDT:USDT")
TAKER = 0.0005
LEVERAGE = 10.0


class Reference:
    """What the accounts should hold, computed independently of the engine."""

    def __init__(self):
        self.balance = {"bx": 0.0, "bi": 0.0}
        self.positions = {}  # key -> [quantity, entry, isolated margin]
        self.flows = {"bx": 0.0, "bi": 0.0}  # deposits + realised + funding - fees

    def fill(self, key, quantity, price):
        exchange = key.split(":")[0]
        isolated = exchange == "bi"
        held, entry, margin = self.positions.get(key, [0.0, 0.0, 0.0])
        new = held + quantity
        realized = 0.0
        if held != 0 and (held > 0) != (quantity > 0):
            closed = min(abs(quantity), abs(held))
            realized = closed * (price - entry) * (1 if held > 0 else -1)
            if isolated:
                release = margin * closed / abs(held)
                margin -= release
                self.balance[exchange] += release
        if held == 0 or (held > 0) == (quantity > 0):
            entry = (held * entry + quantity * price) / new
        elif abs(quantity) > abs(held):
            entry = price
        grow = max(abs(new) - abs(held), 0.0)
        if isolated and grow > 0:
            margin += grow * price / LEVERAGE
            self.balance[exchange] -= grow * price / LEVERAGE
        fee = abs(quantity) * price * TAKER
        self.balance[exchange] += realized - fee
        self.flows[exchange] += realized - fee
        if abs(new) < 1e-12:
            self.positions.pop(key, None)
        else:
            self.positions[key] = [new, entry, margin]
        return realized, fee

    def funding(self, key, mark, rate):
        if key not in self.positions:
            return None
        amount = -self.positions[key][0] * mark * rate
        if key.startswith("bi:"):
            self.positions[key][2] += amount
        else:
            self.balance[key.split(":")[0]] += amount
        self.flows[key.split(":")[0]] += amount
        return amount


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        rs = rules(taker_fee=TAKER, maker_fee=0.0002)
        self.catalog = make_catalog({"bx": VenueSpec(rs, "cross", {"USDT": 0.0}, LEVERAGE),
                                     "bi": VenueSpec(rs, "isolated", {"USDT": 0.0}, LEVERAGE)},
                                    [perp("bx", "BTC"), perp("bi", "BTC")],
                                    tables={k: flat_brackets(0.01, 50.0) for k in KEYS})
        self.feed = make_feed(KEYS, [[100.0, 100.0]])
        self.ctx = context(self.catalog, self.feed, 0)
        self.ledger = Ledger.create({"bx": "cross", "bi": "isolated"})
        self.ref = Reference()
        self.ts = 0

    def emit(self, events):
        for e in events:
            self.ledger = apply(self.ledger, e)

    def price(self, column):
        return float(self.feed.close[0, column])

    @rule(exchange=st.sampled_from(["bx", "bi"]), amount=st.integers(1, 5000).map(float))
    def deposit(self, exchange, amount):
        self.emit([ev.CollateralDeposited(self.ts, exchange, "USDT", amount)])
        self.ref.balance[exchange] += amount
        self.ref.flows[exchange] += amount

    @rule(column=st.integers(0, 1), price=st.floats(20.0, 500.0).map(lambda p: round(p, 2)))
    def move_price(self, column, price):
        for name in ("open", "high", "low", "close", "mark_open", "mark_high", "mark_low", "mark_close"):
            getattr(self.feed, name)[0, column] = price

    @rule(column=st.integers(0, 1), lots=st.integers(-400, 400).filter(bool), reduce_only=st.booleans())
    def market_order(self, column, lots, reduce_only):
        key = KEYS[column]
        self.ts += 1
        out = decide(self.ledger, self.ctx, cmd.PlaceOrder.market(key, lots / 100.0, reduce_only=reduce_only),
                     self.ts)
        self.emit(out)
        if not isinstance(out[-1], ev.OrderAccepted):
            assert isinstance(out[-1], ev.OrderRejected) and out[-1].reason
            return
        order = self.ledger.accounts[key.split(":")[0]].orders[out[-1].order_id]
        assert order.leverage == LEVERAGE
        filled = fill_events(self.ledger, self.ctx, order, self.price(column), "taker", self.ts)
        self.emit(filled)
        if isinstance(filled[0], ev.OrderFilled):
            realized, fee = self.ref.fill(key, filled[0].quantity, self.price(column))
            assert filled[0].realized_pnl == pytest.approx(realized, rel=1e-9, abs=1e-9)
            assert filled[1].amount == pytest.approx(fee, rel=1e-12)
            if reduce_only:
                assert abs(filled[0].quantity) <= abs(lots / 100.0)
        else:  # a reduce-only order with nothing to reduce, or margin gone at the fill
            assert isinstance(filled[0], (ev.OrderCancelled, ev.OrderRejected))

    @precondition(lambda self: bool(self.ledger.accounts["bx"].positions or self.ledger.accounts["bi"].positions))
    @rule(column=st.integers(0, 1), rate=st.floats(-0.003, 0.003))
    def funding(self, column, rate):
        out = funding_events(self.ledger, self.ctx, 0, [(column, rate)])
        expected = self.ref.funding(KEYS[column], self.price(column), rate)
        if expected is None:
            assert out == []
            return
        (event,) = out
        assert event.amount == pytest.approx(expected, rel=1e-12, abs=1e-12)
        assert event.isolated == (column == 1)
        self.emit(out)

    @invariant()
    def matches_reference(self):
        for exchange in ("bx", "bi"):
            account = self.ledger.accounts[exchange]
            assert account.orders == {}
            assert account.balance("USDT") == pytest.approx(self.ref.balance[exchange], rel=1e-9, abs=1e-7)
            assert account.wallet_total("USDT") == pytest.approx(self.ref.flows[exchange], rel=1e-9, abs=1e-7)
        positions = {k: p for a in self.ledger.accounts.values() for k, p in a.positions.items()}
        assert set(positions) == set(self.ref.positions)
        for key, (quantity, entry, margin) in self.ref.positions.items():
            p = positions[key]
            assert p.quantity == pytest.approx(quantity, abs=1e-9)
            assert p.entry_price == pytest.approx(entry, rel=1e-9)
            assert p.isolated_margin == pytest.approx(margin, rel=1e-9, abs=1e-7)
            assert p.margin_mode == ("isolated" if key.startswith("bi:") else "cross")
            if p.margin_mode == "cross":
                assert p.isolated_margin == 0.0


TestLedgerMachine = LedgerMachine.TestCase
TestLedgerMachine.settings = settings(max_examples=30, stateful_step_count=20, deadline=None)
