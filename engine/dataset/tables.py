"""Lazy scans of a dataset's Parquet tables, filtered by time range and instruments."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import polars as pl

from xmargin.dataset.manifest import KINDS


def table_files(folder: str | Path, kind: str) -> list[Path]:
    """The Parquet files of one table kind (`bars`, `mark`, `index`, `funding`), sorted by path."""
    if kind not in KINDS:
        raise ValueError(f"unknown table kind {kind!r}; one of {KINDS}")
    root = Path(folder) / kind
    if not root.is_dir():
        return []
    return sorted(root.rglob("*.parquet"))


def not_a_file(path: Path) -> str | None:
    """What a path listed as a table's Parquet file is when it is not a file to read ("a folder",
    "a link to a file that does not exist", "gone"), else None."""
    if path.is_file():
        return None
    return ("a folder" if path.is_dir() else "a link to a file that does not exist" if path.is_symlink()
            else "gone (removed while the dataset was read)")


def as_utc(moment: datetime) -> datetime:
    """`moment` in UTC: naive means UTC (the dataset's times are); an aware one is converted (a zone
    such as ZoneInfo("Asia/Tokyo") kept its wall clock under replace_time_zone: a window moved by 9 h)."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _utc(moment: datetime) -> pl.Expr:
    """`moment` (`as_utc`) as a UTC literal."""
    return pl.lit(as_utc(moment)).dt.cast_time_unit("ns").dt.replace_time_zone("UTC")


def scan(folder: str | Path, kind: str, start: datetime | None = None, end: datetime | None = None,
         instruments: list[str] | None = None, files: list[Path] | None = None) -> pl.LazyFrame | None:
    """One LazyFrame over all files of `kind` (or over `files`, some of them), or None when there are none.

    `start` is inclusive and `end` exclusive (UTC); `instruments` are `exchange:symbol` keys.
    Filters are pushed down into the Parquet scan.
    """
    files = table_files(folder, kind) if files is None else files
    if not files:
        return None
    frame = pl.scan_parquet([str(f) for f in files])
    if start is not None:
        frame = frame.filter(pl.col("ts") >= _utc(start))
    if end is not None:
        frame = frame.filter(pl.col("ts") < _utc(end))
    if instruments is not None:
        frame = frame.filter((pl.col("exchange") + ":" + pl.col("symbol")).is_in(list(instruments)))
    return frame
