"""Capital per exchange: the least starting collateral with which a strategy survives, proven by re-runs.

For every exchange and collateral asset of a config, the least starting amount with which the same
strategy on the same data

  - has no order rejected for lack of margin or balance, or for a position larger than the venue takes
    (which no collateral lets through), and no transfer rejected for lack of free collateral: a
    rejected leg is not surviving, the book would not be the one intended;
  - trades on every exchange where the run with ample collateral trades: a strategy that sizes by its
    collateral and, with too little, trades nothing there is not running the same book;
  - has no liquidation;
  - optionally never reaches a margin ratio `level` (`warning`: the config's first warning
    threshold; a number in (0, 1]; default `liquidation`, i.e. 1);

in the history and, with stress, in every scenario of the config's [[stress]] tables (the worst case).
Exchanges are solved jointly: every run starts every exchange at its candidate amount, so transfers
between silos play out as they would.

Method
  1. reference: one run with ample collateral (the config's amounts x `ample`, default 10);
  2. estimate from it, per cross pool: max over the snapshots of need - (margin balance - starting
     amount), need = maintenance / level (and at a fill, at least the initial margin), i.e. what the
     pool needed at its worst moment given the flow-adjusted path of the reference run (fees, funding,
     transfers and realised PnL included). Snapshots are bar closes: a wick inside a bar can need
     more, which the re-runs find (their margin checks follow the intrabar path);
  3. proof by re-runs, one (exchange, asset) amount at a time with the others held: a run at the
     amount survives and a run at (1 - tolerance) x the amount fails; otherwise bisect between 0 and
     the amount on re-runs (strategies that size by their collateral make survival non-monotone:
     each amount is also tried at 0 and at half, and a survivor below the boundary is reported as a
     boundary that is not unique);
  4. final proofs: one run at all the amounts survives, one at (1 - tolerance) x all the amounts fails.

When a run with no collateral at all survives (the strategy sizes by its collateral and trades
nothing, or never needs margin), the configured amounts are tried at 1, 1/2, 1/4, 1/8 and 1/16: if
every one survives too the answer says so (the strategy never liquidates at any collateral); if one
fails, the least surviving amount above it is searched as above and reported as not unique.

Outputs under `<out>/<capital-id>/` (named `<capital-id>.partial/` until the answer is written):
capital.arrow (one row per exchange and asset), capital.json (the rows, every trial with its amounts
and outcome, notes) and every trial run folder (`proof-survives`, `proof-fails`,
`proof-fails-<exchange>-<asset>`, `trial-NN-...`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import attrs
import polars as pl

from xmargin.errors import ConfigError
from xmargin.ledger.decide import BEYOND_LARGEST
from xmargin.output.writer import check_run_id
from xmargin.margin.collateral import STABLECOINS
from xmargin.margin.modes import MODES

GRID = (1.0, 0.5, 0.25, 0.125, 0.0625)  # x the configured amounts, tried when a run with none survives
MARGIN_REJECTION = "insufficient"  # OrderRejected reasons about money: margin, balance at fill
TRANSFER_REJECTION = "exceeds the free collateral"


@attrs.frozen
class Outcome:
    """One trial: the amounts, whether every scenario survived, and the first failure."""

    label: str
    amounts: dict
    survives: bool
    cause: dict | None
    runs: tuple
    fills: int
    fills_by_exchange: dict = attrs.field(factory=dict)


@attrs.frozen
class CapitalResult:
    table: pl.DataFrame
    report: dict
    folder: Path


# ------------------------------------------------------------------------------------------ level
def level_ratio(level, thresholds) -> float:
    """'liquidation' -> 1.0, 'warning' -> the first warning threshold, a number in (0, 1] -> itself."""
    if level in (None, "liquidation"):
        return 1.0
    if level == "warning":
        if not thresholds:
            raise ConfigError("capital --level warning: the config has no run.warning_thresholds.")
        return float(thresholds[0])
    try:
        ratio = float(level)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"capital --level {level!r}: use liquidation, warning or a margin ratio in (0, 1].") \
            from exc
    if not 0 < ratio <= 1:
        raise ConfigError(f"capital --level {level!r}: a margin ratio must be in (0, 1] (1 = liquidation).")
    return ratio


# ------------------------------------------------------------------------------------------ one run
def _with_amounts(config, amounts: dict):
    """The config with starting collateral `amounts` ({(exchange, asset): amount}), raw mapping too."""
    exchanges = dict(config.exchanges)
    raw = json.loads(json.dumps(config.raw, default=str)) if config.raw else {}
    for (exchange, asset), amount in amounts.items():
        entry = exchanges[exchange]
        exchanges[exchange] = attrs.evolve(entry, collateral={**entry.collateral, asset: float(amount)})
        raw.setdefault("exchanges", {}).setdefault(exchange, {}).setdefault("collateral", {})[asset] = float(amount)
    return attrs.evolve(config, exchanges=exchanges, raw=raw)


def _rerun(config, amounts: dict, folder: Path, run_id: str, shocks=(), manifest: dict | None = None):
    """One re-run of `config` at starting collateral `amounts`, through the variants runner that
    compare, stress and sweep share (xmargin.analysis.variants); its outcome has `path` and `summary`."""
    from xmargin.analysis.variants import Variant, run_variants

    variant = Variant(run_id, _with_amounts(config, amounts), tuple(shocks),
                      extra_manifest={"capital": manifest or {}})
    return run_variants([variant], folder, keep="all", errors="raise")[0]


def failure(path, ratio: float) -> dict | None:
    """The first failure of a run folder: a liquidation, a margin rejection (order or transfer) or,
    when `ratio` < 1, the first moment a margin ratio reached it. None: it survived."""
    from xmargin.output.results import open_run

    run = open_run(path)
    events = run.events.collect()
    reason = pl.col("reason").fill_null("")
    bad = events.filter(
        (pl.col("type") == "PositionLiquidated")
        | ((pl.col("type") == "OrderRejected")
           & (reason.str.contains(MARGIN_REJECTION) | reason.str.contains(BEYOND_LARGEST, literal=True)))
        | ((pl.col("type") == "TransferRejected") & reason.str.contains(TRANSFER_REJECTION)))
    found = []
    if bad.height:
        first = bad.sort("seq").row(0, named=True)
        kind = {"PositionLiquidated": "liquidation", "OrderRejected": "order rejected",
                "TransferRejected": "transfer rejected"}[first["type"]]
        detail = first["instrument"] or ""
        if first["type"] != "PositionLiquidated":
            detail = f"{detail} {first['reason']}".strip()
        else:
            detail = f"{detail} ({'isolated' if first['isolated'] else 'cross'}) at {first['price']:,.2f}"
        found.append({"ts": first["ts"], "exchange": first["exchange"], "kind": kind, "detail": detail})
    if ratio < 1.0:
        equity = run.equity.collect().filter(pl.col("maintenance_margin") > 0)
        positions = run.positions.collect().filter(pl.col("margin_mode") == "isolated")
        isolated_equity = pl.col("isolated_margin") + pl.col("unrealized_pnl")
        moments = pl.concat([
            equity.select("ts", "exchange", pl.col("asset").alias("unit"), "margin_ratio"),
            positions.select("ts", "exchange", pl.col("instrument").alias("unit"),
                             pl.when(isolated_equity > 0).then(pl.col("maintenance_margin") / isolated_equity)
                             .otherwise(1.0).alias("margin_ratio")),
            events.filter((pl.col("type") == "MarginWarningRaised") & (pl.col("level") > 0))
            .select("ts", "exchange", pl.col("instrument").alias("unit"), "margin_ratio"),
        ]).filter(pl.col("margin_ratio") >= ratio - 1e-12).sort("ts")
        if moments.height:
            first = moments.row(0, named=True)
            found.append({"ts": first["ts"], "exchange": first["exchange"], "kind": f"margin ratio >= {ratio:g}",
                          "detail": f"{first['unit']} at {first['margin_ratio']:.4f}"})
    if not found:
        return None
    first = min(found, key=lambda f: f["ts"])
    return dict(first, ts=str(first["ts"]))


# ------------------------------------------------------------------------------------------ estimate
def estimate(path, starting: dict, ratio: float) -> dict:
    """Per (exchange, asset): the least starting amount the reference run's pools needed, from
    their maintenance, initial margin and margin balance path (see the module docstring)."""
    from xmargin.output.results import open_run

    run = open_run(path)
    equity = run.equity.collect()
    collateral = run.collateral.collect()
    fills = run.events.filter(pl.col("type") == "OrderFilled").select("exchange", "ts").collect()
    out = {}
    for exchange in sorted({e for e, _ in starting}):
        assets = [a for e, a in starting if e == exchange]
        pools = equity.filter(pl.col("exchange") == exchange)
        for pool in pools["asset"].unique().to_list():
            rows = pools.filter(pl.col("asset") == pool)
            if pool == "USD":  # multi-asset: one pool for every asset of the exchange
                members = assets
            else:
                members = [pool] if pool in assets else []
            if not members:
                continue
            start_values = {}
            for asset in members:
                first = collateral.filter((pl.col("exchange") == exchange) & (pl.col("asset") == asset)
                                          & (pl.col("reason") == "start"))
                start_values[asset] = (float(first["collateral_value"][0]) if first.height
                                       else starting[(exchange, asset)])
            start = sum(start_values.values()) if pool == "USD" else starting[(exchange, pool)]
            # initial margin binds only where an order filled (snapshots stamped with a fill's time)
            filled = fills.filter(pl.col("exchange") == exchange)["ts"]
            required = pl.when(pl.col("ts").is_in(filled.implode()) & (pl.col("reason") == "event")).then(
                pl.max_horizontal(pl.col("maintenance_margin") / ratio, pl.col("initial_margin"))).otherwise(
                pl.col("maintenance_margin") / ratio)
            need = rows.select((required - (pl.col("margin_balance") - start)).max()).item()
            need = max(float(need or 0.0), 0.0)
            total_value = sum(start_values.values())
            for asset in members:
                share = start_values[asset] / total_value if total_value > 0 else 1.0 / len(members)
                unit_value = start_values[asset] / starting[(exchange, asset)] if starting[(exchange, asset)] else 1.0
                out[(exchange, asset)] = need * share / (unit_value or 1.0)
    for key in starting:
        out.setdefault(key, 0.0)
    return out


# ------------------------------------------------------------------------------------------ search
class _Search:
    """Runs trials (every scenario per trial) and keeps their outcomes."""

    def __init__(self, config, folder: Path, scenarios: list, ratio: float, progress: bool):
        self.config, self.folder, self.scenarios, self.ratio = config, folder, scenarios, ratio
        self.trials: list[Outcome] = []
        self.progress = progress
        self.independent = False  # set when the reference run moved no collateral between exchanges
        # Exchanges the run with ample collateral trades on, with its fill counts there. A trial that trades
        # nothing on one of them does not "trade as it does with ample collateral": it fails.
        self.trading: dict = {}

    def run(self, amounts: dict, label: str) -> Outcome:
        runs, cause, fills, by_exchange = [], None, 0, {}
        for name, shocks in self.scenarios:
            run_id = label if name == "history" else f"{label}-{name}"
            completed = _rerun(self.config, amounts, self.folder, run_id, shocks,
                               {"trial": label, "scenario": name,
                                "amounts": {f"{e}.{a}": v for (e, a), v in amounts.items()}})
            runs.append(completed.path.name)
            fills += int(completed.summary["total"]["fills"])
            for exchange, figures in completed.summary.get("exchanges", {}).items():
                by_exchange[exchange] = by_exchange.get(exchange, 0) + int(figures.get("fills", 0))
            found = failure(completed.path, self.ratio) or self._idle(completed)
            if found:
                cause = dict(found, scenario=name)
                break  # one failing scenario is enough
        outcome = Outcome(label, dict(amounts), cause is None, cause, tuple(runs), fills, by_exchange)
        self.trials.append(outcome)
        if self.progress:
            import sys

            print(f"  {label}: {'survives' if outcome.survives else 'fails: ' + _cause_text(cause)}", file=sys.stderr)
        return outcome

    def label(self, text: str) -> str:
        return f"trial-{len(self.trials) + 1:02d}-{text}"

    def _idle(self, completed) -> dict | None:
        """A trial that trades nothing on an exchange where the ample run trades: not the same book."""
        exchanges = completed.summary.get("exchanges", {})
        for exchange, expected in sorted(self.trading.items()):
            if int(exchanges.get(exchange, {}).get("fills", 0)) == 0:
                return {"ts": str(completed.summary.get("start", "")), "exchange": exchange, "kind": "no trades",
                        "detail": f"the strategy trades nothing there with this collateral (with ample "
                                  f"collateral: {expected} fills): it sizes by its collateral"}
        return None


def _step(key) -> float:
    """The smallest amount step of an asset: a cent of a stablecoin, 1e-8 of a coin."""
    return 0.01 if key[1] in STABLECOINS else 1e-8


def _up(value: float, key) -> float:
    """`value` rounded up to the asset's step (0 stays 0)."""
    step = _step(key)
    return round(math.ceil(value / step - 1e-6) * step, 8) if value > 0 else 0.0


