"""The charts of one run, as Plotly figure specifications (plain dicts), computed from its tables.

Each trace carries `meta` naming the table, the filter and the column it plots, so a reader (and
the browser tests) can find the rows behind every point. Times are UTC milliseconds since the
epoch on a date axis; money is USD as in the run summary (stablecoins at par, other assets at their
price at the snapshot). Long series are thinned by `xmargin.output.downsample.keep_extremes`.
"""

from __future__ import annotations


import numpy as np
import polars as pl

from xmargin.analysis.exposure import exposure_series, position_exposure
from xmargin.analysis.summary import account_equity
from xmargin.errors import ReportError
from xmargin.margin.collateral import STABLECOINS
from xmargin.output.downsample import keep_extremes

KEY = ["ts", "reason", "events_applied", "exchange"]
MARKERS = {  # kind -> (event types, symbol, colour)
    "liquidation": (("PositionLiquidated",), "x", "#d62728"),
    "warning": (("MarginWarningRaised",), "triangle-up", "#ff7f0e"),
    "rejection": (("OrderRejected", "TransferRejected"), "square", "#9467bd"),
    "transfer": (("TransferSent", "TransferArrived"), "diamond", "#7f7f7f"),
}


def ms(column: str = "ts") -> pl.Expr:
    """A timestamp column as float64 UTC milliseconds (Plotly's date axis reads numbers as ms)."""
    return pl.col(column).dt.epoch("ms").cast(pl.Float64).alias("x")


def array(series: pl.Series) -> np.ndarray:
    """float64 values for a trace; nulls and infinities become NaN (a gap in the line)."""
    values = series.cast(pl.Float64).to_numpy().astype(np.float64, copy=True)
    values[~np.isfinite(values)] = np.nan
    return values


def line(frame: pl.DataFrame, y: str, name: str, meta: dict, **style) -> dict:
    """A scatter trace of `frame`'s x (ms) against column `y`."""
    trace = {"type": "scatter", "mode": "lines", "name": name, "x": array(frame["x"]), "y": array(frame[y]),
             "meta": meta}
    trace.update(style)
    return trace


def layout(title: str, y_title: str, *, y_format: str | None = None, **extra) -> dict:
    """A compact layout shared by the time charts (plotly.js's default look: no template object)."""
    out = {"title": {"text": title, "x": 0.01, "font": {"size": 15}}, "height": 380,
           "margin": {"l": 70, "r": 20, "t": 40, "b": 40}, "hovermode": "closest",
           "legend": {"orientation": "h", "y": -0.15}, "yaxis": {"title": {"text": y_title}, "zeroline": True},
           "xaxis": {"type": "date", "hoverformat": "%Y-%m-%d %H:%M UTC"}}
    if y_format:
        out["yaxis"]["tickformat"] = y_format
    out.update(extra)
    return out


def last_per_snapshot(frame: pl.DataFrame) -> pl.DataFrame:
    """The start, sample and final snapshots, one per (ts, exchange): the latest state at that time
    (a final snapshot at a sample time wins). Event snapshots are left out."""
    return (frame.filter(pl.col("reason") != "event").sort("events_applied", maintain_order=True)
            .unique(["ts", "exchange"], keep="last", maintain_order=True).sort("ts", "exchange"))


def _stable(asset: str = "asset") -> pl.Expr:
    return pl.col(asset).is_in(list(STABLECOINS))


# ------------------------------------------------------------------------------------------ equity
def exchange_equity(run) -> pl.DataFrame:
    """USD equity per account at every snapshot (xmargin.analysis.summary.account_equity)."""
    return account_equity(run.collateral.collect(), run.positions.collect())


