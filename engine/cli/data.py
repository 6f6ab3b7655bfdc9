"""`xmargin data ...`: validate, info, synth and import, thin wrappers over the library."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from xmargin.dataset.validate import DEFAULT_MARK_DEVIATION, DEFAULT_MAX_FUNDING_RATE, validate_dataset


def _csv(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


@click.group()
def data():
    """Market datasets: check, describe, generate and import them."""


@data.command()
@click.argument("path", type=click.Path(file_okay=False, path_type=Path))
@click.option("--max-funding-rate", default=DEFAULT_MAX_FUNDING_RATE, show_default=True, type=float,
              help="Largest plausible |funding rate| per interval, as a fraction (0.05 = 5 %); beyond is an error.")
@click.option("--mark-threshold", default=DEFAULT_MARK_DEVIATION, show_default=True, type=float,
              help="Warn where |mark close / last close - 1| exceeds this at the same timestamp.")
@click.option("--limit", default=5, show_default=True, type=int, help="Rows listed per check before '... and N more'.")
def validate(path, max_funding_rate, mark_threshold, limit):
    """Check the dataset folder PATH (dataset.toml and its Parquet tables).

    Every problem names the file, instrument, timestamp or row, column, what is wrong and how
    to fix it. Warnings (gaps, mark far from last, ...) do not make a dataset unusable.

    \b
    Exit status:
      0  usable (no errors; warnings allowed)
      1  not usable (at least one error)
    """
    report = validate_dataset(path, max_funding_rate=max_funding_rate, mark_threshold=mark_threshold,
                              listed_per_check=limit)
    click.echo(report.format())
    sys.exit(0 if report.ok else 1)


@data.command()
@click.argument("path", type=click.Path(file_okay=False, path_type=Path))
def info(path):
    """Describe the dataset PATH: instruments, ranges, row counts per kind, gaps, funding spacings."""
    from xmargin.dataset.info import dataset_info, format_info

    click.echo(format_info(path, dataset_info(path)))


@data.command()
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--days", default=30, show_default=True, type=click.IntRange(min=1), help="Length in days.")
@click.option("--timeframe", default="1m", show_default=True, help="Bar length: 1m, 5m, 1h, ...")
@click.option("--seed", default=7, show_default=True, type=int, help="Random seed; same seed, same bytes.")
@click.option("--exchanges", default="binance,hyperliquid", show_default=True,
              help="Comma-separated exchanges; each gets perps, the first also spot.")
@click.option("--assets", default="BTC,ETH,SOL", show_default=True, help="Comma-separated base assets.")
@click.option("--start", default="2024-01-01", show_default=True, help="First bar (UTC date).")
@click.option("--chunk-days", default=31, show_default=True, type=click.IntRange(min=1),
              help="Days generated and written per Parquet file (bounds memory).")
@click.option("--force", is_flag=True, help="Replace OUT if it already exists.")
@click.option("--futures-from", "futures_from", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="Derive quarterly dated futures from the real spot of this dataset (see --spot) instead.")
@click.option("--spot", default=None, help="With --futures-from: the spot key, e.g. binance:BTC/USDT.")
@click.option("--basis-apr", default=0.08, show_default=True, type=float,
              help="With --futures-from: long-run annualised basis of the futures over spot (0.08 = 8 %/yr).")
@click.option("--basis-volatility", default=0.04, show_default=True, type=float,
              help="With --futures-from: stationary standard deviation of the annualised basis.")
def synth(out, days, timeframe, seed, exchanges, assets, start, chunk_days, force, futures_from, spot, basis_apr,
          basis_volatility):
    """Generate a deterministic synthetic dataset into the folder OUT.

    Correlated fat-tailed returns with jumps, per-exchange perps (USDT-linear on CEX names,
    USDC on hyperliquid) with a mean-reverting basis, spot on the first exchange, mark around
    last, and mean-reverting funding (8h on CEX, 1h on hyperliquid).

    With --futures-from DATASET --spot KEY: quarterly futures (last Friday of Mar/Jun/Sep/Dec,
    08:00 UTC) derived from that real spot with a mean-reverting annualised basis that decays to
    zero at expiry, plus the real spot and perps of that exchange and asset copied unchanged, over
    --start and --days; the dataset is marked synthetic (docs/dated-futures.md).
    """
    from xmargin.dataset.synth import SynthParameters, synthesize

    if futures_from is not None:
        from xmargin.dataset.synth_futures import FuturesParameters, synthesize_futures

        if not spot:
            raise click.UsageError("--futures-from needs --spot, e.g. --spot binance:BTC/USDT")
        rows = synthesize_futures(futures_from, out, FuturesParameters(
            spot=spot, start=start, days=days, seed=seed, basis_apr=basis_apr, basis_volatility=basis_volatility),
            overwrite=force)
        click.echo(f"wrote {out}: {rows} rows (quarterly futures derived from {spot}; kind = synthetic)")
        return
    parameters = SynthParameters(days=days, timeframe=timeframe, seed=seed, exchanges=_csv(exchanges),
                                 assets=_csv(assets), start=start, chunk_days=chunk_days)
    written = synthesize(out, parameters, overwrite=force)
    click.echo(f"wrote {out}: {written.rows_by_kind} rows in {written.files} Parquet files")


@data.command(name="import")
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Dataset folder to create (or merge into when it already holds a dataset.toml).")
@click.option("--exchange", default=None,
              help="Exchange name; default: taken from the path (e.g. user_data/data/binance/...) else binance.")
@click.option("--kind", type=click.Choice(["bars", "mark", "index", "funding"]), default=None,
              help="Override the table kind inferred from the file name.")
@click.option("--market", type=click.Choice(["spot", "perp"]), default=None,
              help="Override the market inferred from the file name or folder.")
@click.option("--symbol", default=None,
              help="Override the ccxt symbol (e.g. BTC/USDT:USDT: the settle asset); one instrument only, of the "
                   "pair the file names state.")
@click.option("--timeframe", default=None,
              help="Import only the files of this timeframe (e.g. 1h; funding files are kept). Files keep the "
                   "timeframe their name states: it never relabels them.")
@click.option("--name", default=None, help="Dataset name for a new dataset.toml (default: the folder name).")
@click.option("--metadata", "metadata", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A venue metadata dump (exchangeInfo, load_markets, instruments-info, ...; see `xmargin rules "
                   "import --help`) giving the instruments' lot size, tick size and minimum notional. Repeatable.")
def import_(sources, out, exchange, kind, market, symbol, timeframe, name, metadata):
    """Import SOURCE files or folders into the dataset --out.

    \b
    Layouts understood (inferred from file names):
      freqtrade / ccxt: BTC_USDT_USDT-1h-futures.feather, -mark, -funding_rate, BTC_USDT-1h.feather
                        (spot), in .feather, .parquet, .json or .json.gz (jsongz)
      data.binance.vision: BTCUSDT-1h-2024-01.csv|zip (klines; under markPriceKlines/ -> mark),
                        BTCUSDT-fundingRate-2024-01.csv|zip
    Folders are searched recursively for such files. A folder holding several timeframes
    (5m and 1h bars, 1h and 8h marks) gives one table per timeframe; a run picks one with
    run.timeframe.
    """
    from xmargin.dataset.importers import ImportOptions, import_files

    options = ImportOptions(exchange=exchange, kind=kind, market=market, symbol=symbol, timeframe=timeframe)
    result = import_files(list(sources), out, options=options, name=name)
    for line in result.lines():
        click.echo(line)
    if metadata:
        from xmargin.dataset.filters import apply_market_filters
        from xmargin.venues.metadata import read_metadata

        for venue in sorted({i.exchange for i in result.instruments}):
            for line in apply_market_filters(out, read_metadata(metadata, venue), venue).lines():
                click.echo(line)
