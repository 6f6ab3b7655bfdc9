"""A rule file from venue metadata: the dumps' brackets on top of a base rule set's other parts.

Leverage tiers come from the dumps (`xmargin.venues.metadata`); fees, funding, liquidation,
collateral, margin modes and the default brackets come from a base rule set (the built-in one for
the exchange unless told otherwise), whose sources are kept. The file is dated (`as_of`: the date
the user gives, else the date the dump carries) and names the files it was made from with their
sha256. Maintenance amounts the venue does not publish follow the bracket recurrence
`amount_n = floor_n x (rate_n - rate_{n-1}) + amount_{n-1}` (maintenance margin continuous in notional).
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import date
from pathlib import Path

import attrs

from xmargin.errors import RulesError
from xmargin.venues.rules.ruleset import DATA_DIR, parse_rules

BASE_FOR_EXCHANGE = {"binance": "binance-usdm", "bybit": "bybit-linear", "okx": "okx-swap",
                     "hyperliquid": "hyperliquid"}
RECURRENCE_TOLERANCE = 1e-6  # relative, as tests/test_rules_conformance.py


@attrs.frozen
class ImportedRules:
    """The rule file as a mapping, and what the user should read about it (skipped symbols, conversions)."""

    data: dict
    notes: tuple[str, ...]

    @property
    def symbols(self) -> int:
        return len(self.data["brackets"])


def base_rule_data(name_or_path: str) -> dict:
    """The JSON mapping of a built-in rule set (by name) or of a rule file (by path)."""
    builtin = DATA_DIR / f"{name_or_path}.json"
    path = builtin if builtin.is_file() else Path(name_or_path)
    if not path.is_file():
        raise RulesError(f"--base {name_or_path!r}: neither a built-in rule set nor a file.")
    return json.loads(path.read_text())


def _brackets(native_id: str, tiers) -> list[dict]:
    """Rule-file brackets of one symbol; RulesError naming the symbol when they break the format's rules."""
    out, amount, previous = [], 0.0, None
    for n, tier in enumerate(tiers):
        where = f"{native_id} tier {n + 1}"
        if n == 0 and tier.floor != 0:
            raise RulesError(f"{where}: starts at {tier.floor:g}, not 0")
        if previous is not None:
            if tier.floor != previous.cap:
                raise RulesError(f"{where}: floor {tier.floor:g} is not the previous cap {previous.cap:g}")
            if not tier.maintenance_margin_rate > previous.maintenance_margin_rate:
                raise RulesError(f"{where}: maintenance rate {tier.maintenance_margin_rate:g} does not rise above "
                                 f"{previous.maintenance_margin_rate:g}")
            if tier.max_leverage > previous.max_leverage:
                raise RulesError(f"{where}: max leverage {tier.max_leverage:g} rises above {previous.max_leverage:g}")
            amount = tier.floor * (tier.maintenance_margin_rate - previous.maintenance_margin_rate) + amount
        if not (0 < tier.maintenance_margin_rate < 1 / tier.max_leverage):
            raise RulesError(f"{where}: need 0 < maintenance rate {tier.maintenance_margin_rate:g} < 1 / max "
                             f"leverage {tier.max_leverage:g}")
        given = tier.maintenance_amount
        if given is not None and not math.isclose(given, amount, rel_tol=RECURRENCE_TOLERANCE, abs_tol=1e-6):
            raise RulesError(f"{where}: published maintenance amount {given:g} differs from the recurrence "
                             f"{amount:g}")
        out.append({"notional_floor": tier.floor, "notional_cap": None if math.isinf(tier.cap) else tier.cap,
                    "max_leverage": tier.max_leverage, "maintenance_margin_rate": tier.maintenance_margin_rate,
                    "maintenance_amount": amount if given is None else given})
        previous = tier
    return out