def _cause_text(cause: dict | None) -> str:
    if not cause:
        return ""
    where = f" [{cause['scenario']}]" if cause.get("scenario") not in (None, "history") else ""
    return f"{cause['kind']} on {cause['exchange']} at {cause['ts']}: {cause['detail']}{where}"


def _name(key) -> str:
    return f"{key[0]}-{key[1]}"


def solve(search: _Search, starting: dict, tolerance: float, ample: float) -> dict:
    """The joint least amounts (see the module docstring); returns the search state per amount."""
    keys = list(starting)
    reference = search.run({k: v * ample for k, v in starting.items()}, search.label(f"ample-x{ample:g}"))
    state = {"reference": reference, "per_key": {k: {"unique": True, "notes": []} for k in keys}}
    if not reference.survives:
        bigger = search.run({k: v * ample * 10 for k, v in starting.items()}, search.label(f"ample-x{ample * 10:g}"))
        if not bigger.survives:
            zero = [f"{k[0]} {k[1]}" for k, v in starting.items() if not v]
            state["unsolved"] = (f"fails even with {ample * 10:g}x the configured collateral: "
                                 f"{_cause_text(bigger.cause)}"
                                 + (f" ({', '.join(zero)} configured at 0 stay 0 in every trial: give the amount you "
                                    "would start with)" if zero else ""))
            return state
        reference = bigger
        state["reference"] = bigger
    search.trading = {exchange: n for exchange, n in reference.fills_by_exchange.items() if n > 0}
    nothing = search.run({k: 0.0 for k in keys}, search.label("zero"))
    if nothing.survives:  # sizes by its collateral (or needs none): does it survive at every amount?
        grid = [search.run({k: _up(v * f, k) for k, v in starting.items()}, search.label(f"grid-x{f:g}"))
                for f in GRID]
        failed = [t for t in grid if not t.survives]
        if not failed:
            state["never"] = nothing
            state["grid"] = [0.0, *sorted(GRID), ample]
            state["amounts"] = {k: 0.0 for k in keys}
            return state
        for info in state["per_key"].values():
            info["unique"] = False
            info["notes"].append(f"also survives with no collateral at all ({nothing.fills} fills): the strategy "
                                 "sizes by its collateral; the amount reported is the least above the largest "
                                 "failing amount tried")
        above = [t for t in grid if t.survives and all(t.amounts[k] >= failed[0].amounts[k] for k in keys)]
        start = min(above, key=lambda t: sum(t.amounts.values())) if above else reference
        amounts = dict(start.amounts)
        for key in keys:
            amounts = _lower(search, amounts, key, tolerance, state["per_key"][key])
        state["amounts"] = amounts
        return state
    reference_path = search.folder / reference.runs[0]
    from xmargin.output.results import open_run

    search.independent = not open_run(reference_path).transfers.collect().height
    guess = estimate(reference_path, dict(reference.amounts), search.ratio)
    amounts = {k: _up(guess[k] * (1 + tolerance), k) for k in keys}
    trial = search.run(amounts, search.label("estimate"))
    for factor in (1.15, 1.4, 2.0, 3.0, 5.0):  # raise the exchange that failed until the run survives
        if trial.survives:
            break
        failing = trial.cause["exchange"]
        amounts = {k: (_up(max(guess[k], 100 * _step(k)) * factor * (1 + tolerance), k) if k[0] == failing else v)
                   for k, v in amounts.items()}
        trial = search.run(amounts, search.label(f"raise-{failing}-x{factor:g}"))
    if not trial.survives:
        amounts = dict(reference.amounts)
    for key in keys:
        amounts = _lower(search, amounts, key, tolerance, state["per_key"][key])
    state["amounts"] = amounts
    return state


