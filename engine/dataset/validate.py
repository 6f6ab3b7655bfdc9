"""`validate_dataset`: every check a dataset must pass before a run, as vectorised polars scans.

Each finding is a `Problem` naming the file, instrument, timestamp or row, column, what is
wrong and how to fix it. A dataset is usable when the report holds no errors (warnings allowed).
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import attrs
import polars as pl

from xmargin.dataset.batches import SERIES, Batch, plan_batches, relative, scan_files, series_index
from xmargin.dataset.manifest import COLUMNS_BY_KIND, KINDS, MANIFEST_NAME, DatasetManifest, read_manifest
from xmargin.dataset.tables import not_a_file, table_files
from xmargin.errors import ConfigError, DatasetError

ERROR = "error"
WARNING = "warning"
DEFAULT_MAX_FUNDING_RATE = 0.05  # fraction per funding interval (5 %)
DEFAULT_MARK_DEVIATION = 0.05  # |mark close / last close - 1|
DEFAULT_LISTED_PER_CHECK = 5
SPIKE_FACTOR = 10.0  # a price more than 10x (or under 1/10 of) both neighbouring closes is a data error
TYPICAL_FUNDING_CAP_8H = 0.0075  # |rate| per 8 h above which venues' usual caps are exceeded (scaled by interval)
PERCENT_MEDIAN_PER_HOUR = 0.0005  # a median |rate| above 0.05 %/h (~440 %/yr) is percent written as a fraction
EARLIEST = datetime(2009, 1, 3, tzinfo=timezone.utc)  # nothing traded before Bitcoin's genesis block
PRICE_NAMES = ("open", "high", "low", "close")
TIMEFRAME_PATTERN = re.compile(r"^(\d+)([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_timeframe(timeframe: str) -> timedelta:
    """`"1m"`, `"1h"`, `"8h"`, `"1d"`, `"1w"` -> timedelta; ValueError for anything else."""
    match = TIMEFRAME_PATTERN.match(str(timeframe))
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"timeframe {timeframe!r} is not '<positive integer><s|m|h|d|w>', e.g. '1m', '1h', '8h'")
    return timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def dtype_name(dtype: pl.DataType) -> str:
    """Polars dtype in the notation of `manifest.COLUMNS_BY_KIND` (e.g. `Datetime(ns, UTC)`)."""
    if isinstance(dtype, pl.Datetime):
        return f"Datetime({dtype.time_unit}, {dtype.time_zone})"
    return str(dtype)


def polars_schema(kind: str) -> pl.Schema:
    """The exact polars schema of a table kind, for writers (synth, import, sample)."""
    mapping = {"Datetime(ns, UTC)": pl.Datetime("ns", "UTC"), "String": pl.String, "Float64": pl.Float64}
    return pl.Schema({name: mapping[dtype] for name, dtype in COLUMNS_BY_KIND[kind].items()})


@attrs.frozen
class Problem:
    """One finding. `ts` (ISO text) or `row` (0-based within `file`) locate it when known."""

    severity: str = attrs.field(validator=attrs.validators.in_((ERROR, WARNING)))
    check: str
    message: str
    fix: str
    file: str = ""
    instrument: str = ""
    column: str = ""
    ts: str = ""
    row: int | None = None

    def __str__(self) -> str:
        where = [self.file or MANIFEST_NAME]
        if self.instrument:
            where.append(self.instrument)
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.ts:
            where.append(f"ts {self.ts}")
        if self.column:
            where.append(f"column '{self.column}'")
        return f"{self.severity}: {', '.join(where)}: {self.message}. Fix: {self.fix}"


@attrs.frozen
class KindSummary:
    """Row count and time range of one table kind (ranges as ISO text, UTC)."""

    kind: str
    files: int
    rows: int
    start: str
    end: str
    instruments: int


@attrs.frozen
class Report:
    """What `validate_dataset` found. `ok` is True when the dataset is usable (no errors)."""

    path: str
    problems: tuple[Problem, ...]
    summaries: tuple[KindSummary, ...] = ()
    instruments: tuple[str, ...] = ()

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == ERROR)

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == WARNING)

    @property
    def ok(self) -> bool:
        return not self.errors

    def format(self) -> str:
        """Human-readable text: problems first, then a one-line verdict and the summary."""
        lines = [str(p) for p in self.problems]
        verdict = "usable" if self.ok else "NOT usable"
        lines.append(f"{self.path}: {verdict} ({len(self.errors)} errors, {len(self.warnings)} warnings)")
        if self.instruments:
            lines.append(f"instruments ({len(self.instruments)}): {', '.join(self.instruments)}")
        for s in self.summaries:
            lines.append(f"{s.kind:<8} {s.files:>4} files {s.rows:>12,} rows  {s.instruments:>3} instruments  "
                         f"{s.start} -> {s.end}")
        return "\n".join(lines)


class _Collector:
    """Collects problems, listing at most `limit` rows per check and summing up the rest."""

    def __init__(self, limit: int):
        self.limit = limit
        self.problems: list[Problem] = []

    def add(self, **fields) -> None:
        self.problems.append(Problem(**fields))

    def rows(self, found: pl.DataFrame, *, severity: str, check: str, column: str, message, fix: str,
             kind_label: str = "") -> None:
        """One problem per offending row in `found` (columns file, row, instrument, ts), capped."""
        if found.height == 0:
            return
        for record in found.head(self.limit).iter_rows(named=True):
            text = message(record) if callable(message) else message
            self.add(severity=severity, check=check, message=text, fix=fix, file=record.get("file", ""),
                     instrument=record.get("instrument", ""), column=column, ts=_iso(record.get("ts")),
                     row=record.get("row"))
        if found.height > self.limit:
            first = found.row(0, named=True)
            self.add(severity=severity, check=check, column=column,
                     message=f"... and {found.height - self.limit} more rows with the same problem "
                             f"({check}{kind_label})",
                     fix=fix, file=first.get("file", "") if found["file"].n_unique() == 1 else "(several files)")


def _iso(value) -> str:
    if value is None:
        return ""
    return value.strftime("%Y-%m-%d %H:%M:%S") if hasattr(value, "strftime") else str(value)


def _ts_cast(dtype: pl.DataType) -> str:
    """How to turn a `ts` column of `dtype` into Datetime(ns, UTC) without moving its instants."""
    if isinstance(dtype, pl.Datetime) and dtype.time_zone not in (None, "UTC"):
        return (f" (pl.col('ts').dt.convert_time_zone('UTC').dt.cast_time_unit('ns'); not replace_time_zone, which "
                f"would keep the {dtype.time_zone} wall-clock times and move every bar by the zone's offset)")
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is None:
        return (" (UTC times: pl.col('ts').dt.cast_time_unit('ns').dt.replace_time_zone('UTC'); local times: "
                "replace_time_zone('<their zone>') first, then .dt.convert_time_zone('UTC'))")
    if dtype.is_integer():
        return (" (epoch numbers: pl.from_epoch('ts', time_unit='ms').dt.cast_time_unit('ns')"
                ".dt.replace_time_zone('UTC'), with the unit they are in: 's', 'ms', 'us' or 'ns')")
    return " (pl.col('ts').dt.cast_time_unit('ns').dt.replace_time_zone('UTC'))"


def _check_schema(files: list[Path], kind: str, root: Path, out: _Collector) -> list[Path]:
    """Columns and dtypes of each file against COLUMNS_BY_KIND; returns the files that match."""
    expected = COLUMNS_BY_KIND[kind]
    good = []
    for f in files:
        name = relative(f, root)
        what = not_a_file(f)
        if what is not None:  # listed by its name, but no file to read
            out.add(severity=ERROR, check="readable", file=name, message=f"is {what}, not a Parquet file",
                    fix="remove it from the table's folder, or put the Parquet file it should be in its place "
                        "(a table's parts are files, one Parquet file each)")
            continue
        try:
            schema = pl.scan_parquet(str(f)).collect_schema()
        except Exception as exc:  # unreadable Parquet
            out.add(severity=ERROR, check="readable", file=name, message=f"cannot read Parquet ({exc})",
                    fix="rewrite the file as Parquet (e.g. polars DataFrame.write_parquet)")
            continue
        found = {col: dtype_name(dtype) for col, dtype in schema.items()}
        bad = False
        for col, dtype in expected.items():
            if col not in found:
                bad = True
                out.add(severity=ERROR, check="schema", file=name, column=col,
                        message=f"column missing from {kind} table (expected {dtype}; found columns {list(found)})",
                        fix=f"add column '{col}' of type {dtype}")
            elif found[col] != dtype:
                bad = True
                out.add(severity=ERROR, check="schema", file=name, column=col,
                        message=f"dtype is {found[col]}, expected {dtype}",
                        fix=f"cast '{col}' to {dtype} before writing" + (_ts_cast(schema[col]) if col == "ts" else ""))
        extra = [c for c in found if c not in expected]
        if extra:
            out.add(severity=WARNING, check="schema", file=name, column=", ".join(extra),
                    message=f"extra columns not used by {kind} tables", fix="drop them to save space (harmless)")
        if not bad:
            good.append(f)
    return good


def _check_table(kind: str, frame: pl.LazyFrame, out: _Collector, max_funding_rate: float,
                 batches: list[Batch] | None = None, plan: _Plan | None = None) -> pl.DataFrame:
    """Content checks of one kind; returns per-series stats (instrument, rows, start, end, timeframes, ...).

    The rows are checked batch after batch (`batches`, default `frame` whole): each batch's
    row-level queries and partial stats are collected in one `pl.collect_all` (one pass over its
    rows); the rows found are put back in file order and each check reports them in the checks'
    order, so the report does not depend on the batching. `plan` (from `validate_dataset`) adds
    the gap search and the mark-vs-last comparison to the same passes."""
    key = ["file", "row", "instrument", "ts"]
    label = f" in {kind}"
    batches = batches or [Batch(frame)]
    series = ["instrument"] if kind == "funding" else list(SERIES)
    neighbours = {"previous_ts": pl.col("ts").shift(1).over(series)}
    if kind != "funding":
        neighbours |= {"previous_close": pl.col("close").shift(1).over(series),
                       "next_close": pl.col("close").shift(-1).over(series)}
    reports: list = []
    found: list[list[pl.DataFrame]] = []
    for batch in batches:
        rows = batch.rows(neighbours)
        checks = _row_checks(kind, rows, key, out, label, max_funding_rate)
        extra = _stats_queries(kind, rows) + (plan.queries(rows, batch) if plan is not None else [])
        collected = pl.collect_all([query for query, _ in checks] + extra)
        reports = [report for _, report in checks]
        found.append(collected)
    ordered = [_in_file_order(list(frames), len(batches), plan) for frames in zip(*found)]
    for frame_found, report in zip(ordered, reports):
        report(frame_found)
    extras = ordered[len(reports):]
    if kind == "funding":
        stats = extras[0]
        _check_funding_scale(frame, stats, key, out, label)
        return stats
    stats = _merge_stats(extras[0], extras[1])
    if plan is not None:
        plan.found(extras[2:])
    for record in stats.sort("instrument").iter_rows(named=True):
        frames = [t for t in record["timeframes"] if t is not None]
        for timeframe in frames:
            try:
                length = parse_timeframe(timeframe).total_seconds()
            except ValueError as exc:
                out.add(severity=ERROR, check="timeframe", file=record["file"], instrument=record["instrument"],
                        column="timeframe", message=str(exc), fix="write the bar length as e.g. '1m', '5m', '1h', '8h', '1d'")
                continue
            closest = record["min_spacing"]
            if len(frames) == 1 and record["spacing"] is not None and (record["spacing"] != length or closest < length):
                seen = record["spacing"] if record["spacing"] != length else closest
                out.add(severity=ERROR, check="timeframe vs spacing", file=record["file"],
                        instrument=record["instrument"], column="timeframe",
                        message=f"labelled {timeframe} but rows are {duration_text(seen)} apart"
                                + (" (most often)" if record["spacing"] != length else " in places"),
                        fix="label the rows with their real bar length (or resample them to the label); "
                            "never mix bar lengths in one table")
            start = record["start"]
            if start is not None and length <= 86_400 and int(start.timestamp()) % int(length):
                out.add(severity=WARNING, check="bar grid", file=record["file"], instrument=record["instrument"],
                        column="ts", ts=_iso(start),
                        message=f"the first {timeframe} bar opens at {_iso(start)}, off the {timeframe} grid from "
                                "00:00 UTC on which exchanges open their bars (next to instruments on the grid, each "
                                "has no bar at the other's times)",
                        fix="if these are local times, convert them to UTC (a zone with a half-hour offset moves "
                            "bars by 30 minutes); if the exchange really opens its bars there, ignore this")
    return stats


def _in_file_order(frames: list[pl.DataFrame], batches: int, plan: _Plan | None) -> pl.DataFrame:
    """One check's rows of every batch, concatenated in file order (batches may interleave files)."""
    frame = pl.concat(frames, how="vertical")
    if batches == 1 or plan is None or not {"file", "row"} <= set(frame.columns):
        return frame
    return (frame.with_columns(_file_number=pl.col("file").replace_strict(plan.file_numbers, return_dtype=pl.UInt32))
            .sort("_file_number", "row", maintain_order=True).drop("_file_number"))


