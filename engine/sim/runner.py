"""The library entry point for a whole run: backtest, summarise, write the run folder."""

from __future__ import annotations

from pathlib import Path

import attrs
import polars as pl

from xmargin.output.eventlog import events_to_table
from xmargin.sim.loop import Backtest, RunResult, few_collections
from xmargin.output.snapshots import collateral_table, positions_table
from xmargin.output.writer import equity_table, run_id_for, run_meta, write_run_folder
from xmargin.analysis.summary import summarize


@attrs.frozen
class Completed:
    path: Path
    summary: dict
    result: RunResult = attrs.field(repr=False)


def summary_for(result: RunResult, run_id: str = "") -> dict:
    """The run summary from the in-memory tables (each built once per result)."""
    return summarize(pl.from_arrow(events_to_table(result.events)), pl.from_arrow(equity_table(result)),
                     run_meta(result, run_id), collateral=pl.from_arrow(collateral_table(result)),
                     positions=pl.from_arrow(positions_table(result)))


def execute(config, out: Path | None = None, run_id: str | None = None, progress: bool = False,
            extra_manifest: dict | None = None, **backtest_options) -> Completed:
    """Run a validated config and write `<out>/<run-id>/`; returns the folder and the summary."""

    out = Path(out or config.out)
    result = Backtest(config, progress=progress, **backtest_options).run()
    out.mkdir(parents=True, exist_ok=True)
    run_id = run_id or run_id_for(config, out)
    with few_collections():
        path, summary = write_run_folder(result, out=out, run_id=run_id, extra_manifest=extra_manifest)
    return Completed(path=path, summary=summary, result=result)
