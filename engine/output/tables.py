"""The registry of a run folder's tables: one entry per `<name>.arrow` file.

Each entry names the table, fixes its Arrow schema (column order and types, so a table with no
rows still has typed columns), says where its rows come from and whether a run folder must have
it. The writer, `open_run`, `verify` and `runs list` all read this list; adding a table = one
entry here.

Sources:
  log         the event log itself (`events.arrow`)
  projection  a pure function of the event log (`xmargin.output.projections`); `verify` recomputes it
  valuation   account snapshots valued at the feed's marks (`xmargin.output.snapshots`, `xmargin.analysis.distance`)

Optional tables were added after the first run-folder layout: a run written before them opens
without them. `SCHEMA_VERSION` (in every manifest) counts layout changes; a manifest without
one is version 0 (runs written before schema versions).
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Callable

import attrs
import polars as pl
import pyarrow as pa

from xmargin.analysis.distance import equity_distances, run_distances
from xmargin.errors import RunError
from xmargin.output.eventlog import TIMESTAMP, cast_to, event_schema
from xmargin.output.projections import TRANSFER_TYPES, fills, funding, liquidations, transfers
from xmargin.output.snapshots import collateral_table, equity_base_table, positions_table

SCHEMA_VERSION = 2  # 2: the valuation tables' `valued_at` (before it: every snapshot at its bar's close marks)
SOURCES = ("log", "projection", "valuation")

_S, _F, _I, _B = pa.large_string(), pa.float64(), pa.int64(), pa.bool_()
_SNAPSHOT = [("ts", TIMESTAMP), ("reason", _S), ("exchange", _S), ("events_applied", _I), ("valued_at", _S)]


def _schema(columns) -> pa.Schema:
    return pa.schema([pa.field(name, data_type) for name, data_type in columns])


def equity_table(result) -> pa.Table:
    """Pool snapshots plus warning_distance / liquidation_distance (xmargin.analysis.distance)."""
    return equity_distances(pl.from_arrow(equity_base_table(result)), run_distances(result)).to_arrow()


@attrs.frozen
class OutputTable:
    """One table of a run folder: `<name>.arrow` with exactly `schema`.

    `build(result, events)` makes it from a finished in-memory run and its event log (Arrow);
    `project` (projections only) is the polars function of the log that `verify` recomputes.
    `gathered` (projections only): the event types of a projection whose rows span moments; the
    writer projects them once from the whole log, the other projections a moment at a time."""

    name: str
    schema: pa.Schema = attrs.field(eq=False)
    source: str = attrs.field(validator=attrs.validators.in_(SOURCES))
    required: bool
    build: Callable = attrs.field(eq=False)
    project: Callable | None = attrs.field(default=None, eq=False)
    description: str = ""
    gathered: tuple[str, ...] = ()

    @property
    def file(self) -> str:
        return f"{self.name}.arrow"

    def conform(self, table: pa.Table) -> pa.Table:
        """`table` in the registry's column order and types, one chunk per column; a missing or
        extra column is a bug of the code that built it, reported with both column lists."""
        if set(table.schema.names) != set(self.schema.names):
            raise RunError(f"{self.file}: built with columns {table.schema.names}, but the output table registry "
                           f"(xmargin.output.tables) says {self.schema.names}; update the one that is wrong.")
        # one chunk per column, in buffers of its own: chunks that share a bitmap (polars splits one
        # without copying) leave bits of their neighbour past their end, which the IPC writer copies
        # into the file; the same values must give the same bytes
        return cast_to(table.select(self.schema.names), self.schema).combine_chunks()


def _projection(name: str, project, columns, description: str, gathered: tuple[str, ...] = ()) -> OutputTable:
    return OutputTable(name, _schema(columns), "projection", required=True,
                       build=lambda result, events: project(pl.from_arrow(events).lazy()).collect().to_arrow(),
                       project=project, description=description, gathered=gathered)


OUTPUT_TABLES: tuple[OutputTable, ...] = (
    OutputTable("events", event_schema(), "log", required=True, build=lambda result, events: events,
                description="every event of the run in order; the source of truth"),
    _projection("fills", fills, [("seq", _I), ("ts", TIMESTAMP), ("exchange", _S), ("instrument", _S),
                                 ("order_id", _I), ("quantity", _F), ("price", _F), ("liquidity", _S),
                                 ("realized_pnl", _F), ("margin_delta", _F), ("settle_asset", _S), ("market", _S),
                                 ("tag", _S), ("fee", _F), ("fee_asset", _S), ("notional", _F)],
                "one row per fill with its fee"),
    _projection("funding", funding, [("seq", _I), ("ts", TIMESTAMP), ("exchange", _S), ("instrument", _S),
                                     ("asset", _S), ("quantity", _F), ("mark_price", _F), ("rate", _F),
                                     ("amount", _F), ("isolated", _B)],
                "one row per position per funding settlement"),
    _projection("liquidations", liquidations, [
        ("seq", _I), ("ts", TIMESTAMP), ("exchange", _S), ("instrument", _S), ("quantity", _F), ("price", _F),
        ("trigger_price", _F), ("realized_pnl", _F), ("fee", _F), ("margin_released", _F), ("asset", _S),
        ("isolated", _B), ("policy", _S), ("insurance_fund_used", _F), ("notional", _F)],
        "one row per liquidated position"),
    _projection("transfers", transfers, [
        ("transfer_id", _I), ("sent_ts", TIMESTAMP), ("source", _S), ("destination", _S), ("asset", _S),
        ("amount", _F), ("fee", _F), ("arrives_ts", TIMESTAMP), ("arrived_ts", TIMESTAMP), ("reason", _S),
        ("minutes_in_flight", _F)],
        "one row per transfer between exchanges", gathered=TRANSFER_TYPES),
    OutputTable("equity", _schema([
        *_SNAPSHOT, ("asset", _S), ("wallet_balance", _F), ("cross_wallet_balance", _F), ("collateral_value", _F),
        ("isolated_margin", _F), ("unrealized_pnl", _F), ("margin_balance", _F), ("initial_margin", _F),
        ("maintenance_margin", _F), ("margin_ratio", _F), ("free_collateral", _F), ("open_order_margin", _F),
        ("warning_distance", _F), ("liquidation_distance", _F)]), "valuation", required=True,
        build=lambda result, events: equity_table(result),
        description="per snapshot and margin pool: wallet, margin, ratio, distances to warning and liquidation"),
    OutputTable("positions", _schema([
        *_SNAPSHOT, ("instrument", _S), ("quantity", _F), ("entry_price", _F), ("mark_price", _F), ("notional", _F),
        ("unrealized_pnl", _F), ("initial_margin", _F), ("maintenance_margin", _F), ("margin_mode", _S),
        ("isolated_margin", _F), ("leverage", _F), ("liquidation_price", _F), ("bankruptcy_price", _F),
        ("asset", _S)]), "valuation", required=True, build=lambda result, events: positions_table(result),
        description="per snapshot and open position: quantity, marks, margin, liquidation price"),
    OutputTable("distance", _schema([
        *_SNAPSHOT, ("asset", _S), ("unit", _S), ("underlying", _S), ("warning_distance", _F),
        ("liquidation_distance", _F)]), "valuation", required=False,
        build=lambda result, events: run_distances(result).to_arrow(),
        description="per snapshot and risk unit: adverse move to warning / liquidation"),
    OutputTable("collateral", _schema([
        *_SNAPSHOT, ("asset", _S), ("balance", _F), ("price", _F), ("value", _F), ("collateral_value", _F)]),
        "valuation", required=False, build=lambda result, events: collateral_table(result),
        description="per snapshot and balance: amount, USD price and value, value after haircut"),
)

BY_NAME = {table.name: table for table in OUTPUT_TABLES}


class TableFiles:
    """Registry tables appended record batch by record batch to their files in `folder`, each file
    opened at its first table (with the registry's schema)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._stack = ExitStack()
        self._writers: dict = {}

    def append(self, parts: dict) -> None:
        """Append {table name: Arrow table} (names outside the registry are skipped)."""
        for name, table in parts.items():
            if name not in BY_NAME:
                continue
            entry = BY_NAME[name]
            if name not in self._writers:
                sink = self._stack.enter_context(pa.OSFile(str(self.folder / entry.file), "wb"))
                self._writers[name] = self._stack.enter_context(pa.ipc.new_file(sink, entry.schema))
            self._writers[name].write_table(entry.conform(table))

    @property
    def written(self) -> list[str]:
        """The tables with a file open."""
        return sorted(self._writers)

    def close(self) -> list[str]:
        """Finish every file; the names of the tables written."""
        self._stack.close()
        return sorted(self._writers)