def _row_checks(kind: str, rows: pl.LazyFrame, key: list, out: _Collector, label: str,
                max_funding_rate: float) -> list[tuple[pl.LazyFrame, object]]:
    """The row-level checks of one kind over `rows` (with `previous_ts`, and for prices
    `previous_close` / `next_close`, within each series): (query, report(found rows)) in report order."""
    checks: list[tuple[pl.LazyFrame, object]] = []

    def later(query: pl.LazyFrame, report) -> None:
        checks.append((query, report))

    nulls = [c for c in COLUMNS_BY_KIND[kind] if c not in ("volume",)]
    null_rows = rows.filter(pl.any_horizontal([pl.col(c).is_null() for c in nulls]))

    def report_nulls(null_df):
        for col in nulls:
            out.rows(null_df.filter(pl.col(col).is_null()), severity=ERROR, check="missing value", column=col,
                     message=f"{col} is empty (null)", fix="fill or drop the row at the source, then re-import",
                     kind_label=label)
    later(null_rows.select(key + [c for c in nulls if c not in key]), report_nulls)

    # Timestamps strictly increasing per instrument (and timeframe: a dataset may hold several), in file order.
    def report_order(order):
        out.rows(order.filter(pl.col("ts") < pl.col("previous")), severity=ERROR, check="unsorted", column="ts",
                 message=lambda r: "timestamp goes backwards (previous row of this instrument is at "
                                   f"{_iso(r['previous'])})",
                 fix="sort rows by ts per instrument (and order files by time) before writing", kind_label=label)
        out.rows(order.filter(pl.col("ts") == pl.col("previous")), severity=ERROR, check="duplicate ts", column="ts",
                 message="duplicate timestamp for this instrument",
                 fix="drop duplicates, keeping one row per ts (e.g. .unique(['exchange','symbol','ts'], keep='last'))",
                 kind_label=label)
    later(rows.filter(pl.col("ts") <= pl.col("previous_ts")).select(*key, previous=pl.col("previous_ts")),
          report_order)

    latest = datetime.now(timezone.utc).replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
    latest = latest.replace(year=latest.year + 2)  # the end of next year
    later(rows.filter((pl.col("ts") < EARLIEST) | (pl.col("ts") >= latest)).select(key),
          lambda early: out.rows(
              early, severity=ERROR, check="implausible date", column="ts",
              message=lambda r: f"timestamp {_iso(r['ts'])} is before 2009 or after next year",
              fix="dates in 1970 mean epoch seconds or milliseconds were stored as nanoseconds (or the reverse): "
                  "convert with the right unit, e.g. pl.from_epoch(col, time_unit='ms')", kind_label=label))

    if kind == "funding":
        rate = pl.col("funding_rate")
        later(rows.filter(~rate.is_finite() | (rate.abs() > max_funding_rate)).select(key + ["funding_rate"]),
              lambda bad: out.rows(
                  bad, severity=ERROR, check="funding rate", column="funding_rate",
                  message=lambda r: f"funding rate {r['funding_rate']!r} is not finite or beyond "
                                    f"±{max_funding_rate} per interval",
                  fix="rates are fractions per funding interval (0.0001 = 0.01 %), not percent or annualised; "
                      "divide by 100 or fix the source (or raise --max-funding-rate if genuine)", kind_label=label))
        return checks
    for col in PRICE_NAMES:
        c = pl.col(col)
        later(rows.filter(c.is_not_null() & (~c.is_finite() | (c <= 0))).select(key + [col]),
              lambda bad, col=col: out.rows(
                  bad, severity=ERROR, check="bad price", column=col,
                  message=lambda r: f"{col} = {r[col]!r} (prices must be finite and > 0)",
                  fix="drop or repair the row at the source", kind_label=label))
    _check_spikes(rows, key, out, label, later)
    if kind == "bars":
        v = pl.col("volume")
        later(rows.filter(v.is_not_null() & (~v.is_finite() | (v < 0))).select(key + ["volume"]),
              lambda bad: out.rows(bad, severity=ERROR, check="bad volume", column="volume",
                                   message=lambda r: f"volume = {r['volume']!r} (must be finite and >= 0)",
                                   fix="set volume to 0 when unknown", kind_label=label))
    later(rows.filter(pl.col("high") < pl.col("low")).select(key + ["high", "low"]),
          lambda bad: out.rows(bad, severity=ERROR, check="high < low", column="high",
                               message=lambda r: f"high {r['high']} is below low {r['low']}",
                               fix="swap or repair high/low at the source", kind_label=label))
    for col in ("open", "close"):
        c = pl.col(col)
        later(rows.filter((c < pl.col("low")) | (c > pl.col("high"))).select(key + [col, "low", "high"]),
              lambda bad, col=col: out.rows(
                  bad, severity=ERROR, check=f"{col} outside range", column=col,
                  message=lambda r: f"{col} {r[col]} is outside [low {r['low']}, high {r['high']}]",
                  fix="repair the bar so that low <= open, close <= high", kind_label=label))
    return checks


