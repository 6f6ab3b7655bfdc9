"""Domain events: the only way account state changes.

Each event is a frozen record of a fact that happened at `ts` (ns since epoch, UTC) on one
exchange account. `xmargin.ledger.apply.apply` folds them into state; the run's `events.arrow` is the
whole log and every other output table is a projection of it. Money fields are in the asset the
event names (`asset`), quantities in base units (signed: + buys / long, - sells / short).
"""

from __future__ import annotations

import attrs

_EVENT_TYPES: dict[str, type] = {}


def event(cls):
    """Register a frozen event class under its class name (the `type` column of the log)."""
    cls = attrs.frozen(slots=True)(cls)
    _EVENT_TYPES[cls.__name__] = cls
    return cls


def event_types() -> dict[str, type]:
    return dict(_EVENT_TYPES)


@event
class CollateralDeposited:
    """Initial collateral (or an external deposit) credited to an account's wallet."""

    ts: int
    exchange: str
    asset: str
    amount: float


@event
class OrderAccepted:
    """An order passed the exchange's checks and now rests until it fills or is cancelled."""

    ts: int
    exchange: str
    instrument: str
    order_id: int
    quantity: float
    order_type: str
    limit_price: float
    reduce_only: bool
    margin_mode: str
    leverage: float
    tag: str


@event
class OrderRejected:
    """A command the exchange refused, with the reason (never an exception)."""

    ts: int
    exchange: str
    instrument: str
    order_id: int
    quantity: float
    reason: str
    tag: str


@event
class OrderCancelled:
    ts: int
    exchange: str
    instrument: str
    order_id: int
    reason: str


@event
class OrderFilled:
    """A fill. For derivatives it moves the position and books `realized_pnl` (settle asset);
    for spot (`market == "spot"`) it moves the base and the quote (`asset`) balances. Inverse
    contracts (`inverse`) count `quantity` in contracts and PnL in the coin. `margin_delta` is the isolated margin that
    the fill allocates (+) or releases (-) between the wallet and the position."""

    ts: int
    exchange: str
    instrument: str
    order_id: int
    quantity: float
    price: float
    liquidity: str
    realized_pnl: float
    margin_delta: float
    asset: str
    market: str
    tag: str
    inverse: bool = False


@event
class FeeCharged:
    ts: int
    exchange: str
    instrument: str
    order_id: int
    asset: str
    amount: float


@event
class FundingSettled:
    """Funding on one position: `amount` is what the account receives (negative: pays).
    amount = -quantity x mark_price x rate. Isolated positions take it into their margin."""

    ts: int
    exchange: str
    instrument: str
    asset: str
    quantity: float
    price: float
    rate: float
    amount: float
    isolated: bool


@event
class LeverageChanged:
    ts: int
    exchange: str
    instrument: str
    leverage: float


@event
class MarginModeChanged:
    ts: int
    exchange: str
    instrument: str
    margin_mode: str


@event
class IsolatedMarginAdjusted:
    """Margin moved between the wallet and an isolated position (+ added, - removed)."""

    ts: int
    exchange: str
    instrument: str
    asset: str
    amount: float


@event
class MarginWarningRaised:
    """The account's (or an isolated position's) margin ratio crossed a warning threshold.
    `level` is how many thresholds are now exceeded (0 = back below all of them)."""

    ts: int
    exchange: str
    instrument: str
    level: int
    threshold: float
    margin_ratio: float


@event
class PositionLiquidated:
    """The exchange closed (part of) a position. `trigger_price` is the mark at which the
    account reached maintenance; the position closed at `price` (bankruptcy or trigger price
    per the rule set). `fee` is the liquidation fee, `realized_pnl` the loss booked."""

    ts: int
    exchange: str
    instrument: str
    quantity: float
    price: float
    trigger_price: float
    realized_pnl: float
    fee: float
    margin_released: float
    asset: str
    isolated: bool
    policy: str


@event
class ContractExpired:
    """A dated future expired with a position open: the position (`quantity`, signed as held) closed
    at `settlement_price` (the venue's settlement average; `settlement_source` says which series
    and window stood in for it), booking `realized_pnl` and the settlement `fee` in `asset`; an
    isolated position's margin (`margin_released`) returns to the wallet."""

    ts: int
    exchange: str
    instrument: str
    quantity: float
    settlement_price: float
    realized_pnl: float
    fee: float
    margin_released: float
    asset: str
    settlement_source: str


@event
class InsuranceFundUsed:
    """The exchange's insurance fund absorbed a loss. `credited`: it covered a balance that would
    have gone negative (the amount is credited to the account); otherwise it is the fund's own loss
    unwinding at the market a position it took over at the bankruptcy price (recorded only)."""

    ts: int
    exchange: str
    instrument: str
    asset: str
    amount: float
    credited: bool = True


@event
class CollateralConverted:
    """The exchange sold `from_amount` of one asset for `to_amount` of another (after `fee`, in
    `to_asset`) at `price` (to_asset per from_asset) to cover a negative balance."""

    ts: int
    exchange: str
    from_asset: str
    from_amount: float
    to_asset: str
    to_amount: float
    price: float
    fee: float


@event
class TransferSent:
    """An asset left `exchange` for `destination`; `fee` is the withdrawal fee (same asset)."""

    ts: int
    exchange: str
    transfer_id: int
    destination: str
    asset: str
    amount: float
    fee: float
    arrives_ts: int


@event
class TransferArrived:
    ts: int
    exchange: str
    transfer_id: int
    source: str
    asset: str
    amount: float


@event
class TransferRejected:
    ts: int
    exchange: str
    transfer_id: int
    destination: str
    asset: str
    amount: float
    reason: str


@event
class RunStopped:
    """The run stopped early (e.g. `on_liquidation = "stop"`)."""

    ts: int
    exchange: str
    reason: str
