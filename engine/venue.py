"""What a run trades: each exchange's venue (rules, margin mode, collateral) and its instruments."""

from __future__ import annotations

import attrs

from engine.instruments import Instrument
from engine.rules import BracketTable, RuleSet


@attrs.frozen(eq=False)
class Venue:
    """One exchange account's configuration: the rule set it follows and how it is margined."""

    exchange: str
    rules: RuleSet
    margin_mode: str
    collateral: dict
    leverage: float
    withdrawal_fees: dict
    transfer_delay_minutes: dict


@attrs.frozen(eq=False)
class Tradable:
    """An instrument as the engine trades it: its column in the feed arrays and its brackets."""

    instrument: Instrument
    column: int
    brackets: BracketTable
    maker_fee: float
    taker_fee: float

    @property
    def key(self) -> str:
        return self.instrument.key


@attrs.frozen(eq=False)
class Catalog:
    venues: dict
    tradables: dict

    def tradable(self, key: str) -> Tradable:
        return self.tradables[key]

    def on_exchange(self, exchange: str) -> list[Tradable]:
        return [t for t in self.tradables.values() if t.instrument.exchange == exchange]
