"""The run summary: headline numbers per exchange and in total, computed from the run's tables.

Money is in USD: every balance at its price (the `collateral` table's `value`, stablecoins at 1),
plus isolated margin and unrealised PnL of positions at their settle asset's price (the coin's for
inverse contracts). Account
equity is that sum; PnL = final equity - deposits - transfers in + transfers out, deposits and
transfers valued at the asset's price at the nearest snapshot. A withdrawal fee is a cost of the
sending exchange; money still in flight at the end belongs to no exchange and is added to the
total. Margin headroom = 1 - margin ratio (1: no maintenance needed; 0: liquidation).
"""

from __future__ import annotations

import polars as pl

from xmargin.margin.collateral import STABLECOINS


def _f(value) -> float:
    return 0.0 if value is None else float(value)


SNAPSHOT = ["ts", "reason", "events_applied", "exchange"]


def account_equity(collateral: pl.DataFrame, positions: pl.DataFrame) -> pl.DataFrame:
    """USD equity per account per snapshot: balances at their price + isolated margin + unrealised
    PnL, each position's money at its settle asset's price at that snapshot (stablecoins at 1)."""
    balances = collateral.group_by(SNAPSHOT).agg(pl.col("value").sum().alias("balances"))
    prices = collateral.select(*SNAPSHOT, "asset", pl.col("price").alias("settle_price"))
    price = (pl.when(pl.col("asset").is_in(list(STABLECOINS))).then(1.0)
             .otherwise(pl.col("settle_price").fill_null(1.0)))
    held = (positions.join(prices, on=[*SNAPSHOT, "asset"], how="left")
            .group_by(SNAPSHOT).agg(((pl.col("isolated_margin") + pl.col("unrealized_pnl")) * price).sum()
                                    .alias("positions")))
    return (balances.join(held, on=SNAPSHOT, how="full", coalesce=True)
            .with_columns(pl.col("balances").fill_null(0.0), pl.col("positions").fill_null(0.0))
            .with_columns((pl.col("balances") + pl.col("positions")).alias("equity"))
            .sort("events_applied", "ts", "reason"))


def _usd_values(flows: pl.DataFrame, collateral: pl.DataFrame, amount: str) -> pl.DataFrame:
    """Add `usd`: `amount` x the asset's price at the nearest snapshot of that exchange."""
    prices = collateral.select("ts", "exchange", "asset", "price").unique(maintain_order=True).sort("ts")
    if flows.height == 0:
        return flows.with_columns(pl.lit(0.0).alias("usd"))
    priced = flows.sort("ts").join_asof(prices, on="ts", by=["exchange", "asset"], strategy="nearest",
                                            check_sortedness=False)
    price = pl.when(pl.col("asset").is_in(list(STABLECOINS))).then(1.0).otherwise(pl.col("price"))
    return priced.with_columns((pl.col(amount) * price.fill_null(0.0)).alias("usd"))


