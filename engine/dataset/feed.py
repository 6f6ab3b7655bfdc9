"""Market data for a run: lazy Parquet scans turned into dense time x instrument arrays.

No Python object per bar: the loop indexes these arrays and scans whole slices of them with
numpy between the moments that need per-event work. Missing bars are not invented: `has_bar` is
False there (nothing fills), prices carry the last close forward for valuation, and the bar's
range is flat. A mark series of another timeframe than the bars, or none, falls back to the last
price for that instrument; so does a mark series after its last row (a mark that stops early is
not held stale); `mark_source` says which was used (recorded in the run manifest) and
`warnings` say what a run summary must repeat.
"""

from __future__ import annotations

import errno
import hashlib
import re
from datetime import datetime, timezone
from pathlib import Path

import attrs
import numpy as np
import polars as pl

from xmargin._arrays import sorted_unique
from xmargin.dataset.batches import series_index
from xmargin.dataset.manifest import KINDS, DatasetManifest, read_manifest
from xmargin.dataset.paging import copy_into, store_for
from xmargin.dataset.tables import not_a_file, scan, table_files
from xmargin.errors import DatasetError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def timeframe_ns(timeframe: str) -> int:
    """'1m' -> 60e9, '1h' -> 3600e9 ... (ns)."""
    match = re.fullmatch(r"(\d+)([smhdw])", timeframe)
    if not match:
        raise DatasetError(f"timeframe {timeframe!r} is not of the form <number><s|m|h|d|w>, e.g. '1h'.")
    return int(match.group(1)) * _UNITS[match.group(2)] * 1_000_000_000


@attrs.frozen(eq=False)
class Feed:
    """Dense market arrays of shape (timestamps, instruments), column-major (an instrument's history
    is contiguous); `ts` is each bar's open (ns, UTC). `paged`: the `xmargin.dataset.paging.PagedArrays`
    holding them when they are mapped from a file (a long book loaded for a run folder), else None."""

    keys: tuple[str, ...]
    ts: np.ndarray
    bar_ns: int
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    has_bar: np.ndarray
    mark_open: np.ndarray
    mark_high: np.ndarray
    mark_low: np.ndarray
    mark_close: np.ndarray
    mark_source: dict
    funding_row: np.ndarray
    funding_column: np.ndarray
    funding_rate: np.ndarray
    funding_ts: np.ndarray
    fingerprint: str
    warnings: tuple = ()  # (instrument key, message, check): what a run trading that instrument must repeat
    paged: object = attrs.field(default=None, repr=False)
    funding_by_column: dict = attrs.field(init=False, repr=False)
    _columns: dict = attrs.field(init=False, repr=False, eq=False)  # key -> array column

    def __attrs_post_init__(self):
        """Per instrument column: (feed rows, rates) of its funding settlements, for bisect lookups."""
        by_column = {}
        for column in np.unique(self.funding_column).tolist():
            mask = self.funding_column == column
            by_column[column] = (self.funding_row[mask].tolist(), self.funding_rate[mask].tolist())
        object.__setattr__(self, "funding_by_column", by_column)
        object.__setattr__(self, "_columns", {key: n for n, key in enumerate(self.keys)})

    def column(self, key: str) -> int:
        """The array column of an instrument; an unknown key is an error listing the known ones."""
        try:
            return self._columns[key]
        except KeyError:
            raise DatasetError(f"unknown instrument {key!r}: this run has {list(self.keys)} (keys are "
                               "'exchange:symbol' as declared in dataset.toml).") from None

    def closes_only(self) -> "Feed":
        """This feed without its open, high and low arrays (trade and mark: None), for what reads
        closes only (the valuation of a finished run's snapshots): their memory is freed once no
        other feed holds them."""
        return attrs.evolve(self, open=None, high=None, low=None, mark_open=None, mark_high=None, mark_low=None)

    @property
    def bars(self) -> int:
        return int(self.has_bar.sum())

    def array_copy(self, values: np.ndarray) -> np.ndarray:
        """A copy of one of this feed's (rows, instruments) arrays, held as the feed holds its own:
        column-major, and in the paged file of a paged feed (a stress shock's rewritten prices then
        leave memory as the run passes them, like the originals)."""
        return copy_into(self.paged, values)

    def release(self, before_row: int | None = None) -> None:
        """Give the memory of rows [0, before_row) of a paged feed's arrays (all rows when None) back
        to the system; reading them later brings the same numbers back. Nothing for a feed in memory."""
        if self.paged is not None:
            self.paged.release(before_row)


