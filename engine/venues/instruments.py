"""Instrument: one tradable market on one exchange, as declared in a dataset's `dataset.toml`."""

from __future__ import annotations

import math
from datetime import datetime, timezone

import attrs

MARKETS = ("spot", "perp", "future")
CONTRACTS = ("linear", "inverse")


def _one_of(options):
    def check(instance, attribute, value):
        if value not in options:
            raise ValueError(f"{attribute.name} must be one of {', '.join(options)}, got {value!r}")

    return check


def parse_expiry(value: str) -> datetime:
    """An expiry timestamp (ISO 8601, e.g. "2024-12-27T08:00:00Z"; no zone means UTC) as an aware UTC datetime."""
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"expiry = {value!r} is not an ISO 8601 date-time; write e.g. "
                         "\"2024-12-27T08:00:00Z\" (UTC)") from exc
    return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)


def _expiry_valid(instance, attribute, value):
    if value is not None:
        parse_expiry(value)


def _non_negative(instance, attribute, value):
    if value is not None and not value >= 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


def _positive(instance, attribute, value):
    if value is not None and not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{attribute.name} must be a finite number > 0, got {value!r}")


def _text(instance, attribute, value):
    if not isinstance(value, str) or not value:
        raise ValueError(f"{attribute.name} must be a non-empty string, got {value!r}")


def _number(value):
    """A TOML number as float; text, booleans and the like are refused (the validator names the key)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _NotANumber(value)
    return float(value)


def _optional_number(value):
    return None if value is None else _number(value)


class _NotANumber:
    """A value that failed `_number`: every validator below rejects it, naming the key."""

    def __init__(self, value):
        self.value = value

    def __repr__(self):
        return repr(self.value)

    def __ge__(self, other):
        return False

    __gt__ = __ge__


@attrs.frozen
class Instrument:
    """A market on one exchange.

    `symbol` is the ccxt unified symbol (`BTC/USDT:USDT` linear perp, `BTC/USD:BTC` inverse perp,
    `BTC/USDT` spot). Quantities are in base units times `contract_size` (contracts for inverse).
    `lot_size` is the quantity step, `min_notional` the smallest order value in the quote asset,
    `tick_size` the price step (0 means not enforced). A dated future (`market = "future"`) has an
    `expiry` (ISO 8601 UTC date-time, e.g. "2024-12-27T08:00:00Z"): orders are refused from then on and
    open positions settle at the settlement price (`xmargin.sim.expiry`); ccxt writes its symbol with
    the expiry as a suffix, `BTC/USDT:USDT-241227`.
    """

    exchange: str = attrs.field(validator=_text)
    symbol: str = attrs.field(validator=_text)
    market: str = attrs.field(validator=_one_of(MARKETS))
    base: str = attrs.field(validator=_text)
    quote: str = attrs.field(validator=_text)
    settle: str = attrs.field(validator=_text)
    contract: str = attrs.field(default="linear", validator=_one_of(CONTRACTS))
    contract_size: float = attrs.field(default=1.0, converter=_number, validator=_positive)
    funding_interval_hours: float | None = attrs.field(default=None, converter=_optional_number, validator=_positive)
    lot_size: float = attrs.field(default=0.0, converter=_number, validator=_non_negative)
    min_notional: float = attrs.field(default=0.0, converter=_number, validator=_non_negative)
    tick_size: float = attrs.field(default=0.0, converter=_number, validator=_non_negative)
    expiry: str | None = attrs.field(default=None, validator=_expiry_valid)

    def __attrs_post_init__(self):
        if (self.market == "future") != (self.expiry is not None):
            raise ValueError(f"market = {self.market!r} with expiry = {self.expiry!r}: a dated future "
                             "(market = \"future\") needs an expiry, and only futures have one")

    @property
    def key(self) -> str:
        """Unique id across exchanges: `exchange:symbol`."""
        return f"{self.exchange}:{self.symbol}"

    @property
    def is_derivative(self) -> bool:
        return self.market != "spot"

    @property
    def is_inverse(self) -> bool:
        return self.contract == "inverse"

    @property
    def native_id(self) -> str:
        """Exchange-style id without separators (`BTCUSDT`; a dated future `BTCUSDT_241227`, Binance's
        delivery-contract id), used to look up rule brackets."""
        if self.expiry is not None:
            return f"{self.base}{self.quote}_{parse_expiry(self.expiry):%y%m%d}"
        return f"{self.base}{self.quote}"

    @property
    def expiry_ns(self) -> int | None:
        """The expiry as ns since the epoch (UTC); None for spot and perpetuals."""
        if self.expiry is None:
            return None
        moment = parse_expiry(self.expiry)
        return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000

    @classmethod
    def from_mapping(cls, data: dict) -> "Instrument":
        """Build from a `dataset.toml` `[[instruments]]` table; unknown keys are an error."""
        known = {a.name for a in attrs.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown keys {unknown}; allowed: {sorted(known)}")
        values = dict(data)
        if "settle" not in values:
            values["settle"] = values.get("quote", "")
        return cls(**values)

    def to_mapping(self) -> dict:
        return {k: v for k, v in attrs.asdict(self).items() if v is not None}
