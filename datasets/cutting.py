"""Shared steps of the scripts that cut shipped datasets from the shared real data.

Only licensed sets are read (by their MANIFEST tag), never `test-only/`; every table is cast to the
dataset schema, sorted by time and written as zstd Parquet; the hand-written README of the output
folder is kept across rebuilds; the output is deterministic.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from datetime import datetime
from pathlib import Path

import polars as pl

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from xmargin.dataset.manifest import DatasetManifest, Source, write_manifest  # noqa: E402
from xmargin.dataset.validate import polars_schema  # noqa: E402


def sources_from(entries: dict[str, dict], notes: str) -> tuple[Source, ...]:
    """One Source per repository@commit of the MANIFEST entries used, listing every original path."""
    grouped: dict[tuple[str, str], dict] = {}
    for entry in entries.values():
        for part in entry["source"].split(" + "):
            repository, rest = part.removeprefix("github ").split("@", 1)
            commit, path = rest.split(":", 1)
            item = grouped.setdefault((repository, commit), {"paths": [], "licence": entry["licence"]})
            if path not in item["paths"]:
                item["paths"].append(path)
    return tuple(Source(name=repository.split("/")[1], licence=item["licence"],
                        repository=f"https://github.com/{repository}", commit=commit,
                        path="; ".join(sorted(item["paths"])), notes=notes)
                 for (repository, commit), item in sorted(grouped.items()))


def cut(real: Path, out: Path, plan, tags: tuple[str, ...], start: datetime, end: datetime,
        manifest_for, starts: dict | None = None) -> None:
    """Write the tables of `plan` ((kind, source under real/, target under out/)) cut to
    [start, end) (`starts` may give another start per kind), then `manifest_for(used entries)`."""
    real = Path(real)
    if "test-only" in real.resolve().parts:
        raise SystemExit("refusing to read test-only/: its licence does not allow shipping derived data")
    manifest_entries = {e["file"]: e for e in json.loads((real / "MANIFEST.json").read_text())}
    readme = out / "README.md"
    readme_text = readme.read_text() if readme.is_file() else None  # hand-written; kept across rebuilds
    if out.exists():
        shutil.rmtree(out)
    used = {}
    for kind, source, target in plan:
        entry = manifest_entries[source]
        if entry["tag"] not in tags:
            raise SystemExit(f"{source}: tag {entry['tag']} is not one of the licensed sets {tags}")
        used[source] = entry
        schema = polars_schema(kind)
        frame = (pl.scan_parquet(str(real / source))
                 .filter((pl.col("ts") >= (starts or {}).get(kind, start)) & (pl.col("ts") < end))
                 .select([pl.col(name).cast(dtype) for name, dtype in schema.items()])
                 .sort("ts")
                 .collect())
        path = out / target
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.write_parquet(path, compression="zstd", compression_level=9, statistics=True)
        print(f"{target}: {frame.height} rows")
    manifest: DatasetManifest = manifest_for(used)
    write_manifest(out, manifest)
    if readme_text is not None:
        readme.write_text(readme_text)


def main(description: str, default_out: str, make) -> None:
    """`python datasets/make_x.py [REAL_DATA_FOLDER] [--out FOLDER]`."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("real", nargs="?", default=str(REPO.parent / "shared" / "datasets" / "real"),
                        help="folder holding the licensed real data (default: ../shared/datasets/real)")
    parser.add_argument("--out", default=str(REPO / "datasets" / default_out), help="output folder")
    args = parser.parse_args()
    make(Path(args.real), Path(args.out))
