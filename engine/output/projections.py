"""Output tables that are pure projections of the event log (polars expressions over it).

`xmargin verify` recomputes these from `events.arrow` and compares them with the files. The writer
makes them from the log's record batches as they are written (`xmargin.output.logtables`): fills,
funding and liquidations a moment at a time (a fill and its fee, a liquidation and the insurance
fund's share are events of one moment), transfers once from their rows of the whole log (a
transfer's sending and its arrival are moments apart).
"""

from __future__ import annotations

import polars as pl

# the log's columns the projections read (a reader of the log loads only these)
COLUMNS = ("seq", "ts", "type", "exchange", "instrument", "order_id", "quantity", "price", "liquidity", "realized_pnl",
           "margin_delta", "asset", "market", "tag", "amount", "rate", "isolated", "trigger_price", "fee",
           "margin_released", "policy", "transfer_id", "destination", "arrives_ts", "reason")
TRANSFER_TYPES = ("TransferSent", "TransferArrived", "TransferRejected")  # the events `transfers` reads


def fills(events: pl.LazyFrame) -> pl.LazyFrame:
    """One row per fill with its fee (fees join fills on exchange and order id)."""
    filled = events.filter(pl.col("type") == "OrderFilled").select(
        "seq", "ts", "exchange", "instrument", "order_id", "quantity", "price", "liquidity", "realized_pnl",
        "margin_delta", pl.col("asset").alias("settle_asset"), "market", "tag")
    fees = events.filter(pl.col("type") == "FeeCharged").select(
        "exchange", "order_id", pl.col("amount").alias("fee"), pl.col("asset").alias("fee_asset"))
    return (filled.join(fees, on=["exchange", "order_id"], how="left")
            .with_columns((pl.col("quantity").abs() * pl.col("price")).alias("notional"))
            .sort("seq"))


def funding(events: pl.LazyFrame) -> pl.LazyFrame:
    """One row per position per funding settlement; `amount` is received (+) or paid (-)."""
    return (events.filter(pl.col("type") == "FundingSettled")
            .select("seq", "ts", "exchange", "instrument", "asset", "quantity", pl.col("price").alias("mark_price"),
                    "rate", "amount", "isolated")
            .sort("seq"))


def liquidations(events: pl.LazyFrame) -> pl.LazyFrame:
    """One row per liquidated position, with the insurance fund's share at the same moment."""
    liquidated = events.filter(pl.col("type") == "PositionLiquidated").select(
        "seq", "ts", "exchange", "instrument", "quantity", "price", "trigger_price", "realized_pnl", "fee",
        "margin_released", "asset", "isolated", "policy")
    insurance = (events.filter(pl.col("type") == "InsuranceFundUsed")
                 .group_by("ts", "exchange", "asset").agg(pl.col("amount").sum().alias("insurance_fund_used")))
    first = (liquidated.group_by("ts", "exchange", "asset").agg(pl.col("seq").min().alias("seq")))
    insurance = insurance.join(first, on=["ts", "exchange", "asset"], how="inner")
    return (liquidated.join(insurance.select("seq", "insurance_fund_used"), on="seq", how="left")
            .with_columns(pl.col("insurance_fund_used").fill_null(0.0),
                          (pl.col("quantity").abs() * pl.col("price")).alias("notional"))
            .sort("seq"))


def transfers(events: pl.LazyFrame) -> pl.LazyFrame:
    """One row per transfer: sent, when it arrived (null while in flight or when rejected)."""
    sent = events.filter(pl.col("type") == "TransferSent").select(
        "transfer_id", pl.col("ts").alias("sent_ts"), pl.col("exchange").alias("source"), "destination", "asset",
        "amount", "fee", "arrives_ts")
    arrived = events.filter(pl.col("type") == "TransferArrived").select(
        "transfer_id", pl.col("ts").alias("arrived_ts"))
    rejected = events.filter(pl.col("type") == "TransferRejected").select(
        "transfer_id", pl.col("ts").alias("sent_ts"), pl.col("exchange").alias("source"), "destination", "asset",
        "amount", pl.lit(0.0).alias("fee"), pl.col("ts").alias("arrives_ts"), "reason")
    return (pl.concat([sent.join(arrived, on="transfer_id", how="left").with_columns(
                           pl.lit("").alias("reason")),
                       rejected.with_columns(pl.lit(None, dtype=pl.Datetime("ns", "UTC")).alias("arrived_ts"))],
                      how="diagonal_relaxed")
            .with_columns(((pl.col("arrived_ts") - pl.col("sent_ts")).dt.total_seconds() / 60.0)
                          .alias("minutes_in_flight"))
            .sort("transfer_id"))
