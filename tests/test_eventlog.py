"""The event log as Arrow: `events_to_table` (columns filled per event type, no per-cell Python)
against a plain row-by-row recomputation, and back with `table_to_events`."""

from __future__ import annotations

import math

import attrs
import pyarrow as pa

from xmargin.ledger.events import (
    CollateralDeposited, FeeCharged, FundingSettled, MarginWarningRaised, OrderAccepted, OrderFilled, OrderRejected,
)
from xmargin.output.eventlog import event_schema, events_to_table, table_to_events, write_events, read_ipc

T = 1_704_067_200_000_000_000  # 2024-01-01 UTC, ns


def _events() -> list:
    """Interleaved event types, with a null (None) and a NaN among the numbers, a bool field, an empty and a
    null (None) tag, non-ASCII text."""
    return [
        CollateralDeposited(ts=T, exchange="binance", asset="USDT", amount=100_000.0),
        OrderAccepted(ts=T + 60_000_000_000, exchange="binance", instrument="binance:BTC/USDT:USDT", order_id=1, quantity=0.5,
                      order_type="market", limit_price=None, reduce_only=False, margin_mode="cross", leverage=10.0,
                      tag=""),
        OrderFilled(ts=T + 120_000_000_000, exchange="binance", instrument="binance:BTC/USDT:USDT", order_id=1, quantity=0.5,
                    price=42_000.5, liquidity="taker", realized_pnl=0.0, margin_delta=0.0, asset="USDT",
                    market="perp", tag="hedge"),
        FeeCharged(ts=T + 120_000_000_000, exchange="binance", instrument="binance:BTC/USDT:USDT", order_id=1, asset="USDT",
                   amount=10.500125),
        OrderAccepted(ts=T + 180_000_000_000, exchange="okx", instrument="okx:BTC/USDT:USDT", order_id=2, quantity=-0.5,
                      order_type="limit", limit_price=42_010.0, reduce_only=True, margin_mode="isolated",
                      leverage=5.0, tag="hedge"),
        OrderRejected(ts=T + 180_000_000_000, exchange="okx", instrument="okx:ETH/USDT:USDT", order_id=3, quantity=1.0,
                      reason="insufficient margin: needs 1,234.5 USDT", tag=None),
        FundingSettled(ts=T + 240_000_000_000, exchange="binance", instrument="binance:BTC/USDT:USDT", asset="USDT",
                       quantity=0.5, price=42_100.0, rate=0.0001, amount=-2.105, isolated=False),
        MarginWarningRaised(ts=T + 300_000_000_000, exchange="okx", instrument="cross:USDT \u2013 pool", level=1, threshold=0.7,
                            margin_ratio=math.nan),
        OrderFilled(ts=T + 360_000_000_000, exchange="okx", instrument="okx:BTC/USDT:USDT", order_id=2, quantity=-0.5,
                    price=42_010.0, liquidity="maker", realized_pnl=0.0, margin_delta=4_201.0, asset="USDT",
                    market="perp", tag="hedge", inverse=True),
    ]


def _plain(events, first_seq: int = 0) -> pa.Table:
    """The log built row by row: every schema column per event, None where its type has no such field."""
    schema = event_schema()
    rows = []
    for seq, event in enumerate(events, first_seq):
        row = dict.fromkeys(schema.names)
        row.update(attrs.asdict(event), seq=seq, type=type(event).__name__)
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=schema)


def _same(table: pa.Table, expected: pa.Table) -> bool:
    """Equal schemas and values, a NaN equal to a NaN, a null only where the other has a null."""
    return table.schema.equals(expected.schema) and all(
        repr(table.column(name).to_pylist()) == repr(expected.column(name).to_pylist()) for name in table.schema.names)


def test_events_to_table_equals_a_row_by_row_recomputation():
    events = _events()
    table = events_to_table(events)
    assert table.schema.equals(event_schema())
    assert _same(table, _plain(events))
    assert table.column("limit_price").null_count == 1 + 7  # the market order's None, and the 7 events of other types
    assert math.isnan(table.column("margin_ratio")[7].as_py())  # a NaN stays a number, not a null
    assert table.column("inverse").to_pylist()[-1] is True
    assert table.column("type").to_pylist()[:3] == ["CollateralDeposited", "OrderAccepted", "OrderFilled"]
    assert repr(table_to_events(table)) == repr(events)  # (repr: a NaN equals a NaN)


def test_a_batch_numbers_its_rows_from_first_seq_and_the_file_reads_back(tmp_path):
    events = _events()
    batch = events_to_table(events[4:], first_seq=4)
    assert _same(batch, _plain(events[4:], first_seq=4))
    write_events(events, tmp_path / "events.arrow", batch=3)
    assert _same(read_ipc(tmp_path / "events.arrow"), _plain(events))
    assert events_to_table([]).equals(event_schema().empty_table())

    assert events_to_table(events).column("tag").null_count == 1 + 4  # the rejected order's None, 4 events of types without a tag
