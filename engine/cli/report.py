"""CLI command over the report API: `report` (one self-contained HTML file with charts)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("folder", metavar="RUN|COMPARE|SWEEP|CAPITAL", type=click.Path(exists=True, file_okay=False,
                                                                             path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="The HTML file to write (default: FOLDER/report.html).")
def report(folder, out):
    """Write one self-contained HTML report (charts inline, nothing loaded from the network) of a run,
    a comparison, a sweep or a capital folder, and print its path. Needs `pip install 'xmargin[report]'`."""
    from xmargin.output.report import report as write_report

    path = write_report(folder, out)
    click.echo(f"report: {path} ({path.stat().st_size / 1e6:.1f} MB)")
