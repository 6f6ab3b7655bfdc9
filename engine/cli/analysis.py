"""CLI commands over the analysis API: `compare` (margin set-ups), `stress` (shock scenarios) and
`capital` (least collateral per exchange)."""

from __future__ import annotations

import sys

import click

from xmargin.cli.run import _load, config_options


@click.command()
@click.argument("config_path", metavar="CONFIG.toml", type=click.Path(exists=True, dir_okay=False))
@config_options
@click.option("--modes", "modes", metavar="SETUPS",
              help="Margin set-ups: 'isolated,cross' (each mode on every exchange), "
                   "'binance=cross,hyperliquid=isolated' (one set-up), several separated by ';'.")
@click.option("--setup", "setup_list", multiple=True, metavar="SETUP",
              help="One set-up (a mode, or EXCHANGE=MODE,...); repeatable; added after --modes.")
@click.option("--id", "compare_id", help="Name of the comparison folder (default: compare-<name>-<UTC time>).")
@click.option("--quiet", is_flag=True, help="No progress line.")
def compare(config_path, sets, margin_modes, start, end, out, seed, skip_validation, modes, setup_list, compare_id,
            quiet):
    """Run CONFIG.toml under several margin set-ups and compare them.

    Each set-up is a run folder <out>/<compare-id>/<setup>/; the comparison is comparison.arrow
    (one row per set-up) and comparison.json (with where and why the runs diverge)."""
    from xmargin.analysis.compare import compare as run_compare
    from xmargin.analysis.compare import format_comparison

    config = _load(config_path, sets, margin_modes, start, end, out, seed, skip_validation)
    setups = ([modes] if modes else []) + list(setup_list)
    if not setups:
        raise click.UsageError("give the set-ups with --modes (e.g. --modes isolated,cross) or --setup.")
    table, notes = run_compare(config, setups, out=config.out, compare_id=compare_id,
                               progress=not quiet and sys.stderr.isatty())
    from pathlib import Path

    click.echo(format_comparison(table, notes, Path(table["path"][0]).parent))


@click.command()
@click.argument("config_path", metavar="CONFIG.toml", type=click.Path(exists=True, dir_okay=False))
@config_options
@click.option("--shock", "shocks", multiple=True, metavar="KIND:TARGET[:SIZE]@AT[/DURATION]",
              help="A shock, e.g. gap:binance:ETH/USDT:USDT:-20%@2025-02-03T00:00, "
                   "collateral-fall:ETH:-30%@2025-02-03, mark-divergence:binance:BTC/USDT:USDT:+5%@2025-02-03/6h, "
                   "funding-spike:hyperliquid:0.5%@2025-02-03/1d, withdrawal-halt:binance@2025-02-03/2d. "
                   "Repeatable: all --shock options together form one scenario.")
@click.option("--name", "scenario_name", default="shock", show_default=True,
              help="Name of the scenario formed by the --shock options.")
@click.option("--scenario", "scenario_names", multiple=True,
              help="Run only these scenarios of the config's [[stress]] tables (repeatable).")
@click.option("--no-baseline", is_flag=True, help="Do not run the unshocked baseline.")
@click.option("--id", "stress_id", help="Name of the stress folder (default: stress-<name>-<UTC time>).")
@click.option("--quiet", is_flag=True, help="No progress line.")
def stress(config_path, sets, margin_modes, start, end, out, seed, skip_validation, shocks, scenario_name,
           scenario_names, no_baseline, stress_id, quiet):
    """Run CONFIG.toml with shocks injected, next to an unshocked baseline.

    Scenarios: the --shock options (together, one scenario), else the config's [[stress]] tables
    (grouped by their `scenario` key). Prints per scenario PnL, liquidations and the tightest
    distance to liquidation, and which position raised the first warning and was liquidated
    first after the shock."""
    from pathlib import Path

    from xmargin.analysis.stress import format_stress, parse_shock, scenarios_from_config
    from xmargin.analysis.stress import stress as run_stress

    config = _load(config_path, sets, margin_modes, start, end, out, seed, skip_validation)
    if shocks:
        scenarios = {scenario_name: tuple(parse_shock(s) for s in shocks)}
    else:
        scenarios = scenarios_from_config(config.raw)
        if scenario_names:
            missing = [n for n in scenario_names if n not in scenarios]
            if missing:
                raise click.UsageError(f"no [[stress]] scenario {missing} in {config_path}; it has {sorted(scenarios)}.")
            scenarios = {n: scenarios[n] for n in scenario_names}
        if not scenarios:
            raise click.UsageError(f"no shocks: give --shock or add [[stress]] tables to {config_path}.")
    table, reports = run_stress(config, scenarios, out=config.out, stress_id=stress_id, baseline=not no_baseline,
                                progress=not quiet and sys.stderr.isatty())
    click.echo(format_stress(table, reports, Path(table["path"][0]).parent))




@click.command()
@click.argument("config_path", metavar="CONFIG.toml", type=click.Path(exists=True, dir_okay=False))
@config_options
@click.option("--level", default="liquidation", show_default=True, metavar="liquidation|warning|RATIO",
              help="Survive without reaching this margin ratio: liquidation (1), warning (the first "
                   "run.warning_thresholds) or a number in (0, 1].")
@click.option("--tolerance", default=0.01, show_default=True, type=float,
              help="Proof margin: a run at (1 - tolerance) x the amounts must fail.")
@click.option("--stress", "with_stress", is_flag=True,
              help="Also survive every [[stress]] scenario of the config (the worst case).")
@click.option("--id", "capital_id", help="Name of the output folder (default: capital-<name>-<UTC time>).")
@click.option("--quiet", is_flag=True, help="No trial-by-trial progress.")
def capital(config_path, sets, margin_modes, start, end, out, seed, skip_validation, level, tolerance, with_stress,
            capital_id, quiet):
    """The least starting collateral per exchange and asset with which CONFIG.toml's strategy has no
    liquidation and no margin rejection, proven by re-runs.

    Writes <out>/<capital-id>/: capital.arrow, capital.json and the proof run folders."""
    from xmargin.analysis.capital import capital as solve_capital
    from xmargin.analysis.capital import format_capital

    config = _load(config_path, sets, margin_modes, start, end, out, seed, skip_validation)
    result = solve_capital(config, level=level, tolerance=tolerance, stress=with_stress, out=config.out,
                           capital_id=capital_id, progress=not quiet and sys.stderr.isatty())
    click.echo(format_capital(result))
    unsolved = result.table.filter(result.table["required_collateral"].is_null())
    if unsolved.height:  # no amount answers the question: the command failed on its own terms
        click.echo(f"error: no collateral amount found for {', '.join(unsolved['exchange'] + ' ' + unsolved['asset'])} "
                   "(see the note above); exit 1.", err=True)
        sys.exit(1)


def register(group) -> None:
    for command in (compare, stress, capital):
        group.add_command(command)
