"""Splitting a price table into batches the validator checks one after the other.

A check needs every row of a series (one instrument's bars of one timeframe) in file order, but
not the whole table at once: the files are grouped so that no series is split between groups,
the groups are packed into batches of at most `BATCH_ROWS` rows, and a series longer than that
is cut into slices of `BATCH_ROWS` rows, each read with the row before and after it (its
neighbours for the row-to-row checks). The checks' working memory is then bounded by the batch,
not by the number of instruments or years in the dataset.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

BATCH_ROWS = 250_000  # rows checked at once: the checks' working memory is about 0.5 KB a row (125 MB a batch)
SERIES = ("instrument", "timeframe")


@attrs.frozen
class Batch:
    """Rows checked together. Without `first`: every series in `frame` complete. With `first`: the
    rows `first` .. `first + count - 1` of one series (numbered by the `_at` column of `frame`,
    which holds them and the row before and after them)."""

    frame: pl.LazyFrame
    first: int | None = None
    count: int = 0
    series: tuple[tuple[str | None, str | None], ...] = ()  # its (instrument, timeframe) keys

    def rows(self, neighbours: dict[str, pl.Expr]) -> pl.LazyFrame:
        """The batch's rows with `neighbours` (expressions over the series' rows in file order)
        computed as columns, the context rows read for them left out."""
        if self.first is None:
            return self.frame.with_columns(**neighbours)
        return (self.frame.with_columns(**neighbours)
                .filter(pl.col("_at").is_between(self.first, self.first + self.count - 1)).drop("_at"))


def relative(path: Path, root: Path) -> str:
    """`path` relative to the dataset folder (as problems name files), else as given."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def scan_files(files: list[Path], root: Path, columns: list[str]) -> pl.LazyFrame:
    """Concatenate files lazily, each with its own `file` and 0-based `row` columns."""
    frames = [pl.scan_parquet(str(f)).select(columns).with_row_index("row")
              .with_columns(file=pl.lit(relative(f, root)), instrument=pl.col("exchange") + ":" + pl.col("symbol"))
              for f in files]
    return pl.concat(frames, how="vertical")


def series_index(files: list[Path]) -> pl.DataFrame:
    """Rows per (file number, instrument, timeframe). A file whose Parquet statistics say that every
    row group holds one exchange, symbol and timeframe (no nulls) is counted from its footer;
    any other file by a streaming scan of its key columns."""
    known, scans = [], []
    for number, path in enumerate(files):
        single = _single_series(path)
        if single is not None:
            known.append((number, *single))
            continue
        scans.append(pl.scan_parquet(str(path))
                     .select(instrument=pl.col("exchange") + ":" + pl.col("symbol"), timeframe=pl.col("timeframe"))
                     .group_by(*SERIES).agg(rows=pl.len()).with_columns(file_number=pl.lit(number, pl.UInt32)))
    schema = {"file_number": pl.UInt32, "instrument": pl.String, "timeframe": pl.String, "rows": pl.UInt32}
    frames = [pl.DataFrame(known, schema=schema, orient="row")]
    frames += [frame.select(*schema).cast(schema) for frame in pl.collect_all(scans, engine="streaming")] if scans else []
    return pl.concat(frames, how="vertical")


def _single_series(path: Path) -> tuple[str, str, int] | None:
    """(instrument, timeframe, rows) when the file's footer shows one series and no nulls in its
    keys, else None (also for a footer that cannot be read: the scan then reports it)."""
    try:
        metadata = pq.ParquetFile(path).metadata
        names = [metadata.schema.column(j).path for j in range(metadata.num_columns)]
        positions = [names.index(name) for name in ("exchange", "symbol", "timeframe")]
        values = set()
        for group in range(metadata.num_row_groups):
            statistics = [metadata.row_group(group).column(j).statistics for j in positions]
            if any(s is None or not s.has_min_max or s.null_count != 0 or s.min != s.max for s in statistics):
                return None
            values.add(tuple(s.min for s in statistics))
    except (OSError, ValueError, pa.ArrowException):
        return None
    if len(values) != 1:
        return None
    exchange, symbol, timeframe = values.pop()
    return f"{exchange}:{symbol}", timeframe, metadata.num_rows


