"""Downsampling a time series for a chart while keeping its extremes.

A year of minute bars is half a million points per series; a chart needs a few thousand. Each
series (one group of `by`) longer than `max_points` is cut into equal-count buckets in its row
order, and only the first row, the last row and, per bucket, the rows holding each value column's
minimum and maximum are kept. Every kept row is a row of the input, unchanged, so the lowest
margin headroom or the deepest drawdown on the chart is the one in the table.
"""

from __future__ import annotations

import polars as pl

MAX_POINTS = 2000


def keep_extremes(frame: pl.DataFrame, values, by=(), max_points: int | None = None) -> pl.DataFrame:
    """The rows of `frame` to plot: all of a group of `by` with at most `max_points` (default
    MAX_POINTS) rows, else the first, the last and each bucket's rows of min and max of every
    column in `values` (in order)."""
    values, by = list(values), list(by)
    max_points = max_points or MAX_POINTS
    if frame.height <= max_points and not by:
        return frame
    buckets = max(1, max_points // (2 * max(1, len(values))))
    over = by or None
    index = pl.int_range(pl.len()).over(over) if over else pl.int_range(pl.len())
    count = pl.len().over(over) if over else pl.len()
    marked = frame.with_columns(index.alias("_row"), count.alias("_rows"))
    marked = marked.with_columns((pl.col("_row") * buckets // pl.col("_rows")).alias("_bucket"))
    window = [*by, "_bucket"]
    keep = (pl.col("_rows") <= max_points) | (pl.col("_row") == 0) | (pl.col("_row") == pl.col("_rows") - 1)
    for column in values:
        finite = pl.when(pl.col(column).is_nan()).then(None).otherwise(pl.col(column))
        keep = keep | (pl.col("_row") == pl.col("_row").get(finite.arg_min().fill_null(0)).over(window))
        keep = keep | (pl.col("_row") == pl.col("_row").get(finite.arg_max().fill_null(0)).over(window))
    return marked.filter(keep.fill_null(False)).drop("_row", "_rows", "_bucket")