def book_equity(run, equity: pl.DataFrame) -> pl.DataFrame:
    """The whole book at each start/sample/final time: the sum of every exchange's equity plus
    money in flight between exchanges (sent, not yet arrived, at its asset's price), with `ts`,
    `events_applied`, `equity`, `in_flight`. Times where some exchange has no snapshot are dropped."""
    points = last_per_snapshot(equity)
    exchanges = points["exchange"].n_unique()
    book = (points.group_by("ts", maintain_order=True)
            .agg(pl.col("equity").sum(), pl.col("events_applied").max(), pl.len().alias("_accounts"))
            .filter(pl.col("_accounts") == exchanges).drop("_accounts").sort("ts"))
    events = run.events.filter(pl.col("type").is_in(["TransferSent", "TransferArrived"])).collect()
    sent = events.filter(pl.col("type") == "TransferSent").select(
        "transfer_id", "exchange", "asset", "amount", pl.col("seq").alias("sent_seq"))
    if not sent.height:
        return book.with_columns(pl.lit(0.0).alias("in_flight"))
    arrived = (events.filter(pl.col("type") == "TransferArrived")
               .select("transfer_id", pl.col("seq").alias("arrived_seq")))
    transfers = sent.join(arrived, on="transfer_id", how="left")
    prices = (run.collateral.select("ts", "exchange", "asset", "price").collect()
              .unique(["ts", "exchange", "asset"], keep="last", maintain_order=True).sort("ts"))
    flying = (book.select("ts", "events_applied").join(transfers, how="cross")
              .filter((pl.col("sent_seq") < pl.col("events_applied"))
                      & (pl.col("arrived_seq").is_null() | (pl.col("arrived_seq") >= pl.col("events_applied"))))
              .sort("ts").join_asof(prices, on="ts", by=["exchange", "asset"], strategy="backward",
                                    check_sortedness=False)
              .with_columns(pl.when(_stable()).then(pl.col("amount"))
                            .otherwise(pl.col("amount") * pl.col("price")).alias("usd"))
              .group_by("ts").agg(pl.col("usd").sum().alias("in_flight")))
    return (book.join(flying, on="ts", how="left").with_columns(pl.col("in_flight").fill_null(0.0))
            .with_columns((pl.col("equity") + pl.col("in_flight")).alias("equity")).sort("ts"))


def _marker_events(run) -> pl.DataFrame:
    kinds = [t for types, _, _ in MARKERS.values() for t in types]
    events = run.events.filter(pl.col("type").is_in(kinds)).collect()
    return events.filter((pl.col("type") != "MarginWarningRaised") | (pl.col("level") > 0))


def _describe(row: dict) -> str:
    """One line of hover text for a marker event."""
    text = f"{row['type']} {row['exchange']}"
    for key in ("instrument", "reason"):
        if row.get(key):
            text += f" {row[key]}"
    if row["type"] == "PositionLiquidated":
        text += f" qty {row['quantity']:g} at {row['price']:,.2f}, PnL {row['realized_pnl']:,.2f}"
    elif row["type"] == "MarginWarningRaised":
        text += f" level {row['level']}: margin ratio {row['margin_ratio']:.3f} >= {row['threshold']:g}"
    elif row["type"].startswith("Transfer") and row.get("amount") is not None:
        text += f" {row['amount']:,.2f} {row['asset'] or ''}"
        if row.get("destination"):
            text += f" to {row['destination']}"
    return text


def equity_figure(run, equity: pl.DataFrame, book: pl.DataFrame) -> dict:
    """Equity per exchange (every snapshot) and the whole book, with event markers placed at the
    exchange's equity of the last snapshot at or before the event's time."""
    data = []
    for exchange in sorted(equity["exchange"].unique().to_list()):
        rows = equity.filter(pl.col("exchange") == exchange).sort("events_applied", "ts", maintain_order=True)
        rows = keep_extremes(rows.with_columns(ms()), ["equity"])
        data.append(line(rows, "equity", f"{exchange} equity", {"table": "equity", "exchange": exchange}))
    rows = keep_extremes(book.with_columns(ms()), ["equity"])
    data.append(line(rows, "equity", "whole book", {"table": "book"}, line={"width": 3, "color": "#111"}))
    events = _marker_events(run)
    if events.height:
        at = (events.sort("ts").join_asof(equity.sort("ts").select("ts", "exchange", "events_applied", "equity")
                                          .unique(["ts", "exchange"], keep="last", maintain_order=True),
                                          on="ts", by="exchange", strategy="backward", check_sortedness=False))
        for kind, (types, symbol, colour) in MARKERS.items():
            rows = at.filter(pl.col("type").is_in(list(types))).with_columns(ms())
            if rows.height:
                data.append({"type": "scatter", "mode": "markers", "name": f"{kind}s ({rows.height})",
                             "x": array(rows["x"]), "y": array(rows["equity"]),
                             "text": [_describe(r) for r in rows.iter_rows(named=True)], "hoverinfo": "x+text",
                             "marker": {"symbol": symbol, "size": 10, "color": colour},
                             "meta": {"table": "events", "kind": kind, "seq": rows["seq"].to_list()}})
    return {"data": data, "layout": layout("Equity per exchange and whole book", "USD")}


