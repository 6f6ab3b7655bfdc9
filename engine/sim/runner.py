"""The library entry point for a whole run: backtest, summarise, write the run folder."""

from __future__ import annotations

import errno
from pathlib import Path

import attrs
import polars as pl

from xmargin.output.eventlog import EventFile, events_to_table
from xmargin.output.logtables import LogTables
from xmargin.sim.loop import Backtest, RunResult, few_collections
from xmargin.output.snapshots import collateral_table, positions_table
from xmargin.output.writer import (ValuationFile, disk_full, equity_table, reserve_run, run_id_for, run_meta,
                                   summary_options, write_run_folder)
from xmargin.analysis.summary import summarize
from xmargin.sim.strategy import build_strategy


@attrs.frozen
class Completed:
    path: Path
    summary: dict
    result: RunResult | None = attrs.field(repr=False)  # None when not kept (`execute(keep_result=False)`)


def summary_for(result: RunResult, run_id: str = "") -> dict:
    """The run summary from the in-memory tables (each built once per result); `execute` computes
    the same from the written files."""
    return summarize(pl.from_arrow(events_to_table(result.events)), pl.from_arrow(equity_table(result)),
                     run_meta(result, run_id), collateral=pl.from_arrow(collateral_table(result)),
                     positions=pl.from_arrow(positions_table(result)), **summary_options(result))


def execute(config, out: Path | None = None, run_id: str | None = None, progress: bool = False,
            extra_manifest: dict | None = None, warnings=(), keep_result: bool = True,
            **backtest_options) -> Completed:
    """Run a validated config and write `<out>/<run-id>/`; returns the folder and the summary.

    The run folder is claimed before anything is computed (an existing id, a folder another run
    is writing, an unwritable output folder are refused up front) and released if the run fails.
    `warnings`: the dataset validation's Problems; those about the instruments the run trades are
    repeated in the summary with the run's own. `keep_result=False`: the in-memory run is dropped
    as soon as its tables are written (the summary is computed without the snapshots and the
    price arrays in memory) and `Completed.result` is None: the command line's way."""
    out = Path(out or config.out)
    if backtest_options.get("strategy") is None:  # a bad strategy reference or params: refused before any folder
        backtest_options["strategy"] = build_strategy(config.strategy, config.params, config.folder)
    reservation = reserve_run(out, run_id or run_id_for(config, out))
    event_file = valuation_file = None
    try:
        try:
            # not kept: the log goes to the folder's events.arrow a record batch at a time during the run
            # (with the tables made from the log: each record batch is projected as it is written)
            event_file = None if keep_result else EventFile(reservation.partial / "events.arrow",
                                                            tables=LogTables(reservation.partial))
            # not kept either: the snapshots are valued into the folder's valuation tables a chunk at a time
            valuation_file = None if keep_result else ValuationFile(reservation.partial)
            backtest = Backtest(config, progress=progress, input_warnings=warnings, event_file=event_file,
                                scratch=reservation.out, valuation_file=valuation_file, **backtest_options)
            result = backtest.run()
        except OSError as exc:  # (writing events.arrow during the run)
            if exc.errno == errno.ENOSPC:
                raise disk_full(out) from exc
            raise
        del backtest
        with few_collections():  # the tables are written straight from the result, the summary from them
            path, summary = write_run_folder(result, extra_manifest=extra_manifest, reservation=reservation,
                                             release=not keep_result, progress=progress)
    except BaseException:
        if event_file is not None:  # failed at any stage: the files are closed before their folder goes
            event_file.abort()
        if valuation_file is not None:
            valuation_file.abort()
        raise
    finally:
        reservation.release()
    return Completed(path=path, summary=summary, result=result if keep_result else None)
