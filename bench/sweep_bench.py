"""Sweep benchmark: a 64-variant sweep of a 30-day slice of the W2 workload (bench/README.md),
serial vs the local process pool vs Dask.

    .venv/bin/python bench/sweep_bench.py [--data DIR] [--days 30] [--workers N] [--skip-dask]

The W2 config of run_bench.py (two cross-margin venues, 100,000 USDT each, HedgedRebalance on
BTC and ETH) on 2024-03-01 + `--days`, varied over 4 notionals x 4 rebalance intervals x 2 margin
modes x 2 collateral amounts = 64 variants, every run folder removed (`keep = "none"`, as a big
sweep would run). Each executor runs the same 64 variants into its own folder:

  serial  SerialExecutor: one after the other in this process
  local   LocalPool(N): N worker processes (default: the machine's cores)
  dask    a LocalCluster of N single-threaded worker processes on this machine, through the
          scheduler (what `--executor dask` does against a real cluster, minus the network)

Reported: wall seconds, runs per minute, the speed-up over serial, and the Dask path's cost per
variant = (Dask wall - local wall) / variants, on the same number of processes (what the
scheduler, serialisation and the Dask worker add per variant). The three tables are checked
to hold the same figures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DIMENSIONS = dict(grid=["strategy.params.notional_usd=25000,50000,75000,100000",
                        "strategy.params.every=15m,1h,4h,1d"],
                  modes="cross,isolated", collateral=["60000,100000"])
VOLATILE = ["seconds", "path", "attempts"]


def w2_slice(dataset: Path, days: int):
    from bench.run_bench import bench_config
    from xmargin.config import parse_config

    raw = dict(bench_config(dataset, "W2").raw)
    start = date(2024, 3, 1)
    raw["run"] = {**raw["run"], "start": start.isoformat(), "end": (start + timedelta(days=days)).isoformat(),
                  "name": f"sweep-bench-W2-{days}d"}
    return parse_config(raw)


def timed(label: str, config, out: Path, executor):
    from xmargin.analysis.sweep import sweep

    started = time.perf_counter()
    done = sweep(config, **DIMENSIONS, out=out, keep="none", executor=executor)
    seconds = time.perf_counter() - started
    table = done.results.collect()
    failed = table.filter(table["status"] != "ok").height
    print(f"  {label:<8}{seconds:9.1f} s  {table.height / seconds * 60:8.1f} runs/min  "
          f"(median variant {table['seconds'].median():.2f} s in its worker; {failed} failed)", flush=True)
    return seconds, table


def main(argv=None) -> int:
    from bench.run_bench import DEFAULT_DIR, prepare, source_state
    from xmargin.analysis.executors import DaskExecutor, LocalPool, machine_cores
    from xmargin.analysis.variants import SerialExecutor

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DIR, help="as run_bench.py --data")
    parser.add_argument("--days", type=int, default=30, help="length of the W2 slice (days from 2024-03-01)")
    parser.add_argument("--workers", type=int, default=machine_cores(), help="local and Dask worker processes")
    parser.add_argument("--skip-dask", action="store_true", help="no Dask run (e.g. xmargin[dask] not installed)")
    args = parser.parse_args(argv)
    config = w2_slice(prepare(args.data), args.days)
    work = Path(tempfile.mkdtemp(prefix="xmargin-sweep-bench-"))
    print(f"engine source: {source_state()}; python {sys.version.split()[0]}; {os.cpu_count()} cores; "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    print(f"W2 {args.days}-day slice from 2024-03-01, 64 variants, keep none, {args.workers} workers", flush=True)
    try:
        serial, serial_table = timed("serial", config, work / "serial", SerialExecutor())
        local, local_table = timed("local", config, work / "local", LocalPool(args.workers))
        assert local_table.drop(VOLATILE).equals(serial_table.drop(VOLATILE)), "local and serial tables differ"
        print(f"  local / serial speed-up: {serial / local:.2f} x", flush=True)
        if not args.skip_dask:
            import dask
            from distributed import Client, LocalCluster

            with dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"}), \
                    LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                                 dashboard_address=None) as cluster, Client(cluster) as client:
                remote, dask_table = timed("dask", config, work / "dask", DaskExecutor(client=client))
            assert dask_table.drop(VOLATILE).equals(serial_table.drop(VOLATILE)), "dask and serial tables differ"
            per_variant = (remote - local) / dask_table.height
            print(f"  dask cost per variant over the local pool: {per_variant * 1000:+.0f} ms "
                  f"({per_variant / (local * args.workers / local_table.height) * 100:+.1f} % of a variant's "
                  "worker time)", flush=True)
        print("  tables: identical figures on every executor", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
