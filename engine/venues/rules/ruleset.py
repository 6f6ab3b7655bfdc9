"""The frozen rule record for one exchange, read from a JSON data file.

A rule file records where each parameter comes from and as of when. Margin modes (`xmargin.margin.modes`)
and liquidation policies (`xmargin.margin.policies`) are generic code over any rule set: nothing here is exchange-specific logic.
"""

from __future__ import annotations

import json
import math
import re
from datetime import date, datetime
from pathlib import Path

import attrs

from xmargin._keys import check_rule_keys as check_keys
from xmargin.errors import RulesError
from xmargin.margin import policies
from xmargin.margin.brackets import Bracket, BracketTable, ContractTier, ContractTiers
from xmargin.margin.collateral import schedule_from
from xmargin.margin.modes import MODE_NAMES, MODES as _MODE_REGISTRY
from xmargin.venues.fees import MAX_FEE, MIN_MAKER_FEE
from xmargin.venues.instruments import parse_expiry
from xmargin.venues.rules.delivery import DeliveryRules, delivery_from
from xmargin.venues.rules.portfolio import PortfolioRules, portfolio_from

DATA_DIR = Path(__file__).parent / "data"
POLICIES = tuple(policies.POLICIES)  # the liquidation-policy registry's names
FILLS = ("bankruptcy", "trigger")
MODES = MODE_NAMES  # the margin-mode registry's names
FEE_RANGE = (MIN_MAKER_FEE, MAX_FEE)  # fractions of notional (0.0005 = 0.05 %); a maker rebate is negative


def _default_parameters(rules: "LiquidationRules"):
    policy = policies.POLICIES.get(rules.policy)
    return policy.parameters() if policy is not None else None


@attrs.frozen
class LiquidationRules:
    """How this exchange liquidates.

    `policy`: a registered liquidation policy (`xmargin.margin.policies`: full, partial) and its
    typed `parameters` (read from the rule file's `liquidation` table; `rules.partial_fraction`
    reads the policy's parameter of that name). `fill`: positions close at the bankruptcy price or
    at the trigger (liquidation) price. `fee_rate`: liquidation fee as a fraction of the liquidated
    notional, paid out of what is left of the position's margin (never making the balance
    negative: the insurance fund absorbs any shortfall). `maintenance_basis`: a position's
    maintenance margin on its value at the mark (Binance) or at entry (Bybit classic: isolated
    positions, linear and inverse, and cross inverse ones; see xmargin.margin.units.build_unit).
    """

    policy: str = attrs.field(validator=attrs.validators.in_(POLICIES))
    fill: str = attrs.field(validator=attrs.validators.in_(FILLS))
    fee_rate: float
    maintenance_basis: str = attrs.field(default="mark", validator=attrs.validators.in_(("mark", "entry")))
    parameters: object = attrs.field(default=attrs.Factory(_default_parameters, takes_self=True))

    def __attrs_post_init__(self):
        expected = policies.POLICIES[self.policy].parameters
        if not isinstance(self.parameters, expected):
            raise ValueError(f"parameters of policy {self.policy!r} must be a {expected.__name__}, "
                             f"got {type(self.parameters).__name__}")

    def __getattr__(self, name: str):
        """A parameter of the policy (`partial_fraction`, ...), read through `parameters`."""
        if name.startswith("_") or name == "parameters":
            raise AttributeError(name)
        try:
            return getattr(self.parameters, name)
        except AttributeError:
            raise AttributeError(f"liquidation policy {self.policy!r} has no parameter {name!r}") from None


@attrs.frozen
class AutoExchange:
    """Multi-asset auto-exchange (Binance's Multi-Assets FAQ rule): a stablecoin balance below
    `threshold_usd` (negative, USD) is brought back to zero by selling other collateral,
    `deficit / cover_ratio` worth, less `fee_rate` of what is sold."""

    threshold_usd: float = attrs.field(converter=float)
    cover_ratio: float = attrs.field(default=1.0, converter=float)
    fee_rate: float = attrs.field(default=0.0, converter=float)

    def __attrs_post_init__(self):
        if not 0 < self.cover_ratio <= 1:
            raise ValueError(f"cover_ratio = {self.cover_ratio}: must be in (0, 1]")
        if not 0 <= self.fee_rate < 1:
            raise ValueError(f"fee_rate = {self.fee_rate}: must be in [0, 1)")


