"""Dated (fixed-expiry) futures: declaration, delivery brackets, refusal after expiry, settlement.

Every expected number is derived here from the rule (settlement price = mean of the closes in the
window before expiry; PnL = quantity x (settlement - entry); fee = taker x notional), not read
from the engine.
"""

from __future__ import annotations

import numpy as np
import pytest

from xmargin.dataset.manifest import DatasetManifest, manifest_to_toml, read_manifest
from xmargin.errors import DatasetError
from xmargin.ledger import events as ev
from xmargin.ledger.apply import replay
from xmargin.ledger.commands import PlaceOrder
from xmargin.margin import formulas as margin
from xmargin.venues.instruments import Instrument
from xmargin.venues.rules import load_rules
from xmargin.sim.strategy import Wakes
from helpers_feed import HOUR, T0, VenueSpec, empty_ledger, make_catalog, make_feed, of_type, run

EXPIRY = "2024-10-01T10:00:00Z"  # T0 + 10 h: bar 10 is the first to open at the expiry
FUTURE = "binance:BTC/USDT:USDT-241001"


def future(expiry: str = EXPIRY, exchange: str = "binance", inverse: bool = False) -> Instrument:
    if inverse:
        return Instrument(exchange=exchange, symbol="BTC/USD:BTC-241001", market="future", base="BTC", quote="USD",
                          settle="BTC", contract="inverse", contract_size=100.0, lot_size=1.0, expiry=expiry)
    return Instrument(exchange=exchange, symbol="BTC/USDT:USDT-241001", market="future", base="BTC", quote="USDT",
                      settle="USDT", lot_size=0.001, expiry=expiry)


def test_a_future_needs_an_expiry_and_only_a_future_has_one():
    with pytest.raises(ValueError, match="needs an expiry"):
        Instrument(exchange="binance", symbol="BTC/USDT:USDT-241227", market="future", base="BTC", quote="USDT",
                   settle="USDT")
    with pytest.raises(ValueError, match="only futures have one"):
        Instrument(exchange="binance", symbol="BTC/USDT:USDT", market="perp", base="BTC", quote="USDT",
                   settle="USDT", expiry=EXPIRY)
    with pytest.raises(ValueError, match="not an ISO 8601"):
        future(expiry="27 Dec 2024")


def test_native_id_and_expiry_time():
    quarterly = future(expiry="2024-12-27T08:00:00Z")
    assert quarterly.native_id == "BTCUSDT_241227"  # Binance's delivery-contract id
    assert quarterly.expiry_ns == 1_735_286_400 * 1_000_000_000
    assert future(expiry="2024-12-27T08:00:00").expiry_ns == quarterly.expiry_ns  # no zone means UTC


def test_dataset_toml_round_trip_and_error_naming_the_entry(tmp_path):
    manifest = DatasetManifest(name="f", description="", kind="synthetic", instruments=(future(),))
    (tmp_path / "dataset.toml").write_text(manifest_to_toml(manifest))
    assert read_manifest(tmp_path).instruments == (future(),)
    broken = manifest_to_toml(manifest).replace(f'expiry = "{EXPIRY}"\n', "")
    (tmp_path / "dataset.toml").write_text(broken)
    with pytest.raises(DatasetError, match=r"entry 1 \(BTC/USDT:USDT-241001\).*needs an expiry"):
        read_manifest(tmp_path)


def test_delivery_brackets_are_the_published_quarterly_table():
    rules = load_rules("binance-usdm")
    listed = rules.brackets_for("BTCUSDT_250328")
    # shared binance_usdm_leverage_brackets.json: every listed quarterly 0-50k 50x 1 %, 50k-375k 25x 2 % cum 500
    assert listed.brackets[0].maintenance_margin_rate == 0.01 and listed.brackets[0].max_leverage == 50
    assert listed.brackets[1].maintenance_amount == 500
    assert rules.brackets_for("BTCUSDT").brackets[0].maintenance_margin_rate == 0.004  # the perp differs
    # an unlisted quarterly takes the nearest listed delivery table of the same pair
    assert rules.brackets_for("BTCUSDT_250627") is listed
    assert rules.brackets_for("BTCUSDT_240927") is rules.brackets_for("BTCUSDT_241227")
    assert rules.brackets_for("SOLUSDT_250328") is rules.default_brackets  # no delivery table for the pair


def test_settlement_window_is_dated():
    delivery = load_rules("binance-usdm").delivery
    before = future(expiry="2024-09-27T08:00:00Z").expiry_ns
    after = future(expiry="2024-12-27T08:00:00Z").expiry_ns
    assert delivery.window_ns(before) == 60 * 60_000_000_000  # last hour until 2024-11-11 08:00 UTC
    assert delivery.window_ns(after) == 30 * 60_000_000_000  # last 30 minutes since
    assert delivery.fee_rate(0.0005) == 0.0005  # settled like a taker fill
    assert not load_rules("hyperliquid").delivery.documented


class _Once:
    """Places `commands` at the first wake only (the Scripted helper counts hours, not bars)."""

    def __init__(self, commands):
        self.commands = list(commands)

    def wakes(self):
        return Wakes(bars=("*",))

    def on_wake(self, view, wake):
        commands, self.commands = self.commands, []
        return commands


