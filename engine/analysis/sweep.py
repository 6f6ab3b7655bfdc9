"""Sweeps: the product of parameter values, margin set-ups, stress scenarios and collateral amounts
of one config, run on an executor, into one Parquet results table.

Dimensions (each a list of choices; the sweep runs every combination, in this order):

  grid        KEY=V1,V2: a dotted config key (as `--set`) and its values (TOML values: numbers,
              strings, booleans, arrays); e.g. strategy.params.notional=20000,30000
  modes       margin set-ups as `xmargin compare --modes`: "cross,isolated" (each on every
              exchange), "binance=cross,hyperliquid=isolated;cross" (';' separates set-ups)
  collateral  V1,V2: every exchange's starting collateral (each exchange must have one asset),
              or EXCHANGE.ASSET=V1,V2: that balance only (a grid key under exchanges.)
  stress      a scenario per value: "baseline" (no shock), the name of a [[stress]] scenario of
              the config, or shocks in the `xmargin stress --shock` text form (';' joins several)

A config's `[sweep]` table holds the same for bigger grids: `grid = { "strategy.params.notional"
= [20000, 30000] }`, `modes = ["cross", "isolated"]`, `collateral = [10000, 20000]` (or a table
"EXCHANGE.ASSET" = [...]), `stress = ["baseline", "crash"]`; command-line values replace the
table's for the same dimension (grid: per key).

Each variant's id is the first 12 hex digits of the sha256 of its config mapping (canonical
JSON, without run.out) and its shocks: the same config always gets the same id.

The sweep folder (`--out`):
  sweep.json      the plan: base config, dimensions, every variant's id and parameters
  journal.jsonl   one line per finished variant, appended as they finish (what --resume reads)
  sweep.parquet   the results, written (atomically) when every variant has finished: one row per
                  variant, in plan order; its schema metadata b"xmargin" is JSON naming the
                  parameter columns ({"parameters": [...]}, as sweep.json does)
  runs/<id>/      run folders kept by the keep policy (`<id>.failed/` for a run that crashed)

Results columns: variant_id; one column per dimension (grid keys by name, `margin_modes`,
`collateral`, `stress`); status ("ok" / "failed") and error; every figure of the run summary's
total under its own name (pnl, fees, funding, liquidations, max_drawdown, sharpe, sortino,
return_on_capital, ...; a nested figure joins its keys with "_", e.g. collateral_consumed_amount,
tightest_moment_liquidation_distance; those of the `statistics` table keep their names) and per
exchange as <figure>_<exchange> (pnl_binance, max_drawdown_binance, peak_initial_margin_binance,
lowest_margin_headroom_binance, ...); seconds (wall time of the variant in its worker), attempts
(workers that started it) and path (the kept folder or null). What each figure means is the run
summary's definition (xmargin.analysis.summary).

The local pool starts its workers like `multiprocessing` does: a script that calls `sweep` must
do so under `if __name__ == "__main__":` (the workers import the script's module).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import tomllib
from datetime import datetime, timezone
from pathlib import Path

import attrs
import polars as pl
import pyarrow.parquet as pq

from xmargin._version import __version__
from xmargin.analysis.compare import as_config, parse_setups
from xmargin.output.writer import run_id_for
from xmargin.analysis.stress import parse_shock, scenarios_from_config
from xmargin.analysis.variants import KEEP, Variant, run_variants
from xmargin.config import RunConfig, parse_config, parse_override_value, set_path
from xmargin.errors import ConfigError, RunError
from xmargin.sim.strategy import build_strategy

SWEEP_KEYS = {"grid", "modes", "collateral", "stress", "keep"}
PLAN, JOURNAL, RESULTS, RUNS = "sweep.json", "journal.jsonl", "sweep.parquet", "runs"


@attrs.frozen
class Choice:
    """One value of one dimension: its label in the results column and what it changes."""

    column: str
    label: object
    sets: dict = attrs.field(factory=dict)  # dotted config key -> value
    shocks: tuple = ()


# ------------------------------------------------------------------------------------------ dimensions
def parse_values(text: str, where: str) -> list:
    """'20000,30000' / '"a","b"' / '[1,2],[3]' / 'cross,isolated' -> values (TOML, bare words as strings)."""
    try:
        values = tomllib.loads(f"v = [{text}]")["v"]
    except tomllib.TOMLDecodeError:
        values = [parse_override_value(part.strip()) for part in text.split(",") if part.strip()]
    if not values:
        raise ConfigError(f"{where}: no values; give V1,V2,...")
    return values


def parse_grid(text: str) -> tuple[str, list]:
    """`KEY=V1,V2` -> (key, values)."""
    key, sep, values = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--grid {text!r}: expected KEY=V1,V2, e.g. strategy.params.notional=20000,30000.")
    return key.strip(), parse_values(values, f"--grid {text!r}")


def _grid_choices(key: str, values, raw: dict) -> list[Choice]:
    top = key.split(".")[0]
    if top not in ("run", "strategy", "exchanges"):
        raise ConfigError(f"sweep grid key {key!r}: must start with run., strategy. or exchanges. (a config key).")
    if key.startswith("exchanges."):
        exchange = key.split(".")[1]
        if exchange not in raw.get("exchanges", {}):
            raise ConfigError(f"sweep grid key {key!r}: no exchange {exchange!r} in the config; configured: "
                              f"{sorted(raw.get('exchanges', {}))}.")
    if len(set(map(_label, values))) != len(values):
        raise ConfigError(f"sweep grid {key}: values {values} repeat; give each once.")
    return [Choice(key, _label(v), {key: v}) for v in values]


def _collateral_choices(values, raw: dict) -> list[Choice]:
    choices = []
    for value in values:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"sweep collateral {value!r}: amounts are numbers >= 0.")
        sets = {}
        for exchange, entry in raw.get("exchanges", {}).items():
            assets = list(entry.get("collateral", {}))
            if len(assets) != 1:
                raise ConfigError(f"sweep collateral {value}: exchange {exchange} has collateral in {assets}; "
                                  "name the balance: --collateral EXCHANGE.ASSET=V1,V2.")
            sets[f"exchanges.{exchange}.collateral.{assets[0]}"] = value
        choices.append(Choice("collateral", value, sets))
    return choices


def _stress_choices(values, raw: dict) -> list[Choice]:
    scenarios = scenarios_from_config(raw)
    choices = []
    for value in values:
        text = str(value).strip()
        if text in ("baseline", "none"):
            choices.append(Choice("stress", "baseline"))
        elif text in scenarios:
            choices.append(Choice("stress", text, shocks=scenarios[text]))
        else:
            try:
                shocks = tuple(parse_shock(s) for s in text.split(";") if s.strip())
            except ConfigError as exc:
                raise ConfigError(f"sweep stress {text!r}: not baseline, a [[stress]] scenario of the config "
                                  f"({', '.join(sorted(scenarios)) or 'it has none'}) nor shocks: {exc}") from None
            choices.append(Choice("stress", text, shocks=shocks))
    return choices


def _label(value):
    """A results-table cell for a parameter value (arrays and tables as compact JSON)."""
    return json.dumps(value, sort_keys=True, default=str) if isinstance(value, (list, dict)) else value


def dimensions(config: RunConfig, grid=(), modes=None, collateral=(), stress=()) -> list[list[Choice]]:
    """The sweep's dimensions from the config's [sweep] table and the command-line values."""
    raw = config.raw or {}
    table = raw.get("sweep", {})
    if not isinstance(table, dict):
        raise ConfigError("[sweep] must be a table (grid, modes, collateral, stress, keep).")
    unknown = set(table) - SWEEP_KEYS
    if unknown:
        raise ConfigError(f"[sweep]: unknown keys {sorted(unknown)}; allowed: {sorted(SWEEP_KEYS)}.")
    kinds = {"grid": (dict,), "modes": (str, list), "collateral": (int, float, list, dict), "stress": (str, list),
             "keep": (str,)}
    for key, allowed in kinds.items():
        value = table.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, allowed)):
            examples = {"grid": '{ "strategy.params.notional" = [20000, 30000] }', "modes": '["cross", "isolated"]',
                        "collateral": '[10000, 20000] or { "binance.USDT" = [10000, 20000] }',
                        "stress": '["baseline", "crash"]', "keep": '"failed"'}
            raise ConfigError(f"[sweep] {key} = {value!r}: expected e.g. {key} = {examples[key]}.")
    for key in ("modes", "stress"):
        if isinstance(table.get(key), list) and not all(isinstance(v, str) for v in table[key]):
            raise ConfigError(f"[sweep] {key} = {table[key]!r}: every entry is a text, e.g. "
                              f"{key} = {['cross', 'isolated'] if key == 'modes' else ['baseline', 'crash']}.")
    grid_values: dict = {}
    for key, values in (table.get("grid") or {}).items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"[sweep] grid.{key!r}: give a non-empty array of values.")
        grid_values[key] = values
    keyed_collateral = {}
    file_collateral = table.get("collateral")
    if isinstance(file_collateral, dict):
        keyed_collateral.update(file_collateral)
        file_collateral = None
    given = set()
    for text in grid:
        key, values = parse_grid(text)
        if key in given:  # two --grid for one key: neither silently wins
            raise ConfigError(f"--grid {key}: given twice; give every value once: --grid {key}=V1,V2,...")
        given.add(key)
        grid_values[key] = values
    command_collateral = None
    for text in collateral:
        key, sep, values = text.partition("=")
        if sep:
            exchange, _, asset = key.strip().partition(".")
            if f"exchanges.{exchange}.collateral.{asset}" in given:
                raise ConfigError(f"--collateral {key.strip()}: also given as --grid exchanges.{exchange}.collateral."
                                  f"{asset}; give the amounts once.")
            keyed_collateral[key.strip()] = parse_values(values, f"--collateral {text!r}")
        else:
            command_collateral = (command_collateral or []) + parse_values(text, f"--collateral {text!r}")
    for key, values in keyed_collateral.items():
        exchange, _, asset = key.partition(".")
        if not asset:
            raise ConfigError(f"sweep collateral {key!r}: expected EXCHANGE.ASSET, e.g. binance.USDT.")
        grid_values[f"exchanges.{exchange}.collateral.{asset}"] = values
    out = [_grid_choices(key, values, raw) for key, values in grid_values.items()]
    setups = modes if modes is not None else table.get("modes")
    if setups:
        out.append([Choice("margin_modes", name, {f"exchanges.{e}.margin_mode": m for e, m in assignment.items()})
                    for name, assignment in parse_setups(setups, list(config.exchanges))])
    amounts = command_collateral if command_collateral is not None else file_collateral
    if amounts is not None and not isinstance(amounts, list):
        amounts = [amounts]
    if amounts:
        out.append(_collateral_choices(amounts, raw))
    scenarios = list(stress) or table.get("stress") or []
    if isinstance(scenarios, str):
        scenarios = [scenarios]
    if scenarios:
        out.append(_stress_choices(scenarios, raw))
    return out


# ------------------------------------------------------------------------------------------ variants
def variant_id(raw: dict, shocks=()) -> str:
    """12 hex digits of the sha256 of the config mapping (canonical JSON, without run.out) and the shocks."""
    mapping = copy.deepcopy(raw)
    mapping.get("run", {}).pop("out", None)
    text = json.dumps({"config": mapping, "shocks": [s.describe() for s in shocks]}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def plan_variants(config, grid=(), modes=None, collateral=(), stress=()) -> list[Variant]:
    """Every combination as a validated Variant (config checked, strategy built once), before any run:
    a bad key or value refuses the whole sweep with the variant's parameters in the message."""
    import itertools

    config = as_config(config)
    base = {k: v for k, v in copy.deepcopy(config.raw or {}).items() if k != "sweep"}
    if not base:
        raise ConfigError("sweep: the config has no source mapping (load it with xmargin.load_config).")
    variants, seen = [], {}
    for combination in itertools.product(*dimensions(config, grid, modes, collateral, stress)):
        raw = copy.deepcopy(base)
        shocks: tuple = ()
        parameters = {}
        for choice in combination:
            for key, value in choice.sets.items():
                set_path(raw, key, value, where="sweep key")
            shocks += choice.shocks
            parameters[choice.column] = choice.label
        identity = variant_id(raw, shocks)
        if identity in seen:
            raise ConfigError(f"sweep: variants {seen[identity]} and {parameters} are the same config; "
                              "drop the repeated value.")
        seen[identity] = parameters
        runnable = copy.deepcopy(raw)  # workers (any folder, any machine) read files by absolute paths
        runnable["run"]["dataset"] = str(Path(config.dataset).resolve())
        for entry in runnable.get("exchanges", {}).values():
            rules = Path(str(entry.get("rules", "")))
            if rules.suffix == ".json" and rules.is_file():
                entry["rules"] = str(rules.resolve())
        where = f"sweep variant {parameters}"
        variant_config = parse_config(runnable, where=where)
        try:
            build_strategy(variant_config.strategy, variant_config.params)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
        variants.append(Variant(identity, variant_config, shocks, parameters,
                                {"sweep": {"variant_id": identity, "parameters": parameters,
                                           "shocks": [s.describe() for s in shocks]}}))
    return variants


