"""`xmargin sweep`: every combination of grid values, margin set-ups, collateral amounts and stress
scenarios of one config, on a local process pool or a Dask cluster, into one Parquet table."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from xmargin.cli.run import _load, config_options


class _Progress:
    """click's progress bar (already a dependency): runs done / to do, failed so far, ETA."""

    def __init__(self, enabled: bool):
        self.enabled, self.bar, self.failed, self.finished = enabled, None, 0, 0

    def start(self, total: int, done: int) -> None:
        if self.enabled and total:
            label = f"sweep ({done} done before)" if done else "sweep"
            self.bar = click.progressbar(length=total, label=label, show_eta=True, show_pos=True,
                                         item_show_func=self._status, file=sys.stderr)
            self.bar.__enter__()

    def advance(self, outcome) -> None:
        self.finished += 1
        self.failed += outcome.status == "failed"
        if self.bar is not None:
            self.bar.update(1, outcome)

    def _status(self, outcome) -> str | None:
        return f"failed {self.failed}" if outcome is not None else None

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


@click.command()
@click.argument("config_path", metavar="CONFIG.toml", type=click.Path(exists=True, dir_okay=False))
@config_options
@click.option("--grid", "grid", multiple=True, metavar="KEY=V1,V2",
              help="A config key and its values, e.g. --grid strategy.params.notional=20000,30000 (repeatable).")
@click.option("--modes", metavar="SETUPS", help="Margin set-ups as for compare: 'cross,isolated' or "
                                                "'binance=cross,hyperliquid=isolated;cross'.")
@click.option("--collateral", multiple=True, metavar="[EXCHANGE.ASSET=]V1,V2",
              help="Starting collateral amounts: of every exchange (one asset each) or of one balance.")
@click.option("--stress", multiple=True, metavar="SCENARIO",
              help="A scenario per option: baseline, a [[stress]] scenario name of the config, or shocks in the "
                   "--shock text form of `xmargin stress` (';' joins several into one scenario).")
@click.option("--keep", type=click.Choice(["none", "failed", "all"]),
              help="Which run folders stay under OUT/runs/ (default: [sweep].keep, else failed).")
@click.option("--executor", type=click.Choice(["local", "dask"]), default="local", show_default=True,
              help="local: a process pool on this machine; dask: a Dask distributed cluster (xmargin[dask]).")
@click.option("--workers", type=int, help="Local worker processes (default: the machine's cores; 1 runs the "
                                          "variants one after the other in this process).")
@click.option("--scheduler", metavar="tcp://HOST:PORT",
              help="The Dask scheduler (default: the DASK_SCHEDULER_ADDRESS environment variable).")
@click.option("--resume", is_flag=True, help="Finish the interrupted sweep in --out, skipping finished variants.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def sweep(config_path, sets, margin_modes, start, end, out, seed, skip_validation, grid, modes, collateral, stress,
          keep, executor, workers, scheduler, resume, quiet):
    """Run every variant of CONFIG.toml and write one results table.

    The variants are the product of the --grid values, --modes set-ups, --collateral amounts and
    --stress scenarios (and the config's [sweep] table). --out DIR is the sweep folder (default
    <run.out>/sweep-<name>-<UTC time>): DIR/sweep.parquet has one row per variant (its
    parameters, status, error and every summary figure, total and per exchange); read it with
    xmargin.open_sweep(DIR) or pl.scan_parquet. Ctrl-C stops it; --resume --out DIR finishes it."""
    import polars as pl

    from xmargin.output.writer import run_id_for
    from xmargin.analysis.executors import DaskExecutor, LocalPool
    from xmargin.analysis.sweep import JOURNAL, sweep as run_sweep
    from xmargin.analysis.variants import SerialExecutor

    config = _load(config_path, sets, margin_modes, start, end, out, seed, skip_validation)
    if resume and not out:
        raise click.UsageError("--resume needs --out DIR: the folder of the sweep to finish.")
    folder = Path(out) if out else Path(config.out) / run_id_for(config, Path(config.out), "sweep")
    if executor == "dask":
        pool = DaskExecutor(scheduler)
    elif workers == 1:
        pool = SerialExecutor()
    else:
        pool = LocalPool(workers)
    progress = _Progress(not quiet and sys.stderr.isatty())
    try:
        done = run_sweep(config, grid=grid, modes=modes, collateral=collateral, stress=stress, out=folder, keep=keep,
                         executor=pool, resume=resume, progress=progress)
    except KeyboardInterrupt:
        progress.close()
        click.echo(f"interrupted after {progress.finished} more variant(s); the finished ones are in "
                   f"{folder / JOURNAL}. Finish with the same command and --resume --out {folder}", err=True)
        sys.exit(130)
    finally:
        progress.close()
        if isinstance(pool, DaskExecutor):
            pool.close()
    table = done.results.collect()
    failed = table.filter(pl.col("status") == "failed")
    shown = [c for c in ["variant_id", *done.plan["parameters"], "status", "pnl", "fees", "funding", "liquidations",
                         "sharpe", "error"] if c in table.columns]
    with pl.Config(tbl_rows=40, tbl_cols=len(shown), tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True, float_precision=2,
                   tbl_width_chars=200, fmt_str_lengths=60):
        click.echo(str(table.select(shown)))
    click.echo(f"sweep {folder}: {table.height} variants, {table.height - failed.height} ok, {failed.height} failed; "
               f"results: {folder / 'sweep.parquet'} (xmargin.open_sweep or pl.scan_parquet)")
    if failed.height:  # the table is complete, but not every variant ran: say so to scripts too
        click.echo(f"error: {failed.height} of {table.height} variant(s) failed (status \"failed\", the message in "
                   "the error column); exit 1.", err=True)
        sys.exit(1)
