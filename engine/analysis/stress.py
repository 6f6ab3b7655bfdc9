"""Stress scenarios: shocks injected into a run's market data and venue conditions.

A shock is a frozen value with `prepare(backtest)`, called once after the feed is loaded. Every
shock does all its work there: it replaces `backtest.feed` and `backtest.context.feed` by a modified copy
(`attrs.evolve` with numpy slices of the dense arrays, no per-row Python) or extends
`backtest.context.withdrawal_halts`. Strategies only ever see rows up to the current one, so
shocking the future rows up front is the same as shocking them when they are reached.

Kinds (`size` is a fraction: -0.2 = -20 %; the text form accepts "-20%"):

  gap              last and mark prices of the instruments x (1 + size) from `at` on (a lasting gap)
  mark-divergence  mark prices only x (1 + size) during [at, at + duration)
  funding-spike    funding rate of the instruments' settlements in [at, at + duration) set to `size`
  collateral-fall  a gap of every instrument whose base asset is `asset` (spot and perps, every exchange)
  withdrawal-halt  transfers to or from `exchange` rejected during [at, at + duration)

Instruments are named by key (`binance:ETH/USDT:USDT`), by exchange (`binance`: all of its
instruments) or `*` (all). `duration` defaults to the end of the run.

Text form (`xmargin stress --shock`):   KIND:TARGET[:SIZE]@AT[/DURATION]

  gap:binance:ETH/USDT:USDT:-20%@2025-02-03T00:00
  gap:binance:ETH/USDT:USDT,binance:BTC/USDT:USDT:-10%@2025-02-03
  mark-divergence:binance:BTC/USDT:USDT:+5%@2025-02-03T00:00/6h
  funding-spike:hyperliquid:0.5%@2025-02-03/1d
  collateral-fall:ETH:-30%@2025-02-03T12:00
  withdrawal-halt:binance@2025-02-03/2d

Config form: `[[stress]]` tables (kind, at, size, instruments | exchange | asset, duration, and
an optional `scenario` name; tables sharing a scenario name combine into one run; tables without
one form the scenario "config").
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime, timezone

import attrs
import numpy as np

from xmargin.config import parse_duration, reject_unknown
from xmargin.dataset.feed import iso_minutes
from xmargin.errors import ConfigError
from xmargin.output.writer import check_run_id

KINDS = ("gap", "mark-divergence", "funding-spike", "collateral-fall", "withdrawal-halt")
_PRICE_ARRAYS = ("open", "high", "low", "close")
_MARK_ARRAYS = ("mark_open", "mark_high", "mark_low", "mark_close")


# ------------------------------------------------------------------------------------------ parsing helpers
def to_ns(value, where: str = "at") -> int:
    """ISO date / datetime (UTC unless it says otherwise), a datetime/date, or ns since epoch."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    else:
        text = str(value).strip().replace("Z", "+00:00")
        try:
            moment = datetime.fromisoformat(text)
        except ValueError as exc:
            raise ConfigError(f"{where} = {value!r}: not a date or datetime; use ISO format, e.g. "
                              "2025-02-03 or 2025-02-03T00:00.") from exc
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def parse_size(value, where: str = "size") -> float:
    """-0.2, "-0.2", "-20%", "+5%" -> a fraction."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    try:
        if text.endswith("%"):
            return float(text[:-1]) / 100.0
        return float(text)
    except ValueError as exc:
        raise ConfigError(f"{where} = {value!r}: not a number or percentage (e.g. -0.2 or -20%).") from exc


def parse_duration_ns(value, where: str = "duration") -> int | None:
    if value is None or value == "":
        return None
    return parse_duration(str(value), where)


def _for(duration: int | None) -> str:
    """' for 6h' (or '' without a duration), for describe()."""
    return f" for {duration / 3.6e12:g}h" if duration else ""


def _resolve(backtest, targets: tuple[str, ...], label: str) -> list[int]:
    """Feed columns of the target instruments (keys, exchange names or '*')."""
    keys = backtest.feed.keys
    exchanges = {k.split(":", 1)[0] for k in keys}
    columns = []
    for target in targets:
        if target == "*":
            columns.extend(range(len(keys)))
        elif target in keys:
            columns.append(keys.index(target))
        elif target in exchanges:
            columns.extend(n for n, k in enumerate(keys) if k.split(":", 1)[0] == target)
        else:
            raise ConfigError(f"stress {label}: {target!r} is neither an instrument of the run nor an exchange; "
                              f"instruments: {list(keys)}.")
    return sorted(set(columns))


def _window(feed, at: int, duration: int | None) -> tuple[int, int]:
    start = int(np.searchsorted(feed.ts, at, side="left"))
    stop = len(feed.ts) if duration is None else int(np.searchsorted(feed.ts, at + duration, side="left"))
    return start, stop


def _set_feed(backtest, feed) -> None:
    backtest.feed = feed
    backtest.context.feed = feed


def _scaled(feed, names, start: int, stop: int, columns: list[int], factor: float) -> dict:
    changes = {}
    for name in names:
        values = feed.array_copy(getattr(feed, name))  # (column-major; paged like the feed's own)
        values[start:stop, columns] *= factor
        changes[name] = values
    return changes


# ------------------------------------------------------------------------------------------ shocks
@attrs.frozen
class PriceGap:
    """Last and mark prices of `instruments` x (1 + size) from `at` on."""

    at: int
    instruments: tuple
    size: float
    kind = "gap"

    def prepare(self, backtest) -> None:
        feed = backtest.feed
        columns = _resolve(backtest, self.instruments, self.describe())
        start, stop = _window(feed, self.at, None)
        _set_feed(backtest, attrs.evolve(feed, **_scaled(feed, _PRICE_ARRAYS + _MARK_ARRAYS, start, stop, columns,
                                                          1.0 + self.size)))

    def describe(self) -> str:
        return f"gap {','.join(self.instruments)} {self.size * 100:+.4g}% at {iso_minutes(self.at)}"


@attrs.frozen
class MarkDivergence:
    """Mark prices only x (1 + size) during [at, at + duration)."""

    at: int
    instruments: tuple
    size: float
    duration: int | None = None
    kind = "mark-divergence"

    def prepare(self, backtest) -> None:
        feed = backtest.feed
        columns = _resolve(backtest, self.instruments, self.describe())
        start, stop = _window(feed, self.at, self.duration)
        _set_feed(backtest, attrs.evolve(feed, **_scaled(feed, _MARK_ARRAYS, start, stop, columns, 1.0 + self.size)))

    def describe(self) -> str:
        until = _for(self.duration)
        return f"mark-divergence {','.join(self.instruments)} {self.size * 100:+.4g}% at {iso_minutes(self.at)}{until}"


@attrs.frozen
class FundingSpike:
    """Funding rate of the instruments' settlements in [at, at + duration) set to `rate`."""

    at: int
    instruments: tuple
    rate: float
    duration: int | None = None
    kind = "funding-spike"

    def prepare(self, backtest) -> None:
        feed = backtest.feed
        columns = _resolve(backtest, self.instruments, self.describe())
        end = math.inf if self.duration is None else self.at + self.duration
        hit = np.isin(feed.funding_column, columns) & (feed.funding_ts >= self.at) & (feed.funding_ts < end)
        _set_feed(backtest, attrs.evolve(feed, funding_rate=np.where(hit, self.rate, feed.funding_rate)))

    def describe(self) -> str:
        until = _for(self.duration)
        return f"funding-spike {','.join(self.instruments)} rate {self.rate * 100:+.4g}% at {iso_minutes(self.at)}{until}"


