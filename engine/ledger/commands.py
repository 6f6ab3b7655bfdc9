"""Commands: what a strategy asks for. The engine turns each into events or a rejection event."""

from __future__ import annotations

import decimal
import numbers

import attrs
import numpy as np

from xmargin.margin.modes import POSITION_MODES

ORDER_TYPES = ("market", "limit")
MARGIN_MODES = POSITION_MODES  # a position's mode: its account's pool (cross) or its own margin (isolated)

# Checked where a strategy builds a command (its traceback then points at the line): a value of the
# wrong kind is refused there, not rejected later for another reason or truncated in the event log.
def _text(instance, attribute, value) -> None:
    """Validator: the field is text (an instrument `exchange:symbol`, an exchange, an asset)."""
    if not isinstance(value, str):
        raise TypeError(f"{type(instance).__name__}.{attribute.name} must be text, got {value!r} "
                        f"({type(value).__name__})")


def _flag(value) -> bool:
    """True or False (a numpy bool too); anything else is refused (the string "no" is not False)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"PlaceOrder.reduce_only must be True or False, got {value!r} ({type(value).__name__})")


def _tag(value) -> str:
    """The strategy's label for an order: text (None: no label)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    raise TypeError(f"PlaceOrder.tag must be text, got {value!r} ({type(value).__name__}); e.g. tag=str({value!r})")


def _number(field: str):
    """Converter of a command's amount (quantity, price, leverage, margin, transfer) to float: a
    number (int, float, numpy's, Decimal, Fraction); text or a bool is refused (True is not 1 lot,
    "0.1" is a strategy bug to fix where it happens)."""
    def convert(value) -> float:
        if type(value) is float:  # (the usual case, first)
            return value
        if isinstance(value, (numbers.Real, decimal.Decimal)) and not isinstance(value, (bool, np.bool_)):
            return float(value)
        raise TypeError(f"{field} must be a number, got {value!r} ({type(value).__name__})"
                        + (f"; e.g. float({value!r})" if isinstance(value, str) else ""))

    return convert


def _no_limit_price_for_market(instance, attribute, value) -> None:
    """Validator: a market order takes no limit price (0); one given would be silently ignored."""
    if instance.order_type == "market" and value != 0.0:
        raise ValueError(f"PlaceOrder: a market order has no limit price (got {value!r}); a limit order is "
                         "PlaceOrder.limit(instrument, quantity, price)")


def _order_id(value) -> int:
    """An order id: a whole number (an OrderAccepted's `order_id`)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and float(value).is_integer():
        return int(value)
    raise TypeError(f"CancelOrder.order_id must be a whole number (the order_id of an OrderAccepted event), got "
                    f"{value!r}")


@attrs.frozen
class PlaceOrder:
    """Buy (quantity > 0) or sell (quantity < 0) `quantity` base units of `instrument`
    (`exchange:symbol`). Market orders fill at the next bar's open plus slippage; limit orders when
    a later bar trades through `limit_price` (0 for market orders). `margin_mode` opens the position isolated or cross
    (mixed mode: an isolated position inside a cross account); `leverage` sets the position's
    leverage first (capped by the bracket's maximum, else rejected)."""

    instrument: str = attrs.field(validator=_text)
    quantity: float = attrs.field(converter=_number("PlaceOrder.quantity"))
    order_type: str = attrs.field(default="market", validator=attrs.validators.in_(ORDER_TYPES))
    limit_price: float = attrs.field(default=0.0, converter=_number("PlaceOrder.limit_price"),
                                     validator=_no_limit_price_for_market)  # 0: none (market order)
    reduce_only: bool = attrs.field(default=False, converter=_flag)
    margin_mode: str | None = attrs.field(default=None, validator=attrs.validators.optional(
        attrs.validators.in_(MARGIN_MODES)))
    leverage: float | None = attrs.field(default=None,
                                         converter=attrs.converters.optional(_number("PlaceOrder.leverage")))
    tag: str = attrs.field(default="", converter=_tag)

    @classmethod
    def market(cls, instrument: str, quantity: float, **kwargs) -> "PlaceOrder":
        return cls(instrument, quantity, "market", **kwargs)

    @classmethod
    def limit(cls, instrument: str, quantity: float, price: float, **kwargs) -> "PlaceOrder":
        return cls(instrument, quantity, "limit", price, **kwargs)


@attrs.frozen
class CancelOrder:
    """Cancel the open order `order_id` on `exchange`."""

    exchange: str = attrs.field(validator=_text)
    order_id: int = attrs.field(converter=_order_id)


@attrs.frozen
class SetLeverage:
    instrument: str = attrs.field(validator=_text)
    leverage: float = attrs.field(converter=_number("SetLeverage.leverage"))


@attrs.frozen
class SetMarginMode:
    """Isolated or cross for one instrument; only while it has no position or open order."""

    instrument: str = attrs.field(validator=_text)
    margin_mode: str = attrs.field(validator=attrs.validators.in_(MARGIN_MODES))


@attrs.frozen
class AdjustIsolatedMargin:
    """Add (amount > 0) or remove (amount < 0) margin of an isolated position, settle asset units."""

    instrument: str = attrs.field(validator=_text)
    amount: float = attrs.field(converter=_number("AdjustIsolatedMargin.amount"))


@attrs.frozen
class Transfer:
    """Move `amount` of `asset` from one exchange account to another (withdrawal fee and delay apply)."""

    asset: str = attrs.field(validator=_text)
    amount: float = attrs.field(converter=_number("Transfer.amount"))
    source: str = attrs.field(validator=_text)
    destination: str = attrs.field(validator=_text)
