"""Portfolio margin: the whole account is one risk unit, margined by the exchange's published
method (`xmargin.margin.portfolio`, parameters `xmargin.venues.rules.portfolio`).

Legs for the kernel: every position (all cross: the venues' portfolio modes have no isolated
positions), then every coin balance as a collateral leg (haircut coin amount, priced from the feed:
spot hedging), on the stablecoins' collateral value; positions settled in a coin count at that
coin's price (as in multi-asset mode). The unit carries a `BookRequirement`: its maintenance and
initial margin come from the method over the same legs, not from per-position brackets.

Maintenance margin here is the liquidation requirement (equity at or below it liquidates): for
Binance PM that is 1.05 x Binance's accountMaintMargin (uniMMR <= 1.05). Open orders reserve the
change of initial margin they would cause if filled (never below 0; `pool_order_margin`). Orders that add exposure are
refused while the account is in the variant's reduce-only band (Binance: uniMMR <= 1.2).
"""

from __future__ import annotations

import math

import attrs

from xmargin.errors import RulesError
from xmargin.margin.modes.multi_asset import counted_collateral, wallet_value  # noqa: F401 (the mode API: the same one USD pool)
from xmargin.margin.kernel import Legs, valuate
from xmargin.margin.portfolio import COLLATERAL, BookRequirement, portfolio_book
from xmargin.margin.units import CROSS, RiskUnit, asset_price, asset_price_column, cross_unit_name

POOL = "USD"
DEFAULT_POSITION_MODE = CROSS
POSITION_MODES = (CROSS,)
CONFIG_KEYS = ("portfolio_margin",)  # `exchanges.<name>.portfolio_margin`: a variant name of the rule set


def config_problem(rules, entry: dict) -> str:
    """The rule set must have portfolio-margin rules; a named variant must be one of them."""
    if rules.portfolio is None:
        return (f"margin_mode = 'portfolio': rule set {rules.name} has no portfolio_margin rules; use a rule set "
                "that has them (binance-usdm, okx-swap, bybit-linear)")
    variant = entry.get("portfolio_margin")
    if variant is not None:
        try:
            rules.portfolio.variant(str(variant), None)
        except RulesError as exc:
            return f"portfolio_margin: {exc}"
    return ""


def pool_of(asset: str) -> str:
    """Every asset belongs to the one USD pool."""
    return POOL


def variant_of(catalog, exchange: str):
    """The portfolio-margin variant this run uses on `exchange` (resolved when the run starts)."""
    venue = catalog.venues[exchange]
    variant = getattr(venue, "portfolio_variant", None)
    if variant is None:
        rules = venue.rules
        if rules.portfolio is None:
            raise ValueError(f"rule set {rules.name} has no portfolio_margin rules")
        variant = rules.portfolio.variant(None, None)
    return variant


def _unit(account, catalog, book, prices) -> RiskUnit:
    rows, moving = [], []  # moving: `RiskUnit.scale_columns`
    for k in range(len(book.quantities)):
        if book.kinds[k] == COLLATERAL:
            rows.append((int(book.columns[k]), float(book.quantities[k]), 0.0, 0.0, None, math.inf, None, 1.0))
            continue
        key = book.instruments[len(rows)]
        position = account.positions[key]
        scale = asset_price(catalog, account.exchange, position.asset, prices) if prices is not None else 1.0
        column = asset_price_column(catalog, account.exchange, position.asset)
        if prices is not None and column is not None and math.isfinite(scale):
            moving.append((len(rows), column))
        rows.append((int(book.columns[k]), float(book.quantities[k]), float(book.entries[k]), float(book.sizes[k]),
                     book.tables[k], float(book.leverages[k]), None, scale if math.isfinite(scale) else 1.0))
    name = cross_unit_name(POOL)
    return RiskUnit(account.exchange, POOL, name, False, book.instruments, tuple(rows), book.base,
                    account.warning_levels.get(name, 0), len(book.instruments), BookRequirement(book),
                    scale_columns=tuple(moving))


@attrs.frozen
class _Filled:
    """A position as if an order had filled (the fields the book reads; ledger state is not
    imported here: the ledger reads the mode registry)."""

    instrument: str
    quantity: float
    entry_price: float
    margin_mode: str
    isolated_margin: float
    asset: str