@attrs.frozen
class CollateralFall:
    """Every instrument with base asset `asset` (spot and perps, every exchange) x (1 + size) from `at` on."""

    at: int
    asset: str
    size: float
    kind = "collateral-fall"

    def instruments(self, backtest) -> tuple:
        return tuple(key for key, tradable in backtest.catalog.tradables.items()
                     if tradable.instrument.base == self.asset and key in backtest.feed.keys)

    def prepare(self, backtest) -> None:
        keys = self.instruments(backtest)
        if not keys:
            raise ConfigError(f"stress {self.describe()}: no instrument of the run has base asset {self.asset!r}.")
        PriceGap(self.at, keys, self.size).prepare(backtest)

    def describe(self) -> str:
        return f"collateral-fall {self.asset} {self.size * 100:+.4g}% at {iso_minutes(self.at)}"


@attrs.frozen
class WithdrawalHalt:
    """Transfers to or from `exchange` rejected during [at, at + duration)."""

    at: int
    exchange: str
    duration: int | None = None
    kind = "withdrawal-halt"

    def prepare(self, backtest) -> None:
        if self.exchange not in backtest.catalog.venues:
            raise ConfigError(f"stress {self.describe()}: no exchange {self.exchange!r} in the run; configured: "
                              f"{sorted(backtest.catalog.venues)}.")
        end = np.iinfo(np.int64).max if self.duration is None else self.at + self.duration
        backtest.context.withdrawal_halts = (*backtest.context.withdrawal_halts, (self.exchange, self.at, end))

    def describe(self) -> str:
        until = _for(self.duration)
        return f"withdrawal-halt {self.exchange} at {iso_minutes(self.at)}{until}"


