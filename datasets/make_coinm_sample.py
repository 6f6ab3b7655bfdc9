"""Cut the inverse sample dataset `datasets/coinm-sample/` from the shared real data (Lean set only).

Usage: python datasets/make_coinm_sample.py [REAL_DATA_FOLDER] [--out datasets/coinm-sample]

REAL_DATA_FOLDER defaults to ../shared/datasets/real relative to the repository root. Only files
tagged `lean` (QuantConnect/Lean @ 24863901deff, Apache-2.0) are read; never `test-only/`.
Tables: Binance COIN-M BTC/USD:BTC 1m bars and its funding events, Binance spot BTC/BUSD 1m bars
(a BTC price in USD terms for valuing BTC margin), all for 2022-12-13 UTC. No mark series exists
for the COIN-M perp, so there is no mark/ table (the engine falls back to last price).
The output is deterministic: running the script twice gives the same files.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engine.dataset.manifest import DatasetManifest, Source, write_manifest  # noqa: E402
from engine.dataset.validate import polars_schema  # noqa: E402
from engine.instruments import Instrument  # noqa: E402

START = datetime(2022, 12, 13, tzinfo=timezone.utc)  # inclusive: first bar opens 00:00
END = datetime(2022, 12, 14, tzinfo=timezone.utc)  # exclusive: last bar opens 23:59
# Funding events are kept from FUNDING_LEAD before START, so an event that settles just before the
# window would still be there; the source has none (the previous event is 2020-12-31 16:00), so the
# cut holds the three settlements of the day: 00:00, 08:00, 16:00.
FUNDING_LEAD_HOURS = 0
TAG = "lean"

# (kind, source file relative to real/, output file relative to the dataset)
PLAN = (
    ("bars", "bars/binance/perp/BTC_USD_BTC-1m__lean.parquet", "bars/binance/perp/BTC_USD_BTC-1m.parquet"),
    ("funding", "funding/binance/perp/BTC_USD_BTC__lean.parquet", "funding/binance/perp/BTC_USD_BTC.parquet"),
    ("bars", "bars/binance/spot/BTC_BUSD-1m__lean.parquet", "bars/binance/spot/BTC_BUSD-1m.parquet"),
)

INSTRUMENTS = (
    # Binance COIN-M BTCUSD perpetual: one contract = 100 USD, quantity step 1 contract, tick 0.1 USD.
    Instrument(exchange="binance", symbol="BTC/USD:BTC", market="perp", base="BTC", quote="USD", settle="BTC",
               contract="inverse", contract_size=100.0, funding_interval_hours=8.0,
               lot_size=1.0, min_notional=0.0, tick_size=0.1),
    # Binance spot BTCBUSD (exchangeInfo filters of 2022: LOT_SIZE 0.00001, MIN_NOTIONAL 10, tick 0.01).
    Instrument(exchange="binance", symbol="BTC/BUSD", market="spot", base="BTC", quote="BUSD", settle="BUSD",
               contract="linear", contract_size=1.0, lot_size=0.00001, min_notional=10.0, tick_size=0.01),
)


def _sources(entries: dict[str, dict]) -> tuple[Source, ...]:
    """One Source for the Lean repository@commit, listing every original file path used."""
    paths, licence = [], ""
    for entry in entries.values():
        repository, rest = entry["source"].removeprefix("github ").split("@", 1)
        commit, path = rest.split(":", 1)
        if repository != "QuantConnect/Lean" or commit != "24863901deff":
            raise SystemExit(f"{entry['file']}: unexpected source {entry['source']}")
        paths.append(path)
        licence = entry["licence"]
    return (Source(name="Lean", licence=licence, repository="https://github.com/QuantConnect/Lean",
                   commit="24863901deff", path="; ".join(sorted(paths)),
                   notes="cut to 2022-12-13 00:00 .. 2022-12-14 00:00 UTC by datasets/make_coinm_sample.py; "
                         "COIN-M volume is in contracts (100 USD each)"),)


def make_coinm_sample(real: Path, out: Path) -> None:
    real = Path(real)
    if "test-only" in real.resolve().parts:
        raise SystemExit("refusing to read test-only/: its licence does not allow shipping derived data")
    manifest_entries = {e["file"]: e for e in json.loads((real / "MANIFEST.json").read_text())}
    readme = out / "README.md"
    readme_text = readme.read_text() if readme.is_file() else None  # hand-written; kept across rebuilds
    if out.exists():
        shutil.rmtree(out)
    used = {}
    for kind, source, target in PLAN:
        entry = manifest_entries[source]
        if entry["tag"] != TAG:
            raise SystemExit(f"{source}: tag {entry['tag']} is not the licensed Lean set")
        used[source] = entry
        schema = polars_schema(kind)
        start = START - timedelta(hours=FUNDING_LEAD_HOURS) if kind == "funding" else START
        frame = (pl.scan_parquet(str(real / source))
                 .filter((pl.col("ts") >= start) & (pl.col("ts") < END))
                 .select([pl.col(name).cast(dtype) for name, dtype in schema.items()])
                 .sort("ts")
                 .collect())
        path = out / target
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.write_parquet(path, compression="zstd", compression_level=9, statistics=True)
        print(f"{target}: {frame.height} rows")
    manifest = DatasetManifest(
        name="coinm-sample",
        description="Real 1m market data for one day, 2022-12-13 UTC: Binance COIN-M inverse perpetual "
                    "BTC/USD:BTC (bars, funding; no mark) and Binance spot BTC/BUSD (bars). "
                    "See README.md for sources, licence and quirks.",
        kind="real", instruments=INSTRUMENTS, sources=_sources(used))
    write_manifest(out, manifest)
    if readme_text is not None:
        readme.write_text(readme_text)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("real", nargs="?", default=str(REPO.parent / "shared" / "datasets" / "real"),
                        help="folder holding the licensed real data (default: ../shared/datasets/real)")
    parser.add_argument("--out", default=str(REPO / "datasets" / "coinm-sample"), help="output folder")
    args = parser.parse_args(argv)
    make_coinm_sample(Path(args.real), Path(args.out))


if __name__ == "__main__":
    main()
