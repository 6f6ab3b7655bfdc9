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
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)

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


def events_to_table(events, first_seq: int = 0) -> pa.Table:
    """One Arrow table in log order: a table per event type (columns straight from attrgetter
    tuples, no per-cell Python), the others' columns null, merged and put back in `seq` order.
    `first_seq`: the `seq` of `events[0]` (a batch of a longer log)."""
    schema = event_schema()
    groups: dict[type, list] = {}
    seqs: dict[type, list] = {}
    for seq, event in enumerate(events, first_seq):
        cls = type(event)
        groups.setdefault(cls, []).append(event)
        seqs.setdefault(cls, []).append(seq)
    if not events:
        return schema.empty_table()
    parts = []
    for cls, members in groups.items():
        names = [f.name for f in attrs.fields(cls)]
        rows = list(map(operator.attrgetter(*names), members)) if len(names) > 1 else \
            [(getattr(m, names[0]),) for m in members]
        values = dict(zip(names, zip(*rows)))
        count = len(members)
        arrays = []
        for field in schema:
            if field.name == "seq":
                arrays.append(pa.array(seqs[cls], type=pa.int64()))
            elif field.name == "type":
                arrays.append(pa.array([cls.__name__] * count, type=field.type))
            elif field.name in values:
                column = values[field.name]
                if field.type == TIMESTAMP:
                    arrays.append(pa.array(column, type=pa.int64()).cast(TIMESTAMP))
                else:
                    arrays.append(pa.array(column, type=field.type))
            else:
                arrays.append(pa.nulls(count, type=field.type))
        parts.append(pa.Table.from_arrays(arrays, schema=schema))
    merged = pa.concat_tables(parts)
    order = pa.compute.sort_indices(merged, sort_keys=[("seq", "ascending")])
    return merged.take(order).combine_chunks()


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


def write_ipc(table: pa.Table, path: Path) -> None:
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


EVENT_BATCH = 65_536  # events per record batch of events.arrow: memory stays at one batch's columns


def write_events(events, path: Path, batch: int = EVENT_BATCH) -> None:
    """Write the log to an Arrow IPC file one record batch of `batch` events at a time."""
    schema = event_schema()
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        for start in range(0, len(events), batch):
            writer.write_table(events_to_table(events[start:start + batch], first_seq=start))


def read_ipc(path: Path) -> pa.Table:
    """Read a whole Arrow IPC file into memory (not memory-mapped: the file may be rewritten later)."""
    with pa.OSFile(str(path), "rb") as source:
        return pa.ipc.open_file(source).read_all()


def file_hash(path: Path) -> str:
    """sha256 (hex) of a file, read in blocks (memory does not grow with the file)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
