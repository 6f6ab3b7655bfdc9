"""Writing a run folder: Arrow IPC tables, summary.json, manifest.json; atomically.

A run owns its folder exclusively: `reserve_run` refuses an existing run id and takes
`<out>/<run-id>.partial/` (created atomically, locked with `flock` while the run computes and
writes) before anything is computed; the folder is renamed to `<out>/<run-id>/` only when every
file is complete, so an interrupted run never leaves a folder that looks finished. The manifest
holds the sha256 of every other file and a digest of itself, so `verify` notices any edit.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import math
import os
import platform
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl

from xmargin._version import __version__
from xmargin.analysis.distance import distance_table, equity_distances
from xmargin.analysis.summary import (COLUMNS as SUMMARY_COLUMNS, LogFigures, SnapshotFigures, SnapshotReduction,
                                      summarize_figures)
from xmargin.dataset.feed import iso_minutes
from xmargin.errors import RunError
from xmargin.margin.modes import venue_mode
from xmargin._memory import return_free_memory
from xmargin._progress import ProgressLine
from xmargin.output.eventlog import file_hash, read_ipc, write_events, write_ipc
from xmargin.output.logtables import LogTables
from xmargin.output.snapshots import snapshot_tables, stacked_units
from xmargin.output.tables import BY_NAME, OUTPUT_TABLES, SCHEMA_VERSION, TableFiles, equity_table

SNAPSHOT_ROWS = 50_000  # pool, position and balance rows valued (and their distances searched) per chunk

__all__ = ["equity_table", "final_state", "run_id_for", "run_meta", "write_run_folder"]


def json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return json_safe(value.item())
    if isinstance(value, (datetime, Path)):
        return str(value)
    return value


def final_state(ledger) -> dict:
    """Balances, isolated margins and positions per account: what `verify` must reproduce."""
    return {exchange: {
        "balances": {a: float(v) for a, v in sorted(account.balances.items())},
        "positions": {k: {"quantity": p.quantity, "entry_price": p.entry_price, "margin_mode": p.margin_mode,
                          "isolated_margin": p.isolated_margin, "asset": p.asset}
                      for k, p in sorted(account.positions.items())},
        "insurance_used": {a: float(v) for a, v in sorted(account.insurance_used.items())},
    } for exchange, account in sorted(ledger.accounts.items())}


def _versions() -> dict:
    import pyarrow

    return {"xmargin": __version__, "python": platform.python_version(), "polars": pl.__version__,
            "pyarrow": pyarrow.__version__, "numpy": np.__version__}


def run_id_for(config, out: Path, kind: str = "") -> str:
    """A new folder name under `out`: `[kind-]<config name or strategy>-<UTC time>[-n]`, taken by
    neither a finished folder nor a `.partial` one (runs, and compare / stress / capital / sweep folders)."""
    stem = config.name or Path(config.strategy.replace(":", "-")).name.replace(".", "-")
    base = f"{kind + '-' if kind else ''}{stem}-{datetime.now(timezone.utc).strftime('%Y%m%d-%H%M%S')}"
    candidate, n = base, 1
    while (out / candidate).exists() or (out / f"{candidate}.partial").exists():
        n += 1
        candidate = f"{base}-{n}"
    return candidate


LOCK_NAME = ".lock"
MANIFEST_DIGEST = "manifest_sha256"


def check_run_id(run_id: str, option: str = "--run-id") -> str:
    """A run id names one folder directly inside the output folder: no path, no '..', no '.partial'
    (also the ids of compare, stress and capital folders: `option` names the option in the error)."""
    text = str(run_id)
    if (not text or text in (".", "..") or "/" in text or "\\" in text or text.startswith(".")
            or text.endswith(".partial") or Path(text).is_absolute()):
        raise RunError(f"{option} {text!r}: an id is one folder name inside the output folder (letters, digits, "
                       "'-', '_'; no '/', no leading '.', not ending in '.partial'). Use --out to choose where "
                       "runs are written.")
    return text


def manifest_digest(manifest: dict) -> str:
    """sha256 of the manifest's canonical JSON without its own digest field."""
    body = {k: v for k, v in manifest.items() if k != MANIFEST_DIGEST}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


