"""examples/portfolio_basis.toml: spot + perp + a dated future under portfolio margin, with the December
2024 quarterly expiring inside the run; it verifies, and on this hedged book portfolio margin's peak
initial margin is no higher than cross margin's (strictly lower under the Deribit-style grid, which
nets the hedge in the requirement). Run over a three-week window around the expiry to stay quick."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from xmargin.analysis.compare import compare
from xmargin.config import load_config
from xmargin.output.verify import verify_run
from xmargin.sim.runner import execute

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "portfolio_basis.toml"
WINDOW = {"start": "2024-12-16", "end": "2025-01-06"}


def _config(*sets):
    return load_config(EXAMPLE, sets=[f"run.dataset={ROOT / 'datasets' / 'sample-futures'}", *sets], **WINDOW)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return execute(_config(), out=tmp_path_factory.mktemp("portfolio"), run_id="basis")


def test_the_example_runs_in_portfolio_mode_settles_the_future_and_verifies(run):
    events = pl.read_ipc(run.path / "events.arrow")
    (expired,) = events.filter(pl.col("type") == "ContractExpired").iter_rows(named=True)
    assert expired["instrument"] == "binance:BTC/USDT:USDT-241227"
    assert expired["settlement_source"].startswith("index: mean of 1 bar close(s) in the 30 min before expiry")
    traded = set(events.filter(pl.col("type") == "OrderFilled")["instrument"].to_list())
    assert {"binance:BTC/USDT", "binance:BTC/USDT:USDT", "binance:BTC/USDT:USDT-241227",
            "binance:BTC/USDT:USDT-250328"} <= traded  # spot, perp, the expiring future and the next one
    equity = pl.read_ipc(run.path / "equity.arrow")
    assert set(equity["asset"]) == {"USD"}  # one account-level unit
    assert verify_run(run.path) == []
    assert run.summary["exchanges"]["binance"]["contracts_expired"] == 1


def _peaks(tmp_path, *sets):
    table, _ = compare(_config(*sets), "cross,portfolio", out=tmp_path, compare_id="c")
    rows = {r["setup"]: r for r in table.iter_rows(named=True)}
    assert rows["cross"]["liquidations"] == rows["portfolio"]["liquidations"] == 0
    return rows["cross"]["peak_initial_margin"], rows["portfolio"]["peak_initial_margin"]


def test_portfolio_peak_initial_margin_is_no_higher_than_cross_on_the_hedged_book(tmp_path):
    cross, portfolio = _peaks(tmp_path / "binance")
    # Binance PM keeps per-position initial margin (notional / leverage): the same peak as cross
    assert portfolio <= cross + 1e-6
    cross_grid, grid = _peaks(tmp_path / "grid", "exchanges.binance.portfolio_margin=deribit-grid")
    assert cross_grid == pytest.approx(cross)
    assert grid < 0.5 * cross  # the stress grid nets spot + perp against the short future
