"""`synthesize`: a seeded, deterministic synthetic dataset, generated and written chunk by chunk.

Model (per bar of length dt, in years):
* fair log-price of each asset: one-factor correlated Student-t (df 4) returns, volatility
  `ANNUAL_VOLATILITY`, plus market-wide Poisson jumps scaled per asset;
* spot on the first exchange trades at the fair price;
* each exchange's perp = fair × exp(basis), basis a mean-reverting (Ornstein-Uhlenbeck) process per
  exchange and asset (a few bp, half-life of hours), so exchanges differ a little and revert;
* mark = perp × exp(small per-bar noise, ~0.5 bp);
* funding per event: interval/8h × (1 bp + a share of the basis + AR(1) noise), 8h on CEX names,
  1h on hyperliquid, clipped to ±0.3 % per 8h.
The random state, last prices, basis and funding states carry across chunks, so memory is bounded
by one chunk; the same parameters and seed give byte-identical files.
"""

from __future__ import annotations

import math
import shutil
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import attrs
import numpy as np
import polars as pl

from xmargin.dataset.manifest import DatasetManifest, Source, publish, write_manifest
from xmargin.dataset.validate import parse_timeframe, polars_schema
from xmargin.errors import DatasetError
from xmargin.venues.instruments import Instrument

YEAR_SECONDS = 365.0 * 86400.0
START_PRICE = {"BTC": 60_000.0, "ETH": 3_000.0, "SOL": 150.0, "BNB": 550.0, "XRP": 0.6, "DOGE": 0.15}
ANNUAL_VOLATILITY = {"BTC": 0.55, "ETH": 0.70, "SOL": 0.90}
MARKET_LOADING = {"BTC": 0.90, "ETH": 0.85, "SOL": 0.75}
JUMP_SCALE = {"BTC": 1.0, "ETH": 1.2, "SOL": 1.5}
LOT_SIZE = {"BTC": 0.001, "ETH": 0.01, "SOL": 0.1}
TICK_SIZE = {"BTC": 0.1, "ETH": 0.01, "SOL": 0.001}
BASE_VOLUME_PER_HOUR = {"BTC": 1_500.0, "ETH": 20_000.0, "SOL": 150_000.0}
STUDENT_DF = 4.0
JUMPS_PER_YEAR = 12.0
JUMP_SIZE = 0.025  # standard deviation of a market jump in log-price
BASIS_MEAN = {"hyperliquid": 4e-4}  # others 1 bp
BASIS_DEFAULT_MEAN = 1e-4
BASIS_STATIONARY_STD = 3e-4
BASIS_HALF_LIFE_HOURS = 6.0
MARK_NOISE = 5e-5
FUNDING_BASE_PER_8H = 1e-4
FUNDING_BASIS_SHARE = 0.3
FUNDING_NOISE_PER_8H = 5e-5
FUNDING_PERSISTENCE = 0.9
FUNDING_CAP_PER_8H = 3e-3


@attrs.frozen
class SynthParameters:
    """What to generate. `start` is a UTC date (YYYY-MM-DD); `chunk_days` days go in each file."""

    days: int = 30
    timeframe: str = "1m"
    seed: int = 7
    exchanges: tuple[str, ...] = attrs.field(default=("binance", "hyperliquid"), converter=tuple)
    assets: tuple[str, ...] = attrs.field(default=("BTC", "ETH", "SOL"), converter=tuple)
    start: str = "2024-01-01"
    chunk_days: int = 31


@attrs.frozen
class SynthResult:
    """Where the dataset went and how much was written."""

    path: Path
    files: int
    rows_by_kind: dict


def quote_of(exchange: str) -> str:
    """Settlement/quote asset of synthetic perps: USDC on hyperliquid, USDT elsewhere."""
    return "USDC" if exchange == "hyperliquid" else "USDT"


def funding_interval_hours(exchange: str) -> float:
    return 1.0 if exchange == "hyperliquid" else 8.0


