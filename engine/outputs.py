"""Writing a run folder: Arrow IPC tables, summary.json, manifest.json; atomically.

A run is written under `<out>/<run-id>.partial/` and renamed to `<out>/<run-id>/` only when every
file is complete, so an interrupted run never leaves a folder that looks finished.
"""

from __future__ import annotations

import json
import math
import platform
import shutil
from datetime import datetime, timezone
from pathlib import Path

import attrs
import numpy as np
import polars as pl
import pyarrow as pa

from engine import __version__
from engine.accounting import CollateralMetrics, PoolMetrics, PositionMetrics
from engine.eventlog import TIMESTAMP, events_to_table, file_hash, write_ipc
from engine.projections import PROJECTIONS

def _metric_fields(cls, skip=()) -> list[pa.Field]:
    """Arrow fields from a metrics class's annotations: str -> string, everything else float64."""
    return [pa.field(f.name, pa.large_string() if f.type in ("str", str) else pa.float64())
            for f in attrs.fields(cls) if f.name not in skip]


_POOL_FIELDS = _metric_fields(PoolMetrics, skip=("exchange",))
_POSITION_FIELDS = _metric_fields(PositionMetrics)
_COLLATERAL_FIELDS = _metric_fields(CollateralMetrics)


_HEAD = [pa.field("ts", TIMESTAMP), pa.field("reason", pa.large_string()), pa.field("exchange", pa.large_string()),
         pa.field("events_applied", pa.int64())]


def _typed(frame: pl.DataFrame, fields) -> pa.Table:
    """Columns: ts, reason (start | sample | event | final), exchange, events_applied (how many events of
    the log the snapshot has seen), then the metrics' fields, with the explicit schema."""
    schema = pa.schema([*_HEAD, *fields])
    frame = frame.with_columns(pl.col("ts").cast(pl.Datetime("ns", "UTC")))
    return frame.select(schema.names).to_arrow().cast(schema)


def _projected(result):
    """The equity, positions and collateral frames of a run (computed once per result)."""
    if result.projected is None:
        from engine.snapshots import project

        result.projected = project(result.snapshots, result.catalog, result.feed)
    return result.projected


def equity_base_table(result) -> pa.Table:
    """One row per account pool per snapshot: wallet, collateral, PnL, margins, ratio, free collateral."""
    return _typed(_projected(result)[0], _POOL_FIELDS)


def equity_table(result) -> pa.Table:
    """Pool snapshots plus warning_distance / liquidation_distance (engine.distance)."""
    from engine.distance import equity_distances, run_distances

    return equity_distances(pl.from_arrow(equity_base_table(result)), run_distances(result)).to_arrow()


def positions_table(result) -> pa.Table:
    """One row per open position per snapshot, with its liquidation and bankruptcy prices."""
    return _typed(_projected(result)[1], _POSITION_FIELDS)


def collateral_table(result) -> pa.Table:
    """Per snapshot, every asset balance with its value before and after haircuts (USD)."""
    return _typed(_projected(result)[2], _COLLATERAL_FIELDS)


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


def write_run(result, summary: dict, out: Path | None = None, run_id: str | None = None,
              extra_manifest: dict | None = None) -> Path:
    """Write every table and the JSON files under `<out>/<run_id>.partial`, then rename."""
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
        events = events_to_table(result.events)
        write_ipc(events, partial / "events.arrow")
        lazy = pl.from_arrow(events).lazy()
        for name, project in PROJECTIONS.items():
            write_ipc(project(lazy).collect().to_arrow(), partial / f"{name}.arrow")
        write_ipc(equity_table(result), partial / "equity.arrow")
        write_ipc(positions_table(result), partial / "positions.arrow")
        from engine.distance import run_distances

        write_ipc(run_distances(result).to_arrow(), partial / "distance.arrow")
        write_ipc(collateral_table(result), partial / "collateral.arrow")
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
    return final