def _in_batches(query: pl.LazyFrame):
    """The query's rows in order, `BATCH_ROWS` at a time (all at once on a polars without
    streamed batches): loading keeps one batch besides the arrays it fills."""
    batches = getattr(query, "collect_batches", None)
    return batches(chunk_size=BATCH_ROWS) if batches is not None else [query.collect()]


def _carry_forward(values: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Forward-fill each column over rows where `present` is False (NaN before the first value)."""
    rows = np.arange(values.shape[0])[:, None]
    last = np.maximum.accumulate(np.where(present, rows, -1), axis=0)
    filled = values[np.maximum(last, 0), np.arange(values.shape[1])[None, :]]
    filled[last < 0] = np.nan
    return filled


def iso_minutes(ns: int) -> str:
    """A nanosecond UTC timestamp as "YYYY-MM-DD HH:MM" (summaries, messages)."""
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")


_FINGERPRINTS: dict = {}  # (folder, (file, size, mtime) ...) -> digest: hashed once per process


def fingerprint(folder: str | Path) -> str:
    """sha256 over dataset.toml and every Parquet file (path relative to the folder, then bytes)."""
    folder = Path(folder)
    files = [folder / "dataset.toml"]
    for kind in KINDS:
        files.extend(table_files(folder, kind))
    stamp = (str(folder.resolve()), tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files))
    digest = _FINGERPRINTS.get(stamp)  # one lookup, the digest kept here: runs in other threads replace the cache
    if digest is None:
        digest = _digest(folder, files)
        _FINGERPRINTS.clear()
        _FINGERPRINTS[stamp] = digest
    return digest


def _digest(folder: Path, files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(folder)).encode())
        with open(path, "rb") as handle:  # in blocks: memory stays flat however large the file
            while block := handle.read(1 << 22):
                digest.update(block)
    return digest.hexdigest()


def _files_by_instrument(files: list[Path], index: pl.DataFrame | None = None) -> dict[str, list[Path]]:
    """{"exchange:symbol": the files that hold its rows}, from `xmargin.dataset.batches.series_index`
    (a file's Parquet footer statistics, else a scan of its key columns; `index`: that index when
    already made), so that loading an instrument opens its own files and not every file of a wide
    dataset."""
    out: dict[str, list[Path]] = {}
    index = series_index(files) if index is None else index
    for number, instrument in index.select("file_number", "instrument").iter_rows():
        if instrument is not None and files[number] not in out.setdefault(instrument, []):
            out[instrument].append(files[number])
    return out


def _series_rows(index: pl.DataFrame) -> dict[str, dict[str, int]]:
    """{"exchange:symbol": {timeframe: rows in its files}} of a `series_index`."""
    out: dict[str, dict[str, int]] = {}
    for instrument, timeframe, rows in index.select("instrument", "timeframe", "rows").iter_rows():
        if instrument is not None:
            counts = out.setdefault(instrument, {})
            counts[timeframe] = counts.get(timeframe, 0) + rows
    return out


def _union_of_times(times: list[np.ndarray]) -> np.ndarray:
    """The sorted distinct timestamps of all instruments; without a sort when every instrument has
    the same strictly increasing timestamps (the common case)."""
    first = times[0]
    if all(len(t) == len(first) for t in times) and bool(np.all(first[1:] > first[:-1])) \
            and all(np.array_equal(t, first) for t in times[1:]):
        return first.copy()
    return sorted_unique(np.concatenate(times))


def _grouped_frames(groups: list[list[int]], query_of):
    """(index, frame) for every index of `groups` (`_groups`), reading `query_of(index)`: a group of one
    a batch at a time (`_in_batches`: a long instrument), a larger group's queries run together
    (`pl.collect_all`: one query costs about a millisecond, most of a wide book's load)."""
    for indices in groups:
        if len(indices) == 1:
            yield from ((indices[0], frame) for frame in _in_batches(query_of(indices[0])))
        else:
            yield from zip(indices, pl.collect_all([query_of(index) for index in indices]))


def _groups(rows: list[int], limit: int) -> list[list[int]]:
    """Consecutive indices of `rows` with some rows, grouped so that each group holds at most `limit`
    rows in all (an index with more is a group of its own)."""
    groups, current, total = [], [], 0
    for index, count in enumerate(rows):
        if not count:
            continue
        if current and total + count > limit:
            groups.append(current)
            current, total = [], 0
        current.append(index)
        total += count
    if current:
        groups.append(current)
    return groups


BATCH_ROWS = 262_144  # rows of one instrument's prices in memory at a time while loading


def load_feed(folder: str | Path, keys: list[str], start: datetime | None = None,
              end: datetime | None = None, timeframe: str | None = None, scratch: str | Path | None = None) -> Feed:
    """Load the bars, marks and funding of `keys` (`exchange:symbol`) in [start, end).

    A dataset may hold several bar timeframes of one instrument (e.g. 5m and 1h): `timeframe` picks
    one (config `run.timeframe`); without it the instruments' bars must have exactly one. Marks are
    used only at the bars' timeframe (an 8h mark never stands in for a 1h one).

    A file that cannot be read (a run with the validation skipped: a missing or damaged Parquet
    file) is a DatasetError naming the dataset, the reader's message (with the file) and the check
    that lists every such file with its fix.

    `scratch`: a folder on disk (a run's output folder) where a feed larger than
    `xmargin.dataset.paging.PAGED_ABOVE_BYTES` is kept in a file-backed mapping (`Feed.release`)."""
    try:
        return _load_feed(folder, keys, start, end, timeframe, scratch)
    except READ_ERRORS as exc:
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise  # (the scratch folder's disk is full: the caller's disk-full message, not an unreadable dataset)
        raise unreadable_dataset(folder, exc) from exc


READ_ERRORS = (pl.exceptions.PolarsError, OSError)  # what reading a damaged or missing Parquet file raises


def unreadable_dataset(folder: str | Path, exc: BaseException) -> DatasetError:
    """The error for a dataset whose files could not be read (`exc`, one of READ_ERRORS): the
    dataset, the first unreadable file, the reader's message, and the check that lists them all."""
    culprit = _first_unreadable(Path(folder))
    where = f"{culprit} cannot be read; " if culprit else ""
    return DatasetError(f"{folder}: cannot read the dataset ({where}{type(exc).__name__}: {exc}). Fix: run `xmargin "
                        f"data validate {folder}`, which names every unreadable file and what to do about it.")


def _first_unreadable(folder: Path) -> str | None:
    """The first table file of `folder` (relative path) that is not a readable Parquet file: the
    reader's own message does not always name it."""
    try:
        files = [path for kind in KINDS for path in table_files(folder, kind)]
    except Exception:  # noqa: BLE001 - only looking for a name to give
        return None
    for path in files:
        try:
            if not_a_file(path) is not None:
                return str(path.relative_to(folder))
            pl.scan_parquet(str(path)).collect_schema()
        except Exception:  # noqa: BLE001 - this is the one
            return str(path.relative_to(folder))
    return None


def _load_feed(folder: str | Path, keys: list[str], start: datetime | None, end: datetime | None,
               timeframe: str | None, scratch: str | Path | None = None) -> Feed:
    manifest: DatasetManifest = read_manifest(folder)
    declared = set(manifest.keys)
    unknown = [k for k in keys if k not in declared]
    if unknown:
        raise DatasetError(f"{folder}: instruments {unknown} are not declared in dataset.toml; declared: "
                           f"{sorted(declared)}.")
    index = {k: n for n, k in enumerate(keys)}
    key_expr = (pl.col("exchange") + ":" + pl.col("symbol")).alias("key")
    bar_files = table_files(folder, "bars")
    bars_scan = scan(folder, "bars", start, end, keys, files=bar_files)
    if bars_scan is None:
        raise DatasetError(f"{folder}/bars: no Parquet files. A dataset needs at least a bars table.")
    # Each instrument by its own query (filter pushed into the scan), reading only the files that can
    # hold it: no string keys, no global sort. First the timestamps (and timeframes) of every
    # instrument, then its prices straight into the dense arrays, BATCH_ROWS rows at a time: a longer
    # instrument in batches, shorter ones several at once; besides the arrays, one batch is in memory
    # (the allocator keeps what a whole instrument would take).
    series = series_index(bar_files)
    own_files = _files_by_instrument(bar_files, series)
    in_files = _series_rows(series)  # each instrument's rows per timeframe in its files (the whole files)
    del series

    def instrument_scan(key):
        exchange, symbol = key.split(":", 1)
        wanted = set(own_files.get(key, ()))
        files = [path for path in bar_files if path in wanted]  # in the table's order, as one scan reads them
        source = scan(folder, "bars", start, end, None, files=files) if files else bars_scan  # (its own filter follows)
        return source.filter((pl.col("exchange") == exchange) & (pl.col("symbol") == symbol))

    def instrument_query(key, columns):
        query = instrument_scan(key)
        if timeframe is not None:
            query = query.filter(pl.col("timeframe") == timeframe)
        return query.select(pl.col("ts").dt.epoch("ns"), *columns)

    # Every instrument's timestamps in the run (at `timeframe`, when given) and the timeframes of its
    # rows there. Its files' index gives the timeframes when they hold one (or `timeframe`): then only
    # the timestamps are read (`_grouped_frames`). Otherwise (several timeframes, an instrument the
    # index does not know, rows without a timeframe) its timeframes are read too.
    def timeframes_in_run(key, own_rows):
        counts = in_files.get(key, {})
        if None not in counts:
            if timeframe is not None and own_rows:
                return [timeframe]
            if len(counts) == 1 and (timeframe is None or timeframe in counts):  # its files hold one
                return list(counts) if own_rows else []
        return instrument_scan(key).select(pl.col("timeframe").unique()).collect()["timeframe"].to_list()

    bounds = [BATCH_ROWS + 1 if key not in in_files else  # (unknown: read alone)
              sum(in_files[key].values()) if timeframe is None else in_files[key].get(timeframe, 0) for key in keys]
    times = [np.zeros(0, dtype=np.int64)] * len(keys)
    for column, frame in _grouped_frames(_groups(bounds, BATCH_ROWS), lambda c: instrument_query(keys[c], [])):
        own = frame["ts"].to_numpy()  # (a long instrument's batches joined as they come: one copy at a time)
        times[column] = np.concatenate([times[column], own]) if len(times[column]) else own
    timeframes = set()
    window = "" if start is None and end is None else f" between {start or 'its start'} and {end or 'its end'}"
    for key, own in zip(keys, times):
        available = timeframes_in_run(key, len(own))
        if None in available:  # (the bar length of such rows is unknown: neither kept nor dropped unsaid)
            raise DatasetError(f"{folder}: {key} has bars without a timeframe (null){window}. Fix: fill or drop those "
                               f"rows at the source and re-import; `xmargin data validate {folder}` lists them.")
        if timeframe is not None and not len(own) and available:
            raise DatasetError(f"{folder}: {key} has no {timeframe} bars{window} (it has {sorted(available)}). Fix: "
                               f"set run.timeframe to one of those, or leave {key} out.")
        timeframes.update(available if timeframe is None else [timeframe] if len(own) else [])
    if not any(len(t) for t in times):
        raise DatasetError(f"{folder}: no bars for {keys} between {start} and {end}. Widen the range or check "
                           "the instruments with `xmargin data info`.")
    if len(timeframes) != 1:
        raise DatasetError(f"{folder}: the bars of {keys} have several timeframes {sorted(timeframes)}; a run "
                           "needs one bar timeframe. Fix: set run.timeframe (e.g. run.timeframe = "
                           f"\"{sorted(timeframes)[-1]}\"), or pick instruments of one timeframe.")
    timeframes = sorted(timeframes)
    bar_ns = timeframe_ns(timeframes[0])
    ts = _union_of_times(times)
    groups = _groups([len(t) for t in times], BATCH_ROWS)
    del times  # (every instrument's timestamps: a four-year book's are 17 MB each)
    shape = (len(ts), len(keys))
    marked = bool(table_files(folder, "mark"))
    store = store_for(scratch, len(ts) * (8 + len(keys) * (4 * 8 * (2 if marked else 1) + 1)))
    if store is not None:
        ts = store.copy(ts)

    def new_array(dtype, fill):
        if store is not None:
            return store.empty(shape, dtype, fill)
        return np.full(shape, fill, dtype=dtype, order="F")

    has_bar = new_array(bool, False)
    open_, high, low, close = (new_array(np.float64, np.nan) for _ in range(4))
    written: dict[int, int] = {}  # column -> rows of its instrument written so far
    prices = ["open", "high", "low", "close"]
    for column, frame in _grouped_frames(groups, lambda c: instrument_query(keys[c], prices)):
        own = frame["ts"].to_numpy()
        done = written.get(column, 0)
        # rows with the run's next timestamps fill the column in order (no search)
        row = slice(done, done + len(own)) if np.array_equal(own, ts[done:done + len(own)]) \
            else np.searchsorted(ts, own)
        written[column] = done + len(own)
        has_bar[row, column] = True
        for name, target in zip(prices, (open_, high, low, close)):
            target[row, column] = frame[name].to_numpy()
        del frame
        if store is not None and isinstance(row, slice):  # (rows written in order: those before are done)
            for target in (has_bar, open_, high, low, close):
                store.release_column(target, column, row.stop)
    for column in range(len(keys)):  # a missing bar is flat at the last close
        missing = ~has_bar[:, column]
        if missing.any():
            close[:, column] = _carry_forward(close[:, column:column + 1], has_bar[:, column:column + 1])[:, 0]
            for target in (open_, high, low):
                np.copyto(target[:, column], close[:, column], where=missing)
        if store is not None:
            for target in (has_bar, open_, high, low, close):
                store.release_column(target, column)

    mark_source = {k: "last" for k in keys}
    warnings = [(key, f"{key}: no bars between {iso_minutes(int(ts[0]))} and {iso_minutes(int(ts[-1]) + bar_ns)}; nothing on it "
                      "can fill in this run (check run.start / run.end and `xmargin data info`)", "no bars")
                for c, key in enumerate(keys) if not has_bar[:, c].any()]
    mark = [open_, high, low, close]  # shared with the last prices until a mark series replaces them
    mark_files = table_files(folder, "mark")
    if mark_files:
        # Marks one instrument at a time, from its own files, in batches (as the bars): each batch's
        # rows that fall on a bar of the run are written into the mark arrays (copies of the last
        # prices, made at the first such row); a mark between bars is not used.
        own_marks = _files_by_instrument(mark_files)
        attributed = {path for paths in own_marks.values() for path in paths}
        present = np.zeros(shape, dtype=bool, order="F")
        copied = False
        for column, key in enumerate(keys):
            exchange, symbol = key.split(":", 1)
            wanted = set(own_marks.get(key, ()))
            # its own files and any the index gave to no instrument; none: no mark file holds it
            files = [path for path in mark_files if path in wanted or path not in attributed]
            if not files:
                continue
            query = (scan(folder, "mark", start, end, [key], files=files)
                     .filter((pl.col("exchange") == exchange) & (pl.col("symbol") == symbol)
                             & (pl.col("timeframe") == timeframes[0]))
                     .select(pl.col("ts").dt.epoch("ns"), "open", "high", "low", "close"))
            for frame in _in_batches(query):
                mts = frame["ts"].to_numpy()
                mrow = np.searchsorted(ts, mts)
                ok = (mrow < len(ts)) & (ts[np.minimum(mrow, len(ts) - 1)] == mts)
                if not ok.any():
                    continue
                if not copied:
                    mark = [copy_into(store, array) for array in mark]
                    copied = True
                rows = mrow[ok]
                present[rows, column] = True
                for name, target in zip(("open", "high", "low", "close"), mark):
                    target[rows, column] = frame[name].to_numpy()[ok]
                del frame
            if present[:, column].any():
                mark_source[key] = "mark"
            if store is not None and copied:
                for target in mark:
                    store.release_column(target, column)
        # Where a mark series has holes inside the run, carry the mark close, not the last price;
        # after its last row the last price takes over (a stale mark would freeze PnL and margin).
        for c, k in enumerate(keys):
            if mark_source[k] == "mark":
                rows = np.flatnonzero(present[:, c])
                filled = _carry_forward(np.where(present[:, c:c + 1], mark[3][:, c:c + 1], np.nan), present[:, c:c + 1])
                hole = ~present[:, c] & ~np.isnan(filled[:, 0])
                hole[rows[-1] + 1:] = False
                for target in mark:
                    target[hole, c] = filled[hole, 0]
                last_bar = np.flatnonzero(has_bar[:, c])
                if len(last_bar) and last_bar[-1] > rows[-1]:
                    stops = iso_minutes(int(ts[rows[-1]]) + bar_ns)
                    mark_source[k] = f"mark until {stops}, then last"
                    warnings.append((k, f"{k}: the mark series stops at {stops}, {last_bar[-1] - rows[-1]} bars "
                                         "before its last bar; margin and PnL use the last price from there on",
                                     "mark ends early"))

    funding_scan = scan(folder, "funding", start, end, keys)
    if funding_scan is None:
        funding = pl.DataFrame({"ts": [], "column": [], "funding_rate": []},
                               schema={"ts": pl.Int64, "column": pl.Int32, "funding_rate": pl.Float64})
    else:
        funding = (funding_scan.select(pl.col("ts").dt.epoch("ns"), key_expr, "funding_rate")
                   .with_columns(pl.col("key").replace_strict(index, return_dtype=pl.Int32).alias("column"))
                   .sort("ts", "column").collect())
    funding_ts = funding["ts"].to_numpy().astype(np.int64)
    # A settlement at time s is paid at the bar that contains it (open <= s < open + bar length;
    # Hyperliquid stamps HH:00:01), else at the first bar opening after s (a gap in every series).
    funding_row = np.searchsorted(ts, funding_ts, side="right") - 1
    contained = (funding_row >= 0) & (ts[np.maximum(funding_row, 0)] + bar_ns > funding_ts)
    funding_row = np.where(contained, funding_row, funding_row + 1)
    inside = (funding_row < len(ts)) & (funding_row >= 0) & (funding_ts >= ts[0])
    if store is not None:
        store.release()
    return Feed(keys=tuple(keys), ts=ts, bar_ns=bar_ns, open=open_, high=high, low=low, close=close,
                has_bar=has_bar, mark_open=mark[0], mark_high=mark[1], mark_low=mark[2], mark_close=mark[3],
                mark_source=mark_source, funding_row=funding_row[inside],
                funding_column=funding["column"].to_numpy()[inside].astype(np.int64),
                funding_rate=funding["funding_rate"].to_numpy()[inside], funding_ts=funding_ts[inside],
                fingerprint=fingerprint(folder), warnings=tuple(warnings), paged=store)
