"""`dataset.toml`: what a dataset is, where it came from, and which instruments it declares."""

from __future__ import annotations

import math
import os
import re
import shutil
import tomllib
from pathlib import Path

import attrs

from xmargin._keys import unknown_keys
from xmargin.errors import DatasetError
from xmargin.venues.instruments import Instrument, parse_expiry

KINDS = ("bars", "mark", "index", "funding")
MANIFEST_NAME = "dataset.toml"

BAR_COLUMNS = {
    "ts": "Datetime(ns, UTC)",
    "exchange": "String",
    "symbol": "String",
    "market": "String",
    "timeframe": "String",
    "open": "Float64",
    "high": "Float64",
    "low": "Float64",
    "close": "Float64",
    "volume": "Float64",
}
PRICE_COLUMNS = {k: v for k, v in BAR_COLUMNS.items() if k != "volume"}  # mark/ and index/
FUNDING_COLUMNS = {
    "ts": "Datetime(ns, UTC)",
    "exchange": "String",
    "symbol": "String",
    "market": "String",
    "funding_rate": "Float64",
}
COLUMNS_BY_KIND = {"bars": BAR_COLUMNS, "mark": PRICE_COLUMNS, "index": PRICE_COLUMNS, "funding": FUNDING_COLUMNS}


@attrs.frozen
class Source:
    """Where part of a dataset came from (repository, commit, path) and under which licence."""

    name: str
    licence: str
    repository: str = ""
    commit: str = ""
    path: str = ""
    notes: str = ""


@attrs.frozen
class Caveat:
    """A doubt about the data that no later check can see again (`[[caveats]]`, written by `xmargin
    data import`: dates without a time zone read as UTC, a timestamp read twice with different
    values). `xmargin data validate` repeats each as a warning, and so does a run trading `instrument`."""

    instrument: str
    message: str


@attrs.frozen
class DatasetManifest:
    """The parsed `dataset.toml`."""

    name: str
    description: str
    kind: str = attrs.field(validator=attrs.validators.in_(("real", "synthetic")))
    instruments: tuple[Instrument, ...]
    sources: tuple[Source, ...] = ()
    caveats: tuple[Caveat, ...] = ()

    def instrument(self, key: str) -> Instrument:
        for instrument in self.instruments:
            if instrument.key == key:
                return instrument
        raise KeyError(key)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(i.key for i in self.instruments)


def read_manifest(folder: str | Path) -> DatasetManifest:
    """Read and validate `<folder>/dataset.toml`; errors name the file and the entry."""
    path = Path(folder) / MANIFEST_NAME
    if not Path(folder).is_dir():
        raise DatasetError(f"{folder}: not a folder. A dataset is a folder holding {MANIFEST_NAME} and bars/.")
    if not path.is_file():
        raise DatasetError(f"{path}: missing. Every dataset folder needs a {MANIFEST_NAME} "
                           "(see README, 'Dataset format'), e.g. one written by `xmargin data import`.")
    text = path.read_text()
    parsed = _PARSED.get(text)
    if parsed is not None:
        return parsed
    manifest = _parsed_manifest(path, text)
    if len(_PARSED) >= 8:
        _PARSED.clear()
    _PARSED[text] = manifest
    return manifest


# dataset.toml text -> its manifest (frozen): a run reads its dataset's manifest three or four
# times (config, catalog, load, validation), a wide book's takes tens of milliseconds to parse
_PARSED: dict[str, DatasetManifest] = {}


