"""The scan's quiet bound reads each stretch's extreme marks; `PlannedExtremes` computes those of the
stretches a run will scan in one pass. It must give exactly `stretch_extremes` for every stretch,
planned or not, nan bars included."""

from __future__ import annotations

import math
import types

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from xmargin.margin.risk import PlannedExtremes, stretch_extremes


def _feed(rows: int, columns: int, seed: int, nans: int):
    rng = np.random.default_rng(seed)
    mid = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (rows, columns)), axis=0))
    high, low = mid * 1.002, mid * 0.998
    for _ in range(nans):  # missing bars (before an instrument's first bar, gaps)
        r, c = rng.integers(rows), rng.integers(columns)
        high[r, c] = low[r, c] = math.nan
    return types.SimpleNamespace(ts=np.arange(rows), mark_high=high, mark_low=low)


def _same(a, b) -> bool:
    return all((x == y) or (math.isnan(x) and math.isnan(y)) for x, y in zip(a, b)) and len(a) == len(b)


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 300), columns=st.integers(1, 5), seed=st.integers(0, 10_000), nans=st.integers(0, 5),
       boundaries=st.lists(st.integers(-3, 310), max_size=12), asked=st.lists(st.tuples(st.integers(0, 299),
                                                                                         st.integers(1, 60)),
                                                                               max_size=8))
def test_planned_extremes_equal_the_direct_ones(rows, columns, seed, nans, boundaries, asked):
    feed = _feed(rows, columns, seed, nans)
    planned = PlannedExtremes(feed, [0, *boundaries])
    starts = sorted({b for b in [0, *boundaries] if 0 <= b < rows})
    segments = list(zip(starts, [*starts[1:], rows]))
    others = [(start, min(start + length, rows)) for start, length in asked if start < rows]
    for start, stop in segments + others:
        highs, lows = planned(start, stop)
        direct_highs, direct_lows = stretch_extremes(feed, start, stop)
        assert _same(highs, direct_highs) and _same(lows, direct_lows), (start, stop)


def test_planned_extremes_are_used_for_long_stretches_and_skipped_for_short_ones():
    feed = _feed(600, 3, 7, 4)
    hourly = PlannedExtremes(feed, range(0, 600, 60))
    assert _same(hourly(60, 120)[0], stretch_extremes(feed, 60, 120)[0])
    assert hourly._starts == list(range(0, 600, 60))  # planned: one reduceat pass
    every_bar = PlannedExtremes(feed, range(600))
    assert _same(every_bar(5, 6)[1], stretch_extremes(feed, 5, 6)[1])
    assert every_bar._starts == []  # a stretch per bar: nothing planned, nothing copied
