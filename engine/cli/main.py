"""The `xmargin` command: one click group, thin commands over the library API.

Exit status of every command: 0 done; 1 the work failed on its own terms (a dataset that does not
validate, a strategy that raised or returned something that is not a command, `verify` finding a
difference); 2 the input was refused before anything was done (config, rule file, dataset.toml,
run folder, command-line usage).
"""

from __future__ import annotations

import atexit
import gc
import sys
import traceback

import click

from xmargin.errors import StrategyError, XmarginError, strategy_failure

PATH_ERRORS = (FileNotFoundError, PermissionError, NotADirectoryError, IsADirectoryError)


class _Group(click.Group):
    """Prints XmarginError messages without a traceback and exits 2 (input refused), likewise a file or
    folder that cannot be read or written (an --out under a missing or read-only folder), naming the
    path; a strategy's error prints the user's traceback first and exits 1."""

    def main(self, args=None, *more, **options):
        """The command line (`xmargin ...`, `python -m xmargin ...`: no `args`, they are read from
        sys.argv): the objects still alive when the process ends are frozen out of the collector
        first (after every other exit handler), so the interpreter's closing collections do not
        traverse them only to exit (about 0.1 s after a year-long run). Called with `args` (tests,
        click's CliRunner, a program), nothing changes."""
        if args is None:
            atexit.register(gc.freeze)
        return super().main(args, *more, **options)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except StrategyError as exc:
            cause = exc.__cause__
            if cause is not None:
                click.echo("".join(traceback.format_exception(type(cause), cause, cause.__traceback__)).rstrip(),
                           err=True)
            click.echo(f"error: {exc}\nNo run folder was written.", err=True)
            sys.exit(1)
        except XmarginError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except Exception as exc:
            message = strategy_failure(exc)
            if message is None:
                if isinstance(exc, PATH_ERRORS) and exc.filename is not None:  # a path the user gave
                    click.echo(f"error: {exc.filename}: {exc.strerror or exc}; check the path (its folder must "
                               "exist and be writable for outputs).", err=True)
                    sys.exit(2)
                raise
            click.echo("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip(), err=True)
            click.echo(f"error: {message}\nNo run folder was written.", err=True)
            sys.exit(1)


@click.group(cls=_Group)
@click.version_option(package_name="xmargin")
def main():
    """Backtest crypto-derivatives hedges across exchange collateral silos."""


def _register():
    from xmargin.cli.data import data
    from xmargin.cli.rules import rules
    from xmargin.cli.run import register

    main.add_command(data)
    main.add_command(rules)
    register(main)
    from xmargin.cli.analysis import register as register_analysis

    register_analysis(main)
    from xmargin.cli.report import report

    main.add_command(report)
    from xmargin.cli.sweep import sweep

    main.add_command(sweep)


_register()
