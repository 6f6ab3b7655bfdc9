"""Import market data from layouts traders already have into an xmargin dataset.

* freqtrade / ccxt `download-data`: `<PAIR>-<timeframe>[-futures|-mark|-index|-funding_rate|-spot]`
  `.feather|.parquet|.json|.json.gz` (e.g. `BTC_USDT_USDT-1h-futures.feather`, `BTC_USDT-1h.feather` =
  spot). Feather/Parquet hold `date, open, high, low, close, volume`; JSON (`json`, and `jsongz`
  gzipped) is `[[ms, o, h, l, c, v], ...]`; funding_rate files carry the rate in `open`.
* data.binance.vision CSV or zip: klines `BTCUSDT-1h-2024-01.csv|zip` (under `markPriceKlines/` or
  `indexPriceKlines/` for mark/index), with or without header, open time in ms or µs (by magnitude);
  funding `BTCUSDT-fundingRate-2024-01.csv|zip` (calc_time, funding_interval_hours, last_funding_rate).

Every file keeps the timeframe its name states: a folder holding 5m and 1h bars (or 1h and 8h marks)
becomes one table per timeframe, and `--timeframe` selects files, it never relabels them.
Rows are sorted and de-duplicated per instrument (keep last); funding timestamps are rounded to the
second. Content problems are reported like `validate` does, naming the source file and row.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import shutil
import zipfile
import zlib
from collections import Counter
from pathlib import Path

import attrs
import polars as pl

from xmargin.dataset.manifest import MANIFEST_NAME, Caveat, DatasetManifest, Source, publish, read_manifest, write_manifest
from xmargin.dataset.validate import ERROR, WARNING, _check_table, _Collector, parse_timeframe, polars_schema, validate_dataset
from xmargin.errors import DatasetError
from xmargin.venues.instruments import Instrument

KNOWN_EXCHANGES = ("binance", "bybit", "okx", "hyperliquid", "kraken", "gate", "bitget", "kucoin", "deribit",
                   "bitmex", "dydx", "htx", "mexc", "bingx")
QUOTE_SUFFIXES = ("FDUSD", "USDT", "USDC", "BUSD", "TUSD", "USD", "BTC", "ETH", "BNB", "EUR")
FREQTRADE_NAME = re.compile(r"^(?P<pair>[A-Za-z0-9]+(?:_[A-Za-z0-9]+){1,2})-(?P<timeframe>\d+[smhdwM])"
                            r"(?:-(?P<candle>futures|mark|index|funding_rate|spot))?\.(?P<ext>feather|parquet|json|json\.gz)$")
VISION_KLINES = re.compile(r"^(?P<pair>[A-Z0-9]+(?:_PERP)?)-(?P<timeframe>\d+[smhdwM])-(?P<date>\d{4}-\d{2}(?:-\d{2})?)"
                           r"\.(?P<ext>csv|zip)$")
VISION_FUNDING = re.compile(r"^(?P<pair>[A-Z0-9]+(?:_PERP)?)-fundingRate-(?P<date>\d{4}-\d{2}(?:-\d{2})?)\.(?P<ext>csv|zip)$")
FREQTRADE_KIND = {"futures": "bars", "spot": "bars", None: "bars", "mark": "mark", "index": "index",
                  "funding_rate": "funding"}
KLINE_COLUMNS = ("open_time", "open", "high", "low", "close", "volume")
FUNDING_CSV_COLUMNS = ("calc_time", "funding_interval_hours", "last_funding_rate")
LISTED_ROWS = 5

# (exchange, market, base) -> (lot_size, min_notional, tick_size): Binance's exchangeInfo filters as
# published in 2024-2025 (LOT_SIZE stepSize, MIN_NOTIONAL / NOTIONAL, PRICE_FILTER tickSize);
# Hyperliquid lot = 10^-szDecimals, min order value 10 USDC, 5 significant figures instead of a tick
# (tick 0 = not enforced). Anything else gets 0 = not enforced, and the import says so.
DEFAULT_FILTERS = {
    ("binance", "perp", "BTC"): (0.001, 100.0, 0.1),
    ("binance", "perp", "ETH"): (0.001, 20.0, 0.01),
    ("binance", "perp", "SOL"): (1.0, 5.0, 0.01),
    ("binance", "spot", "BTC"): (0.00001, 5.0, 0.01),
    ("binance", "spot", "ETH"): (0.0001, 5.0, 0.01),
    ("binance", "spot", "SOL"): (0.001, 5.0, 0.01),
    ("hyperliquid", "perp", "BTC"): (0.00001, 10.0, 0.0),
    ("hyperliquid", "perp", "ETH"): (0.0001, 10.0, 0.0),
    ("hyperliquid", "perp", "SOL"): (0.01, 10.0, 0.0),
}


@attrs.frozen
class ImportOptions:
    """Overrides for what is otherwise inferred from file and folder names (None = infer).
    `timeframe` is a filter: only files whose name states it are imported (funding has none)."""

    exchange: str | None = None
    kind: str | None = None
    market: str | None = None
    symbol: str | None = None
    timeframe: str | None = None


@attrs.frozen
class SourceFile:
    """One recognised input file and what it holds."""

    path: Path
    layout: str  # "freqtrade" | "binance-vision"
    kind: str
    exchange: str
    market: str
    symbol: str
    timeframe: str | None  # None for funding


@attrs.frozen
class ImportedTable:
    kind: str
    instrument: str
    rows: int
    duplicates_dropped: int
    file: str


@attrs.frozen
class ImportResult:
    """What `import_files` wrote."""

    path: Path
    tables: tuple[ImportedTable, ...]
    instruments: tuple[Instrument, ...]
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()  # doubtful: the new dataset's validation warnings (its caveats included)

    def lines(self) -> list[str]:
        out = [f"{t.kind:<8} {t.instrument:<28} {t.rows:>9,} rows -> {t.file}"
               + (f" ({t.duplicates_dropped} duplicate ts dropped, kept last)" if t.duplicates_dropped else "")
               for t in self.tables]
        return (out + [f"note: {n}" for n in self.notes] + [f"warning: {w}" for w in self.warnings]
                + [f"wrote {self.path} ({len(self.instruments)} instruments)"])


def _fail(path: Path, message: str, fix: str, row: int | None = None, column: str = "") -> DatasetError:
    where = str(path) + (f", row {row}" if row is not None else "") + (f", column '{column}'" if column else "")
    return DatasetError(f"{where}: {message}. Fix: {fix}")


def _split_native(pair: str) -> tuple[str, str, str, str]:
    """`BTCUSDT` -> (BTC, USDT, USDT, linear); `BTCUSD_PERP` -> (BTC, USD, BTC, inverse)."""
    inverse = pair.endswith("_PERP")
    pair = pair.removesuffix("_PERP")
    for quote in QUOTE_SUFFIXES:
        if pair.endswith(quote) and len(pair) > len(quote):
            base = pair[: -len(quote)]
            return (base, quote, base, "inverse") if inverse else (base, quote, quote, "linear")
    raise ValueError(pair)


def _symbol_parts(symbol: str) -> tuple[str, str, str]:
    match = re.match(r"^([A-Za-z0-9]+)/([A-Za-z0-9]+)(?::([A-Za-z0-9]+))?$", symbol)
    if not match:
        raise DatasetError(f"--symbol {symbol!r}: not a ccxt unified symbol. Use e.g. BTC/USDT:USDT (perp) or BTC/USDT (spot).")
    base, quote, settle = match.groups()
    return base, quote, settle or quote


def identify(path: Path, options: ImportOptions = ImportOptions()) -> SourceFile | None:
    """What `path` holds, from its name and folders; None when the name matches no known layout."""
    name, parts = path.name, [p.lower() for p in path.parts]
    exchange = options.exchange or next((p for p in parts if p in KNOWN_EXCHANGES), None)
    if match := FREQTRADE_NAME.match(name):
        candle = match.group("candle")
        kind = options.kind or FREQTRADE_KIND[candle]
        pieces = match.group("pair").upper().split("_")
        perp = len(pieces) == 3 or candle in ("futures", "mark", "index", "funding_rate")
        market = options.market or ("perp" if perp else "spot")
        if options.symbol:
            symbol = _symbol_for(path, options.symbol, pieces[0], pieces[1])
        elif len(pieces) == 3:
            symbol = f"{pieces[0]}/{pieces[1]}:{pieces[2]}"
        elif market == "perp":
            symbol = f"{pieces[0]}/{pieces[1]}:{pieces[1]}"
        else:
            symbol = f"{pieces[0]}/{pieces[1]}"
        timeframe = None if kind == "funding" else match.group("timeframe")
        return SourceFile(path, "freqtrade", kind, exchange or "binance", market, symbol, timeframe)
    funding = VISION_FUNDING.match(name)
    klines = VISION_KLINES.match(name)
    if not (funding or klines):
        return None
    match = funding or klines
    if funding:
        kind = options.kind or "funding"
    elif "markpriceklines" in parts:
        kind = options.kind or "mark"
    elif "indexpriceklines" in parts:
        kind = options.kind or "index"
    elif "premiumindexklines" in parts:
        raise _fail(path, "premium-index klines are not a price series xmargin uses",
                    "import klines, markPriceKlines or fundingRate files instead")
    else:
        kind = options.kind or "bars"
    if options.market:
        market = options.market
    elif kind != "bars" or "futures" in parts or "um" in parts or "cm" in parts:
        market = "perp"
    elif "spot" in parts:
        market = "spot"
    else:
        raise _fail(path, "cannot tell whether these klines are spot or perp from the name",
                    "pass --market spot or --market perp (or keep the data.binance.vision folders spot/ or futures/um/)")
    if options.symbol:
        try:
            base, quote, _, _ = _split_native(match.group("pair"))
        except ValueError:  # a pair the name does not split: --symbol says what it is
            base = quote = None
        symbol = _symbol_for(path, options.symbol, base, quote)
    else:
        try:
            base, quote, settle, _ = _split_native(match.group("pair"))
        except ValueError:
            raise _fail(path, f"cannot split {match.group('pair')!r} into base and quote",
                        "pass --symbol, e.g. --symbol BTC/USDT:USDT") from None
        symbol = f"{base}/{quote}:{settle}" if market == "perp" else f"{base}/{quote}"
    timeframe = None if kind == "funding" else match.group("timeframe")
    return SourceFile(path, "binance-vision", kind, exchange or "binance", market, symbol, timeframe)


def _symbol_for(path: Path, symbol: str, base: str | None, quote: str | None) -> str:
    """--symbol for a file whose name states base and quote: it may say more (the settle asset), never
    another pair (that would label one asset's prices as another's)."""
    given = symbol.split(":", 1)[0].upper().split("/")
    if base is not None and given != [base.upper(), quote.upper()]:
        raise _fail(path, f"--symbol {symbol} names another pair than the file's name ({base}/{quote})",
                    "leave --symbol out (the name states the pair), or import only the files of that pair")
    return symbol


def _to_utc_ns(path: Path, column: pl.Series, name: str) -> pl.Expr:
    """Expression turning a date column (datetime, or integer s/ms/µs/ns by magnitude) into ns UTC."""
    c = pl.col(name)
    if isinstance(column.dtype, pl.Datetime):
        c = c.dt.replace_time_zone("UTC") if column.dtype.time_zone is None else c.dt.convert_time_zone("UTC")
        return c.dt.cast_time_unit("ns")
    if column.dtype.is_float():
        bad = (~column.is_finite() | (column.abs() >= 2.0 ** 63)).fill_null(False)
        if bad.any():
            row = int(bad.arg_max())
            raise _fail(path, f"timestamp {column[row]} is not a number of seconds, ms, µs or ns since 1970",
                        "repair or delete the row", row=row, column=name)
    if column.dtype.is_integer() or column.dtype.is_float():
        v = c.cast(pl.Int64)
        scaled = (pl.when(v.abs() >= 10**17).then(v).when(v.abs() >= 10**14).then(v * 1_000)
                  .when(v.abs() >= 10**11).then(v * 1_000_000).otherwise(v * 1_000_000_000))
        return scaled.cast(pl.Datetime("ns")).dt.replace_time_zone("UTC")
    raise _fail(path, f"timestamp column has type {column.dtype}", "timestamps must be epoch numbers or datetimes",
                column=name)


def _numeric(path: Path, frame: pl.DataFrame, columns: dict[str, str], line_offset: int = 0) -> pl.DataFrame:
    """Cast `columns` (source name -> target name) to Float64/Int64 and name the first bad rows."""
    casts = []
    for source, target in columns.items():
        column = frame[source]
        if column.dtype == pl.String:
            stripped = column.str.strip_chars()
            parsed = stripped.cast(pl.Float64, strict=False)
            bad = frame.with_row_index("row").filter((stripped.is_not_null() & (stripped != "")) & parsed.is_null())
            if bad.height:
                rows = ", ".join(f"row {r} ({v!r})" for r, v in zip(bad["row"].head(LISTED_ROWS), bad[source].head(LISTED_ROWS)))
                more = f" and {bad.height - LISTED_ROWS} more" if bad.height > LISTED_ROWS else ""
                raise _fail(path, f"not a number at {rows}{more}" + (f" (data rows; add {line_offset} for the line number)"
                                                                    if line_offset else ""),
                            "repair or delete those rows", column=source)
            casts.append(parsed.alias(target))
        else:
            casts.append(column.alias(target))
    return frame.select(casts)


def _read_csv_bytes(source: SourceFile) -> tuple[pl.DataFrame, int]:
    """All-string DataFrame of a Binance CSV (or the CSV inside a zip), and the header line count."""
    path = source.path
    if path.suffix == ".zip":
        try:
            with zipfile.ZipFile(path) as archive:
                members = [m for m in archive.namelist() if m.endswith(".csv")]
                if len(members) != 1:
                    raise _fail(path, f"zip holds {len(members)} CSV files, expected 1",
                                "unzip it and import the CSV files")
                raw = archive.read(members[0])
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
            raise _fail(path, f"not a valid zip or a damaged one ({exc})", "download the file again") from exc
    else:
        raw = path.read_bytes()
    text = raw.lstrip()
    if not text:
        raise _fail(path, "file is empty", "download it again or leave it out")
    first = text.split(b"\n", 1)[0].split(b",")[0].strip()
    has_header = not first.replace(b".", b"").lstrip(b"-").isdigit()
    frame = pl.read_csv(io.BytesIO(text), has_header=has_header, infer_schema=False, truncate_ragged_lines=True)
    return frame, int(has_header)


def _read_freqtrade(source: SourceFile) -> pl.DataFrame:
    path = source.path
    try:
        if path.name.endswith((".json", ".json.gz")):
            raw = path.read_bytes()
            rows = json.loads(gzip.decompress(raw) if path.name.endswith(".gz") else raw)
            if not isinstance(rows, list) or any(not isinstance(r, list) or len(r) < 6 for r in rows[:1]):
                raise _fail(path, "JSON is not a list of [ms, open, high, low, close, volume] rows",
                            "re-download with freqtrade --data-format-ohlcv json")
            frame = pl.DataFrame([r[:6] for r in rows], schema=["date", "open", "high", "low", "close", "volume"],
                                 orient="row", infer_schema_length=None)
        elif path.suffix == ".feather":
            frame = pl.read_ipc(path)
        else:
            frame = pl.read_parquet(path)
    except DatasetError:
        raise
    except Exception as exc:
        raise _fail(path, f"cannot read the file ({str(exc).splitlines()[0]})",
                    "check the file is complete (re-download it)") from exc
    needed = ["date", "open"] if source.kind == "funding" else ["date", "open", "high", "low", "close"]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise _fail(path, f"columns {missing} missing (found {frame.columns})",
                    "freqtrade files have date, open, high, low, close, volume", column=missing[0])
    return frame


def read_source(source: SourceFile, warnings: list | None = None) -> pl.DataFrame:
    """The file as a table of its kind (manifest schema) plus `file` and `row` (0-based source row).
    Dates without a time zone are read as UTC, which `warnings` (when given) is told."""
    path = source.path
    if source.layout == "freqtrade":
        raw = _read_freqtrade(source)
        date, offset = "date", 0
        if source.kind == "funding":
            values = _numeric(path, raw, {"open": "funding_rate"})
        else:
            names = {c: c for c in ("open", "high", "low", "close")}
            if source.kind == "bars":
                names["volume"] = "volume"
            values = _numeric(path, raw.with_columns(volume=raw["volume"] if "volume" in raw.columns else pl.lit(0.0))
                              if source.kind == "bars" else raw, names)
    else:
        raw, offset = _read_csv_bytes(source)
        wanted = FUNDING_CSV_COLUMNS if source.kind == "funding" else KLINE_COLUMNS
        if raw.width < len(wanted):
            raise _fail(path, f"{raw.width} columns, expected at least {len(wanted)} ({', '.join(wanted)})",
                        "check this is a data.binance.vision " + ("fundingRate" if source.kind == "funding" else "klines")
                        + " file")
        if offset:  # a header names the columns: read them by name, whatever their order
            names = {c.strip().lower(): c for c in raw.columns}
            missing = [c for c in wanted if c not in names]
            if missing:
                raise _fail(path, f"the header has no columns {missing} (found {raw.columns})",
                            f"name the columns {', '.join(wanted)} in the header, or drop the header to read them "
                            "by position")
            raw = raw.select([pl.col(names[c]).alias(c) for c in wanted])
        else:
            raw = raw.rename(dict(zip(raw.columns[: len(wanted)], wanted)))
        date = wanted[0]
        if source.kind == "funding":
            values = _numeric(path, raw, {"last_funding_rate": "funding_rate"}, offset)
        else:
            values = _numeric(path, raw, {c: c for c in KLINE_COLUMNS[1:] if source.kind == "bars" or c != "volume"},
                              offset)
        raw = raw.with_columns(_numeric(path, raw, {date: date}, offset)[date].cast(pl.Int64))
    if raw.height == 0:
        raise _fail(path, "no data rows", "leave the file out or download it again")
    if raw[date].null_count():
        row = int(raw.with_row_index("row").filter(pl.col(date).is_null())["row"][0])
        raise _fail(path, "empty timestamp", "repair or delete the row", row=row, column=date)
    if warnings is not None and isinstance(raw[date].dtype, pl.Datetime) and raw[date].dtype.time_zone is None:
        warnings.append(Caveat(f"{source.exchange}:{source.symbol}", f"{path}, column '{date}': dates without a time "
                               "zone, read as UTC (what freqtrade and the exchanges write); if they were local times, "
                               "convert them to UTC and import again"))
    ts = raw.select(_to_utc_ns(path, raw[date], date).alias("ts"))["ts"]
    if source.kind == "funding":
        ts = ts.dt.round("1s")
    frame = values.with_columns(ts=ts, exchange=pl.lit(source.exchange), symbol=pl.lit(source.symbol),
                                market=pl.lit(source.market))
    if source.kind != "funding":
        frame = frame.with_columns(timeframe=pl.lit(source.timeframe))
    schema = polars_schema(source.kind)
    return (frame.select([pl.col(n).cast(t) for n, t in schema.items()])
            .with_row_index("row").with_columns(file=pl.lit(str(path))))


def _expand(sources: list[Path], options: ImportOptions) -> list[SourceFile]:
    found, unknown = [], []
    for source in sources:
        paths = sorted(p for p in Path(source).rglob("*") if p.is_file()) if Path(source).is_dir() else [Path(source)]
        for path in paths:
            identified = identify(path, options)
            if identified is None:
                if not Path(source).is_dir():
                    unknown.append(path)
            elif options.timeframe and identified.timeframe not in (None, options.timeframe):
                if not Path(source).is_dir():
                    raise _fail(path, f"the file name says timeframe {identified.timeframe}, but --timeframe "
                                      f"{options.timeframe} was given; a file is never relabelled",
                                "leave out --timeframe, or give the files of that timeframe")
            else:
                found.append(identified)
    if unknown:
        raise _fail(unknown[0], "file name matches no known layout",
                    "name files like BTC_USDT_USDT-1h-futures.feather (freqtrade) or BTCUSDT-1h-2024-01.csv "
                    "(data.binance.vision); see `xmargin data import --help`")
    if options.timeframe and not any(f.timeframe == options.timeframe for f in found):
        raise DatasetError(f"{', '.join(map(str, sources))}: no files of timeframe {options.timeframe} found. "
                           "Fix: leave out --timeframe to import every timeframe, or pick one the names state.")
    if not found:
        raise DatasetError(f"{', '.join(map(str, sources))}: no importable files found. "
                           "Fix: see `xmargin data import --help` for the file names understood.")
    if options.symbol and len({(s.exchange, s.market, s.symbol) for s in found}) > 1:
        raise DatasetError("--symbol applies to one instrument, but the sources hold several; import them separately.")
    return found


def _file_name(kind: str, exchange: str, market: str, symbol: str, timeframe: str | None) -> str:
    stem = symbol.replace("/", "_").replace(":", "_")
    return f"{kind}/{exchange}/{market}/{stem}" + (f"-{timeframe}" if timeframe else "") + ".parquet"


def _instrument(exchange: str, market: str, symbol: str, funding_hours: float | None, notes: list) -> Instrument:
    base, quote, settle = _symbol_parts(symbol)
    lot, minimum, tick = DEFAULT_FILTERS.get((exchange, market, base), (0.0, 0.0, 0.0))
    if (exchange, market, base) not in DEFAULT_FILTERS:
        notes.append(f"{exchange}:{symbol}: lot_size, min_notional, tick_size set to 0 (not enforced); "
                     f"set them with `xmargin rules import <exchangeInfo or load_markets dump> --exchange {exchange} "
                     f"--dataset <this dataset>` or edit {MANIFEST_NAME}")
    if market != "spot" and funding_hours is None:
        funding_hours = 1.0 if exchange == "hyperliquid" else 8.0
        notes.append(f"{exchange}:{symbol}: no funding imported; funding_interval_hours set to {funding_hours:g} "
                     "(the exchange's usual interval)")
    inverse = market != "spot" and settle == base
    return Instrument(exchange=exchange, symbol=symbol, market=market, base=base, quote=quote, settle=settle,
                      contract="inverse" if inverse else "linear",
                      contract_size=(100.0 if base == "BTC" else 10.0) if inverse else 1.0,
                      funding_interval_hours=funding_hours if market != "spot" else None,
                      lot_size=lot, min_notional=minimum, tick_size=tick)


def import_files(sources: list[str | Path], out: str | Path, options: ImportOptions = ImportOptions(),
                 name: str | None = None) -> ImportResult:
    """Import `sources` (files or folders) into the dataset folder `out`.

    A new dataset is written to `out.partial` and renamed when complete and valid. When `out` already
    holds a dataset.toml, tables are merged into it (same instrument and kind: rows combined, the
    imported row wins on equal ts) and new instruments are declared. Raises DatasetError naming the
    source file, row and column of the first problems.
    """
    out = Path(out)
    files = _expand([Path(s) for s in sources], options)
    for f in files:
        if f.timeframe is not None:
            try:
                parse_timeframe(f.timeframe)
            except ValueError as exc:
                raise _fail(f.path, str(exc), "pass --timeframe, e.g. 1h") from exc
    merging = (out / MANIFEST_NAME).is_file()
    existing = read_manifest(out) if merging else None
    _check_bars_for_every_series(files, existing)
    groups: dict[tuple, list[pl.DataFrame]] = {}
    warnings: list[Caveat] = []  # kept in dataset.toml: validation and runs repeat them
    for f in files:
        groups.setdefault((f.kind, f.exchange, f.market, f.symbol, f.timeframe), []).append(read_source(f, warnings))

    collector = _Collector(LISTED_ROWS)
    prepared = {}
    for key, frames in groups.items():
        kind = key[0]
        combined = pl.concat(frames, how="vertical")
        unique = combined.sort("ts", maintain_order=True).unique("ts", keep="last", maintain_order=True)
        if combined.height > unique.height:
            warnings.extend(_conflicting_duplicates(combined, key[0], f"{key[1]}:{key[3]}"))
        lazy = unique.lazy().with_columns(instrument=pl.col("exchange") + ":" + pl.col("symbol"))
        _check_table(kind, lazy, collector, max_funding_rate=0.05)
        prepared[key] = (unique, combined.height - unique.height)
    errors = [p for p in collector.problems if p.severity == ERROR]
    if errors:
        raise DatasetError("the sources hold bad rows; nothing was written:\n" + "\n".join(map(str, errors)))

    target = _stage(out) if merging else out.with_name(out.name + ".partial")
    if not merging:
        if out.exists() and any(out.iterdir()):
            raise DatasetError(f"{out}: exists, is not empty and holds no {MANIFEST_NAME}. "
                               "Fix: choose a new folder for --out, or an existing dataset to merge into.")
        if target.exists():
            shutil.rmtree(target)
    try:
        result = _write(target, out, prepared, existing, files, name, warnings)
    except BaseException:
        if merging:  # the dataset itself was never touched: drop the staged copy
            shutil.rmtree(target, ignore_errors=True)
        raise
    publish(target, out)  # the merged copy replaces the dataset, or the new one takes the (empty) folder
    return result


def _stage(out: Path) -> Path:
    """A copy of the dataset `out` to merge into (files hard-linked where possible; every file the
    import writes is unlinked first, so the original is never written through a link)."""
    staging = out.with_name(f".{out.name}.import-staging")
    shutil.rmtree(staging, ignore_errors=True)

    def link(source, destination):
        try:
            os.link(source, destination)
        except OSError:
            shutil.copy2(source, destination)

    shutil.copytree(out, staging, copy_function=link)
    return staging


def _conflicting_duplicates(combined: pl.DataFrame, kind: str, instrument: str) -> list[Caveat]:
    """Timestamps read more than once with different values (not a file overlapping another with the
    same rows): which one is right is a guess, so the kept one (the last read) is named."""
    values = [c for c in combined.columns if c not in ("ts", "row", "file")]
    conflicts = (combined.group_by("ts", maintain_order=True)
                 .agg(versions=pl.struct(values).n_unique(), file=pl.col("file").last(), row=pl.col("row").last())
                 .filter(pl.col("versions") > 1).sort("ts"))
    if conflicts.height == 0:
        return []
    first = conflicts.row(0, named=True)
    return [Caveat(instrument, f"{first['file']}, row {first['row']}: {conflicts.height} timestamps of its {kind} were "
                               f"read more than once with different values (first {first['ts']:%Y-%m-%d %H:%M:%S}); "
                               "the last read was kept, here this row: check that the files do not overlap with "
                               "another source's")]


def _check_bars_for_every_series(files: list[SourceFile], existing) -> None:
    """Marks, index prices and funding belong to an instrument with bars (every declared instrument
    has them): a file for one whose bars are neither imported nor in the dataset is refused by name."""
    with_bars = {(f.exchange, f.symbol) for f in files if f.kind == "bars"}
    with_bars |= {(i.exchange, i.symbol) for i in (existing.instruments if existing else ())}
    for f in files:
        if (f.exchange, f.symbol) not in with_bars:
            raise _fail(f.path, f"{f.kind} of {f.exchange}:{f.symbol}, whose bars are not among the files imported"
                        + (" nor in the dataset" if existing else ""),
                        "import its bars too (e.g. the freqtrade ...-futures file or the klines of that symbol), "
                        "or leave this file out")


def _write(target: Path, out: Path, prepared: dict, existing, files, name, warnings=()) -> ImportResult:
    """Write the prepared tables and the manifest into `target` and validate the result."""
    funding_hours: dict[tuple, float] = {}
    tables = []
    for (kind, exchange, market, symbol, timeframe), (frame, dropped) in sorted(prepared.items(), key=lambda i: str(i[0])):
        relative = _file_name(kind, exchange, market, symbol, timeframe)
        path = target / relative
        table = frame.drop("row", "file")
        if path.is_file():
            table = (pl.concat([pl.read_parquet(path), table], how="vertical")
                     .unique("ts", keep="last", maintain_order=True).sort("ts"))
            path.unlink()  # may be a hard link to the original dataset's file
        path.parent.mkdir(parents=True, exist_ok=True)
        table.write_parquet(path, compression="zstd", statistics=True)
        tables.append(ImportedTable(kind, f"{exchange}:{symbol}", table.height, dropped, relative))
        if kind == "funding" and table.height > 1:
            spacing = table["ts"].diff().dt.total_seconds().drop_nulls()
            funding_hours[(exchange, market, symbol)] = Counter(spacing.to_list()).most_common(1)[0][0] / 3600.0

    notes: list[str] = []
    declared = list(existing.instruments) if existing else []
    known = {i.key for i in declared}
    for exchange, market, symbol in sorted({(k[1], k[2], k[3]) for k in prepared}):
        if f"{exchange}:{symbol}" not in known:
            declared.append(_instrument(exchange, market, symbol, funding_hours.get((exchange, market, symbol)), notes))
            known.add(f"{exchange}:{symbol}")
    layouts = sorted({f.layout for f in files})
    source = Source(name="xmargin data import", licence="as the original data (check the provider's terms)",
                    path="; ".join(sorted({str(f.path) for f in files}))[:2000],
                    notes=f"imported from {', '.join(layouts)} files")
    manifest = DatasetManifest(
        name=existing.name if existing else (name or out.name),
        description=existing.description if existing else f"Imported from {', '.join(layouts)} files.",
        kind=existing.kind if existing else "real", instruments=tuple(declared),
        sources=(existing.sources if existing else ()) + (source,),
        caveats=(existing.caveats if existing else ()) + tuple(warnings))
    (target / MANIFEST_NAME).unlink(missing_ok=True)
    write_manifest(target, manifest)
    report = validate_dataset(target)
    if not report.ok:
        kept = f"{out} is unchanged" if existing else f"left in {target} for inspection"
        raise DatasetError(f"imported data does not validate ({kept}):\n" + "\n".join(map(str, report.errors)))
    return ImportResult(path=out, tables=tuple(tables), instruments=tuple(declared), notes=tuple(notes),
                        warnings=tuple(str(p).removeprefix(f"{WARNING}: ") for p in report.warnings))
