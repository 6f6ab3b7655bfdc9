"""The run summary: headline numbers per exchange and in total, computed from the run's tables.

Money is in USD: every balance at its price (the `collateral` table's `value`, stablecoins at 1),
plus isolated margin and unrealised PnL of positions at their settle asset's price (the coin's for
inverse contracts). Account
equity is that sum; PnL = final equity - deposits - transfers in + transfers out, deposits valued
at the asset's price at the nearest snapshot, both legs of a transfer at the value it was sent with
(xmargin.analysis.performance.transfer_values: it cancels out in the book). A withdrawal fee is a cost of the
sending exchange; money still in flight at the end belongs to no exchange and is added to the
total. Margin headroom = 1 - margin ratio (1: no maintenance needed; 0: liquidation); the cross
pools' and the isolated positions' are reported apart (None where an exchange has none). Headroom
and the tightest moment read every snapshot, each valued at its own moment (the tables'
`valued_at`: the start's deposits at the first bar's open, samples and the end at bar closes, an
event's state at its bar's open, intrabar point or close), and the warnings and liquidations; the
flow-adjusted series reads the start, sample and end snapshots only. Peak initial margin is USD too
(a coin-margined pool's margin at the coin's price).

Flow-adjusted figures (collateral consumed, drawdown, statistics: xmargin.analysis.performance)
never count deposits or transfers as PnL; net exposure per underlying and the one-legged hedge
check: xmargin.analysis.exposure. Rejected orders are grouped by reason (numbers removed).
"""

from __future__ import annotations

import re

import attrs
import polars as pl

from xmargin._frames import as_text, stored
from xmargin.analysis.exposure import (exposure_figures, hedged_underlyings, position_exposure, series_of_legs,
                                       spot_exposure, underlying_of)
from xmargin.analysis.performance import book, figures, flow_adjusted, flows, transfer_values, usd_values
from xmargin.margin.collateral import STABLECOINS


def _f(value) -> float:
    return 0.0 if value is None else float(value)


SNAPSHOT = ["ts", "reason", "events_applied", "exchange"]


def account_equity(collateral: pl.DataFrame, positions: pl.DataFrame) -> pl.DataFrame:
    """USD equity per account per snapshot: balances at their price + isolated margin + unrealised
    PnL, each position's money at its settle asset's price at that snapshot (stablecoins at 1)."""
    return _equity_of(_balances(collateral), _held(positions, collateral))


def _balances(collateral: pl.DataFrame) -> pl.DataFrame:
    return collateral.group_by(SNAPSHOT).agg(pl.col("value").sum().alias("balances"))


def _held(positions: pl.DataFrame, collateral: pl.DataFrame) -> pl.DataFrame:
    """Per snapshot: the positions' isolated margin + unrealised PnL in USD (`collateral` gives the
    prices of settle assets other than stablecoins; it may hold only those rows)."""
    prices = collateral.select(*SNAPSHOT, "asset", pl.col("price").alias("settle_price"))
    price = (pl.when(pl.col("asset").is_in(list(STABLECOINS))).then(1.0)
             .otherwise(pl.col("settle_price").fill_null(1.0)))
    return (positions.join(prices, on=[*SNAPSHOT, "asset"], how="left")
            .group_by(SNAPSHOT).agg(((pl.col("isolated_margin") + pl.col("unrealized_pnl")) * price).sum()
                                    .alias("positions")))


def _equity_of(balances: pl.DataFrame, held: pl.DataFrame) -> pl.DataFrame:
    return (balances.join(held, on=SNAPSHOT, how="full", coalesce=True)
            .with_columns(pl.col("balances").fill_null(0.0), pl.col("positions").fill_null(0.0))
            .with_columns((pl.col("balances") + pl.col("positions")).alias("equity"))
            .sort("events_applied", "ts", "reason"))


def flow_adjusted_equity(events: pl.DataFrame, collateral: pl.DataFrame, equity_by_account: pl.DataFrame) -> pl.DataFrame:
    """Per exchange and valued moment (start, every sample at a bar close, the end): equity,
    net_flows and pnl (xmargin.analysis.performance.flow_adjusted). Event snapshots are left out:
    the series is the regular one (the start, then bar closes at the sample interval)."""
    return flow_adjusted(equity_by_account.filter(pl.col("reason") != "event"), flows(events, collateral))


