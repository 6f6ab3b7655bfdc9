"""`synthesize_futures`: quarterly dated futures derived from a real dataset's spot prices.

No dated-futures price series was found under a licence that allows redistribution (see
docs/dated-futures.md), so this builds them from real spot with a stated basis model and marks the
result `kind = "synthetic"`:

* Contracts: quarterlies expiring on the last Friday of March, June, September and December at
  08:00 UTC (Binance's schedule), each listed when the quarterly two before it delivers, so a
  current and a next quarter trade at any time. Linear, settled in the spot's quote asset, symbol
  `BASE/QUOTE:QUOTE-YYMMDD` (ccxt), Binance's id `BASEQUOTE_YYMMDD`.
* Basis: one annualised basis b per asset, an Ornstein-Uhlenbeck process in bar steps with long-run
  mean `basis_apr`, stationary standard deviation `basis_volatility` and half-life
  `basis_half_life_days`. Every contract's fair price is F = S x exp(b x tau), tau the years left to
  its expiry at the bar's close, so the premium decays to zero at expiry and a later contract
  carries more of it. The same factor scales the spot bar's open, high, low and close.
* Mark = F; last (bars) = F x exp(noise), noise normal with `trade_noise_bp` basis points; the
  bar's high and low are widened to hold the noisy open and close.
* Index (`index/` table of each future) = the real spot bar: Binance settles on the average
  index, a spot composite, and the engine averages this series over the settlement window.

The real instruments of the same exchange and base (the spot itself, perps, their marks and
funding) are copied unchanged over the same window, with the source dataset's attribution. The same
parameters and seed give byte-identical files.
"""

from __future__ import annotations

import calendar
import math
import shutil
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import attrs
import numpy as np
import polars as pl

from xmargin.dataset.feed import timeframe_ns
from xmargin.dataset.manifest import DatasetManifest, Source, publish, read_manifest, write_manifest
from xmargin.dataset.synth import ar1
from xmargin.dataset.tables import scan
from xmargin.dataset.validate import polars_schema
from xmargin.errors import DatasetError
from xmargin.venues.instruments import Instrument

YEAR_NS = 365.0 * 86_400 * 1_000_000_000
QUARTER_MONTHS = (3, 6, 9, 12)
EXPIRY_HOUR_UTC = 8


@attrs.frozen
class FuturesParameters:
    """What to derive: quarterlies on `spot` (a key of the source dataset, e.g. "binance:BTC/USDT")
    over [start, start + days). Basis figures are annualised fractions (0.08 = 8 %/yr)."""

    spot: str
    start: str
    days: int
    seed: int = 7
    basis_apr: float = 0.08
    basis_volatility: float = 0.04
    basis_half_life_days: float = 10.0
    trade_noise_bp: float = 1.0


def last_friday(year: int, month: int) -> date:
    """The last Friday of a month."""
    last = date(year, month, calendar.monthrange(year, month)[1])
    return last - timedelta(days=(last.weekday() - 4) % 7)


def quarterly_expiries(first: datetime, last: datetime) -> list[datetime]:
    """Quarterly expiries (last Friday of Mar/Jun/Sep/Dec, 08:00 UTC) from two quarters before
    `first` (so the contracts trading at `first` are included) to one after `last`."""
    out = []
    for year in range(first.year - 1, last.year + 2):
        for month in QUARTER_MONTHS:
            day = last_friday(year, month)
            out.append(datetime(day.year, day.month, day.day, EXPIRY_HOUR_UTC, tzinfo=timezone.utc))
    return out


def future_instrument(template: Instrument, expiry: datetime) -> Instrument:
    """The linear quarterly on `template`'s pair expiring at `expiry`, with its lot size, minimum
    notional and tick (the pair's perp when there is one: the closest listed contract)."""
    return Instrument(exchange=template.exchange,
                      symbol=f"{template.base}/{template.quote}:{template.quote}-{expiry:%y%m%d}",
                      market="future", base=template.base, quote=template.quote, settle=template.quote,
                      contract="linear", contract_size=1.0, lot_size=template.lot_size,
                      min_notional=template.min_notional, tick_size=template.tick_size,
                      expiry=expiry.strftime("%Y-%m-%dT%H:%M:%SZ"))