def _series_filter(instrument, timeframe) -> pl.Expr:
    return (pl.col("instrument").eq_missing(pl.lit(instrument, pl.String))
            & pl.col("timeframe").eq_missing(pl.lit(timeframe, pl.String)))


def plan_batches(files: list[Path], root: Path, columns: list[str], index: pl.DataFrame,
                 limit: int | None = None) -> list[Batch]:
    """Batches of at most `limit` rows (default BATCH_ROWS) covering every row of `files` once,
    no series split except into slices of one series; `index` is `series_index(files)`."""
    limit = limit or BATCH_ROWS
    parent = list(range(len(files)))

    def root_of(n: int) -> int:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    rows_in_file = [0] * len(files)
    series_files: dict[tuple, list[int]] = {}
    series_rows: dict[tuple, int] = {}
    for number, instrument, timeframe, rows in index.iter_rows():
        rows_in_file[number] += rows
        series_files.setdefault((instrument, timeframe), []).append(number)
        series_rows[(instrument, timeframe)] = series_rows.get((instrument, timeframe), 0) + rows
    for numbers in series_files.values():  # files sharing a series are checked together
        for number in numbers[1:]:
            parent[root_of(number)] = root_of(numbers[0])
    groups: dict[int, list[int]] = {}
    for number in range(len(files)):
        groups.setdefault(root_of(number), []).append(number)
    group_series: dict[int, list[tuple]] = {}
    for key, numbers in series_files.items():
        group_series.setdefault(root_of(numbers[0]), []).append(key)

    batches: list[Batch] = []
    pending: list[int] = []
    pending_rows = 0

    def whole(numbers: list[int]) -> Batch:
        held = tuple(key for number in sorted(numbers) for key in group_series.get(number, ()))
        return Batch(scan_files([files[n] for n in sorted(numbers)], root, columns), series=held)

    for group_root, numbers in sorted(groups.items(), key=lambda item: item[1][0]):
        size = sum(rows_in_file[n] for n in numbers)
        if size <= limit:
            if pending and pending_rows + size > limit:
                batches.append(whole(pending))
                pending, pending_rows = [], 0
            pending += numbers
            pending_rows += size
            continue
        keys = group_series[group_root]
        frame = scan_files([files[n] for n in numbers], root, columns) if len(keys) > 1 else None
        for key in sorted(keys, key=lambda k: tuple((part is None, part or "") for part in k)):
            rows = frame.filter(_series_filter(*key)).with_row_index("_at") if frame is not None else None
            for first in range(0, series_rows[key], limit):
                count = min(limit, series_rows[key] - first)
                start = max(first - 1, 0)
                if rows is None:  # one series in whole files: the slice read straight from its files
                    part = _slice([(files[n], rows_in_file[n]) for n in numbers], root, columns, start,
                                  first + count + 1)
                else:  # a series sharing its files with others: filtered, then sliced
                    part = rows.slice(start, first + count + 1 - start)
                batches.append(Batch(part, first, count, series=(key,)))
    if pending:
        batches.append(whole(pending))
    return batches


def _slice(files: list[tuple[Path, int]], root: Path, columns: list[str], start: int, stop: int) -> pl.LazyFrame:
    """Rows `start` .. `stop - 1` of the files (path, rows) read one after the other, as
    `scan_files` gives them, numbered by `_at`; each file's part is sliced in its own scan (read
    from the Parquet row groups it needs, not the whole file)."""
    parts, offset = [], 0
    for path, rows in files:
        low, high = max(start - offset, 0), min(stop - offset, rows)
        if low < high:
            parts.append(pl.scan_parquet(str(path)).select(columns).slice(low, high - low)
                         .with_row_index("row", offset=low)  # after the slice: it is then read, not the whole file
                         .with_columns(file=pl.lit(relative(path, root)),
                                       instrument=pl.col("exchange") + ":" + pl.col("symbol"),
                                       _at=pl.col("row").cast(pl.Int64) + offset))
        offset += rows
    return pl.concat(parts, how="vertical")