class Reservation:
    """An exclusive claim on `<out>/<run_id>`: the locked `<run_id>.partial/` folder the run writes into."""

    def __init__(self, out: Path, run_id: str, partial: Path, handle):
        self.out, self.run_id, self.partial, self._handle = out, run_id, partial, handle
        self.final = out / run_id

    def release(self) -> None:
        """Give the claim up and remove the unfinished folder (idempotent)."""
        if self._handle is not None:
            shutil.rmtree(self.partial, ignore_errors=True)
            self._handle.close()
            self._handle = None

    def commit(self) -> Path:
        """Rename the complete partial folder to its final name; refuse to replace anything."""
        if self.final.exists():
            raise RunError(f"{self.final} appeared while this run was computing; the run is not saved. Choose "
                           "another --run-id.")
        os.rename(self.partial, self.final)
        (self.final / LOCK_NAME).unlink(missing_ok=True)
        self._handle.close()
        self._handle = None
        return self.final


def _lock(partial: Path):
    handle = open(partial / LOCK_NAME, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def reserve_run(out: Path, run_id: str) -> Reservation:
    """Claim `<out>/<run_id>` before computing: refuses an existing run, a folder another process is
    writing, an output folder that is itself a run, and an output folder that cannot be written."""
    out = Path(out)
    run_id = check_run_id(run_id)
    if (out / "manifest.json").is_file() or (out / LOCK_NAME).is_file():  # a finished run, or one being written
        raise RunError(f"--out {out}: that is a run folder; --out names the folder that receives run folders "
                       "(e.g. runs/).")
    final, partial = out / run_id, out / f"{run_id}.partial"
    if final.exists():
        raise RunError(f"{final} already exists; choose another --run-id or remove that folder first.")
    try:
        out.mkdir(parents=True, exist_ok=True)
        try:
            partial.mkdir()
        except FileExistsError:
            handle = _lock(partial)
            if handle is None:
                raise RunError(f"{partial} is being written by another run with the same id right now; choose "
                               "another --run-id.") from None
            handle.close()  # left over from an interrupted run: nobody holds it
            shutil.rmtree(partial)
            partial.mkdir()
        handle = _lock(partial)
        if handle is None:
            raise RunError(f"{partial} was claimed by another run with the same id; choose another --run-id.")
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        os.fsync(handle.fileno())
    except OSError as exc:
        shutil.rmtree(partial, ignore_errors=True)
        reason = "the disk is full" if exc.errno == errno.ENOSPC else (
            "it is not writable" if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS) else exc.strerror)
        raise RunError(f"--out {out}: cannot create the run folder there ({reason}); choose another --out.") from exc
    return Reservation(out, run_id, partial, handle)


def run_meta(result, run_id: str = "") -> dict:
    """The summary's header: run id, strategy, period, sizes, timings, margin modes, mark sources,
    the input warnings (`summarize` adds them to `warnings`)."""
    feed = result.feed
    return {"run_id": run_id, "strategy": result.config.strategy, "start": iso_minutes(int(feed.ts[0])),
            "end": iso_minutes(int(feed.ts[-1]) + feed.bar_ns), "bars": feed.bars, "instruments": list(feed.keys),
            "events": result.event_count, "run_seconds": result.timings["run_seconds"],
            "load_seconds": result.timings["load_seconds"],
            "margin_modes": {n: v.margin_mode for n, v in result.catalog.venues.items()},
            "mark_price_source": dict(feed.mark_source),
            "input_warnings": list(result.warnings)}


def summary_options(result) -> dict:
    """`summarize`'s keyword arguments from the run's config."""
    return {"one_legged_ratio": result.config.one_legged_ratio,
            "one_legged_after_hours": result.config.one_legged_after_ns / 3.6e12}


class _Chunks:
    """Snapshots cut, as they come, into chunks of about `limit` (default `SNAPSHOT_ROWS`) pool,
    position and balance rows, only between moments (ts, events applied): the snapshots of one
    moment stay together."""

    def __init__(self, limit: int | None = None):
        self.limit = SNAPSHOT_ROWS if limit is None else limit
        self.pending: list = []
        self.rows = 0

    def add(self, snapshot):
        """Take `snapshot`; returns the chunk it closes (None while the chunk is not full)."""
        full = None
        if self.pending and self.rows >= self.limit and (snapshot.ts, snapshot.events_applied) != (
                self.pending[-1].ts, self.pending[-1].events_applied):
            full, self.pending, self.rows = self.pending, [], 0
        self.pending.append(snapshot)
        account = snapshot.account
        self.rows += 1 + len(account.positions) + len(account.balances)
        return full