def _contract_table(native_id: str, tiers, contract_value: float, dated: str, source: str) -> dict:
    """A rule file's contract-counted table (`{"unit": "contracts", ...}`) of one symbol, after the same
    checks as notional brackets (contiguous, rates rising, leverage not rising, rate < 1 / leverage)."""
    _brackets(native_id, tiers)
    return {"unit": "contracts", "contract_value": contract_value, "as_of": dated, "source": source,
            "tiers": [{"max_contracts": None if math.isinf(t.cap) else t.cap, "max_leverage": t.max_leverage,
                       "maintenance_margin_rate": t.maintenance_margin_rate} for t in tiers]}


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def rule_file_from(metadata, files, *, exchange: str, name: str, base: str | None = None,
                   as_of: str | None = None, source: str = "", reference_prices: dict | None = None,
                   contracts: bool = False) -> ImportedRules:
    """Assemble (and check with the rule-file parser) a rule file from `metadata` read out of `files`.

    `contracts`: tiers the venue counts in contracts (OKX position tiers) are written in that form
    (`unit = "contracts"` with the instrument's contract value: the tier follows the position's size,
    at any price) instead of being turned into notional at `reference_prices`.

    A symbol whose tiers break the format (gaps, falling rates, rising leverage, a published amount off
    the recurrence) is left out with a note naming it; if none is left, RulesError."""
    base = base or BASE_FOR_EXCHANGE.get(exchange)
    if base is None:
        raise RulesError(f"--exchange {exchange}: no built-in rule set to take fees, funding and liquidation "
                         f"from. Fix: pass --base with a rule set name ({', '.join(BASE_FOR_EXCHANGE.values())}) "
                         "or a rule file.")
    dated = as_of or metadata.as_of
    if dated is None:
        raise RulesError("the dumps carry no date. Fix: pass --as-of YYYY-MM-DD (the day they were downloaded).")
    try:
        date.fromisoformat(dated)
    except ValueError:
        raise RulesError(f"--as-of {dated!r}: not a date; give YYYY-MM-DD.") from None
    brackets, notes = {}, []
    if contracts:
        listed_source = f"xmargin rules import of {', '.join(Path(f).name for f in files)}" + (
            f"; {source}" if source else "")
        for native_id, value in metadata.contract_values().items():
            try:
                brackets[native_id] = _contract_table(native_id, metadata.tiers[native_id], value, dated,
                                                      listed_source)
            except RulesError as exc:
                notes.append(f"{native_id}: left out ({exc})")
        metadata = attrs.evolve(metadata, tiers={k: v for k, v in metadata.tiers.items()
                                                 if all(t.unit == "notional" for t in v)})
    tiers, resolved_notes = metadata.resolve(reference_prices)
    notes.extend(resolved_notes)
    for native_id, rows in tiers.items():
        try:
            brackets[native_id] = _brackets(native_id, rows)
        except RulesError as exc:
            notes.append(f"{native_id}: left out ({exc})")
    if not brackets:
        raise RulesError("no leverage tiers could be written from these files" + (f": {notes[-1]}" if notes else
                         " (they hold market filters only; use --dataset to write those)") + ".")
    data = base_rule_data(base)
    funding = dict(data["funding"])
    overrides = dict(funding.get("interval_overrides", {}))
    for native_id, market in sorted(metadata.markets.items()):
        hours = market.funding_interval_hours
        if hours and hours != float(funding["interval_hours"]):
            overrides[native_id] = hours
    funding["interval_overrides"] = overrides
    listed = [f"{Path(f).name} (sha256 {_sha256(f)[:16]})" for f in files]
    shapes = sorted(set(metadata.shapes))
    out = {
        "name": name,
        "exchange": exchange,
        "description": (f"{exchange}: leverage brackets of {len(brackets)} symbols imported from "
                        f"{', '.join(shapes)} data of {dated}; fees, funding, liquidation, collateral and the "
                        f"default brackets from the rule set {data['name']} (as of {data['as_of']})."),
        "as_of": dated,
        "sources": [f"xmargin rules import of {', '.join(listed)}: {', '.join(shapes)}"
                    + (f"; {source}" if source else ""),
                    *[f"(base {data['name']}) {s}" for s in data["sources"]]],
        "not_public": [*notes, *metadata.warnings,
                       *[f"(base {data['name']}) {s}" for s in data.get("not_public", ())]],
        "imported_from": {"files": listed, "shapes": shapes, "base": data["name"], "base_as_of": data["as_of"]},
    }
    for key, value in data.items():
        if key not in out and key not in ("brackets", "funding"):
            out[key] = value
    out["funding"] = funding
    out["brackets"] = dict(sorted(brackets.items()))
    parse_rules(out, f"rules import -> {name}")  # the same checks as loading the written file
    return ImportedRules(data=out, notes=tuple(notes) + metadata.warnings)


def write_rule_file(rules: ImportedRules, out: str | Path) -> Path:
    """Write atomically (temporary file, then rename): a refused or failed write leaves nothing behind."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    partial.write_text(json.dumps(rules.data, indent=1, ensure_ascii=False) + "\n")
    partial.replace(out)
    return out
