"""`dataset_info`: per instrument and table kind, rows, time range, gaps and funding spacings."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from xmargin.dataset.feed import READ_ERRORS, unreadable_dataset
from xmargin.dataset.manifest import KINDS, read_manifest
from xmargin.dataset.tables import not_a_file, scan, table_files
from xmargin.dataset.validate import parse_timeframe

TOP_SPACINGS = 3


def _spacing_text(seconds: int) -> str:
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    if hours >= 48 and not (minutes or secs):
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    text = f"{hours}h" if hours else ""
    text += f"{minutes}m" if minutes else ""
    text += f"{secs}s" if secs else ""
    return text or "0s"


def dataset_info(path: str | Path) -> pl.DataFrame:
    """One row per (kind, instrument, timeframe): rows, start, end (UTC), gaps, missing bars,
    and for funding the most common spacings between events (`spacings`, e.g. "8h×1043, 4h×2").
    A file that cannot be read (nothing validated it) is a DatasetError naming it, as in a run."""
    try:
        return _dataset_info(Path(path))
    except READ_ERRORS as exc:
        raise unreadable_dataset(path, exc) from exc


def _dataset_info(root: Path) -> pl.DataFrame:
    read_manifest(root)  # fail early, with the manifest's own message, if the folder is not a dataset
    parts = []
    for kind in KINDS:
        files = table_files(root, kind)
        for listed in files:  # (the reader takes a folder named like a Parquet file for an empty table)
            what = not_a_file(listed)
            if what is not None:
                raise OSError(f"{listed} is {what}, not a Parquet file")
        frame = scan(root, kind, files=files)
        if frame is None:
            continue
        frame = frame.with_columns(instrument=pl.col("exchange") + ":" + pl.col("symbol"))
        if kind == "funding":
            frame = frame.with_columns(timeframe=pl.lit("event"))
        spacing = pl.col("ts").sort().diff().dt.total_seconds()
        stats = (frame.group_by("instrument", "timeframe")  # one row per timeframe: a dataset may hold several
                 .agg(rows=pl.len(), start=pl.col("ts").min(), end=pl.col("ts").max(), spacing=spacing.drop_nulls())
                 .collect().sort("instrument", "timeframe"))
        for record in stats.iter_rows(named=True):
            spacings = pl.Series(record["spacing"], dtype=pl.Int64)
            gaps = missing = 0
            spacing_text = ""
            if kind == "funding":
                counts = spacings.value_counts(sort=True, name="n").head(TOP_SPACINGS)
                spacing_text = ", ".join(f"{_spacing_text(s)}×{n}" for s, n in counts.iter_rows())
            else:
                try:
                    step = int(parse_timeframe(record["timeframe"]).total_seconds())
                    over = spacings.filter(spacings > step)
                    gaps, missing = over.len(), int((over // step - 1).sum())
                except ValueError:
                    gaps = missing = -1
            parts.append({"kind": kind, "instrument": record["instrument"], "timeframe": record["timeframe"],
                          "rows": record["rows"], "start": record["start"], "end": record["end"],
                          "gaps": gaps, "missing": missing, "spacings": spacing_text})
    schema = {"kind": pl.String, "instrument": pl.String, "timeframe": pl.String, "rows": pl.Int64,
              "start": pl.Datetime("ns", "UTC"), "end": pl.Datetime("ns", "UTC"), "gaps": pl.Int64,
              "missing": pl.Int64, "spacings": pl.String}
    return pl.DataFrame(parts, schema=schema, orient="row") if parts else pl.DataFrame(schema=schema)


def format_info(path: str | Path, table: pl.DataFrame) -> str:
    """Render `dataset_info` output as a fixed-width text table, with the manifest header."""
    manifest = read_manifest(path)
    header = [f"{manifest.name} ({manifest.kind}): {manifest.description}".rstrip(": "),
              f"{len(manifest.instruments)} instruments declared"]
    columns = ["kind", "instrument", "timeframe", "rows", "start", "end", "gaps", "missing", "funding spacings"]
    rows = []
    for r in table.iter_rows(named=True):
        rows.append([r["kind"], r["instrument"], r["timeframe"], f"{r['rows']:,}",
                     r["start"].strftime("%Y-%m-%d %H:%M"), r["end"].strftime("%Y-%m-%d %H:%M"),
                     "" if r["kind"] == "funding" else str(r["gaps"]),
                     "" if r["kind"] == "funding" else str(r["missing"]), r["spacings"]])
    widths = [max([len(c)] + [len(row[i]) for row in rows]) for i, c in enumerate(columns)]
    numeric = {3, 6, 7}

    def line(cells):
        return "  ".join(c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    body = [line(columns), line(["-" * w for w in widths])] + [line(r) for r in rows]
    return "\n".join(header + [""] + [b.rstrip() for b in body])