def reason_kind(reason: pl.Expr) -> pl.Expr:
    """A rejection reason without its numbers: the text before the first ':' when that names it (two
    words or more: 'insufficient margin: the order needs 1,234 USDT' -> 'insufficient margin')."""
    head = reason.str.split(":").list.first().str.strip_chars()
    named = reason.str.contains(":") & (head.str.count_matches(r"\S+") >= 2)
    return (pl.when(named).then(head).otherwise(reason)
            .str.replace_all(r"-?\d[\d,]*(\.\d+)?(e[+-]?\d+)?", "#").str.strip_chars())


def rejections(events: pl.DataFrame) -> list[dict]:
    """Rejected orders grouped by exchange and reason: count, first time, one full example."""
    rejected = events.filter(pl.col("type") == "OrderRejected")
    if not rejected.height:
        return []
    grouped = (rejected.with_columns(reason_kind(pl.col("reason").fill_null("")).alias("kind"))
               .sort("seq").group_by("exchange", "kind", maintain_order=True)
               .agg(pl.len().alias("count"), pl.col("ts").first().alias("first_ts"),
                    pl.col("instrument").first().alias("first_instrument"),
                    pl.col("reason").first().alias("example")))
    return [dict(row, first_ts=str(row["first_ts"]), count=int(row["count"]))
            for row in grouped.sort("first_ts").iter_rows(named=True)]


def _coin_marks(positions: pl.DataFrame) -> pl.DataFrame:
    """Rows (snapshot, asset, mark_price) of positions on a coin settled in that coin (an inverse
    contract's): the coin's price where the collateral table has none."""
    return (positions.filter(~pl.col("asset").is_in(list(STABLECOINS)))  # (a stablecoin pool is at 1: no text work)
            .filter(pl.col("asset") == underlying_of(pl.col("instrument")))
            .select(*SNAPSHOT, "asset", "mark_price"))


def _pool_prices(equity: pl.DataFrame, collateral: pl.DataFrame, marks: pl.DataFrame) -> pl.DataFrame:
    """`equity` (a margin pool per row) with `pool_price`, the USD price of the pool's asset at that
    snapshot: 1 for stablecoins and multi-asset "USD" pools; a coin (a coin-margined pool) at the
    collateral table's price, else at the mark of a position on that coin settled in it (`_coin_marks`)."""
    prices = collateral.select(*SNAPSHOT, "asset", "price").unique([*SNAPSHOT, "asset"], keep="first")
    marks = marks.unique([*SNAPSHOT, "asset"], keep="first")
    price = (pl.when(pl.col("asset").is_in(list(STABLECOINS))).then(1.0)
             .otherwise(pl.coalesce("price", "mark_price")))
    return (equity.join(prices, on=[*SNAPSHOT, "asset"], how="left", maintain_order="left")
            .join(marks, on=[*SNAPSHOT, "asset"], how="left", maintain_order="left")
            .with_columns(price.alias("pool_price")).drop("price", "mark_price"))


def usd_prices(frame: pl.DataFrame, collateral: pl.DataFrame, positions: pl.DataFrame) -> pl.DataFrame:
    """`frame` (rows of snapshots, keyed by ts, reason, events_applied, exchange and `asset`; no
    `price` or `mark_price` column) with `usd_price`, the asset's USD price at that snapshot as the
    summary values pools (`_pool_prices`: stablecoins and "USD" at 1, a coin at the collateral
    table's price, else at the mark of a position on that coin settled in it). Row order kept."""
    return _pool_prices(frame, collateral, _coin_marks(positions)).rename({"pool_price": "usd_price"})


def committed_margin(equity: pl.DataFrame, collateral: pl.DataFrame, positions: pl.DataFrame) -> pl.DataFrame:
    """Per snapshot and exchange: `committed`, the USD value of its pools' initial margin + isolated
    margin (each pool's in its asset, at `_pool_prices`)."""
    return _committed(equity, collateral, _coin_marks(positions))