# ------------------------------------------------------------------------------------------ builders
def make_shock(kind: str, at, size=None, instruments=(), exchange: str | None = None, asset: str | None = None,
               duration=None, where: str = "stress"):
    """A shock from its parts (the config table's keys)."""
    if kind not in KINDS:
        raise ConfigError(f"{where}: kind = {kind!r}; allowed: {list(KINDS)}.")
    at_ns = to_ns(at, f"{where}.at")
    duration_ns = parse_duration_ns(duration, f"{where}.duration")
    if isinstance(instruments, str):
        instruments = [instruments]
    targets = tuple(instruments) or ((exchange,) if exchange else ())
    if kind == "withdrawal-halt":
        if not exchange and len(targets) == 1:
            exchange = targets[0]
        if not exchange:
            raise ConfigError(f"{where}: withdrawal-halt needs exchange = \"<name>\".")
        return WithdrawalHalt(at_ns, exchange, duration_ns)
    if size is None:
        raise ConfigError(f"{where}: {kind} needs a size (e.g. size = -0.2 or \"-20%\").")
    value = parse_size(size, f"{where}.size")
    if kind == "collateral-fall":
        asset = asset or (targets[0] if len(targets) == 1 else None)
        if not asset:
            raise ConfigError(f"{where}: collateral-fall needs asset = \"<base asset>\", e.g. asset = \"ETH\".")
        return CollateralFall(at_ns, asset, value)
    if not targets:
        raise ConfigError(f"{where}: {kind} needs instruments = [...] (keys, exchange names or \"*\") or exchange.")
    if kind in ("gap",) and value <= -1:
        raise ConfigError(f"{where}: size {value} would take prices to zero or below; use a size > -100%.")
    if kind == "gap":
        return PriceGap(at_ns, targets, value)
    if kind == "mark-divergence":
        return MarkDivergence(at_ns, targets, value, duration_ns)
    return FundingSpike(at_ns, targets, value, duration_ns)


_TEXT = re.compile(r"^(?P<kind>[a-z-]+):(?P<body>.+)@(?P<when>[^@]+)$")


def parse_shock(text: str):
    """`KIND:TARGET[:SIZE]@AT[/DURATION]` (see the module docstring)."""
    where = f"--shock {text!r}"
    match = _TEXT.match(text.strip())
    if not match:
        raise ConfigError(f"{where}: expected KIND:TARGET[:SIZE]@AT[/DURATION], e.g. "
                          "gap:binance:ETH/USDT:USDT:-20%@2025-02-03T00:00.")
    kind, body, when = match["kind"], match["body"], match["when"]
    at, _, duration = when.partition("/")
    if kind == "withdrawal-halt":
        return make_shock(kind, at, exchange=body, duration=duration or None, where=where)
    target, sep, size = body.rpartition(":")
    if not sep:
        raise ConfigError(f"{where}: {kind} needs TARGET:SIZE before '@', e.g. {kind}:binance:-20%@2025-02-03.")
    targets = [t.strip() for t in target.split(",") if t.strip()]
    if kind == "collateral-fall":
        return make_shock(kind, at, size=size, asset=target, duration=duration or None, where=where)
    return make_shock(kind, at, size=size, instruments=targets, duration=duration or None, where=where)