def _stats_queries(kind: str, rows: pl.LazyFrame) -> list[pl.LazyFrame]:
    """Funding: the per-instrument stats. Prices: per series (instrument, timeframe) the partial
    stats of these rows and the count of each spacing (seconds), merged over batches by `_merge_stats`."""
    if kind == "funding":
        return [rows.group_by("instrument").agg(
            rows=pl.len(), start=pl.col("ts").min(), end=pl.col("ts").max(),
            exchange=pl.col("exchange").first(), market=pl.col("market").first(),
            markets=pl.col("market").unique().sort(), file=pl.col("file").first(),
            timeframes=pl.lit(None, dtype=pl.List(pl.String)),
            spacing=pl.col("ts").sort().diff().dt.total_seconds().drop_nulls().mode().sort().first(),
            median_rate=pl.col("funding_rate").abs().median())]
    spacing = (pl.col("ts") - pl.col("previous_ts")).dt.total_seconds()
    partial = rows.group_by(*SERIES).agg(
        rows=pl.len(), start=pl.col("ts").min(), end=pl.col("ts").max(),
        exchange=pl.col("exchange").first(), market=pl.col("market").first(),
        markets=pl.col("market").unique(), file=pl.col("file").first(),
        timeframes=pl.col("timeframe").unique(), min_spacing=spacing.filter(spacing > 0).min())
    counts = (rows.select(*SERIES, spacing=spacing).drop_nulls("spacing")
              .group_by(*SERIES, "spacing").agg(count=pl.len()))
    return [partial, counts]