@attrs.frozen
class RuleSet:
    """Everything the ledger needs to know about one exchange's rules."""

    name: str
    exchange: str
    description: str
    as_of: str
    sources: tuple[str, ...]
    not_public: tuple[str, ...]
    maker_fee: float
    taker_fee: float
    spot_maker_fee: float | None  # spot market fees (fraction of notional), apart from the derivatives' above;
    spot_taker_fee: float | None  # None: the rule file gives none (`fees.spot`)
    funding_interval_hours: float
    funding_interval_overrides: dict
    margin_modes: tuple[str, ...]
    liquidation: LiquidationRules
    default_brackets: BracketTable
    symbol_brackets: dict
    collateral_ratios: dict
    auto_exchange: AutoExchange | None = None
    delivery: DeliveryRules = DeliveryRules()  # dated futures: settlement window and fee
    portfolio: PortfolioRules | None = None  # portfolio-margin variants (None: the exchange has none here)
    fee_to_close: float = 0.0  # rate of the estimated fee to close held in maintenance margin (OKX, Bybit UTA)
    variants: tuple = ()  # RuleVariant: dated generations of the collateral tables (newest last)
    variant_name: str = ""  # which generation this record is ("": the file's own top-level tables)
    warnings: tuple = ()  # (symbol id or None: any symbol, message): doubtful but usable values of the file

    def in_force(self, start_ns: int | None, name: str | None = None) -> "RuleSet":
        """This rule set as it stood at `start_ns` (ns): the newest dated variant in force then, else
        the file's own tables; `name` picks one (the rule set's own name: the file's tables)."""
        if name is not None and name != self.name:
            chosen = next((v for v in self.variants if v.name == name), None)
            if chosen is None:
                raise RulesError(f"rules variant {name!r}: {self.name} has {[self.name, *self.variant_names]}.")
        else:
            dated = [v for v in self.variants if start_ns is not None and v.effective_from_ns <= start_ns]
            chosen = None if name is not None or not dated else max(dated, key=lambda v: v.effective_from_ns)
        if chosen is None:
            return self
        return attrs.evolve(self, variant_name=chosen.name,
                            collateral_ratios=(chosen.collateral_ratios if chosen.collateral_ratios is not None
                                               else self.collateral_ratios),
                            auto_exchange=chosen.auto_exchange if chosen.has_auto_exchange else self.auto_exchange)

    @property
    def variant_names(self) -> list[str]:
        return [v.name for v in self.variants]
    _with_fee: dict = attrs.field(factory=dict, eq=False, repr=False)  # brackets_for's cache

    def brackets_for(self, native_id: str) -> BracketTable:
        """The brackets margining an exchange symbol id (`BTCUSDT`): its published table, or for an
        unlisted dated future (`BTCUSDT_250627`) the listed delivery table of the same pair with the
        nearest expiry (Binance publishes one delivery table for all of a pair's quarterlies), else the
        default. With a `fee_to_close` rate, every bracket's maintenance rate carries it: maintenance
        margin = notional x (MMR + fee) - amount (the amounts' recurrence is unchanged), so the margin
        figures, the liquidation-price formulas and the surveillance scan all hold the fee to close."""
        table = self._published_brackets(native_id)
        if not self.fee_to_close:
            return table
        if id(table) not in self._with_fee:
            self._with_fee[id(table)] = table.with_added_rate(self.fee_to_close)
        return self._with_fee[id(table)]

    def _published_brackets(self, native_id: str) -> BracketTable:
        table = self.symbol_brackets.get(native_id)
        if table is not None:
            return table
        pair, _, suffix = native_id.partition("_")
        wanted = _delivery_date(suffix)
        listed = [(abs((day - wanted).days), s) for s in self.symbol_brackets
                  if s.startswith(pair + "_") and (day := _delivery_date(s[len(pair) + 1:])) is not None]
        if wanted is not None and listed:
            return self.symbol_brackets[min(listed)[1]]
        return self.default_brackets

    def has_symbol(self, native_id: str) -> bool:
        return native_id in self.symbol_brackets

    def funding_interval(self, native_id: str) -> float:
        return float(self.funding_interval_overrides.get(native_id, self.funding_interval_hours))


