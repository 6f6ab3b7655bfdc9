"""What a run trades: each exchange's venue (rules, margin mode, collateral) and its instruments."""

from __future__ import annotations

import attrs

from xmargin.venues.instruments import Instrument
from xmargin.venues.rules import BracketTable, RuleSet


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
    fees: dict = attrs.field(factory=dict)  # market -> FeeRates or None (xmargin.venues.fees.market_fees)
    portfolio_variant: object = None  # portfolio mode: the rule set's variant this run uses


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
    """Venues by exchange, tradables by key, and where each exchange reads an asset's price:
    `asset_columns[(exchange, asset)]` is a feed column (its spot market against a stablecoin on
    that exchange, else its perp there, else any market of that base)."""

    venues: dict
    tradables: dict
    asset_columns: dict = attrs.field(factory=dict)

    @classmethod
    def create(cls, venues: dict, tradables: dict) -> "Catalog":
        from xmargin.margin.collateral import STABLECOINS

        def rank(tradable, exchange):
            instrument = tradable.instrument
            return (instrument.exchange != exchange, instrument.market != "spot", instrument.market == "future",
                    instrument.quote not in STABLECOINS, tradable.column)

        columns = {}
        for exchange in venues:
            for asset in sorted({t.instrument.base for t in tradables.values()}):
                candidates = [t for t in tradables.values() if t.instrument.base == asset]
                if candidates:
                    columns[(exchange, asset)] = min(candidates, key=lambda t: rank(t, exchange)).column
        return cls(venues=venues, tradables=tradables, asset_columns=columns)

    def tradable(self, key: str) -> Tradable:
        """The tradable of an `exchange:symbol` key; an unknown key is an error listing the known ones."""
        try:
            return self.tradables[key]
        except KeyError:
            from xmargin.errors import DatasetError

            raise DatasetError(f"unknown instrument {key!r}: this run trades {sorted(self.tradables)} (keys are "
                               "'exchange:symbol' as declared in dataset.toml).") from None

    def with_rules_in_force(self, names: dict, start_ns: int) -> "Catalog":
        """Every venue's rule set as it stood at `start_ns` (its dated variants; `names` may pick one
        per exchange)."""
        venues = {exchange: attrs.evolve(venue, rules=venue.rules.in_force(start_ns, names.get(exchange)))
                  if venue.rules.variants else venue for exchange, venue in self.venues.items()}
        return Catalog(venues=venues, tradables=self.tradables, asset_columns=self.asset_columns)

    def with_portfolio_variants(self, names: dict, start_ns: int) -> "Catalog":
        """Every venue whose rule set has portfolio-margin rules with its variant resolved (the
        portfolio mode reads it): the one `names` gives for its exchange, else the one in force at
        `start_ns` (the run's first bar)."""
        venues = dict(self.venues)
        for exchange, venue in self.venues.items():
            if venue.rules.portfolio is not None and venue.portfolio_variant is None:
                variant = venue.rules.portfolio.variant(names.get(exchange), start_ns)
                venues[exchange] = attrs.evolve(venue, portfolio_variant=variant)
        return Catalog(venues=venues, tradables=self.tradables, asset_columns=self.asset_columns)

    def on_exchange(self, exchange: str) -> list[Tradable]:
        return [t for t in self.tradables.values() if t.instrument.exchange == exchange]