def _merge_stats(partial: pl.DataFrame, counts: pl.DataFrame) -> pl.DataFrame:
    """One row per series (instrument, timeframe) from the batches' partial stats (in batch order):
    rows, start, end, exchange, market, markets, file, timeframes, spacing (the most frequent, the
    smallest of equals), min_spacing (the closest positive)."""
    merged = partial.group_by(*SERIES, maintain_order=True).agg(
        rows=pl.col("rows").sum(), start=pl.col("start").min(), end=pl.col("end").max(),
        exchange=pl.col("exchange").first(), market=pl.col("market").first(),
        markets=pl.col("markets").list.explode(keep_nulls=False, empty_as_null=False).unique().sort(), file=pl.col("file").first(),
        timeframes=pl.col("timeframes").list.explode(keep_nulls=False, empty_as_null=False).unique().sort(), min_spacing=pl.col("min_spacing").min())
    mode = (counts.group_by(*SERIES, "spacing").agg(count=pl.col("count").sum())
            .sort(["count", "spacing"], descending=[True, False])
            .group_by(*SERIES, maintain_order=True).agg(spacing=pl.col("spacing").first()))
    return merged.join(mode, on=list(SERIES), how="left", nulls_equal=True).drop("timeframe")


def duration_text(seconds: float) -> str:
    """A duration as a timeframe is written: 3600 -> '1h', 5400 -> '90m', 30 -> '30s'."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _check_spikes(rows: pl.LazyFrame, key: list, out: _Collector, label: str, later) -> None:
    """An isolated price more than SPIKE_FACTOR away from both neighbouring closes (or from its
    only neighbour) of the same series (`previous_close`, `next_close`): a bad tick that would turn
    PnL into nonsense. `later(query, report)`: the query is collected with the table's other checks."""
    prev, after = pl.col("previous_close"), pl.col("next_close")
    flags = {}
    for col in PRICE_NAMES:
        c = pl.col(col)

        def away(neighbour, c=c):
            ratio = c / neighbour
            return (ratio > SPIKE_FACTOR) | (ratio < 1 / SPIKE_FACTOR)

        spike = (pl.when(prev.is_null()).then(away(after)).when(after.is_null()).then(away(prev))
                 .otherwise(away(prev) & away(after)))
        flags[f"_spike_{col}"] = c.is_finite() & (c > 0) & spike.fill_null(False)
    # one query for every price column (the neighbouring closes found once), reported per column
    query = (rows.with_columns(**flags).filter(pl.any_horizontal(list(flags)))
             .select(*key, *PRICE_NAMES, *flags, previous=prev, next=after))

    def report(found):
        for col in PRICE_NAMES:
            out.rows(found.filter(pl.col(f"_spike_{col}")).select(key + [col, "previous", "next"]),
                     severity=ERROR, check="price spike", column=col,
                     message=lambda r, col=col: f"{col} = {r[col]!r} is more than {SPIKE_FACTOR:g}x away from the "
                                                f"neighbouring closes ({r['previous']!r}, {r['next']!r})",
                     fix="repair or drop the bad tick at the source (an isolated spike is a data error, not a "
                         "market move)", kind_label=label)
    later(query, report)