def synthetic_instruments(parameters: SynthParameters) -> tuple[Instrument, ...]:
    """Perps on every exchange (linear, USDT or USDC) plus spot on the first exchange."""
    result = []
    for exchange in parameters.exchanges:
        quote = quote_of(exchange)
        for asset in parameters.assets:
            result.append(Instrument(
                exchange=exchange, symbol=f"{asset}/{quote}:{quote}", market="perp", base=asset, quote=quote,
                settle=quote, funding_interval_hours=funding_interval_hours(exchange),
                lot_size=LOT_SIZE.get(asset, 1.0), min_notional=10.0 if exchange == "hyperliquid" else 5.0,
                tick_size=TICK_SIZE.get(asset, 0.0001)))
    first = parameters.exchanges[0]
    for asset in parameters.assets:
        quote = quote_of(first)
        result.append(Instrument(exchange=first, symbol=f"{asset}/{quote}", market="spot", base=asset, quote=quote,
                                 settle=quote, lot_size=LOT_SIZE.get(asset, 1.0), min_notional=5.0,
                                 tick_size=TICK_SIZE.get(asset, 0.0001)))
    return tuple(result)


def ar1(shocks: np.ndarray, persistence: float, initial: np.ndarray) -> np.ndarray:
    """x_t = persistence * x_{t-1} + shocks_t for each column, from x_0 = initial (vectorised, exact)."""
    if shocks.shape[0] == 0:
        return shocks
    weight = 1.0 - persistence
    stacked = np.vstack([initial[None, :], shocks / weight])
    frame = pl.DataFrame(stacked, schema=[f"c{i}" for i in range(stacked.shape[1])], orient="row")
    smoothed = frame.select(pl.all().ewm_mean(alpha=weight, adjust=False)).to_numpy()
    return smoothed[1:]


def _check(parameters: SynthParameters) -> tuple[int, datetime]:
    try:
        step = int(parse_timeframe(parameters.timeframe).total_seconds())
    except ValueError as exc:
        raise DatasetError(f"synth --timeframe: {exc}.") from exc
    if 86400 % step:
        raise DatasetError(f"synth --timeframe {parameters.timeframe}: must divide a day (1m, 5m, 15m, 1h, 4h, 1d).")
    if not parameters.exchanges or not parameters.assets:
        raise DatasetError("synth: --exchanges and --assets must each name at least one value, e.g. BTC,ETH.")
    for option, values in (("--exchanges", parameters.exchanges), ("--assets", parameters.assets)):
        twice = sorted({v for v in values if values.count(v) > 1})
        if twice:  # each would be declared twice: a dataset that does not validate
            raise DatasetError(f"synth {option}: {twice} given more than once; name each once.")
    try:
        start = datetime.combine(date.fromisoformat(parameters.start), datetime.min.time(), tzinfo=timezone.utc)
    except ValueError as exc:
        raise DatasetError(f"synth --start {parameters.start!r}: not a date (YYYY-MM-DD).") from exc
    return step, start


class _State:
    """Everything carried from one chunk to the next."""

    def __init__(self, parameters: SynthParameters, rng: np.random.Generator):
        assets, exchanges = parameters.assets, parameters.exchanges
        self.log_price = np.log([START_PRICE.get(a, 100.0) for a in assets])
        self.basis_mean = np.array([[BASIS_MEAN.get(e, BASIS_DEFAULT_MEAN)] * len(assets) for e in exchanges])
        self.basis = (self.basis_mean + BASIS_STATIONARY_STD * rng.standard_normal(self.basis_mean.shape)).ravel()
        self.funding_noise = np.zeros(len(exchanges) * len(assets))


