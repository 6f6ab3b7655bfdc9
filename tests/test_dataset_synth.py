"""synthesize / `xmargin data synth`: deterministic, chunked, valid."""

from __future__ import annotations

import hashlib

import polars as pl
import pytest
from click.testing import CliRunner

from xmargin.cli.main import main
from xmargin.dataset.manifest import read_manifest
from xmargin.dataset.synth import SynthParameters, synthesize
from xmargin.dataset.validate import validate_dataset
from xmargin.errors import DatasetError


def digests(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_different_seed_differs(tmp_path):
    parameters = SynthParameters(days=5, timeframe="5m", seed=11, chunk_days=2)
    synthesize(tmp_path / "a" / "synthetic", parameters)
    synthesize(tmp_path / "b" / "synthetic", parameters)
    first, second = digests(tmp_path / "a" / "synthetic"), digests(tmp_path / "b" / "synthetic")
    assert first == second and len(first) == 1 + 3 * 3  # manifest + 3 chunks x (bars, mark, funding)
    synthesize(tmp_path / "c" / "synthetic", SynthParameters(days=5, timeframe="5m", seed=12, chunk_days=2))
    third = digests(tmp_path / "c" / "synthetic")
    assert all(third[name] != first[name] for name in first if name.endswith(".parquet"))


def test_cli_synth_validates_and_declares(tmp_path):
    out = tmp_path / "s"
    result = CliRunner().invoke(main, ["data", "synth", str(out), "--days", "3", "--timeframe", "1h", "--seed", "3",
                                       "--exchanges", "bybit,hyperliquid", "--assets", "BTC,ETH"])
    assert result.exit_code == 0, result.output
    manifest = read_manifest(out)
    assert manifest.kind == "synthetic" and "seed=3" in manifest.sources[0].notes
    perps = {i.key: i for i in manifest.instruments if i.market == "perp"}
    assert perps["bybit:BTC/USDT:USDT"].funding_interval_hours == 8
    assert perps["hyperliquid:ETH/USDC:USDC"].funding_interval_hours == 1
    assert {i.key for i in manifest.instruments if i.market == "spot"} == {"bybit:BTC/USDT", "bybit:ETH/USDT"}
    assert perps["bybit:BTC/USDT:USDT"].lot_size == 0.001 and perps["bybit:ETH/USDT:USDT"].lot_size == 0.01
    assert CliRunner().invoke(main, ["data", "validate", str(out)]).exit_code == 0
    funding = pl.scan_parquet(str(out / "funding" / "*.parquet")).collect()
    assert funding.filter(pl.col("exchange") == "hyperliquid").height == 3 * 24 * 2
    assert funding.filter(pl.col("exchange") == "bybit").height == 3 * 3 * 2
    again = CliRunner().invoke(main, ["data", "synth", str(out), "--days", "1"])
    assert again.exit_code == 2 and "--force" in again.output


def test_prices_carry_across_chunks_and_stay_plausible(tmp_path):
    out = synthesize(tmp_path / "s", SynthParameters(days=4, timeframe="1m", chunk_days=1)).path
    bars = pl.scan_parquet(str(out / "bars" / "*.parquet")).filter(pl.col("symbol") == "BTC/USDT").collect()
    jumps = bars.select((pl.col("open") / pl.col("close").shift(1) - 1).abs().max()).item()
    assert jumps < 1e-9  # spot open = previous close, also across chunk files
    basis = (pl.scan_parquet(str(out / "bars" / "*.parquet")).filter(pl.col("market") == "perp")
             .join(pl.scan_parquet(str(out / "bars" / "*.parquet")).filter(pl.col("market") == "spot")
                   .select("ts", "close", base=pl.col("symbol").str.split("/").list.first()),
                   left_on=["ts", pl.col("symbol").str.split("/").list.first()], right_on=["ts", "base"])
             .select((pl.col("close") / pl.col("close_right") - 1).abs().max()).collect().item())
    assert 0 < basis < 0.01


def test_sixty_days_of_minutes_in_chunks(tmp_path):
    """Sixty days of minutes are written chunk by chunk and validate clean (speed is measured in bench/)."""
    result = synthesize(tmp_path / "big", SynthParameters(days=60, timeframe="1m"))
    assert result.rows_by_kind["bars"] == 60 * 1440 * 9
    assert len(list((result.path / "bars").glob("*.parquet"))) > 1
    assert validate_dataset(result.path).ok


def test_bad_parameters():
    with pytest.raises(DatasetError, match="timeframe"):
        synthesize("/nonexistent/x", SynthParameters(timeframe="7m"))


@pytest.mark.parametrize("parameters, message", [
    (SynthParameters(assets=("BTC", "BTC")), r"synth --assets: \['BTC'\] given more than once"),
    (SynthParameters(exchanges=("binance", "binance")), r"synth --exchanges: \['binance'\] given more than once"),
])
def test_a_name_given_twice_is_refused_before_writing(tmp_path, parameters, message):
    """Each instrument would be declared twice: the written dataset did not validate (exit 0 all the same)."""
    with pytest.raises(DatasetError, match=message):
        synthesize(tmp_path / "d", parameters)
    assert not (tmp_path / "d").exists()
