"""compare's money columns are USD when a coin-margined exchange sits next to a USDT one.

A hand-made hourly dataset (`coin_and_usdt`): exchange ax lists an inverse perp BTC/USD:BTC (100 USD
contracts, settled in BTC), exchange bx a linear perp BTC/USDT:USDT. Both trade at one price per bar
(open = high = low = close = mark): bars 00:00 and 01:00 at 50,000, 02:00 and 03:00 at 40,000, 04:00
and 05:00 at 50,000; a bar's sample is at its close, so the samples 01:00 .. 06:00 see 50k, 50k, 40k,
40k, 50k, 50k. The rule sets are binance-coinm and binance-usdm with fees set to 0; their first
brackets are 0.4 % maintenance (engine/venues/rules/data/binance-coinm.json BTCUSD 0-10 BTC,
binance-usdm.json BTCUSDT 0-50,000 USDT). `hold` buys 500 contracts (50,000 USD) on ax and sells
1 BTC (50,000 USDT) on bx at the 01:00 open (50,000); ax holds 1 BTC, bx 20,000 USDT.

By hand, ax's BTC pool: at 50,000 the notional is 1 BTC, maintenance 0.004 BTC, PnL 0; at 40,000
the notional is 50,000 / 40,000 = 1.25 BTC, maintenance 0.005 BTC, PnL 500 x 100 x (1/50,000 -
1/40,000) = -0.25 BTC: need 0.255 BTC. bx's USDT pool needs most at 50,000: 0.4 % x 50,000 = 200
(at 40,000 it gains 10,000). On main these were added at par: 0.255 + 200 = 200.255 "USD".
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from xmargin.analysis.compare import compare
from xmargin.cli.main import main
from xmargin.dataset.manifest import DatasetManifest, write_manifest
from xmargin.venues.instruments import Instrument

ROOT = Path(__file__).resolve().parents[1]
CLOSES = [50_000.0, 50_000.0, 40_000.0, 40_000.0, 50_000.0, 50_000.0]  # hourly bars from 2024-01-01 00:00


def coin_and_usdt(folder: Path) -> Path:
    """The dataset of the module docstring in `folder`."""
    inverse = Instrument(exchange="ax", symbol="BTC/USD:BTC", market="perp", base="BTC", quote="USD", settle="BTC",
                         contract="inverse", contract_size=100.0, funding_interval_hours=8.0, lot_size=1.0)
    linear = Instrument(exchange="bx", symbol="BTC/USDT:USDT", market="perp", base="BTC", quote="USDT",
                        settle="USDT", funding_interval_hours=8.0, lot_size=0.001)
    folder.mkdir(parents=True)
    write_manifest(folder, DatasetManifest(name="coin-and-usdt", description="compare in USD (test)", kind="synthetic",
                                           instruments=(inverse, linear)))
    ts = [datetime(2024, 1, 1, hour, tzinfo=timezone.utc) for hour in range(len(CLOSES))]
    for instrument in (inverse, linear):
        prices = pl.DataFrame({"ts": ts, "exchange": instrument.exchange, "symbol": instrument.symbol,
                               "market": "perp", "timeframe": "1h", "open": CLOSES, "high": CLOSES, "low": CLOSES,
                               "close": CLOSES}, schema_overrides={"ts": pl.Datetime("ns", "UTC")})
        stem = instrument.symbol.replace("/", "_").replace(":", "_")
        for kind, table in (("bars", prices.with_columns(volume=pl.lit(1e9))), ("mark", prices)):
            path = folder / kind / instrument.exchange / "perp" / f"{stem}-1h.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            table.write_parquet(path)
    return folder


def no_fee_rules(folder: Path, base: str) -> Path:
    data = json.loads((ROOT / f"engine/venues/rules/data/{base}.json").read_text())
    data["name"] = f"{base}-no-fees"
    data["fees"] = {"maker": 0.0, "taker": 0.0, "spot": {"maker": 0.0, "taker": 0.0}}
    path = folder / f"{base}-no-fees.json"
    path.write_text(json.dumps(data))
    return path


def write_config(folder: Path, ax: str = "binance-coinm", ax_mode: str = "cross",
                 ax_collateral: str = "BTC = 1.0") -> Path:
    """ax on rule set `ax` (no fees) in `ax_mode` holding `ax_collateral`, bx cross with 20,000 USDT."""
    path = folder / "coin.toml"
    path.write_text(f"""
[run]
dataset = "{coin_and_usdt(folder / 'data')}"
strategy = "hold"
slippage_bps = 0

[strategy.params]
positions = {{ "ax:BTC/USD:BTC" = 50000, "bx:BTC/USDT:USDT" = -50000 }}

[exchanges.ax]
rules = "{no_fee_rules(folder, ax)}"
margin_mode = "{ax_mode}"
collateral = {{ {ax_collateral} }}
leverage = 10
allow_default_brackets = true  # binance-usdm lists no BTCUSD brackets (the multi-asset test)

