"""Portfolio margin: one account valued as a whole, from the exchange's published method.

`PortfolioBook` holds an account's legs in columns (every balance as collateral, every position);
`valuate_book` returns its equity, maintenance and initial margin at any array of price cases
(one case, the intrabar path points of a stretch, shocked moves), with the per-underlying terms.

Money is in USD: stablecoins at 1, a coin balance at its price times its collateral ratio
(positive balances only; a debt counts in full), linear contracts' PnL in their stablecoin, an
inverse contract's coin PnL at the contract's own price.

Methods (parameters: `xmargin.venues.rules.portfolio`):

* "bracket" (Binance Portfolio Margin): maintenance = sum of the positions' bracket maintenance
  margins (as in single-asset mode, in USD); initial = notional / leverage; the account is
  liquidated at uniMMR = equity / maintenance <= `liquidation_level`.
* "stress" (OKX, Deribit grid, Bybit UTA): per underlying (its spot balance, perps and futures),
  with D = the USD delta (dEquity / d(relative move) of every leg of that underlying):
    MR1 = max over `price_moves` m of -m x D (the grid includes 0, so >= 0);
    MR6 = `extreme_weight` x max over `extreme_moves` of -m x D;
    MR4 = `basis_annualised_move` x years to expiry x |notional| of each dated future;
    contingency = `futures_contingency` x min(long, short) derivatives notional;
    MR7 = `minimum_charge_rate` x gross derivatives notional, each band's increment times its
          multiplier (OKX: "only the incremental amount ... adjusted based on the next tier");
    maintenance = max(max(MR1, MR6) + MR4 + contingency, MR7); initial = `initial_factor` x it.
  Every leg of an underlying moves by the same fraction (basis moves are MR4's business), so a
  delta-one book's revaluation is linear in the move: the loss is |D| x the largest move on the
  side that hurts. Options terms (MR2 theta, MR3 vega, vega contingencies) are zero: no options.
"""

from __future__ import annotations

import math

import attrs
import numpy as np

from xmargin.margin import formulas as margin
from xmargin.margin.collateral import STABLECOINS, collateral_value, effective_quantity, schedule_for

YEAR_NS = 365.0 * 86_400 * 1_000_000_000
COLLATERAL, PERP, FUTURE = 0, 1, 2


@attrs.frozen(eq=False)
class PortfolioBook:
    """An account's legs (columnar). Per leg: feed `columns`, signed `quantities` (base units;
    contracts for inverse; a collateral leg's effective coin amount after its haircut), `entries`
    (0 for collateral), `sizes` (inverse contract size in USD, 0 otherwise), `kinds` (COLLATERAL,
    PERP, FUTURE), `years_left` (futures: years to expiry at the book's time, else 0), `underlying`
    (index into `underlyings`), `tables` (BracketTable or None), `leverages` (inf for collateral).
    `base`: the stablecoins' collateral value (USD). `instruments`: the position legs' keys."""

    exchange: str
    columns: np.ndarray
    quantities: np.ndarray
    entries: np.ndarray
    sizes: np.ndarray
    kinds: np.ndarray
    years_left: np.ndarray
    underlying: np.ndarray
    underlyings: tuple[str, ...]
    tables: tuple
    leverages: np.ndarray
    base: float
    instruments: tuple[str, ...]
    variant: object
    taker_fee: float = 0.0

    @property
    def positions(self) -> int:
        return int((self.kinds != COLLATERAL).sum())


@attrs.frozen(eq=False)
class BookValuation:
    """Per case (shape (C,)): `equity`, `maintenance_margin`, `initial_margin`; `terms`: per
    underlying a dict of per-case arrays (MR1, MR6, MR4, contingency, MR7, maintenance)."""

    equity: np.ndarray
    maintenance_margin: np.ndarray
    initial_margin: np.ndarray
    terms: dict