def _known_failure(search: _Search, amounts: dict, key) -> float:
    """The largest amount of `key` at which a trial failed with every other amount at least as large as
    now (when the reference run made no transfer, only the failures on `key`'s own exchange, with its
    other assets at least as large, count: the silos do not touch). Below it the run fails too when
    survival is monotone; the proofs check it."""
    best = 0.0
    for trial in search.trials:
        if trial.survives or trial.amounts[key] >= amounts[key]:
            continue
        others = [k for k in amounts if k != key and (not search.independent or k[0] == key[0])]
        if search.independent and trial.cause["exchange"] != key[0]:
            continue
        if all(trial.amounts[k] >= amounts[k] - 1e-9 for k in others):
            best = max(best, trial.amounts[key])
    return best


def _lower(search: _Search, amounts: dict, key, tolerance: float, info: dict) -> dict:
    """Lower amounts[key] (others held) to the least amount that survives: a run just below it fails."""
    current = amounts[key]
    if current <= 0:
        return amounts
    below = search.run({**amounts, key: _up(current * (1 - tolerance), key)}, search.label(f"{_name(key)}-below"))
    if not below.survives:
        return amounts
    low = _known_failure(search, amounts, key)
    if low == 0.0:
        zero = search.run({**amounts, key: 0.0}, search.label(f"{_name(key)}-zero"))
        if zero.survives:
            info["notes"].append("not needed: the run survives with none of it")
            return {**amounts, key: 0.0}
    high = below.amounts[key]
    while high - low > max(tolerance * high, _step(key)):  # then (1 - tolerance) x high <= low fails
        middle = _up((low + high) / 2, key)
        if middle >= high:
            break
        trial = search.run({**amounts, key: middle}, search.label(f"{_name(key)}-bisect"))
        if trial.survives:
            high = middle
        else:
            low = middle
    return {**amounts, key: high}


