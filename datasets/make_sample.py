"""Cut the shipped sample dataset `datasets/sample/` from the shared real data (licensed sets only).

Usage: python datasets/make_sample.py [REAL_DATA_FOLDER] [--out datasets/sample]

REAL_DATA_FOLDER defaults to ../shared/datasets/real relative to the repository root. Only files
tagged `roshan` (Roshan7869/algotrading, GPL-3.0) and `hippocritical`
(hippocritical/freqtrade_hyperliquid_download-data, GPL-3.0) are read; never `test-only/`.
The output is deterministic: running the script twice gives the same files.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from cutting import cut, main, sources_from

from xmargin.dataset.importers import DEFAULT_FILTERS
from xmargin.dataset.manifest import DatasetManifest
from xmargin.venues.instruments import Instrument

START = datetime(2024, 9, 5, tzinfo=timezone.utc)  # inclusive
END = datetime(2025, 7, 26, tzinfo=timezone.utc)  # exclusive
ASSETS = ("BTC", "ETH", "SOL")

# (exchange, market, asset) -> (lot_size, min_notional, tick_size): the documented defaults that
# `xmargin data import` also uses (Binance exchangeInfo filters as published in 2024-2025;
# Hyperliquid lot = 10^-szDecimals, min order value 10 USDC, no fixed tick).
FILTERS = DEFAULT_FILTERS


def _plan():
    """(kind, source file relative to real/, output file relative to the sample) for every table."""
    plan = []
    for asset in ASSETS:
        plan.append(("bars", f"bars/binance/perp/{asset}_USDT_USDT-1h__roshan.parquet",
                     f"bars/binance/perp/{asset}_USDT_USDT-1h.parquet"))
        if asset != "SOL":  # SOL: only an 8h mark exists in the window; left out (see README)
            plan.append(("mark", f"mark/binance/perp/{asset}_USDT_USDT-1h__roshan.parquet",
                         f"mark/binance/perp/{asset}_USDT_USDT-1h.parquet"))
        plan.append(("funding", f"funding/binance/perp/{asset}_USDT_USDT__roshan.parquet",
                     f"funding/binance/perp/{asset}_USDT_USDT.parquet"))
        plan.append(("bars", f"bars/binance/spot/{asset}_USDT-1h__roshan.parquet",
                     f"bars/binance/spot/{asset}_USDT-1h.parquet"))
        plan.append(("bars", f"bars/hyperliquid/perp/{asset}_USDC_USDC-1h__hippocritical.parquet",
                     f"bars/hyperliquid/perp/{asset}_USDC_USDC-1h.parquet"))
        plan.append(("funding", f"funding/hyperliquid/perp/{asset}_USDC_USDC__hippocritical.parquet",
                     f"funding/hyperliquid/perp/{asset}_USDC_USDC.parquet"))
    return plan


def _instruments() -> tuple[Instrument, ...]:
    result = []
    for (exchange, market, asset), (lot, minimum, tick) in FILTERS.items():
        quote = "USDC" if exchange == "hyperliquid" else "USDT"
        symbol = f"{asset}/{quote}:{quote}" if market == "perp" else f"{asset}/{quote}"
        result.append(Instrument(exchange=exchange, symbol=symbol, market=market, base=asset, quote=quote,
                                 settle=quote, contract="linear", contract_size=1.0,
                                 funding_interval_hours=(1.0 if exchange == "hyperliquid" else 8.0)
                                 if market == "perp" else None,
                                 lot_size=lot, min_notional=minimum, tick_size=tick))
    return tuple(sorted(result, key=lambda i: (i.exchange, i.market, i.symbol)))


def make_sample(real: Path, out: Path) -> None:
    notes = "cut to 2024-09-05 00:00 .. 2025-07-26 00:00 UTC by datasets/make_sample.py"
    cut(real, out, _plan(), ("roshan", "hippocritical"), START, END, lambda used: DatasetManifest(
        name="sample",
        description="Real 1h market data, 2024-09-05 .. 2025-07-26 UTC: Binance USDT-M perps (bars, mark, "
                    "funding) and spot, Hyperliquid USDC perps (bars, hourly funding); BTC, ETH, SOL. "
                    "See README.md for sources, licences and quirks.",
        kind="real", instruments=_instruments(), sources=sources_from(used, notes)))


if __name__ == "__main__":
    main(__doc__.splitlines()[0], "sample", make_sample)
