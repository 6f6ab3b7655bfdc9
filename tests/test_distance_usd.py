"""Distance to liquidation of a multi-asset (USD) pool holding a leg settled in its own underlying coin.

The set-up of tests/test_compare_usd.py's multi-asset case: exchange ax on binance-usdm rules (no
fees) in multi-asset mode holds 1 BTC and 1,000 USDT and buys 500 contracts of the inverse perp
BTC/USD:BTC (100 USD each, settled in BTC) at 50,000; the dataset's bars are at 50,000 or 40,000.
binance-usdm counts BTC at a collateral ratio of 0.95 and USDT at 0.9999 (engine/venues/rules/data/
binance-usdm.json) and has no BTCUSD brackets, so the default ones (BLZUSDT's) apply: 5 % x notional - 625 for a
notional of 50,000 USD. The first warning threshold is 0.7 (run.warning_thresholds default).

Every leg is long BTC (the collateral too), so "all" and "BTC alone" are the same move: every price,
and with it BTC's USD price, x (1 - d). By hand, from a snapshot at price P (the entry E = 50,000):

* collateral 999.9 + 0.95 x P (1 - d);
* the inverse leg's PnL, 500 x 100 x (1/E - 1/p) BTC at BTC = p: 50,000 x (p / E - 1) USD with p =
  P (1 - d); its notional 500 x 100 / p BTC = 50,000 USD whatever p, so maintenance stays 1,875.

At P = 50,000: equity 48,499.9 - 97,500 d, liquidated at d = 46,624.9 / 97,500 = 0.47820..., warns
at 0.7 x equity = 1,875: d = (48,499.9 - 1,875 / 0.7) / 97,500. At P = 40,000: equity 999.9 + 38,000
(1 - d) - 10,000 - 40,000 d = 28,999.9 - 78,000 d: d = 27,124.9 / 78,000 = 0.34775...

On main the scan held BTC's price (the leg's scale) at the snapshot's while moving the leg's mark:
the BTC notional 50,000 / p grew without bound (maintenance with it, an overflow towards p = 0) and
the distance was 0.3600 at 50,000 (0.2510 at 40,000).
"""

from __future__ import annotations

import json
import warnings

import polars as pl
import pytest
from test_compare_usd import write_config

from xmargin.analysis.compare import compare

GRID_STEP = 1 / 2 ** 48  # the search's grid (xmargin.analysis.distance.ITERATIONS), cap 1 for a fall


def test_a_coin_settled_leg_in_a_usd_pool_moves_its_coin_price_with_its_mark(tmp_path):
    config = write_config(tmp_path, "binance-usdm", "multi-asset", "BTC = 1.0, USDT = 1000")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # main: "overflow encountered in multiply" moving the mark towards 0
        table, _ = compare(config, "multi-asset", out=tmp_path / "runs", compare_id="multi")
    path = table["path"][0]
    distance = pl.read_ipc(f"{path}/distance.arrow").filter(pl.col("exchange") == "ax")
    positions = pl.read_ipc(f"{path}/positions.arrow").filter(pl.col("exchange") == "ax")
    marks = positions.select("ts", "reason", "events_applied", "mark_price")
    rows = distance.join(marks, on=["ts", "reason", "events_applied"]).sort("ts", "reason", "underlying")
    assert set(rows["underlying"]) == {"BTC", "all"} and set(rows["unit"]) == {"cross:USD"}
    assert set(rows["mark_price"]) == {50_000.0, 40_000.0}
    for row in rows.iter_rows(named=True):
        if row["mark_price"] == 50_000:
            liquidation, warning = 46_624.9 / 97_500, (48_499.9 - 1_875 / 0.7) / 97_500  # main: 0.3600
        else:
            liquidation, warning = 27_124.9 / 78_000, (28_999.9 - 1_875 / 0.7) / 78_000  # main: 0.2510
        # the first grid point at or past the crossing
        assert liquidation <= row["liquidation_distance"] <= liquidation + 2 * GRID_STEP, row
        assert warning <= row["warning_distance"] <= warning + 2 * GRID_STEP, row
    # the tightest moment of the run (at 40,000) in compare's row and the run summary
    assert table["tightest_liquidation_distance"][0] == pytest.approx(27_124.9 / 78_000, abs=2 * GRID_STEP)
    summary = json.loads((tmp_path / "runs/multi" / path.split("/")[-1] / "summary.json").read_text())
    tightest = summary["exchanges"]["ax"]["tightest_moment"]
    assert tightest["liquidation_distance"] == pytest.approx(27_124.9 / 78_000, abs=2 * GRID_STEP)
