"""Load of a dataset with mark series: time and peak memory of `load_feed` against polars reading the
same Parquet files whole, each in a fresh process.

The dataset is a year of one-minute bars from `xmargin data synth` (binance and bybit, BTC and ETH:
four perps with a mark series and their funding, two spot markets; the synth layout puts every
instrument of a month in one file), generated into the bench data folder when missing. Reported per
repeat and as medians:

* `load_feed`: wall seconds and the process's peak RSS (ru_maxrss) minus its RSS before loading,
  with the size of the arrays it returns;
* the reference: `pl.scan_parquet` of every bars and mark file, collected whole (what reading the
  data costs without arranging it), likewise;
* the ratios load / reference.

    .venv/bin/python bench/load_bench.py [--repeat 3] [--data DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.run_bench import DEFAULT_DIR  # noqa: E402

NAME = "marks-1y"


def dataset(data: Path) -> Path:
    folder = data / NAME
    if not (folder / "dataset.toml").is_file():
        print(f"generating {folder}", flush=True)
        subprocess.run([sys.executable, "-m", "xmargin", "data", "synth", str(folder), "--days", "365",
                        "--exchanges", "binance,bybit", "--assets", "BTC,ETH", "--force"], check=True, cwd=ROOT,
                       stdout=subprocess.DEVNULL)
    return folder


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child(folder: Path, what: str) -> dict:
    import numpy as np
    import polars as pl

    from xmargin.dataset.feed import load_feed
    from xmargin.dataset.manifest import read_manifest
    from xmargin.dataset.tables import table_files

    keys = list(read_manifest(folder).keys)
    before = _rss_mb()
    started = time.perf_counter()
    if what == "load":
        feed = load_feed(folder, keys)
        nbytes = sum(getattr(feed, name).nbytes for name in ("ts", "open", "high", "low", "close", "has_bar"))
        nbytes += sum(getattr(feed, name).nbytes for name in ("mark_open", "mark_high", "mark_low", "mark_close")
                      if not np.shares_memory(getattr(feed, name), feed.close))
    else:
        files = [str(f) for kind in ("bars", "mark") for f in table_files(folder, kind)]
        frame = pl.scan_parquet(files, missing_columns="insert").collect()
        nbytes = frame.estimated_size()
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {"seconds": seconds, "peak_mb": peak - before, "arrays_mb": nbytes / 2**20}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(Path(args.child[0]), args.child[1])))
        return 0
    folder = dataset(args.data)
    runs: dict[str, list] = {"load": [], "reference": []}
    for _ in range(args.repeat):
        for what in runs:
            out = subprocess.run([sys.executable, __file__, "--child", str(folder), what], check=True,
                                 capture_output=True, text=True, cwd=ROOT)
            runs[what].append(json.loads(out.stdout.strip().splitlines()[-1]))
    summary = {what: {key: statistics.median(r[key] for r in found) for key in found[0]}
               for what, found in runs.items()}
    summary["seconds_ratio"] = summary["load"]["seconds"] / summary["reference"]["seconds"]
    summary["peak_ratio"] = summary["load"]["peak_mb"] / summary["reference"]["peak_mb"]
    print(f"dataset {folder} (a year of 1-minute bars, 4 perps with marks, 2 spot), median of {args.repeat} "
          "fresh processes each")
    for what in ("load", "reference"):
        s = summary[what]
        each = ", ".join("{:.2f} s / +{:.0f} MB".format(r["seconds"], r["peak_mb"]) for r in runs[what])
        print(f"  {what:<10} {s['seconds']:6.2f} s   peak +{s['peak_mb']:5.0f} MB   data {s['arrays_mb']:5.0f} MB   "
              f"(runs: {each})")
    print(f"  load / reference: {summary['seconds_ratio']:.2f} x the time, {summary['peak_ratio']:.2f} x the peak")
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, **summary}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
