"""The tables made from the event log while it is written, so that a run never reads its log back.

`EventFile` hands over each record batch it writes. `LogTables` keeps the batch's rows of whole
moments (one `ts`; the rows of the batch's last moment wait for the next batch) and from them:
- appends the projections of those rows to fills, funding and liquidations (a fill and its fee, a
  liquidation and the insurance fund's share are events of one moment);
- keeps the rows of the projections that span moments (`OutputTable.gathered`: a transfer's sending
  and its arrival), projected once at the end;
- keeps the rows the summary reads (`xmargin.analysis.summary.log_rows`), by event type.
Memory holds one batch's columns, the gathered rows and the summary's rows, not the log. A log whose
times are not in order is projected whole at the end (the rows of one moment may then be apart).
`xmargin verify` recomputes every projection from the whole log and compares.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from xmargin._frames import as_text, stored
from xmargin.analysis.summary import COLUMNS as SUMMARY_COLUMNS, LogFigures, log_figures, log_rows
from xmargin.output.eventlog import event_schema
from xmargin.output.projections import COLUMNS as PROJECTED_COLUMNS
from xmargin.output.tables import OUTPUT_TABLES, TableFiles

_PROJECTIONS = tuple(table for table in OUTPUT_TABLES if table.project is not None)
_COLUMNS = tuple(dict.fromkeys((*PROJECTED_COLUMNS, *SUMMARY_COLUMNS["events"])))  # read from each batch


def _last_moment_start(times: np.ndarray) -> int:
    """The index of the first row of the last moment of `times` (sorted, ns; 0 when empty): the rows
    before it are whole moments."""
    return int(np.searchsorted(times, times[-1], side="left")) if len(times) else 0


class LogTables:
    """The projection tables, appended to their files in `folder` as the log's batches come
    (`add`), and the summary's rows of the log (`finish`)."""

    def __init__(self, folder: Path):
        self._files = TableFiles(folder)
        self._held = pl.from_arrow(event_schema().empty_table().select(_COLUMNS))
        self._gathered: dict[str, list] = {table.name: [] for table in _PROJECTIONS if table.gathered}
        self._summary: list[dict] = []  # `log_rows` of each part

    def add(self, batch: pa.Table) -> None:
        """Take a record batch of the log (the events following those taken, `event_schema` columns)."""
        rows = pl.concat([self._held, pl.from_arrow(batch.select(_COLUMNS))], rechunk=False)
        times = rows["ts"].to_physical().to_numpy()
        # unordered times: everything waits for the end, where the rows are projected together
        cut = _last_moment_start(times) if not len(times) or bool(np.all(times[1:] >= times[:-1])) else 0
        self._held = rows[cut:]
        if cut:
            self._take(rows[:cut])

    def _take(self, rows: pl.DataFrame, last: bool = False) -> None:
        """Rows of whole moments: projected or gathered, and their summary rows kept. `last`: the
        log's end, where a table without rows gets its file (with its schema)."""
        moments = [table for table in _PROJECTIONS if not table.gathered]
        lazy = rows.lazy()
        for table, projected in zip(moments, pl.collect_all([table.project(lazy) for table in moments])):
            if projected.height or (last and table.name not in self._files.written):
                self._files.append({table.name: projected.to_arrow()})
        for table in _PROJECTIONS:
            if table.gathered:
                self._gathered[table.name].append(stored(rows.filter(pl.col("type").is_in(table.gathered))))
        self._summary.append(log_rows(stored(rows.select(SUMMARY_COLUMNS["events"]))))

    def finish(self) -> tuple[list[str], LogFigures]:
        """Project the rows still held and the gathered ones, close the files: (the tables written,
        what the summary reads of the log)."""
        try:
            held, self._held = self._held, self._held.clear()
            self._take(held, last=True)
            for table in _PROJECTIONS:
                if table.gathered:
                    rows = as_text(pl.concat(self._gathered.pop(table.name), rechunk=True))
                    self._files.append({table.name: table.project(rows.lazy()).collect().to_arrow()})
            summary, self._summary = log_figures(self._summary), []
            return self._files.close(), summary
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Close the files without finishing (a failed run: its folder is removed)."""
        self._gathered, self._summary = {}, []
        try:
            self._files.close()
        except Exception:  # noqa: BLE001 - already failing; the folder goes
            pass
