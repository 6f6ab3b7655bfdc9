"""The projection tables and the summary's rows made from the event log's record batches as they
are written (`xmargin.output.logtables.LogTables`): the same tables as the projections of the whole
log, however the batches cut it (a fill and its fee, a liquidation and the insurance fund's share, a
transfer sent and arrived batches apart), and without keeping the batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from polars.testing import assert_frame_equal

from xmargin.analysis.summary import READ_TYPES, log_figures, log_rows
from xmargin.config import load_config
from xmargin.output.eventlog import read_ipc
from xmargin.output.logtables import LogTables
from xmargin.output.tables import BY_NAME, OUTPUT_TABLES
from xmargin.sim.runner import execute

ROOT = Path(__file__).resolve().parents[1]
PROJECTIONS = [table for table in OUTPUT_TABLES if table.project is not None]


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> dict:
    """The event logs (Arrow) of examples with liquidations (hold, core_hedge_isolated) and
    transfers (funding_arbitrage)."""
    out = tmp_path_factory.mktemp("runs")
    return {name: read_ipc(execute(load_config(ROOT / f"examples/{name}.toml"), out=out, run_id=name,
                                   keep_result=False).path / "events.arrow")
            for name in ("hold", "core_hedge_isolated", "funding_arbitrage")}


def _fed(log: pa.Table, folder: Path, batch: int):
    folder.mkdir()
    tables = LogTables(folder)
    for start in range(0, log.num_rows, batch):
        tables.add(log.slice(start, batch))
    return tables.finish()


def _files(folder: Path) -> dict:
    return {table.name: pl.read_ipc(folder / table.file) for table in PROJECTIONS}


def _expected(log: pa.Table) -> dict:
    whole = pl.from_arrow(log).lazy()
    return {table.name: pl.from_arrow(table.conform(table.project(whole).collect().to_arrow()))
            for table in PROJECTIONS}


@pytest.mark.parametrize("batch", [1, 2, 7, 1_000_000])
@pytest.mark.parametrize("name", ["hold", "core_hedge_isolated", "funding_arbitrage"])
def test_the_tables_of_batches_are_the_projections_of_the_whole_log(logs, tmp_path, name, batch):
    log = logs[name]
    written, summary = _fed(log, tmp_path / "run", batch)
    assert written == sorted(table.name for table in PROJECTIONS)
    files, expected = _files(tmp_path / "run"), _expected(log)
    for table in PROJECTIONS:
        assert_frame_equal(files[table.name], expected[table.name])
    assert sum(files[n].height for n in ("liquidations", "transfers")) > 0  # (the cases the batches split)
    if batch == 1:  # each fill's fee came in the next batch: the fills waited for their moment's end
        fills = files["fills"]
        assert fills.height and fills["fee"].null_count() == 0
    whole = log_figures([log_rows(pl.from_arrow(log))])
    for kind, frame in whole.by_type.items():
        if kind in READ_TYPES:  # every row, in order
            assert summary.by_type[kind].equals(frame), kind
        else:  # the exchanges and instruments named (first rows per part)
            named = ("exchange", "instrument")
            assert summary.by_type[kind].select(named).unique().sort(named).equals(frame.select(named).sort(named))
    assert summary.exchanges == whole.exchanges


def test_a_log_whose_times_are_not_in_order_is_projected_whole(logs, tmp_path):
    """The rows of a moment are then not together: the batches wait, and the end projects them all,
    as `verify` does."""
    log = logs["hold"]
    order = np.random.default_rng(7).permutation(log.num_rows)
    shuffled = log.set_column(log.schema.get_field_index("ts"), "ts", log.column("ts").take(pa.array(order)))
    _fed(shuffled, tmp_path / "run", 5)
    files, expected = _files(tmp_path / "run"), _expected(shuffled)
    for table in PROJECTIONS:
        assert_frame_equal(files[table.name], expected[table.name])
    assert pa.ipc.open_file(str(tmp_path / "run" / BY_NAME["funding"].file)).num_record_batches == 1


def test_the_rows_kept_do_not_keep_the_batches(logs, tmp_path):
    """Text taken from a batch is views into the batch's buffers: rows kept for the end (the
    summary's, the transfers') are stored as categories, so the batches go once taken."""
    log = logs["funding_arbitrage"]
    sizes = []
    tables = LogTables(tmp_path)
    before = pa.total_allocated_bytes()
    for start in range(0, log.num_rows, 50):
        sink = pa.BufferOutputStream()  # a batch in buffers of its own, as the writer's are
        with pa.ipc.new_stream(sink, log.schema) as stream:
            stream.write_table(log.slice(start, 50))
        batch = pa.ipc.open_stream(sink.getvalue()).read_all()
        sizes.append(batch.nbytes)
        tables.add(batch)
        del batch, sink
    held = pa.total_allocated_bytes() - before
    assert len(sizes) > 25
    assert held < 3 * max(sizes), (held, max(sizes))  # the last batch or two (its moment waits), not all
    tables.finish()


def test_a_failure_at_the_end_closes_the_files(logs, tmp_path, monkeypatch):
    """A failed finish closes what it wrote (its folder is removed next): no file is left open."""
    import xmargin.output.logtables as logtables

    def failing(parts):
        raise RuntimeError("summary rows")

    tables = LogTables(tmp_path)
    tables.add(logs["hold"].slice(0, 200))
    monkeypatch.setattr(logtables, "log_figures", failing)
    with pytest.raises(RuntimeError, match="summary rows"):
        tables.finish()
    assert pl.read_ipc(tmp_path / "funding.arrow").height > 0  # closed: its footer is written


def test_an_interrupt_after_the_log_is_written_closes_the_table_files(tmp_path, monkeypatch):
    # the kept path (`xmargin.run`) writes events.arrow with its `LogTables`, then hashes it: an
    # interrupt there left fills/funding/liquidations.arrow open (held by the traceback) while the
    # folder was removed
    from xmargin.output import writer

    def interrupted(self, path):
        if path.name == "events.arrow":
            raise KeyboardInterrupt
    monkeypatch.setattr(writer._FileHashes, "add", interrupted)
    with pytest.raises(KeyboardInterrupt) as caught:
        execute(load_config(ROOT / "examples/hold.toml"), out=tmp_path, run_id="interrupted")
    fds = Path("/proc/self/fd")
    if not fds.is_dir():
        pytest.skip("no /proc/self/fd to list open files")
    held = []
    for fd in fds.iterdir():
        try:
            target = str(fd.readlink())
        except OSError:
            continue
        if target.startswith(str(tmp_path)):
            held.append(target)
    assert caught.traceback and held == [] and list(tmp_path.iterdir()) == []
