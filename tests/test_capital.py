"""`xmargin capital`: the least starting collateral per exchange, proven by re-runs (datasets/sample).

examples/capital_hedge.toml cut to 2024-12-01 .. 12-25: long 20,000 of ETH on Binance, short 20,000
on Hyperliquid, 10x. ETH rallies to ~4,100 on Dec 6 (the short loses) and falls to ~3,100 on Dec 20
(the long loses): each silo needs its own collateral and each is bound by a liquidation. Tolerance
3 %: the proof run at 0.97 x the amounts must fail.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

import xmargin
from xmargin.analysis.capital import level_ratio
from xmargin.cli.main import main
from xmargin.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples/capital_hedge.toml"
WINDOW = {"start": "2024-12-01", "end": "2024-12-25"}


@pytest.fixture(scope="module")
def solved(tmp_path_factory):
    out = tmp_path_factory.mktemp("capital")
    config = xmargin.load_config(EXAMPLE, out=str(out), **WINDOW)
    return config, xmargin.capital(config, tolerance=0.03, capital_id="hedge")


def amounts_config(config, factor: float, amounts: dict, out):
    sets = [f"exchanges.{e}.collateral.{a}={v * factor!r}" for (e, a), v in amounts.items()]
    return xmargin.load_config(EXAMPLE, sets=sets, out=str(out), **WINDOW)


def test_capital_per_exchange_survives_and_097_liquidates(solved, tmp_path):
    config, result = solved
    rows = {r["exchange"]: r for r in result.table.iter_rows(named=True)}
    assert set(rows) == {"binance", "hyperliquid"}
    amounts = {(r["exchange"], r["asset"]): r["required_collateral"] for r in rows.values()}
    assert all(v > 0 for v in amounts.values())
    # each silo is bound by its own leg's liquidation: the long on Dec 20, the short on Dec 6
    assert rows["binance"]["binding_cause"].startswith("liquidation on binance at 2024-12-20")
    assert rows["hyperliquid"]["binding_cause"].startswith("liquidation on hyperliquid at 2024-12-06")
    # a user's own runs: at the amounts nothing is liquidated or rejected; at 0.97 x something is liquidated
    at = xmargin.run(amounts_config(config, 1.0, amounts, tmp_path), run_id="at")
    assert at.summary["total"]["liquidations"] == 0 and at.summary["total"]["rejected_orders"] == 0
    below = xmargin.run(amounts_config(config, 0.97, amounts, tmp_path), run_id="below")
    assert below.summary["total"]["liquidations"] >= 1
    # the amounts are the least: below one exchange's alone, that exchange fails
    for exchange, row in rows.items():
        proof = xmargin.open_run(result.folder / row["proof_fails_run_id"])
        liquidated = proof.events.filter(pl.col("type") == "PositionLiquidated").collect()
        assert liquidated["exchange"].to_list()[:1] == [exchange]
        assert row["unique"]


def test_capital_outputs(solved):
    _, result = solved
    saved = pl.read_ipc(result.folder / "capital.arrow")
    assert {"exchange", "asset", "required_collateral", "level", "binding_ts", "binding_cause",
            "proof_survives_run_id", "proof_fails_run_id"} <= set(saved.columns)
    report = json.loads((result.folder / "capital.json").read_text())
    assert report["proof"]["survives"]["survives"] is True and report["proof"]["fails"]["survives"] is False
    assert report["level"] == "liquidation" and report["never_liquidates"] is False
    for trial in report["trials"]:
        for run_id in trial["runs"]:
            assert (result.folder / run_id / "manifest.json").is_file()
    manifest = json.loads((result.folder / "proof-survives/manifest.json").read_text())
    assert manifest["capital"]["trial"] == "proof-survives"


def test_a_strategy_that_sizes_by_its_collateral_never_liquidates(tmp_path):
    # funding arbitrage caps each leg by the collateral it has: with none it trades nothing
    result = CliRunner().invoke(main, ["capital", str(ROOT / "examples/funding_arbitrage.toml"), "--out",
                                       str(tmp_path), "--id", "arb", "--quiet", "--no-validate",
                                       "--start", "2024-10-01", "--end", "2024-10-15"])
    assert result.exit_code == 0, result.output
    assert "never liquidates at any collateral" in result.output
    report = json.loads((tmp_path / "arb/capital.json").read_text())
    assert report["never_liquidates"] is True
    labels = [t["label"] for t in report["trials"]]
    assert labels[:2] == ["trial-01-ample-x10", "trial-02-zero"] and len(labels) == 7  # + 1 .. 1/16 x configured
    assert all(t["survives"] for t in report["trials"])
    assert sum(t["fills"] for t in report["trials"]) > 0  # it does trade at some of them


def test_level_and_tolerance_are_checked():
    assert level_ratio("liquidation", (0.7, 0.9)) == 1.0
    assert level_ratio("warning", (0.7, 0.9)) == 0.7
    assert level_ratio("0.8", ()) == 0.8
    for bad in ("0", "1.5", "often"):
        with pytest.raises(ConfigError, match="level"):
            level_ratio(bad, (0.7,))
    with pytest.raises(ConfigError, match="tolerance"):
        xmargin.capital(xmargin.load_config(EXAMPLE), tolerance=0.7)


def test_stress_raises_the_capital_needed(tmp_path):
    # the Binance pair of tests/test_stress.py (long ETH / short BTC, 20,000 each at 10x, 2024-10-04..14):
    # the history alone needs about the initial margin of the two orders, 4,000 plus taker fees (the
    # pair never comes near maintenance); a 25 % ETH gap at 2024-10-08 costs the long 5,000
    from test_stress import AT, ETH, write_config
    from xmargin.analysis.stress import PriceGap, to_ns

    config = write_config(tmp_path, "cross", collateral=4500)
    shocked = xmargin.capital(config, tolerance=0.05, out=tmp_path / "out", capital_id="gap",
                              stress={"eth-gap": (PriceGap(to_ns(AT), (ETH,), -0.25),)})
    (row,) = shocked.table.iter_rows(named=True)
    assert row["required_collateral"] > 5000 > 1.2 * 4000
    assert shocked.report["scenarios"] == ["history", "eth-gap"]
    assert row["binding_cause"].startswith("liquidation on binance at 2024-10-08")
    assert row["binding_cause"].endswith("[eth-gap]")  # the scenario that binds is named
    # the surviving proof ran every scenario; each is a run folder
    assert shocked.report["proof"]["survives"]["runs"] == ["proof-survives", "proof-survives-eth-gap"]
