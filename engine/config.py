"""Run configuration: the TOML file of the design page, validated at the edge.

Every error names the key and what is allowed. Command-line overrides (`--set a.b=c`,
`--margin-mode binance=isolated`, ...) are applied to the parsed mapping before validation, so
they are checked by the same rules.
"""

from __future__ import annotations

import copy
import math
import tomllib
from datetime import datetime, timezone
from pathlib import Path

import attrs

from xmargin._keys import unknown_keys
from xmargin.errors import ConfigError, RulesError
from xmargin.margin.modes import MODE_NAMES, MODES
from xmargin.venues.rules import load_rules
from xmargin.venues.rules.ruleset import builtin_rule_path
from xmargin.venues.fees import market_fees

MARGIN_MODES = MODE_NAMES  # the margin-mode registry (xmargin.margin.modes)
INTRABAR = ("path", "worst-case", "close")
ON_LIQUIDATION = ("continue", "stop")
RUN_KEYS = {"dataset", "start", "end", "strategy", "seed", "name", "out", "slippage_bps", "sample_interval",
            "intrabar", "on_liquidation", "warning_thresholds", "instruments", "timeframe", "strict",
            "one_legged_ratio", "one_legged_after"}
EXCHANGE_KEYS = {"rules", "margin_mode", "collateral", "leverage", "withdrawal_fees", "transfer_delay_minutes",
                 "allow_default_brackets", "fees", "portfolio_margin", "rules_variant"}
MAX_SLIPPAGE_BPS = 1000.0  # 10 %: beyond that a market order's fill price means nothing
MAX_LEVERAGE = 1000.0


def _number(value, key: str, low: float, high: float = math.inf, low_inclusive: bool = True,
            unit: str = "") -> float:
    """A finite int/float (not a bool) within [low, high] (or (low, high]); else ConfigError naming `key`."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value >= low if low_inclusive else value > low) and value <= high
    if not ok:
        bound = f"{'>=' if low_inclusive else '>'} {low:g}" + (f" and <= {high:g}" if math.isfinite(high) else "")
        raise ConfigError(f"{key} = {value!r}: must be a finite number {bound}{unit}.")
    return float(value)


def reject_unknown(mapping: dict, allowed, where: str, prefix: str = "") -> None:
    """ConfigError naming the keys of `mapping` outside `allowed` (and the allowed ones)."""
    unknown = unknown_keys(mapping, allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {prefix}{unknown}; allowed: {sorted(allowed)}.")


def _parse_time(value, key: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if hasattr(value, "year") and not isinstance(value, str):  # a TOML date
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise ConfigError(f"{key} = {value!r}: not a date or datetime. Use ISO format, e.g. 2024-10-01 or "
                          "2024-10-01T08:00:00.") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def parse_duration(value: str, key: str) -> int:
    """'1h' / '15m' / '1d' -> ns."""
    from xmargin.dataset.feed import timeframe_ns

    try:
        duration = timeframe_ns(str(value))
    except Exception as exc:
        raise ConfigError(f"{key} = {value!r}: not a duration. Use <number><s|m|h|d|w>, e.g. '1h'.") from exc
    if duration <= 0:
        raise ConfigError(f"{key} = {value!r}: a duration must be longer than zero, e.g. '1h'.")
    return duration


def check_margin_mode(prefix: str, mode, rules) -> None:
    """ConfigError unless `mode` is a registered margin mode, available, and offered by `rules`."""
    if mode not in MODES:
        raise ConfigError(f"{prefix}.margin_mode = {mode!r}: allowed {list(MARGIN_MODES)}.")
    if MODES[mode].unavailable:
        raise ConfigError(f"{prefix}.margin_mode = {mode!r}: {MODES[mode].unavailable}")
    if rules is not None and mode not in rules.margin_modes:
        raise ConfigError(f"{prefix}.margin_mode = {mode!r}: rule set {rules.name} allows {list(rules.margin_modes)}.")


def _check_thresholds(thresholds) -> None:
    if (not isinstance(thresholds, (list, tuple))
            or not all(isinstance(t, (int, float)) and not isinstance(t, bool) and 0 < t < 1 for t in thresholds)
            or any(b <= a for a, b in zip(thresholds, thresholds[1:]))):
        shown = list(thresholds) if isinstance(thresholds, tuple) else thresholds
        raise ConfigError(f"run.warning_thresholds = {shown!r}: an increasing list of margin ratios between 0 and 1, "
                          "each once, e.g. [0.7, 0.9].")


def _within(key: str, low: float, high: float = math.inf, unit: str = ""):
    """attrs validator: `_number`'s check of a config value, for configs built in code (a library
    user's `RunConfig(...)` or `attrs.evolve`) as well as from TOML."""
    return lambda _instance, _attribute, value: _number(value, key, low, high, unit=unit)


