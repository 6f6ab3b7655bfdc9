"""Reusing a dataset's validation report while neither its bytes nor the validator changed.

`xmargin run` validates its dataset first; a year of one-minute bars takes about as long to check
as to backtest. The report of a check is stored under the user's cache folder
(`$XMARGIN_CACHE_DIR`, else `$XDG_CACHE_HOME/xmargin`, else `~/.cache/xmargin`), keyed by the
dataset's fingerprint (sha256 of dataset.toml and every Parquet file: `xmargin.dataset.feed.fingerprint`),
the validation options, the xmargin version and the source of the validation modules, so any
change to the data or to the checks runs them again. A cache that cannot be read or written is
ignored (the dataset is then simply checked).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import attrs

from xmargin import _version
from xmargin.dataset import batches as _batches
from xmargin.dataset import manifest as _manifest
from xmargin.dataset import tables as _tables
from xmargin.dataset import validate as _validate
from xmargin.dataset.feed import fingerprint
from xmargin.dataset.validate import KindSummary, Problem, Report, validate_dataset


def cache_folder() -> Path:
    """Where validation reports are kept (see module doc)."""
    if os.environ.get("XMARGIN_CACHE_DIR"):
        return Path(os.environ["XMARGIN_CACHE_DIR"]) / "validation"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "xmargin" / "validation"


def _validator_digest() -> str:
    digest = hashlib.sha256(_version.__version__.encode())
    for module in (_validate, _batches, _manifest, _tables):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()


def validate_dataset_cached(path: str | Path, **options) -> Report:
    """`validate_dataset(path, **options)`, or the stored report of the same check of the same bytes."""
    try:
        key = hashlib.sha256(json.dumps([fingerprint(path), _validator_digest(), sorted(options.items())],
                                        default=str).encode()).hexdigest()
    except (OSError, ValueError):  # no dataset.toml or unreadable files: let the check say so
        return validate_dataset(path, **options)
    stored = cache_folder() / f"{key}.json"
    try:
        data = json.loads(stored.read_text())
        return Report(path=str(path), problems=tuple(Problem(**p) for p in data["problems"]),
                      summaries=tuple(KindSummary(**s) for s in data["summaries"]),
                      instruments=tuple(data["instruments"]))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    report = validate_dataset(path, **options)
    try:
        stored.parent.mkdir(parents=True, exist_ok=True)
        partial = stored.with_suffix(f".{os.getpid()}.partial")
        partial.write_text(json.dumps(attrs.asdict(report)))
        partial.replace(stored)
    except OSError:
        pass
    return report