def _committed(equity: pl.DataFrame, collateral: pl.DataFrame, marks: pl.DataFrame) -> pl.DataFrame:
    return (_pool_prices(equity, collateral, marks).group_by(SNAPSHOT, maintain_order=True)
            .agg(((pl.col("initial_margin") + pl.col("isolated_margin")) * pl.col("pool_price")).sum()
                 .alias("committed")))


@attrs.frozen(eq=False)
class SnapshotFigures:
    """What the summary reads of the valuation tables (equity, collateral, positions), reduced to
    per-snapshot sums and the few rows its figures pick, so that the writer keeps no table's rows to
    the end (`SnapshotReduction`, fed with each chunk of the tables as it is made).
    `snapshot_figures` builds the same from whole tables. Every snapshot is valued at its own
    moment (`valued_at`: a bar's open, an intrabar point or a close), so the lowest headroom, the
    tightest moment and the peak committed margin read them all (an event's state included: a fill
    at a gapped open can be the tightest moment); the equity series (drawdown, statistics) stays the
    regular one: the start, the samples at bar closes and the end."""

    exchanges: tuple  # the exchanges of the equity table
    equity_by_account: pl.DataFrame  # account_equity at the start, sample and final snapshots
    exposure: pl.DataFrame  # exposure_series at the sample snapshots
    coins: pl.DataFrame  # collateral rows of assets other than stablecoins: the prices `usd_values` reads
    # per exchange, in snapshot order, candidates for the figures (each part's first pick: the whole's
    # first pick is the first pick among them, `_first_per_exchange`):
    headroom: pl.DataFrame  # cross pools' highest margin ratio (exchange, ts, margin_ratio)
    isolated_headroom: pl.DataFrame  # isolated positions' highest margin ratio (exchange, ts, margin_ratio)
    tightest: pl.DataFrame  # smallest finite liquidation distance (exchange, ts, asset, liquidation_distance,
    # warning_distance); no rows when the equity table has no distances
    peak_committed: pl.DataFrame  # committed_margin's highest (exchange, committed), USD


def snapshot_figures(equity: pl.DataFrame, collateral: pl.DataFrame, positions: pl.DataFrame) -> SnapshotFigures:
    """`SnapshotFigures` of whole tables."""
    reduction = SnapshotReduction()
    reduction.add(collateral, positions, equity)
    return reduction.figures()


def _first_per_exchange(frame: pl.DataFrame, column: str, descending: bool) -> pl.DataFrame:
    """Per exchange, the first row of `frame` (in its order) with the highest (`descending`) or
    lowest `column`: the row a stable sort of the whole puts first. Picked per part and again among
    the parts' picks (in order), it is the whole's."""
    return frame.sort(column, descending=descending, maintain_order=True).group_by("exchange", maintain_order=True).first()


