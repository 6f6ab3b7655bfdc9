"""Cut the shipped sample dataset `datasets/sample/` from the shared real data (licensed sets only).

Usage: python datasets/make_sample.py [REAL_DATA_FOLDER] [--out datasets/sample]

REAL_DATA_FOLDER defaults to ../shared/datasets/real relative to the repository root. Only files
tagged `roshan` (Roshan7869/algotrading, GPL-3.0) and `hippocritical`
(hippocritical/freqtrade_hyperliquid_download-data, GPL-3.0) are read; never `test-only/`.
The output is deterministic: running the script twice gives the same files.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path

import polars as pl

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engine.dataset.importers import DEFAULT_FILTERS  # noqa: E402
from engine.dataset.manifest import DatasetManifest, Source, write_manifest  # noqa: E402
from engine.dataset.validate import polars_schema  # noqa: E402
from engine.instruments import Instrument  # noqa: E402

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


def _sources(entries: dict[str, dict]) -> tuple[Source, ...]:
    """One Source per repository@commit, listing every original file path used."""
    grouped: dict[tuple[str, str], dict] = {}
    for entry in entries.values():
        for part in entry["source"].split(" + "):
            repository, rest = part.removeprefix("github ").split("@", 1)
            commit, path = rest.split(":", 1)
            item = grouped.setdefault((repository, commit), {"paths": [], "licence": entry["licence"]})
            if path not in item["paths"]:
                item["paths"].append(path)
    return tuple(Source(name=repository.split("/")[1], licence=item["licence"],
                        repository=f"https://github.com/{repository}", commit=commit,
                        path="; ".join(sorted(item["paths"])),
                        notes="cut to 2024-09-05 00:00 .. 2025-07-26 00:00 UTC by datasets/make_sample.py")
                 for (repository, commit), item in sorted(grouped.items()))


def make_sample(real: Path, out: Path) -> None:
    real = Path(real)
    if "test-only" in real.resolve().parts:
        raise SystemExit("refusing to read test-only/: its licence does not allow shipping derived data")
    manifest_entries = {e["file"]: e for e in json.loads((real / "MANIFEST.json").read_text())}
    readme = out / "README.md"
    readme_text = readme.read_text() if readme.is_file() else None  # hand-written; kept across rebuilds
    if out.exists():
        shutil.rmtree(out)
    used = {}
    for kind, source, target in _plan():
        entry = manifest_entries[source]
        if entry["tag"] not in ("roshan", "hippocritical"):
            raise SystemExit(f"{source}: tag {entry['tag']} is not a licensed source")
        used[source] = entry
        schema = polars_schema(kind)
        frame = (pl.scan_parquet(str(real / source))
                 .filter((pl.col("ts") >= START) & (pl.col("ts") < END))
                 .select([pl.col(name).cast(dtype) for name, dtype in schema.items()])
                 .sort("ts")
                 .collect())
        path = out / target
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.write_parquet(path, compression="zstd", compression_level=9, statistics=True)
        print(f"{target}: {frame.height} rows")
    manifest = DatasetManifest(
        name="sample",
        description="Real 1h market data, 2024-09-05 .. 2025-07-26 UTC: Binance USDT-M perps (bars, mark, "
                    "funding) and spot, Hyperliquid USDC perps (bars, hourly funding); BTC, ETH, SOL. "
                    "See README.md for sources, licences and quirks.",
        kind="real", instruments=_instruments(), sources=_sources(used))
    write_manifest(out, manifest)
    if readme_text is not None:
        readme.write_text(readme_text)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("real", nargs="?", default=str(REPO.parent / "shared" / "datasets" / "real"),
                        help="folder holding the licensed real data (default: ../shared/datasets/real)")
    parser.add_argument("--out", default=str(REPO / "datasets" / "sample"), help="output folder")
    args = parser.parse_args(argv)
    make_sample(Path(args.real), Path(args.out))


if __name__ == "__main__":
    main()