@attrs.frozen
class RuleVariant:
    """A dated generation of a rule set's collateral tables (`dated_variants` in the rule file): in
    force from `effective_from_ns`; None / `has_auto_exchange` False: that table is the file's own."""

    name: str
    effective_from_ns: int
    source: str
    collateral_ratios: dict | None
    auto_exchange: object
    has_auto_exchange: bool


def _variants(entries, where: str) -> tuple:
    """Parse `dated_variants`: each {name, effective_from, source, collateral_ratios?, auto_exchange?}."""
    out = []
    for n, entry in enumerate(entries or ()):
        here = f"{where}: dated_variants[{n}]"
        unknown = sorted(set(entry) - {"name", "effective_from", "source", "notes", "collateral_ratios",
                                       "auto_exchange"})
        if unknown:
            raise RulesError(f"{here}: unknown keys {unknown}; a variant replaces collateral_ratios and/or "
                             "auto_exchange, with name, effective_from and source.")
        try:
            moment = parse_expiry(entry["effective_from"])
            name = str(entry["name"])
        except (KeyError, ValueError) as exc:
            raise RulesError(f"{here}: {exc}; a variant needs name and effective_from (ISO date-time).") from exc
        _check_collateral(entry.get("collateral_ratios", {}), here)
        out.append(RuleVariant(name, int(moment.timestamp()) * 1_000_000_000, str(entry.get("source", "")),
                               dict(entry["collateral_ratios"]) if "collateral_ratios" in entry else None,
                               _auto_exchange(entry.get("auto_exchange"), here), "auto_exchange" in entry))
    return tuple(sorted(out, key=lambda v: v.effective_from_ns))


def _check_collateral(ratios, where: str) -> None:
    """A `collateral_ratios` table: asset -> ratio or tier table; errors name `where`."""
    if not isinstance(ratios, dict):
        raise RulesError(f"{where}: collateral_ratios must map assets (e.g. BTC) to ratios or tier tables.")
    for asset, entry in ratios.items():
        try:
            schedule_from(asset, entry)
        except RulesError as exc:
            raise RulesError(f"{where}: {exc}") from exc


def _fee_to_close(maintenance: dict, taker: float, where: str) -> float:
    """A rule file's `maintenance.fee_to_close`: "taker" (the taker rate), a fraction, or absent (0)."""
    value = maintenance.get("fee_to_close") if isinstance(maintenance, dict) else None
    if value is None:
        return 0.0
    if value == "taker":
        return taker
    if isinstance(value, (int, float)) and 0 <= value < 0.01:
        return float(value)
    raise RulesError(f"{where}: maintenance.fee_to_close = {value!r}: 'taker' or a fraction in [0, 0.01).")


def _delivery_date(suffix: str):
    """The date of a delivery-contract suffix `YYMMDD` (`241227`), or None."""
    try:
        return datetime.strptime(suffix, "%y%m%d").date() if len(suffix) == 6 else None
    except ValueError:
        return None


def builtin_rule_path(name: str) -> Path:
    """Where the built-in rule set `name` would be (it exists when `name` is one)."""
    return DATA_DIR / f"{name}.json"


def builtin_rule_names() -> list[str]:
    return sorted(p.stem for p in DATA_DIR.glob("*.json"))


