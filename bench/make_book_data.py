"""Deterministic synthetic xmargin datasets for the wide and long benchmark workloads.

    .venv/bin/python bench/make_book_data.py OUT --perps 50 --days 30      # WIDE50: 2 x 50 perps, 30 days
    .venv/bin/python bench/make_book_data.py OUT --perps 2 --days 1461     # W2-4Y: BTC and ETH, 4 years

Writes an xmargin dataset folder OUT (dataset.toml, bars/, funding/; via OUT.partial, renamed when
complete): two exchanges `venuea` and `venueb`, each with the same N linear USDT perps, 1-minute
bars from 2024-01-01, funding every 8 h. The first two bases are BTC (50,000, 60 % a year, lot
0.001) and ETH (2,500, 75 %, lot 0.01) as in the peer workload; the others (`X02`, `X03`, ...) start
at log-spaced prices between 0.05 and 20,000 with their lot and tick scaled to the price. Returns
are fat-tailed (student-t, 4 degrees of freedom) with one common factor (correlation about 0.7);
venueb = venuea x (1 + a mean-reverting basis of a few bps). One instrument is generated and
written at a time, so memory stays at one instrument's bars. Same seed, same bytes.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from xmargin.dataset.manifest import DatasetManifest, Source, publish, write_manifest  # noqa: E402
from xmargin.venues.instruments import Instrument  # noqa: E402

SEED = 20241114
EXCHANGES = ("venuea", "venueb")
QUOTE = "USDT"
START = np.datetime64("2024-01-01T00:00:00", "ns")
MINUTES_PER_YEAR = 525_600
FACTOR_LOADING = 0.85  # each base's returns: 0.85 x common factor + sqrt(1 - 0.85^2) x its own
BASIS_STD = 3e-4
BASIS_HALFLIFE_MIN = 60.0
UTC_NS = pl.Datetime("ns", "UTC")


def bases(perps: int) -> list[tuple[str, float, float, float]]:
    """(base, start price, annual volatility, lot size) of the first `perps` bases."""
    out = [("BTC", 50_000.0, 0.60, 0.001), ("ETH", 2_500.0, 0.75, 0.01)][:perps]
    others = perps - len(out)
    for n in range(others):
        price = float(np.round(0.05 * (20_000 / 0.05) ** (n / max(others - 1, 1)), 6))
        lot = 10.0 ** math.floor(math.log10(5.0 / price))  # about 0.5-5 USD per lot
        out.append((f"X{n + 2:02d}", price, 0.6 + 0.4 * (n % 5) / 4, lot))
    return out


def tick_for(price: float) -> float:
    return 10.0 ** (math.floor(math.log10(price)) - 4)


def instruments(perps: int) -> tuple[Instrument, ...]:
    return tuple(
        Instrument(exchange=exchange, symbol=f"{base}/{QUOTE}:{QUOTE}", market="perp", base=base, quote=QUOTE,
                   settle=QUOTE, contract="linear", contract_size=1.0, funding_interval_hours=8.0, lot_size=lot,
                   min_notional=5.0, tick_size=tick_for(price))
        for exchange in EXCHANGES for base, price, _vol, lot in bases(perps))


def _ar1(noise: np.ndarray, phi: float) -> np.ndarray:
    """x[t] = phi x[t-1] + noise[t], as a linear filter (no Python loop)."""
    out = np.empty_like(noise)
    # block recursion: exact, vectorised within blocks of 1,024 minutes
    block, carry = 1024, 0.0
    powers = phi ** np.arange(1, block + 1)
    for start in range(0, len(noise), block):
        chunk = noise[start:start + block]
        k = len(chunk)
        scaled = chunk / phi ** np.arange(1, k + 1)
        out[start:start + k] = powers[:k] * (carry + np.cumsum(scaled))
        carry = out[start + k - 1]
    return out


def _bars(minutes: int, price: float, vol: float, tick: float, factor: np.ndarray,
          rng: np.random.Generator) -> dict[str, np.ndarray]:
    """venuea and venueb OHLCV arrays of one base (prices on the tick)."""
    sigma = vol / math.sqrt(MINUTES_PER_YEAR)
    own = rng.standard_t(4, size=minutes) / math.sqrt(2.0)
    z = FACTOR_LOADING * factor + math.sqrt(1 - FACTOR_LOADING ** 2) * own
    mid = price * np.exp(np.cumsum(sigma * z - 0.5 * sigma * sigma))
    phi = 0.5 ** (1.0 / BASIS_HALFLIFE_MIN)
    out = {}
    for exchange in EXCHANGES:
        close = mid if exchange == EXCHANGES[0] else \
            mid * (1.0 + _ar1(rng.normal(0.0, BASIS_STD * math.sqrt(1 - phi * phi), minutes), phi))
        close = np.maximum(np.round(close / tick) * tick, tick)
        open_ = np.empty(minutes)
        open_[0] = close[0]
        open_[1:] = close[:-1]
        high = np.maximum(np.round(np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.5 * sigma, minutes)))
                                   / tick) * tick, np.maximum(open_, close))
        low = np.minimum(np.maximum(np.round(np.minimum(open_, close)
                                             * np.exp(-np.abs(rng.normal(0, 0.5 * sigma, minutes))) / tick) * tick,
                                    tick), np.minimum(open_, close))
        volume = np.round(rng.lognormal(math.log(1e6 / price), 0.8, minutes), 3) + 0.001
        out[exchange] = {"open": open_, "high": high, "low": low, "close": close, "volume": volume}
    return out


def make(out: str | Path, perps: int, days: int, seed: int = SEED) -> Path:
    """Write the dataset folder `out` (see module doc); returns it."""
    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    minutes = days * 1440
    rng = np.random.default_rng(seed)
    factor = rng.standard_t(4, size=minutes) / math.sqrt(2.0)
    ts = START + np.arange(minutes, dtype=np.int64) * np.timedelta64(60, "s")  # bar open
    funding_ts = START + np.arange(0, days * 3, dtype=np.int64) * np.timedelta64(8, "h")
    for base, price, vol, _lot in bases(perps):
        symbol = f"{base}/{QUOTE}:{QUOTE}"
        stem = f"{base}_{QUOTE}_{QUOTE}"
        for exchange, columns in _bars(minutes, price, vol, tick_for(price), factor, rng).items():
            path = partial / "bars" / exchange / "perp" / f"{stem}-1m.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            pl.DataFrame({"ts": ts, "exchange": exchange, "symbol": symbol, "market": "perp", "timeframe": "1m",
                          **columns}).with_columns(pl.col("ts").cast(UTC_NS).dt.replace_time_zone("UTC")) \
                .select("ts", "exchange", "symbol", "market", "timeframe", "open", "high", "low", "close", "volume") \
                .write_parquet(path, compression="zstd", statistics=True)
            rate = np.round(1e-4 + 1e-4 * rng.standard_normal(len(funding_ts))
                            + (2e-5 if exchange == EXCHANGES[1] else 0.0), 6)
            path = partial / "funding" / exchange / "perp" / f"{stem}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            pl.DataFrame({"ts": funding_ts, "exchange": exchange, "symbol": symbol, "market": "perp",
                          "funding_rate": rate}).with_columns(pl.col("ts").cast(UTC_NS)) \
                .write_parquet(path, compression="zstd", statistics=True)
    manifest = DatasetManifest(
        name=out.name, kind="synthetic",
        description=f"Benchmark book: {perps} linear USDT perps on each of venuea and venueb, 1-minute bars over "
                    f"{days} days from 2024-01-01 ({minutes * perps * 2:,} bars), funding every 8 h. Generated by "
                    f"bench/make_book_data.py (seed {seed}).",
        instruments=instruments(perps),
        sources=(Source(name="bench/make_book_data.py", licence="generated; no third-party data",
                        path="bench/make_book_data.py",
                        notes=f"deterministic synthetic data, seed {seed}, perps {perps}, days {days}"),))
    write_manifest(partial, manifest)
    return publish(partial, out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--perps", type=int, default=50, help="perps per exchange (the first two: BTC, ETH)")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    make(args.out, args.perps, args.days, args.seed)
    print(f"wrote {args.out}: 2 x {args.perps} perps, {args.days} days")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