# ------------------------------------------------------------------------------------------ margin
def _isolated_ratio(run) -> pl.DataFrame:
    positions = run.positions.filter(pl.col("margin_mode") == "isolated").collect()
    held = pl.col("isolated_margin") + pl.col("unrealized_pnl")
    return positions.with_columns(pl.when(held > 0).then(pl.col("maintenance_margin") / held).otherwise(None)
                                  .alias("margin_ratio"))


def margin_figure(run, thresholds) -> dict:
    """Margin ratio (maintenance / margin balance; 1 = liquidation) per exchange and pool at every
    snapshot, isolated positions too, with the warning thresholds, warnings and liquidations."""
    equity = run.equity.collect().sort("events_applied", "ts", maintain_order=True)
    data = []
    for (exchange, asset), rows in sorted(equity.group_by("exchange", "asset", maintain_order=True),
                                          key=lambda item: item[0]):
        rows = keep_extremes(rows.with_columns(ms()), ["margin_ratio"])
        data.append(line(rows, "margin_ratio", f"{exchange} {asset} pool",
                         {"table": "equity", "exchange": exchange, "asset": asset, "column": "margin_ratio"}))
    isolated = _isolated_ratio(run).sort("events_applied", "ts", maintain_order=True)
    for (exchange, instrument), rows in sorted(isolated.group_by("exchange", "instrument", maintain_order=True),
                                               key=lambda item: item[0]):
        rows = keep_extremes(rows.with_columns(ms()), ["margin_ratio"])
        data.append(line(rows, "margin_ratio", f"{instrument} isolated",
                         {"table": "positions", "exchange": exchange, "instrument": instrument,
                          "column": "maintenance_margin / (isolated_margin + unrealized_pnl)"},
                         line={"dash": "dot"}))
    events = _marker_events(run)
    warnings = events.filter(pl.col("type") == "MarginWarningRaised").with_columns(ms())
    if warnings.height:
        data.append({"type": "scatter", "mode": "markers", "name": f"warnings ({warnings.height})",
                     "x": array(warnings["x"]), "y": array(warnings["margin_ratio"]),
                     "text": [_describe(r) for r in warnings.iter_rows(named=True)], "hoverinfo": "x+text",
                     "marker": {"symbol": "triangle-up", "size": 9, "color": MARKERS["warning"][2]},
                     "meta": {"table": "events", "kind": "warning", "seq": warnings["seq"].to_list()}})
    liquidated = events.filter(pl.col("type") == "PositionLiquidated").with_columns(ms())
    if liquidated.height:
        data.append({"type": "scatter", "mode": "markers", "name": f"liquidations ({liquidated.height})",
                     "x": array(liquidated["x"]), "y": np.ones(liquidated.height),
                     "text": [_describe(r) for r in liquidated.iter_rows(named=True)], "hoverinfo": "x+text",
                     "marker": {"symbol": "x", "size": 11, "color": MARKERS["liquidation"][2]},
                     "meta": {"table": "events", "kind": "liquidation", "seq": liquidated["seq"].to_list()}})
    shapes = [_level(1.0, "#d62728", "liquidation (ratio 1)")]
    shapes += [_level(float(t), "#ff7f0e", f"warning {float(t):g}") for t in thresholds]
    return {"data": data, "layout": layout("Margin ratio per exchange and pool (1 = liquidation)",
                                           "maintenance / margin balance", shapes=[s[0] for s in shapes],
                                           annotations=[s[1] for s in shapes])}