# ------------------------------------------------------------------------------------------ figures
_UNPREFIXED = ("statistics",)  # summary tables whose figures keep their own names (sharpe, sortino, ...)


def _numbers(mapping: dict, prefix: str = "") -> dict:
    """Numeric leaves by name; a nested figure joins its keys with "_", except the one its table is
    named after (lowest_margin_headroom.headroom -> lowest_margin_headroom) and those of a
    `statistics` table (statistics.sharpe -> sharpe)."""
    out = {}
    for key, value in mapping.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            out[prefix[:-1] if prefix.endswith(f"_{key}_") else f"{prefix}{key}"] = value
        elif isinstance(value, dict):
            out.update(_numbers(value, "" if key in _UNPREFIXED and not prefix else f"{prefix}{key}_"))
    return out


def sweep_figures(completed) -> dict:
    """A sweep row's figures: the summary's totals, per exchange `<figure>_<exchange>`."""
    summary = completed.summary
    figures = _numbers(summary["total"])
    for exchange, values in summary["exchanges"].items():
        figures.update({f"{name}_{exchange}": value for name, value in _numbers(values).items()})
    return figures


# ------------------------------------------------------------------------------------------ the sweep
@attrs.frozen
class Sweep:
    """A sweep folder: `results` (LazyFrame over sweep.parquet) and `plan` (sweep.json)."""

    path: Path
    results: pl.LazyFrame = attrs.field(repr=False)
    plan: dict = attrs.field(repr=False)

    def run(self, variant_id: str):
        """The kept run folder of a variant (xmargin.open_run)."""
        from xmargin.output.results import open_run

        folder = self.path / RUNS / variant_id
        if not folder.is_dir():
            raise RunError(f"{self.path}: variant {variant_id}'s run folder was not kept (sweep --keep all keeps "
                           "every one).")
        return open_run(folder)


