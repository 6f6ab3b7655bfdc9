"""Frames kept past the batch they were cut from.

A text column of a frame converted from Arrow is views into the batch's own buffers, and rows
taken from it (a filter, a group's keys) keep every string of the batch alive. Rows gathered from
many batches for later are therefore stored with their text as categories, which copies the few
distinct values, and turned back into text when used. (A number column of a frame that kept every
row of its batch can still be the batch's own buffer: the size of the rows kept, not more.)
"""

from __future__ import annotations

import polars as pl


def stored(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` with its text columns as categories (holding none of a batch's text)."""
    return frame.with_columns(pl.col(pl.String).cast(pl.Categorical))


def as_text(frame: pl.DataFrame) -> pl.DataFrame:
    """A `stored` frame with its categories back as text."""
    return frame.with_columns(pl.col(pl.Categorical).cast(pl.String))
