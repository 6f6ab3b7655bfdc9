"""The event log as an Arrow table, and back.

Columns: `seq`, `ts`, `type`, `exchange`, `instrument`, then every other field of every event
type in alphabetical order (null where an event type has no such field). The schema is derived
from the event classes, so it is explicit and the same for every run; fields named `ts` or
ending in `_ts` are `timestamp[ns, UTC]`.
"""

from __future__ import annotations

import hashlib
import operator
from pathlib import Path

import attrs
import numpy as np
import pyarrow as pa

from xmargin.ledger.events import event_types

TIMESTAMP = pa.timestamp("ns", tz="UTC")
_ARROW_TYPES = {"float": pa.float64(), "int": pa.int64(), "str": pa.large_string(), "bool": pa.bool_()}
LEADING = ("seq", "ts", "type", "exchange", "instrument")


def _field_type(name: str, annotation) -> pa.DataType:
    if name == "ts" or name.endswith("_ts"):
        return TIMESTAMP
    return _ARROW_TYPES[annotation if isinstance(annotation, str) else annotation.__name__]


def event_schema() -> pa.Schema:
    types: dict[str, pa.DataType] = {"seq": pa.int64(), "ts": TIMESTAMP, "type": pa.large_string(),
                                     "exchange": pa.large_string(), "instrument": pa.large_string()}
    for cls in event_types().values():
        for field in attrs.fields(cls):
            data_type = _field_type(field.name, field.type)
            if types.setdefault(field.name, data_type) != data_type:
                raise TypeError(f"event field {field.name} has two types across event classes")
    rest = sorted(set(types) - set(LEADING))
    return pa.schema([pa.field(name, types[name]) for name in (*LEADING, *rest)])


_NUMPY_TYPES = {pa.float64(): np.float64, pa.int64(): np.int64, TIMESTAMP: np.int64}  # (not bool: bool(None) is False)


def _column(n: int, parts: list, data_type: pa.DataType) -> pa.Array:
    """One column of `n` rows from (rows, values) parts (null elsewhere): numbers through a typed
    numpy array and a validity mask, anything else (strings, booleans, a None among the values)
    through a numpy object column (pyarrow converts a column of str in one pass)."""
    dtype = _NUMPY_TYPES.get(data_type)
    if dtype is not None:
        data, valid = np.zeros(n, dtype=dtype), np.zeros(n, dtype=bool)
        try:
            for rows, values in parts:
                read = np.fromiter(values, dtype=dtype, count=len(rows))
                if dtype is np.float64 and np.isnan(read).any() and None in values:  # numpy reads None as nan
                    raise TypeError("None among the values: nulls")
                data[rows] = read
                valid[rows] = True
        except (TypeError, ValueError):  # a None, or a value numpy cannot read as a number: pyarrow decides
            pass
        else:
            return pa.array(data, type=data_type, mask=None if valid.all() else ~valid)
    column = np.empty(n, dtype=object)  # None: null
    for rows, values in parts:
        column[rows] = np.fromiter(values, dtype=object, count=len(rows))
    return pa.array(column, type=data_type)


