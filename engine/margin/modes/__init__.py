"""The margin-mode registry: the one list of account margin modes that the config, the rule
sets, the commands and the engine read.

A mode is a module that turns an account into risk units for the valuation kernel
(`xmargin.margin.kernel`) and says how its pools count collateral:

    risk_units(account, catalog, prices=None) -> list[RiskUnit]   (prices: marks, for collateral legs)
    pool_of(settlement asset) -> pool name
    pool_order_margin(account, catalog, prices, pool) -> initial margin reserved by open orders
    wallet_value(account, catalog, prices, pool) -> the pool's wallet before haircuts
    counted_collateral(rules, asset, balance, price) -> what a balance adds as collateral
    DEFAULT_POSITION_MODE, POSITION_MODES  ("cross" / "isolated" positions it allows)
    optional: pool_value(account, catalog, marks, pool) -> `kernel.unit_one` of one pool from its rows
              (None: no such pool), so a fill's check needs no units of the state it values

Adding a mode: its module here, an entry in `_MODES` below, and the mode's name in the rule files'
`margin_modes` of the exchanges that offer it (docs/architecture.md).
"""

from __future__ import annotations

import attrs

from xmargin._memos import memo
from xmargin.margin.modes import cross, isolated, multi_asset, portfolio
from xmargin.margin.units import CROSS, POSITION_MODES


@attrs.frozen
class MarginMode:
    """One registered account margin mode. `module` implements it (None: reserved, refused
    with `unavailable`). `auto_exchange`: negative balances are covered by selling other
    collateral (where the rule set has an `auto_exchange` policy). `revalue_each_stretch`: the
    units depend on collateral prices, so the scan rebuilds them at every stretch.
    `pools_are_assets`: each pool is one asset's wallet (its wallet balance is that balance)."""

    name: str
    module: object | None
    summary: str
    auto_exchange: bool = False
    revalue_each_stretch: bool = False
    pools_are_assets: bool = True
    unavailable: str = ""
    uses_time: bool = False  # its units depend on the valuation time: `risk_units(..., now_ns)`
    margined_as_a_whole: bool = False  # the account is one unit with one requirement (not per-position margins)

    @property
    def default_position_mode(self) -> str:
        return self.module.DEFAULT_POSITION_MODE

    @property
    def position_modes(self) -> tuple[str, ...]:
        return self.module.POSITION_MODES

    def risk_units(self, account, catalog, prices=None, now_ns=None) -> list:
        """The account's risk units; `now_ns` (the valuation time, ns) reaches modes whose margin
        depends on time (portfolio margin: a dated future's time to expiry)."""
        if self.uses_time:
            return self.module.risk_units(account, catalog, prices, now_ns)
        return self.module.risk_units(account, catalog, prices)

    def pool_of(self, asset: str) -> str:
        return self.module.pool_of(asset)

    @property
    def config_keys(self) -> tuple[str, ...]:
        """Keys of an `[exchanges.<name>]` table that only this mode reads (e.g. `portfolio_margin`)."""
        return getattr(self.module, "CONFIG_KEYS", ())

    def config_problem(self, rules, entry: dict) -> str:
        """What is wrong with an exchange's config table for this mode ("" when nothing), as
        "<key> = <value>: <problem>"."""
        check = getattr(self.module, "config_problem", None)
        return check(rules, entry) if check is not None else ""


_MODES = (
    MarginMode("cross", cross, "one pool per settlement asset backs every cross position"),
    MarginMode("isolated", isolated, "every position on its own margin by default"),
    MarginMode("multi-asset", multi_asset, "one USD pool; every balance counts at price x collateral ratio",
               auto_exchange=True, revalue_each_stretch=True, pools_are_assets=False),
    MarginMode("portfolio", portfolio, "the whole account as one unit, margined by the exchange's published "
               "portfolio method (stress scenarios or uniMMR)", revalue_each_stretch=True, pools_are_assets=False,
               uses_time=True, margined_as_a_whole=True),
)
MODES: dict[str, MarginMode] = {mode.name: mode for mode in _MODES}
MODE_NAMES: tuple[str, ...] = tuple(MODES)


def margin_mode(name: str) -> MarginMode:
    """The registered mode `name` (KeyError naming the registered ones)."""
    try:
        return MODES[name]
    except KeyError:
        raise KeyError(f"margin mode {name!r} is not registered; registered: {list(MODE_NAMES)}") from None


_DEFAULT_POSITION_MODES = {mode.name: mode.default_position_mode for mode in _MODES if mode.module is not None}


def default_position_mode(account_mode: str) -> str:
    """The margin mode ("cross" / "isolated") a new position gets in an account of `account_mode`."""
    return _DEFAULT_POSITION_MODES.get(account_mode, CROSS)


def venue_mode(catalog, exchange: str) -> MarginMode:
    """The margin mode of `exchange`'s account in this run."""
    return MODES[catalog.venues[exchange].margin_mode]


_UNITS: dict[tuple, tuple] = memo()  # a few recent account states' units (small: old states are garbage soon)


def account_units(catalog, account, prices=None, now_ns=None) -> list:
    """The risk units of `account` as its venue's mode builds them. Units depend on the account's
    positions, balances, leverage settings and warning levels only (accounts are immutable values
    that share unchanged dicts), so they are built once per state of those: the scan, `decide`,
    order fills and the View value the same state several times. A mode with
    `revalue_each_stretch` builds them at `prices` every time."""
    mode = MODES[catalog.venues[account.exchange].margin_mode]
    if mode.revalue_each_stretch:  # (`now_ns`: the valuation time, for modes that use it)
        return mode.risk_units(account, catalog, prices, now_ns)
    positions, balances, leverage, levels = account.positions, account.balances, account.leverage, account.warning_levels
    key = (id(catalog), account.exchange, id(positions), id(balances), id(leverage), id(levels))
    hit = _UNITS.get(key)
    if hit is not None and hit[0] is catalog and hit[1] is positions and hit[2] is balances and hit[3] is leverage \
            and hit[4] is levels:
        return hit[5]
    if len(_UNITS) >= 8:
        _UNITS.clear()
    units = mode.module.risk_units(account, catalog, prices)
    _UNITS[key] = (catalog, positions, balances, leverage, levels, units)
    return units


__all__ = ["MODES", "MODE_NAMES", "POSITION_MODES", "MarginMode", "account_units", "default_position_mode", "margin_mode",
           "venue_mode"]
