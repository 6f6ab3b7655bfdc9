"""`xmargin run`, `verify` and `runs list` end to end on the real sample, through the CLI:
outputs, overrides, determinism, atomic run folders, and verify catching a tampered run."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from click.testing import CliRunner

from xmargin.cli.main import main
from xmargin.output.eventlog import read_ipc, write_ipc
from xmargin.output.results import TABLES, open_run

ROOT = Path(__file__).resolve().parents[1]
CONFIG = """
[run]
dataset = "{dataset}"
strategy = "hold"
start = "2024-10-01"
end = "2024-11-01"
seed = 3

[strategy.params]
positions = {{ "binance:ETH/USDT:USDT" = 20000, "binance:BTC/USDT:USDT" = -20000 }}

[exchanges.binance]
rules = "binance-usdm"
margin_mode = "cross"
collateral = {{ USDT = 10000 }}
"""


@pytest.fixture()
def config(tmp_path) -> Path:
    path = tmp_path / "hold.toml"
    path.write_text(CONFIG.format(dataset=ROOT / "datasets" / "sample"))
    return path


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_run_writes_a_complete_run_folder_and_prints_a_summary(config, tmp_path):
    result = run_cli("run", config, "--out", tmp_path / "runs", "--run-id", "r1", "--quiet")
    assert result.exit_code == 0, result.output
    assert "binance" in result.output and "outputs:" in result.output and "lowest headroom" in result.output
    folder = tmp_path / "runs" / "r1"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f"{t}.arrow" for t in TABLES] + ["summary.json", "manifest.json"])
    run = open_run(folder)
    assert isinstance(run.equity, pl.LazyFrame)
    events = run.events.collect()
    assert events["type"].to_list()[:3] == ["CollateralDeposited", "OrderAccepted", "OrderAccepted"]
    assert events.schema["ts"] == pl.Datetime("ns", "UTC")
    fills = run.fills.collect()
    assert fills.height == 2 and set(fills["instrument"]) == {"binance:ETH/USDT:USDT", "binance:BTC/USDT:USDT"}
    # the fills fill at the open of the bar after the first bar close (2024-10-01 01:00), taker fee 5 bps
    assert fills["ts"].dt.strftime("%Y-%m-%d %H:%M").to_list() == ["2024-10-01 01:00"] * 2
    assert (fills["fee"] / fills["notional"]).to_list() == pytest.approx([0.0005, 0.0005])
    equity = run.equity.collect()
    assert {"start", "sample", "event", "final"} <= set(equity["reason"])
    assert (equity.filter(pl.col("reason") == "sample")["ts"].diff().drop_nulls().dt.total_hours() == 1).all()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["seed"] == 3 and manifest["resolved"]["intrabar"] == "path"
    assert manifest["mark_price_source"]["binance:BTC/USDT:USDT"] == "mark"
    assert manifest["mark_price_source"]["binance:SOL/USDT:USDT"] == "last"  # the sample has no SOL mark
    assert len(manifest["dataset_fingerprint"]) == 64
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["exchanges"]["binance"]["fills"] == 2
    assert summary["total"]["fees"] == pytest.approx(fills["fee"].sum())

    listed = run_cli("runs", "list", "--root", tmp_path / "runs")
    assert listed.exit_code == 0 and "r1" in listed.output


def test_verify_passes_then_catches_tampering(config, tmp_path):
    assert run_cli("run", config, "--out", tmp_path, "--run-id", "r", "--quiet").exit_code == 0
    folder = tmp_path / "r"
    ok = run_cli("verify", folder)
    assert ok.exit_code == 0 and ok.output.startswith("ok:")

    fills = read_ipc(folder / "fills.arrow")  # a fill price edited after the fact
    prices = fills.column("price").to_pylist()
    prices[0] += 1.0
    write_ipc(fills.set_column(fills.schema.get_field_index("price"), "price", pa.array(prices)),
              folder / "fills.arrow")
    bad = run_cli("verify", folder)
    assert bad.exit_code == 1 and "fills.arrow differs from the projection of the event log" in bad.output

    manifest = json.loads((folder / "manifest.json").read_text())  # a final balance edited
    manifest["final_state"]["binance"]["balances"]["USDT"] += 0.01
    (folder / "manifest.json").write_text(json.dumps(manifest))
    bad = run_cli("verify", folder)
    assert "binance: replayed final state" in bad.output

    events = read_ipc(folder / "events.arrow")  # the log itself rewritten: hash, conservation, state
    amounts = events.column("amount").to_pylist()
    amounts[0] = amounts[0] + 500.0  # a bigger deposit
    write_ipc(events.set_column(events.schema.get_field_index("amount"), "amount",
                                pa.array(amounts, type=pa.float64())), folder / "events.arrow")
    bad = run_cli("verify", folder)
    assert bad.exit_code == 1
    assert "sha256" in bad.output and "differs from the manifest" in bad.output


def test_same_config_data_and_seed_give_a_byte_identical_event_log(config, tmp_path):
    for run_id in ("a", "b"):
        assert run_cli("run", config, "--out", tmp_path, "--run-id", run_id, "--quiet").exit_code == 0
    a, b = (tmp_path / r / "events.arrow" for r in ("a", "b"))
    assert a.read_bytes() == b.read_bytes()
    manifests = [json.loads((tmp_path / r / "manifest.json").read_text()) for r in ("a", "b")]
    assert manifests[0]["events_sha256"] == manifests[1]["events_sha256"]


def test_command_line_overrides_change_the_run(config, tmp_path):
    out = tmp_path / "o"
    result = run_cli("run", config, "--out", out, "--run-id", "iso", "--quiet", "--margin-mode", "binance=isolated",
                     "--set", "strategy.params.positions={\"binance:ETH/USDT:USDT\" = 5000}",
                     "--start", "2024-10-10", "--end", "2024-10-12", "--seed", "11")
    assert result.exit_code == 0, result.output
    run = open_run(out / "iso")
    fills = run.fills.collect()
    assert fills["instrument"].to_list() == ["binance:ETH/USDT:USDT"]
    assert fills["ts"].dt.strftime("%Y-%m-%d %H:%M").to_list() == ["2024-10-10 01:00"]
    positions = run.positions.collect()
    assert set(positions["margin_mode"]) == {"isolated"}
    assert run.manifest["seed"] == 11 and run.manifest["resolved"]["margin_modes"] == {"binance": "isolated"}
    last = run.equity.collect()["ts"].max()
    assert str(last) <= "2024-10-12 00:00:00+00:00"


@pytest.mark.parametrize("args, message", [
    (["--set", "run.intrabar=sideways"], "run.intrabar = 'sideways': allowed ['path', 'worst-case', 'close']"),
    (["--set", "run.colour=blue"], "unknown keys run.['colour']"),
    (["--margin-mode", "bybit=cross"], "--margin-mode bybit=cross: no exchange 'bybit' in the config"),
    (["--margin-mode", "binance=portfolio-ish"], "exchanges.binance.margin_mode = 'portfolio-ish': allowed"),
    (["--margin-mode", "binance=portfolio", "--set", "exchanges.binance.portfolio_margin=okx-2031"],
     "exchanges.binance.portfolio_margin: portfolio_margin = 'okx-2031': no such variant"),
    (["--set", "exchanges.binance.portfolio_margin=deribit-grid"], "only with margin_mode = 'portfolio'"),
    (["--set", "exchanges.binance.rules=no-such-exchange"], "rules 'no-such-exchange': neither a built-in"),
    (["--set", "run.strategy=nowhere:Nothing"], "cannot import module 'nowhere'"),
    (["--set", "run.strategy=not-registered"], "not `module:Class` and not a registered strategy"),
    (["--set", "strategy.params.positions=3"], "strategy.params for hold"),
    (["--start", "2024-13-01"], "run.start = '2024-13-01': not a date"),
])
def test_config_errors_name_the_key_and_what_is_allowed(config, tmp_path, args, message):
    out = tmp_path / "runs"
    result = CliRunner().invoke(main, ["run", str(config), "--out", str(out), "--quiet", *args])
    assert result.exit_code == 2
    assert message in result.output
    assert not out.exists()  # nothing written


def test_a_failure_while_writing_leaves_no_run_folder(config, tmp_path, monkeypatch):
    from xmargin.output.tables import TableFiles

    calls = {"n": 0}
    real = TableFiles.append

    def failing(self, parts):
        calls["n"] += 1
        if calls["n"] == 4:
            raise OSError("disk full")
        real(self, parts)

    monkeypatch.setattr(TableFiles, "append", failing)
    out = tmp_path / "runs"
    with pytest.raises(OSError):
        CliRunner().invoke(main, ["run", str(config), "--out", str(out), "--run-id", "x", "--quiet"],
                           catch_exceptions=False)
    assert calls["n"] == 4
    assert list(out.iterdir()) == []  # neither runs/x nor runs/x.partial


def test_a_strategy_crash_writes_nothing(tmp_path):
    from xmargin.config import parse_config
    from xmargin.sim.runner import execute

    config = parse_config({"run": {"dataset": str(ROOT / "datasets/sample"), "strategy": "tests.test_run:Crashes",
                                   "start": "2024-10-01", "end": "2024-10-03"},
                           "exchanges": {"binance": {"rules": "binance-usdm", "collateral": {"USDT": 1000}}}})
    with pytest.raises(RuntimeError, match="strategy bug"):
        execute(config, out=tmp_path, run_id="c")
    assert list(tmp_path.iterdir()) == []


class Crashes:
    def __init__(self, params):
        self.wakes_seen = 0

    def wakes(self):
        from xmargin.sim.strategy import Wakes

        return Wakes(every="1h")

    def on_wake(self, view, wake):
        self.wakes_seen += 1
        if self.wakes_seen == 5:
            raise RuntimeError("strategy bug")
        return []


def test_strategies_load_by_module_path_and_by_registered_name():
    from xmargin.sim.strategy import resolve_strategy
    from xmargin.strategies.hold import Hold

    assert resolve_strategy("xmargin.strategies.hold:Hold") is Hold
    assert resolve_strategy("hold") is Hold
    assert resolve_strategy("funding-arbitrage").__name__ == "FundingArbitrage"


def test_run_checks_the_dataset_first_and_stops_on_an_unusable_one(tmp_path):
    import shutil

    dataset = tmp_path / "broken"
    shutil.copytree(ROOT / "datasets" / "coinm-sample", dataset)
    bars = dataset / "bars" / "binance" / "perp" / "BTC_USD_BTC-1m.parquet"
    frame = pl.read_parquet(bars)
    frame.with_columns(pl.when(pl.int_range(pl.len()) == 100).then(-1.0).otherwise(pl.col("low")).alias("low")) \
        .write_parquet(bars)
    config = tmp_path / "c.toml"
    config.write_text(f"""