def shock_from_table(entry: dict, where: str = "stress"):
    known = {"kind", "at", "size", "instruments", "exchange", "asset", "duration", "scenario", "name"}
    reject_unknown(entry, known, where)
    for key in ("kind", "at"):
        if key not in entry:
            raise ConfigError(f"{where}: {key} is required.")
    return make_shock(entry["kind"], entry["at"], size=entry.get("size"), instruments=entry.get("instruments", ()),
                      exchange=entry.get("exchange"), asset=entry.get("asset"), duration=entry.get("duration"),
                      where=where)


def scenarios_from_config(raw: dict) -> dict[str, tuple]:
    """`[[stress]]` tables grouped by their `scenario` (default "config"), in file order."""
    tables = raw.get("stress", [])
    if isinstance(tables, dict):
        tables = [tables]
    if not isinstance(tables, list):
        raise ConfigError("stress: use [[stress]] tables (an array of tables).")
    out: dict[str, list] = {}
    for n, entry in enumerate(tables):
        if not isinstance(entry, dict):
            raise ConfigError(f"stress[{n}]: expected a table.")
        name = str(entry.get("scenario") or entry.get("name") or "config")
        out.setdefault(name, []).append(shock_from_table(entry, f"stress[{n}]"))
    return {name: tuple(shocks) for name, shocks in out.items()}


def shock_start(shocks) -> int | None:
    return min((s.at for s in shocks), default=None)


# ------------------------------------------------------------------------------------------ running
def _first_after(events, kind: str, since: int | None, extra=None):
    import polars as pl

    frame = events.filter(pl.col("type") == kind)
    if extra is not None:
        frame = frame.filter(extra)
    if since is not None:
        frame = frame.filter(pl.col("ts").dt.epoch("ns") >= since)
    return frame.sort("seq").row(0, named=True) if frame.height else None


def _leading_position(positions, seq: int, exchange: str, unit: str):
    """The pool's position with the worst unrealised PnL in the last snapshot before event `seq`."""
    import polars as pl

    if not unit.startswith("cross:"):
        return unit
    rows = positions.filter((pl.col("events_applied") <= seq) & (pl.col("exchange") == exchange)
                            & (pl.col("margin_mode") == "cross") & (pl.col("asset") == unit[6:]))
    if rows.height == 0:
        return ""
    last = rows.select(pl.col("events_applied").max()).item()
    rows = rows.filter(pl.col("events_applied") == last)
    rows = rows.filter(pl.col("ts") == rows["ts"].max())
    worst = rows.sort("unrealized_pnl", maintain_order=True).row(0, named=True)
    return worst["instrument"]


def _liquidation_amounts(same, collateral) -> dict:
    """Realised PnL (`loss`, negative for a loss) and `fee` of the liquidations `same` in USD (each
    amount at its settle asset's price at the nearest snapshot, stablecoins at 1: as the run summary's
    liquidation_loss), and per settle asset in that asset (`assets`: a coin-margined leg's are coins)."""
    import polars as pl

    from xmargin.analysis.performance import usd_values

    usd = {column: float(usd_values(same.select("ts", "exchange", "asset", column), collateral, column)["usd"].sum())
           for column in ("realized_pnl", "fee")}
    per_asset = same.group_by("asset", maintain_order=True).agg(pl.col("realized_pnl").sum(), pl.col("fee").sum())
    return {"loss": usd["realized_pnl"], "fee": usd["fee"],
            "assets": {row["asset"]: {"loss": float(row["realized_pnl"]), "fee": float(row["fee"])}
                       for row in per_asset.iter_rows(named=True)}}


