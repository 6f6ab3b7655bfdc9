"""Writing a run folder: Arrow IPC tables, summary.json, manifest.json; atomically.

A run is written under `<out>/<run-id>.partial/` and renamed to `<out>/<run-id>/` only when every
file is complete, so an interrupted run never leaves a folder that looks finished.
"""

from __future__ import annotations

import json
import math
import platform
import shutil
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from xmargin._version import __version__
from xmargin.analysis.distance import distance_table, equity_distances, run_distances
from xmargin.analysis.summary import summarize
from xmargin.output.eventlog import file_hash, write_events, write_ipc
from xmargin.output.projections import PROJECTIONS
from xmargin.output.snapshots import (collateral_table, equity_base_table, positions_table, snapshot_tables,
                                      snapshot_units)

SNAPSHOT_ROWS = 200_000  # pool, position and balance rows valued (and their distances searched) per chunk

def equity_table(result) -> pa.Table:
    """Pool snapshots plus warning_distance / liquidation_distance (xmargin.analysis.distance)."""
    return equity_distances(pl.from_arrow(equity_base_table(result)), run_distances(result)).to_arrow()


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return _json_safe(value.item())
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


def run_id_for(config, out: Path) -> str:
    stem = config.name or Path(config.strategy.replace(":", "-")).name.replace(".", "-")
    base = f"{stem}-{datetime.now(timezone.utc).strftime('%Y%m%d-%H%M%S')}"
    candidate, n = base, 1
    while (out / candidate).exists() or (out / f"{candidate}.partial").exists():
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")


def run_meta(result, run_id: str = "") -> dict:
    """The summary's header: run id, strategy, period, sizes, timings, margin modes, mark sources."""
    feed = result.feed
    return {"run_id": run_id, "strategy": result.config.strategy, "start": _iso(int(feed.ts[0])),
            "end": _iso(int(feed.ts[-1]) + feed.bar_ns), "bars": feed.bars, "instruments": list(feed.keys),
            "events": len(result.events), "run_seconds": result.timings["run_seconds"],
            "load_seconds": result.timings["load_seconds"],
            "margin_modes": {n: v.margin_mode for n, v in result.catalog.venues.items()},
            "mark_price_source": dict(feed.mark_source)}


def _snapshot_chunks(snapshots, limit: int = SNAPSHOT_ROWS):
    """Consecutive slices of `snapshots` holding about `limit` pool, position and balance rows each."""
    start, rows = 0, 0
    for n, snapshot in enumerate(snapshots):
        account = snapshot.account
        rows += 1 + len(account.positions) + len(account.balances)
        # cut only between moments (ts, events applied): snapshots of one moment stay together
        if rows >= limit and (n + 1 == len(snapshots) or (snapshots[n + 1].ts, snapshots[n + 1].events_applied)
                              != (snapshot.ts, snapshot.events_applied)):
            yield snapshots[start:n + 1]
            start, rows = n + 1, 0
    if start < len(snapshots):
        yield snapshots[start:]


def _snapshot_parts(result):
    """(equity with distances, positions, distance, collateral) Arrow tables, chunk after chunk of
    snapshots (the in-memory tables when the run already has them)."""
    if result.projected is not None and result.distances is not None:
        yield equity_table(result), positions_table(result), result.distances.to_arrow(), collateral_table(result)
        return
    for chunk in _snapshot_chunks(result.snapshots):
        units = snapshot_units(chunk, result.catalog, result.feed)  # valued for the tables and the distances
        equity, positions, collateral = snapshot_tables(chunk, result.catalog, result.feed, units)
        distance = distance_table(chunk, result.catalog, result.feed, result.config.warning_thresholds, units)
        yield equity_distances(pl.from_arrow(equity), distance).to_arrow(), positions, distance.to_arrow(), collateral