BRACKET_KEYS = ("notional_floor", "notional_cap", "max_leverage", "maintenance_margin_rate", "maintenance_amount")
def number(value, where: str, meaning: str = "") -> float:
    """A finite JSON number (not a bool, not text) or RulesError naming `where`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RulesError(f"{where} = {value!r}: must be a finite number{meaning}" + (
            ", written without quotes or % (0.005 for 0.5 %)." if isinstance(value, str) else "."))
    return float(value)


def _level_problem(rate: float, leverage: float) -> str:
    """What is wrong with a tier's maintenance rate and max leverage ('' if nothing)."""
    if not 0 < rate < 1:
        return f"maintenance_margin_rate {rate:g} must be a fraction in (0, 1) (0.005 = 0.5 %)"
    if not leverage >= 1:
        return f"max_leverage {leverage:g} must be at least 1 (no exchange requires more margin than the notional)"
    if not rate < 1 / leverage:
        return (f"maintenance_margin_rate {rate:g} is not below the initial margin rate 1 / max_leverage = "
                f"{1 / leverage:g}: a position opened at the maximum leverage would be liquidatable at once. "
                "Fix: check the two columns (a rate given in percent, or a leverage in the wrong row)")
    return ""


def _bracket_from(entry, where: str) -> Bracket:
    if not isinstance(entry, dict):
        raise RulesError(f"{where}: expected a bracket object with {list(BRACKET_KEYS)}, got {entry!r}.")
    check_keys(entry, BRACKET_KEYS, where)
    missing = [k for k in BRACKET_KEYS if k not in entry]
    if missing:
        raise RulesError(f"{where}: missing {missing}; each bracket needs {list(BRACKET_KEYS)} "
                         "(notional_cap null means no upper bound).")
    cap = entry["notional_cap"]
    return Bracket(
        notional_floor=number(entry["notional_floor"], f"{where}.notional_floor"),
        notional_cap=math.inf if cap is None else number(cap, f"{where}.notional_cap", " (or null: no bound)"),
        max_leverage=number(entry["max_leverage"], f"{where}.max_leverage"),
        maintenance_margin_rate=number(entry["maintenance_margin_rate"], f"{where}.maintenance_margin_rate",
                                       " (a fraction: 0.005 = 0.5 %)"),
        maintenance_amount=number(entry["maintenance_amount"], f"{where}.maintenance_amount"),
    )


def _monotony_warnings(levels, where: str, row: str) -> list[str]:
    """Doubtful but usable: a maintenance rate that does not rise, or a max leverage that rises, with
    size (every exchange's published tiers do the opposite). `levels`: (rate, leverage) per row."""
    out = []
    for n in range(1, len(levels)):
        (rate0, lev0), (rate, lev) = levels[n - 1], levels[n]
        if not rate > rate0:
            out.append(f"{where}[{n}]: maintenance_margin_rate {rate:g} does not rise above the previous {row}'s "
                       f"{rate0:g}; exchanges raise it with size (check the row order and the values)")
        if lev > lev0:
            out.append(f"{where}[{n}]: max_leverage {lev:g} rises above the previous {row}'s {lev0:g}; exchanges "
                       "lower it with size (check the row order and the values)")
    return out