[exchanges.bx]
rules = "{no_fee_rules(folder, 'binance-usdm')}"
margin_mode = "cross"
collateral = {{ USDT = 20000 }}
leverage = 10
""")
    return path


def test_min_collateral_and_capital_efficiency_of_a_coin_margined_exchange_are_usd(tmp_path):
    table, _ = compare(write_config(tmp_path), "cross,isolated", out=tmp_path / "runs", compare_id="usd")
    cross, isolated = table.iter_rows(named=True)
    # cross: 0.255 BTC at the start's price (50,000) + 200 USDT (main: 200.255; at the price of the moment
    # of the need, 40,000, it would be 10,400: less than the BTC to deposit at the start costs)
    assert cross["min_collateral"] == pytest.approx(0.255 * 50_000 + 200, rel=1e-12)
    # per sample, gross / wallet in USD: 01:00 nothing held (0); at 50,000 (50,000 + 50,000) / (50,000 +
    # 20,000) = 10/7 (three samples); at 40,000 (1.25 x 40,000 + 40,000) / (40,000 + 20,000) = 1.5 (two)
    assert cross["capital_efficiency"] == pytest.approx((3 * 10 / 7 + 2 * 1.5) / 6, rel=1e-12)  # main: 1.9166
    # isolated: ax's 0.1 BTC margin (10x) is lost at the 40,000 open, where the position is liquidated;
    # before that it needed 0.004 BTC (x 50,000 = 200), bx's short 200: 400 (main: 200.004)
    assert isolated["liquidations_ax"] == 1 and isolated["min_collateral"] == pytest.approx(400, rel=1e-12)
    # after it, the wallet holds 0.9 BTC: 40,000 / (36,000 + 20,000) at 40,000, 50,000 / (45,000 + 20,000) at 50,000
    assert isolated["capital_efficiency"] == pytest.approx((10 / 7 + 2 * 40 / 56 + 2 * 50 / 65) / 6, rel=1e-12)


def test_a_multi_asset_pool_counts_a_coin_settled_leg_at_its_price(tmp_path):
    """ax on binance-usdm in multi-asset mode (1 BTC + 1,000 USDT) trading the inverse perp: one USD
    pool. Its maintenance is USD already (default brackets, BLZUSDT's: 5 % x 50,000 - 625 = 1,875 for
    500 contracts of 100 USD); its PnL of -0.25 BTC at 40,000 counts -10,000 USD."""
    config = write_config(tmp_path, "binance-usdm", "multi-asset", "BTC = 1.0, USDT = 1000")
    table, _ = compare(config, "multi-asset", out=tmp_path / "runs", compare_id="multi")
    multi = table.row(0, named=True)
    # 11,875 + bx's 200 (main: 1,875 + 0.25 + 200 = 2,075.25, BTC PnL and USD maintenance in one sum)
    assert multi["min_collateral"] == pytest.approx(1_875 + 10_000 + 200, rel=1e-12)
    # the pool's wallet is USD (1 BTC at the sample's price + 1,000): 100,000 / 71,000 at 50,000, 90,000 /
    # 61,000 at 40,000 (main: 0.5707, the 1 BTC notional at par)
    assert multi["capital_efficiency"] == pytest.approx((3 * 100 / 71 + 2 * 90 / 61) / 6, rel=1e-12)


def test_a_portfolio_account_counts_in_capital_efficiency(tmp_path):
    """bx margined as a whole (portfolio) holds the same book as in cross: the same gross / wallet
    (its notional was left out on main: 1 BTC / 20,001 per sample, 4.6e-05)."""
    table, _ = compare(write_config(tmp_path), "cross;bx=portfolio", out=tmp_path / "runs", compare_id="pm")
    cross, portfolio = table["capital_efficiency"].to_list()
    assert portfolio == pytest.approx((3 * 10 / 7 + 2 * 1.5) / 6, rel=1e-12) and portfolio == cross


def test_compare_command_writes_usd_figures(tmp_path):
    config = write_config(tmp_path)
    result = CliRunner().invoke(main, ["compare", str(config), "--modes", "cross", "--out", str(tmp_path / "out"),
                                       "--id", "c1", "--quiet"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads((tmp_path / "out/c1/comparison.json").read_text())["rows"]
    assert row["min_collateral"] == pytest.approx(12_950, rel=1e-12)
    assert pl.read_ipc(tmp_path / "out/c1/comparison.arrow")["min_collateral"].item() == row["min_collateral"]
    header, line = result.output.splitlines()[1:3]  # the legend, then the book's figures
    assert header.split()[-1] == "gross/coll" and line.split()[-1] == f"{51 / 42:.2f}"  # 1.21 (main: 1.92)