def _chunk_tables(parameters: SynthParameters, rng: np.random.Generator, state: _State, chunk_start: datetime,
                  bars: int, step: int) -> dict[str, pl.DataFrame]:
    """Generate one chunk of `bars` bars starting at `chunk_start`; advances `state` and `rng`."""
    assets, exchanges = parameters.assets, parameters.exchanges
    n_assets, n_exchanges = len(assets), len(exchanges)
    dt = step / YEAR_SECONDS
    sigma = np.array([ANNUAL_VOLATILITY.get(a, 0.9) for a in assets])
    loading = np.array([MARKET_LOADING.get(a, 0.7) for a in assets])
    t_scale = math.sqrt((STUDENT_DF - 2.0) / STUDENT_DF)  # unit variance
    market = rng.standard_t(STUDENT_DF, size=(bars, 1)) * t_scale
    idiosyncratic = rng.standard_t(STUDENT_DF, size=(bars, n_assets)) * t_scale
    shocks = loading * market + np.sqrt(1.0 - loading**2) * idiosyncratic
    jump_counts = rng.poisson(JUMPS_PER_YEAR * dt, size=(bars, 1))
    jumps = np.sqrt(jump_counts) * rng.standard_normal((bars, 1)) * JUMP_SIZE
    jumps = jumps * np.array([JUMP_SCALE.get(a, 1.5) for a in assets])
    returns = sigma * math.sqrt(dt) * shocks - 0.5 * sigma**2 * dt + jumps
    log_close = state.log_price + np.cumsum(returns, axis=0)
    log_open = np.vstack([state.log_price[None, :], log_close[:-1]])
    state.log_price = log_close[-1].copy()
    bar_sigma = sigma * math.sqrt(dt)
    wick_up = np.abs(rng.standard_normal((bars, n_assets))) * 0.6 * bar_sigma
    wick_down = np.abs(rng.standard_normal((bars, n_assets))) * 0.6 * bar_sigma
    fair = {"open": np.exp(log_open), "close": np.exp(log_close),
            "high": np.exp(np.maximum(log_open, log_close) + wick_up),
            "low": np.exp(np.minimum(log_open, log_close) - wick_down)}
    activity = 1.0 + np.abs(returns) / bar_sigma
    base_volume = np.array([BASE_VOLUME_PER_HOUR.get(a, 100_000.0) for a in assets]) * step / 3600.0
    volume_noise = rng.lognormal(0.0, 0.5, size=(bars, n_assets + n_exchanges * n_assets))

    persistence = 0.5 ** (step / 3600.0 / BASIS_HALF_LIFE_HOURS)
    basis_shock_std = BASIS_STATIONARY_STD * math.sqrt(1.0 - persistence**2)
    mean = state.basis_mean.ravel()
    basis = mean + ar1(basis_shock_std * rng.standard_normal((bars, mean.size)), persistence, state.basis - mean)
    state.basis = basis[-1].copy()
    mark_noise = MARK_NOISE * rng.standard_normal((bars, mean.size))

    ts = (np.datetime64(chunk_start.replace(tzinfo=None), "ns")
          + np.arange(bars, dtype=np.int64) * np.timedelta64(step, "s")).astype("datetime64[ns]")
    ts_series = pl.Series("ts", ts).dt.replace_time_zone("UTC")
    bar_parts, mark_parts, funding_parts = [], [], []

    def frame(exchange, symbol, market, prices, volume=None):
        columns = {"ts": ts_series, "exchange": pl.lit(exchange), "symbol": pl.lit(symbol), "market": pl.lit(market),
                   "timeframe": pl.lit(parameters.timeframe), **{k: pl.Series(k, v) for k, v in prices.items()}}
        if volume is not None:
            columns["volume"] = pl.Series("volume", volume)
        return pl.select(**columns)

    first_quote = quote_of(exchanges[0])
    for a, asset in enumerate(assets):
        prices = {k: fair[k][:, a] for k in ("open", "high", "low", "close")}
        bar_parts.append(frame(exchanges[0], f"{asset}/{first_quote}", "spot", prices,
                               base_volume[a] * activity[:, a] * volume_noise[:, a]))
    chunk_end = chunk_start + timedelta(seconds=bars * step)
    for e, exchange in enumerate(exchanges):
        quote = quote_of(exchange)
        interval = int(funding_interval_hours(exchange) * 3600)
        first_event = -(-int(chunk_start.timestamp()) // interval) * interval
        events = np.arange(first_event, int(chunk_end.timestamp()), interval, dtype=np.int64)
        event_bar = (events - int(chunk_start.timestamp())) // step
        scale = interval / (8 * 3600)
        for a, asset in enumerate(assets):
            column = e * n_assets + a
            symbol = f"{asset}/{quote}:{quote}"
            factor = np.exp(basis[:, column])
            prices = {k: fair[k][:, a] * factor for k in ("open", "high", "low", "close")}
            bar_parts.append(frame(exchange, symbol, "perp", prices,
                                   base_volume[a] * activity[:, a] * volume_noise[:, n_assets + column]))
            mark_factor = np.exp(mark_noise[:, column])
            mark_parts.append(frame(exchange, symbol, "perp", {k: v * mark_factor for k, v in prices.items()}))
            noise = ar1(FUNDING_NOISE_PER_8H * math.sqrt(1 - FUNDING_PERSISTENCE**2)
                         * rng.standard_normal((events.size, 1)), FUNDING_PERSISTENCE,
                         np.array([state.funding_noise[column]]))[:, 0]
            if events.size:
                state.funding_noise[column] = noise[-1]
            rate = scale * np.clip(FUNDING_BASE_PER_8H + FUNDING_BASIS_SHARE * basis[event_bar, column] + noise,
                                   -FUNDING_CAP_PER_8H, FUNDING_CAP_PER_8H)
            funding_parts.append(pl.select(
                ts=pl.Series("ts", events * 1_000_000_000).cast(pl.Datetime("ns")).dt.replace_time_zone("UTC"),
                exchange=pl.lit(exchange), symbol=pl.lit(symbol), market=pl.lit("perp"),
                funding_rate=pl.Series("funding_rate", rate, dtype=pl.Float64)))
    tables = {}
    for kind, parts in (("bars", bar_parts), ("mark", mark_parts), ("funding", funding_parts)):
        schema = polars_schema(kind)
        tables[kind] = (pl.concat(parts, how="vertical")
                        .select([pl.col(name).cast(dtype) for name, dtype in schema.items()])
                        .sort("ts", "exchange", "symbol", maintain_order=True))
    return tables


def synthesize(out: str | Path, parameters: SynthParameters = SynthParameters(), *,
               overwrite: bool = False) -> SynthResult:
    """Generate the dataset described by `parameters` into folder `out` (written to `out.partial`
    then renamed). Raises DatasetError if `out` exists and `overwrite` is False."""
    step, start = _check(parameters)
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise DatasetError(f"{out}: already exists and is not empty. Choose another folder or pass --force.")
    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    rng = np.random.default_rng(parameters.seed)
    state = _State(parameters, rng)
    bars_per_day = 86400 // step
    total_bars = parameters.days * bars_per_day
    chunk_bars = parameters.chunk_days * bars_per_day
    files, rows = 0, {"bars": 0, "mark": 0, "funding": 0}
    for first in range(0, total_bars, chunk_bars):
        bars = min(chunk_bars, total_bars - first)
        chunk_start = start + timedelta(seconds=first * step)
        tables = _chunk_tables(parameters, rng, state, chunk_start, bars, step)
        for kind, table in tables.items():
            if table.height == 0:
                continue
            path = partial / kind / f"{chunk_start:%Y%m%d}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            table.write_parquet(path, compression="zstd", statistics=True)
            files += 1
            rows[kind] += table.height
    settings = (f"days={parameters.days}, timeframe={parameters.timeframe}, seed={parameters.seed}, "
                f"exchanges={','.join(parameters.exchanges)}, assets={','.join(parameters.assets)}, "
                f"start={parameters.start}, chunk_days={parameters.chunk_days}")
    manifest = DatasetManifest(
        name=out.name, kind="synthetic",
        description=f"Synthetic {parameters.timeframe} bars, mark and funding over {parameters.days} days "
                    f"from {parameters.start}: {', '.join(parameters.assets)} on {', '.join(parameters.exchanges)}.",
        instruments=synthetic_instruments(parameters),
        sources=(Source(name="xmargin data synth", licence="generated; no third-party data",
                        notes=f"generated by xmargin.dataset.synth (numpy PCG64) with {settings}"),))
    partial.mkdir(parents=True, exist_ok=True)
    write_manifest(partial, manifest)
    publish(partial, out)
    return SynthResult(path=out, files=files, rows_by_kind=rows)