def events_to_table(events, first_seq: int = 0) -> pa.Table:
    """One Arrow table in log order. Each event type's fields are read field by field (a list
    per field) and placed at their events' rows of one column per field (null where an event type has no such
    field), then each column is converted once: no per-cell Python, no sort.
    `first_seq`: the `seq` of `events[0]` (a batch of a longer log)."""
    schema = event_schema()
    if not events:
        return schema.empty_table()
    n = len(events)
    kinds = list(map(type, events))
    code = {cls: c for c, cls in enumerate(dict.fromkeys(kinds))}
    codes = np.fromiter(map(code.__getitem__, kinds), dtype=np.int64, count=n)
    parts: dict[str, list] = {"type": []}
    for cls, c in code.items():
        rows = np.flatnonzero(codes == c)
        members = list(map(events.__getitem__, rows.tolist()))
        parts["type"].append((rows, [cls.__name__] * len(rows)))
        for field in attrs.fields(cls):  # a list per field: no tuple per event
            parts.setdefault(field.name, []).append((rows, list(map(operator.attrgetter(field.name), members))))
    arrays = [pa.array(np.arange(first_seq, first_seq + n, dtype=np.int64)) if field.name == "seq" else
              _column(n, parts[field.name], field.type) if field.name in parts else
              pa.nulls(n, type=field.type) for field in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def table_to_events(table: pa.Table) -> list:
    """Rebuild the event objects from a log table (the inverse of `events_to_table`)."""
    registry = event_types()
    data = {name: table.column(name).cast(pa.int64()).to_pylist() if table.schema.field(name).type == TIMESTAMP
            else table.column(name).to_pylist() for name in table.schema.names}
    field_names = {name: [f.name for f in attrs.fields(cls)] for name, cls in registry.items()}
    out = []
    for row, type_name in enumerate(data["type"]):
        cls = registry[type_name]
        out.append(cls(*(data[name][row] for name in field_names[type_name])))
    return out


def cast_to(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` (columns already in `schema`'s order) with `schema`'s types; no cast (and no
    pyarrow.compute import) when they are already those."""
    return table if table.schema.equals(schema) else table.cast(schema)


def write_ipc(table: pa.Table, path: Path) -> None:
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


# events per record batch of events.arrow: the log's tables are made from each batch as it is written
# (`xmargin.output.logtables`), so memory holds one batch's columns and the work on them
EVENT_BATCH = 16_384


def write_events(events, path: Path, batch: int | None = None, tables=None) -> None:
    """Write the log to an Arrow IPC file one record batch of `batch` (default `EVENT_BATCH`) events
    at a time; `tables`: as `EventFile`'s."""
    log = EventFile(path, batch, tables)
    try:
        log.finish(events)
    except BaseException:
        log.abort()
        raise


class EventFile:
    """`events.arrow` written while a run goes on (`xmargin.sim.loop.Backtest(event_file=...)`): the
    loop hands over each full record batch of `batch` events and drops them from memory; the
    writer adds the rest at the end (`finish`). The file's bytes are `write_events`'s for the same log.
    `tables`: given each record batch once written (`xmargin.output.logtables.LogTables`: the tables
    made from the log as it is written, so that it is never read back)."""

    def __init__(self, path: Path, batch: int | None = None, tables=None):
        self.path = Path(path)
        self.batch = EVENT_BATCH if batch is None else batch  # events per record batch
        self.tables = tables
        self.written = 0  # events in the file
        self._sink = pa.OSFile(str(self.path), "wb")
        self._writer = pa.ipc.new_file(self._sink, event_schema())

    def add(self, events) -> None:
        """Append `events` (log order, following those written) as one record batch."""
        table = events_to_table(events, first_seq=self.written)
        self._writer.write_table(table)
        self.written += len(events)
        if self.tables is not None:
            self.tables.add(table)

    def finish(self, events) -> None:
        """Append the log's remaining `events`, `batch` at a time, and close the file."""
        batch = self.batch
        for start in range(0, len(events), batch):
            self.add(events[start:start + batch])
        self._writer.close()
        self._sink.close()

    def abort(self) -> None:
        """Close the file (and its `tables`' files) without finishing it (a failed run: its folder is
        removed)."""
        closings = (self._writer.close, self._sink.close, *((self.tables.abort,) if self.tables is not None else ()))
        for closing in closings:
            try:
                closing()
            except Exception:  # noqa: BLE001 - already failing; the folder goes
                pass


def read_ipc(path: Path) -> pa.Table:
    """Read a whole Arrow IPC file into memory (not memory-mapped: the file may be rewritten later)."""
    with pa.OSFile(str(path), "rb") as source:
        return pa.ipc.open_file(source).read_all()


HASH_BLOCK = 1 << 23  # 8 MiB: few GIL hand-overs when a background thread hashes (xmargin.output.writer)


def file_hash(path: Path) -> str:
    """sha256 (hex) of a file, read in blocks (memory does not grow with the file)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()
