"""stress's first-liquidation figures are USD when the liquidated position is settled in a coin.

The hand-made dataset of tests/test_compare_usd.py (`coin_and_usdt`): ax trades the inverse perp
BTC/USD:BTC (100 USD contracts, settled in BTC) on binance-coinm rules without fees, cross, holding
1 BTC; bx sells 1 BTC of the linear perp against 20,000 USDT. `hold` buys 500 contracts (50,000 USD)
at the 01:00 open, 50,000. A lasting gap of -50 % on ax from 02:00 moves its 02:00 and 03:00 bars
from 40,000 to 20,000 (and 04:00, 05:00 from 50,000 to 25,000); bx is not shocked.

By hand: at the 02:00 open the pool's equity is 1 + 500 x 100 x (1/50,000 - 1/20,000) = 1 - 1.5 =
-0.5 BTC, below any maintenance: the position is liquidated there, at 20,000 (binance-coinm fills at
the bankruptcy price, which the gapped open is already past; the 0.5 BTC beyond the wallet goes to
the insurance fund, liquidation fee 0 here). Its realised PnL is -1.5 BTC, at BTC = 20,000 USD:
-30,000 USD. On main the first liquidation's loss was printed as -1.50 (BTC, as if money) while the
row's liquidation_loss, from the run summary, was 30,000 USD.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from test_compare_usd import write_config

from xmargin.analysis.stress import PriceGap, format_stress, stress, to_ns
from xmargin.cli.main import main

INVERSE = "ax:BTC/USD:BTC"
GAP = f"gap:{INVERSE}:-50%@2024-01-01T02:00"


def test_first_liquidation_of_a_coin_margined_pool_is_usd(tmp_path):
    shocks = {"gap": (PriceGap(to_ns("2024-01-01T02:00"), (INVERSE,), -0.5),)}
    table, reports = stress(write_config(tmp_path), shocks, out=tmp_path / "runs", stress_id="s")
    first = reports["gap"]["first_liquidation"]
    assert (first["exchange"], first["instrument"], first["positions_closed"]) == ("ax", INVERSE, 1)
    assert first["ts"].startswith("2024-01-01 02:00")
    assert first["loss"] == pytest.approx(-1.5 * 20_000, rel=1e-12)  # main: -1.5
    assert first["fee"] == 0.0
    assert first["assets"] == {"BTC": {"loss": pytest.approx(-1.5, rel=1e-12), "fee": 0.0}}
    row = table.row(1, named=True)
    # the row's figure is the run summary's (USD already): the same liquidation (printed as a positive loss)
    assert row["scenario"] == "gap" and row["liquidations"] == 1
    assert row["liquidation_loss"] == pytest.approx(-30_000, rel=1e-12)
    line = next(t for t in format_stress(table, reports).splitlines() if "first liquidation" in t)
    assert line.endswith("1 position(s) closed, loss -30,000.00 USD, fee 0.00 USD; in BTC: loss -1.5, fee 0)")


def test_stress_command_prints_and_writes_the_first_liquidation_in_usd(tmp_path):
    result = CliRunner().invoke(main, ["stress", str(write_config(tmp_path)), "--shock", GAP,
                                       "--out", str(tmp_path / "out"), "--id", "s1"])
    assert result.exit_code == 0, result.output
    assert "loss -30,000.00 USD, fee 0.00 USD; in BTC: loss -1.5, fee 0)" in result.output  # main: loss -1.50
    assert "money in USD" in result.output
    first = json.loads((tmp_path / "out/s1/stress.json").read_text())["shock"]["first_liquidation"]
    assert first["loss"] == pytest.approx(-30_000, rel=1e-12) and first["assets"]["BTC"]["loss"] == pytest.approx(-1.5)