def _snapshot_chunks(snapshots, limit: int | None = None):
    """Consecutive slices of `snapshots` cut by `_Chunks`."""
    chunks = _Chunks(limit)
    for snapshot in snapshots:
        full = chunks.add(snapshot)
        if full is not None:
            yield full
    if chunks.pending:
        yield chunks.pending


def _chunk_tables(chunk, catalog, feed, thresholds) -> dict:
    """{table name: Arrow table} of the valuation tables (equity with distances, positions, distance,
    collateral) of a chunk of snapshots."""
    stacked = stacked_units(chunk, catalog, feed)  # valued once for the tables and the distances
    equity, positions, collateral = snapshot_tables(chunk, catalog, feed, stacked=stacked)
    distance = distance_table(chunk, catalog, feed, thresholds, stacked=stacked)
    return {"equity": equity_distances(pl.from_arrow(equity), distance).to_arrow(), "positions": positions,
            "distance": distance.to_arrow(), "collateral": collateral}


def _valuation_parts(result, progress: ProgressLine | None = None):
    """{table name: Arrow table} of the valuation tables, chunk after chunk of snapshots (at once when
    the run already has them)."""
    if result.projected is not None and result.distances is not None:
        yield {name: BY_NAME[name].build(result, None) for name in ("equity", "positions", "distance", "collateral")}
        return
    total, done = len(result.snapshots), 0
    for chunk in _snapshot_chunks(result.snapshots):
        if progress is not None:
            progress.say(f"writing outputs: valuation {done / max(total, 1):.0%} of {total:,} snapshots")
        done += len(chunk)
        yield _chunk_tables(chunk, result.catalog, result.feed, result.config.warning_thresholds)
        result.feed.release()  # a paged feed: the rows this chunk read
        return_free_memory()  # the chunk's arrays, once written (the caller drops its tables first)


def _reduce(reduction: SnapshotReduction, tables: dict) -> None:
    """Hand a chunk's valuation tables (Arrow) to `reduction`: the columns the summary reads."""
    frames = {name: pl.from_arrow(tables[name].select([c for c in SUMMARY_COLUMNS[name]
                                                       if c in tables[name].schema.names]))
              for name in ("collateral", "positions", "equity")}
    reduction.add(frames["collateral"], frames["positions"], frames["equity"])


class ValuationFile:
    """The valuation tables (equity, positions, distance, collateral) written while a run goes on
    (`xmargin.sim.loop.Backtest(valuation_file=...)`): the loop hands over its snapshots, each chunk
    of them (`_Chunks`) is valued, appended to the files and dropped, so a run does not keep its
    account states to its end. The files' bytes are those `write_tables` writes from a kept run.
    `seconds`: the time spent (kept apart from the run phase)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.seconds = 0.0
        self._chunks = _Chunks()
        self._files = TableFiles(self.folder)
        self._context = None
        self.figures = SnapshotReduction()  # what the summary reads of the tables, reduced chunk by chunk

    def start(self, catalog, feed, thresholds) -> None:
        """What the snapshots are valued with: the run's catalog, feed and warning thresholds."""
        self._context = (catalog, feed, thresholds)

    def add(self, snapshots) -> None:
        for snapshot in snapshots:
            full = self._chunks.add(snapshot)
            if full is not None:
                self._write(full)

    def _write(self, chunk) -> None:
        started = time.perf_counter()
        tables = _chunk_tables(chunk, *self._context)
        self._files.append(tables)
        _reduce(self.figures, tables)
        tables = None
        return_free_memory()  # the chunk's arrays, once written
        self.seconds += time.perf_counter() - started

    def finish(self) -> list[str]:
        """Value and append the snapshots still pending, close the files; the tables written."""
        if self._chunks.pending:
            self._write(self._chunks.pending)
            self._chunks.pending = []
        self._context = None  # (the feed goes with the run's)
        return self._files.close()

    def abort(self) -> None:
        """Close the files without finishing (a failed run: its folder is removed)."""
        self._context, self._chunks, self.figures = None, _Chunks(), SnapshotReduction()
        try:
            self._files.close()
        except Exception:  # noqa: BLE001 - already failing; the folder goes
            pass


