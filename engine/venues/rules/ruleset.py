"""The frozen rule record for one exchange, read from a JSON data file.

A rule file records where each parameter comes from and as of when. Margin modes (`xmargin.margin.modes`)
and liquidation policies (`xmargin.margin.policies`) are generic code over any rule set: nothing here is exchange-specific logic.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path

import attrs

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
        for asset, ratio in entry.get("collateral_ratios", {}).items():
            schedule_from(asset, ratio)
        out.append(RuleVariant(name, int(moment.timestamp()) * 1_000_000_000, str(entry.get("source", "")),
                               dict(entry["collateral_ratios"]) if "collateral_ratios" in entry else None,
                               _auto_exchange(entry.get("auto_exchange"), here), "auto_exchange" in entry))
    return tuple(sorted(out, key=lambda v: v.effective_from_ns))


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


def builtin_rule_names() -> list[str]:
    return sorted(p.stem for p in DATA_DIR.glob("*.json"))


def _bracket_from(entry: dict, where: str) -> Bracket:
    required = ("notional_floor", "notional_cap", "max_leverage", "maintenance_margin_rate", "maintenance_amount")
    missing = [k for k in required if k not in entry]
    if missing:
        raise RulesError(f"{where}: missing {missing}; each bracket needs {list(required)} "
                         "(notional_cap null means no upper bound).")
    cap = entry["notional_cap"]
    try:
        return Bracket(
            notional_floor=float(entry["notional_floor"]),
            notional_cap=math.inf if cap is None else float(cap),
            max_leverage=float(entry["max_leverage"]),
            maintenance_margin_rate=float(entry["maintenance_margin_rate"]),
            maintenance_amount=float(entry["maintenance_amount"]),
        )
    except (TypeError, ValueError) as exc:
        raise RulesError(f"{where}: a value is not a number ({exc}).") from exc


def _table_from(entries, where: str) -> BracketTable:
    if not isinstance(entries, list) or not entries:
        raise RulesError(f"{where}: expected a non-empty list of brackets.")
    brackets = [_bracket_from(e, f"{where}[{n}]") for n, e in enumerate(entries)]
    if brackets[0].notional_floor != 0:
        raise RulesError(f"{where}[0]: the first bracket must start at notional_floor 0.")
    for n in range(1, len(brackets)):
        if brackets[n].notional_floor != brackets[n - 1].notional_cap:
            raise RulesError(f"{where}[{n}]: notional_floor {brackets[n].notional_floor} does not equal the "
                             f"previous bracket's notional_cap {brackets[n - 1].notional_cap}; brackets must be "
                             "contiguous.")
    for n, b in enumerate(brackets):
        if not (0 < b.maintenance_margin_rate < 1) or b.max_leverage <= 0 or b.notional_cap <= b.notional_floor:
            raise RulesError(f"{where}[{n}]: need 0 < maintenance_margin_rate < 1, max_leverage > 0 and "
                             f"notional_cap > notional_floor, got {b}.")
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
    return BracketTable.from_brackets(brackets)


CONTRACT_TIER_KEYS = ("max_contracts", "max_leverage", "maintenance_margin_rate")


def _contract_tiers_from(entry: dict, where: str) -> ContractTiers:
    """A symbol's tiers counted in contracts: {"unit": "contracts", "contract_value": ctVal, "tiers":
    [{"max_contracts", "max_leverage", "maintenance_margin_rate"}, ...]} (OKX position tiers; the last
    `max_contracts` may be null: no bound). Each tier starts above the previous one's maximum."""
    if entry.get("unit") != "contracts":
        raise RulesError(f"{where}: unit = {entry.get('unit')!r}; a table given as an object must have unit "
                         "\"contracts\" (notional brackets are a list).")
    value, tiers = entry.get("contract_value"), entry.get("tiers")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise RulesError(f"{where}: contract_value = {value!r}: must be the venue's contract value > 0 (OKX ctVal: "
                         "base units per contract for linear swaps, USD per contract for inverse ones).")
    if not isinstance(tiers, list) or not tiers:
        raise RulesError(f"{where}: tiers: expected a non-empty list of {list(CONTRACT_TIER_KEYS)}.")
    out, floor = [], 0.0
    for n, tier in enumerate(tiers):
        here = f"{where}.tiers[{n}]"
        missing = [k for k in CONTRACT_TIER_KEYS if k not in tier]
        if missing:
            raise RulesError(f"{here}: missing {missing}; each tier needs {list(CONTRACT_TIER_KEYS)} "
                             "(max_contracts null means no upper bound).")
        try:
            cap = math.inf if tier["max_contracts"] is None else float(tier["max_contracts"])
            made = ContractTier(floor, cap, float(tier["max_leverage"]), float(tier["maintenance_margin_rate"]))
        except (TypeError, ValueError) as exc:
            raise RulesError(f"{here}: a value is not a number ({exc}).") from exc
        if not (0 < made.maintenance_margin_rate < 1) or made.max_leverage <= 0 or cap <= floor:
            raise RulesError(f"{here}: need 0 < maintenance_margin_rate < 1, max_leverage > 0 and max_contracts above "
                             f"the previous tier's ({floor:g}), got {tier}.")
        if n < len(tiers) - 1 and cap == math.inf:
            raise RulesError(f"{here}: max_contracts null (no bound) is allowed on the last tier only.")
        out.append(made)
        floor = cap
    return ContractTiers(tuple(out), float(value))