def _future_run(script, closes, bar_ns=HOUR, collateral=10_000.0, marks=None, instrument=None, rules="binance-usdm",
                strategy=None):
    instrument = instrument or future()
    catalog = make_catalog({"binance": VenueSpec(load_rules(rules), collateral={instrument.settle: collateral})},
                           [instrument])
    feed = make_feed([instrument.key], closes, bar_ns=bar_ns, marks=marks)
    result, _ = run(catalog, feed, script, strategy=strategy)
    return result, catalog, feed


def test_open_position_settles_at_expiry_and_later_orders_are_refused():
    closes = [60_000.0 + 100 * n for n in range(14)]
    marks = {"close": [c + 7 for c in closes]}  # the mark differs from the last price: the settlement uses it
    script = {0: [PlaceOrder.market(FUTURE, 0.5, leverage=10)],
              5: [PlaceOrder.limit(FUTURE, 0.1, 50_000.0)],  # rests below the market until the expiry
              9: [PlaceOrder.market(FUTURE, 0.1)]}  # at the close of bar 9 = the expiry: refused
    result, catalog, feed = _future_run(script, closes, marks=marks)
    (fill,) = of_type(result.events, ev.OrderFilled)
    (expired,) = of_type(result.events, ev.ContractExpired)
    # an expiry before 2024-11-11 averages the last hour (Binance's older rule); with 1 h bars one bar,
    # bar 9, closes inside (expiry - 60 min, expiry]
    settlement = marks["close"][9]
    assert expired.ts == future().expiry_ns == T0 + 10 * HOUR
    assert expired.quantity == 0.5 and expired.settlement_price == settlement
    assert expired.realized_pnl == pytest.approx(0.5 * (settlement - fill.price))
    assert expired.fee == pytest.approx(0.0005 * 0.5 * settlement)
    assert "mark (no index series): mean of 1 bar close(s) in the 60 min before expiry" in expired.settlement_source
    (cancelled,) = of_type(result.events, ev.OrderCancelled)
    assert cancelled.reason == "contract expired" and cancelled.ts == expired.ts
    refused = [e for e in of_type(result.events, ev.OrderRejected) if "expired" in e.reason]
    assert len(refused) == 1 and refused[0].ts == T0 + 10 * HOUR
    account = result.ledger.accounts["binance"]
    assert not account.positions and not account.orders
    (fee,) = of_type(result.events, ev.FeeCharged)
    assert account.balance("USDT") == pytest.approx(10_000.0 - fee.amount + expired.realized_pnl - expired.fee)
    assert replay(empty_ledger(catalog), result.events) == result.ledger
    (settled,) = result.settlements
    assert settled.describe()["settlement_price"] == settlement and settled.describe()["settled_in_run"]


def test_settlement_averages_every_bar_closing_in_the_window():
    # expiry before 2024-11-11: Binance's 60 min window; 15 min bars put 4 closes inside it
    bar = HOUR // 4
    closes = [60_000.0 + 40 * n for n in range(48)]
    result, _, _ = _future_run({}, closes, bar_ns=bar, strategy=_Once([PlaceOrder.market(FUTURE, -0.2)]))
    (expired,) = of_type(result.events, ev.ContractExpired)
    assert expired.settlement_price == pytest.approx(np.mean(closes[36:40]))  # bars 36..39 close 09:15..10:00
    assert expired.quantity == -0.2
    assert "mean of 4 bar close(s) in the 60 min" in expired.settlement_source


def test_isolated_margin_returns_and_an_inverse_future_settles_in_the_coin():
    instrument = future(inverse=True)
    closes = [60_000.0 - 200 * n for n in range(14)]
    script = {0: [PlaceOrder.market(instrument.key, -600, leverage=5, margin_mode="isolated")]}
    result, catalog, _ = _future_run(script, closes, collateral=1.0, instrument=instrument, rules="binance-coinm")
    (fill,) = of_type(result.events, ev.OrderFilled)
    (expired,) = of_type(result.events, ev.ContractExpired)
    settlement = closes[9]
    assert expired.asset == "BTC" and expired.margin_released == pytest.approx(fill.margin_delta)
    assert expired.realized_pnl == pytest.approx(-600 * 100 * (1 / fill.price - 1 / settlement))
    assert expired.fee == pytest.approx(load_rules("binance-coinm").taker_fee * 600 * 100 / settlement)
    (fee,) = of_type(result.events, ev.FeeCharged)
    account = result.ledger.accounts["binance"]
    assert account.balance("BTC") == pytest.approx(1.0 - fee.amount + expired.realized_pnl - expired.fee)
    assert margin.contract_pnl(-600, fill.price, settlement, True, 100.0) == pytest.approx(expired.realized_pnl)


def test_data_ending_before_expiry_leaves_the_position_open():
    result, _, _ = _future_run({0: [PlaceOrder.market(FUTURE, 0.1)]}, [60_000.0] * 8)
    assert not of_type(result.events, ev.ContractExpired)
    (settlement,) = result.settlements
    assert settlement.row is None and not settlement.describe()["settled_in_run"]
    assert FUTURE in result.ledger.accounts["binance"].positions
