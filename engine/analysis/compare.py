"""Compare margin set-ups: the same strategy on the same data under several margin modes.

A set-up assigns a margin mode to every exchange of the config: `isolated` (all exchanges) or
`binance=cross,hyperliquid=isolated` (the others keep the config's mode). Each set-up is a normal
run folder `<out>/<compare-id>/<setup>/`; the comparison is `comparison.arrow` (one row per
set-up) and `comparison.json` (the rows and the divergence notes) next to them.

Columns (money in USD as in the run summary: every coin amount at its price, stablecoins at 1):

  pnl                       final PnL (summary total)
  peak_initial_margin       max over snapshots of the collateral committed to positions: cross
                            initial margin + isolated margin, summed over exchanges (USD)
  return_on_peak_margin     pnl / peak_initial_margin
  min_collateral            the smallest starting collateral (USD) that would have kept every risk
                            unit above maintenance at the snapshots' marks: per exchange and pool
                            the max over time of (maintenance - unrealised PnL) of its cross
                            positions, plus the same per isolated position (each needs its own), an
                            account margined as a whole (portfolio) from its own requirement; each
                            in its own money (a coin-margined pool's in the coin, a multi-asset
                            pool's in USD), valued at that asset's price at the run's start (the
                            price the summary values the starting deposits at: the collateral is
                            deposited then, and a coin need is that many coins), summed; n/a
                            (nan) when a coin needed has no price. Fees and funding ignored. Where
                            a unit was liquidated it only covers the time before.
                            (kept for comparison with earlier runs; it ignores realised PnL, fees,
                            funding and transfers: `xmargin capital` answers the capital question)
  collateral_consumed_<exchange>  deposits + transfers in - transfers out - equity at that exchange's
                            worst moment (run summary, xmargin.analysis.performance), and
                            consumed_at_<exchange> its time
  peak_initial_margin_<exchange>  max of cross initial margin + isolated margin on that exchange (USD)
  max_drawdown_<exchange>, max_drawdown   flow-adjusted drawdown of the exchange and of the whole book
  return_on_capital, cagr, volatility, sharpe, sortino, hours_under_water   the book's (run summary)
  fills, rejected_orders    counts over every exchange
  peak_net_share            the largest peak |net| / gross exposure over the underlyings (1: one-sided)
  min_headroom_<exchange>   lowest 1 - margin ratio of that exchange's cross pools (summary; 0 =
                            liquidation; None where it has no cross pool with maintenance)
  min_isolated_headroom_<exchange>  the same over its isolated positions (None without any)
  hours_above_warning       time during which some unit's margin ratio was at or above the first
                            warning threshold: sample points (pools from the equity table,
                            isolated positions from the positions table) x the sample interval
  liquidations, liquidation_loss (realised PnL of liquidations, negative, WITHOUT their fees: the
                            run summary's liquidation_loss is this minus liquidation_fees), liquidation_fees,
  insurance_fund_used, funding, fees
  capital_efficiency        mean over samples of gross notional / total wallet (incl. isolated margin),
                            both USD at that sample's prices, every exchange's positions counted
  tightest_liquidation_distance   the smallest all-together adverse move to liquidation (xmargin.analysis.distance)
  divergence                where this set-up's event log first differs from the first set-up's

Divergence: the event logs are compared in order on (ts, type, exchange, instrument, quantity)
over the events that change positions or money (margin warnings, whose unit names differ by mode
by construction, and order acceptances, which carry the mode, are left out); the first differing
pair is reported with a reason.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import attrs
import polars as pl

from xmargin.config import MARGIN_MODES, RunConfig, load_config
from xmargin.analysis.performance import usd_values
from xmargin.analysis.summary import committed_margin, usd_prices
from xmargin.margin.collateral import STABLECOINS
from xmargin.margin.modes import MODES
from xmargin.errors import ConfigError
from xmargin.output.writer import check_run_id, run_id_for

IGNORED_FOR_DIVERGENCE = ("MarginWarningRaised", "OrderAccepted", "MarginModeChanged")
PER_EXCHANGE = ("collateral_consumed_", "consumed_at_", "peak_initial_margin_", "max_drawdown_", "min_headroom_",
                "min_isolated_headroom_", "liquidations_", "rejected_orders_")


def as_config(config) -> RunConfig:
    return config if isinstance(config, RunConfig) else load_config(config)


# ------------------------------------------------------------------------------------------ set-ups
def parse_setups(text_or_list, exchanges) -> list[tuple[str, dict]]:
    """'isolated,cross' / 'binance=cross,hyperliquid=isolated;cross' / a list of such strings ->
    [(name, {exchange: mode})]. A bare mode applies to every exchange; items separated by ',' that
    all contain '=' form one set-up; ';' (or several list entries) separates set-ups."""
    items = [text_or_list] if isinstance(text_or_list, str) else list(text_or_list)
    setups = []
    for item in items:
        for part in str(item).split(";"):
            part = part.strip()
            if not part:
                continue
            pieces = [p.strip() for p in part.split(",") if p.strip()]
            if all("=" not in p for p in pieces):  # 'isolated,cross': one set-up per mode
                for mode in pieces:
                    setups.append((mode, {ex: mode for ex in exchanges}))
                continue
            assignment = {}
            for piece in pieces:
                if "=" not in piece:
                    raise ConfigError(f"--modes {part!r}: mix of EXCHANGE=MODE and a bare mode; write "
                                      "'binance=cross,hyperliquid=isolated' or separate set-ups with ';'.")
                exchange, mode = (s.strip() for s in piece.split("=", 1))
                if exchange not in exchanges:
                    raise ConfigError(f"--modes {part!r}: no exchange {exchange!r} in the config; configured: "
                                      f"{sorted(exchanges)}.")
                if exchange in assignment:
                    raise ConfigError(f"--modes {part!r}: exchange {exchange!r} given twice in one set-up; give "
                                      "each exchange one mode (';' separates set-ups).")
                assignment[exchange] = mode
            name = ",".join(f"{e}={m}" for e, m in assignment.items())
            setups.append((name, assignment))
    if not setups:
        raise ConfigError("--modes: no set-up given; e.g. --modes isolated,cross.")
    for name, assignment in setups:
        for mode in assignment.values():
            if mode not in MARGIN_MODES:
                raise ConfigError(f"--modes set-up {name!r}: margin mode {mode!r}; allowed {list(MARGIN_MODES)}.")
    names = [n for n, _ in setups]
    if len(set(names)) != len(names):
        raise ConfigError(f"--modes: set-ups {names} repeat; give each once.")
    return setups


def folder_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name.replace("=", "-").replace(",", "_")).strip("_") or "setup"


def with_modes(config: RunConfig, assignment: dict) -> RunConfig:
    """The config with exchanges' margin modes replaced (the raw mapping too, for the manifest);
    each mode is checked against the exchange's rule set."""
    from xmargin.venues.rules import load_rules

    exchanges = dict(config.exchanges)
    raw = json.loads(json.dumps(config.raw, default=str)) if config.raw else {}
    for exchange, mode in assignment.items():
        entry = exchanges[exchange]
        rules = load_rules(entry.rules)
        if mode not in rules.margin_modes:
            raise ConfigError(f"compare: {exchange} margin mode {mode!r}: rule set {rules.name} allows "
                              f"{list(rules.margin_modes)}.")
        exchanges[exchange] = attrs.evolve(entry, margin_mode=mode)
        raw.setdefault("exchanges", {}).setdefault(exchange, {})["margin_mode"] = mode
    return attrs.evolve(config, exchanges=exchanges, raw=raw)


