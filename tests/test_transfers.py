"""Transfers between exchange silos on the REAL sample prices (datasets/sample, 2024-10-03 .. 10-10).

Hyperliquid holds a 20x short of ~20,000 USDC of ETH perp on 1,500 USDC; ETH climbs from 2,371 to
~2,500 and the account reaches maintenance at 2024-10-07 02:30 UTC (path point 2 of the 02:00 bar).
Binance (multi-asset, USDC accepted as collateral at 0.9999) has 5,000 USDC spare. A transfer of
1,000 USDC (withdrawal fee 1 USDC, 30 min delay: xmargin.ledger.transfers defaults) sent at 01:00 arrives in
time and saves the short; the same transfer sent at 02:00 is still in flight at 02:30 and does not.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest

from xmargin.ledger import events as ev
from xmargin.margin.accounting import pool_metrics
from xmargin.ledger.commands import PlaceOrder, Transfer
from xmargin.config import parse_config
from xmargin.ledger.apply import replay
from xmargin.sim.loop import Backtest
from xmargin.output.results import open_run
from xmargin.sim.runner import execute
from xmargin.sim.strategy import Wakes
from xmargin.analysis.stress import make_shock, to_ns
from xmargin.output.verify import verify_run

ROOT = Path(__file__).resolve().parents[1]
HL = "hyperliquid:ETH/USDC:USDC"
LIQUIDATED_AT = "2024-10-07T02:30"
HOUR = 3_600_000_000_000


class ShortAndTransfer:
    """Short `notional` of the Hyperliquid ETH perp at the first wake; at each `transfers` time
    (ISO, a bar close) issue Transfer(asset, amount, source, destination)."""

    def __init__(self, params):
        self.notional = float(params.get("notional", -20_000))
        self.transfers = {to_ns(at): tuple(t) for at, t in params.get("transfers", {}).items()}
        self.opened = False
        self.seen = []  # (now, in flight, hyperliquid balance) at every wake

    def wakes(self):
        return Wakes(every="1h")

    def on_wake(self, view, wake):
        self.seen.append((view.now_ns, view.in_flight(), view.balance("hyperliquid", "USDC")))
        commands = []
        if not self.opened:
            self.opened = True
            quantity = view.round_quantity(HL, self.notional / view.price(HL))
            commands.append(PlaceOrder.market(HL, quantity, leverage=20))
        if view.now_ns in self.transfers:
            asset, amount, source, destination = self.transfers[view.now_ns]
            commands.append(Transfer(asset, amount, source, destination))
        return commands


def config(transfers=None, binance=None, start="2024-10-03", end="2024-10-10"):
    return parse_config({
        "run": {"dataset": str(ROOT / "datasets/sample"), "strategy": "tests.test_transfers:ShortAndTransfer",
                "start": start, "end": end, "instruments": [HL, "binance:ETH/USDT:USDT"], "name": "transfer"},
        "strategy": {"params": {"transfers": transfers or {}}},
        "exchanges": {
            "binance": {"rules": "binance-usdm", "margin_mode": "multi-asset", "collateral": binance or {"USDC": 5000}},
            "hyperliquid": {"rules": "hyperliquid", "margin_mode": "cross", "collateral": {"USDC": 1500}}}})


def rescue(at):
    return {at: ["USDC", 1000, "binance", "hyperliquid"]}


def iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M")


def of(result, cls):
    return [e for e in result.events if isinstance(e, cls)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("transfers")
    return {"none": execute(config(), out=out, run_id="none"),
            "in_time": execute(config(rescue("2024-10-07T01:00")), out=out, run_id="in-time"),
            "too_late": execute(config(rescue("2024-10-07T02:00")), out=out, run_id="too-late")}


def test_without_a_transfer_hyperliquid_is_liquidated(runs):
    result = runs["none"].result
    (fill,) = of(result, ev.OrderFilled)
    assert fill.exchange == "hyperliquid" and fill.quantity == pytest.approx(-8.4334)
    assert fill.price == pytest.approx(2371.26285)
    (liq,) = of(result, ev.PositionLiquidated)
    assert (liq.exchange, liq.instrument, iso(liq.ts)) == ("hyperliquid", HL, LIQUIDATED_AT)
    assert liq.price == pytest.approx(2500.089, rel=1e-5)
    # Binance's spare collateral never helped: silos
    assert result.ledger.accounts["binance"].balances == {"USDC": 5000.0}


def test_transfer_that_arrives_in_time_saves_the_position(runs):
    result = runs["in_time"].result
    (sent,) = of(result, ev.TransferSent)
    (arrived,) = of(result, ev.TransferArrived)
    assert (sent.exchange, sent.destination, sent.asset, sent.amount, sent.fee) == \
        ("binance", "hyperliquid", "USDC", 1000.0, 1.0)
    assert iso(sent.ts) == "2024-10-07T01:00" and iso(sent.arrives_ts) == "2024-10-07T01:30"
    assert arrived.transfer_id == sent.transfer_id and arrived.exchange == "hyperliquid"
    assert arrived.ts <= to_ns(LIQUIDATED_AT) and arrived.amount == 1000.0
    assert of(result, ev.PositionLiquidated) == []
    assert result.ledger.accounts["hyperliquid"].positions[HL].quantity == pytest.approx(-8.4334)
    # the source paid amount + fee at once
    assert result.ledger.accounts["binance"].balances["USDC"] == pytest.approx(5000 - 1001)


def test_transfer_sent_too_late_does_not(runs):
    result = runs["too_late"].result
    (sent,) = of(result, ev.TransferSent)
    (liq,) = of(result, ev.PositionLiquidated)
    assert iso(sent.ts) == "2024-10-07T02:00" and iso(liq.ts) == LIQUIDATED_AT
    (arrived,) = of(result, ev.TransferArrived)
    # due at 02:30, the path point where maintenance was crossed (on the way to it): in flight then,
    # so the liquidation comes first in the log
    assert arrived.ts == liq.ts and result.events.index(arrived) > result.events.index(liq)
    # the liquidation is exactly the one of the run without a transfer
    (base,) = of(runs["none"].result, ev.PositionLiquidated)
    assert (liq.price, liq.quantity, liq.realized_pnl) == (base.price, base.quantity, base.realized_pnl)


def test_transfers_table_and_summary(runs):
    table = open_run(runs["in_time"].path).transfers.collect()
    assert table.height == 1
    row = table.row(0, named=True)
    assert (row["source"], row["destination"], row["asset"], row["amount"], row["fee"], row["reason"]) == \
        ("binance", "hyperliquid", "USDC", 1000.0, 1.0, "")
    assert row["arrived_ts"] is not None and row["minutes_in_flight"] >= 30
    summary = runs["in_time"].summary
    transfers = summary["total"]["transfers"]
    assert transfers["count"] == 1 and transfers["fees"] == 1.0
    assert transfers["minutes_in_flight"] == pytest.approx(row["minutes_in_flight"])
    assert summary["exchanges"]["binance"]["withdrawal_fees"] == 1.0
    assert summary["total"]["in_flight_at_end"] == 0.0
    # the fee is a cost of the sender: binance's pnl is -1 USDC (nothing else happened there)
    assert summary["exchanges"]["binance"]["pnl"] == pytest.approx(-1.0)
    assert "transfers" not in runs["none"].summary["total"]


@pytest.mark.parametrize("name", ["none", "in_time", "too_late"])
def test_verify_passes(runs, name):
    assert verify_run(runs[name].path) == []


def test_in_flight_backs_nothing(runs):
    """Between TransferSent and TransferArrived the 1,000 USDC is on neither exchange."""
    result = runs["in_time"].result
    (sent,) = of(result, ev.TransferSent)
    index = result.events.index(sent)
    during = replay(result.initial_ledger, result.events[:index + 1])
    assert set(during.in_flight) == {sent.transfer_id}
    marks = result.feed.mark_close[0]
    pools = {name: pool_metrics(account, result.catalog, marks, marks)
             for name, account in during.accounts.items()}
    assert pools["binance"]["USD"].collateral_value == pytest.approx((5000 - 1001) * 0.9999)
    hyper_before = replay(result.initial_ledger, result.events[:index]).accounts["hyperliquid"].balances["USDC"]
    assert during.accounts["hyperliquid"].balances["USDC"] == hyper_before
    # the hyperliquid balance rises by the amount at arrival, not before (funding may move it meanwhile)
    (arrived,) = of(result, ev.TransferArrived)
    at = result.events.index(arrived)
    just_before = replay(result.initial_ledger, result.events[:at])
    after = replay(just_before, [arrived])
    assert just_before.in_flight and not after.in_flight
    assert after.accounts["hyperliquid"].balances["USDC"] == \
        just_before.accounts["hyperliquid"].balances["USDC"] + 1000
    meanwhile = {type(e) for e in result.events[index + 1:at] if e.exchange == "hyperliquid"}
    assert meanwhile <= {ev.FundingSettled, ev.MarginWarningRaised}


# ------------------------------------------------------------------------------------------------ rejections
def _rejections(result):
    return of(result, ev.TransferRejected)


def test_rejected_when_amount_plus_fee_exceeds_free_collateral():
    """5,000 USDC on Binance count 4,999.5 (x0.9999): 4,999 + 1 fee = 5,000 is too much."""
    result = Backtest(config({"2024-10-03T02:00": ["USDC", 4999, "binance", "hyperliquid"]},
                             end="2024-10-04")).run()
    (rejected,) = _rejections(result)
    assert rejected.exchange == "binance" and rejected.amount == 4999
    assert "exceeds the free collateral 4999.5 on binance" in rejected.reason
    assert of(result, ev.TransferSent) == [] and result.ledger.in_flight == {}
    assert result.ledger.accounts["binance"].balances == {"USDC": 5000.0}
    # 4,998.5 + 1 fits exactly
    ok = Backtest(config({"2024-10-03T02:00": ["USDC", 4998.5, "binance", "hyperliquid"]}, end="2024-10-04")).run()
    assert len(of(ok, ev.TransferSent)) == 1


def test_rejected_beyond_the_source_pool_free_collateral():
    """Hyperliquid's USDC backs the short: its free collateral (margin balance - IM) is what can leave."""
    result = Backtest(config({"2024-10-03T02:00": ["USDC", 1000, "hyperliquid", "binance"]}, end="2024-10-04")).run()
    (rejected,) = _rejections(result)
    assert rejected.exchange == "hyperliquid" and "exceeds the free collateral" in rejected.reason