def summarize(events: pl.DataFrame, equity: pl.DataFrame, meta: dict, collateral: pl.DataFrame | None = None,
              positions: pl.DataFrame | None = None) -> dict:
    """Build summary.json's content from the run's tables."""
    exchanges = sorted(set(equity["exchange"].unique().to_list()) | set(events["exchange"].unique().to_list()))
    equity_by_account = account_equity(collateral, positions)
    deposits_usd = _usd_values(events.filter(pl.col("type") == "CollateralDeposited")
                               .select("ts", "exchange", "asset", "amount"), collateral, "amount")
    sent_usd = _usd_values(events.filter(pl.col("type") == "TransferSent")
                           .select("ts", "exchange", "asset", "amount", "fee", "transfer_id"), collateral, "amount")
    arrived_usd = _usd_values(events.filter(pl.col("type") == "TransferArrived")
                              .select("ts", "exchange", "asset", "amount", "transfer_id"), collateral, "amount")
    in_flight = sent_usd.join(arrived_usd.select("transfer_id"), on="transfer_id", how="anti")
    by_type = {t: events.filter(pl.col("type") == t) for t in (
        "CollateralDeposited", "FeeCharged", "FundingSettled", "PositionLiquidated", "InsuranceFundUsed",
        "ContractExpired",
        "OrderFilled", "OrderRejected", "TransferSent", "TransferArrived", "MarginWarningRaised")}
    per_exchange = {}
    for exchange in exchanges:
        def total(kind, column="amount", exchange=exchange):
            """Sum of `column` over this exchange's events of `kind`, in USD (each amount at its
            asset's price at the nearest snapshot; stablecoins at 1)."""
            frame = by_type[kind].filter(pl.col("exchange") == exchange)
            if not frame.height:
                return 0.0
            if frame["asset"].is_in(list(STABLECOINS)).all():
                return _f(frame[column].sum())
            return _f(_usd_values(frame.select("ts", "exchange", "asset", column), collateral, column)["usd"].sum())

        rows = equity.filter(pl.col("exchange") == exchange)
        liquidated = by_type["PositionLiquidated"].filter(pl.col("exchange") == exchange)
        history = equity_by_account.filter(pl.col("exchange") == exchange)
        samples = history.filter(pl.col("reason") != "event")["equity"]
        drawdown = 0.0
        if samples.len():
            peak = samples.cum_max()
            drawdown = _f((peak - samples).max())
        final = history["equity"][-1] if history.height else 0.0
        deposits = _f(deposits_usd.filter(pl.col("exchange") == exchange)["usd"].sum())
        transfers_in = _f(arrived_usd.filter(pl.col("exchange") == exchange)["usd"].sum())
        transfers_out = _f(sent_usd.filter(pl.col("exchange") == exchange)["usd"].sum())
        # the tightest moment: equity snapshots, warnings (ratio at the crossing) and liquidations (ratio 1)
        moments = pl.concat([
            rows.filter(pl.col("maintenance_margin") > 0).select("ts", "margin_ratio"),
            by_type["MarginWarningRaised"].filter((pl.col("exchange") == exchange) & (pl.col("level") > 0))
            .select("ts", "margin_ratio"),
            liquidated.select("ts", pl.lit(1.0).alias("margin_ratio")),
        ])
        lowest = None
        if moments.height:
            worst = moments.sort("margin_ratio", descending=True, maintain_order=True).row(0, named=True)
            ratio = min(worst["margin_ratio"], 1.0)
            lowest = {"headroom": 1.0 - ratio, "margin_ratio": worst["margin_ratio"], "ts": str(worst["ts"])}
        tightest = None  # the smallest all-together adverse move that would liquidate (xmargin.analysis.distance)
        if "liquidation_distance" in rows.columns:
            finite = rows.filter(pl.col("liquidation_distance").is_finite())
            if finite.height:
                t = finite.sort("liquidation_distance", maintain_order=True).row(0, named=True)
                tightest = {"ts": str(t["ts"]), "asset": t["asset"], "liquidation_distance": t["liquidation_distance"],
                            "warning_distance": t["warning_distance"]}
        per_exchange[exchange] = {
            "deposits": deposits,
            "final_equity": _f(final),
            "pnl": _f(final) - deposits - transfers_in + transfers_out,
            "realized_pnl": total("OrderFilled", "realized_pnl") + total("PositionLiquidated", "realized_pnl")
            + total("ContractExpired", "realized_pnl"),
            "fees": total("FeeCharged") + total("PositionLiquidated", "fee") + total("ContractExpired", "fee"),
            "contracts_expired": by_type["ContractExpired"].filter(pl.col("exchange") == exchange).height,
            "withdrawal_fees": total("TransferSent", "fee"),
            "funding": total("FundingSettled"),
            "fills": by_type["OrderFilled"].filter(pl.col("exchange") == exchange).height,
            "rejected_orders": by_type["OrderRejected"].filter(pl.col("exchange") == exchange).height,
            "liquidations": liquidated.height,
            "liquidation_loss": total("PositionLiquidated", "realized_pnl") - total("PositionLiquidated", "fee"),
            "insurance_fund_used": total("InsuranceFundUsed"),
            "margin_warnings": by_type["MarginWarningRaised"].filter(
                (pl.col("exchange") == exchange) & (pl.col("level") > 0)).height,
            "max_drawdown": drawdown,
            "peak_initial_margin": _f(rows["initial_margin"].max()) if rows.height else 0.0,
            "lowest_margin_headroom": lowest,
            "tightest_moment": tightest,
        }
    totals = {key: sum(v[key] for v in per_exchange.values())
              for key in ("deposits", "final_equity", "pnl", "fees", "withdrawal_fees", "funding", "liquidations",
                          "liquidation_loss", "insurance_fund_used", "fills")}
    totals["in_flight_at_end"] = _f(in_flight["usd"].sum())
    totals["final_equity"] += totals["in_flight_at_end"]
    transfers = by_type["TransferSent"]
    if transfers.height:
        arrivals = by_type["TransferArrived"].select("transfer_id", pl.col("ts").alias("arrived"))
        durations = transfers.join(arrivals, on="transfer_id").select((pl.col("arrived") - pl.col("ts"))
                                                                      .dt.total_minutes())
        totals["transfers"] = {"count": transfers.height, "fees": _f(transfers["fee"].sum()),
                               "minutes_in_flight": _f(durations.to_series().sum()) if durations.height else 0.0}
    tightest = [dict(v["tightest_moment"], exchange=k) for k, v in per_exchange.items() if v["tightest_moment"]]
    totals["tightest_moment"] = min(tightest, key=lambda t: t["liquidation_distance"]) if tightest else None
    return {**meta, "exchanges": per_exchange, "total": totals,
            "money_note": "USD: balances at their price, stablecoins and positions' PnL at par"}