def _amounts(key: str):
    """attrs validator: a table of asset -> finite number >= 0."""
    def check(instance, _attribute, values):
        for asset, amount in values.items():
            _number(amount, f"exchanges.{instance.name}.{key}.{asset}", 0.0)
    return check


def _one_of(key: str, allowed):
    def check(_instance, _attribute, value):
        if value not in allowed:
            raise ConfigError(f"{key} = {value!r}: allowed {list(allowed)}.")
    return check


def _positive_ns(key: str):
    def check(_instance, _attribute, value):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{key} = {value!r} ns: a duration must be longer than zero, e.g. '1h'.")
    return check


LEVERAGE_UNIT = " (x; exchanges offer 1x and up: below 1 every order needs more margin than its notional)"
SLIPPAGE_UNIT = " (basis points: 1 = 0.01 %)"


@attrs.frozen
class ExchangeConfig:
    """One exchange account: its rule set, margin mode, starting collateral and leverage."""

    name: str
    rules: str
    margin_mode: str = attrs.field(validator=lambda self, _a, mode: check_margin_mode(f"exchanges.{self.name}", mode,
                                                                                     None))
    collateral: dict = attrs.field(validator=_amounts("collateral"))
    leverage: float = attrs.field(validator=lambda self, _a, value: _number(
        value, f"exchanges.{self.name}.leverage", 1.0, MAX_LEVERAGE, unit=LEVERAGE_UNIT))
    withdrawal_fees: dict = attrs.field(validator=_amounts("withdrawal_fees"))
    transfer_delay_minutes: dict = attrs.field(validator=_amounts("transfer_delay_minutes"))
    allow_default_brackets: bool = False
    fees: dict = attrs.field(factory=dict)  # market -> FeeRates or None (xmargin.venues.fees.market_fees)
    portfolio_margin: str | None = None  # a portfolio-margin variant of the rule set (None: the one in force)
    rules_variant: str | None = None  # a dated variant of the rule set's tables (None: the one in force)


@attrs.frozen
class RunConfig:
    dataset: Path
    strategy: str
    params: dict
    exchanges: dict
    start: datetime | None = None
    end: datetime | None = attrs.field(default=None)
    seed: int = 0
    name: str = ""
    out: Path = Path("runs")
    slippage_bps: float = attrs.field(default=1.0, validator=_within("run.slippage_bps", 0.0, MAX_SLIPPAGE_BPS,
                                                                     SLIPPAGE_UNIT))
    sample_interval_ns: int = attrs.field(default=3_600_000_000_000, validator=_positive_ns("run.sample_interval"))
    intrabar: str = attrs.field(default="path", validator=_one_of("run.intrabar", INTRABAR))
    on_liquidation: str = attrs.field(default="continue", validator=_one_of("run.on_liquidation", ON_LIQUIDATION))
    warning_thresholds: tuple[float, ...] = attrs.field(default=(0.7, 0.9),
                                                        validator=lambda _s, _a, value: _check_thresholds(value))
    instruments: tuple[str, ...] | None = None
    strict: bool = False  # rejected orders or a one-legged hedge make `xmargin run` exit 1
    # |net| / gross exposure of a hedged underlying above which it is one-legged ...
    one_legged_ratio: float = attrs.field(default=0.5, validator=_within("run.one_legged_ratio", 0.0, 1.0))
    one_legged_after_ns: int = attrs.field(default=8 * 3_600_000_000_000,  # ... for longer than this
                                           validator=_positive_ns("run.one_legged_after"))
    timeframe: str | None = None  # bar timeframe to run on when the dataset holds several (e.g. "1h")
    raw: dict = attrs.field(factory=dict, eq=False, repr=False)
    folder: Path | None = None  # the config file's folder: `module:Class` strategies are looked up there first

    @end.validator
    def _end_after_start(self, _attribute, end):
        if self.start and end and end <= self.start:
            raise ConfigError(f"run.end ({end}) must be after run.start ({self.start}).")