# ------------------------------------------------------------------------------------------ metrics
def setup_metrics(run_path, summary: dict, thresholds, sample_hours: float) -> dict:
    """The comparison row's numbers for one finished run folder."""
    from xmargin.output.results import open_run

    run = open_run(run_path)
    equity = run.equity.collect()
    positions = run.positions.collect()
    events = run.events.collect()
    collateral = run.collateral.collect()
    total = summary["total"]

    committed = (committed_margin(equity, collateral, positions)  # USD, per exchange
                 .group_by("ts", "reason", "events_applied", maintain_order=True).agg(pl.col("committed").sum()))
    peak_im = float(committed["committed"].max() or 0.0) if committed.height else 0.0

    modes = run.manifest.get("resolved", {}).get("margin_modes", {})
    needed = _min_collateral(equity, positions, collateral, modes)
    # an account margined as a whole is one unit (its equity row), not positions on their own margin
    per_position = positions.filter(~pl.col("exchange").is_in(_whole_accounts(modes)))

    threshold = float(thresholds[0]) if len(thresholds) else math.inf
    samples = equity.filter(pl.col("reason") == "sample")
    pool_hot = samples.filter(pl.col("margin_ratio") >= threshold).select("ts")
    iso_samples = per_position.filter((pl.col("reason") == "sample") & (pl.col("margin_mode") == "isolated"))
    iso_equity = iso_samples["isolated_margin"] + iso_samples["unrealized_pnl"]
    iso_hot = iso_samples.filter((iso_equity <= 0) | (iso_samples["maintenance_margin"] >= threshold * iso_equity))
    hot = pl.concat([pool_hot, iso_hot.select("ts")])["ts"].n_unique() if (pool_hot.height or iso_hot.height) else 0

    # every position's notional, an account margined as a whole's too (it was left out: 0 for a portfolio account)
    efficiency = _capital_efficiency(samples, positions.filter(pl.col("reason") == "sample"), collateral, positions)

    liquidated = events.filter(pl.col("type") == "PositionLiquidated")  # amounts in the settle asset -> USD
    liquidation_loss, liquidation_fees = (
        float(usd_values(liquidated.select("ts", "exchange", "asset", column), collateral, column)["usd"].sum())
        if liquidated.height else 0.0 for column in ("realized_pnl", "fee"))
    row = {
        "pnl": total["pnl"],
        "return_on_peak_margin": total["pnl"] / peak_im if peak_im > 0 else None,
        "peak_initial_margin": peak_im,
        "min_collateral": needed,
        "hours_above_warning": hot * sample_hours,
        "liquidations": int(total["liquidations"]),
        "liquidation_loss": liquidation_loss,
        "liquidation_fees": liquidation_fees,
        "insurance_fund_used": total["insurance_fund_used"],
        "funding": total["funding"],
        "fees": total["fees"],
        "capital_efficiency": efficiency,
        "tightest_liquidation_distance": (total.get("tightest_moment") or {}).get("liquidation_distance"),
    }
    stats = total.get("statistics", {})
    row.update(max_drawdown=total.get("max_drawdown"), return_on_capital=stats.get("return_on_capital"),
               cagr=stats.get("cagr"), volatility=stats.get("volatility"), sharpe=stats.get("sharpe"),
               sortino=stats.get("sortino"), hours_under_water=total.get("drawdown", {}).get("hours_under_water"),
               fills=int(total["fills"]), rejected_orders=int(total.get("rejected_orders", 0)),
               peak_net_share=max((u["peak_net_share"] for u in summary.get("exposure", {}).values()), default=None))
    for exchange, values in summary["exchanges"].items():
        low = values.get("lowest_margin_headroom")
        row[f"min_headroom_{exchange}"] = low["headroom"] if low else None
        isolated = values.get("lowest_isolated_headroom")
        row[f"min_isolated_headroom_{exchange}"] = isolated["headroom"] if isolated else None
        consumed = values.get("collateral_consumed", {})
        row[f"collateral_consumed_{exchange}"] = consumed.get("amount", 0.0)
        row[f"consumed_at_{exchange}"] = consumed.get("ts")
        row[f"peak_initial_margin_{exchange}"] = values["peak_initial_margin"]
        row[f"max_drawdown_{exchange}"] = values["max_drawdown"]
        row[f"liquidations_{exchange}"] = int(values["liquidations"])
        row[f"rejected_orders_{exchange}"] = int(values["rejected_orders"])
    return row