def _journal(folder: Path) -> dict:
    """Rows already recorded, by variant id (a line cut short by a crash is ignored)."""
    rows = {}
    file = folder / JOURNAL
    if file.is_file():
        for line in file.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            rows[row["variant_id"]] = row
    return rows


def _results_table(rows: list[dict], parameters: list[str]) -> pl.DataFrame:
    for column in parameters:  # a grid mixing kinds of values (5 and "auto") becomes a text column
        kinds = {float if type(r[column]) is int else type(r[column]) for r in rows if r[column] is not None}
        if len(kinds) > 1:
            rows = [{**r, column: None if r[column] is None else str(r[column])} for r in rows]
    table = pl.DataFrame(rows, infer_schema_length=None)
    lead = ["variant_id", *parameters, "status", "error"]
    tail = ["seconds", "attempts", "path"]
    figures = [c for c in table.columns if c not in lead and c not in tail]
    table = table.select(lead + figures + tail)
    return table.with_columns([pl.col(c).cast(pl.String if c in ("error", "path") else pl.Float64)
                               for c, dtype in table.schema.items() if dtype == pl.Null])


def _row(variant: Variant, outcome) -> dict:
    return {"variant_id": variant.name, **variant.parameters, "status": outcome.status, "error": outcome.error or None,
            **outcome.figures, "seconds": round(outcome.seconds, 3), "attempts": outcome.attempts,
            "path": str(outcome.path) if outcome.path else None}