def _prove(search: _Search, amounts: dict, tolerance: float, state: dict) -> tuple[dict, dict]:
    """Per amount, a run with it alone at (1 - tolerance) x must fail; where it survives the amount is
    lowered again (up to 3 rounds). Returns the amounts and the failing proof trial per amount."""
    proofs = {}
    for round_ in range(3):
        survivors = []
        for key, amount in amounts.items():
            if amount <= 0:
                proofs[key] = None
                continue
            label = f"proof-fails-{_name(key)}" + (f"-{round_ + 1}" if round_ else "")
            proofs[key] = search.run({**amounts, key: _up(amount * (1 - tolerance), key)}, label)
            if proofs[key].survives:
                survivors.append(key)
        if not survivors:
            break
        for key in survivors:
            amounts = _lower(search, amounts, key, tolerance, state["per_key"][key])
    return amounts, proofs


def _uniqueness(search: _Search, amounts: dict, state: dict) -> None:
    """One run per amount at half of it (others held): a survivor there means the boundary is not unique."""
    for key, amount in amounts.items():
        if amount <= 0:
            continue
        half = search.run({**amounts, key: _up(amount / 2, key)}, search.label(f"{_name(key)}-half"))
        if half.survives:
            state["per_key"][key]["unique"] = False
            state["per_key"][key]["notes"].append(
                f"also survives at {half.amounts[key]:,.2f} (half), though not just below {amount:,.2f}: survival "
                "is not monotone in this amount (the strategy sizes by its collateral); the boundary is not "
                "unique and the amount reported is the least found from above")