def _table_from(entries, where: str, warnings: list | None = None) -> BracketTable:
    if not isinstance(entries, list) or not entries:
        raise RulesError(f"{where}: expected a non-empty list of brackets.")
    brackets = [_bracket_from(e, f"{where}[{n}]") for n, e in enumerate(entries)]
    if brackets[0].notional_floor != 0:
        hint = (" (the brackets are out of order: list them from the smallest notional up)"
                if any(b.notional_floor == 0 for b in brackets[1:]) else "")
        raise RulesError(f"{where}[0]: the first bracket must start at notional_floor 0{hint}.")
    for n in range(1, len(brackets)):
        if brackets[n].notional_floor != brackets[n - 1].notional_cap:
            raise RulesError(f"{where}[{n}]: notional_floor {brackets[n].notional_floor} does not equal the "
                             f"previous bracket's notional_cap {brackets[n - 1].notional_cap}; brackets must be "
                             "contiguous.")
    for n, b in enumerate(brackets):
        if b.notional_cap <= b.notional_floor:
            raise RulesError(f"{where}[{n}]: notional_cap {b.notional_cap:g} must be above notional_floor "
                             f"{b.notional_floor:g}.")
        if n < len(brackets) - 1 and b.notional_cap == math.inf:
            raise RulesError(f"{where}[{n}]: notional_cap null (no bound) is allowed on the last bracket only.")
        problem = _level_problem(b.maintenance_margin_rate, b.max_leverage)
        if problem:
            raise RulesError(f"{where}[{n}]: {problem}.")
    if brackets[0].maintenance_amount != 0:
        raise RulesError(f"{where}[0].maintenance_amount = {brackets[0].maintenance_amount}: the first bracket's "
                         "maintenance amount is 0.")
    for n in range(1, len(brackets)):
        previous, b = brackets[n - 1], brackets[n]
        # maintenance margin must not jump at a bracket boundary: amount_n = amount_(n-1) + floor_n x (rate_n - rate_(n-1))
        expected = previous.maintenance_amount + b.notional_floor * (b.maintenance_margin_rate
                                                                     - previous.maintenance_margin_rate)
        if abs(b.maintenance_amount - expected) > 1e-6 * max(1.0, abs(expected)):
            raise RulesError(f"{where}[{n}].maintenance_amount = {b.maintenance_amount:g}: inconsistent with the "
                             f"rates, expected {expected:g} (previous amount + notional_floor x the rate step), so "
                             "that maintenance margin is continuous at the bracket boundary.")
    if warnings is not None:
        warnings.extend(_monotony_warnings([(b.maintenance_margin_rate, b.max_leverage) for b in brackets], where,
                                           "bracket"))
    return BracketTable.from_brackets(brackets)


CONTRACT_TIER_KEYS = ("max_contracts", "max_leverage", "maintenance_margin_rate")


def _contract_tiers_from(entry: dict, where: str, warnings: list | None = None) -> ContractTiers:
    """A symbol's tiers counted in contracts: {"unit": "contracts", "contract_value": ctVal, "tiers":
    [{"max_contracts", "max_leverage", "maintenance_margin_rate"}, ...]} (OKX position tiers; the last
    `max_contracts` may be null: no bound). Each tier starts above the previous one's maximum."""
    if entry.get("unit") != "contracts":
        raise RulesError(f"{where}: unit = {entry.get('unit')!r}; a table given as an object must have unit "
                         "\"contracts\" (notional brackets are a list).")
    check_keys(entry, ("unit", "contract_value", "tiers", "as_of", "source"), where)
    value, tiers = entry.get("contract_value"), entry.get("tiers")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or not math.isfinite(value):
        raise RulesError(f"{where}: contract_value = {value!r}: must be the venue's contract value > 0 (OKX ctVal: "
                         "base units per contract for linear swaps, USD per contract for inverse ones).")
    if not isinstance(tiers, list) or not tiers:
        raise RulesError(f"{where}: tiers: expected a non-empty list of {list(CONTRACT_TIER_KEYS)}.")
    out, floor = [], 0.0
    for n, tier in enumerate(tiers):
        here = f"{where}.tiers[{n}]"
        check_keys(tier, CONTRACT_TIER_KEYS, here)
        missing = [k for k in CONTRACT_TIER_KEYS if k not in tier]
        if missing:
            raise RulesError(f"{here}: missing {missing}; each tier needs {list(CONTRACT_TIER_KEYS)} "
                             "(max_contracts null means no upper bound).")
        cap = (math.inf if tier["max_contracts"] is None
               else number(tier["max_contracts"], f"{here}.max_contracts", " (or null: no bound)"))
        made = ContractTier(floor, cap, number(tier["max_leverage"], f"{here}.max_leverage"),
                            number(tier["maintenance_margin_rate"], f"{here}.maintenance_margin_rate",
                                   " (a fraction: 0.005 = 0.5 %)"))
        if cap <= floor:
            raise RulesError(f"{here}: max_contracts {cap:g} must be above the previous tier's ({floor:g}).")
        problem = _level_problem(made.maintenance_margin_rate, made.max_leverage)
        if problem:
            raise RulesError(f"{here}: {problem}.")
        if n < len(tiers) - 1 and cap == math.inf:
            raise RulesError(f"{here}: max_contracts null (no bound) is allowed on the last tier only.")
        out.append(made)
        floor = cap
    if warnings is not None:
        warnings.extend(_monotony_warnings([(t.maintenance_margin_rate, t.max_leverage) for t in out],
                                           f"{where}.tiers", "tier"))
    return ContractTiers(tuple(out), float(value))