def triggers(run_path, since: int | None) -> dict:
    """The first margin warning and the first liquidation at or after `since` in a run folder. The
    first liquidation counts every position its exchange liquidated at that moment: `loss` (their
    realised PnL, negative for a loss) and `fee` in USD, `assets` the same per settle asset in that asset."""
    import polars as pl

    from xmargin.output.results import open_run

    run = open_run(run_path)
    events = run.events.collect()
    positions = run.positions.collect()
    out = {"first_warning": None, "first_liquidation": None}
    warning = _first_after(events, "MarginWarningRaised", since, pl.col("level") > 0)
    if warning:
        out["first_warning"] = {"ts": str(warning["ts"]), "exchange": warning["exchange"], "unit": warning["instrument"],
                                "position": _leading_position(positions, warning["seq"], warning["exchange"],
                                                              warning["instrument"]),
                                "margin_ratio": warning["margin_ratio"]}
    liquidation = _first_after(events, "PositionLiquidated", since)
    if liquidation:
        same = events.filter((pl.col("type") == "PositionLiquidated") & (pl.col("ts") == liquidation["ts"])
                             & (pl.col("exchange") == liquidation["exchange"]))
        out["first_liquidation"] = {
            "ts": str(liquidation["ts"]), "exchange": liquidation["exchange"], "instrument": liquidation["instrument"],
            "isolated": liquidation["isolated"], "policy": liquidation["policy"], "positions_closed": same.height,
            **_liquidation_amounts(same, run.collateral.collect())}
    return out


def stress(config, scenarios: dict, out=None, stress_id: str | None = None, baseline: bool = True,
           progress: bool = False):
    """Run the baseline (no shocks) and every scenario (name -> shocks) of `config` (a RunConfig or
    a path); each is a run folder `<out>/<stress-id>/<scenario>/`. Returns (table, reports): a
    polars DataFrame with one row per scenario (also written as stress.arrow; money columns in USD,
    the run summary's) and per scenario the first warning / liquidation caused after its first shock
    (`triggers`; also written as stress.json)."""
    import json
    from pathlib import Path

    import polars as pl

    from xmargin.analysis.compare import as_config
    from xmargin.output.writer import run_id_for
    from xmargin.analysis.variants import Variant, results_folder, run_variants
    from xmargin.output.eventlog import write_ipc

    config = as_config(config)
    root = Path(out or config.out)
    stress_id = check_run_id(stress_id, "--id") if stress_id else run_id_for(config, root, "stress")
    folder = root / stress_id
    plan = ([("baseline", ())] if baseline else []) + list(scenarios.items())
    if not plan:
        raise ConfigError("stress: no scenario to run; give --shock or [[stress]] tables in the config.")
    with results_folder(folder):
        rows, reports = [], {}
        base_pnl = None
        variants = [Variant(name, config, tuple(shocks), {"scenario": name},
                            {"stress": {"scenario": name, "shocks": [s.describe() for s in shocks]}})
                    for name, shocks in plan]
        outcomes = run_variants(variants, folder, keep="all", errors="raise", progress=progress)
        for (name, shocks), completed in zip(plan, outcomes):
            summary = completed.summary
            total = summary["total"]
            since = shock_start(shocks)
            report = triggers(completed.path, since)
            report["shocks"] = [s.describe() for s in shocks]
            report["path"] = str(completed.path)
            reports[name] = report
            tight = total.get("tightest_moment") or {}
            warning, liquidation = report["first_warning"], report["first_liquidation"]
            if name == "baseline":
                base_pnl = total["pnl"]
            rows.append({
                "scenario": name, "shocks": "; ".join(report["shocks"]), "pnl": total["pnl"],
                "pnl_vs_baseline": total["pnl"] - base_pnl if base_pnl is not None else None,
                "liquidations": int(total["liquidations"]), "liquidation_loss": total["liquidation_loss"],
                "insurance_fund_used": total["insurance_fund_used"], "fees": total["fees"], "funding": total["funding"],
                "tightest_liquidation_distance": tight.get("liquidation_distance"),
                "tightest_at": tight.get("ts"),
                "first_warning_ts": warning["ts"] if warning else None,
                "first_warning": f"{warning['exchange']} {warning['unit']}" + (
                    f" ({warning['position']})"
                    if warning["position"] and warning["position"] != warning["unit"] else "")
                if warning else None,
                "first_liquidation_ts": liquidation["ts"] if liquidation else None,
                "first_liquidation": f"{liquidation['exchange']} {liquidation['instrument']}" if liquidation else None,
                "max_drawdown": total.get("max_drawdown"), "rejected_orders": int(total.get("rejected_orders", 0)),
                **{f"collateral_consumed_{e}": v.get("collateral_consumed", {}).get("amount")
                   for e, v in summary["exchanges"].items()},
                "path": str(completed.path)})
        schema = {"scenario": pl.String, "shocks": pl.String, "pnl": pl.Float64, "pnl_vs_baseline": pl.Float64,
                  "liquidations": pl.Int64, "liquidation_loss": pl.Float64, "insurance_fund_used": pl.Float64,
                  "fees": pl.Float64, "funding": pl.Float64, "tightest_liquidation_distance": pl.Float64,
                  "tightest_at": pl.String, "first_warning_ts": pl.String, "first_warning": pl.String,
                  "first_liquidation_ts": pl.String, "first_liquidation": pl.String, "max_drawdown": pl.Float64,
                  "rejected_orders": pl.Int64}
        schema.update({f"collateral_consumed_{e}": pl.Float64 for e in config.exchanges})
        schema["path"] = pl.String
        table = pl.DataFrame(rows, schema=schema)
        write_ipc(table.to_arrow(), folder / "stress.arrow")
        (folder / "stress.json").write_text(json.dumps(reports, indent=2, default=str) + "\n")
    return table, reports