def format_summary(summary: dict, run_path) -> str:
    """A short human summary for the end of `xmargin run`."""
    lines = [f"run {summary.get('run_id', '')}: {summary.get('start')} -> {summary.get('end')}, "
             f"{summary.get('bars', 0):,} bars, {summary.get('events', 0):,} events, "
             f"{summary.get('run_seconds', 0):.2f} s"]
    header = f"  {'exchange':<12}{'pnl':>12}{'fees':>10}{'funding':>11}{'max dd':>11}{'liq':>5}{'headroom':>10}"
    lines.append(header)
    for name, row in summary["exchanges"].items():
        low = row["lowest_margin_headroom"]
        headroom = f"{low['headroom'] * 100:8.1f}%" if low else "       n/a"
        lines.append(f"  {name:<12}{row['pnl']:>12,.2f}{row['fees']:>10,.2f}{row['funding']:>11,.2f}"
                     f"{row['max_drawdown']:>11,.2f}{row['liquidations']:>5}{headroom:>10}")
    t = summary["total"]
    lines.append(f"  {'total':<12}{t['pnl']:>12,.2f}{t['fees']:>10,.2f}{t['funding']:>11,.2f}{'':>11}"
                 f"{t['liquidations']:>5}")
    for name, row in summary["exchanges"].items():
        low = row["lowest_margin_headroom"]
        if low:
            lines.append(f"  lowest headroom on {name}: {low['headroom'] * 100:.1f}% at {low['ts']}")
    tight = summary["total"].get("tightest_moment")
    if tight:
        lines.append(f"  tightest moment: {tight['exchange']} {tight['asset']} at {tight['ts']}: a "
                     f"{tight['liquidation_distance'] * 100:.1f}% adverse move of everything would liquidate "
                     f"(first warning at {tight['warning_distance'] * 100:.1f}%)")
    lines.append(f"  outputs: {run_path}  (open with xmargin.open_run)")
    return "\n".join(lines)
