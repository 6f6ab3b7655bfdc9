"""The output table registry: every run folder table has the registry's schema (also when empty),
the manifest carries the schema version, older runs without an optional table still open (and
verify), a missing required table or a newer layout is refused, `runs list` shows both."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from xmargin.errors import RunError
from xmargin.output.eventlog import read_ipc
from xmargin.output.results import MissingTableError, list_runs, open_run
from xmargin.output.tables import BY_NAME, OUTPUT_TABLES, SCHEMA_VERSION
from xmargin.output.verify import verify_run
from test_run import config, run_cli  # noqa: F401  (the fixture)


@pytest.fixture()
def folder(config, tmp_path):
    assert run_cli("run", config, "--out", tmp_path / "runs", "--run-id", "r", "--quiet",
                   "--end", "2024-10-08").exit_code == 0
    return tmp_path / "runs" / "r"


def test_every_table_is_written_with_the_registry_schema(folder):
    assert sorted(p.name for p in folder.glob("*.arrow")) == sorted(t.file for t in OUTPUT_TABLES)
    for table in OUTPUT_TABLES:
        written = read_ipc(folder / table.file)
        assert written.schema.equals(table.schema), table.name
    # no liquidation and no transfer in this run: the empty tables still carry typed columns
    assert read_ipc(folder / "liquidations.arrow").num_rows == 0
    assert read_ipc(folder / "transfers.arrow").schema.field("arrived_ts").type == pa.timestamp("ns", tz="UTC")
    assert json.loads((folder / "manifest.json").read_text())["schema_version"] == SCHEMA_VERSION
    assert {t.source for t in OUTPUT_TABLES} == {"log", "projection", "valuation"}


def test_conform_names_a_table_built_with_other_columns():
    with pytest.raises(RunError, match=r"fills.arrow: built with columns \['seq'\].*registry"):
        BY_NAME["fills"].conform(pa.table({"seq": [1]}))


def test_an_older_run_without_the_optional_tables_opens_and_verifies(folder):
    manifest = json.loads((folder / "manifest.json").read_text())
    for key in ("schema_version", "files", "manifest_sha256"):  # written before these (and the tables) existed
        manifest.pop(key, None)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    optional = [t for t in OUTPUT_TABLES if not t.required]
    assert {t.name for t in optional} == {"distance", "collateral"}
    for table in optional:
        (folder / table.file).unlink()
    run = open_run(folder)
    assert run.schema_version == 0 and run.missing == ("distance", "collateral")
    assert run.equity.collect().height > 0
    with pytest.raises(MissingTableError, match="no collateral table .* written by an older xmargin"):
        run.collateral
    assert not hasattr(run, "collateral")  # also an AttributeError
    assert not [p for p in verify_run(folder) if "collateral" in p or "distance" in p]  # replays without them
    listed = list_runs(folder.parent).row(0, named=True)
    assert listed["schema_version"] == 0 and listed["tables"] == "without distance, collateral"


def test_a_missing_required_table_or_a_newer_layout_is_refused(folder):
    assert list_runs(folder.parent).row(0, named=True)["tables"] == "complete"
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["schema_version"] = SCHEMA_VERSION + 1
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RunError, match="upgrade xmargin"):
        open_run(folder)
    manifest["schema_version"] = SCHEMA_VERSION
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "fills.arrow").unlink()
    with pytest.raises(RunError, match="fills.arrow is missing; the run folder is damaged"):
        open_run(folder)
    assert list_runs(folder.parent).row(0, named=True)["tables"] == "damaged: no fills"


def test_valuation_tables_in_many_chunks_hold_the_same_rows(config, tmp_path, monkeypatch):
    """The valuation tables are valued and written a chunk of snapshots at a time: the chunk size
    changes the record batches, never the rows, the distances or the summary."""
    from xmargin.output import writer

    def run(run_id):
        assert run_cli("run", config, "--out", tmp_path / "runs", "--run-id", run_id, "--quiet",
                       "--end", "2024-10-08").exit_code == 0
        return tmp_path / "runs" / run_id

    whole = run("whole")
    monkeypatch.setattr(writer, "SNAPSHOT_ROWS", 7)
    chunked = run("chunked")
    with pa.OSFile(str(chunked / "equity.arrow"), "rb") as source:
        assert pa.ipc.open_file(source).num_record_batches > 10
    for table in OUTPUT_TABLES:
        assert read_ipc(chunked / table.file).equals(read_ipc(whole / table.file)), table.name
    def figures(folder):  # the summary without the run's id and timings
        summary = json.loads((folder / "summary.json").read_text())
        return {k: v for k, v in summary.items() if k != "run_id" and not k.endswith("_seconds")}

    assert figures(chunked) == figures(whole)


TWO_LIQUIDATIONS = """
[run]
dataset = "{dataset}"
strategy = "hold"
start = "2024-10-01"
end = "2024-11-15"

[strategy.params]
positions = {{ "binance:ETH/USDT:USDT" = 40000, "binance:BTC/USDT:USDT" = -40000, "hyperliquid:ETH/USDC:USDC" = -30000 }}

[exchanges.binance]
rules = "binance-usdm"
margin_mode = "cross"
collateral = {{ USDT = 4000, USDC = 1000 }}
leverage = 20

[exchanges.hyperliquid]
rules = "hyperliquid"
margin_mode = "isolated"
collateral = {{ USDC = 4000 }}
leverage = 10
"""


def test_the_same_values_give_the_same_file_bytes(tmp_path):
    """A cross and an isolated liquidation: polars may return the liquidations projection as two
    chunks sharing one bool bitmap (the first chunk then carries the second's bit past its end, which
    the IPC writer copies); the registry's conform gives one chunk per column in its own buffers, so 40
    builds of the table write 40 identical files."""
    import hashlib
    import io
    from pathlib import Path

    import polars as pl

    from xmargin.config import load_config
    from xmargin.output.eventlog import events_to_table
    from xmargin.sim.loop import Backtest

    path = tmp_path / "two.toml"
    path.write_text(TWO_LIQUIDATIONS.format(dataset=Path(__file__).resolve().parents[1] / "datasets" / "sample"))
    result = Backtest(load_config(path)).run()
    events = events_to_table(result.events)
    entry = BY_NAME["liquidations"]
    written = set()
    for _ in range(40):
        table = entry.conform(entry.project(pl.from_arrow(events).lazy()).collect().to_arrow())
        sink = io.BytesIO()
        with pa.ipc.new_file(sink, entry.schema) as writer:
            writer.write_table(table)
        written.add(hashlib.sha256(sink.getvalue()).hexdigest())
    assert table.column("isolated").to_pylist() == [False, True] and len(written) == 1
