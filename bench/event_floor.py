"""What the event-sourced log alone costs on W2, against the run-phase budget of issue 14's target
(the run phase at 0.5 x the in-process polars W2 reference).

Every state change is a frozen event folded into the ledger by its `apply` (design card). So any
run of W2, however its checks and fills are computed, at least builds its events and applies them,
and calls the strategy at its wakes. In one process this script:

1. runs W2 (`Backtest(config).run()`), timing the run phase and, inside it, the strategy's own
   `on_wake` calls (perf_counter around each of the 8,761 calls);
2. times, on the run's own log (best of `--repeat`):
   * apply: `replay(initial_ledger, events)`, the ledger folding every event (`xmargin.ledger.apply`);
   * construct: building every event object again from its field values (the fields taken out
     beforehand, not timed), i.e. what creating the log's frozen attrs events costs;
3. times the polars W2 reference (bench/run_bench.py `polars_book`, best of 3) on the same bars;
4. prints the floor (apply + construct + strategy) against the budget: bars / (0.5 x polars bars/s).

    .venv/bin/python bench/event_floor.py [--data DIR] [--repeat 3]

The floor is a lower bound for this design in CPython: it leaves out the pre-trade checks, fill
prices, the margin watch, snapshots and the loop itself.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.run_bench import DEFAULT_DIR, bench_config, load_bars, polars_book  # noqa: E402

TARGET_VS_POLARS = 0.5  # issue 14: W2 run phase >= 0.5 x the polars W2 reference


def measure(dataset: Path, repeat: int) -> dict:
    import attrs

    from xmargin.ledger.apply import replay
    from xmargin.sim.loop import Backtest

    backtest = Backtest(bench_config(dataset, "W2"))
    strategy_seconds = [0.0]
    on_wake = backtest.strategy.on_wake

    def timed(view, wake):
        started = time.perf_counter()
        try:
            return on_wake(view, wake)
        finally:
            strategy_seconds[0] += time.perf_counter() - started

    backtest.strategy.on_wake = timed
    started = time.perf_counter()
    result = backtest.run()
    run_seconds = time.perf_counter() - started
    events, bars = result.events, int(result.feed.bars)
    fields = [(type(event), attrs.astuple(event, recurse=False)) for event in events]
    apply_seconds = construct_seconds = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        replay(result.initial_ledger, events)
        apply_seconds = min(apply_seconds, time.perf_counter() - started)
        started = time.perf_counter()
        built = [kind(*values) for kind, values in fields]
        construct_seconds = min(construct_seconds, time.perf_counter() - started)
        del built
    frame = load_bars(dataset)
    polars_seconds = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        polars_book(frame)
        polars_seconds = min(polars_seconds, time.perf_counter() - started)
    polars_rate = frame.height / polars_seconds
    budget = bars / (TARGET_VS_POLARS * polars_rate)
    floor = apply_seconds + construct_seconds + strategy_seconds[0]
    return {"bars": bars, "events": len(events), "run_s": run_seconds, "vs_polars": bars / run_seconds / polars_rate,
            "apply_s": apply_seconds, "construct_s": construct_seconds, "strategy_s": strategy_seconds[0],
            "floor_s": floor, "polars_bars_per_s": polars_rate, "budget_s": budget, "floor_of_budget": floor / budget}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DIR / "dataset", help="the converted W2 dataset folder")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if not (args.data / "dataset.toml").is_file():
        parser.error(f"{args.data}: no dataset.toml; run bench/run_bench.py once (it prepares the W2 dataset) "
                     "or pass --data")
    m = measure(args.data, args.repeat)
    per_event = 1e6 / m["events"]
    print(f"W2: {m['bars']:,} bars, {m['events']:,} events; run phase {m['run_s']:.3f} s "
          f"= {m['vs_polars']:.3f} x polars ({m['polars_bars_per_s']:,.0f} bars/s)")
    print(f"  budget at {TARGET_VS_POLARS} x polars      {m['budget_s']:.3f} s")
    print(f"  apply (replay the log)       {m['apply_s']:.3f} s  ({m['apply_s'] * per_event:.2f} us/event)")
    print(f"  construct the events         {m['construct_s']:.3f} s  ({m['construct_s'] * per_event:.2f} us/event)")
    print(f"  strategy on_wake             {m['strategy_s']:.3f} s")
    print(f"  floor (sum)                  {m['floor_s']:.3f} s  = {m['floor_of_budget']:.2f} x the budget, before "
          "any check, fill, margin watch or snapshot")
    if args.json:
        args.json.write_text(json.dumps(m, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