def set_path(data: dict, dotted: str, value, where: str = "--set") -> None:
    """Set `a.b.c` in a nested mapping, making the tables on the way (config overrides, sweeps)."""
    parts = dotted.split(".")
    target = data
    for part in parts[:-1]:
        target = target.setdefault(part, {})
        if not isinstance(target, dict):
            raise ConfigError(f"{where} {dotted}: '{part}' is not a table in the config.")
    target[parts[-1]] = value


def parse_override_value(text: str):
    """Interpret a `--set` value as TOML (number, bool, string, array); bare words stay strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(data: dict, sets=(), margin_modes=(), start=None, end=None, out=None, seed=None) -> dict:
    data = copy.deepcopy(data)
    for item in sets:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. strategy.params.notional_usd=20000.")
        key, value = item.split("=", 1)
        set_path(data, key.strip(), parse_override_value(value.strip()))
    for item in margin_modes:
        if "=" not in item:
            raise ConfigError(f"--margin-mode {item!r}: expected EXCHANGE=MODE, e.g. binance=isolated.")
        exchange, mode = item.split("=", 1)
        if exchange not in data.get("exchanges", {}):
            raise ConfigError(f"--margin-mode {item}: no exchange '{exchange}' in the config; configured: "
                              f"{sorted(data.get('exchanges', {}))}.")
        data["exchanges"][exchange]["margin_mode"] = mode
    run = data.setdefault("run", {})
    for key, value in (("start", start), ("end", end), ("out", out), ("seed", seed)):
        if value is not None:
            run[key] = value
    return data


def check_sample_interval(sample_interval_ns: int, bar_ns: int) -> None:
    """run.sample_interval must be a whole multiple of the bar: snapshots are taken at bar closes, so
    another interval would silently become the least common multiple of both (90m on 1h bars: every
    3h; 1h on 1d bars: every 1d), and figures counted as samples x interval (hours above a margin
    warning) would be wrong."""
    if sample_interval_ns % bar_ns:
        from xmargin.dataset.validate import duration_text

        bar = duration_text(bar_ns / 1e9)
        raise ConfigError(f"run.sample_interval = {duration_text(sample_interval_ns / 1e9)!r} (1h unless set): not a "
                          f"whole multiple of the dataset's {bar} bars, whose closes are where equity and positions "
                          f"are sampled. Fix: set run.sample_interval = \"{bar}\" or a multiple of it.")


def load_config(path: str | Path, **overrides) -> RunConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file.")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}).") from exc
    return parse_config(apply_overrides(data, **overrides), base=path.parent, where=str(path))


def check_instruments(instruments, declared, dataset) -> None:
    """run.instruments must name instruments declared in the dataset's dataset.toml."""
    unknown = sorted(set(instruments) - set(declared))
    if unknown:
        raise ConfigError(f"run.instruments: {unknown} not declared in {dataset}/dataset.toml; declared: "
                          f"{list(declared)}.")


def _check_declared(instruments: list, dataset: Path) -> None:
    """Checked when the config is read (an unreadable dataset.toml is left to validate to report)."""
    from xmargin.dataset.manifest import read_manifest
    from xmargin.errors import DatasetError

    try:
        declared = read_manifest(dataset).keys
    except DatasetError:
        return
    check_instruments(instruments, declared, dataset)


def _next_to_config(rules, base: Path):
    """A rule file path that exists only relative to the config's folder, resolved there (like
    run.dataset); built-in names and paths from the working directory are kept as given."""
    if not isinstance(rules, str) or builtin_rule_path(rules).is_file():
        return rules
    path = Path(rules)
    if not path.is_absolute() and not path.exists() and (base / path).is_file():
        return str(base / path)
    return rules


