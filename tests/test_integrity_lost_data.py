"""Issue 12, lost or damaged data: a run owns its folder exclusively (an existing or busy id, a
path as id, an output folder that is a run, an unwritable or full one are refused before anything
is computed), and a refused `data import` into an existing dataset leaves it byte-identical."""

from __future__ import annotations

import errno
import os
from datetime import datetime, timedelta, timezone

import polars as pl
import pytest

from helpers_integrity import cli, config, dataset, finished_runs, tree_digest
from xmargin.output import writer
from xmargin.output.writer import reserve_run


@pytest.fixture
def setup(tmp_path):
    data = dataset(tmp_path / "data")
    return config(tmp_path / "run.toml", data), tmp_path / "runs"


def test_an_existing_run_id_is_refused_before_computing_and_the_first_run_stays_intact(setup):
    path, out = setup
    assert cli("run", path, "--out", out, "--run-id", "same", "--quiet").exit_code == 0
    before = tree_digest(out / "same")
    second = cli("run", path, "--out", out, "--run-id", "same", "--quiet")
    assert second.exit_code == 2 and "same already exists" in second.output and "--run-id" in second.output
    assert tree_digest(out / "same") == before
    assert cli("verify", out / "same").exit_code == 0


def test_a_run_id_being_written_by_another_run_is_refused_and_a_stale_one_taken_over(setup, monkeypatch):
    path, out = setup
    claim = reserve_run(out, "busy")  # another process is computing "busy" right now
    result = cli("run", path, "--out", out, "--run-id", "busy", "--quiet")
    assert result.exit_code == 2 and "being written by another run" in result.output
    assert finished_runs(out) == [] and claim.partial.is_dir()
    claim._handle.close()  # that process died without cleaning up: its lock is gone
    claim._handle = None
    assert cli("run", path, "--out", out, "--run-id", "busy", "--quiet").exit_code == 0
    assert finished_runs(out) == [out / "busy"] and not (out / "busy.partial").exists()
    assert not (out / "busy" / writer.LOCK_NAME).exists()


@pytest.mark.parametrize("run_id", ["../escaped", "/tmp/absolute-run", "a/b", "..", ".hidden", "x.partial"])
def test_a_run_id_is_one_folder_name_inside_out(setup, run_id):
    path, out = setup
    result = cli("run", path, "--out", out, "--run-id", run_id, "--quiet")
    assert result.exit_code == 2 and f"--run-id {run_id!r}" in result.output
    assert finished_runs(out.parent) == [] and not (out.parent / "escaped").exists()


def test_out_pointing_at_a_finished_run_is_refused(setup):
    path, out = setup
    cli("run", path, "--out", out, "--run-id", "first", "--quiet")
    before = tree_digest(out / "first")
    result = cli("run", path, "--out", out / "first", "--run-id", "nested", "--quiet")
    assert result.exit_code == 2 and "that is a run folder" in result.output
    assert tree_digest(out / "first") == before


def test_an_unwritable_or_full_output_folder_is_refused_before_the_run(setup, monkeypatch):
    path, out = setup
    out.parent.joinpath("a-file").write_text("not a folder")
    result = cli("run", path, "--out", out.parent / "a-file" / "runs", "--run-id", "x", "--quiet")
    assert result.exit_code == 2 and "cannot create the run folder there" in result.output

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(writer.os, "fsync", full)
    woken = []
    monkeypatch.setattr("xmargin.strategies.hold.Hold.on_wake", lambda self, view, wake: woken.append(1) or [])
    result = cli("run", path, "--out", out, "--run-id", "x", "--quiet")
    assert result.exit_code == 2 and "the disk is full" in result.output
    assert woken == [] and finished_runs(out) == [] and not (out / "x.partial").exists()


def _freqtrade_file(folder, timeframe: str, rows: int, start=datetime(2024, 1, 1, tzinfo=timezone.utc),
                    base: float = 100.0):
    step = {"1h": timedelta(hours=1), "1m": timedelta(minutes=1)}[timeframe]
    price = [base + i for i in range(rows)]
    frame = pl.DataFrame({"date": [start + i * step for i in range(rows)], "open": price,
                          "high": [p + 1 for p in price], "low": [p - 1 for p in price], "close": price,
                          "volume": [1.0] * rows})
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / f"BTC_USDT_USDT-{timeframe}-futures.parquet"
    frame.write_parquet(file)
    return file


def test_a_refused_import_into_an_existing_dataset_leaves_it_byte_identical(tmp_path):
    source = tmp_path / "user_data" / "data" / "binance" / "futures"
    target = tmp_path / "ds"
    assert cli("data", "import", _freqtrade_file(source / "h", "1h", 48), "--out", target).exit_code == 0
    before = tree_digest(target)
    # one bar right after the existing ones, at 100x their price: fine alone, a spike once merged
    spike = _freqtrade_file(source / "m", "1h", 1, start=datetime(2024, 1, 3, tzinfo=timezone.utc), base=14700.0)
    result = cli("data", "import", spike, "--out", target)
    assert result.exit_code == 2 and "does not validate" in result.output and "is unchanged" in result.output
    assert "price spike" in result.output or "more than 10x away" in result.output
    assert tree_digest(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "user_data"]  # no staging copy left behind
    assert cli("data", "validate", target).exit_code == 0


def test_an_accepted_merge_is_swapped_in_whole(tmp_path):
    source = tmp_path / "user_data" / "data" / "binance" / "futures"
    target = tmp_path / "ds"
    cli("data", "import", _freqtrade_file(source / "a", "1h", 24), "--out", target)
    first = tree_digest(target)
    later = _freqtrade_file(source / "b", "1h", 24, start=datetime(2024, 1, 2, tzinfo=timezone.utc))
    assert cli("data", "import", later, "--out", target).exit_code == 0
    bars = pl.read_parquet(target / "bars" / "binance" / "perp" / "BTC_USDT_USDT-1h.parquet")
    assert bars.height == 48 and bars["close"][-1] == 123.0
    assert tree_digest(target) != first and sorted(p.name for p in tmp_path.iterdir()) == ["ds", "user_data"]


def test_a_failed_write_interrupted_again_while_the_hashing_thread_stops_leaves_no_partial_folder(setup,
                                                                                                  monkeypatch):
    """Ctrl-C twice: the first interrupts the write, the second the wait for the hashing thread
    (`_FileHashes.close`); the unfinished folder must still go."""
    from xmargin.config import load_config
    from xmargin.sim.loop import run_backtest

    path, out = setup
    result = run_backtest(load_config(path))

    def failing(*args, **kwargs):
        raise KeyboardInterrupt

    closing = writer._FileHashes.close
    calls = []

    def interrupted(self):
        closing(self)
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(writer, "summarize_figures", failing)
    monkeypatch.setattr(writer._FileHashes, "close", interrupted)
    with pytest.raises(KeyboardInterrupt):
        writer.write_run_folder(result, out=out, run_id="x")  # (it claims the folder itself)
    assert calls and finished_runs(out) == [] and not (out / "x.partial").exists()
