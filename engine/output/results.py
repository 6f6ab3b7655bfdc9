"""Reading runs back: `open_run(path)` gives every table as a polars LazyFrame."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import polars as pl

from xmargin.errors import RunError

TABLES = ("events", "fills", "funding", "liquidations", "transfers", "equity", "positions", "distance", "collateral")


@attrs.frozen
class Run:
    """A finished run folder: its tables (LazyFrames), summary and manifest."""

    path: Path
    tables: dict
    summary: dict
    manifest: dict

    def __getattr__(self, name):
        tables = object.__getattribute__(self, "tables")
        if name in tables:
            return tables[name]
        raise AttributeError(name)


def open_run(path: str | Path) -> Run:
    """Open `runs/<run-id>`; `run.equity.collect()` etc. Refuses a `.partial` (unfinished) folder."""
    path = Path(path)
    if path.name.endswith(".partial"):
        raise RunError(f"{path}: an unfinished run (it was interrupted); run it again.")
    if not (path / "manifest.json").is_file():
        raise RunError(f"{path}: not a run folder (no manifest.json). Runs live under runs/<run-id>/.")
    tables = {}
    for name in TABLES:
        file = path / f"{name}.arrow"
        if not file.is_file():
            raise RunError(f"{path}: {name}.arrow is missing; the run folder is damaged.")
        tables[name] = pl.scan_ipc(file)
    return Run(path=path, tables=tables, summary=read_json(path / "summary.json"),
               manifest=read_json(path / "manifest.json"))


def read_json(file: Path) -> dict:
    """A run's JSON file as a dict; a missing, truncated or edited-to-garbage file is a RunError naming it."""
    try:
        data = json.loads(Path(file).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunError(f"{file}: unreadable ({exc}); the run folder is damaged. Run its config again.") from exc
    if not isinstance(data, dict):
        raise RunError(f"{file}: expected a JSON object; the run folder is damaged. Run its config again.")
    return data


def list_runs(root: str | Path = "runs") -> pl.DataFrame:
    """One row per finished run under `root` with its headline numbers."""
    rows = []
    for folder in sorted(Path(root).glob("*/manifest.json")):
        summary_file = folder.parent / "summary.json"
        if not summary_file.is_file():
            continue
        try:
            summary = read_json(summary_file)
        except RunError:  # one damaged run must not hide the others
            rows.append({"run_id": folder.parent.name, "strategy": "(damaged summary.json)",
                         "start": "", "end": "", "pnl": None, "fees": None, "funding": None, "liquidations": None})
            continue
        total = summary.get("total", {})
        rows.append({"run_id": folder.parent.name, "strategy": summary.get("strategy", ""),
                     "start": summary.get("start", ""), "end": summary.get("end", ""),
                     "pnl": total.get("pnl", 0.0), "fees": total.get("fees", 0.0),
                     "funding": total.get("funding", 0.0), "liquidations": total.get("liquidations", 0)})
    schema = {"run_id": pl.String, "strategy": pl.String, "start": pl.String, "end": pl.String, "pnl": pl.Float64,
              "fees": pl.Float64, "funding": pl.Float64, "liquidations": pl.Int64}
    return pl.DataFrame(rows, schema=schema)