def _level(y: float, colour: str, text: str):
    """A horizontal line across the chart at `y`, with its label."""
    shape = {"type": "line", "xref": "paper", "x0": 0, "x1": 1, "yref": "y", "y0": y, "y1": y,
             "line": {"color": colour, "dash": "dash", "width": 1}}
    note = {"xref": "paper", "x": 1, "xanchor": "right", "yref": "y", "y": y, "yanchor": "bottom", "text": text,
            "showarrow": False, "font": {"size": 10, "color": colour}}
    return shape, note


def distance_figure(run) -> dict:
    """Distance to liquidation (solid) and to the first warning (dotted) per exchange and risk
    unit: the smallest adverse move of every underlying together, as a fraction of price."""
    distance = (run.distance.filter(pl.col("underlying") == "all").collect()
                .sort("events_applied", "ts", maintain_order=True))
    data = []
    for (exchange, unit), rows in sorted(distance.group_by("exchange", "unit", maintain_order=True),
                                         key=lambda item: item[0]):
        rows = keep_extremes(rows.with_columns(ms()), ["liquidation_distance", "warning_distance"])
        meta = {"table": "distance", "exchange": exchange, "unit": unit, "underlying": "all"}
        data.append(line(rows, "liquidation_distance", f"{exchange} {unit} to liquidation",
                         {**meta, "column": "liquidation_distance"}, legendgroup=f"{exchange} {unit}"))
        data.append(line(rows, "warning_distance", f"{exchange} {unit} to warning",
                         {**meta, "column": "warning_distance"}, legendgroup=f"{exchange} {unit}",
                         line={"dash": "dot", "width": 1}))
    return {"data": data, "layout": layout("Distance to liquidation and to the first warning (adverse move of "
                                           "every underlying together)", "adverse move", y_format=".0%")}


# ------------------------------------------------------------------------------------------ exposure
def chosen_snapshots(run) -> pl.DataFrame:
    """The snapshot keys of `last_per_snapshot`: one start/sample/final snapshot per (ts, exchange)."""
    return last_per_snapshot(run.equity.select(KEY).unique(maintain_order=True).collect())


def signed_exposure(run, snapshots: pl.DataFrame) -> pl.DataFrame:
    """Per chosen snapshot and derivative position: `exposure`, its signed USD notional
    (xmargin.analysis.exposure.position_exposure, as in the summary), with `underlying`; an
    instrument held at some time on an exchange counts 0 where it is not held."""
    positions = run.positions.collect().join(snapshots, on=KEY)
    held = position_exposure(positions, run.collateral.collect().join(snapshots, on=KEY)).rename({"usd": "exposure"})
    grid = snapshots.join(held.select("exchange", "instrument", "underlying").unique(), on="exchange")
    return (grid.join(held.select(*KEY, "instrument", "exposure"), on=[*KEY, "instrument"], how="left")
            .with_columns(pl.col("exposure").fill_null(0.0)).sort("instrument", "ts"))


def positions_figure(exposure: pl.DataFrame) -> dict:
    data = []
    for instrument in sorted(exposure["instrument"].unique().to_list()):
        rows = keep_extremes(exposure.filter(pl.col("instrument") == instrument).with_columns(ms()), ["exposure"])
        data.append(line(rows, "exposure", instrument, {"table": "positions", "instrument": instrument,
                                                        "column": "sign(quantity) x notional (USD)"},
                         line={"shape": "hv"}))
    return {"data": data, "layout": layout("Positions: signed notional per instrument (long > 0)", "USD")}


def net_exposure(run, snapshots: pl.DataFrame) -> pl.DataFrame:
    """Net USD exposure per underlying and time over every exchange, derivatives and coin balances:
    the summary's definition (xmargin.analysis.exposure.exposure_series) at the chosen snapshots."""
    series = exposure_series(run.positions.collect(), run.collateral.collect(), snapshots)
    return series.select("ts", "underlying", pl.col("net").alias("exposure"))


