"""The summary `xmargin run` prints stays short on a wide book: a warning shared by more than five
instruments is one line naming three (summary.json keeps every one), and only the most one-sided underlyings'
exposure lines are printed. A 2 x 150 perps book printed 95 KB: 300 'perp without a mark series'
lines and 150 exposure lines."""

from __future__ import annotations

from xmargin.analysis.summary import EXPOSURE_LINES, format_summary

NO_MARK = ("dataset: warning: dataset.toml, {key}: perp without a mark series: runs value it, margin it and "
           "liquidate it at the last price")


def summary(warnings, exposure) -> dict:
    return {"run_id": "r", "start": "2024-01-01 00:00", "end": "2024-01-02 00:00", "bars": 10, "events": 2,
            "run_seconds": 0.1, "exchanges": {}, "total": {"pnl": 0.0, "fees": 0.0, "funding": 0.0, "liquidations": 0},
            "exposure": exposure, "rejections": [], "warnings": warnings, "input_warnings": warnings[:-1]}


def exposure_row(share: float) -> dict:
    return {"peak_gross": 1000.0, "net_at_peak": share * 1000, "peak_net_ts": "2024-01-01 05:00:00+00:00",
            "peak_net_share": share, "hedged": True}


def test_a_warning_shared_by_many_instruments_is_one_line_and_the_most_one_sided_exposures_are_shown():
    keys = ["a:BTC/USDT:USDT", "a:ETH/USDT:USDT", "b:BTC/USDT:USDT", "b:ETH/USDT:USDT", "b:SOL/USDT:USDT-250328",
            "b:XRP/USDT:USDT"]
    other = "one-legged hedge: BTC net exposure was above 50% of gross for 9 h from 2024-01-01 (peak net 900 USD)"
    warnings = [NO_MARK.format(key=key) for key in keys] + ["exchanges.a.collateral holds ['BTC']", other]
    underlyings = {f"X{n:02d}": exposure_row(n / 100) for n in range(EXPOSURE_LINES + 5)}
    text = format_summary(summary(warnings, underlyings), "runs/r")
    shared = [line for line in text.splitlines() if "perp without a mark series" in line]
    assert shared == ["  input warning for 6 instruments (a:BTC/USDT:USDT, a:ETH/USDT:USDT, b:BTC/USDT:USDT and 3 "
                      "more; each in summary.json, warnings): dataset: warning: dataset.toml, {instrument}: perp "
                      "without a mark series: runs value it, margin it and liquidate it at the last price"]
    assert "  input warning: exchanges.a.collateral holds ['BTC']" in text  # names no instrument: as it is
    assert f"  WARNING: {other}" in text
    shown = [line.split(":")[0].split()[-1] for line in text.splitlines() if line.startswith("  exposure X")]
    # the ten most one-sided (X05..X14), in the summary's order; the rest counted
    assert shown == [f"X{n:02d}" for n in range(5, 5 + EXPOSURE_LINES)]
    assert "  exposure: 5 more underlyings, less one-sided (every one in summary.json, exposure)" in text


def test_a_few_warnings_and_underlyings_are_printed_each_as_before():
    keys = ("a:BTC/USDT:USDT", "a:ETH/USDT:USDT", "b:BTC/USDT:USDT", "b:ETH/USDT:USDT", "c:BTC/USDC:USDC")
    warnings = [NO_MARK.format(key=key) for key in keys] + ["a one-legged hedge"]
    text = format_summary(summary(warnings, {"BTC": exposure_row(0.5)}), "runs/r")
    assert all(f"  input warning: {warning}" in text for warning in warnings[:5])  # five: each in full
    assert "  WARNING: a one-legged hedge" in text and "instruments (" not in text
    assert "exposure BTC: peak gross 1,000, net at peak |net| 500" in text and "more underlyings" not in text