[run]
dataset = "{dataset}"
strategy = "hold"
[strategy.params]
positions = {{ "binance:BTC/USD:BTC" = -1000 }}
[exchanges.binance]
rules = "binance-coinm"
collateral = {{ BTC = 1.0 }}
""")
    out = tmp_path / "runs"
    result = CliRunner().invoke(main, ["run", str(config), "--out", str(out), "--quiet"])
    assert result.exit_code == 1
    assert "BTC_USD_BTC-1m.parquet" in result.output and "row 100" in result.output and "column 'low'" in result.output
    assert "is not usable" in result.output and "--no-validate" in result.output
    assert not out.exists()
    forced = CliRunner().invoke(main, ["run", str(config), "--out", str(out), "--quiet", "--no-validate"])
    assert forced.exit_code == 0, forced.output


def test_verify_says_when_a_run_was_written_by_another_version(config, tmp_path):
    assert run_cli("run", config, "--out", tmp_path, "--run-id", "old", "--quiet").exit_code == 0
    events = read_ipc(tmp_path / "old" / "events.arrow")
    write_ipc(events.drop_columns(["credited"]), tmp_path / "old" / "events.arrow")
    result = run_cli("verify", tmp_path / "old")
    assert result.exit_code == 1
    assert "events.arrow has no columns ['credited']" in result.output and "another version" in result.output


@pytest.mark.parametrize("example", ["demo", "portfolio_basis", "core_hedge_isolated"])
def test_a_run_not_kept_in_memory_writes_the_same_folder(tmp_path, example):
    """`execute(keep_result=False)` (the command line's way) drops the feed's open, high and low
    prices before the tables, the log once written and the snapshots and the feed once the tables
    that need them are written: the folder is the one a kept run writes, file for file, its manifest
    differs only in timings and run id, and it verifies (cross on three venues, portfolio margin with
    spot collateral valued at the marks, isolated)."""
    from xmargin.config import load_config
    from xmargin.output.verify import verify_run
    from xmargin.sim.runner import execute

    config = load_config(ROOT / "examples" / f"{example}.toml")
    kept = execute(config, out=tmp_path, run_id="kept")
    dropped = execute(config, out=tmp_path, run_id="dropped", keep_result=False)
    assert kept.result is not None and len(kept.result.snapshots) > 100 and dropped.result is None
    names = sorted(p.name for p in kept.path.iterdir())
    assert names == sorted(p.name for p in dropped.path.iterdir()) and "distance.arrow" in names
    for name in names:
        if name.endswith(".arrow"):
            assert (kept.path / name).read_bytes() == (dropped.path / name).read_bytes(), name
    strip = ("run_id", "run_seconds", "load_seconds")
    assert ({k: v for k, v in kept.summary.items() if k not in strip}
            == {k: v for k, v in dropped.summary.items() if k not in strip})
    manifests = [json.loads((c.path / "manifest.json").read_text()) for c in (kept, dropped)]
    for manifest in manifests:
        for key in ("run_id", "timings", "files", "manifest_sha256"):
            manifest.pop(key)
    assert manifests[0] == manifests[1]
    assert verify_run(dropped.path) == []


def test_releasing_a_run_clears_the_valuation_memos_and_a_later_run_gives_the_same_log(tmp_path):
    """A released run (the command line's way) empties the registered memos (they pin the run's
    accounts); the next run in the same process recomputes what it needs: the same log, byte for byte."""
    from xmargin import _memos
    from xmargin.config import load_config
    from xmargin.margin import units
    from xmargin.sim.runner import execute

    config = load_config(ROOT / "examples" / "demo.toml")
    first = execute(config, out=tmp_path, run_id="first", keep_result=False)
    assert len(_memos._MEMOS) >= 9 and all(not found for found in _memos._MEMOS)
    second = execute(config, out=tmp_path, run_id="second")
    assert units._ROW_MEMO  # filled again by the kept run
    assert (first.path / "events.arrow").read_bytes() == (second.path / "events.arrow").read_bytes()


def test_releasing_the_extremes_keeps_the_closes_and_frees_the_rest():
    """`RunResult.release("extremes")` leaves a feed of
    closes: the open, high and low arrays (trade and mark) are gone, the closes and everything the
    valuation and the manifest read are the same objects; an unknown part is refused by name."""
    from xmargin.config import load_config
    from xmargin.sim.loop import run_backtest

    result = run_backtest(load_config(ROOT / "examples" / "hold.toml", end="2024-10-05"))
    feed = result.feed
    result.release("extremes")
    slim = result.feed
    assert slim is not feed and len(result.events) > 0 and len(result.snapshots) > 0
    for name in ("open", "high", "low", "mark_open", "mark_high", "mark_low"):
        assert getattr(slim, name) is None, name
    for name in ("close", "mark_close", "ts", "has_bar", "keys", "mark_source", "fingerprint"):
        assert getattr(slim, name) is getattr(feed, name), name
    assert slim.bars == feed.bars and slim.column(feed.keys[0]) == 0
    with pytest.raises(ValueError, match="events, extremes, valuation"):
        result.release("prices")


@pytest.mark.parametrize("batch", [700, 64])
def test_a_log_written_during_the_run_is_the_log_written_after_it(tmp_path, monkeypatch, batch):
    """`execute(keep_result=False)` hands the log to events.arrow one record batch at a time while the
    run goes on, so memory holds less than a batch of events: with batches small enough to spill many
    times, every file of the folder is byte for byte a kept run's (which writes the log after the
    run), and so are the summary and the manifest's event count."""
    from xmargin.config import load_config
    from xmargin.output import eventlog
    from xmargin.output.verify import verify_run
    from xmargin.sim.runner import execute

    monkeypatch.setattr(eventlog, "EVENT_BATCH", batch)
    config = load_config(ROOT / "examples" / "demo.toml")
    kept = execute(config, out=tmp_path, run_id="kept")
    dropped = execute(config, out=tmp_path, run_id="dropped", keep_result=False)
    count = len(kept.result.events)
    assert count > 5 * batch
    for name in sorted(p.name for p in kept.path.iterdir() if p.name.endswith(".arrow")):
        assert (kept.path / name).read_bytes() == (dropped.path / name).read_bytes(), name
    manifests = [json.loads((c.path / "manifest.json").read_text()) for c in (kept, dropped)]
    assert manifests[0]["events"] == manifests[1]["events"] == count
    # the time spent writing the log during the run is its own figure, not the run phase's
    assert "event_log_seconds" not in manifests[0]["timings"] and manifests[1]["timings"]["event_log_seconds"] > 0
    assert verify_run(dropped.path) == []  # the replay of the streamed log reproduces the state
    assert kept.summary["events"] == dropped.summary["events"] == count
    assert kept.summary["warnings"] == dropped.summary["warnings"]


