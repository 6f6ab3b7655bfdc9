"""CLI commands over the run API: `run`, `verify`, `runs list`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from xmargin.config import load_config


def _load(config_path, sets, margin_modes, start, end, out, seed, skip_validation=False, with_warnings=False):
    """The validated config; unless `skip_validation`, its dataset is checked first (as
    `xmargin data validate` does) and an unusable one stops here with its problems listed.
    With `with_warnings`, returns (config, the validation's warnings) for the run summary."""
    config = _config(config_path, sets, margin_modes, start, end, out, seed)
    warnings = _checked_dataset(config, skip_validation)
    return (config, warnings) if with_warnings else config


def _config(config_path, sets, margin_modes, start, end, out, seed):
    return load_config(config_path, sets=sets, margin_modes=margin_modes, start=start, end=end,
                       out=str(out) if out else None, seed=seed)


def _checked_dataset(config, skip_validation: bool) -> tuple:
    """The dataset validation's warnings (none when skipped); an unusable dataset exits 1 with its errors."""
    if skip_validation:
        return ()
    from xmargin.dataset.checked import validate_dataset_cached

    report = validate_dataset_cached(config.dataset)
    if not report.ok:
        for problem in report.errors:
            click.echo(str(problem), err=True)
        click.echo(f"error: dataset {config.dataset} is not usable ({len(report.errors)} errors above); fix "
                   "them (see `xmargin data validate`) or pass --no-validate to run anyway.", err=True)
        sys.exit(1)
    return report.warnings


def _prefetched_fingerprint(folder):
    """A thread computing `xmargin.dataset.feed.fingerprint(folder)` into its per-process cache."""
    import threading

    from xmargin.dataset.feed import fingerprint

    def work():
        try:
            fingerprint(folder)
        except Exception:  # noqa: BLE001 - an unreadable dataset: the validation or the load says so
            pass

    thread = threading.Thread(target=work, name="xmargin-fingerprint", daemon=True)
    thread.start()
    return thread


def config_options(function):
    """The config overrides shared by run, compare and stress."""
    options = [
        click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                     help="Override a config value, e.g. --set strategy.params.notional_usd=20000 (repeatable)."),
        click.option("--margin-mode", "margin_modes", multiple=True, metavar="EXCHANGE=MODE",
                     help="Override an exchange's margin mode, e.g. --margin-mode binance=isolated."),
        click.option("--start", help="Start of the run (ISO date or datetime, UTC, inclusive)."),
        click.option("--end", help="End of the run (ISO date or datetime, UTC, exclusive)."),
        click.option("--out", type=click.Path(file_okay=False, path_type=Path),
                     help="Folder that receives the run folder (default: run.out, else runs/)."),
        click.option("--seed", type=int, help="Seed handed to the run (overrides run.seed)."),
        click.option("--no-validate", "skip_validation", is_flag=True,
                     help="Skip checking the dataset before the run (it is checked by default, as by "
                          "`xmargin data validate`; an unusable dataset stops the command with exit 1; the report is "
                          "reused while the dataset's bytes and xmargin are unchanged)."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


@click.command()
@click.argument("config_path", metavar="CONFIG.toml", type=click.Path(exists=True, dir_okay=False))
@config_options
@click.option("--run-id", help="Name of the run folder (default: <name or strategy>-<UTC time>).")
@click.option("--quiet", is_flag=True, help="No progress line.")
@click.option("--strict", is_flag=True,
              help="Exit 1 when an order was rejected or a hedge was left one-legged (also run.strict = true).")
def run(config_path, sets, margin_modes, start, end, out, seed, skip_validation, run_id, quiet, strict):
    """Run a backtest from CONFIG.toml and write runs/<run-id>/."""
    config = _config(config_path, sets, margin_modes, start, end, out, seed)
    # the dataset's bytes are hashed (the validation cache's key, the manifest's fingerprint) while
    # the run's modules are imported: hashing and reading release the GIL
    hashing = _prefetched_fingerprint(config.dataset)
    from xmargin.sim.runner import execute
    from xmargin.sim.strategy import build_strategy
    from xmargin.analysis.summary import format_summary, problems

    # the strategy (reference and params) is part of the config: refused without waiting for the hash
    strategy = build_strategy(config.strategy, config.params, config.folder)
    hashing.join()
    warnings = _checked_dataset(config, skip_validation)
    completed = execute(config, run_id=run_id, progress=not quiet and sys.stderr.isatty(), warnings=warnings,
                        strategy=strategy, keep_result=False)
    click.echo(format_summary(completed.summary, completed.path))
    found = problems(completed.summary)
    if found and (strict or config.strict):
        for problem in found:
            click.echo(f"strict: {problem}", err=True)
        click.echo("error: strict run with rejected orders or a one-legged hedge (the run folder is written).",
                   err=True)
        sys.exit(1)


@click.command()
@click.argument("run_path", metavar="RUN", type=click.Path(exists=True, file_okay=False))
def verify(run_path):
    """Replay RUN's event log and check state, projections, money conservation and the log hash.

    Exits 0 when everything matches, 1 and says what differs otherwise."""
    from xmargin.output.results import open_run
    from xmargin.output.verify import summary_note, valuation_note, verify_run

    problems = verify_run(run_path)
    run = open_run(run_path)
    for note in (summary_note(run), valuation_note(run)):
        if note:
            click.echo(f"note: {note}", err=True)
    if problems:
        for problem in problems:
            click.echo(f"MISMATCH: {problem}", err=True)
        sys.exit(1)
    click.echo(f"ok: {run_path} replays to its recorded state; projections, wallet history, money conservation "
               "and the log hash all match")


@click.group()
def runs():
    """Finished runs."""


@runs.command("list")
@click.option("--root", default="runs", show_default=True, type=click.Path(file_okay=False))
def runs_list(root):
    """List runs under ROOT with their headline numbers."""
    import polars as pl

    from xmargin.output.results import list_runs

    table = list_runs(root)
    if table.height == 0:
        click.echo(f"no finished runs under {root}/")
        return
    with pl.Config(tbl_rows=200, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True,
                   float_precision=2, tbl_width_chars=160):
        click.echo(str(table))


def register(group) -> None:
    for command in (run, verify, runs):
        group.add_command(command)