def _whole_accounts(modes: dict) -> list[str]:
    """The exchanges whose margin mode margins the account as a whole (portfolio)."""
    return [e for e, m in modes.items() if m in MODES and MODES[m].margined_as_a_whole]


def _min_collateral(equity: pl.DataFrame, positions: pl.DataFrame, collateral: pl.DataFrame, modes: dict) -> float:
    """min_collateral, USD: per exchange and pool the max over time of (maintenance - unrealised PnL)
    of its cross positions, per isolated position the same, per account margined as a whole its
    own (maintenance - unrealised PnL); each in the money of its pool or position, zero where it
    never needed any, then valued at `_start_values`.

    A pool's money is its settle asset, except in a pool of several assets (multi-asset: one USD
    pool, `MarginMode.pools_are_assets` False), where a position's maintenance is in USD already
    and its unrealised PnL in its settle asset counts at that asset's price at the snapshot (as
    the pool counts it), so its need is USD at every moment."""
    whole = _whole_accounts(modes)
    needed = 0.0
    if whole:  # margined as a whole (portfolio): the account's requirement, not the positions' brackets
        accounts = (equity.filter(pl.col("exchange").is_in(whole)).group_by("exchange", "asset", maintain_order=True)
                    .agg((pl.col("maintenance_margin") - pl.col("unrealized_pnl")).max().alias("need")))
        needed += _start_values(accounts, equity, collateral)
    held = positions.filter(~pl.col("exchange").is_in(whole))
    cross = held.filter(pl.col("margin_mode") == "cross")
    if cross.height:
        pairs = cross.select("exchange", "asset").unique(maintain_order=True)
        pool = pl.DataFrame({"exchange": pairs["exchange"], "asset": pairs["asset"],
                             "pool": [MODES[modes[e]].pool_of(a) if modes.get(e) in MODES else a
                                      for e, a in pairs.iter_rows()]}, schema={"exchange": pl.String,
                                                                              "asset": pl.String, "pool": pl.String})
        key = ["ts", "reason", "exchange", "events_applied"]
        legs = usd_prices(cross.select(*key, "asset", "maintenance_margin", "unrealized_pnl"), collateral, positions)
        # a leg settled in its pool's asset counts as is; one in a USD pool of several assets at its asset's price
        scale = pl.when(pl.col("asset") == pl.col("pool")).then(1.0).otherwise(pl.col("usd_price"))
        pools = (legs.join(pool, on=["exchange", "asset"], how="left", maintain_order="left")
                 .group_by(*key, "pool", maintain_order=True)
                 .agg((pl.col("maintenance_margin") - pl.col("unrealized_pnl") * scale).sum().alias("need"))
                 .group_by("exchange", pl.col("pool").alias("asset"), maintain_order=True).agg(pl.col("need").max()))
        needed += _start_values(pools, equity, collateral)
    isolated = held.filter(pl.col("margin_mode") == "isolated")
    if isolated.height:
        # one isolated position = one instrument held from opening to closing; reopened positions count once
        per = isolated.group_by("exchange", "instrument", maintain_order=True).agg(
            pl.col("asset").first(), (pl.col("maintenance_margin") - pl.col("unrealized_pnl")).max().alias("need"))
        needed += _start_values(per, equity, collateral)
    return needed