def test_a_run_with_an_event_file_keeps_less_than_a_batch_of_events(tmp_path):
    """The loop spills each full batch to the event file as it comes: at the end fewer than a batch
    are in memory, the rest in the file, and the snapshots' events_applied count both."""
    from xmargin.config import load_config
    from xmargin.output.eventlog import EventFile, read_ipc
    from xmargin.sim.loop import Backtest, run_backtest

    config = load_config(ROOT / "examples" / "demo.toml")
    whole = run_backtest(config)
    event_file = EventFile(tmp_path / "events.arrow", batch=100)
    spilled = Backtest(config, event_file=event_file).run()
    assert len(spilled.events) < 100 and spilled.events_written == event_file.written > 0
    assert spilled.event_count == len(whole.events)
    assert [s.events_applied for s in spilled.snapshots] == [s.events_applied for s in whole.snapshots]
    event_file.finish(spilled.events)
    table = read_ipc(tmp_path / "events.arrow")
    assert table.num_rows == len(whole.events) and table.column("seq").to_pylist() == list(range(len(whole.events)))


def test_a_failed_run_with_an_event_file_leaves_no_folder(tmp_path, monkeypatch):
    """A strategy that raises on its fifth wake of a command-line run whose log is already partly on disk
    (one event per batch): the error is the strategy's, and no run folder, partial folder or event
    file is left."""
    from xmargin.output import eventlog

    monkeypatch.setattr(eventlog, "EVENT_BATCH", 1)
    result = run_cli("run", str(ROOT / "examples" / "demo.toml"), "--out", str(tmp_path), "--no-validate",
                     "--set", "run.strategy=tests.test_run:Crashes", "--run-id", "boom")
    assert result.exit_code == 1, result.output
    assert "strategy bug" in result.output and "No run folder was written" in result.output
    assert list(tmp_path.iterdir()) == []