def _with_orders(account, catalog, prices):
    """The positions as if every open derivatives order had filled (market orders at `prices`)."""
    positions = dict(account.positions)
    for order in account.orders.values():
        tradable = catalog.tradable(order.instrument)
        if not tradable.instrument.is_derivative or order.reduce_only:
            continue
        held = positions.get(order.instrument)
        price = order.limit_price if order.order_type == "limit" else float(prices[tradable.column])
        quantity = (held.quantity if held is not None else 0.0) + order.quantity
        if abs(quantity) < 1e-12:
            positions.pop(order.instrument, None)
        else:
            positions[order.instrument] = _Filled(order.instrument, quantity, price if held is None else
                                                   held.entry_price, CROSS, 0.0, tradable.instrument.settle)
    return positions


def initial_margin(book, prices) -> float:
    """The book's initial margin at its own legs' prices taken from a feed row."""
    legs = Legs.build(list(book.quantities), list(book.entries), [], size=list(book.sizes),
                      table=[-1] * len(book.quantities), requirement=BookRequirement(book))
    return float(valuate(legs, prices[book.columns]).initial_margin[0]) if len(book.quantities) else 0.0


def risk_units(account, catalog, prices=None, now_ns=None) -> list[RiskUnit]:
    """The account's one portfolio unit (an account without positions or coins still has one, so a
    warning can clear); `now_ns` gives the futures' time to expiry (basis charge)."""
    return [_unit(account, catalog, portfolio_book(account, catalog, variant_of(catalog, account.exchange), prices,
                                                   now_ns), prices)]


def pool_order_margin(account, catalog, prices, pool: str) -> float:
    """Initial margin reserved by open orders: the rise of the portfolio's initial margin if every
    open derivatives order filled (market orders at `prices`, the last closes), never below 0."""
    if not any(catalog.tradable(o.instrument).instrument.is_derivative and not o.reduce_only
               for o in account.orders.values()):
        return 0.0
    variant = variant_of(catalog, account.exchange)
    book = portfolio_book(account, catalog, variant, prices, None)
    filled = portfolio_book(account, catalog, variant, prices, None, positions=_with_orders(account, catalog, prices))
    return max(initial_margin(filled, prices) - initial_margin(book, prices), 0.0)


def order_check(account, catalog, marks, now_ns, before, after, fee: float) -> str:
    """Why an order is refused, or "": `after` (the account as the order leaves it, from
    `xmargin.ledger.decide.whole_account_check`) must keep equity - `fee` (USD) above its initial
    margin, unless the order lowers the initial margin from `before` (the same account without
    this order, its other open orders counted alike: a hedge or a cut). In the variant's reduce-only
    band, judged on `account` as it is (Binance: uniMMR <= 1.2), only such orders pass."""
    variant = variant_of(catalog, account.exchange)
    book_after = portfolio_book(after, catalog, variant, marks, now_ns)
    unit_after = _unit(after, catalog, book_after, marks)
    value = valuate(unit_after.legs, marks[unit_after.columns])
    equity, initial = float(value.equity[0]) - fee, float(value.initial_margin[0])
    before_initial = initial_margin(portfolio_book(before, catalog, variant, marks, now_ns), marks)
    if variant.reduce_only_level and initial > before_initial + 1e-9:
        unit_now = _unit(account, catalog, portfolio_book(account, catalog, variant, marks, now_ns), marks)
        now = valuate(unit_now.legs, marks[unit_now.columns])
        maintenance = float(now.maintenance_margin[0]) / variant.liquidation_level
        if maintenance > 0 and float(now.equity[0]) <= variant.reduce_only_level * maintenance:
            return (f"portfolio margin: uniMMR {float(now.equity[0]) / maintenance:.3f} is at or below "
                    f"{variant.reduce_only_level:g} ({variant.name}): only orders that reduce the margin are accepted")
    if initial > equity + 1e-9 and initial > before_initial + 1e-9:
        return (f"insufficient margin: after this order the portfolio initial margin would be {initial:.2f} USD "
                f"({variant.name}) against equity {equity:.2f} (after the fee)")
    return ""
