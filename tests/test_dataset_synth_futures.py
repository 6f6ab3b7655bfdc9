"""`xmargin data synth --futures-from`: quarterlies derived from the real spot of datasets/sample."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from xmargin.cli.main import main
from xmargin.dataset.manifest import read_manifest
from xmargin.dataset.synth_futures import FuturesParameters, last_friday, quarterly_expiries, synthesize_futures
from xmargin.dataset.validate import validate_dataset
from xmargin.errors import DatasetError

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "datasets" / "sample"
PARAMS = FuturesParameters(spot="binance:BTC/USDT", start="2024-12-01", days=40)
YEAR_NS = 365 * 86_400e9


@pytest.fixture(scope="module")
def derived(tmp_path_factory):
    out = tmp_path_factory.mktemp("futures") / "derived"
    rows = synthesize_futures(SAMPLE, out, PARAMS)
    return out, rows


def test_quarterly_calendar_is_the_last_friday_at_eight():
    assert last_friday(2024, 12).isoformat() == "2024-12-27" and last_friday(2025, 3).isoformat() == "2025-03-28"
    expiries = quarterly_expiries(datetime(2024, 12, 1, tzinfo=timezone.utc), datetime(2025, 1, 10, tzinfo=timezone.utc))
    assert datetime(2024, 12, 27, 8, tzinfo=timezone.utc) in expiries
    assert all(e.weekday() == 4 and e.hour == 8 and e.month in (3, 6, 9, 12) for e in expiries)


def test_manifest_says_synthetic_and_keeps_the_real_attribution(derived):
    out, rows = derived
    manifest = read_manifest(out)
    assert manifest.kind == "synthetic" and "SYNTHETIC" in manifest.description
    futures = [i for i in manifest.instruments if i.market == "future"]
    # trading between 2024-12-01 and 2025-01-10: Dec 24 and Mar 25, and Jun 25 once Dec 24 delivers
    assert [i.native_id for i in futures] == ["BTCUSDT_241227", "BTCUSDT_250328", "BTCUSDT_250627"]
    assert {i.key for i in manifest.instruments if i.market != "future"} == {"binance:BTC/USDT",
                                                                          "binance:BTC/USDT:USDT"}
    assert read_manifest(SAMPLE).sources[0] in manifest.sources  # the copied real data keeps its source
    assert "basis_apr=0.08" in manifest.sources[-1].notes
    assert validate_dataset(out).ok
    assert rows["index"] == pl.read_parquet(out / "index" / "data.parquet").height


def test_same_parameters_give_the_same_bytes(derived, tmp_path):
    out, _ = derived
    again = tmp_path / "again"
    synthesize_futures(SAMPLE, again, PARAMS)
    for path in sorted(out.rglob("*.parquet")) + [out / "dataset.toml"]:
        twin = again / path.relative_to(out)
        if path.name == "dataset.toml":  # the name is the folder's
            assert path.read_text().replace('"derived"', '"again"') == twin.read_text()
        else:
            assert path.read_bytes() == twin.read_bytes(), path


def _series(out, kind, symbol):
    frame = pl.read_parquet(out / kind / "data.parquet").filter(pl.col("symbol") == symbol)
    return frame.select(pl.col("ts").dt.epoch("ns").alias("ns"), "open", "high", "low", "close")


def test_basis_model_shared_premium_rate_converging_at_expiry(derived):
    out, _ = derived
    spot = _series(out, "bars", "BTC/USDT").rename({"close": "spot"}).select("ns", "spot")
    december = _series(out, "mark", "BTC/USDT:USDT-241227").join(spot, on="ns")
    march = _series(out, "mark", "BTC/USDT:USDT-250328").join(spot, on="ns")
    expiry_dec, expiry_mar = (datetime(2024, 12, 27, 8, tzinfo=timezone.utc).timestamp() * 1e9,
                              datetime(2025, 3, 28, 8, tzinfo=timezone.utc).timestamp() * 1e9)
    hour = 3_600e9
    # the last December bar closes at the expiry: its mark equals the spot close
    assert december["ns"][-1] + hour == expiry_dec
    assert december["close"][-1] == pytest.approx(december["spot"][-1], rel=1e-12)
    # one annualised basis b for both contracts: log(F / S) / tau is the same at every common bar
    both = december.join(march, on=["ns", "spot"], suffix="_mar").head(500)
    tau_dec = (expiry_dec - (both["ns"].to_numpy() + hour)) / YEAR_NS
    tau_mar = (expiry_mar - (both["ns"].to_numpy() + hour)) / YEAR_NS
    b_dec = np.log(both["close"].to_numpy() / both["spot"].to_numpy()) / tau_dec
    b_mar = np.log(both["close_mar"].to_numpy() / both["spot"].to_numpy()) / tau_mar
    np.testing.assert_allclose(b_dec, b_mar, rtol=1e-9)
    assert 0.0 < float(np.mean(b_dec)) < 0.2  # around the 8 %/yr mean


def test_index_is_the_real_spot_and_last_stays_near_mark(derived):
    out, _ = derived
    spot = _series(out, "bars", "BTC/USDT")
    index = _series(out, "index", "BTC/USDT:USDT-241227")
    joined = index.join(spot, on="ns", suffix="_spot")
    assert joined.height == index.height and (joined["close"] == joined["close_spot"]).all()
    last = _series(out, "bars", "BTC/USDT:USDT-250328").join(_series(out, "mark", "BTC/USDT:USDT-250328"),
                                                             on="ns", suffix="_mark")
    assert (last["close"] / last["close_mark"] - 1).abs().max() < 1e-3  # 1 bp noise
    assert (last["high"] >= last[["open", "close"]].max_horizontal()).all()


@pytest.mark.parametrize("spot, message", [("binance:DOGE/USDT", "not declared"),
                                           ("binance:BTC/USDT:USDT", "not a spot market")])
def test_bad_spot_is_named(spot, message, tmp_path):
    with pytest.raises(DatasetError, match=message):
        synthesize_futures(SAMPLE, tmp_path / "x", FuturesParameters(spot=spot, start="2024-12-01", days=5))


def test_cli_needs_spot_and_reports_an_empty_range(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["data", "synth", str(tmp_path / "a"), "--futures-from", str(SAMPLE)])
    assert result.exit_code != 0 and "--futures-from needs --spot" in result.output
    result = runner.invoke(main, ["data", "synth", str(tmp_path / "b"), "--futures-from", str(SAMPLE), "--spot",
                                  "binance:BTC/USDT", "--start", "2023-01-01", "--days", "5"])
    assert result.exit_code != 0 and "no bars of binance:BTC/USDT" in result.output
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("change, message", [({"basis_apr": float("nan")}, "synth --basis-apr nan"),
                                             ({"basis_volatility": -1.0}, "synth --basis-volatility -1.0")])
def test_a_basis_that_is_no_number_is_refused_before_writing(tmp_path, change, message):
    """A nan basis wrote a dataset whose every futures price was nan."""
    import attrs

    with pytest.raises(DatasetError, match=message):
        synthesize_futures(SAMPLE, tmp_path / "d", attrs.evolve(PARAMS, **change))
    assert not (tmp_path / "d").exists()