def _in_coins(assets: dict) -> str:
    """'; in BTC: loss -1.5, fee 0.001' for the settle assets other than stablecoins ('' if none)."""
    from xmargin.margin.collateral import STABLECOINS

    return "".join(f"; in {asset}: loss {v['loss']:,.8g}, fee {v['fee']:,.8g}"
                   for asset, v in assets.items() if asset not in STABLECOINS)


def format_stress(table, reports: dict, folder=None) -> str:
    """Per scenario: PnL, against the baseline, the book's flow-adjusted drawdown, liquidations and
    their loss (a positive amount), rejected orders, the tightest distance and the collateral
    consumed per exchange (money in USD, as the run summary's); then what each shock triggered first
    (the first liquidation's loss and fee in USD, and in each settle asset other than a stablecoin)."""
    from xmargin.analysis.compare import _cell, fixed_width

    consumed = [c for c in table.columns if c.startswith("collateral_consumed_")]
    headers = ["scenario", "pnl", "vs base", "max dd", "liq", "liq loss", "rejected", "tightest"] + [
        f"consumed {c[len('collateral_consumed_'):]}" for c in consumed]
    rows = [[row["scenario"], _cell(row["pnl"], "money"), _cell(row["pnl_vs_baseline"], "money"),
             _cell(row["max_drawdown"], "money"), str(row["liquidations"]), _cell(row["liquidation_loss"], "loss"),
             str(row["rejected_orders"]), _cell(row["tightest_liquidation_distance"], "percent")]
            + [_cell(row[c], "money") for c in consumed] for row in table.iter_rows(named=True)]
    lines = fixed_width(headers, rows)
    lines.append("  (money in USD, a coin at its price at the time; liq loss: realised PnL of liquidations plus their "
                 "fees, as the run summary's liquidation_loss)")
    for name, report in reports.items():
        if not report["shocks"]:
            continue
        lines.append(f"  {name}: {'; '.join(report['shocks'])}")
        warning, liquidation = report["first_warning"], report["first_liquidation"]
        if warning:
            led = f", led by {warning['position']}" if warning["position"] and warning["position"] != warning["unit"] \
                else ""
            lines.append(f"    first warning:     {warning['ts']} {warning['exchange']} {warning['unit']}{led} "
                         f"(margin ratio {warning['margin_ratio']:.3f})")
        else:
            lines.append("    first warning:     none after the shock")
        if liquidation:
            kind = "isolated" if liquidation["isolated"] else f"cross pool, policy {liquidation['policy']}"
            lines.append(f"    first liquidation: {liquidation['ts']} {liquidation['exchange']} "
                         f"{liquidation['instrument']} ({kind}; {liquidation['positions_closed']} position(s) closed, "
                         f"loss {liquidation['loss']:,.2f} USD, fee {liquidation['fee']:,.2f} USD"
                         f"{_in_coins(liquidation.get('assets', {}))})")
        else:
            lines.append("    first liquidation: none after the shock")
    if folder is not None:
        lines.append(f"  outputs: {folder}  (stress.arrow, stress.json, one run folder per scenario)")
    return "\n".join(lines)