class _FileHashes:
    """sha256 of each finished file of a run folder, computed by one background thread while the
    writer goes on: file reads and hashlib release the GIL, so the hashes overlap the valuation
    and the summary instead of following them."""

    def __init__(self):
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="xmargin-hash")
        self._pending: dict = {}

    def add(self, path: Path) -> None:
        self._pending[path.name] = self._pool.submit(file_hash, path)

    def result(self) -> dict:
        """{file name: sha256} of every file added, by name."""
        return {name: self._pending[name].result() for name in sorted(self._pending)}

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def write_tables(result, folder: Path, hashes: _FileHashes | None = None, release: bool = False,
                 progress: ProgressLine | None = None) -> tuple[LogFigures, SnapshotFigures]:
    """Every table of the registry (`xmargin.output.tables`) into `folder`, each built once and
    streamed: the valuation tables one chunk of snapshots at a time (one record batch per chunk),
    then the event log in record batches with the projections made from each batch as it is written
    (`xmargin.output.logtables`: the log is never read back), so memory stays at one chunk's or
    batch's rows. Returns what the summary reads of the log and of the valuation tables, reduced as
    they were made (`summary.LogFigures`, `summary.SnapshotFigures`). `hashes`: told of each file
    once it is complete. `release`: the result's log is dropped once written, its snapshots and feed
    once the valuation tables are (`RunResult.release`; the feed's open, high and low prices too:
    snapshots taken at a bar's open or inside it are valued at them)."""
    done = hashes.add if hashes is not None else (lambda path: None)
    events_file = folder / BY_NAME["events"].file
    if result.valuation_file is not None:  # valued and written while the run went on: the rest, then closed
        if result.valuation_file.folder != folder:
            raise RunError(f"{result.valuation_file.folder}: the run's valuation files are not in {folder} (a bug "
                           "of the caller: the run and its folder must share the reservation)")
        valuation, result.valuation_file = result.valuation_file, None
        streamed = set(valuation.finish())  # (a failure: its maker, `execute`, closes it)
        result.timings["valuation_seconds"] = valuation.seconds
        reduction = valuation.figures
    else:
        files, reduction = TableFiles(folder), SnapshotReduction()
        try:
            for parts in _valuation_parts(result, progress):
                files.append(parts)
                _reduce(reduction, parts)
                parts = None  # the chunk's tables go before the next chunk (`_valuation_parts`)
        finally:
            streamed = set(files.close())
    for name in sorted(streamed):
        done(folder / BY_NAME[name].file)
    if release:
        result.release("valuation")
    snapshots = reduction.figures()
    if result.event_file is not None:  # written while the run went on: the rest of the log, then closed
        if result.event_file.path != events_file or result.event_file.tables is None:
            raise RunError(f"{result.event_file.path}: the run's event file is not {events_file} with its log tables "
                           "(a bug of the caller: the run and its folder must share the reservation)")
        event_file, result.event_file = result.event_file, None
        event_file.finish(result.events)  # (a failure: its maker, `execute`, closes it)
        log_tables = event_file.tables
    else:
        log_tables = LogTables(folder)
        write_events(result.events, events_file, tables=log_tables)  # (a failure: it closes `log_tables`)
    try:
        done(events_file)
        if release:
            result.release("events")
    except BaseException:  # (an interrupt): the table files are closed before the folder goes
        log_tables.abort()
        raise
    projected, log = log_tables.finish()  # (once the valuation's memory is given back; a failure: it closes)
    for name in projected:
        done(folder / BY_NAME[name].file)
    events = None
    for table in OUTPUT_TABLES:
        if table.name == "events" or table.name in streamed or table.name in projected:
            continue
        # a table this writer does not stream: its registry build over the written log
        events = read_ipc(events_file) if events is None else events
        write_ipc(table.conform(table.build(result, events)), folder / table.file)
        done(folder / table.file)
    return log, snapshots


