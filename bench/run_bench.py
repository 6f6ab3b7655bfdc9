"""Engine-core benchmark on the workload shared with the peer engines (shared/bench/README.md).

    .venv/bin/python bench/run_bench.py [--data DIR] [--workload W1|W2|all] [--repeat N]

1. Generates the peer data with shared/bench/make_peer_data.py (cached in DIR/peers, default
   DIR = /tmp/xmargin-bench) and converts it with bench/convert_peer_data.py into the xmargin
   dataset DIR/dataset (4 perps, 2,102,400 one-minute bars). `--data` may also point straight at
   a converted dataset folder (one holding dataset.toml).
2. Runs every workload N times, each in a fresh subprocess (so peak RSS is per workload): builds
   the config with parse_config, times `Backtest(config)` (load: manifest, Parquet -> dense
   arrays, fingerprint) and `.run()` (run phase) separately, counts events and orders, reads
   ru_maxrss, then times the two references in the same process on the same bars:
   * "polars, whole W2 book vectorised": one lazy query over the bars in memory that computes
     the W2 book's hourly targets per leg (+-50,000 USD / close, rounded down to the lot, at every
     hour close), the quantity held in each minute (target filled at the next bar open), the
     traded quantity and taker fee, the per-bar mark-to-market PnL of each leg, and the book's
     per-minute PnL, gross exposure and cumulative equity (group by ts). No margin, no funding.
   * "plain Python loop, one float add per row": `for x in closes: acc += x` over the 2,102,400
     closes as a Python list.
   Each reference is timed REF_REPEAT (3) times in the process and its best time is kept.
3. Prints per workload bars/s of the run phase, load time, peak RSS, events/orders, both
   references and the ratios engine / reference (medians over the repeats), then a compact table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_DIR = Path(os.environ.get("XMARGIN_BENCH_DIR", "/tmp/xmargin-bench"))
NOTIONAL = 50_000.0
LOTS = {"BTC/USDT:USDT": 0.001, "ETH/USDT:USDT": 0.01}
SIGNS = {"venuea": 1.0, "venueb": -1.0}
TAKER_FEE = 0.0005  # binance-usdm regular tier, as the engine run
REF_REPEAT = 3  # each reference is timed this many times in the child process; the best time counts
TARGETS = {"W2_bars_per_s": 1_000_000, "rss_mb": 800}
PEERS = [  # shared/bench/README.md: run phase, median, 2-core machine, CPython 3.11
    ("NautilusTrader 1.221.0", 77_100, 37_100, "1.3 GB"),
    ("backtrader 1.9.78", 14_600, 13_000, "0.9 GB"),
    ("backtesting.py 0.6.6", 342_900, 35_100, "0.6 GB"),
    ("vectorbt 1.2.0 (numba)", 977_000, 1_134_000, "1.0 GB"),
    ("ref: polars, whole W2 book", None, 6_900_000, "0.5 GB"),
    ("ref: Python loop, 1 add/row", 87_600_000, None, "-"),
]
WORKLOADS = {
    "W1": {"strategy": "bench.strategies:Passive", "params": {}},
    "W2": {"strategy": "bench.strategies:HedgedRebalance", "params": {"notional_usd": NOTIONAL, "every": "1h"}},
}


# -- data ---------------------------------------------------------------------------------------
def peer_script() -> Path:
    for candidate in (ROOT.parent / "shared" / "bench" / "make_peer_data.py",
                      Path("/work/shared/bench/make_peer_data.py")):
        if candidate.is_file():
            return candidate
    raise SystemExit("shared/bench/make_peer_data.py not found next to the repository (../shared/bench).")


def prepare(data: Path) -> Path:
    """The converted dataset folder, generating and converting the peer data when missing."""
    if (data / "dataset.toml").is_file():
        return data
    peers, dataset = data / "peers", data / "dataset"
    if not ((peers / "bars.parquet").is_file() and (peers / "funding.parquet").is_file()):
        script = peer_script()
        print(f"generating peer data: {script} {peers}", flush=True)
        subprocess.run([sys.executable, str(script), str(peers)], check=True, stdout=subprocess.DEVNULL)
    stale = not (dataset / "dataset.toml").is_file() or \
        (dataset / "dataset.toml").stat().st_mtime < (peers / "bars.parquet").stat().st_mtime
    if stale:
        from bench.convert_peer_data import convert

        convert(peers, dataset)
    return dataset


def bench_config(dataset: Path, workload: str):
    from xmargin.config import parse_config

    spec = WORKLOADS[workload]
    exchange = {"rules": "binance-usdm", "margin_mode": "cross", "collateral": {"USDT": 100_000}, "leverage": 10}
    return parse_config({
        "run": {"dataset": str(dataset), "strategy": spec["strategy"], "name": f"bench-{workload}",
                "out": str(DEFAULT_DIR / "runs"), "slippage_bps": 0.0},
        "strategy": {"params": dict(spec["params"])},
        "exchanges": {"venuea": dict(exchange), "venueb": dict(exchange)},
    })


# -- references ----------------------------------------------------------------------------------
def load_bars(dataset: Path):
    """The bars of the dataset in memory, sorted by instrument then time (not timed)."""
    import polars as pl

    return (pl.scan_parquet(str(dataset / "bars" / "**" / "*.parquet"))
            .select("ts", "exchange", "symbol", "open", "close")
            .sort("exchange", "symbol", "ts").collect())


def polars_book(bars):
    """The W2 book vectorised (see module doc): per-minute PnL, gross exposure and equity."""
    import polars as pl

    leg = ["exchange", "symbol"]
    hour, minute = 3_600_000_000_000, 60_000_000_000
    epoch = pl.col("ts").dt.epoch("ns")
    lot = pl.col("symbol").replace_strict(LOTS, return_dtype=pl.Float64)
    sign = pl.col("exchange").replace_strict(SIGNS, return_dtype=pl.Float64)
    wake = ((epoch + minute) % hour == 0) | (epoch == epoch.min().over(leg))
    target = pl.when(wake).then(sign * (NOTIONAL / pl.col("close") / lot + 1e-9).floor() * lot)
    return (bars.lazy()
            .with_columns(target=target.forward_fill().over(leg))
            .with_columns(held=pl.col("target").shift(1).fill_null(0.0).over(leg),
                          prev_close=pl.col("close").shift(1).over(leg))
            .with_columns(trade=(pl.col("held") - pl.col("held").shift(1).fill_null(0.0)).over(leg),
                          prev_held=pl.col("held").shift(1).fill_null(0.0).over(leg))
            .with_columns(fee=pl.col("trade").abs() * pl.col("open") * TAKER_FEE)
            .with_columns(pnl=pl.col("held") * (pl.col("close") - pl.col("open"))
                          + pl.col("prev_held") * (pl.col("open") - pl.col("prev_close")).fill_null(0.0)
                          - pl.col("fee"))
            .group_by("ts")
            .agg(pl.col("pnl").sum(), pl.col("fee").sum(), (pl.col("held") * pl.col("close")).abs().sum().alias("gross"),
                 (pl.col("trade") != 0).sum().alias("trades"))
            .sort("ts")
            .with_columns(equity=pl.col("pnl").cum_sum())
            .collect())


def python_loop(values: list) -> float:
    acc = 0.0
    for x in values:
        acc += x
    return acc


# -- one workload, in its own process --------------------------------------------------------------
def child(dataset: Path, workload: str) -> dict:
    from xmargin.ledger import events as ev
    from xmargin.sim.loop import Backtest

    config = bench_config(dataset, workload)
    started = time.perf_counter()
    backtest = Backtest(config)
    load_seconds = time.perf_counter() - started
    rss_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    started = time.perf_counter()
    result = backtest.run()
    run_seconds = time.perf_counter() - started
    rss_engine = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    # the output phase: the event log as Arrow and the projected equity (with distances), positions
    # and collateral tables, everything `xmargin run` writes except the disk I/O
    from xmargin.output.eventlog import events_to_table
    from xmargin.output.snapshots import collateral_table, positions_table
    from xmargin.output.writer import equity_table

    started = time.perf_counter()
    events_to_table(result.events)
    equity_table(result)
    positions_table(result)
    collateral_table(result)
    output_seconds = time.perf_counter() - started
    rss_outputs = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    bars = int(result.feed.bars)
    counts: dict[str, int] = {}
    fees = 0.0
    for event in result.events:
        name = type(event).__name__
        counts[name] = counts.get(name, 0) + 1
        if isinstance(event, ev.FeeCharged):
            fees += event.amount
    out = {"workload": workload, "bars": bars, "rows": int(len(result.feed.ts)), "load_s": load_seconds,
           "engine_load_s": result.timings["load_seconds"], "run_s": run_seconds,
           "bars_per_s": bars / run_seconds, "events": len(result.events), "event_counts": counts,
           "orders": counts.get("OrderAccepted", 0) + counts.get("OrderRejected", 0),
           "fills": counts.get("OrderFilled", 0), "fees": fees, "rss_load_mb": rss_load, "rss_engine_mb": rss_engine,
           "output_s": output_seconds, "rss_outputs_mb": rss_outputs}
    del backtest, result
    frame = load_bars(dataset)
    polars_seconds = loop_seconds = float("inf")
    values = frame["close"].to_list()
    for _ in range(REF_REPEAT):  # best of REF_REPEAT: the references are short and noise-prone
        started = time.perf_counter()
        book = polars_book(frame)
        polars_seconds = min(polars_seconds, time.perf_counter() - started)
        started = time.perf_counter()
        python_loop(values)
        loop_seconds = min(loop_seconds, time.perf_counter() - started)
    out.update(polars_s=polars_seconds, polars_bars_per_s=frame.height / polars_seconds,
               polars_fees=float(book["fee"].sum()), polars_trades=int(book["trades"].sum()),
               polars_equity=float(book["equity"][-1]),
               loop_s=loop_seconds, loop_rows_per_s=len(values) / loop_seconds,
               rss_total_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
    return out


# -- report ---------------------------------------------------------------------------------------
def _fmt(value) -> str:
    if value is None:
        return "—"
    if value >= 1e6:
        return f"{value / 1e6:,.2f} M"
    return f"{value:,.0f}"


def summarise(runs: list[dict]) -> dict:
    med = lambda key: statistics.median(r[key] for r in runs)  # noqa: E731
    first = runs[0]
    s = {k: first[k] for k in ("workload", "bars", "rows", "events", "orders", "fills", "fees", "event_counts",
                               "polars_fees", "polars_trades", "polars_equity")}
    for key in ("bars_per_s", "run_s", "load_s", "output_s", "polars_bars_per_s", "loop_rows_per_s"):
        s[key] = med(key)
    s["rss_load_mb"] = max(r["rss_load_mb"] for r in runs)
    s["rss_engine_mb"] = max(r["rss_engine_mb"] for r in runs)
    s["rss_engine_mb_min"] = min(r["rss_engine_mb"] for r in runs)
    s["rss_outputs_mb"] = max(r["rss_outputs_mb"] for r in runs)
    s["bars_per_s_all"] = sorted(r["bars_per_s"] for r in runs)
    s["rss_total_mb"] = max(r["rss_total_mb"] for r in runs)
    s["vs_polars"] = med("bars_per_s") / s["polars_bars_per_s"]
    s["vs_loop"] = med("bars_per_s") / s["loop_rows_per_s"]
    s["repeats"] = len(runs)
    return s


def report(s: dict) -> None:
    w = s["workload"]
    print(f"\n{w}: {s['bars']:,} bars ({s['rows']:,} timestamps), median of {s['repeats']}")
    print(f"  run phase     {s['run_s']:8.2f} s   {s['bars_per_s']:>14,.0f} bars/s   "
          f"(runs: {', '.join(f'{v:,.0f}' for v in s['bars_per_s_all'])})")
    print(f"  load phase    {s['load_s']:8.2f} s   (Backtest(config): manifest, Parquet -> arrays, fingerprint)")
    print(f"  output phase  {s['output_s']:8.2f} s   (event log to Arrow; equity with distances, positions, "
          f"collateral projected; peak RSS then {s['rss_outputs_mb']:.0f} MB)")
    print(f"  peak RSS      {s['rss_engine_mb']:8.0f} MB (max; min {s['rss_engine_mb_min']:.0f}) after the run ({s['rss_load_mb']:.0f} MB after load, "
          f"{s['rss_total_mb']:.0f} MB with the references)")
    print(f"  events        {s['events']:,}  orders {s['orders']:,}  fills {s['fills']:,}  fees {s['fees']:,.2f} USDT  "
          f"{json.dumps(s['event_counts'])}")
    print(f"  ref polars W2 book   {s['polars_bars_per_s']:>14,.0f} bars/s   engine/ref = {s['vs_polars']:.4f}"
          f"   (ref: {s['polars_trades']:,} trades, fees {s['polars_fees']:,.2f}, PnL {s['polars_equity']:,.2f})")
    print(f"  ref Python loop      {s['loop_rows_per_s']:>14,.0f} rows/s   engine/ref = {s['vs_loop']:.4f}")


def table(summaries: dict) -> None:
    print("\n| workload | run bars/s | load s | output s | peak RSS MB | events | orders | polars W2 ref bars/s "
          "| engine/polars | Python loop rows/s | engine/loop |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for w, s in summaries.items():
        print(f"| {w} | {s['bars_per_s']:,.0f} | {s['load_s']:.2f} | {s['output_s']:.2f} | {s['rss_engine_mb']:.0f} | "
              f"{s['events']:,} | "
              f"{s['orders']:,} | {s['polars_bars_per_s']:,.0f} | {s['vs_polars']:.3f} | {s['loop_rows_per_s']:,.0f} | "
              f"{s['vs_loop']:.4f} |")
    if "W2" in summaries:
        s = summaries["W2"]
        ok_speed = s["bars_per_s"] >= TARGETS["W2_bars_per_s"]
        ok_rss = s["rss_engine_mb"] < TARGETS["rss_mb"]
        print(f"\ntargets: W2 >= {TARGETS['W2_bars_per_s']:,} bars/s: {'met' if ok_speed else 'NOT met'} "
              f"({s['bars_per_s']:,.0f}); peak RSS < {TARGETS['rss_mb']} MB: {'met' if ok_rss else 'NOT met'} "
              f"({s['rss_engine_mb']:.0f} MB)")
    print("\npeers (shared/bench/README.md, their machine): "
          + "; ".join(f"{n}: W1 {_fmt(a)}, W2 {_fmt(b)}, {r}" for n, a, b, r in PEERS))


def source_state() -> str:
    """The commit and whether engine/ has uncommitted edits (the benchmark runs the working tree)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "engine"], cwd=ROOT, capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head + (" + uncommitted edits in engine/" if dirty else "")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DIR,
                        help=f"work folder for the peer data and the converted dataset (default {DEFAULT_DIR}), "
                             "or a converted dataset folder")
    parser.add_argument("--workload", choices=("W1", "W2", "all"), default="all")
    parser.add_argument("--repeat", type=int, default=1, help="fresh processes per workload; medians reported")
    parser.add_argument("--json", type=Path, help="also write the summaries to this JSON file")
    parser.add_argument("--child", choices=tuple(WORKLOADS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.data, args.child)))
        return 0
    dataset = prepare(args.data)
    workloads = list(WORKLOADS) if args.workload == "all" else [args.workload]
    print(f"engine source: {source_state()}; python {sys.version.split()[0]}; {os.cpu_count()} cores", flush=True)
    summaries = {}
    for workload in workloads:
        runs = []
        for n in range(max(1, args.repeat)):
            print(f"{workload} run {n + 1}/{max(1, args.repeat)} ...", flush=True)
            done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", workload,
                                   "--data", str(dataset)], check=True, capture_output=True, text=True, cwd=ROOT)
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        summaries[workload] = summarise(runs)
        report(summaries[workload])
    table(summaries)
    if args.json:
        args.json.write_text(json.dumps({"source": source_state(), "workloads": summaries}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