# ------------------------------------------------------------------------------------------ API
def capital(config, level="liquidation", tolerance: float = 0.01, stress=False, out=None,
            capital_id: str | None = None, ample: float = 10.0, progress: bool = False) -> CapitalResult:
    """The least starting collateral per exchange and asset (see the module docstring). `config`: a
    RunConfig or a path; `stress`: False, True (the config's [[stress]] scenarios) or a mapping
    name -> shocks. Writes `<out>/<capital-id>/` and returns (table, report, folder)."""
    from xmargin.analysis.compare import as_config
    from xmargin.output.writer import run_id_for
    from xmargin.analysis.stress import scenarios_from_config
    from xmargin.output.eventlog import write_ipc

    config = as_config(config)
    if not 0 < tolerance < 0.5:
        raise ConfigError(f"capital --tolerance {tolerance!r}: a fraction in (0, 0.5), e.g. 0.01 for 1 %.")
    if not ample > 1:
        raise ConfigError(f"capital: ample = {ample!r} must be > 1 (a multiple of the configured collateral).")
    ratio = level_ratio(level, config.warning_thresholds)
    scenarios = [("history", ())]
    if stress is True:
        found = scenarios_from_config(config.raw)
        if not found:
            raise ConfigError("capital --stress: the config has no [[stress]] tables.")
        scenarios += list(found.items())
    elif stress:
        scenarios += list(dict(stress).items())
    starting = {(e, a): float(v) for e, entry in config.exchanges.items() for a, v in entry.collateral.items()}
    if not any(starting.values()):
        raise ConfigError("capital: every configured collateral amount is 0; give the amounts you would start "
                          "with (they set the assets and the ample reference, x10).")
    root = Path(out or config.out)
    capital_id = check_run_id(capital_id, "--id") if capital_id else run_id_for(config, root, "capital")
    final = root / capital_id
    if final.exists():
        raise ConfigError(f"capital: {final} already exists; choose another --id or remove it.")
    folder = root / f"{capital_id}.partial"  # renamed when the answer is written: an interrupted search
    folder.mkdir(parents=True, exist_ok=True)  # never leaves a folder that looks finished
    search = _Search(config, folder, scenarios, ratio, progress)
    state = solve(search, starting, tolerance, ample)
    level_text = "liquidation" if ratio == 1.0 else f"margin ratio {ratio:g}"
    notes = []
    rows = []
    proof_survives = proof_fails = None
    if "unsolved" in state:
        notes.append(state["unsolved"])
    elif "never" in state:
        nothing = state["never"]
        tried = ", ".join(f"{f:g}x" for f in state["grid"])
        notes.append("the strategy never liquidates at any collateral: it survives with none at all "
                     f"({nothing.fills} fills{': it trades nothing' if nothing.fills == 0 else ''}) and at every "
                     f"amount tried ({tried} the configured amounts); it sizes by its collateral or needs no margin")
    else:
        for exchange, entry in config.exchanges.items():
            if not MODES[entry.margin_mode].pools_are_assets and len(entry.collateral) > 1:  # one pool
                for asset in entry.collateral:
                    state["per_key"][(exchange, asset)]["unique"] = False
                    state["per_key"][(exchange, asset)]["notes"].append(
                        f"{entry.margin_mode}: {', '.join(entry.collateral)} back one pool on {exchange}; other mixes "
                        "survive too (this is the one found lowering them in turn)")
        amounts, lowers = _prove(search, state["amounts"], tolerance, state)
        _uniqueness(search, amounts, state)
        proof_survives = search.run(amounts, "proof-survives")
        if not proof_survives.survives:  # cannot happen for a deterministic run; say so if it does
            notes.append(f"the run at the amounts failed on re-run: {_cause_text(proof_survives.cause)}")
        proof_fails = search.run({k: _up(v * (1 - tolerance), k) for k, v in amounts.items()}, "proof-fails")
        if proof_fails.survives:
            notes.append(f"a run at (1 - {tolerance:g}) x every amount also survives: the boundary is not unique")
        for key in amounts:
            info = state["per_key"][key]
            lower = lowers.get(key)
            if lower is not None and lower.survives:
                info["unique"] = False
                info["notes"].append(f"survives at (1 - {tolerance:g}) x this amount: not proven the least")
            cause = lower.cause if lower is not None and not lower.survives else None
            rows.append({
                "exchange": key[0], "asset": key[1], "required_collateral": amounts[key],
                "configured_collateral": starting[key], "level": level_text, "level_ratio": ratio,
                "binding_ts": cause["ts"] if cause else None,
                "binding_cause": _cause_text(cause) if cause else None,
                "binding_exchange": cause["exchange"] if cause else None,
                "proof_survives_run_id": proof_survives.runs[0],
                "proof_fails_run_id": lower.runs[0] if lower is not None else None,
                "proof_fails_all_run_id": proof_fails.runs[0],
                "unique": bool(info["unique"] and not proof_fails.survives),
                "note": "; ".join(info["notes"]) or None})
    if not rows:
        for key in starting:
            rows.append({"exchange": key[0], "asset": key[1],
                         "required_collateral": 0.0 if "never" in state else None,
                         "configured_collateral": starting[key], "level": level_text, "level_ratio": ratio,
                         "binding_ts": None, "binding_cause": None, "binding_exchange": None,
                         "proof_survives_run_id": state["never"].runs[0] if "never" in state else None,
                         "proof_fails_run_id": None, "proof_fails_all_run_id": None, "unique": True,
                         "note": notes[0]})
    schema = {"exchange": pl.String, "asset": pl.String, "required_collateral": pl.Float64,
              "configured_collateral": pl.Float64, "level": pl.String, "level_ratio": pl.Float64,
              "binding_ts": pl.String, "binding_cause": pl.String, "binding_exchange": pl.String,
              "proof_survives_run_id": pl.String, "proof_fails_run_id": pl.String, "proof_fails_all_run_id": pl.String,
              "unique": pl.Boolean, "note": pl.String}
    table = pl.DataFrame(rows, schema=schema)
    report = {
        "id": capital_id, "level": level_text, "level_ratio": ratio, "tolerance": tolerance, "ample": ample,
        "scenarios": [name for name, _ in scenarios], "rows": table.to_dicts(), "notes": notes,
        "never_liquidates": "never" in state,
        "proof": {"survives": _trial_json(proof_survives), "fails": _trial_json(proof_fails)},
        "trials": [_trial_json(t) for t in search.trials]}
    write_ipc(table.to_arrow(), folder / "capital.arrow")
    (folder / "capital.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    folder.rename(final)
    return CapitalResult(table=table, report=report, folder=final)


def _trial_json(trial: Outcome | None) -> dict | None:
    if trial is None:
        return None
    return {"label": trial.label, "amounts": {f"{e}.{a}": v for (e, a), v in trial.amounts.items()},
            "survives": trial.survives, "cause": trial.cause, "runs": list(trial.runs), "fills": trial.fills}


def format_capital(result: CapitalResult) -> str:
    """The printed answer: one line per exchange and asset, then the proof and the notes."""
    report, table = result.report, result.table
    lines = [f"  capital to survive ({report['level']}; scenarios: {', '.join(report['scenarios'])}; "
             f"tolerance {report['tolerance'] * 100:g} %)",
             f"  {'exchange':<14} {'asset':<6} {'required':>14} {'configured':>14}  binding"]
    for row in table.iter_rows(named=True):
        digits = ",.2f" if row["asset"] in STABLECOINS else ",.8f"
        required = "n/a" if row["required_collateral"] is None else format(row["required_collateral"], digits)
        configured = format(row["configured_collateral"], digits)
        lines.append(f"  {row['exchange']:<14} {row['asset']:<6} {required:>14} {configured:>14}"
                     f"  {row['binding_cause'] or '-'}")
    proof = report["proof"]
    if proof["survives"]:
        survives = proof["survives"]
        lines.append(f"  proof: at these amounts {', '.join(survives['runs'])} "
                     + (("survives (no liquidation, no margin rejection"
                         + (f", margin ratio below {report['level_ratio']:g}" if report["level_ratio"] < 1 else "")
                         + ")") if survives["survives"] else "FAILS"))
        fails = proof["fails"]
        lines.append(f"  proof: at (1 - {report['tolerance']:g}) x these amounts {', '.join(fails['runs'])} "
                     + (f"fails: {_cause_text(fails['cause'])}" if not fails["survives"] else "ALSO SURVIVES"))
        for row in table.iter_rows(named=True):
            if row["proof_fails_run_id"]:
                lines.append(f"  proof: {row['exchange']} {row['asset']} alone at (1 - {report['tolerance']:g}) x: "
                             f"{row['proof_fails_run_id']} {'fails' if row['binding_cause'] else 'SURVIVES'}")
    for row in table.iter_rows(named=True):
        if row["note"] and row["note"] not in report["notes"]:
            lines.append(f"  note ({row['exchange']} {row['asset']}): {row['note']}")
    for note in report["notes"]:
        lines.append(f"  note: {note}")
    lines.append(f"  outputs: {result.folder}  (capital.arrow, capital.json, {len(report['trials'])} trial run "
                 "folders)")
    return "\n".join(lines)