def sweep(config, grid=(), modes=None, collateral=(), stress=(), out=None, keep: str | None = None, executor=None,
          resume: bool = False, progress=None) -> Sweep:
    """Run every variant of `config` (see the module docstring) and write the results table under
    `out` (default `<run.out>/sweep-<name>-<UTC time>`). `executor`: LocalPool (default),
    SerialExecutor or DaskExecutor. `resume` finishes an interrupted sweep in `out`, skipping the
    variants its journal has. `progress`: an object with `start(total, done)` and `advance(outcome)`."""
    from xmargin.analysis.executors import LocalPool

    config = as_config(config)
    keep = keep or (config.raw or {}).get("sweep", {}).get("keep", "failed")
    if keep not in KEEP:
        raise ConfigError(f"sweep keep = {keep!r}: allowed {list(KEEP)}.")
    variants = plan_variants(config, grid, modes, collateral, stress)
    columns = list(variants[0].parameters)
    folder = Path(out) if out else Path(config.out) / run_id_for(config, Path(config.out), "sweep")
    ids = [v.name for v in variants]
    plan_file = folder / PLAN
    if plan_file.is_file():
        if not resume:
            raise ConfigError(f"{folder} already holds a sweep; pass --resume to finish it, or choose another --out.")
        recorded = json.loads(plan_file.read_text())
        if [v["variant_id"] for v in recorded["variants"]] != ids:
            raise ConfigError(f"--resume: {folder} holds another sweep ({len(recorded['variants'])} variants, "
                              f"{len(ids)} now, or other configs); resume with the same config and dimensions, "
                              "or choose another --out.")
    elif resume:
        raise ConfigError(f"--resume: {folder} holds no sweep ({PLAN} missing); run it without --resume.")
    elif folder.is_dir() and any(folder.iterdir()):
        raise ConfigError(f"--out {folder}: the folder holds other files and no sweep; give a new or empty folder "
                          "(a sweep folder's own files would mix with them).")
    else:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"--out {folder}: cannot create the sweep folder ({exc.strerror or exc}).") from None
        plan = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "xmargin": __version__,
                "config": {k: v for k, v in (config.raw or {}).items() if k != "sweep"},
                "parameters": columns, "keep": keep,
                "variants": [{"variant_id": v.name, "parameters": v.parameters,
                              "shocks": [s.describe() for s in v.shocks]} for v in variants]}
        _write_atomic(plan_file, (json.dumps(plan, indent=2, default=str) + "\n").encode())
    done = _journal(folder)
    todo = [v for v in variants if v.name not in done]
    for variant in todo:  # folders of attempts whose outcome was never recorded (an interrupt or crash)
        for stale in (folder / RUNS / variant.name, folder / RUNS / f"{variant.name}.failed"):
            if stale.exists():
                shutil.rmtree(stale)
    if progress is not None:
        progress.start(len(todo), len(variants) - len(todo))
    with open(folder / JOURNAL, "a") as journal:
        def record(index, outcome):
            row = _row(todo[index], outcome)
            journal.write(json.dumps(row, default=str) + "\n")
            journal.flush()
            done[row["variant_id"]] = row
            if progress is not None:
                progress.advance(outcome)

        if todo:
            run_variants(todo, folder / RUNS, executor=executor or LocalPool(), keep=keep, measure=sweep_figures,
                         on_outcome=record)
    table = _results_table([done[i] for i in ids], columns).to_arrow()
    declared = {"parameters": columns, "figures_from": "run summary", "xmargin": __version__}
    buffer = folder / f".{RESULTS}.tmp"
    pq.write_table(table.replace_schema_metadata({b"xmargin": json.dumps(declared).encode()}), buffer)
    os.replace(buffer, folder / RESULTS)
    return open_sweep(folder)


def _write_atomic(path: Path, data: bytes) -> None:
    buffer = path.with_name(f".{path.name}.tmp")
    buffer.write_bytes(data)
    os.replace(buffer, path)


def open_sweep(path) -> Sweep:
    """Open a sweep folder: `open_sweep(DIR).results.collect()` (also `pl.scan_parquet(DIR/"sweep.parquet")`)."""
    path = Path(path)
    if not (path / PLAN).is_file():
        raise RunError(f"{path}: not a sweep folder (no {PLAN}).")
    plan = json.loads((path / PLAN).read_text())
    if not (path / RESULTS).is_file():
        finished = len(_journal(path))
        raise RunError(f"{path}: the sweep has not finished ({finished} of {len(plan['variants'])} variants done); "
                       "finish it with `xmargin sweep CONFIG ... --out DIR --resume` (the same dimensions).")
    return Sweep(path=path, results=pl.scan_parquet(path / RESULTS), plan=plan)