def _start_values(needs: pl.DataFrame, equity: pl.DataFrame, collateral: pl.DataFrame) -> float:
    """The sum of `needs` (exchange, asset, need in that asset; below zero counts zero) in USD, each
    at its asset's price on that exchange at the run's start (`usd_values`: stablecoins at 1, a coin
    at the nearest snapshot's price, the price the run summary values the starting deposits at):
    the collateral is deposited then, and a coin need is that many coins whatever the coin does
    later. nan when a coin needed has no price on that exchange."""
    frame = needs.select(pl.lit(equity["ts"].min(), dtype=equity.schema["ts"]).alias("ts"), "exchange", "asset",
                         pl.col("need").clip(lower_bound=0.0))
    coins = frame.filter(~pl.col("asset").is_in(list(STABLECOINS)) & (pl.col("need") > 0))
    priced = collateral.filter(pl.col("price").is_not_nan()).select("exchange", "asset").unique()
    if coins.height and coins.join(priced, on=["exchange", "asset"], how="anti").height:
        return math.nan
    return float(usd_values(frame, collateral, "need")["usd"].sum())


def _capital_efficiency(samples: pl.DataFrame, sampled: pl.DataFrame, collateral: pl.DataFrame,
                        positions: pl.DataFrame) -> float:
    """capital_efficiency: the mean over samples of gross notional / total wallet (the pools' wallet
    balances, isolated margin included), both USD at that sample (each position's notional and each
    pool's wallet in its asset at `usd_prices`); samples without a positive wallet are left out.
    Sums and the mean run in sample order (group_by and join keep it): the same number every time."""
    key = ["ts", "reason", "events_applied", "exchange", "asset"]
    notional = usd_prices(sampled.select(*key, "notional"), collateral, positions)
    gross = notional.group_by("ts", maintain_order=True).agg((pl.col("notional") * pl.col("usd_price")).sum()
                                                             .alias("gross"))
    wallets = usd_prices(samples.select(*key, "wallet_balance"), collateral, positions)
    wallet = wallets.group_by("ts", maintain_order=True).agg((pl.col("wallet_balance") * pl.col("usd_price")).sum()
                                                             .alias("wallet"))
    if not wallet.height:
        return 0.0
    joined = (wallet.join(gross, on="ts", how="left", maintain_order="left")
              .with_columns(pl.col("gross").fill_null(0.0)))
    ratio = joined.filter(pl.col("wallet") > 0).select(pl.col("gross") / pl.col("wallet"))
    return float(ratio.to_series().mean() or 0.0) if ratio.height else 0.0


