"""Ledger state: frozen values, changed only by `xmargin.ledger.apply.apply` through `attrs.evolve`."""

from __future__ import annotations

import attrs

from xmargin.margin.modes import default_position_mode
from xmargin.margin.units import ISOLATED


@attrs.frozen(slots=True)
class Position:
    """An open derivatives position.

    quantity: signed base units (+ long, - short). entry_price: average entry (quote per base).
    isolated_margin: margin held by the position itself when `margin_mode == "isolated"`
    (settle asset); 0 in cross, where the account's pool backs it.
    """

    instrument: str
    quantity: float
    entry_price: float
    margin_mode: str
    isolated_margin: float
    asset: str

    @property
    def is_isolated(self) -> bool:
        """Margined on its own margin (not by its account's pool)."""
        return self.margin_mode == ISOLATED


@attrs.frozen(slots=True)
class Order:
    """A resting order: market orders fill at the next bar's open, limits when a bar trades through."""

    order_id: int
    instrument: str
    quantity: float
    order_type: str
    limit_price: float
    reduce_only: bool
    margin_mode: str
    leverage: float
    accepted_ts: int
    tag: str


@attrs.frozen(slots=True)
class InFlight:
    """A transfer between exchanges: deducted at the source, backing nothing until it arrives."""

    transfer_id: int
    source: str
    destination: str
    asset: str
    amount: float
    arrives_ts: int


@attrs.frozen(slots=True)
class Account:
    """One exchange account: a collateral silo.

    balances: wallet balance per asset, excluding margin held by isolated positions.
    leverage / margin_modes: per-instrument settings (the account default applies otherwise).
    warning_level: how many margin-warning thresholds the account ratio exceeds now.
    """

    exchange: str
    margin_mode: str
    balances: dict
    positions: dict
    orders: dict
    leverage: dict
    margin_modes: dict
    warning_levels: dict
    insurance_used: dict

    @classmethod
    def empty(cls, exchange: str, margin_mode: str) -> "Account":
        return cls(exchange=exchange, margin_mode=margin_mode, balances={}, positions={}, orders={},
                   leverage={}, margin_modes={}, warning_levels={}, insurance_used={})

    def balance(self, asset: str) -> float:
        return self.balances.get(asset, 0.0)

    def wallet_total(self, asset: str) -> float:
        """Wallet balance plus margin held by isolated positions in `asset`."""
        return self.balance(asset) + sum(p.isolated_margin for p in self.positions.values() if p.asset == asset)

    def mode_for(self, instrument: str) -> str:
        """The margin mode of `instrument`'s position: its own setting, else the account mode's default."""
        mode = self.margin_modes.get(instrument)
        return mode if mode is not None else default_position_mode(self.margin_mode)


@attrs.frozen(slots=True)
class Ledger:
    """All accounts of a run, the transfers in flight, and the id counters."""

    accounts: dict
    in_flight: dict
    next_order_id: int = 1
    next_transfer_id: int = 1
    stopped: bool = False

    @classmethod
    def create(cls, margin_modes: dict[str, str]) -> "Ledger":
        return cls(accounts={ex: Account.empty(ex, mode) for ex, mode in margin_modes.items()}, in_flight={})
