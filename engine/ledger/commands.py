"""Commands: what a strategy asks for. The engine turns each into events or a rejection event."""

from __future__ import annotations

import attrs

from xmargin.margin.modes import POSITION_MODES

ORDER_TYPES = ("market", "limit")
MARGIN_MODES = POSITION_MODES  # a position's mode: its account's pool (cross) or its own margin (isolated)


@attrs.frozen
class PlaceOrder:
    """Buy (quantity > 0) or sell (quantity < 0) `quantity` base units of `instrument`
    (`exchange:symbol`). Market orders fill at the next bar's open plus slippage; limit orders when
    a later bar trades through `limit_price` (0 for market orders). `margin_mode` opens the position isolated or cross
    (mixed mode: an isolated position inside a cross account); `leverage` sets the position's
    leverage first (capped by the bracket's maximum, else rejected)."""

    instrument: str
    quantity: float = attrs.field(converter=float)
    order_type: str = attrs.field(default="market", validator=attrs.validators.in_(ORDER_TYPES))
    limit_price: float = attrs.field(default=0.0, converter=float)  # 0: none (market order)
    reduce_only: bool = False
    margin_mode: str | None = attrs.field(default=None, validator=attrs.validators.optional(
        attrs.validators.in_(MARGIN_MODES)))
    leverage: float | None = None
    tag: str = ""

    @classmethod
    def market(cls, instrument: str, quantity: float, **kwargs) -> "PlaceOrder":
        return cls(instrument, quantity, "market", **kwargs)

    @classmethod
    def limit(cls, instrument: str, quantity: float, price: float, **kwargs) -> "PlaceOrder":
        return cls(instrument, quantity, "limit", price, **kwargs)


@attrs.frozen
class CancelOrder:
    exchange: str
    order_id: int


@attrs.frozen
class SetLeverage:
    instrument: str
    leverage: float = attrs.field(converter=float)


@attrs.frozen
class SetMarginMode:
    """Isolated or cross for one instrument; only while it has no position or open order."""

    instrument: str
    margin_mode: str = attrs.field(validator=attrs.validators.in_(MARGIN_MODES))


@attrs.frozen
class AdjustIsolatedMargin:
    """Add (amount > 0) or remove (amount < 0) margin of an isolated position, settle asset units."""

    instrument: str
    amount: float = attrs.field(converter=float)


@attrs.frozen
class Transfer:
    """Move `amount` of `asset` from one exchange account to another (withdrawal fee and delay apply)."""

    asset: str
    amount: float = attrs.field(converter=float)
    source: str
    destination: str