def _window(parameters: FuturesParameters) -> tuple[datetime, datetime]:
    try:
        start = datetime.combine(date.fromisoformat(parameters.start), datetime.min.time(), tzinfo=timezone.utc)
    except ValueError as exc:
        raise DatasetError(f"synth --start {parameters.start!r}: not a date (YYYY-MM-DD).") from exc
    if parameters.days < 1:
        raise DatasetError(f"synth --days {parameters.days}: must be >= 1.")
    return start, start + timedelta(days=parameters.days)


def _basis_path(rng: np.random.Generator, parameters: FuturesParameters, bars: int, bar_ns: int) -> np.ndarray:
    """Annualised basis per bar: OU with the parameters' mean, stationary std and half-life."""
    persistence = 0.5 ** (bar_ns / (parameters.basis_half_life_days * 86_400e9))
    shocks = parameters.basis_volatility * math.sqrt(1.0 - persistence**2) * rng.standard_normal((bars, 1))
    first = np.array([parameters.basis_volatility * rng.standard_normal()])
    return parameters.basis_apr + ar1(shocks, persistence, first)[:, 0]


def synthesize_futures(source: str | Path, out: str | Path, parameters: FuturesParameters, *,
                       overwrite: bool = False) -> dict:
    """Write a dataset into `out`: the real spot/perps of `parameters.spot`'s exchange and base from
    `source`, plus synthetic quarterlies (bars, mark, index). Returns rows written per kind."""
    source, out = Path(source), Path(out)
    for option, value, low in (("--basis-apr", parameters.basis_apr, -math.inf),
                               ("--basis-volatility", parameters.basis_volatility, 0.0)):
        if not (low <= value < math.inf):  # nan would make every futures price nan
            raise DatasetError(f"synth {option} {value}: a finite annualised fraction"
                               + (" >= 0" if low == 0 else "") + " (0.08 = 8 %/yr).")
    manifest = read_manifest(source)
    try:
        spot = manifest.instrument(parameters.spot)
    except KeyError:
        raise DatasetError(f"synth --spot {parameters.spot!r}: not declared in {source}/dataset.toml; spot "
                           f"instruments there: {[i.key for i in manifest.instruments if i.market == 'spot']}.") \
            from None
    if spot.market != "spot":
        raise DatasetError(f"synth --spot {parameters.spot!r}: is a {spot.market}, not a spot market.")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise DatasetError(f"{out}: already exists and is not empty. Choose another folder or pass --force.")
    start, end = _window(parameters)
    copied = [i for i in manifest.instruments
              if i.exchange == spot.exchange and i.base == spot.base and i.market != "future"]
    keys = [i.key for i in copied]
    linear_perps = [i for i in copied if i.market == "perp" and i.quote == spot.quote and not i.is_inverse]
    template = linear_perps[0] if linear_perps else spot
    spot_bars = (scan(source, "bars", start, end, [spot.key])
                 .select(pl.col("ts").dt.epoch("ns").alias("ns"), "ts", "timeframe", "open", "high", "low", "close")
                 .sort("ts").collect())
    if not spot_bars.height:
        raise DatasetError(f"synth: {source} has no bars of {spot.key} in [{start:%Y-%m-%d}, {end:%Y-%m-%d}); "
                           "check the range with `xmargin data info`.")
    timeframe = spot_bars["timeframe"][0]
    bar_ns = timeframe_ns(timeframe)
    rng = np.random.default_rng(parameters.seed)
    ns = spot_bars["ns"].to_numpy()
    basis = _basis_path(rng, parameters, len(ns), bar_ns)
    spot_prices = {k: spot_bars[k].to_numpy() for k in ("open", "high", "low", "close")}
    expiries = quarterly_expiries(start, end)
    futures, bars, marks, index = [], [], [], []
    schema = {kind: polars_schema(kind) for kind in ("bars", "mark", "index")}
    for k in range(2, len(expiries)):
        listed, expiry = expiries[k - 2], expiries[k]
        listed_ns, expiry_ns = int(listed.timestamp() * 1e9), int(expiry.timestamp() * 1e9)
        live = (ns >= listed_ns) & (ns + bar_ns <= expiry_ns)
        if not live.any():
            continue
        instrument = future_instrument(template, expiry)
        futures.append(instrument)
        years_left = (expiry_ns - (ns[live] + bar_ns)) / YEAR_NS
        factor = np.exp(basis[live] * years_left)
        fair = {name: values[live] * factor for name, values in spot_prices.items()}
        noise = np.exp(parameters.trade_noise_bp * 1e-4 * rng.standard_normal((2, int(live.sum()))))
        last = {"open": fair["open"] * noise[0], "close": fair["close"] * noise[1]}
        last["high"] = np.maximum.reduce([fair["high"], last["open"], last["close"]])
        last["low"] = np.minimum.reduce([fair["low"], last["open"], last["close"]])
        common = {"ts": spot_bars["ts"].filter(pl.Series(live)), "exchange": instrument.exchange,
                  "symbol": instrument.symbol, "market": "future", "timeframe": timeframe}
        volume = {"volume": np.zeros(int(live.sum()))}  # no traded volume is modelled
        bars.append(pl.DataFrame({**common, **last, **volume}).select(list(schema["bars"])).cast(schema["bars"]))
        marks.append(pl.DataFrame({**common, **fair}).select(list(schema["mark"])).cast(schema["mark"]))
        index.append(pl.DataFrame({**common, **{k: v[live] for k, v in spot_prices.items()}})
                     .select(list(schema["index"])).cast(schema["index"]))
    if not futures:
        raise DatasetError(f"synth: no quarterly of {spot.key} trades inside [{start:%Y-%m-%d}, {end:%Y-%m-%d}).")
    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    rows = {}
    for kind in ("bars", "mark", "funding"):
        frame = scan(source, kind, start, end, keys)
        real = frame.sort("ts", "exchange", "symbol", maintain_order=True).collect() if frame is not None else None
        parts = ([real] if real is not None and real.height else []) + {"bars": bars, "mark": marks}.get(kind, [])
        if parts:
            table = pl.concat(parts, how="vertical").sort("ts", "exchange", "symbol", maintain_order=True)
            _write(partial, kind, table)
            rows[kind] = table.height
    table = pl.concat(index, how="vertical").sort("ts", "exchange", "symbol", maintain_order=True)
    _write(partial, "index", table)
    rows["index"] = table.height
    settings = (f"spot={parameters.spot}, start={parameters.start}, days={parameters.days}, seed={parameters.seed}, "
                f"basis_apr={parameters.basis_apr}, basis_volatility={parameters.basis_volatility}, "
                f"basis_half_life_days={parameters.basis_half_life_days}, "
                f"trade_noise_bp={parameters.trade_noise_bp}")
    derived = DatasetManifest(
        name=out.name, kind="synthetic",
        description=(f"SYNTHETIC quarterly futures of {spot.base}/{spot.quote} on {spot.exchange} derived from real "
                     f"spot ({source.name}: {spot.key}) with an Ornstein-Uhlenbeck annualised basis, plus the real "
                     f"{', '.join(keys)} copied unchanged, {start:%Y-%m-%d} .. {end:%Y-%m-%d} UTC. Futures bars, "
                     "marks and index are generated: do not read their prices as market history."),
        instruments=tuple(copied) + tuple(futures),
        sources=tuple(manifest.sources) + (Source(
            name="xmargin data synth --futures-from", licence="generated from the real spot above",
            notes=f"xmargin.dataset.synth_futures (numpy PCG64) with {settings}; index = the real spot bars"),),
        caveats=tuple(c for c in manifest.caveats if c.instrument in keys))  # the copied data's doubts stay
    write_manifest(partial, derived)
    publish(partial, out)
    return rows


def _write(folder: Path, kind: str, table: pl.DataFrame) -> None:
    path = folder / kind / "data.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    table.write_parquet(path, compression="zstd", statistics=True)