@attrs.define
class _Plan:
    """What `validate_dataset` adds to one price kind's batched checks: the files' order (to put
    the rows found back in it), the gap search and, for mark/, the mark-vs-last comparison with the
    bars of the batch's series (`bars` = (bars files, their series index)); the rows found are kept
    in `gaps` and `far` for the reports."""

    root: Path
    file_numbers: dict[str, int]
    durations: dict[str, int]  # bar length in ns per timeframe label
    bars: tuple[list[Path], pl.DataFrame] | None = None
    threshold: float = DEFAULT_MARK_DEVIATION
    gaps: pl.DataFrame | None = None
    far: pl.DataFrame | None = None

    @classmethod
    def of(cls, files: list[Path], root: Path, index: pl.DataFrame, **fields) -> _Plan:
        durations = {}
        for timeframe in index.filter(pl.col("instrument").is_not_null())["timeframe"].unique().to_list():
            try:
                durations[timeframe] = int(parse_timeframe(timeframe).total_seconds() * 1e9)
            except (TypeError, ValueError):
                pass
        return cls(root=root, file_numbers={relative(f, root): n for n, f in enumerate(files)},
                   durations=durations, **fields)

    def queries(self, rows: pl.LazyFrame, batch: Batch) -> list[pl.LazyFrame]:
        lookup = pl.LazyFrame({"timeframe": list(self.durations), "step_ns": list(self.durations.values())},
                              schema={"timeframe": pl.String, "step_ns": pl.Int64})
        gaps = (rows.filter(pl.col("instrument").is_not_null())
                .select("file", "row", "instrument", "timeframe", "ts",
                        spacing=(pl.col("ts") - pl.col("previous_ts")).dt.total_nanoseconds())
                .join(lookup, on="timeframe", how="inner", maintain_order="left")
                .filter(pl.col("spacing") > pl.col("step_ns"))
                .with_columns(missing=(pl.col("spacing") // pl.col("step_ns") - 1)))
        if self.bars is None:
            return [gaps]
        files, index = self.bars
        wanted = pl.DataFrame(list(batch.series), schema=list(SERIES), orient="row")
        numbers = index.join(wanted, on=list(SERIES), how="semi")["file_number"].unique().sort().to_list()
        bars = pl.LazyFrame(schema={"instrument": pl.String, "ts": pl.Datetime("ns", "UTC"), "timeframe": pl.String,
                                    "last_close": pl.Float64})
        if numbers:
            bars = pl.concat([pl.scan_parquet(str(files[n])).select(
                instrument=pl.col("exchange") + ":" + pl.col("symbol"), ts=pl.col("ts"), timeframe=pl.col("timeframe"),
                last_close=pl.col("close")) for n in numbers]).join(wanted.lazy(), on=list(SERIES), how="semi")
        far = (rows.select("file", "row", "instrument", "ts", "timeframe", mark_close=pl.col("close"))
               .join(bars, on=["instrument", "ts", "timeframe"], how="inner")
               .with_columns(deviation=pl.col("mark_close") / pl.col("last_close") - 1)
               .filter(pl.col("deviation").abs() > self.threshold))
        return [gaps, far]

    def found(self, frames: list[pl.DataFrame]) -> None:
        self.gaps = frames[0]
        self.far = frames[1] if len(frames) > 1 else None


def _check_funding_scale(frame: pl.LazyFrame, stats: pl.DataFrame, key: list, out: _Collector, label: str) -> None:
    """Rates per funding interval against venues' usual caps (warning), a median that only percent
    written as a fraction explains (error), and stamps off the hour grid (warning)."""
    for record in stats.sort("instrument").iter_rows(named=True):
        hours = (record["spacing"] or 8 * 3600) / 3600
        per_hour = (record["median_rate"] or 0.0) / hours
        if per_hour > PERCENT_MEDIAN_PER_HOUR:
            out.add(severity=ERROR, check="funding in percent", file=record["file"], instrument=record["instrument"],
                    column="funding_rate",
                    message=f"the median |funding rate| is {record['median_rate']:.4g} per {hours:g}h interval "
                            f"({per_hour * 24 * 365:.0%} a year): these look like percent, not fractions",
                    fix="divide funding_rate by 100 (0.01 % must be written 0.0001) and import again")
    cap = pl.lit(TYPICAL_FUNDING_CAP_8H) * pl.max_horizontal(
        pl.col("ts").diff().over("instrument").dt.total_seconds().fill_null(8 * 3600) / (8 * 3600), pl.lit(1 / 8))
    rate = pl.col("funding_rate")
    high = frame.filter(rate.is_finite() & (rate.abs() > cap)).select(key + ["funding_rate"]).collect()
    out.rows(high, severity=WARNING, check="funding above typical cap", column="funding_rate",
             message=lambda r: f"funding rate {r['funding_rate']!r} is above venues' usual caps "
                               f"(±{TYPICAL_FUNDING_CAP_8H:.2%} per 8h)",
             fix="check it is a fraction per interval, not percent; keep it if the market really paid that",
             kind_label=label)
    off_grid = (frame.filter(pl.col("ts").dt.epoch("s") % 3600 != 0).group_by("instrument")
                .agg(count=pl.len(), file=pl.col("file").first(), first=pl.col("ts").min()).sort("instrument")
                .collect())
    for record in off_grid.iter_rows(named=True):
        out.add(severity=WARNING, check="funding off the hour", file=record["file"], instrument=record["instrument"],
                column="ts", message=f"{record['count']} funding stamps are not on the hour (first at "
                                     f"{_iso(record['first'])}); each settles at the bar that contains it",
                fix="none needed if the exchange stamps them so (Hyperliquid: HH:00:01); otherwise check the source")


def _report_gaps(kind: str, gaps: pl.DataFrame, out: _Collector) -> None:
    """Warn (with counts) where consecutive bars of one timeframe are further apart than it
    (`gaps`: the rows ending a gap, in file order, with `missing` bars)."""
    if gaps.height == 0:
        return
    summary = gaps.group_by("instrument", "timeframe").agg(gaps=pl.len(), missing=pl.col("missing").sum(),
                                                           file=pl.col("file").first()).sort("instrument", "timeframe")
    for record in summary.iter_rows(named=True):
        first = gaps.filter((pl.col("instrument") == record["instrument"])
                            & (pl.col("timeframe") == record["timeframe"])).head(out.limit)
        listed = ", ".join(f"{_iso(t)} ({m} missing)" for t, m in zip(first["ts"], first["missing"]))
        more = f" and {record['gaps'] - first.height} more" if record["gaps"] > first.height else ""
        out.add(severity=WARNING, check="gaps", file=record["file"], instrument=record["instrument"], column="ts",
                message=f"{record['gaps']} gaps in {kind} ({record['timeframe']}), {record['missing']} missing bars; "
                        f"gaps end at {listed}{more}",
                fix="none needed if the exchange had no data then (the engine carries prices over); "
                    "otherwise re-download the missing range")


def _report_mark_vs_last(far: pl.DataFrame, out: _Collector, threshold: float) -> None:
    """Warn where mark close is more than `threshold` away from last close at the same ts and
    timeframe (`far`: those mark rows, in file order, with mark_close, last_close, deviation)."""
    out.rows(far.sort("instrument", "ts", maintain_order=True), severity=WARNING, check="mark far from last",
             column="close",
             message=lambda r: f"mark close {r['mark_close']} is {r['deviation']:+.2%} from last close "
                               f"{r['last_close']} (threshold {threshold:.0%})",
             fix="check that mark/ and bars/ hold the same instrument and time base "
                 "(or raise --mark-threshold if the market really dislocated)", kind_label=" mark vs bars")


def _check_declared(manifest: DatasetManifest, stats_by_kind: dict[str, pl.DataFrame], out: _Collector) -> None:
    declared = {i.key: i for i in manifest.instruments}
    for kind, stats in stats_by_kind.items():
        seen = set()  # stats hold a row per (instrument, timeframe): report an instrument once
        for record in stats.sort("instrument").iter_rows(named=True):
            key = record["instrument"]
            if key is None or key in seen:  # rows with an empty exchange or symbol: reported as missing values
                continue
            seen.add(key)
            if key not in declared:
                out.add(severity=ERROR, check="undeclared instrument", file=record["file"], instrument=key,
                        column="symbol", message=f"instrument appears in {kind}/ but is not declared in {MANIFEST_NAME}",
                        fix=f"add an [[instruments]] entry with exchange = \"{record['exchange']}\", "
                            f"symbol = \"{key.split(':', 1)[1]}\" (or remove its rows)")
                continue
            wrong = [m for m in record["markets"] if m != declared[key].market]
            if wrong:
                out.add(severity=ERROR, check="market mismatch", file=record["file"], instrument=key, column="market",
                        message=f"market column says {wrong}, {MANIFEST_NAME} declares '{declared[key].market}'",
                        fix="make the market column and the declaration agree")
    if "funding" in stats_by_kind:
        for record in stats_by_kind["funding"].sort("instrument").iter_rows(named=True):
            instrument = declared.get(record["instrument"])
            hours = instrument.funding_interval_hours if instrument is not None else None
            if hours and record["spacing"] and abs(record["spacing"] - hours * 3600) > 60:
                out.add(severity=WARNING, check="funding interval", file=record["file"],
                        instrument=record["instrument"], column="ts",
                        message=f"funding events are most often {record['spacing'] / 3600:g}h apart, "
                                f"{MANIFEST_NAME} declares funding_interval_hours = {hours:g}",
                        fix="set funding_interval_hours to the exchange's interval (the engine settles at the "
                            "event timestamps either way)")
    if "bars" in stats_by_kind:  # (when bars/ could not be checked, its errors say so already)
        in_bars = set(stats_by_kind["bars"]["instrument"])
        for key in sorted(set(declared) - in_bars):
            out.add(severity=ERROR, check="declared but absent", instrument=key, file=MANIFEST_NAME,
                    message="declared in dataset.toml but has no rows in bars/",
                    fix="add its bars or remove the [[instruments]] entry")
        _check_coverage(declared, stats_by_kind, out)
    funding = set(stats_by_kind["funding"]["instrument"]) if "funding" in stats_by_kind else set()
    for key in sorted(funding):
        instrument = declared.get(key)
        if instrument is not None and instrument.market == "spot":
            out.add(severity=WARNING, check="funding on spot", instrument=key, file="funding/",
                    message="funding rows for a spot instrument", fix="remove them; spot pays no funding")


def _check_coverage(declared: dict, stats_by_kind: dict, out: _Collector) -> None:
    """Warnings a run would otherwise hide: a perp without a mark series, a mark series ending
    before its bars, exchanges whose bars do not overlap in time."""
    def latest(kind):  # per instrument, the row (of its timeframes) whose series ends last
        rows = stats_by_kind[kind].sort("end", nulls_last=False).iter_rows(named=True) if kind in stats_by_kind else ()
        return {r["instrument"]: r for r in rows if r["instrument"]}

    bars, marks = latest("bars"), latest("mark")
    for key in sorted(bars):
        instrument = declared.get(key)
        if instrument is None or not instrument.is_derivative:
            continue
        if key not in marks:
            out.add(severity=WARNING, check="no mark", file=MANIFEST_NAME, instrument=key,
                    message="perp without a mark series: runs value it, margin it and liquidate it at the last price",
                    fix="import its mark-price klines (freqtrade ...-mark files, data.binance.vision markPriceKlines)")
        elif marks[key]["end"] < bars[key]["end"]:
            hours = (bars[key]["end"] - marks[key]["end"]).total_seconds() / 3600
            out.add(severity=WARNING, check="mark ends early", file=marks[key]["file"], instrument=key, column="ts",
                    message=f"the mark series ends at {_iso(marks[key]['end'])}, {hours:g} h before the bars "
                            f"({_iso(bars[key]['end'])}); runs use the last price after it",
                    fix="download the missing mark range, or end runs before the mark stops")
    ranges: dict[str, list] = {}
    for record in bars.values():
        span = ranges.setdefault(record["exchange"], [record["start"], record["end"]])
        span[0], span[1] = min(span[0], record["start"]), max(span[1], record["end"])
    names = sorted(ranges)
    for n, first in enumerate(names):
        for second in names[n + 1:]:
            (a0, a1), (b0, b1) = ranges[first], ranges[second]
            if a1 < b0 or b1 < a0:
                out.add(severity=WARNING, check="no overlap", file="bars/",
                        message=f"{first} has bars {_iso(a0)} .. {_iso(a1)}, {second} {_iso(b0)} .. {_iso(b1)}: "
                                "they never overlap, so no run can hedge across them",
                        fix="import overlapping ranges for both exchanges")


def validate_dataset(path: str | Path, *, max_funding_rate: float = DEFAULT_MAX_FUNDING_RATE,
                     mark_threshold: float = DEFAULT_MARK_DEVIATION,
                     listed_per_check: int = DEFAULT_LISTED_PER_CHECK) -> Report:
    """Check a dataset folder; never raises for bad data, returns a `Report` listing each problem.

    `max_funding_rate` is a fraction per funding interval (0.05 = 5 %); `mark_threshold` the
    relative mark/last deviation that raises a warning; `listed_per_check` caps rows listed per check.
    Options out of range are a ConfigError (a nan bound would switch its check off).
    """
    for option, value in (("--max-funding-rate", max_funding_rate), ("--mark-threshold", mark_threshold)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
            raise ConfigError(f"{option} {value}: a fraction > 0 (0.05 = 5 %).")
    if isinstance(listed_per_check, bool) or not isinstance(listed_per_check, int) or listed_per_check < 1:
        raise ConfigError(f"--limit {listed_per_check}: list at least 1 row per check.")
    root = Path(path)
    out = _Collector(listed_per_check)
    try:
        manifest = read_manifest(root)
    except DatasetError as exc:
        out.add(severity=ERROR, check="dataset.toml", file=MANIFEST_NAME, message=str(exc).rstrip("."),
                fix="see README, 'Dataset format'")
        return Report(path=str(root), problems=tuple(out.problems))
    for caveat in manifest.caveats:
        out.add(severity=WARNING, check="caveat", file=MANIFEST_NAME, instrument=caveat.instrument,
                message=caveat.message, fix="check the source data; remove the [[caveats]] entry once it is settled")

    frames: dict[str, pl.LazyFrame] = {}
    stats_by_kind: dict[str, pl.DataFrame] = {}
    summaries = []
    bars = None  # (bars files, their series index) once bars/ is checked: mark/ is compared with it
    far = None
    for kind in KINDS:
        files = table_files(root, kind)
        if not files:
            if kind == "bars":
                out.add(severity=ERROR, check="bars missing", file="bars/",
                        message="no Parquet files under bars/ (bars are required)",
                        fix="write the bar table(s) to <dataset>/bars/*.parquet")
            continue
        good = _check_schema(files, kind, root, out)
        if len(good) != len(files):
            continue  # content checks need every file of the kind to have the right schema
        columns = list(COLUMNS_BY_KIND[kind])
        frame = scan_files(good, root, columns)
        batches = plan = None
        try:
            if kind != "funding":  # price tables are checked in batches of whole series (funding is small)
                index = series_index(good)
                plan = _Plan.of(good, root, index, bars=bars if kind == "mark" else None, threshold=mark_threshold)
                batches = plan_batches(good, root, columns, index)
            stats = _check_table(kind, frame, out, max_funding_rate, batches, plan)
        except pl.exceptions.PolarsError as exc:
            out.add(severity=ERROR, check="readable", file=f"{kind}/", message=f"cannot scan the {kind} table ({str(exc).splitlines()[0]})",
                    fix="rewrite the files with the documented schema")
            continue
        frames[kind] = frame
        stats_by_kind[kind] = stats
        if plan is not None:
            _report_gaps(kind, plan.gaps, out)
            far = plan.far if kind == "mark" else far
        if kind == "bars":
            bars = (good, index)
        if stats.height:
            summaries.append(KindSummary(kind=kind, files=len(good), rows=int(stats["rows"].sum()),
                                         start=_iso(stats["start"].min()), end=_iso(stats["end"].max()),
                                         instruments=stats["instrument"].n_unique()))
    if far is not None:
        _report_mark_vs_last(far, out, mark_threshold)
    if stats_by_kind:
        _check_declared(manifest, stats_by_kind, out)
    return Report(path=str(root), problems=tuple(out.problems), summaries=tuple(summaries),
                  instruments=manifest.keys)