def exposure_figure(net: pl.DataFrame) -> dict:
    data = []
    for underlying in sorted(net["underlying"].unique().to_list()):
        rows = keep_extremes(net.filter(pl.col("underlying") == underlying).with_columns(ms()), ["exposure"])
        data.append(line(rows, "exposure", f"net {underlying}", {"table": "net_exposure", "underlying": underlying},
                         line={"shape": "hv"}))
    return {"data": data, "layout": layout("Net exposure per underlying (derivatives + coin balances, all "
                                           "exchanges)", "USD")}


# ------------------------------------------------------------------------------------------ flows
def cumulative_flows(run) -> pl.DataFrame:
    """Cumulative funding (received > 0) and fees (paid, > 0: trading and liquidation fees, and
    withdrawal fees) per exchange, in the flow's asset; `kind`, `exchange`, `asset`, `ts`, `total`."""
    events = run.events.filter(pl.col("type").is_in(["FundingSettled", "FeeCharged", "PositionLiquidated",
                                                      "TransferSent"])).collect()
    parts = [
        events.filter(pl.col("type") == "FundingSettled").select("seq", "ts", "exchange", "asset",
                                                                  pl.lit("funding").alias("kind"), "amount"),
        events.filter(pl.col("type") == "FeeCharged").select("seq", "ts", "exchange", "asset",
                                                              pl.lit("fees").alias("kind"), "amount"),
        events.filter((pl.col("type") == "PositionLiquidated") & (pl.col("fee") != 0)).select(
            "seq", "ts", "exchange", "asset", pl.lit("fees").alias("kind"), pl.col("fee").alias("amount")),
        events.filter((pl.col("type") == "TransferSent") & (pl.col("fee") != 0)).select(
            "seq", "ts", "exchange", "asset", pl.lit("withdrawal fees").alias("kind"), pl.col("fee").alias("amount")),
    ]
    flows = pl.concat(parts).sort("seq")
    return flows.with_columns(pl.col("amount").cum_sum().over("kind", "exchange", "asset").alias("total"))


def flows_figure(flows: pl.DataFrame) -> dict:
    data = []
    styles = {"funding": {}, "fees": {"dash": "dash"}, "withdrawal fees": {"dash": "dot"}}
    for (kind, exchange, asset), rows in sorted(flows.group_by("kind", "exchange", "asset"), key=lambda i: i[0]):
        rows = keep_extremes(rows.sort("seq").with_columns(ms()), ["total"])
        data.append(line(rows, "total", f"{exchange} {kind} ({asset})",
                         {"table": "events", "kind": kind, "exchange": exchange, "asset": asset},
                         line={"shape": "hv", **styles[kind]}))
    return {"data": data, "layout": layout("Cumulative funding (received > 0) and fees (paid)", "amount in asset")}


# ------------------------------------------------------------------------------------------ all
def run_figures(run) -> tuple[dict, pl.DataFrame]:
    """Every chart of a run ({id: figure}, in page order) and the whole book's equity."""
    thresholds = run.manifest.get("resolved", {}).get("warning_thresholds", [])
    missing = [name for name in ("equity", "positions", "collateral", "events") if name not in run.tables]
    if missing:
        raise ReportError(f"{run.path}: the run folder has no {', '.join(missing)} table(s), which the report "
                          "draws from; run the config again with this xmargin version.")
    equity = exchange_equity(run)
    book = book_equity(run, equity)
    snapshots = chosen_snapshots(run)
    exposure = signed_exposure(run, snapshots)
    figures = {
        "equity": equity_figure(run, equity, book),
        "margin-ratio": margin_figure(run, thresholds),
        "distance": distance_figure(run) if "distance" in run.tables else None,  # an optional table
        "positions": positions_figure(exposure),
        "exposure": exposure_figure(net_exposure(run, snapshots)),
        "funding-fees": flows_figure(cumulative_flows(run)),
    }
    return {key: figure for key, figure in figures.items() if figure is not None}, book
