"""summary_from_folder reads the valuation tables a record batch at a time and reduces them as it goes
(xmargin.analysis.summary.figures_in_parts); its summary is the one of the whole tables, figure for
figure and bit for bit, however the batches fall."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest

import xmargin.output.writer as writer
from xmargin.analysis.summary import SNAPSHOT, summarize
from xmargin.config import load_config
from xmargin.output.results import open_run
from xmargin.sim.runner import execute

ROOT = Path(__file__).resolve().parents[1]


# rows per chunk: about 30 record batches of each valuation table (the examples hold 8,000-69,000 rows)
@pytest.mark.parametrize("example, rows", [("demo", 2_000), ("basis_carry", 400), ("core_hedge_isolated", 250),
                                           ("portfolio_basis", 400)])
def test_the_summary_of_batches_is_the_summary_of_the_whole_tables(monkeypatch, tmp_path, example, rows):
    monkeypatch.setattr(writer, "SNAPSHOT_ROWS", rows)  # many record batches
    config = load_config(ROOT / f"examples/{example}.toml", out=str(tmp_path))
    done = execute(config, run_id="run", keep_result=False)
    batches = {name: pa.ipc.open_file(str(done.path / f"{name}.arrow")).num_record_batches
               for name in ("equity", "collateral", "positions")}
    assert min(batches.values()) > 20, batches
    run = open_run(done.path)
    stored = json.loads((done.path / "summary.json").read_text())
    one_legged = stored["one_legged"]
    whole = summarize(run.events.collect(), run.equity.collect(), {}, collateral=run.collateral.collect(),
                      positions=run.positions.collect(), one_legged_ratio=one_legged["ratio"],
                      one_legged_after_hours=one_legged["after_hours"])
    derived = ("exchanges", "total", "exposure", "rejections")
    as_json = json.loads(json.dumps(writer.json_safe({k: whole[k] for k in derived})))
    assert {k: stored[k] for k in derived} == as_json


def test_a_part_never_splits_a_snapshot(monkeypatch, tmp_path):
    monkeypatch.setattr(writer, "SNAPSHOT_ROWS", 200)
    config = load_config(ROOT / "examples/basis_carry.toml", out=str(tmp_path))
    done = execute(config, run_id="run", keep_result=False)
    for name in ("equity", "collateral", "positions"):
        parts = list(writer._snapshot_parts(done.path, name))
        whole = pl.read_ipc(done.path / f"{name}.arrow").select(parts[0].columns)
        assert len(parts) > 10 and pl.concat(parts).equals(whole)
        owners = pl.concat([part.select(SNAPSHOT).unique().with_columns(pl.lit(n).alias("part"))
                            for n, part in enumerate(parts)])
        assert owners.group_by(SNAPSHOT).len()["len"].max() == 1, name  # each snapshot in one part only