def parse_config(data: dict, base: Path = Path("."), where: str = "config") -> RunConfig:
    """Validate a config mapping. Relative dataset paths resolve against the working directory
    first, then against the config file's folder."""
    unknown = set(data) - {"run", "strategy", "exchanges", "stress", "sweep"}  # [sweep]: xmargin.analysis.sweep
    if unknown:
        raise ConfigError(f"{where}: unknown tables {sorted(unknown)}; allowed: run, strategy, exchanges, stress, "
                          "sweep.")
    run = data.get("run")
    if not isinstance(run, dict):
        raise ConfigError(f"{where}: a [run] table is required (dataset, strategy, ...).")
    reject_unknown(run, RUN_KEYS, where, "run.")
    for key in ("dataset", "strategy"):
        if key not in run:
            raise ConfigError(f"{where}: run.{key} is required.")
        if not isinstance(run[key], str) or not run[key]:
            raise ConfigError(f"{where}: run.{key} = {run[key]!r}: must be a string (a "
                              + ("dataset folder path" if key == "dataset" else "strategy name or 'module:Class'")
                              + ").")
    dataset = Path(run["dataset"])
    if not dataset.is_absolute() and not dataset.exists() and (base / dataset).exists():
        dataset = base / dataset
    if not dataset.is_dir():
        raise ConfigError(f"run.dataset = {run['dataset']!r}: no such dataset folder.")
    strategy = data.get("strategy", {})
    if not isinstance(strategy, dict) or not isinstance(strategy.get("params", {}), dict):
        given = strategy.get("params") if isinstance(strategy, dict) else strategy
        raise ConfigError(f"{where}: strategy.params = {given!r}: must be a table of the strategy's parameters "
                          "([strategy.params] with name = value lines).")
    unknown = set(strategy) - {"params"}
    if unknown:
        raise ConfigError(f"{where}: unknown keys strategy.{sorted(unknown)}; only [strategy.params] is allowed "
                          "(the strategy itself is run.strategy).")
    exchanges_data = data.get("exchanges")
    if not isinstance(exchanges_data, dict) or not exchanges_data:
        raise ConfigError(f"{where}: at least one [exchanges.<name>] table is required.")
    exchanges = {}
    for name, entry in exchanges_data.items():
        prefix = f"exchanges.{name}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: {prefix} = {entry!r}: must be a table ([{prefix}] with rules, collateral, ...).")
        reject_unknown(entry, EXCHANGE_KEYS, where, f"{prefix}.")
        if "rules" not in entry:
            raise ConfigError(f"{where}: {prefix}.rules is required (a built-in rule set name or a file path).")
        rules_path = _next_to_config(entry["rules"], base)
        try:
            rules = load_rules(rules_path)
        except RulesError as exc:
            raise ConfigError(f"{prefix}.rules: {exc}") from exc
        mode = entry.get("margin_mode", "cross")
        check_margin_mode(prefix, mode, rules)
        problem = MODES[mode].config_problem(rules, entry)
        if problem:
            raise ConfigError(f"{prefix}.{problem}.")
        for key in sorted({k for m in MODES.values() for k in m.config_keys} - set(MODES[mode].config_keys)):
            if key in entry:
                takers = [m.name for m in MODES.values() if key in m.config_keys]
                raise ConfigError(f"{prefix}.{key} = {entry[key]!r}: only with margin_mode = "
                                  + " or ".join(repr(t) for t in takers) + ".")
        variant = entry.get("portfolio_margin")
        rules_variant = entry.get("rules_variant")
        if rules_variant is not None:
            try:
                rules.in_force(None, str(rules_variant))
            except RulesError as exc:
                raise ConfigError(f"{prefix}.{exc}") from exc
        collateral = entry.get("collateral", {})
        if not isinstance(collateral, dict) or not collateral:
            raise ConfigError(f"{prefix}.collateral: give the starting balances, e.g. {{ USDT = 20000 }}.")
        accepted = sorted(rules.collateral_ratios)
        for asset, amount in collateral.items():
            _number(amount, f"{prefix}.collateral.{asset}", 0.0)
            if accepted and asset not in accepted:
                raise ConfigError(f"{prefix}.collateral.{asset}: {name} ({rules.name}) does not accept {asset} as "
                                  f"collateral; it accepts {accepted}.")
        leverage = _number(entry.get("leverage", 10), f"{prefix}.leverage", 1.0, MAX_LEVERAGE, unit=LEVERAGE_UNIT)
        tables = {}
        for table in ("withdrawal_fees", "transfer_delay_minutes"):
            values = entry.get(table, {})
            if not isinstance(values, dict):
                raise ConfigError(f"{prefix}.{table} = {values!r}: must be a table of asset = number.")
            tables[table] = {a: _number(v, f"{prefix}.{table}.{a}", 0.0) for a, v in values.items()}
            held = sorted(set(accepted) | set(collateral))
            if accepted and set(values) - set(held):  # a misspelt asset would leave the default in force
                raise ConfigError(f"{prefix}.{table}.{sorted(set(values) - set(held))[0]}: {name} ({rules.name}) "
                                  f"holds no such asset (its assets: {held}); check the spelling.")
        allow_defaults = entry.get("allow_default_brackets", False)
        if not isinstance(allow_defaults, bool):
            raise ConfigError(f"{prefix}.allow_default_brackets = {allow_defaults!r}: must be true or false.")
        exchanges[name] = ExchangeConfig(
            name=name, rules=rules_path, margin_mode=mode,
            collateral={a: float(v) for a, v in collateral.items()}, leverage=leverage,
            withdrawal_fees=tables["withdrawal_fees"], transfer_delay_minutes=tables["transfer_delay_minutes"],
            allow_default_brackets=allow_defaults, fees=market_fees(rules, entry.get("fees", {}), f"{prefix}.fees"),
            portfolio_margin=None if variant is None else str(variant),
            rules_variant=None if rules_variant is None else str(rules_variant))
    intrabar = run.get("intrabar", "path")
    if intrabar not in INTRABAR:
        raise ConfigError(f"run.intrabar = {intrabar!r}: allowed {list(INTRABAR)}.")
    on_liquidation = run.get("on_liquidation", "continue")
    if on_liquidation not in ON_LIQUIDATION:
        raise ConfigError(f"run.on_liquidation = {on_liquidation!r}: allowed {list(ON_LIQUIDATION)}.")
    thresholds = run.get("warning_thresholds", [0.7, 0.9])
    _check_thresholds(thresholds)
    seed = run.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"run.seed = {seed!r}: must be an integer.")
    slippage = _number(run.get("slippage_bps", 1.0), "run.slippage_bps", 0.0, MAX_SLIPPAGE_BPS, unit=SLIPPAGE_UNIT)
    start = _parse_time(run.get("start"), "run.start")
    end = _parse_time(run.get("end"), "run.end")
    if start and end and end <= start:
        raise ConfigError(f"run.end ({end}) must be after run.start ({start}).")
    instruments = run.get("instruments")
    if instruments is not None and (not isinstance(instruments, list) or not instruments
                                    or not all(isinstance(i, str) and ":" in i for i in instruments)):
        raise ConfigError(f"run.instruments = {instruments!r}: must be a list of 'exchange:symbol' keys as declared "
                          "in the dataset, e.g. [\"binance:BTC/USDT:USDT\"] (leave it out for every instrument).")
    if instruments:
        twice = sorted({i for i in instruments if instruments.count(i) > 1})
        if twice:
            raise ConfigError(f"run.instruments lists {twice} more than once; list each instrument once.")
        _check_declared(instruments, dataset)
    for key in ("name", "out"):
        if key in run and not isinstance(run[key], str):
            raise ConfigError(f"run.{key} = {run[key]!r}: must be a string.")
    name = run.get("name", "")
    if "/" in name or "\\" in name or name.startswith("."):
        raise ConfigError(f"run.name = {name!r}: the name starts the run folder's name (<name>-<UTC time>, inside "
                          "run.out): no '/' or '\\', no leading '.'. Use run.out to choose where runs are written.")
    timeframe = run.get("timeframe")
    if timeframe is not None:
        parse_duration(timeframe, "run.timeframe")
    strict = run.get("strict", False)
    if not isinstance(strict, bool):
        raise ConfigError(f"run.strict = {strict!r}: must be true or false.")
    one_legged_ratio = _number(run.get("one_legged_ratio", 0.5), "run.one_legged_ratio", 0.0, 1.0,
                               unit=" (|net| / gross exposure of a hedged underlying; 1 turns the one-legged "
                                    "warning off)")
    return RunConfig(
        dataset=dataset, strategy=str(run["strategy"]), params=dict(strategy.get("params", {})),
        exchanges=exchanges, start=start, end=end, seed=seed, name=str(run.get("name", "")),
        out=Path(run.get("out", "runs")), slippage_bps=float(slippage),
        sample_interval_ns=parse_duration(run.get("sample_interval", "1h"), "run.sample_interval"),
        intrabar=intrabar, on_liquidation=on_liquidation, warning_thresholds=tuple(float(t) for t in thresholds),
        instruments=tuple(instruments) if instruments else None,
        timeframe=None if timeframe is None else str(timeframe), strict=strict,
        one_legged_ratio=float(one_legged_ratio),
        one_legged_after_ns=parse_duration(run.get("one_legged_after", "8h"), "run.one_legged_after"), raw=data,
        folder=base.resolve())
