"""`xmargin rules ...`: exchange rule files from the venues' own metadata, a thin wrapper over the library."""

from __future__ import annotations

from pathlib import Path

import click

from xmargin.errors import RulesError


def _prices(values) -> dict:
    out = {}
    for item in values:
        asset, _, price = item.partition("=")
        try:
            out[asset.strip()] = float(price)
        except ValueError:
            raise RulesError(f"--reference-price {item!r}: expected ASSET=PRICE, e.g. BTC=60000.") from None
    return out


@click.group()
def rules():
    """Exchange rule files (leverage brackets, fees, funding, liquidation)."""


@rules.command()
@click.argument("rule_sets", nargs=-1, required=True)
def check(rule_sets):
    """Load RULE_SETS (built-in names or rule files) as a run would: each one's date, symbols and
    margin modes, and a warning per doubtful value. Exit 2 at the first file refused, naming the key."""
    from xmargin.venues.rules import load_rules

    for reference in rule_sets:
        rules = load_rules(reference)
        click.echo(f"{reference}: {rules.name} ({rules.exchange}), as of {rules.as_of}, {len(rules.symbol_brackets)} "
                   f"symbols with brackets, margin modes {', '.join(rules.margin_modes)}, "
                   f"{len(rules.sources)} source(s)")
        for _symbol, message in rules.warnings:
            click.echo(f"warning: {message}")


@rules.command(name="import")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--exchange", required=True, help="Exchange the dumps are from: binance, bybit, okx, hyperliquid, ...")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Rule file to write (JSON) from the dumps' leverage tiers.")
@click.option("--dataset", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="Dataset whose instruments on --exchange get lot size, tick size and minimum notional.")
@click.option("--base", default=None,
              help="Rule set (name or file) giving fees, funding, liquidation and default brackets; default: "
                   "the built-in one of the exchange (binance-usdm, bybit-linear, okx-swap, hyperliquid).")
@click.option("--name", default=None, help="Rule set name (default: the --out file name without .json).")
@click.option("--as-of", "as_of", default=None,
              help="Date of the data, YYYY-MM-DD (default: the date the dump carries; required when it has none).")
@click.option("--source", default="", help="Where the dumps come from (URL, repository@commit:path), recorded.")
@click.option("--reference-price", "reference_prices", multiple=True,
              help="ASSET=PRICE for tiers given in contracts (OKX): their notional is contracts x contract "
                   "value x this price.")
@click.option("--contracts", is_flag=True, default=False,
              help="Write tiers given in contracts (OKX) as contract-counted tables with the instrument's contract "
                   "value (the tier follows the position's size at any price) instead of notional at "
                   "--reference-price.")
def import_(files, exchange, out, dataset, base, name, as_of, source, reference_prices, contracts):
    """Read FILES (JSON responses) and write a rule file and/or a dataset's instrument filters.

    \b
    Understood (detected from the content):
      ccxt:        fetch_leverage_tiers(), load_markets()
      Binance:     exchangeInfo, leverageBracket (USD-M, COIN-M)
      Bybit v5:    market/instruments-info, market/risk-limit
      OKX v5:      public/instruments, public/position-tiers (needs instruments, and --contracts or
                   --reference-price)
      Hyperliquid: info {"type": "meta"} (with marginTables when present)
    The rule file keeps the base rule set's fees, funding and liquidation and replaces its brackets with
    the imported ones; it is dated and names the files it was made from (docs/rules.md).
    """
    from xmargin.venues.metadata import read_metadata

    if out is None and dataset is None:
        raise click.UsageError("give --out RULES.json, --dataset DATASET, or both.")
    metadata = read_metadata(files, exchange)
    imported = None
    if out is not None:  # built and checked before anything is written: a refused import changes nothing
        from xmargin.venues.rules.imported import rule_file_from

        if name is not None and not name.strip():
            raise RulesError("--name '': give the rule set a name, or leave --name out (the --out file name).")
        imported = rule_file_from(metadata, files, exchange=exchange, name=name or out.stem, base=base,
                                  as_of=as_of, source=source, reference_prices=_prices(reference_prices),
                                  contracts=contracts)
    if dataset is not None:
        from xmargin.dataset.filters import apply_market_filters
        from xmargin.dataset.manifest import read_manifest

        read_manifest(dataset)  # not a dataset: refused before the rule file is written
    if imported is not None:
        from xmargin.venues.rules.imported import write_rule_file

        for note in imported.notes:
            click.echo(f"note: {note}")
        write_rule_file(imported, out)
        click.echo(f"wrote {out}: {imported.symbols} symbols, as of {imported.data['as_of']}")
    if dataset is not None:
        for line in apply_market_filters(dataset, metadata, exchange).lines():
            click.echo(line)