def test_rejected_unknown_exchange_and_same_exchange():
    result = Backtest(config({"2024-10-03T02:00": ["USDC", 100, "binance", "okx"],
                              "2024-10-03T03:00": ["USDC", 100, "binance", "binance"]}, end="2024-10-04")).run()
    unknown, same = _rejections(result)
    assert unknown.destination == "okx" and "exchanges must be among ['binance', 'hyperliquid']" in unknown.reason
    assert "same exchange" in same.reason
    assert unknown.transfer_id != same.transfer_id


def test_rejected_during_a_withdrawal_halt_and_the_account_is_lost(tmp_path):
    """xmargin.analysis.stress withdrawal-halt of binance from 2024-10-06 for 2 days: the rescue of 01:00 is
    refused, so hyperliquid is liquidated at the same moment as without a transfer."""
    halt = make_shock("withdrawal-halt", "2024-10-06", exchange="binance", duration="2d")
    completed = execute(config(rescue("2024-10-07T01:00")), out=tmp_path, run_id="halt", shocks=[halt])
    result = completed.result
    (rejected,) = _rejections(result)
    assert "binance has halted withdrawals" in rejected.reason
    (liq,) = of(result, ev.PositionLiquidated)
    assert iso(liq.ts) == LIQUIDATED_AT
    table = open_run(completed.path).transfers.collect()
    assert table["reason"].to_list() == [rejected.reason] and table["fee"].to_list() == [0.0]
    assert table["arrived_ts"].to_list() == [None]
    assert "transfers" not in completed.summary["total"]
    assert verify_run(completed.path) == []


