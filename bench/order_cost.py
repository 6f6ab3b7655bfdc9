"""Cost of an order against the width of the book (issue 14: "the cost of an order does not grow with
the number of open positions").

For books of N linear perps on each of two exchanges (bench/make_book_data.py, 30 days of one-minute
bars, generated into the bench data folder when missing), the WIDE50 strategy (`HedgedRebalance` over
the N pairs, 10,000 USD a leg, hourly) runs with 40,000 USDT of collateral per perp on each exchange,
so that nothing is liquidated (the few rejections are rebalancing deltas under the 5 USDT minimum
notional) and every wake trades every leg. Each width runs in a fresh process,
`--repeat` times; the run phase's CPU time (best) over the orders placed gives microseconds per order,
and the ratio to the narrowest book is the figure to read: 1.0 means no growth with the book.

    .venv/bin/python bench/order_cost.py [--widths 10 25 50] [--repeat 3] [--data DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.run_bench import DEFAULT_DIR, config_dict  # noqa: E402

DAYS = 30
COLLATERAL_PER_PERP = 40_000.0


def book(data: Path, perps: int) -> Path:
    folder = data / f"book-{perps}x{DAYS}d"
    if not (folder / "dataset.toml").is_file():
        from bench.make_book_data import make

        print(f"generating {folder}", flush=True)
        make(folder, perps, DAYS)
    return folder


def child(folder: Path, perps: int, repeat: int) -> dict:
    from collections import Counter

    from xmargin.config import parse_config
    from xmargin.sim.loop import Backtest

    raw = config_dict(folder, "WIDE50", DEFAULT_DIR / "runs")
    for exchange in raw["exchanges"].values():
        exchange["collateral"] = {"USDT": COLLATERAL_PER_PERP * perps}
    config = parse_config(raw)
    best, result = None, None
    for _ in range(repeat):
        backtest = Backtest(config)
        started = time.process_time()
        result = backtest.run()
        spent = time.process_time() - started
        best = spent if best is None else min(best, spent)
    counts = Counter(type(e).__name__ for e in result.events)
    orders = counts["OrderAccepted"] + counts["OrderRejected"]
    return {"perps": perps, "run_cpu_s": best, "orders": orders, "fills": counts["OrderFilled"],
            "rejected": counts["OrderRejected"], "liquidations": counts["PositionLiquidated"],
            "events": len(result.events), "us_per_order": 1e6 * best / orders}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[10, 25, 50])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", nargs=2, metavar=("FOLDER", "PERPS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(Path(args.child[0]), int(args.child[1]), args.repeat)))
        return 0
    rows = []
    for perps in args.widths:
        folder = book(args.data, perps)
        out = subprocess.run([sys.executable, __file__, "--child", str(folder), str(perps), "--repeat",
                              str(args.repeat)], check=True, capture_output=True, text=True, cwd=ROOT)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    first = rows[0]["us_per_order"]
    print("| perps a side | orders | fills | rejected | liquidations | run CPU s (best) | us per order | vs narrowest |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        row["vs_narrowest"] = row["us_per_order"] / first
        print(f"| {row['perps']} | {row['orders']:,} | {row['fills']:,} | {row['rejected']:,} | {row['liquidations']} | "
              f"{row['run_cpu_s']:.2f} | {row['us_per_order']:.1f} | {row['vs_narrowest']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
