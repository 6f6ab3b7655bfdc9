"""The longest stretch of an underlying's |net| / gross above the one-legged ratio
(`xmargin.analysis.exposure.exposure_figures`): when several stretches are equally long the
summary names the first one, so that the same tables always give the same summary.json.

By hand: hourly samples t0..t39, |net| / gross 1.0 at the even hours and 0 at the odd ones, so
twenty stretches of one hour each (t0, t2, ..., t38); with t21 above too, t20..t22 is one stretch
of three hours, the longest."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import polars as pl

from xmargin.analysis.exposure import exposure_figures

T0 = datetime(2024, 10, 1, tzinfo=timezone.utc)


def series(above_hours) -> pl.DataFrame:
    ts = [T0 + timedelta(hours=h) for h in range(40)]
    net = [1000.0 if h in above_hours else 0.0 for h in range(40)]
    return pl.DataFrame({"ts": ts, "underlying": ["BTC"] * 40, "gross": [1000.0] * 40, "net": net},
                        schema={"ts": pl.Datetime("us", "UTC"), "underlying": pl.String, "gross": pl.Float64,
                                "net": pl.Float64})


def test_equally_long_stretches_name_the_first():
    tied = series(set(range(0, 40, 2)))
    for _ in range(10):  # the stretches were grouped in no particular order: any of the twenty came out
        figures = exposure_figures(tied, {"BTC"}, 0.5, 8.0)["BTC"]
        assert figures["hours_above_ratio"] == 1.0
        assert figures["above_ratio_from"] == str(T0)


def test_a_longer_stretch_wins_over_an_earlier_one():
    longer = series(set(range(0, 40, 2)) | {21})
    for _ in range(10):
        figures = exposure_figures(longer, {"BTC"}, 0.5, 8.0)["BTC"]
        assert figures["hours_above_ratio"] == 3.0  # t20, t21, t22 above: 3 h to t23
        assert figures["above_ratio_from"] == str(T0 + timedelta(hours=20))
