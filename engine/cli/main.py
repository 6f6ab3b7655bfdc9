"""The `xmargin` command: one click group, thin commands over the library API."""

from __future__ import annotations

import sys

import click

from xmargin.errors import XmarginError


class _Group(click.Group):
    """Prints XmarginError messages without a traceback and exits 2 (usage/config problem)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except XmarginError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)


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


_register()
