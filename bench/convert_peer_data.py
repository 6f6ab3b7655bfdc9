"""Convert the peer-engine benchmark data into an xmargin dataset.

    .venv/bin/python bench/convert_peer_data.py IN OUT

IN is the folder written by `shared/bench/make_peer_data.py` (bars.parquet, funding.parquet);
OUT becomes an xmargin dataset folder (dataset.toml, bars/, funding/), written to OUT.partial and
renamed when complete.

Mapping:
* venue A -> exchange "venuea", venue B -> exchange "venueb" (see VENUES);
* BTC -> `BTC/USDT:USDT` (lot 0.001), ETH -> `ETH/USDT:USDT` (lot 0.01): linear USDT perps,
  min_notional 5 USDT, tick 0.01 (the generator rounds prices to 0.01), 8 h funding;
* bars: the peer `ts` is the bar CLOSE time, xmargin's `ts` is the bar OPEN time, so
  ts - 1 minute; timeframe "1m"; one Parquet file per instrument
  (bars/<exchange>/perp/<BASE>_USDT_USDT-1m.parquet);
* funding: `rate` -> `funding_rate`, ts unchanged (the settlement time), one file per instrument.

Everything goes through polars lazy frames (scan_parquet -> sink_parquet), one pass per output
file.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from xmargin.dataset.manifest import DatasetManifest, Source, write_manifest  # noqa: E402
from xmargin.venues.instruments import Instrument  # noqa: E402

VENUES = {"A": "venuea", "B": "venueb"}
ASSETS = {"BTC": 0.001, "ETH": 0.01}  # base -> lot size
QUOTE = "USDT"
MIN_NOTIONAL = 5.0
TICK = 0.01
FUNDING_HOURS = 8.0
BAR = "1m"
UTC_NS = pl.Datetime("ns", "UTC")


def instruments() -> tuple[Instrument, ...]:
    return tuple(
        Instrument(exchange=exchange, symbol=f"{base}/{QUOTE}:{QUOTE}", market="perp", base=base, quote=QUOTE,
                   settle=QUOTE, contract="linear", contract_size=1.0, funding_interval_hours=FUNDING_HOURS,
                   lot_size=lot, min_notional=MIN_NOTIONAL, tick_size=TICK)
        for exchange in VENUES.values() for base, lot in ASSETS.items())


def _stem(base: str) -> str:
    return f"{base}_{QUOTE}_{QUOTE}"


def convert(source: str | Path, out: str | Path) -> Path:
    source, out = Path(source), Path(out)
    bars_in, funding_in = source / "bars.parquet", source / "funding.parquet"
    for path in (bars_in, funding_in):
        if not path.is_file():
            raise SystemExit(f"{path}: missing; run shared/bench/make_peer_data.py {source} first.")
    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    venue_map = pl.col("venue").replace_strict(VENUES, return_dtype=pl.String)
    bars = (pl.scan_parquet(bars_in)
            .select(ts=(pl.col("ts").cast(UTC_NS) - pl.duration(minutes=1, time_unit="ns")).cast(UTC_NS),
                    exchange=venue_map,
                    symbol=pl.col("symbol") + f"/{QUOTE}:{QUOTE}",
                    market=pl.lit("perp"), timeframe=pl.lit(BAR),
                    open="open", high="high", low="low", close="close", volume="volume"))
    # peer funding: ts, instrument ("BTC-PERP.A"), rate
    parts = pl.col("instrument").str.extract_groups(r"^(?<base>[A-Z]+)-PERP\.(?<venue>[A-Z])$")
    funding = (pl.scan_parquet(funding_in)
               .with_columns(parts.struct.field("base").alias("base"), parts.struct.field("venue").alias("venue"))
               .select(ts=pl.col("ts").cast(UTC_NS), exchange=venue_map,
                       symbol=pl.col("base") + f"/{QUOTE}:{QUOTE}", market=pl.lit("perp"),
                       funding_rate=pl.col("rate").cast(pl.Float64)))
    counts = {}
    for venue, exchange in VENUES.items():
        for base in ASSETS:
            symbol = f"{base}/{QUOTE}:{QUOTE}"
            for kind, frame, suffix in (("bars", bars, f"-{BAR}"), ("funding", funding, "")):
                path = partial / kind / exchange / "perp" / f"{_stem(base)}{suffix}.parquet"
                path.parent.mkdir(parents=True, exist_ok=True)
                (frame.filter((pl.col("exchange") == exchange) & (pl.col("symbol") == symbol))
                 .sort("ts")
                 .sink_parquet(path, compression="zstd", statistics=True))
                counts[(kind, exchange, symbol)] = pl.scan_parquet(path).select(pl.len()).collect().item()
    manifest = DatasetManifest(
        name=out.name, kind="synthetic",
        description="Peer-engine benchmark workload: BTC and ETH linear USDT perps on two venues (venuea = peer "
                    "venue A, venueb = peer venue B), 1-minute bars over 365 days from 2024-01-01 "
                    "(2,102,400 bars), funding every 8 h. Converted by bench/convert_peer_data.py; bar ts = "
                    "peer close time - 1 minute (bar open).",
        instruments=instruments(),
        sources=(Source(name="shared/bench/make_peer_data.py", licence="generated; no third-party data",
                        path="shared/bench/make_peer_data.py",
                        notes="deterministic synthetic data (seed 20240601) shared with the peer-engine benchmarks; "
                              "converted by bench/convert_peer_data.py"),))
    write_manifest(partial, manifest)
    if out.exists():
        shutil.rmtree(out)
    partial.rename(out)
    total = sum(n for (kind, _, _), n in counts.items() if kind == "bars")
    funding_rows = sum(n for (kind, _, _), n in counts.items() if kind == "funding")
    print(f"converted {total:,} bars, {funding_rows:,} funding rows -> {out}")
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    convert(argv[0], argv[1])
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