def _parsed_manifest(path: Path, text: str) -> DatasetManifest:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DatasetError(f"{path}: not valid TOML ({exc}). Fix the syntax at the position given.") from exc
    unknown = unknown_keys(data, TOP_LEVEL_KEYS)
    if unknown:
        raise DatasetError(f"{path}: unknown keys {unknown}; allowed: {list(TOP_LEVEL_KEYS)}.")
    for key in ("name", "kind", "instruments"):
        if key not in data:
            raise DatasetError(f"{path}: key '{key}' is missing. Add it (see README, 'Dataset format').")
    for key in ("name", "kind"):
        if not isinstance(data[key], str):
            raise DatasetError(f"{path}: {key} = {data[key]!r}: must be a string.")
    if not isinstance(data["instruments"], list) or not all(isinstance(e, dict) for e in data["instruments"]):
        raise DatasetError(f"{path}: instruments = {data['instruments']!r}: must be [[instruments]] tables (one per "
                           "instrument, with exchange, symbol, market, base, quote, ...).")
    instruments = []
    for n, entry in enumerate(data["instruments"], start=1):
        try:
            instruments.append(Instrument.from_mapping(entry))
        except (TypeError, ValueError) as exc:
            raise DatasetError(f"{path}: [[instruments]] entry {n} ({entry.get('symbol', '?')}): {exc}. "
                               "Fix that entry.") from exc
        problem = _symbol_problem(instruments[-1])
        if problem:
            raise DatasetError(f"{path}: [[instruments]] entry {n} ({instruments[-1].symbol}): {problem}. Fix the "
                               "entry so that symbol and fields agree.")
    keys = [i.key for i in instruments]
    duplicated = sorted({k for k in keys if keys.count(k) > 1})
    if duplicated:
        raise DatasetError(f"{path}: instruments declared twice: {duplicated}. Keep one entry each.")
    fields = [a.name for a in attrs.fields(Source)]
    for n, entry in enumerate(data.get("sources", []), start=1):
        unknown = unknown_keys(entry, fields) if isinstance(entry, dict) else "(not a table)"
        if unknown:
            raise DatasetError(f"{path}: [[sources]] entry {n}: unknown keys {unknown}; allowed: {fields}.")
    try:
        sources = tuple(Source(**s) for s in data.get("sources", []))
    except (TypeError, AttributeError) as exc:
        raise DatasetError(f"{path}: a [[sources]] entry is malformed ({exc}).") from exc
    if data["kind"] not in KINDS_OF_DATA:
        raise DatasetError(f"{path}: kind = {data['kind']!r}: 'real' or 'synthetic'.")
    caveats = data.get("caveats", [])
    if not isinstance(caveats, list) or not all(isinstance(c, dict) and set(c) == {"instrument", "message"}
                                                and all(isinstance(v, str) for v in c.values()) for c in caveats):
        raise DatasetError(f"{path}: caveats must be [[caveats]] tables of instrument and message (strings).")
    return DatasetManifest(name=data["name"], description=data.get("description", ""), kind=data["kind"],
                           instruments=tuple(instruments), sources=sources,
                           caveats=tuple(Caveat(**c) for c in caveats))


TOP_LEVEL_KEYS = ("name", "description", "kind", "sources", "instruments", "caveats")
KINDS_OF_DATA = ("real", "synthetic")
# ccxt's notation: spot BTC/USDT, perp BTC/USDT:USDT, dated future BTC/USDT:USDT-250627
CCXT_SYMBOL = re.compile(r"(?P<base>[^/:]+)/(?P<quote>[^/:]+)(?::(?P<settle>[^-]+)(?:-(?P<expiry>\d{6}))?)?")


def _symbol_problem(instrument: Instrument) -> str:
    """Where a symbol written in ccxt's notation disagrees with the entry's own fields ('' if nowhere
    or if the symbol uses another notation): base and quote pick the rule brackets, settle the pool."""
    match = CCXT_SYMBOL.fullmatch(instrument.symbol)
    if match is None:
        return ""
    said = {"base": match["base"], "quote": match["quote"], **({"settle": match["settle"]} if match["settle"] else {})}
    wrong = [f"{key} = {getattr(instrument, key)!r} but the symbol says {value!r}" for key, value in said.items()
             if getattr(instrument, key) != value]
    if (match["settle"] is None) != (instrument.market == "spot"):
        wrong.append(f"market = {instrument.market!r} but {instrument.symbol} is a "
                     f"{'spot' if match['settle'] is None else 'derivative'} symbol in ccxt's notation (spot BTC/USDT, "
                     "perp BTC/USDT:USDT, future BTC/USDT:USDT-250627)")
    if match["expiry"] and instrument.expiry and f"{parse_expiry(instrument.expiry):%y%m%d}" != match["expiry"]:
        wrong.append(f"expiry = {instrument.expiry!r} but the symbol says {match['expiry']} (YYMMDD)")
    return "; ".join(wrong)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot write non-finite number {value} to TOML")
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    raise TypeError(f"unsupported TOML value {value!r}")


def manifest_to_toml(manifest: DatasetManifest) -> str:
    """Render a manifest as TOML with a stable key order (so `synth` output is byte-identical)."""
    lines = [f"name = {_toml_value(manifest.name)}",
             f"description = {_toml_value(manifest.description)}",
             f"kind = {_toml_value(manifest.kind)}", ""]
    for source in manifest.sources:
        lines.append("[[sources]]")
        for key, value in attrs.asdict(source).items():
            if value != "" or key in ("name", "licence"):
                lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    for instrument in manifest.instruments:
        lines.append("[[instruments]]")
        for key, value in instrument.to_mapping().items():
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    for caveat in manifest.caveats:
        lines.extend(["[[caveats]]", f"instrument = {_toml_value(caveat.instrument)}",
                      f"message = {_toml_value(caveat.message)}", ""])
    return "\n".join(lines)


def write_manifest(folder: str | Path, manifest: DatasetManifest) -> Path:
    path = Path(folder) / MANIFEST_NAME
    path.write_text(manifest_to_toml(manifest))
    return path


def publish(staged: str | Path, out: str | Path) -> Path:
    """Put a finished dataset folder `staged` in place at `out`: whatever stood at `out` is moved aside
    first and removed only after the rename, so `out` is never a half-written dataset."""
    staged, out = Path(staged), Path(out)
    old = out.with_name(f".{out.name}.replaced")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        os.rename(out, old)
    os.rename(staged, out)
    shutil.rmtree(old, ignore_errors=True)
    return out

