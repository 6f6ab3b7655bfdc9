"""The summary is reduced as the run's tables are made: the valuation tables chunk by chunk
(`summary.SnapshotReduction`, fed by the writer's `ValuationFile`) and the event log batch by batch
(`summary.log_rows`, fed by `output.logtables.LogTables`). Its figures are the ones of the whole
tables, bit for bit, however the chunks and batches fall."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest

import xmargin.output.writer as writer
from xmargin.analysis.summary import (READ_TYPES, SnapshotReduction, _first_per_exchange, log_figures, log_rows,
                                      snapshot_figures, summarize)
from xmargin.config import load_config
from xmargin.output import eventlog
from xmargin.output.results import open_run
from xmargin.sim.runner import execute

ROOT = Path(__file__).resolve().parents[1]
DERIVED = ("exchanges", "total", "exposure", "rejections")  # (the warnings also hold the input's)


def _whole_summary(path: Path, stored: dict) -> dict:
    run = open_run(path)
    one_legged = stored["one_legged"]
    whole = summarize(run.events.collect(), run.equity.collect(), {}, collateral=run.collateral.collect(),
                      positions=run.positions.collect(), one_legged_ratio=one_legged["ratio"],
                      one_legged_after_hours=one_legged["after_hours"])
    return json.loads(json.dumps(writer.json_safe({k: whole[k] for k in DERIVED})))


# snapshot rows per chunk and events per batch: 15-30 chunks and 20-250 batches per run
@pytest.mark.parametrize("example, rows, events", [("demo", 2_000, 200), ("basis_carry", 400, 13),
                                                   ("core_hedge_isolated", 250, 11), ("portfolio_basis", 400, 15),
                                                   ("hold", 250, 3), ("funding_arbitrage", 1_000, 60)])
@pytest.mark.parametrize("keep", [True, False])
def test_the_summary_of_parts_is_the_summary_of_the_whole_tables(monkeypatch, tmp_path, example, rows, events, keep):
    monkeypatch.setattr(writer, "SNAPSHOT_ROWS", rows)
    monkeypatch.setattr(eventlog, "EVENT_BATCH", events)
    config = load_config(ROOT / f"examples/{example}.toml", out=str(tmp_path))
    done = execute(config, run_id="run", keep_result=keep)
    chunks = {name: pa.ipc.open_file(str(done.path / f"{name}.arrow")).num_record_batches
              for name in ("equity", "collateral", "positions", "events")}
    assert min(chunks.values()) >= 15, chunks
    stored = json.loads((done.path / "summary.json").read_text())
    assert {k: stored[k] for k in DERIVED} == _whole_summary(done.path, stored)


def test_log_rows_keep_every_summed_event_and_one_of_each_other(tmp_path):
    """Per type: every event of the types the summary sums or counts, the columns it reads; of the
    others (orders accepted), one row per exchange and instrument, which is all it asks of them."""
    config = load_config(ROOT / "examples/demo.toml", out=str(tmp_path))
    done = execute(config, run_id="run", keep_result=False)
    events = open_run(done.path).events.collect()
    rows = log_rows(events)
    for kind in READ_TYPES:
        assert rows[kind].height == events.filter(pl.col("type") == kind).height, kind
    accepted = events.filter(pl.col("type") == "OrderAccepted")
    assert accepted.height > 50
    assert rows["OrderAccepted"].height == accepted.select("exchange", "instrument").n_unique()
    assert rows["OrderFilled"].columns == ["seq", "ts", "type", "exchange", "instrument", "asset", "realized_pnl"]
    # the parts' rows joined: each summed type's rows are the log's, in order
    parts = [log_rows(events.slice(start, 97)) for start in range(0, events.height, 97)]
    joined = log_figures(parts)
    for kind in READ_TYPES:
        assert joined.by_type[kind].equals(rows[kind]), kind
    assert joined.exchanges == tuple(sorted(events["exchange"].unique().to_list()))


def test_snapshot_figures_of_chunks_are_those_of_the_whole_tables(tmp_path):
    config = load_config(ROOT / "examples/demo.toml", out=str(tmp_path))
    run = open_run(execute(config, run_id="run", keep_result=False).path)
    tables = {name: getattr(run, name).collect() for name in ("collateral", "positions", "equity")}
    whole = snapshot_figures(tables["equity"], tables["collateral"], tables["positions"])
    reduction = SnapshotReduction()
    moments = tables["equity"]["events_applied"].unique().sort()
    edges = [moments[i] for i in range(0, len(moments), 37)] + [moments[-1] + 1]
    for low, high in zip(edges, edges[1:]):
        part = {name: frame.filter(pl.col("events_applied").is_between(low, high, closed="left"))
                for name, frame in tables.items()}
        reduction.add(part["collateral"], part["positions"], part["equity"])
    parts = reduction.figures()
    assert len(edges) > 20
    assert parts.exchanges == whole.exchanges
    for name in ("equity_by_account", "exposure", "coins"):  # per snapshot: every row
        a, b = getattr(parts, name), getattr(whole, name)
        key = [c for c in ("exchange", "events_applied", "ts", "reason", "underlying", "asset") if c in a.columns]
        assert a.sort(key, maintain_order=True).equals(b.sort(key, maintain_order=True)), name
    picks = {"headroom": ("margin_ratio", True), "tightest": ("liquidation_distance", False),
             "peak_committed": ("committed", True)}
    for name, (column, descending) in picks.items():  # candidates: the parts' picks pick the whole's
        a, b = getattr(parts, name), getattr(whole, name)
        assert a.height > b.height > 0, name
        assert _first_per_exchange(a, column, descending).sort("exchange").equals(b.sort("exchange")), name