# ------------------------------------------------------------------------------------------ divergence
def _material(events: pl.DataFrame) -> pl.DataFrame:
    return (events.filter(~pl.col("type").is_in(IGNORED_FOR_DIVERGENCE))
            .select("seq", "ts", "type", "exchange", pl.col("instrument").fill_null(""),
                    pl.col("quantity").round(9).fill_null(0.0), "realized_pnl", "price", "isolated", "policy",
                    "reason", "amount"))


def _describe(event: dict | None) -> str:
    if event is None:
        return "no further event"
    text = f"{event['type']} {event['exchange']}"
    if event["instrument"]:
        text += f" {event['instrument']}"
    if event["type"] == "PositionLiquidated":
        text += (f" qty {event['quantity']:g} at {event['price']:,.2f} ({'isolated' if event['isolated'] else 'cross, ' + str(event['policy'])}"
                 f", PnL {event['realized_pnl']:,.2f})")
    elif event["type"] in ("OrderFilled",):
        text += f" qty {event['quantity']:g} at {event['price']:,.2f}"
    elif event["type"] in ("OrderRejected", "TransferRejected"):
        text += f" ({event['reason']})"
    elif event.get("amount") is not None:
        text += f" {event['amount']:,.2f}"
    return text


def first_divergence(a_name: str, a_events: pl.DataFrame, b_name: str, b_events: pl.DataFrame) -> dict | None:
    """The first differing pair of material events of two runs (None: same sequence)."""
    a, b = _material(a_events), _material(b_events)
    cols = ["ts", "type", "exchange", "instrument", "quantity"]
    n = min(a.height, b.height)
    same = (a.head(n).select(cols) == b.head(n).select(cols)) if n else None
    if same is not None:
        differs = ~same.select(pl.all_horizontal(pl.all())).to_series()
        index = int(differs.arg_true()[0]) if differs.any() else n
    else:
        index = 0
    if index >= a.height and index >= b.height:
        return None
    ea = a.row(index, named=True) if index < a.height else None
    eb = b.row(index, named=True) if index < b.height else None
    when = min(e["ts"] for e in (ea, eb) if e is not None)
    if ea and ea["type"] == "PositionLiquidated" and (not eb or eb["type"] != "PositionLiquidated"):
        why = (f"{a_name} liquidated {ea['instrument']} ({'isolated position' if ea['isolated'] else 'cross pool'}) "
               f"where {b_name} did not: {b_name}'s margin absorbed the move")
    elif eb and eb["type"] == "PositionLiquidated" and (not ea or ea["type"] != "PositionLiquidated"):
        why = (f"{b_name} liquidated {eb['instrument']} ({'isolated position' if eb['isolated'] else 'cross pool'}) "
               f"where {a_name} did not: {a_name}'s margin absorbed the move")
    elif ea and eb and ea["type"] == eb["type"] == "PositionLiquidated":
        why = f"both liquidated, but differently ({_describe(ea)} vs {_describe(eb)})"
    elif ea and eb and "Rejected" in ea["type"] + eb["type"]:
        why = "one set-up's order or transfer was rejected (margin available differs)"
    else:
        why = "the event sequences part here"
    return {"a": a_name, "b": b_name, "index": index, "ts": str(when), "a_event": _describe(ea),
            "b_event": _describe(eb), "why": why,
            "text": f"{when}: {a_name}: {_describe(ea)}; {b_name}: {_describe(eb)} -> {why}"}