def portfolio_book(account, catalog, variant, prices, now_ns: int | None, positions=None,
                   balances=None) -> PortfolioBook:
    """The book of `account` at `now_ns` (ns; None: futures count no time to expiry): every position
    (whatever its mode), then the balances as collateral legs (coins with a price in the feed at
    `prices`; a coin without one counts nothing). `positions` / `balances` replace the account's
    (a hypothetical book: an order as if filled)."""
    rules = catalog.venues[account.exchange].rules
    positions = account.positions if positions is None else positions
    balances = account.balances if balances is None else balances
    default_leverage = catalog.venues[account.exchange].leverage
    rows = []
    for key in sorted(positions):
        position = positions[key]
        tradable = catalog.tradable(key)
        instrument = tradable.instrument
        expiry = instrument.expiry_ns
        years = max(expiry - now_ns, 0) / YEAR_NS if expiry is not None and now_ns is not None else 0.0
        rows.append((tradable.column, position.quantity, position.entry_price,
                     instrument.contract_size if instrument.is_inverse else 0.0,
                     FUTURE if expiry is not None else PERP, years, instrument.base, tradable.brackets,
                     account.leverage.get(key, default_leverage), key))
    base = 0.0
    for asset in sorted(balances):
        balance = balances[asset]
        if balance == 0:
            continue
        schedule = schedule_for(rules, asset)
        if asset in STABLECOINS:
            base += collateral_value(balance, 1.0, schedule)
            continue
        column = catalog.asset_columns.get((account.exchange, asset))
        price = float(prices[column]) if column is not None and prices is not None else math.nan
        if column is None or not math.isfinite(price):
            continue
        rows.append((column, effective_quantity(balance, price, schedule), 0.0, 0.0, COLLATERAL, 0.0, asset, None,
                     math.inf, ""))
    underlyings = tuple(sorted({r[6] for r in rows}))
    return PortfolioBook(
        exchange=account.exchange,
        columns=np.array([r[0] for r in rows], dtype=np.int64),
        quantities=np.array([r[1] for r in rows], dtype=np.float64),
        entries=np.array([r[2] for r in rows], dtype=np.float64),
        sizes=np.array([r[3] for r in rows], dtype=np.float64),
        kinds=np.array([r[4] for r in rows], dtype=np.int64),
        years_left=np.array([r[5] for r in rows], dtype=np.float64),
        underlying=np.array([underlyings.index(r[6]) for r in rows], dtype=np.int64),
        underlyings=underlyings, tables=tuple(r[7] for r in rows),
        leverages=np.array([r[8] for r in rows], dtype=np.float64), base=float(base),
        instruments=tuple(r[9] for r in rows if r[4] != COLLATERAL), variant=variant, taker_fee=rules.taker_fee)