def _fraction(value, key: str, where: str, low: float, high: float,
              meaning: str = "a fraction within [{low:g}, {high:g}] (0.0005 = 0.05 %; not percent)") -> float:
    """A JSON number within [low, high] (not a bool, not text) or RulesError naming the file and key."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high  # nan fails
    if not ok:
        raise RulesError(f"{where}: {key} = {value!r}: must be " + meaning.format(low=low, high=high)
                         + (", written as a number, not text" if isinstance(value, str) else "") + ".")
    return float(value)


HOURS = "a number of hours within [{low:g}, {high:g}]"
FUNDING_HOURS = (1 / 60, 24 * 7)


def _spot_fees(fees: dict, where: str) -> dict:
    """`fees.spot = {maker, taker}`: the spot market's own rates, apart from the derivatives' `fees.maker/taker`."""
    spot = fees.get("spot")
    if spot is None:
        return {"spot_maker_fee": None, "spot_taker_fee": None}
    if isinstance(spot, dict):
        check_keys(spot, ("maker", "taker"), f"{where}: fees.spot")
    try:
        return {"spot_maker_fee": _fraction(spot["maker"], "fees.spot.maker", where, *FEE_RANGE),
                "spot_taker_fee": _fraction(spot["taker"], "fees.spot.taker", where, 0.0, FEE_RANGE[1])}
    except (KeyError, TypeError) as exc:
        raise RulesError(f"{where}: fees.spot must be {{\"maker\": <fraction>, \"taker\": <fraction>}}, got "
                         f"{spot!r}.") from exc


def parse_rules(data: dict, where: str) -> RuleSet:
    """Assemble a `RuleSet` from a parsed rule file; every error names the file and key."""

    def need(mapping, key, context=""):
        if key not in mapping:
            raise RulesError(f"{where}: key '{context}{key}' is missing. See engine/venues/rules/data/*.json for the format.")
        return mapping[key]

    check_keys(data, TOP_LEVEL_KEYS, where, "top-level keys")
    fees = need(data, "fees")
    funding = need(data, "funding")
    liquidation = need(data, "liquidation")
    for key, mapping in (("fees", fees), ("funding", funding), ("liquidation", liquidation)):
        if not isinstance(mapping, dict):
            raise RulesError(f"{where}: key '{key}' must be an object, got {mapping!r}.")
    check_keys(fees, ("maker", "taker", "spot"), f"{where}: fees")
    check_keys(funding, ("interval_hours", "interval_overrides", "settlement_times_utc"), f"{where}: funding")
    check_keys(liquidation, LIQUIDATION_KEYS, f"{where}: liquidation")
    for key in ("maintenance", "auto_exchange"):
        if data.get(key) is not None:
            check_keys(data[key], TABLE_KEYS[key], f"{where}: {key}")
    warnings: list[tuple] = []
    policy = need(liquidation, "policy", "liquidation.")
    if policy not in POLICIES:
        raise RulesError(f"{where}: liquidation.policy = {policy!r}: registered policies are {list(POLICIES)}.")
    parameters = policies.parameters_from(policy, liquidation, where)
    try:
        liquidation_rules = LiquidationRules(policy=policy, fill=need(liquidation, "fill", "liquidation."),
                                             fee_rate=_fraction(need(liquidation, "fee_rate", "liquidation."),
                                                                "liquidation.fee_rate", where, 0.0, 0.1),
                                             maintenance_basis=liquidation.get("maintenance_basis", "mark"),
                                             parameters=parameters)
    except ValueError as exc:
        raise RulesError(f"{where}: liquidation: {exc}. fill is one of {FILLS}, "
                         "maintenance_basis 'mark' or 'entry'.") from exc
    modes = data.get("margin_modes", ["isolated", "cross"])
    if not isinstance(modes, list) or not modes:
        raise RulesError(f"{where}: margin_modes = {modes!r}: a list of the modes the exchange offers, e.g. "
                         "[\"isolated\", \"cross\"].")
    modes = tuple(modes)
    unknown = [m for m in modes if m not in _MODE_REGISTRY]
    if unknown:
        raise RulesError(f"{where}: margin_modes {unknown} unknown; registered margin modes: {list(_MODE_REGISTRY)}.")
    _check_collateral(data.get("collateral_ratios", {}), where)
    if not isinstance(data.get("brackets", {}), dict):
        raise RulesError(f"{where}: key 'brackets' must map symbols (e.g. BTCUSDT) to lists of brackets.")
    symbol_brackets = {}
    for table, symbols in (("brackets", data.get("brackets", {})),
                           ("funding.interval_overrides", funding.get("interval_overrides", {}))):
        written = sorted(sym for sym in (symbols if isinstance(symbols, dict) else ()) if not _NATIVE_ID.fullmatch(sym))
        if written:
            raise RulesError(f"{where}: {table}: {written[:3]} are not exchange symbol ids; the engine looks brackets up "
                             "by base + quote without separators (BTCUSDT, a dated future BTCUSDT_250627), so these "
                             "would never be used. Fix: rename them.")
    for sym, entries in data.get("brackets", {}).items():
        found: list[str] = []
        symbol_brackets[sym] = (_contract_tiers_from(entries, f"{where}: brackets.{sym}", found)
                                if isinstance(entries, dict) else _table_from(entries, f"{where}: brackets.{sym}", found))
        warnings.extend((sym, message) for message in found)
    found = []
    default_brackets = _table_from(need(data, "default_brackets"), f"{where}: default_brackets", found)
    warnings.extend((None, message) for message in found)
    return RuleSet(
        name=_text(need(data, "name"), "name", where),
        exchange=_text(need(data, "exchange"), "exchange", where),
        description=_text(data.get("description", ""), "description", where, empty=True),
        as_of=_as_of(need(data, "as_of"), where),
        sources=_texts(need(data, "sources"), "sources", where, empty=False),
        not_public=_texts(data.get("not_public", []), "not_public", where),
        maker_fee=_fraction(need(fees, "maker", "fees."), "fees.maker", where, *FEE_RANGE),
        taker_fee=_fraction(need(fees, "taker", "fees."), "fees.taker", where, 0.0, FEE_RANGE[1]),
        **_spot_fees(fees, where),
        funding_interval_hours=_fraction(need(funding, "interval_hours", "funding."), "funding.interval_hours",
                                         where, *FUNDING_HOURS, HOURS),
        funding_interval_overrides=_interval_overrides(funding.get("interval_overrides", {}), where),
        margin_modes=modes,
        liquidation=liquidation_rules,
        default_brackets=default_brackets,
        symbol_brackets=symbol_brackets,
        collateral_ratios=dict(data.get("collateral_ratios", {})),
        auto_exchange=_auto_exchange(data.get("auto_exchange"), where),
        delivery=delivery_from(data.get("delivery"), where),
        portfolio=portfolio_from(data.get("portfolio_margin"), where),
        fee_to_close=_fee_to_close(data.get("maintenance", {}), float(need(fees, "taker", "fees.")), where),
        variants=_variants(data.get("dated_variants"), where),
        warnings=tuple(warnings),
    )


TOP_LEVEL_KEYS = ("name", "exchange", "description", "as_of", "sources", "not_public", "fees", "funding",
                  "margin_modes", "liquidation", "default_brackets", "default_brackets_from", "brackets",
                  "collateral_ratios", "auto_exchange", "imported_from", "brackets_sources", "delivery",
                  "maintenance", "dated_variants", "portfolio_margin")
TABLE_KEYS = {"maintenance": ("fee_to_close", "source"),
              "auto_exchange": ("threshold_usd", "cover_ratio", "fee_rate", "source")}
LIQUIDATION_KEYS = ("policy", "fill", "fee_rate", "maintenance_basis", *policies.rule_file_keys())
_NATIVE_ID = re.compile(r"[A-Za-z0-9]+(_[A-Za-z0-9]+)?")  # BTCUSDT, BTCUSDT_250627, BTCUSD_PERP
AS_OF = re.compile(r"\d{4}(-\d{2}(-\d{2})?)?")


def _text(value, key: str, where: str, empty: bool = False) -> str:
    if not isinstance(value, str) or not (empty or value.strip()):
        raise RulesError(f"{where}: {key} = {value!r}: must be a{'' if empty else ' non-empty'} string.")
    return value


def _texts(value, key: str, where: str, empty: bool = True) -> tuple[str, ...]:
    """A list of strings (a single string would otherwise be read as its characters)."""
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value) or not (empty or value):
        raise RulesError(f"{where}: {key} = {value!r}: must be a list of strings" + (
            "" if empty else " with at least one entry: where each number comes from (URLs, or repo@commit:path)")
            + ".")
    return tuple(value)


def _as_of(value, where: str) -> str:
    """The rule file's date: YYYY-MM-DD (YYYY-MM or YYYY when only that is known)."""
    text = value if isinstance(value, str) else ""
    try:
        valid = AS_OF.fullmatch(text) is not None and date.fromisoformat((text + "-01-01")[:10]) is not None
    except ValueError:
        valid = False
    if not valid:
        raise RulesError(f"{where}: as_of = {value!r}: must be the date of the data as a string YYYY-MM-DD "
                         "(e.g. \"2025-01-31\"; YYYY-MM or YYYY when only that is known).")
    return text