def recorded_event_file(opened: list):
    """An EventFile class that appends each instance to `opened` (to look at it after a failed run)."""
    from xmargin.output.eventlog import EventFile

    class Recorded(EventFile):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            opened.append(self)

    return Recorded


def test_a_disk_that_fills_while_the_log_is_written_during_the_run_is_said(tmp_path, monkeypatch):
    """A command-line run writes events.arrow while it runs: a full disk at the third record batch
    is the writer's own message (exit 2, nothing kept), as when the disk fills while the tables are
    written after the run, not an OSError traceback; the event file is closed and no folder is left."""
    import errno

    from xmargin.output import eventlog
    from xmargin.sim import runner

    monkeypatch.setattr(eventlog, "EVENT_BATCH", 50)
    opened = []

    class FillsUp(recorded_event_file(opened)):
        def add(self, events):
            if self.written >= 100:
                raise OSError(errno.ENOSPC, "No space left on device")
            super().add(events)

    monkeypatch.setattr(runner, "EventFile", FillsUp)
    result = run_cli("run", str(ROOT / "examples" / "demo.toml"), "--out", str(tmp_path), "--no-validate",
                     "--quiet", "--run-id", "full")
    assert result.exit_code == 2, result.output
    assert "the disk filled up while writing the run; nothing was kept" in result.output
    assert "Traceback" not in result.output
    assert opened and opened[0].written == 100 and opened[0]._sink.closed
    assert not any(tmp_path.iterdir())


