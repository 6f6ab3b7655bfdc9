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

from datetime import datetime, timedelta, timezone
from pathlib import Path

from cutting import cut, main, sources_from

from xmargin.dataset.manifest import DatasetManifest
from xmargin.venues.instruments import Instrument

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


def make_coinm_sample(real: Path, out: Path) -> None:
    notes = ("cut to 2022-12-13 00:00 .. 2022-12-14 00:00 UTC by datasets/make_coinm_sample.py; "
             "COIN-M volume is in contracts (100 USD each)")
    funding_start = START - timedelta(hours=FUNDING_LEAD_HOURS)
    cut(real, out, PLAN, (TAG,), START, END, lambda used: DatasetManifest(
        name="coinm-sample",
        description="Real 1m market data for one day, 2022-12-13 UTC: Binance COIN-M inverse perpetual "
                    "BTC/USD:BTC (bars, funding; no mark) and Binance spot BTC/BUSD (bars). "
                    "See README.md for sources, licence and quirks.",
        kind="real", instruments=INSTRUMENTS, sources=sources_from(used, notes)),
        starts={"funding": funding_start})


if __name__ == "__main__":
    main(__doc__.splitlines()[0], "coinm-sample", make_coinm_sample)