# ------------------------------------------------------------------------------------------ API
def compare(config, setups, out=None, compare_id: str | None = None, progress: bool = False, shocks=()):
    """Run `config` (a RunConfig or a config path) under each margin set-up (see `parse_setups`)
    and return (table, notes): a polars DataFrame with one row per set-up and the divergence notes
    (list of dicts with a readable `text`), both also written under `<out>/<compare-id>/`.
    `shocks` (xmargin.analysis.stress) are injected into every set-up's run (compare modes under stress)."""
    from xmargin.analysis.variants import Variant, results_folder, run_variants
    from xmargin.output.eventlog import write_ipc

    config = as_config(config)
    if isinstance(setups, dict):
        setups = list(setups.items())
    elif isinstance(setups, str) or all(isinstance(s, str) for s in setups):
        setups = parse_setups(setups, list(config.exchanges))
    root = Path(out or config.out)
    compare_id = check_run_id(compare_id, "--id") if compare_id else run_id_for(config, root, "compare")
    folder = root / compare_id
    with results_folder(folder):
        rows, logs = [], []
        sample_hours = config.sample_interval_ns / 3.6e12
        variants = [Variant(folder_name(name), with_modes(config, assignment), tuple(shocks), {"setup": name},
                            {"compare": {"id": compare_id, "setup": name, "margin_modes": assignment}})
                    for name, assignment in setups]
        outcomes = run_variants(variants, folder, keep="all", errors="raise", progress=progress)
        for (name, assignment), variant, completed in zip(setups, variants, outcomes):
            setup_config = variant.config
            row = {"setup": name,
                   "margin_modes": ",".join(f"{e}={v.margin_mode}" for e, v in setup_config.exchanges.items())}
            row.update(setup_metrics(completed.path, completed.summary, config.warning_thresholds, sample_hours))
            row["path"] = str(completed.path)
            rows.append(row)
            from xmargin.output.results import open_run

            logs.append((name, open_run(completed.path).events.collect()))
        notes = []
        for name, log in logs[1:]:
            note = first_divergence(logs[0][0], logs[0][1], name, log)
            notes.append(note or {"a": logs[0][0], "b": name, "text": f"{logs[0][0]} and {name}: identical event "
                                                                       "sequences (positions and money)"})
        divergence = {n["b"]: n["text"] for n in notes}
        for row in rows:
            row["divergence"] = divergence.get(row["setup"], "")
        table = pl.DataFrame(rows, infer_schema_length=None)
        order = ["setup", "margin_modes", "pnl", "return_on_peak_margin", "peak_initial_margin", "min_collateral"]
        order += sorted(c for c in table.columns if c.startswith("min_headroom_"))
        order += ["hours_above_warning", "liquidations", "liquidation_loss", "liquidation_fees", "insurance_fund_used",
                  "funding", "fees", "capital_efficiency", "tightest_liquidation_distance", "max_drawdown",
                  "return_on_capital", "cagr", "volatility", "sharpe", "sortino", "hours_under_water", "fills",
                  "rejected_orders", "peak_net_share"]
        for prefix in PER_EXCHANGE:
            order += [f"{prefix}{e}" for e in config.exchanges if prefix != "min_headroom_"]
        order += ["divergence", "path"]
        table = table.select(order).with_columns(pl.col(pl.Null).cast(pl.Float64))
        write_ipc(table.to_arrow(), folder / "comparison.arrow")
        (folder / "comparison.json").write_text(json.dumps({"id": compare_id, "rows": table.to_dicts(), "notes": notes},
                                                           indent=2, default=str) + "\n")
    return table, notes