def test_a_run_failing_after_its_loop_closes_its_event_file(tmp_path, monkeypatch):
    """A failure after the loop and before the writer finishes the log (here the manifest's head)
    removes the folder and closes the event file the run was writing (it stayed open: a deleted file
    held by the process until the result was collected)."""
    from xmargin.config import load_config
    from xmargin.output import eventlog, writer
    from xmargin.sim import runner

    monkeypatch.setattr(eventlog, "EVENT_BATCH", 50)
    opened = []
    Recorded = recorded_event_file(opened)

    def broken(result, run_id):
        raise RuntimeError("manifest head failed")

    monkeypatch.setattr(runner, "EventFile", Recorded)
    monkeypatch.setattr(writer, "_manifest_head", broken)
    with pytest.raises(RuntimeError, match="manifest head failed"):
        runner.execute(load_config(ROOT / "examples" / "demo.toml"), out=tmp_path, run_id="late", keep_result=False)
    assert opened and opened[0].written > 0 and opened[0]._sink.closed
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("rows", [97, 400])
def test_snapshots_valued_during_the_run_write_the_tables_valued_after_it(tmp_path, monkeypatch, rows):
    """`execute(keep_result=False)` values its snapshots a chunk at a time while the run goes on
    (`xmargin.output.writer.ValuationFile`), so the run keeps none of its account states to its end:
    with chunks small enough to be cut about a hundred times, every valuation table is byte for byte a
    kept run's (valued after the run), the summary is the same, and the time spent is its own figure."""
    from xmargin.config import load_config
    from xmargin.output import writer
    from xmargin.output.verify import verify_run
    from xmargin.sim.runner import execute

    monkeypatch.setattr(writer, "SNAPSHOT_ROWS", rows)
    config = load_config(ROOT / "examples" / "basis_carry.toml")
    kept = execute(config, out=tmp_path, run_id="kept")
    dropped = execute(config, out=tmp_path, run_id="dropped", keep_result=False)
    chunks = len(list(writer._snapshot_chunks(kept.result.snapshots)))
    assert chunks > (90 if rows == 97 else 20)
    for name in ("equity", "positions", "distance", "collateral"):
        assert (kept.path / f"{name}.arrow").read_bytes() == (dropped.path / f"{name}.arrow").read_bytes(), name
    timings = json.loads((dropped.path / "manifest.json").read_text())["timings"]
    assert timings["valuation_seconds"] > 0 and "valuation_seconds" not in kept.result.timings
    strip = ("run_id", "run_seconds", "load_seconds")
    assert ({k: v for k, v in kept.summary.items() if k not in strip}
            == {k: v for k, v in dropped.summary.items() if k not in strip})
    assert verify_run(dropped.path) == []


