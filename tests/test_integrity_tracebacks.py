"""Issue 12, tracebacks: inputs that used to crash now end in a clear message (file / row / column
or key, the problem and the fix), the documented exit status, and nothing finished-looking."""

from __future__ import annotations

import io
import zipfile

import polars as pl
import pytest

from helpers_integrity import BTC, cli, config, dataset, finished, finished_runs, rewrite

PROBE = '''from xmargin.sim.strategy import Wakes


class Probe:
    """Reads every account's margin at every hour."""

    def __init__(self, params):
        pass

    def wakes(self):
        return Wakes(every="1h")

    def on_wake(self, view, wake):
        for exchange in view.exchanges:
            view.margin(exchange)
            empty = view.margin(exchange, "USDT")  # an asset with no balance and no position there
            assert (empty.asset, empty.wallet_balance, empty.margin_ratio) == ("USDT", 0.0, 0.0)
        return []
'''


def _null_exchange(root):
    rewrite(root / "bars" / "20240101.parquet",
            lambda f: f.with_columns(exchange=pl.when(pl.int_range(pl.len()) == 3).then(None)
                                     .otherwise(pl.col("exchange"))))


def _manifest(old, new):
    def change(root):
        path = root / "dataset.toml"
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new, 1))
    return change


@pytest.mark.parametrize("change, where, text", [
    (_null_exchange, "bars/20240101.parquet", "row 3, ts 2024-01-01 00:00:00, column 'exchange': exchange is empty"),
    (_manifest("funding_interval_hours = 8.0", 'funding_interval_hours = "8"'), "dataset.toml",
     "funding_interval_hours must be a finite number > 0, got '8'"),
    (_manifest("[[instruments]]", 'instruments = "BTC"\n[[sources2]]'), "dataset.toml", "instruments"),
    (_manifest("contract_size = 1.0", "contract_size = 0"), "dataset.toml",
     "entry 1 (BTC/USDT:USDT): contract_size must be a finite number > 0, got 0.0"),
])
def test_validate_reports_broken_datasets_without_crashing(tmp_path, change, where, text):
    root = dataset(tmp_path / "d")
    change(root)
    result = cli("data", "validate", root)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)  # a message, not a crash
    assert where in result.output and text in result.output, result.output
    run = cli("run", config(tmp_path / "c.toml", root), "--out", tmp_path / "runs", "--quiet")
    assert run.exit_code == 1 and text in run.output and finished_runs(tmp_path / "runs") == []


def test_view_margin_of_an_asset_an_exchange_does_not_hold(tmp_path):
    (tmp_path / "probe.py").write_text(PROBE)
    data = dataset(tmp_path / "d")
    exchanges = '[exchanges.hyperliquid]\nrules = "hyperliquid"\ncollateral = { USDC = 1000 }\n'
    path = config(tmp_path / "c.toml", data, strategy="probe:Probe", params="", exchanges=exchanges)
    result = cli("run", path, "--out", tmp_path / "runs", "--run-id", "r", "--quiet")
    assert result.exit_code == 0, result.output
    # funding Hyperliquid in USDT (which none of its perps settles in) is refused up front
    usdt = config(tmp_path / "usdt.toml", data, strategy="probe:Probe", params="",
                  exchanges=exchanges.replace("USDC = 1000", "USDT = 1000"))
    refused = cli("run", usdt, "--out", tmp_path / "runs", "--quiet")
    assert refused.exit_code == 2 and "exchanges.hyperliquid.collateral.USDT" in refused.output


def test_a_typo_in_an_instrument_key_names_the_known_ones(tmp_path):
    path = config(tmp_path / "c.toml", dataset(tmp_path / "d"), params=f'positions = {{ "{BTC}X" = 1000 }}')
    result = cli("run", path, "--out", tmp_path / "runs", "--quiet")
    assert result.exit_code == 1
    assert f"unknown instrument '{BTC}X': this run trades" in result.output and f"'{BTC}'" in result.output
    assert "strategy hold: on_wake at 2024-01-01 01:00:00" in result.output
    assert finished_runs(tmp_path / "runs") == []


def test_a_dataset_that_is_not_a_path(tmp_path):
    path = config(tmp_path / "c.toml", dataset(tmp_path / "d"))
    path.write_text(path.read_text().replace(f'dataset = "{tmp_path / "d"}"', "dataset = 5"))
    result = cli("run", path, "--out", tmp_path / "runs", "--quiet")
    assert result.exit_code == 2 and "run.dataset = 5: must be a string" in result.output


def test_a_zip_with_a_corrupt_deflate_stream(tmp_path):
    folder = tmp_path / "futures" / "um"
    folder.mkdir(parents=True)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("BTCUSDT-1h-2024-01.csv", "1704067200000,100,101,99,100.5,5\n" * 200)
    raw = bytearray(buffer.getvalue())
    start = raw.index(b"BTCUSDT-1h-2024-01.csv") + len("BTCUSDT-1h-2024-01.csv")
    raw[start + 5:start + 25] = b"\xff" * 20  # damage the compressed bytes, not the zip's directory
    (folder / "BTCUSDT-1h-2024-01.zip").write_bytes(bytes(raw))
    result = cli("data", "import", folder, "--out", tmp_path / "ds")
    assert result.exit_code == 2 and "BTCUSDT-1h-2024-01.zip: not a valid zip or a damaged one" in result.output
    assert "download the file again" in result.output and not (tmp_path / "ds").exists()


@pytest.fixture
def runs(tmp_path):
    return finished(tmp_path / "runs")


@pytest.mark.parametrize("file, code, text", [
    ("events.arrow", 1, "events.arrow cannot be read"),
    ("manifest.json", 2, "manifest.json: unreadable"),
    ("summary.json", 2, "summary.json: unreadable"),
])
def test_verify_a_truncated_file(runs, file, code, text):
    path = runs / "a" / file
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    result = cli("verify", runs / "a")
    assert result.exit_code == code and text in result.output and isinstance(result.exception, SystemExit)


def test_runs_list_shows_the_other_runs_when_one_summary_is_truncated(runs):
    summary = runs / "a" / "summary.json"
    summary.write_text(summary.read_text()[:40])
    result = cli("runs", "list", "--root", runs)
    assert result.exit_code == 0 and "(damaged summary.json)" in result.output
    assert "hold" in result.output  # run b with its numbers
