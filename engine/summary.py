"""The run summary: headline numbers per exchange and in total, computed from the run's tables.

Money is in each account's settlement assets; the total adds stablecoins (USDT, USDC, USD) at par
and says so. PnL = final equity (wallet incl. isolated margin + unrealised PnL) - deposits - net
transfers in. Margin headroom = 1 - margin ratio (1: no maintenance needed; 0: liquidation).
"""

from __future__ import annotations

import polars as pl

STABLECOINS = ("USDT", "USDC", "USD", "BUSD", "FDUSD")


def _f(value) -> float:
    return 0.0 if value is None else float(value)


def summarize(events: pl.DataFrame, equity: pl.DataFrame, meta: dict) -> dict:
    """Build summary.json's content from the events and equity tables."""
    exchanges = sorted(set(equity["exchange"].unique().to_list()) | set(events["exchange"].unique().to_list()))
    by_type = {t: events.filter(pl.col("type") == t) for t in (
        "CollateralDeposited", "FeeCharged", "FundingSettled", "PositionLiquidated", "InsuranceFundUsed",
        "OrderFilled", "OrderRejected", "TransferSent", "TransferArrived", "MarginWarningRaised")}
    per_exchange = {}
    for exchange in exchanges:
        def total(kind, column="amount"):
            frame = by_type[kind].filter(pl.col("exchange") == exchange)
            return _f(frame[column].sum()) if frame.height else 0.0

        rows = equity.filter(pl.col("exchange") == exchange)
        liquidated = by_type["PositionLiquidated"].filter(pl.col("exchange") == exchange)
        account_equity = (rows.group_by("ts", "reason", "events_applied", maintain_order=True)
                          .agg((pl.col("wallet_balance") + pl.col("unrealized_pnl")).sum().alias("equity")))
        samples = account_equity.filter(pl.col("reason") != "event")["equity"]
        drawdown = 0.0
        if samples.len():
            peak = samples.cum_max()
            drawdown = _f((peak - samples).max())
        final = account_equity["equity"][-1] if account_equity.height else 0.0
        deposits = total("CollateralDeposited")
        transfers_in = total("TransferArrived")
        transfers_out = total("TransferSent") + total("TransferSent", "fee")
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
        tightest = None  # the smallest all-together adverse move that would liquidate (engine.distance)
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
            "realized_pnl": total("OrderFilled", "realized_pnl") + total("PositionLiquidated", "realized_pnl"),
            "fees": total("FeeCharged") + total("PositionLiquidated", "fee"),
            "funding": total("FundingSettled"),
            "fills": by_type["OrderFilled"].filter(pl.col("exchange") == exchange).height,
            "rejected_orders": by_type["OrderRejected"].filter(pl.col("exchange") == exchange).height,
            "liquidations": liquidated.height,
            "liquidation_loss": _f(liquidated["realized_pnl"].sum()) - _f(liquidated["fee"].sum())
            if liquidated.height else 0.0,
            "insurance_fund_used": total("InsuranceFundUsed"),
            "margin_warnings": by_type["MarginWarningRaised"].filter(
                (pl.col("exchange") == exchange) & (pl.col("level") > 0)).height,
            "max_drawdown": drawdown,
            "peak_initial_margin": _f(rows["initial_margin"].max()) if rows.height else 0.0,
            "lowest_margin_headroom": lowest,
            "tightest_moment": tightest,
        }
    totals = {key: sum(v[key] for v in per_exchange.values())
              for key in ("deposits", "final_equity", "pnl", "fees", "funding", "liquidations", "liquidation_loss",
                          "insurance_fund_used", "fills")}
    tightest = [dict(v["tightest_moment"], exchange=k) for k, v in per_exchange.items() if v["tightest_moment"]]
    totals["tightest_moment"] = min(tightest, key=lambda t: t["liquidation_distance"]) if tightest else None
    return {**meta, "exchanges": per_exchange, "total": totals,
            "total_note": "totals add every exchange's settlement assets at par (stablecoins = 1 USD)"}


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
    lines.append(f"  outputs: {run_path}  (open with engine.results.open_run)")
    return "\n".join(lines)