def test_a_run_failing_after_valued_chunks_leaves_no_folder(tmp_path, monkeypatch):
    """A strategy that raises on its fifth wake when the valuation tables already hold chunks (one
    snapshot's rows per chunk): the error is the strategy's, and nothing of the run is left."""
    from xmargin.output import writer

    monkeypatch.setattr(writer, "SNAPSHOT_ROWS", 1)
    opened = []

    class Recorded(writer.ValuationFile):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            opened.append(self)

    monkeypatch.setattr("xmargin.sim.runner.ValuationFile", Recorded)
    result = run_cli("run", str(ROOT / "examples" / "demo.toml"), "--out", str(tmp_path), "--no-validate",
                     "--set", "run.strategy=tests.test_run:Crashes", "--run-id", "boom")
    assert result.exit_code == 1, result.output
    assert "strategy bug" in result.output and "No run folder was written" in result.output
    assert list(tmp_path.iterdir()) == []
    assert len(opened) == 1 and opened[0].seconds > 0 and opened[0]._context is None  # it had written, then closed


@pytest.mark.parametrize("strategy", ["tests.test_run:Crashes", "tests.test_run:ReadsAnUnknownInstrument"])
def test_a_failed_run_lets_go_of_its_feed_file_at_once(paging_folder, monkeypatch, strategy):
    """A strategy that raises (its own error, or an XmarginError from the View named as a StrategyError)
    ends the run: once the error is handled, nothing keeps the run alive (no reference cycle through the
    error's traceback), so a paged feed's file (its descriptors and its disk blocks) goes at once, not
    at some later full collection: a sweep of failing variants does not pile them up."""
    import gc
    import os

    import xmargin.dataset.paging as paging
    from xmargin.config import load_config
    from xmargin.errors import StrategyError
    from xmargin.sim.runner import execute
    from xmargin.sim.strategy import build_strategy

    tmp_path = paging_folder

    def held() -> list[str]:
        names = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                names.append(os.readlink(f"/proc/self/fd/{fd}"))
            except OSError:
                continue
        return [name for name in names if name.startswith(str(tmp_path))]

    monkeypatch.setattr(paging, "PAGED_ABOVE_BYTES", -1)
    config = load_config(ROOT / "examples" / "demo.toml")
    gc.collect()
    gc.disable()
    try:
        with pytest.raises((RuntimeError, StrategyError)):
            execute(config, out=tmp_path, run_id="boom", keep_result=False, strategy=build_strategy(strategy, {}, None))
        left = held()
    finally:
        gc.enable()
    assert left == [] and list(tmp_path.iterdir()) == []


class ReadsAnUnknownInstrument(Crashes):
    def on_wake(self, view, wake):
        self.wakes_seen += 1
        return [] if self.wakes_seen < 3 else [view.price("binance:NOPE/USDT:USDT")]
