"""The shipped sample dataset is real, attributed and validates clean."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from xmargin.cli.main import main
from xmargin.dataset.info import dataset_info
from xmargin.dataset.manifest import read_manifest
from xmargin.dataset.validate import validate_dataset

SAMPLE = Path(__file__).resolve().parent.parent / "datasets" / "sample"


def test_sample_validates_clean():
    report = validate_dataset(SAMPLE)
    assert report.ok, report.format()
    result = CliRunner().invoke(main, ["data", "validate", str(SAMPLE)])
    assert result.exit_code == 0, result.output
    assert "9 instruments" in result.output


def test_sample_manifest_and_size():
    manifest = read_manifest(SAMPLE)
    assert manifest.kind == "real"
    assert {s.repository for s in manifest.sources} == {"https://github.com/Roshan7869/algotrading",
                                                         "https://github.com/hippocritical/freqtrade_hyperliquid_download-data"}
    assert all(s.commit and s.licence.startswith("GPL-3.0") and s.path for s in manifest.sources)
    assert manifest.instrument("hyperliquid:BTC/USDC:USDC").funding_interval_hours == 1
    assert manifest.instrument("binance:BTC/USDT:USDT").lot_size == 0.001
    size = sum(p.stat().st_size for p in SAMPLE.rglob("*") if p.is_file())
    assert size < 10_000_000
    readme = (SAMPLE / "README.md").read_text()
    assert "db07ceb71ac1" in readme and "1ca28f43b845" in readme and "GPL-3.0" in readme


def test_sample_info_table():
    info = dataset_info(SAMPLE)
    assert set(info["kind"]) == {"bars", "mark", "funding"}
    hyperliquid = info.filter((info["kind"] == "funding") & (info["instrument"] == "hyperliquid:BTC/USDC:USDC"))
    assert hyperliquid["spacings"][0].startswith("1h×")
    result = CliRunner().invoke(main, ["data", "info", str(SAMPLE)])
    assert result.exit_code == 0 and "binance:SOL/USDT:USDT" in result.output and "8h×" in result.output