class SnapshotReduction:
    """`SnapshotFigures` built a part at a time, as the valuation tables are made (a run's chunks of
    snapshots, `xmargin.output.writer`): `add` the collateral, positions and equity rows of the same
    whole snapshots, `figures` at the end. Only the reduced rows are kept (`xmargin._frames.stored`).
    Per-snapshot sums are those of whole tables: a snapshot's rows are summed in the same order
    either way."""

    def __init__(self):
        self._parts: dict[str, list] = {name: [] for name in (
            "balances", "sample_times", "coins", "held", "perps", "headroom", "isolated_headroom", "tightest",
            "peak_committed")}
        self._exchanges: set = set()

    def add(self, collateral: pl.DataFrame, positions: pl.DataFrame, equity: pl.DataFrame) -> None:
        """Take the tables' rows of some whole snapshots (every table's of the same snapshots)."""
        regular = pl.col("reason") != "event"  # the equity series: start, samples, end
        coins = collateral.filter(~pl.col("asset").is_in(list(STABLECOINS)))  # (stablecoins count at 1)
        sampled = positions.filter(pl.col("reason") == "sample")
        isolated_equity = pl.col("isolated_margin") + pl.col("unrealized_pnl")
        isolated = positions.filter((pl.col("margin_mode") == "isolated") & (pl.col("maintenance_margin") > 0))
        committed = _committed(equity, coins, _coin_marks(positions))
        parts = {
            "balances": _balances(collateral.filter(regular)),
            "sample_times": pl.concat([collateral.filter(pl.col("reason") == "sample").select("ts").unique(),
                                       sampled.select("ts").unique()]),
            "coins": coins,
            "held": _held(positions.filter(regular), coins),
            "perps": position_exposure(sampled, coins.filter(pl.col("reason") == "sample"))
            .select("ts", "underlying", "usd"),
            "headroom": _first_per_exchange(equity.filter(pl.col("maintenance_margin") > 0)
                                            .select("exchange", "ts", "margin_ratio"), "margin_ratio", True),
            "isolated_headroom": _first_per_exchange(isolated.select(
                "exchange", "ts", pl.when(isolated_equity > 0).then(pl.col("maintenance_margin") / isolated_equity)
                .otherwise(1.0).alias("margin_ratio")), "margin_ratio", True),
            "tightest": _first_per_exchange(
                equity.filter(pl.col("liquidation_distance").is_finite())
                .select("exchange", "ts", "asset", "liquidation_distance", "warning_distance"),
                "liquidation_distance", False) if "liquidation_distance" in equity.columns else None,
            "peak_committed": committed.group_by("exchange", maintain_order=True).agg(pl.col("committed").max()),
        }
        for name, frame in parts.items():
            if frame is not None:
                self._parts[name].append(stored(frame))
        self._exchanges.update(equity["exchange"].unique().to_list())

    def figures(self) -> SnapshotFigures:
        """The figures of every snapshot added (the parts go as they are joined)."""
        whole = {}
        for name in list(self._parts):
            parts = self._parts.pop(name)
            whole[name] = as_text(pl.concat(parts, rechunk=True)) if parts else pl.DataFrame()
        coins = whole["coins"]
        sample_coins = coins.filter(pl.col("reason") == "sample")
        return SnapshotFigures(
            exchanges=tuple(sorted(self._exchanges)),
            equity_by_account=_equity_of(whole["balances"], whole["held"]),
            exposure=series_of_legs(whole["perps"], spot_exposure(sample_coins), whole["sample_times"]),
            coins=coins, headroom=whole["headroom"], isolated_headroom=whole["isolated_headroom"],
            tightest=whole["tightest"], peak_committed=whole["peak_committed"])


def _headroom(moments: pl.DataFrame) -> dict | None:
    if not moments.height:
        return None
    worst = moments.sort("margin_ratio", descending=True, maintain_order=True).row(0, named=True)
    ratio = min(worst["margin_ratio"], 1.0)
    return {"headroom": 1.0 - ratio, "margin_ratio": worst["margin_ratio"], "ts": str(worst["ts"])}


# The definitions of summary.json's figures: raised when one changes, so that `xmargin verify` tells a
# summary written under other definitions from one that disagrees with its tables. 1: up to
# 2026-11-29 (no field); 2: headroom and the tightest moment at bar closes (start, samples, end) plus
# warnings and liquidations, coin money in USD (peak initial margin, transfer fees, compare), a coin
# transfer at its sent value on both sides; 3: every snapshot valued at its own moment (the start's
# deposits at the first bar's open; an event's at the bar's open, its intrabar point or its close, the
# tables' `valued_at`), so deposits, starting equity and peak initial margin read other prices, and
# the lowest headroom and the tightest moment read every snapshot (event ones included).
SUMMARY_VERSION = 3

# The event types whose every row `summarize` reads (sums, counts, flows, rejections), with the columns
# it reads of each besides `LOG_KEYS`; of the other types it reads only which exchanges and instruments
# they name (the exchanges reported, the legs of a hedge).
LOG_KEYS = ("seq", "ts", "type", "exchange", "instrument", "asset")
READ_COLUMNS = {
    "CollateralDeposited": ("amount",),
    "FeeCharged": ("amount",),
    "FundingSettled": ("amount",),
    "PositionLiquidated": ("realized_pnl", "fee", "isolated"),
    "InsuranceFundUsed": ("amount",),
    "ContractExpired": ("realized_pnl", "fee"),
    "OrderFilled": ("realized_pnl",),
    "OrderRejected": ("reason",),
    "TransferSent": ("amount", "fee", "transfer_id"),
    "TransferArrived": ("amount", "fee", "transfer_id"),
    "MarginWarningRaised": ("level", "margin_ratio"),
}
READ_TYPES = tuple(READ_COLUMNS)