@attrs.frozen(eq=False)
class BookRequirement:
    """The kernel's whole-unit model for a portfolio book (`xmargin.margin.kernel.Legs.requirements`):
    called with the book's leg prices (C, L), returns (maintenance, initial margin) per case.
    Maintenance here is what the venue liquidates at: the method's maintenance margin times the
    variant's `liquidation_level` (Binance PM: uniMMR <= 1.05)."""

    book: PortfolioBook

    def __call__(self, prices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        valued = valuate_book(self.book, prices)
        return valued.maintenance_margin * self.book.variant.liquidation_level, valued.initial_margin


def leg_usd(book: PortfolioBook, prices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(value, delta, notional) per leg at `prices` (C, L), in USD: value = the leg's contribution
    to equity (collateral: its haircut value; positions: unrealised PnL), delta = d value / d
    (relative move of its price), notional = |position value| (0 for collateral)."""
    p = np.asarray(prices, dtype=np.float64)
    q, e, size = book.quantities, book.entries, book.sizes
    inverse = size > 0
    collateral = book.kinds == COLLATERAL
    safe_p = np.where(inverse, np.maximum(p, 1e-300), 1.0)
    safe_e = np.where(inverse & (e > 0), e, 1.0)
    value = np.where(collateral, q * p, q * (p - e))
    delta = q * p
    notional = np.where(collateral, 0.0, np.abs(q) * p)
    if inverse.any():  # coin PnL q size (1/e - 1/p) valued at p: q size (p/e - 1), linear in the move
        value = np.where(inverse, q * size * (safe_p / safe_e - 1.0), value)
        delta = np.where(inverse, q * size * safe_p / safe_e, delta)
        notional = np.where(inverse, np.abs(q) * size, notional)
    return value, delta, notional


def scaled_minimum_charge(raw: np.ndarray, bands) -> np.ndarray:
    """OKX MR7 scaling: each band's increment of the raw charge times that band's multiplier.
    `bands`: ((upper bound, multiplier), ...) ascending, the last bound inf; no bands: raw."""
    if not bands:
        return raw
    out = np.zeros_like(raw)
    lower = 0.0
    for upper, multiplier in bands:
        out += np.clip(raw - lower, 0.0, upper - lower) * multiplier
        lower = upper
    return out


def stress_maintenance(mr1, mr6, mr4, contingency, mr7):
    """OKX's aggregation of one risk unit, options terms (MR2, MR3, MR5 and MR9's cross-stablecoin
    hedge, none here) at zero: max(max(MR1, MR6) + MR4 + contingency, MR7)."""
    return np.maximum(np.maximum(mr1, mr6) + mr4 + contingency, mr7)


def _per_underlying(book: PortfolioBook, values: np.ndarray, mask=None) -> np.ndarray:
    """Sum per-leg values (C, L) into underlyings (C, U), over the legs in `mask`."""
    cases = values.shape[0]
    out = np.zeros((cases, len(book.underlyings)))
    for u in range(len(book.underlyings)):
        legs = book.underlying == u if mask is None else (book.underlying == u) & mask
        if legs.any():
            out[:, u] = values[:, legs].sum(axis=1)
    return out


def valuate_book(book: PortfolioBook, prices: np.ndarray) -> BookValuation:
    """Equity, maintenance and initial margin of the book at `prices` ((L,) one case or (C, L))."""
    p = np.atleast_2d(np.asarray(prices, dtype=np.float64))
    value, delta, notional = leg_usd(book, p)
    equity = book.base + value.sum(axis=1)
    variant = book.variant
    positions = book.kinds != COLLATERAL
    if variant.method == "bracket":
        maintenance = np.zeros(p.shape[0])
        initial = np.zeros(p.shape[0])
        for k in np.flatnonzero(positions):
            table = book.tables[k]
            inverse = book.sizes[k] > 0
            settle_notional = notional[:, k] / p[:, k] if inverse else notional[:, k]  # coin for inverse brackets
            leg_mm = margin.maintenance_margin_array(settle_notional, table)
            maintenance += leg_mm * p[:, k] if inverse else leg_mm
            initial += notional[:, k] / book.leverages[k]
        return BookValuation(equity, maintenance, initial, {})
    terms = {}
    total = np.zeros(p.shape[0])
    exposure = _per_underlying(book, delta)
    derivatives = positions
    gross = _per_underlying(book, notional, derivatives)
    longs = _per_underlying(book, np.where(book.quantities > 0, notional, 0.0), derivatives)
    shorts = _per_underlying(book, np.where(book.quantities < 0, notional, 0.0), derivatives)
    futures = book.kinds == FUTURE
    for u, asset in enumerate(book.underlyings):
        d = exposure[:, u:u + 1]
        moves = np.array(variant.moves("price_moves", asset))
        extreme = np.array(variant.moves("extreme_moves", asset))
        mr1 = np.max(-d * moves[None, :], axis=1) if moves.size else np.zeros(p.shape[0])
        mr6 = (float(variant.value("extreme_weight", asset, 1.0)) * np.max(-d * extreme[None, :], axis=1)
               if extreme.size > 1 else np.zeros(p.shape[0]))
        dated = futures & (book.underlying == u)
        mr4 = float(variant.value("basis_annualised_move", asset, 0.0)) * (
            notional[:, dated] * book.years_left[dated]).sum(axis=1)
        contingency = float(variant.value("futures_contingency", asset, 0.0)) * np.minimum(longs[:, u], shorts[:, u])
        rate = variant.value("minimum_charge_rate", asset, 0.0)
        rate = book.taker_fee if rate == "taker" else float(rate)
        mr7 = scaled_minimum_charge(rate * gross[:, u], variant.bands(asset))
        requirement = stress_maintenance(mr1, mr6, mr4, contingency, mr7)
        terms[asset] = {"MR1": mr1, "MR6": mr6, "MR4": mr4, "contingency": contingency, "MR7": mr7,
                        "maintenance": requirement, "delta": d[:, 0]}
        total += requirement
    return BookValuation(equity, total, variant.initial_factor * total, terms)
