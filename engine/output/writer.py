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

import numpy as np
import polars as pl
import pyarrow as pa

from xmargin._version import __version__
from xmargin.analysis.distance import equity_distances, run_distances
from xmargin.output.eventlog import events_to_table, file_hash, write_ipc
from xmargin.output.projections import PROJECTIONS
from xmargin.output.snapshots import collateral_table, equity_base_table, positions_table

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
            "settlements": [s.describe() for s in getattr(result, "settlements", ())],
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