def _fraction(value, key: str, where: str, low: float, high: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not low <= number <= high:
        raise RulesError(f"{where}: {key} = {value!r}: must be a fraction within [{low:g}, {high:g}] "
                         "(0.0005 = 0.05 %; not percent).")
    return number


def _spot_fees(fees: dict, where: str) -> dict:
    """`fees.spot = {maker, taker}`: the spot market's own rates, apart from the derivatives' `fees.maker/taker`."""
    spot = fees.get("spot")
    if spot is None:
        return {"spot_maker_fee": None, "spot_taker_fee": None}
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

    fees = need(data, "fees")
    funding = need(data, "funding")
    liquidation = need(data, "liquidation")
    for key, mapping in (("fees", fees), ("funding", funding), ("liquidation", liquidation)):
        if not isinstance(mapping, dict):
            raise RulesError(f"{where}: key '{key}' must be an object, got {mapping!r}.")
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
    modes = tuple(data.get("margin_modes", ("isolated", "cross")))
    unknown = [m for m in modes if m not in _MODE_REGISTRY]
    if unknown:
        raise RulesError(f"{where}: margin_modes {unknown} unknown; registered margin modes: {list(_MODE_REGISTRY)}.")
    for asset, entry in data.get("collateral_ratios", {}).items():
        try:
            schedule_from(asset, entry)
        except RulesError as exc:
            raise RulesError(f"{where}: {exc}") from exc
    if not isinstance(data.get("brackets", {}), dict):
        raise RulesError(f"{where}: key 'brackets' must map symbols (e.g. BTCUSDT) to lists of brackets.")
    symbol_brackets = {sym: (_contract_tiers_from(entries, f"{where}: brackets.{sym}") if isinstance(entries, dict)
                             else _table_from(entries, f"{where}: brackets.{sym}"))
                       for sym, entries in data.get("brackets", {}).items()}
    return RuleSet(
        name=need(data, "name"),
        exchange=need(data, "exchange"),
        description=data.get("description", ""),
        as_of=need(data, "as_of"),
        sources=tuple(need(data, "sources")),
        not_public=tuple(data.get("not_public", ())),
        maker_fee=_fraction(need(fees, "maker", "fees."), "fees.maker", where, *FEE_RANGE),
        taker_fee=_fraction(need(fees, "taker", "fees."), "fees.taker", where, 0.0, FEE_RANGE[1]),
        **_spot_fees(fees, where),
        funding_interval_hours=_fraction(need(funding, "interval_hours", "funding."), "funding.interval_hours",
                                         where, 1 / 60, 24 * 7),
        funding_interval_overrides=dict(funding.get("interval_overrides", {})),
        margin_modes=modes,
        liquidation=liquidation_rules,
        default_brackets=_table_from(need(data, "default_brackets"), f"{where}: default_brackets"),
        symbol_brackets=symbol_brackets,
        collateral_ratios=dict(data.get("collateral_ratios", {})),
        auto_exchange=_auto_exchange(data.get("auto_exchange"), where),
        delivery=delivery_from(data.get("delivery"), where),
        portfolio=portfolio_from(data.get("portfolio_margin"), where),
        fee_to_close=_fee_to_close(data.get("maintenance", {}), float(need(fees, "taker", "fees.")), where),
        variants=_variants(data.get("dated_variants"), where),
    )


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


_CACHE: dict[str, RuleSet] = {}


def load_rules(name_or_path: str) -> RuleSet:
    """A built-in rule set by name (`binance-usdm`) or a user's rule file by path."""
    key = str(name_or_path)
    if key in _CACHE:
        return _CACHE[key]
    builtin = DATA_DIR / f"{key}.json"
    path = builtin if builtin.is_file() else Path(key)
    if not path.is_file():
        raise RulesError(f"rules '{key}': neither a built-in rule set ({', '.join(builtin_rule_names())}) "
                         "nor an existing file. Give one of those names or a path to a JSON rule file.")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RulesError(f"{path}: not valid JSON ({exc}).") from exc
    if not isinstance(data, dict):
        raise RulesError(f"{path}: expected a JSON object at the top level.")
    rules = parse_rules(data, str(path))
    _CACHE[key] = rules
    return rules