def _interval_overrides(value, where: str) -> dict:
    """`funding.interval_overrides`: symbol id -> hours."""
    if not isinstance(value, dict):
        raise RulesError(f"{where}: funding.interval_overrides = {value!r}: must map symbol ids to hours, e.g. "
                         "{\"BLZUSDT\": 4}.")
    return {symbol: _fraction(hours, f"funding.interval_overrides.{symbol}", where, *FUNDING_HOURS, HOURS)
            for symbol, hours in value.items()}


def _auto_exchange(entry, where: str) -> AutoExchange | None:
    """The typed `auto_exchange` table (None when the rule set has none)."""
    if entry is None:
        return None
    if not isinstance(entry, dict) or "threshold_usd" not in entry:
        raise RulesError(f"{where}: auto_exchange: expected a table with threshold_usd (and optionally "
                         f"cover_ratio, fee_rate), got {entry!r}.")
    try:
        return AutoExchange(threshold_usd=entry["threshold_usd"], cover_ratio=entry.get("cover_ratio", 1.0),
                            fee_rate=entry.get("fee_rate", 0.0))
    except (TypeError, ValueError) as exc:
        raise RulesError(f"{where}: auto_exchange: {exc}.") from exc


_CACHE: dict[tuple, RuleSet] = {}  # (name or path, the file's size and mtime) -> its rule set


def load_rules(name_or_path: str) -> RuleSet:
    """A built-in rule set by name (`binance-usdm`) or a user's rule file by path (read again when
    the file changed since, so an edited rule file is never served from memory)."""
    key = str(name_or_path)
    builtin = builtin_rule_path(key)
    path = builtin if builtin.is_file() else Path(key)
    if not path.is_file():
        raise RulesError(f"rules '{key}': neither a built-in rule set ({', '.join(builtin_rule_names())}) "
                         "nor an existing file. Give one of those names or a path to a JSON rule file.")
    stat = path.stat()
    cached = (key, stat.st_size, stat.st_mtime_ns)
    if cached in _CACHE:
        return _CACHE[cached]
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RulesError(f"{path}: not valid JSON ({exc}).") from exc
    if not isinstance(data, dict):
        raise RulesError(f"{path}: expected a JSON object at the top level.")
    rules = parse_rules(data, str(path))
    _CACHE[cached] = rules
    return rules
