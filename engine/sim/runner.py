"""The library entry point for a whole run: backtest, summarise, write the run folder."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import attrs
import polars as pl

from xmargin.output.eventlog import events_to_table
from xmargin.sim.loop import Backtest, RunResult
from xmargin.output.snapshots import collateral_table, positions_table
from xmargin.output.writer import equity_table, reserve_run, run_id_for, write_run
from xmargin.analysis.summary import summarize
from xmargin.sim.strategy import build_strategy


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")


@attrs.frozen
class Completed:
    path: Path
    summary: dict
    result: RunResult = attrs.field(repr=False)


def summary_for(result: RunResult, run_id: str = "") -> dict:
    feed = result.feed
    meta = {"run_id": run_id, "strategy": result.config.strategy, "start": _iso(int(feed.ts[0])),
            "end": _iso(int(feed.ts[-1]) + feed.bar_ns), "bars": feed.bars, "instruments": list(feed.keys),
            "events": len(result.events), "run_seconds": result.timings["run_seconds"],
            "load_seconds": result.timings["load_seconds"],
            "margin_modes": {n: v.margin_mode for n, v in result.catalog.venues.items()},
            "mark_price_source": dict(feed.mark_source),
            "input_warnings": list(result.warnings)}  # summarize adds them to `warnings`
    return summarize(pl.from_arrow(events_to_table(result.events)), pl.from_arrow(equity_table(result)), meta,
                     collateral=pl.from_arrow(collateral_table(result)),
                     positions=pl.from_arrow(positions_table(result)),
                     one_legged_ratio=result.config.one_legged_ratio,
                     one_legged_after_hours=result.config.one_legged_after_ns / 3.6e12)


def execute(config, out: Path | None = None, run_id: str | None = None, progress: bool = False,
            extra_manifest: dict | None = None, warnings=(), **backtest_options) -> Completed:
    """Run a validated config and write `<out>/<run-id>/`; returns the folder and the summary.

    The run folder is claimed before anything is computed (an existing id, a folder another run
    is writing, an unwritable output folder are refused up front) and released if the run fails.
    `warnings`: the dataset validation's Problems; those about the instruments the run trades are
    repeated in the summary with the run's own."""
    out = Path(out or config.out)
    if backtest_options.get("strategy") is None:  # a bad strategy reference or params: refused before any folder
        backtest_options["strategy"] = build_strategy(config.strategy, config.params, config.folder)
    reservation = reserve_run(out, run_id or run_id_for(config, out))
    try:
        result = Backtest(config, progress=progress, input_warnings=warnings, **backtest_options).run()
        summary = summary_for(result, reservation.run_id)
        path = write_run(result, summary, extra_manifest=extra_manifest, reservation=reservation)
    finally:
        reservation.release()
    return Completed(path=path, summary=summary, result=result)