def write_snapshot_tables(result, folder: Path) -> None:
    """equity.arrow, positions.arrow, distance.arrow and collateral.arrow, written one chunk of
    snapshots at a time (one record batch per chunk), so memory stays at one chunk's rows."""
    names = ("equity", "positions", "distance", "collateral")
    with ExitStack() as stack:
        writers = {}
        for tables in _snapshot_parts(result):
            for name, table in zip(names, tables):
                if name not in writers:
                    sink = stack.enter_context(pa.OSFile(str(folder / f"{name}.arrow"), "wb"))
                    writers[name] = (stack.enter_context(pa.ipc.new_file(sink, table.schema)), table.schema)
                writer, schema = writers[name]
                writer.write_table(table if table.schema == schema else table.cast(schema))


def summary_from_folder(folder: Path, meta: dict) -> dict:
    """The run summary computed from the tables written in `folder` (read back, not rebuilt)."""
    def read(name):
        return pl.scan_ipc(folder / f"{name}.arrow").collect().rechunk()  # sums as over one table

    return summarize(read("events"), read("equity"), meta, collateral=read("collateral"),
                     positions=read("positions"))


def write_run(result, summary: dict | None = None, out: Path | None = None, run_id: str | None = None,
              extra_manifest: dict | None = None) -> Path:
    """Write every table and the JSON files under `<out>/<run_id>.partial`, then rename. Without
    `summary`, it is computed from the written tables (`write_run_folder`)."""
    return write_run_folder(result, summary, out, run_id, extra_manifest)[0]


def write_run_folder(result, summary: dict | None = None, out: Path | None = None, run_id: str | None = None,
                     extra_manifest: dict | None = None) -> tuple[Path, dict]:
    """`write_run`, returning (run folder, summary). Each table is built once and streamed to its
    file: the event log in batches, the snapshot tables in chunks; the summary reads the files back."""
    config = result.config
    out = Path(out or config.out)
    out.mkdir(parents=True, exist_ok=True)
    run_id = run_id or run_id_for(config, out)
    final = out / run_id
    if final.exists():
        raise FileExistsError(f"{final} already exists; choose another run id or remove it.")
    partial = out / f"{run_id}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir()
    try:
        write_events(result.events, partial / "events.arrow")
        lazy = pl.scan_ipc(partial / "events.arrow")
        for name, project in PROJECTIONS.items():
            write_ipc(project(lazy).collect().to_arrow(), partial / f"{name}.arrow")
        write_snapshot_tables(result, partial)
        if summary is None:
            summary = summary_from_folder(partial, run_meta(result, run_id))
        (partial / "summary.json").write_text(json.dumps(_json_safe(summary), indent=2) + "\n")
        manifest = {
            "run_id": run_id,
            "config": _json_safe(config.raw),
            "resolved": {"dataset": str(config.dataset), "start": str(config.start), "end": str(config.end),
                         "seed": config.seed, "intrabar": result.intrabar, "slippage_bps": config.slippage_bps,
                         "on_liquidation": config.on_liquidation,
                         "warning_thresholds": list(config.warning_thresholds),
                         "margin_modes": {n: v.margin_mode for n, v in result.catalog.venues.items()},
                         "rules": {n: {"name": v.rules.name, "as_of": v.rules.as_of}
                                   for n, v in result.catalog.venues.items()},
                         "instruments": list(result.feed.keys)},
            "mark_price_source": dict(result.feed.mark_source),
            "versions": _versions(),
            "dataset_fingerprint": result.feed.fingerprint,
            "seed": config.seed,
            "events": len(result.events),
            "events_sha256": file_hash(partial / "events.arrow"),
            "timings": {k: round(v, 4) for k, v in result.timings.items()},
            "final_state": final_state(result.ledger),
        }
        manifest.update(extra_manifest or {})
        (partial / "manifest.json").write_text(json.dumps(_json_safe(manifest), indent=2) + "\n")
        partial.rename(final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return final, summary