def _manifest_head(result, run_id: str) -> dict:
    """The manifest's fields that describe the run (config, resolved settings, instruments, mark
    sources, versions, event count), read before the result may be released."""
    config = result.config
    return {
        "run_id": run_id,
        "schema_version": SCHEMA_VERSION,
        "config": json_safe(config.raw),
        "resolved": {"dataset": str(config.dataset), "start": str(config.start), "end": str(config.end),
                     "seed": config.seed, "intrabar": result.intrabar, "slippage_bps": config.slippage_bps,
                     "on_liquidation": config.on_liquidation,
                     "warning_thresholds": list(config.warning_thresholds),
                     "margin_modes": {n: v.margin_mode for n, v in result.catalog.venues.items()},
                     "rules": {n: {"name": v.rules.name, "as_of": v.rules.as_of,
                                   "variant": v.rules.variant_name or v.rules.name}
                               for n, v in result.catalog.venues.items()},
                     "portfolio_margin": {n: {"variant": v.portfolio_variant.name,
                                              "method": v.portfolio_variant.method,
                                              "source": v.portfolio_variant.source}
                                          for n, v in result.catalog.venues.items()
                                          if v.portfolio_variant is not None
                                          and venue_mode(result.catalog, n).config_keys},
                     "instruments": list(result.feed.keys)},
        "mark_price_source": dict(result.feed.mark_source),
        "settlements": [s.describe() for s in getattr(result, "settlements", ())],
        "versions": _versions(),
        "dataset_fingerprint": result.feed.fingerprint,
        "seed": config.seed,
        "events": result.event_count,
    }


def write_run_folder(result, summary: dict | None = None, out: Path | None = None, run_id: str | None = None,
                     extra_manifest: dict | None = None, reservation: Reservation | None = None,
                     release: bool = False, progress: bool = False) -> tuple[Path, dict]:
    """Write every table and the JSON files into the reserved `<out>/<run_id>.partial`, then rename;
    returns (run folder, summary). Without `summary`, it is computed from the written tables.
    `release`: drop the result's log once events.arrow is written and its snapshots and feed once
    the valuation tables are (`RunResult.release`), so that the summary is computed without them in
    memory; the result is not usable for tables afterwards (`feed` None, `events` / `snapshots` empty).
    `progress`: a line on stderr saying what is being written when that takes more than a second."""
    config = result.config
    if reservation is None:
        out = Path(out or config.out)
        reservation = reserve_run(out, run_id or run_id_for(config, out))
    run_id, partial = reservation.run_id, reservation.partial
    hashing = _FileHashes()
    shown = ProgressLine(progress)
    try:
        meta, manifest = run_meta(result, run_id), _manifest_head(result, run_id)  # before a release
        log, snapshots = write_tables(result, partial, hashing, release=release, progress=shown)
        if summary is None:
            shown.say("writing outputs: summary")
            options = summary_options(result)
            summary = summarize_figures(log, snapshots, meta, options["one_legged_ratio"],
                                        options["one_legged_after_hours"])
        log = snapshots = None
        (partial / "summary.json").write_text(json.dumps(json_safe(summary), indent=2) + "\n")
        hashing.add(partial / "summary.json")
        hashes = hashing.result()
        unhashed = sorted(f.name for f in partial.iterdir() if f.is_file() and f.name not in {*hashes, LOCK_NAME})
        if unhashed:
            raise RunError(f"{partial}: {unhashed} written but not hashed (a bug of xmargin.output.writer)")
        manifest.update(events_sha256=hashes["events.arrow"],
                        timings={k: round(v, 4) for k, v in result.timings.items()},
                        final_state=final_state(result.ledger))
        manifest.update(extra_manifest or {})
        manifest["files"] = hashes  # every file but the manifest and the lock, each read once
        manifest = json_safe(manifest)
        manifest[MANIFEST_DIGEST] = manifest_digest(manifest)
        (partial / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        return reservation.commit(), summary
    except OSError as exc:
        _abandon(hashing, reservation)
        if exc.errno == errno.ENOSPC:
            raise disk_full(reservation.out) from exc
        raise
    except BaseException:
        _abandon(hashing, reservation)
        raise
    finally:
        shown.done()  # (a failure's message then starts on a clean line)
        hashing.close()


def disk_full(out: Path) -> RunError:
    """The error for a run folder that could not be written under `out` because the disk is full
    (while the tables are written, or events.arrow during the run)."""
    return RunError(f"{out}: the disk filled up while writing the run; nothing was kept. Free space or choose "
                    "another --out.")


def _abandon(hashing: _FileHashes, reservation: Reservation) -> None:
    """A failed write: the hashing thread stops before the unfinished folder goes, and the folder
    goes even when the wait for that thread is interrupted (a second Ctrl-C)."""
    try:
        hashing.close()
    finally:
        reservation.release()