def test_halt_on_the_destination_blocks_too():
    result = Backtest(config(rescue("2024-10-03T02:00"), end="2024-10-04"),
                      shocks=[make_shock("withdrawal-halt", "2024-10-03", exchange="hyperliquid")]).run()
    (rejected,) = _rejections(result)
    assert "hyperliquid has halted" in rejected.reason


def test_in_flight_at_the_end_of_the_run(tmp_path):
    """Sent at the last bar close, the transfer never arrives: the summary counts it as in flight
    (belonging to no exchange) and the money is still conserved."""
    completed = execute(config(rescue("2024-10-04T00:00"), end="2024-10-04"), out=tmp_path, run_id="end")
    result = completed.result
    assert len(of(result, ev.TransferSent)) == 1 and of(result, ev.TransferArrived) == []
    assert len(result.ledger.in_flight) == 1
    summary = completed.summary["total"]
    assert summary["in_flight_at_end"] == pytest.approx(1000.0)
    assert summary["transfers"]["minutes_in_flight"] == 0.0
    table = open_run(completed.path).transfers.collect()
    assert table["arrived_ts"].to_list() == [None]
    assert verify_run(completed.path) == []
    assert pl.Series(table["amount"]).sum() == 1000.0


def test_short_delay_transfer_lands_at_its_arrival_time():
    """Binance USDC transfer delay 5 minutes: sent 02:00, due 02:05, before the 02:30 liquidation."""
    cfg = config(rescue("2024-10-07T02:00"))
    cfg = parse_config({**cfg.raw, "exchanges": {**cfg.raw["exchanges"], "binance": {
        **cfg.raw["exchanges"]["binance"], "transfer_delay_minutes": {"USDC": 5}}}})
    result = Backtest(cfg).run()
    (sent,) = of(result, ev.TransferSent)
    assert iso(sent.arrives_ts) == "2024-10-07T02:05"
    (arrived,) = of(result, ev.TransferArrived)
    assert arrived.ts == sent.arrives_ts
    assert of(result, ev.PositionLiquidated) == []
