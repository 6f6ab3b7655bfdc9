"""Reading runs back: `open_run(path)` gives every table as a polars LazyFrame."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import polars as pl

from xmargin.errors import RunError
from xmargin.output.tables import OUTPUT_TABLES, SCHEMA_VERSION

TABLES = tuple(table.name for table in OUTPUT_TABLES)  # the registry's names, in file order


class MissingTableError(RunError, AttributeError):
    """A table the registry knows but this (older) run folder does not have."""


@attrs.frozen
class Run:
    """A finished run folder: its tables (LazyFrames), summary and manifest.

    `missing` names the optional tables an older run was written without; asking for one says so."""

    path: Path
    tables: dict
    summary: dict
    manifest: dict
    missing: tuple = ()

    @property
    def schema_version(self) -> int:
        """The run-folder layout it was written with (0: before schema versions)."""
        return int(self.manifest.get("schema_version", 0))

    def __getattr__(self, name):
        tables = object.__getattribute__(self, "tables")
        if name in tables:
            return tables[name]
        if name in object.__getattribute__(self, "missing"):
            path = object.__getattribute__(self, "path")
            raise MissingTableError(f"{path}: this run has no {name} table (it was written by an older xmargin, "
                                    f"before {name}.arrow existed); run its config again to get one.")
        raise AttributeError(name)


def open_run(path: str | Path, whole: bool = False) -> Run:
    """Open `runs/<run-id>`; `run.equity.collect()` etc. Refuses a `.partial` (unfinished) folder,
    a folder missing a required table, and one written by a newer layout than this xmargin reads.
    An older run without an optional table opens; `run.missing` names what it lacks. `whole`: also
    read every table file's Arrow footer, so a file cut short is refused by name here (the tables are
    scanned lazily: otherwise it fails at the first collect)."""
    path = Path(path)
    if path.name.endswith(".partial"):
        raise RunError(f"{path}: an unfinished run (it was interrupted); run it again.")
    if not (path / "manifest.json").is_file():
        raise RunError(f"{path}: not a run folder (no manifest.json). Runs live under runs/<run-id>/.")
    manifest = read_json(path / "manifest.json")
    version = int(manifest.get("schema_version", 0))
    if version > SCHEMA_VERSION:
        raise RunError(f"{path}: written with run-folder schema_version {version}, this xmargin reads up to "
                       f"{SCHEMA_VERSION}; upgrade xmargin to open it.")
    tables, missing = {}, []
    for table in OUTPUT_TABLES:
        file = path / table.file
        if file.is_file():
            if whole:
                try:
                    pl.read_ipc_schema(file)
                except (pl.exceptions.PolarsError, OSError) as exc:
                    raise RunError(f"{file}: not a readable Arrow file ({exc}); the run folder is damaged: run its "
                                   "config again.") from None
            tables[table.name] = pl.scan_ipc(file)
        elif table.required:
            raise RunError(f"{path}: {table.file} is missing; the run folder is damaged (every run has it).")
        else:
            missing.append(table.name)
    return Run(path=path, tables=tables, summary=read_json(path / "summary.json"),
               manifest=manifest, missing=tuple(missing))


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
    """One row per finished run under `root` with its headline numbers, the run-folder schema_version
    it was written with and whether it has every table of the registry."""
    rows = []
    for folder in sorted(Path(root).glob("*/manifest.json")):
        summary_file = folder.parent / "summary.json"
        if not summary_file.is_file():
            continue
        try:
            summary, manifest = read_json(summary_file), read_json(folder)
        except RunError:  # one damaged run must not hide the others
            rows.append({"run_id": folder.parent.name, "strategy": "(damaged summary.json)", "start": "", "end": "",
                         "pnl": None, "fees": None, "funding": None, "liquidations": None, "schema_version": None,
                         "tables": "damaged: unreadable JSON"})
            continue
        total = summary.get("total", {})
        absent = [t for t in OUTPUT_TABLES if not (folder.parent / t.file).is_file()]
        damaged = [t.name for t in absent if t.required]
        rows.append({"run_id": folder.parent.name, "strategy": summary.get("strategy", ""),
                     "start": summary.get("start", ""), "end": summary.get("end", ""),
                     "pnl": total.get("pnl", 0.0), "fees": total.get("fees", 0.0),
                     "funding": total.get("funding", 0.0), "liquidations": total.get("liquidations", 0),
                     "schema_version": int(manifest.get("schema_version", 0)),
                     "tables": (f"damaged: no {', '.join(damaged)}" if damaged else
                                f"without {', '.join(t.name for t in absent)}" if absent else "complete")})
    schema = {"run_id": pl.String, "strategy": pl.String, "start": pl.String, "end": pl.String, "pnl": pl.Float64,
              "fees": pl.Float64, "funding": pl.Float64, "liquidations": pl.Int64, "schema_version": pl.Int64,
              "tables": pl.String}
    return pl.DataFrame(rows, schema=schema)