def _cell(value, kind: str) -> str:
    """One table cell: n/a for a missing figure; money with thousands separators; percentages."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if kind == "money":
        return f"{value:,.2f}"
    if kind == "loss":  # a loss shown as a positive amount under a "loss" heading
        return f"{abs(value):,.2f}"
    if kind == "percent":
        return f"{value * 100:.1f}%"
    if kind == "ratio":
        return f"{value:.2f}"
    if kind == "hours":
        return f"{value:,.0f}"
    return str(value)


def fixed_width(headers: list[str], rows: list[list[str]], indent: str = "  ") -> list[str]:
    """Right-aligned columns (the first left-aligned), each as wide as its widest cell, two spaces
    apart: wide numbers never run into each other."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells):
        first = cells[0].ljust(widths[0])
        return indent + "  ".join([first] + [c.rjust(w) for c, w in zip(cells[1:], widths[1:])])

    return [line(headers)] + [line(r) for r in rows]


BOOK_COLUMNS = (("pnl", "pnl", "money"), ("return on capital", "return_on_capital", "percent"),
                ("max dd", "max_drawdown", "money"), ("sharpe", "sharpe", "ratio"), ("fills", "fills", "int"),
                ("rejected", "rejected_orders", "int"), ("liq", "liquidations", "int"),
                ("liq loss", "liquidation_loss", "loss"), ("liq fees", "liquidation_fees", "money"),
                ("funding", "funding", "money"), ("fees", "fees", "money"), ("h>warn", "hours_above_warning", "hours"),
                ("|net|/gross", "peak_net_share", "percent"), ("gross/coll", "capital_efficiency", "ratio"))
EXCHANGE_COLUMNS = (("consumed", "collateral_consumed_", "money"), ("at", "consumed_at_", "text"),
                    ("peak IM", "peak_initial_margin_", "money"), ("max dd", "max_drawdown_", "money"),
                    ("headroom", "min_headroom_", "percent"),
                    ("isolated headroom", "min_isolated_headroom_", "percent"),
                    ("liq", "liquidations_", "int"), ("rejected", "rejected_orders_", "int"))


def format_comparison(table: pl.DataFrame, notes: list, folder=None) -> str:
    """The comparison as text: a legend of the set-ups (full labels), the book's figures per set-up,
    each exchange's per set-up, then the divergence notes. Losses are positive amounts under a
    "loss" heading; n/a where a figure does not apply (no cross pool, no isolated position)."""
    rows = list(table.iter_rows(named=True))
    keys = [f"[{n + 1}]" for n in range(len(rows))]
    lines = [f"  {key} {row['setup']}: {row['margin_modes']}" for key, row in zip(keys, rows)]
    lines += fixed_width(["set-up"] + [h for h, _, _ in BOOK_COLUMNS],
                         [[key] + [_cell(row.get(c), kind) for _, c, kind in BOOK_COLUMNS]
                          for key, row in zip(keys, rows)])
    lines.append("  (liq loss: realised PnL of liquidations, as a loss; their fees apart under liq fees. The run "
                 "summary's liquidation_loss, and stress's, include those fees)")
    exchanges = [c[len("collateral_consumed_"):] for c in table.columns if c.startswith("collateral_consumed_")]
    if exchanges:
        lines.append("  per exchange (consumed: deposits + transfers in - transfers out - equity at the worst moment):")
        lines += fixed_width(["set-up", "exchange"] + [h for h, _, _ in EXCHANGE_COLUMNS],
                             [[key, exchange] + [_cell(row.get(prefix + exchange), kind)
                                                 for _, prefix, kind in EXCHANGE_COLUMNS]
                              for key, row in zip(keys, rows) for exchange in exchanges])
    for note in notes:
        lines.append(f"  divergence: {note['text']}")
    if folder is not None:
        lines.append(f"  outputs: {folder}  (comparison.arrow, comparison.json, one run folder per set-up)")
    return "\n".join(lines)