# The columns `summarize` reads from each table (with the ones `performance` and `exposure` read for
# it): the writer hands over only these (`log_rows`, `SnapshotReduction`).
COLUMNS = {
    "events": tuple(dict.fromkeys((*LOG_KEYS, *(c for columns in READ_COLUMNS.values() for c in columns)))),
    "equity": (*SNAPSHOT, "asset", "initial_margin", "isolated_margin", "maintenance_margin", "margin_ratio",
               "warning_distance", "liquidation_distance"),
    "collateral": (*SNAPSHOT, "asset", "balance", "price", "value"),
    "positions": (*SNAPSHOT, "instrument", "asset", "quantity", "mark_price", "notional", "unrealized_pnl",
                  "maintenance_margin", "margin_mode", "isolated_margin"),
}


def log_rows(events: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """What `summarize` reads of (a part of) an event log, by event type: every event of
    `READ_TYPES` with `LOG_KEYS` and its `READ_COLUMNS` (a frame per type, empty when none), and of
    each other type present the first row of each (exchange, instrument), with `LOG_KEYS`."""
    named = pl.struct("type", "exchange", "instrument").is_first_distinct()  # (per type: the type is in the key)
    wanted = events.select(COLUMNS["events"]).filter(pl.col("type").is_in(READ_TYPES) | named)
    parts = {kind: frame for (kind,), frame in wanted.partition_by("type", as_dict=True, maintain_order=True).items()}
    rows = {kind: parts.pop(kind, wanted.clear()).select(*LOG_KEYS, *columns) for kind, columns in READ_COLUMNS.items()}
    rows.update((kind, frame.select(LOG_KEYS)) for kind, frame in parts.items())
    return rows


@attrs.frozen(eq=False)
class LogFigures:
    """What the summary reads of the event log (`log_rows` of its parts, joined in log order): its
    frames by event type and the exchanges the log names. A summary from the rows of a log's parts
    is the whole log's: each type's rows are the log's, in its order, in one chunk (sums as over one
    table); only the other types' first rows repeat, which changes nothing."""

    by_type: dict  # event type -> DataFrame
    exchanges: tuple

    def of(self, *kinds: str) -> pl.DataFrame:
        """The rows of `kinds` (types in `READ_TYPES` or present), one frame."""
        return pl.concat([self.by_type[kind] for kind in kinds if kind in self.by_type], how="diagonal_relaxed")


def log_figures(parts) -> LogFigures:
    """`LogFigures` from the `log_rows` of a log's parts, in log order (text `stored` as categories
    comes back as text)."""
    pieces: dict[str, list] = {}
    for part in parts:
        for kind, frame in part.items():
            pieces.setdefault(kind, []).append(frame)
    by_type = {kind: as_text(pl.concat(frames, rechunk=True)) for kind, frames in pieces.items()}
    exchanges = set()
    for frame in by_type.values():
        exchanges.update(frame["exchange"].unique().to_list())
    return LogFigures(by_type=by_type, exchanges=tuple(sorted(e for e in exchanges if e is not None)))


def summarize(events: pl.DataFrame, equity: pl.DataFrame, meta: dict, collateral: pl.DataFrame | None = None,
              positions: pl.DataFrame | None = None, one_legged_ratio: float = 0.5,
              one_legged_after_hours: float = 8.0) -> dict:
    """Build summary.json's content from the run's tables."""
    return summarize_figures(log_figures([log_rows(events)]), snapshot_figures(equity, collateral, positions), meta,
                             one_legged_ratio, one_legged_after_hours)


def summarize_figures(log: LogFigures, snapshots: SnapshotFigures, meta: dict, one_legged_ratio: float = 0.5,
                      one_legged_after_hours: float = 8.0) -> dict:
    """`summarize` from the event log's `LogFigures` and the valuation tables' `SnapshotFigures`."""
    exchanges = sorted(set(snapshots.exchanges) | set(log.exchanges))
    equity_by_account = snapshots.equity_by_account
    collateral = snapshots.coins  # (the prices of money other than stablecoins, which count at 1)
    deposits_usd = usd_values(log.of("CollateralDeposited").select("ts", "exchange", "asset", "amount"), collateral,
                              "amount")
    sent_usd, arrived_usd = transfer_values(log.of("TransferSent", "TransferArrived"), collateral)  # both legs at the value sent
    in_flight = sent_usd.join(arrived_usd.select("transfer_id"), on="transfer_id", how="anti")
    by_type = log.by_type
    adjusted = flow_adjusted_equity(log.of("CollateralDeposited", "TransferSent", "TransferArrived"), collateral,
                                    equity_by_account)
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
            return _f(usd_values(frame.select("ts", "exchange", "asset", column), collateral, column)["usd"].sum())

        # every snapshot at its own moment (`SnapshotFigures`), with the warnings (their ratio at the
        # crossing) and liquidations (ratio 1)
        liquidated = by_type["PositionLiquidated"].filter(pl.col("exchange") == exchange)
        history = equity_by_account.filter(pl.col("exchange") == exchange)
        series = adjusted.filter(pl.col("exchange") == exchange)
        capital = max(_f(series["net_flows"].max()), 0.0) if series.height else 0.0
        flow_figures = figures(series, capital)
        final = history["equity"][-1] if history.height else 0.0
        deposits = _f(deposits_usd.filter(pl.col("exchange") == exchange)["usd"].sum())
        transfers_in = _f(arrived_usd.filter(pl.col("exchange") == exchange)["usd"].sum())
        transfers_out = _f(sent_usd.filter(pl.col("exchange") == exchange)["usd"].sum())
        # the tightest moments, cross pools and isolated positions apart: snapshots, warnings (ratio at the
        # crossing) and liquidations (ratio 1)
        warned = by_type["MarginWarningRaised"].filter((pl.col("exchange") == exchange) & (pl.col("level") > 0))
        pool_warning = pl.col("instrument").fill_null("").str.starts_with("cross:")
        lowest = _headroom(pl.concat([
            snapshots.headroom.filter(pl.col("exchange") == exchange).select("ts", "margin_ratio"),
            warned.filter(pool_warning).select("ts", "margin_ratio"),
            liquidated.filter(~pl.col("isolated").fill_null(False)).select("ts", pl.lit(1.0).alias("margin_ratio")),
        ]))
        lowest_isolated = _headroom(pl.concat([
            snapshots.isolated_headroom.filter(pl.col("exchange") == exchange).select("ts", "margin_ratio"),
            warned.filter(~pool_warning).select("ts", "margin_ratio"),
            liquidated.filter(pl.col("isolated").fill_null(False)).select("ts", pl.lit(1.0).alias("margin_ratio")),
        ]))
        committed = snapshots.peak_committed.filter(pl.col("exchange") == exchange)  # USD
        tightest = None  # the smallest all-together adverse move that would liquidate (xmargin.analysis.distance)
        if snapshots.tightest.height:
            finite = snapshots.tightest.filter(pl.col("exchange") == exchange)
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
            "margin_warnings": warned.height,
            "max_drawdown": flow_figures["max_drawdown"],
            "collateral_consumed": flow_figures["collateral_consumed"],
            "drawdown": flow_figures["drawdown"],
            "statistics": flow_figures["statistics"],
            "peak_initial_margin": _f(committed["committed"].max()) if committed.height else 0.0,
            "lowest_margin_headroom": lowest,
            "lowest_isolated_headroom": lowest_isolated,
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
        totals["transfers"] = {"count": transfers.height, "fees": totals["withdrawal_fees"],  # USD, as each exchange's
                               "minutes_in_flight": _f(durations.to_series().sum()) if durations.height else 0.0}
    tightest = [dict(v["tightest_moment"], exchange=k) for k, v in per_exchange.items() if v["tightest_moment"]]
    totals["tightest_moment"] = min(tightest, key=lambda t: t["liquidation_distance"]) if tightest else None
    whole = figures(book(adjusted), totals["deposits"])
    totals.update(max_drawdown=whole["max_drawdown"], collateral_consumed=whole["collateral_consumed"],
                  drawdown=whole["drawdown"], statistics=whole["statistics"],
                  rejected_orders=sum(v["rejected_orders"] for v in per_exchange.values()))
    exposure = exposure_figures(snapshots.exposure,
                                hedged_underlyings(log.of("OrderAccepted", "OrderFilled", "OrderRejected"), collateral),
                                one_legged_ratio, one_legged_after_hours)
    rejected = rejections(log.of("OrderRejected"))
    warnings = []
    for underlying, row in exposure.items():
        if row["one_legged"]:
            warnings.append(f"one-legged hedge: {underlying} net exposure was above {one_legged_ratio:.0%} of gross "
                            f"for {row['hours_above_ratio']:,.0f} h from {row['above_ratio_from']} (peak net "
                            f"{row['net_at_peak']:,.0f} USD, {row['peak_net_share']:.0%} of gross)")
    return {**meta, "summary_version": SUMMARY_VERSION, "exchanges": per_exchange, "total": totals, "exposure": exposure, "rejections": rejected,
            "warnings": [*meta.get("input_warnings", ()), *warnings], "one_legged": {"ratio": one_legged_ratio, "after_hours": one_legged_after_hours},
            "money_note": "USD: balances at their price, stablecoins and positions' PnL at par"}


def problems(summary: dict) -> list[str]:
    """What `--strict` refuses: rejected orders and one-legged hedges, one line each."""
    out = [f"{r['count']} order(s) rejected on {r['exchange']}: {r['kind']} (first {r['first_ts']})"
           for r in summary.get("rejections", [])]
    return out + [w for w in summary.get("warnings", []) if w.startswith("one-legged")]


def _percent(value) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def _number(value, fmt: str = ",.2f") -> str:
    return "n/a" if value is None else format(value, fmt)


EXPOSURE_LINES = 10  # underlyings the printed summary shows (the most one-sided); summary.json has every one
GROUPED_ABOVE = 5  # a warning shared by more instruments is printed once, naming WARNING_NAMES (< it) of them
WARNING_NAMES = 3
# an instrument key in a message: exchange:BASE/QUOTE, with :SETTLE and -EXPIRY for derivatives
_INSTRUMENT = re.compile(r"(?<![\w.-])[A-Za-z0-9_.-]+:[A-Za-z0-9.]+/[A-Za-z0-9.]+(?::[A-Za-z0-9.]+(?:-[0-9]+)?)?")


def _grouped(warnings: list[str]) -> list[tuple[list[str], list[str]]]:
    """The warnings in order, those that differ only by the one instrument they name together: (their
    texts, the instruments named) each, at the place of the first; a warning naming no or several
    instruments alone, with no names."""
    groups: dict[tuple, tuple[list[str], list[str]]] = {}
    for n, warning in enumerate(warnings):
        named = _INSTRUMENT.findall(warning)
        if len(named) != 1:
            groups[("alone", n)] = ([warning], [])
            continue
        texts, instruments = groups.setdefault(("shared", _INSTRUMENT.sub("", warning)), ([], []))
        texts.append(warning)
        instruments.append(named[0])
    return list(groups.values())


def format_summary(summary: dict, run_path) -> str:
    """A short human summary for the end of `xmargin run`: money per exchange and for the book,
    rejected orders by reason, warnings (one-legged hedges), performance statistics."""
    lines = [f"run {summary.get('run_id', '')}: {summary.get('start')} -> {summary.get('end')}, "
             f"{summary.get('bars', 0):,} bars, {summary.get('events', 0):,} events, "
             f"{summary.get('run_seconds', 0):.2f} s"]
    header = (f"  {'exchange':<12} {'pnl':>12} {'fees':>10} {'funding':>10} {'consumed':>11} {'max dd':>10} "
              f"{'peak IM':>11} {'liq':>4} {'rej':>4} {'headroom':>9}")
    lines.append(header)
    for name, row in summary["exchanges"].items():
        low = row["lowest_margin_headroom"]
        consumed = row.get("collateral_consumed", {}).get("amount", 0.0)
        lines.append(f"  {name:<12} {row['pnl']:>12,.2f} {row['fees']:>10,.2f} {row['funding']:>10,.2f} "
                     f"{consumed:>11,.2f} {row['max_drawdown']:>10,.2f} {row['peak_initial_margin']:>11,.2f} "
                     f"{row['liquidations']:>4} {row['rejected_orders']:>4} "
                     f"{_percent(low['headroom'] if low else None):>9}")
    t = summary["total"]
    lines.append(f"  {'book':<12} {t['pnl']:>12,.2f} {t['fees']:>10,.2f} {t['funding']:>10,.2f} "
                 f"{t.get('collateral_consumed', {}).get('amount', 0.0):>11,.2f} {t.get('max_drawdown', 0.0):>10,.2f} "
                 f"{'':>11} {t['liquidations']:>4} {t.get('rejected_orders', 0):>4}")
    lines.append("  (consumed: deposits + transfers in - transfers out - equity at the worst moment; max dd: of "
                 "equity less those flows)")
    for name, row in summary["exchanges"].items():
        low, isolated = row["lowest_margin_headroom"], row.get("lowest_isolated_headroom")
        if low:
            lines.append(f"  lowest headroom on {name}: {low['headroom'] * 100:.1f}% at {low['ts']}")
        if isolated:
            lines.append(f"  lowest isolated-position headroom on {name}: {isolated['headroom'] * 100:.1f}% at "
                         f"{isolated['ts']}")
        worst = row.get("collateral_consumed", {})
        if worst.get("ts"):
            lines.append(f"  collateral consumed on {name}: {worst['amount']:,.2f} at {worst['ts']}")
    tight = summary["total"].get("tightest_moment")
    if tight:
        lines.append(f"  tightest moment: {tight['exchange']} {tight['asset']} at {tight['ts']}: a "
                     f"{tight['liquidation_distance'] * 100:.1f}% adverse move of everything would liquidate "
                     f"(first warning at {tight['warning_distance'] * 100:.1f}%)")
    stats = t.get("statistics")
    if stats:
        dd = t.get("drawdown", {})
        lines.append(f"  book on capital {stats['capital']:,.0f}: return {_percent(stats['return_on_capital'])}, "
                     f"CAGR {_percent(stats['cagr'])}, volatility {_percent(stats['volatility'])}, Sharpe "
                     f"{_number(stats['sharpe'])}, Sortino {_number(stats['sortino'])}, max dd "
                     f"{t.get('max_drawdown', 0.0):,.2f}, under water {dd.get('hours_under_water', 0.0):,.0f} h "
                     f"(longest {dd.get('longest_under_water_hours', 0.0):,.0f} h)")
    exposure = summary.get("exposure", {})
    shown = sorted(exposure, key=lambda u: (-exposure[u]["peak_net_share"], u))[:EXPOSURE_LINES]
    for underlying in (u for u in exposure if u in shown):  # a wide book: the most one-sided, in summary order
        row = exposure[underlying]
        lines.append(f"  exposure {underlying}: peak gross {row['peak_gross']:,.0f}, net at peak |net| "
                     f"{row['net_at_peak']:,.0f} ({row['peak_net_ts']}), peak |net|/gross "
                     f"{row['peak_net_share'] * 100:.0f}%{'' if row['hedged'] else ' (one instrument: directional)'}")
    if len(exposure) > len(shown):
        lines.append(f"  exposure: {len(exposure) - len(shown)} more underlyings, less one-sided (every one in "
                     "summary.json, exposure)")
    for rejection in summary.get("rejections", []):
        lines.append(f"  REJECTED: {rejection['count']} order(s) on {rejection['exchange']}: {rejection['kind']} "
                     f"(first {rejection['first_ts']} {rejection['first_instrument']}: {rejection['example']})")
    inputs = set(summary.get("input_warnings", ()))  # caveats about the data and config the run rests on
    label = lambda text: "input warning" if text in inputs else "WARNING"  # noqa: E731
    for texts, instruments in _grouped(summary.get("warnings", [])):
        if len(instruments) <= GROUPED_ABOVE:
            lines.extend(f"  {label(text)}: {text}" for text in texts)
        else:  # the same warning for many instruments (a wide book): one line naming a few
            lines.append(f"  {label(texts[0])} for {len(instruments)} instruments "
                         f"({', '.join(instruments[:WARNING_NAMES])} and {len(instruments) - WARNING_NAMES} more; "
                         f"each in summary.json, warnings): {_INSTRUMENT.sub('{instrument}', texts[0], count=1)}")
    lines.append(f"  outputs: {run_path}  (open with xmargin.open_run)")
    return "\n".join(lines)
