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


def test_every_underlying_is_measured_on_its_own_samples():
    """Two underlyings at once, hourly t0..t5 (rows given ETH first): a stretch never runs from one
    underlying into the next, and a peak shared by several moments is the first.

    BTC, gross 100: net 80, 10, 10, 90, -90, 90 -> share 0.8, 0.1, 0.1, 0.9, 0.9, 0.9; above 0.5:
    t0 (1 h, to t1) and t3-t5 (1 h + 1 h + 0 at its last sample = 2 h, the longest; ETH's samples
    do not follow BTC's); peak |net| 90 first at t3 (+90, not t4's -90), peak share 0.9 first at t3.
    ETH: net -100, -100 then flat (gross 0): share 1, 1, 0, ...: t0-t1, 2 h; peak |net| 100 at t0."""
    hours = range(6)
    frame = pl.DataFrame({
        "ts": [T0 + timedelta(hours=h) for h in hours] * 2,
        "underlying": ["ETH"] * 6 + ["BTC"] * 6,
        "gross": [100.0, 100.0, 0.0, 0.0, 0.0, 0.0] + [100.0] * 6,
        "net": [-100.0, -100.0, 0.0, 0.0, 0.0, 0.0] + [80.0, 10.0, 10.0, 90.0, -90.0, 90.0],
    }, schema={"ts": pl.Datetime("us", "UTC"), "underlying": pl.String, "gross": pl.Float64, "net": pl.Float64})
    figures = exposure_figures(frame, {"BTC"}, 0.5, 1.5)
    at = lambda h: str(T0 + timedelta(hours=h))  # noqa: E731
    assert list(figures) == ["BTC", "ETH"]
    assert figures["BTC"] == {"peak_gross": 100.0, "net_at_peak": 90.0, "peak_net_ts": at(3), "peak_net_share": 0.9,
                              "peak_net_share_ts": at(3), "final_net": 90.0, "final_gross": 100.0, "hedged": True,
                              "hours_above_ratio": 2.0, "above_ratio_from": at(3), "one_legged": True}
    assert figures["ETH"] == {"peak_gross": 100.0, "net_at_peak": -100.0, "peak_net_ts": at(0), "peak_net_share": 1.0,
                              "peak_net_share_ts": at(0), "final_net": 0.0, "final_gross": 0.0, "hedged": False,
                              "hours_above_ratio": 2.0, "above_ratio_from": at(0), "one_legged": False}
