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

from xmargin._memos import memo
from xmargin.margin import formulas as margin
from xmargin.margin.collateral import pooled_collateral

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
                     FUTURE if expiry is not None else PERP, years, instrument.base,
                     tradable.brackets.for_quantity(position.quantity,
                                                    instrument.contract_size if instrument.is_inverse else 0.0),
                     account.leverage.get(key, default_leverage), key))
    base, legs = pooled_collateral(rules, balances, lambda asset: (
        catalog.asset_columns.get((account.exchange, asset)),
        _price_at(prices, catalog.asset_columns.get((account.exchange, asset)))))
    rows.extend((column, amount, 0.0, 0.0, COLLATERAL, 0.0, asset, None, math.inf, "") for column, asset, amount in legs)
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


def _price_at(prices, column) -> float:
    return float(prices[column]) if column is not None and prices is not None else math.nan


@attrs.frozen(eq=False)
class BookRequirement:
    """The kernel's whole-unit model for a portfolio book (`xmargin.margin.kernel.Legs.requirements`):
    called with the book's leg prices (C, L), returns (maintenance, initial margin) per case.
    Maintenance here is what the venue liquidates at: the method's maintenance margin times the
    variant's `liquidation_level` (Binance PM: uniMMR <= 1.05)."""

    book: PortfolioBook

    def __call__(self, prices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        maintenance, initial, _ = evaluate_books([self.book], [prices])
        return maintenance[:, 0] * self.book.variant.liquidation_level, initial[:, 0]

    @staticmethod
    def evaluate_many(models, prices: np.ndarray, indices) -> tuple[np.ndarray, np.ndarray]:
        """The kernel's batch entry: every model's maintenance and initial margin, (C, K), in one
        pass; `prices` are the kernel's (L,) or (C, L), `indices` each model's leg positions in them.
        The prepared batch is kept while the same list of models comes back (the distance search)."""
        last = _LAST_BATCH.get("last")  # one lookup: another run's thread may replace or clear it
        if last is None or last[0] is not models:
            batch = BookBatch([m.book for m in models])
            gather = np.concatenate([indices[b] for b in batch.live]) if batch.live else np.zeros(0, dtype=np.int64)
            levels = np.array([m.book.variant.liquidation_level for m in models])
            last = _LAST_BATCH["last"] = (models, batch, gather, levels)
        _, batch, gather, levels = last
        maintenance, initial, _ = batch.evaluate(np.atleast_2d(np.asarray(prices, dtype=np.float64))[:, gather])
        return maintenance * levels, initial


_LAST_BATCH: dict = memo()  # "last": (models, their BookBatch, gather, levels) (the models are held: ids stay theirs)


def _leg_usd(q, e, size, kinds, p) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`leg_usd` on leg arrays (prices (C, L))."""
    inverse = size > 0
    collateral = kinds == COLLATERAL
    value = np.where(collateral, q * p, q * (p - e))
    delta = q * p
    notional = np.where(collateral, 0.0, np.abs(q) * p)
    if inverse.any():  # coin PnL q size (1/e - 1/p) valued at p: q size (p/e - 1), linear in the move
        safe_p = np.where(inverse, np.maximum(p, 1e-300), 1.0)
        safe_e = np.where(inverse & (e > 0), e, 1.0)
        value = np.where(inverse, q * size * (safe_p / safe_e - 1.0), value)
        delta = np.where(inverse, q * size * safe_p / safe_e, delta)
        notional = np.where(inverse, np.abs(q) * size, notional)
    return value, delta, notional


def leg_usd(book: PortfolioBook, prices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(value, delta, notional) per leg at `prices` (C, L), in USD: value = the leg's contribution
    to equity (collateral: its haircut value; positions: unrealised PnL), delta = d value / d
    (relative move of its price), notional = |position value| (0 for collateral)."""
    return _leg_usd(book.quantities, book.entries, book.sizes, book.kinds, np.asarray(prices, dtype=np.float64))


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


def _sum_by(values: np.ndarray, index: np.ndarray, count: int) -> np.ndarray:
    """Sum the columns of `values` (C, N) into `count` groups by `index` (N,): (C, count)."""
    if values.shape[0] == 1:
        return np.bincount(index, values[0], minlength=count)[None, :]
    onehot = np.zeros((len(index), count))
    onehot[np.arange(len(index)), index] = 1.0
    return values @ onehot


def _group_parameters(variant, asset: str, taker_fee: float) -> tuple:
    """(lowest move, highest move, extreme lowest, extreme highest, extreme weight, basis rate,
    contingency rate, minimum-charge rate, bands) of one underlying under one stress variant."""
    moves = variant.moves("price_moves", asset)
    extreme = variant.moves("extreme_moves", asset)
    rate = variant.value("minimum_charge_rate", asset, 0.0)
    return (min(moves), max(moves), min(extreme) if len(extreme) > 1 else 0.0,
            max(extreme) if len(extreme) > 1 else 0.0, float(variant.value("extreme_weight", asset, 1.0)),
            float(variant.value("basis_annualised_move", asset, 0.0)),
            float(variant.value("futures_contingency", asset, 0.0)),
            taker_fee if rate == "taker" else float(rate), variant.bands(asset))


class BookBatch:
    """Many books prepared once for repeated valuation (the distance search values the same books
    at dozens of prices): every leg of every book in flat arrays, the (book, underlying) groups and
    their parameters. `evaluate(prices)` takes the books' leg prices side by side, (C, sum of L_b)."""

    def __init__(self, books):
        self.books = list(books)
        self.live = [b for b, book in enumerate(self.books) if len(book.quantities)]
        live = self.live
        if not live:
            return
        self.q = np.concatenate([self.books[b].quantities for b in live])
        self.entries = np.concatenate([self.books[b].entries for b in live])
        self.sizes = np.concatenate([self.books[b].sizes for b in live])
        self.kinds = np.concatenate([self.books[b].kinds for b in live])
        self.years = np.concatenate([self.books[b].years_left for b in live])
        self.leverages = np.concatenate([self.books[b].leverages for b in live])
        self.leg_book = np.concatenate([np.full(len(self.books[b].quantities), n) for n, b in enumerate(live)])
        self.positions = self.kinds != COLLATERAL
        self.bracket = np.array([self.books[b].variant.method == "bracket" for b in live])
        self.leg_bracket = self.positions & self.bracket[self.leg_book]
        tables = [t for b in live for t in self.books[b].tables]
        by_table: dict = {}
        for k in np.flatnonzero(self.leg_bracket).tolist():
            by_table.setdefault(id(tables[k]), (tables[k], []))[1].append(k)
        self.by_table = [(table, np.array(index)) for table, index in by_table.values()]
        groups, leg_group, cache, offset = [], np.zeros(len(self.q), dtype=np.int64), {}, 0
        for n, b in enumerate(live):
            book = self.books[b]
            if not self.bracket[n]:
                first = len(groups)
                for asset in book.underlyings:
                    key = (id(book.variant), asset, book.taker_fee)
                    if key not in cache:
                        cache[key] = _group_parameters(book.variant, asset, book.taker_fee)
                    groups.append((n, b, asset, cache[key]))
                leg_group[offset:offset + len(book.quantities)] = first + book.underlying
            offset += len(book.quantities)
        self.groups, self.leg_group = groups, leg_group
        self.stress_legs = ~self.bracket[self.leg_book]
        self.params = np.array([g[3][:8] for g in groups], dtype=np.float64).reshape(len(groups), 8)
        by_bands: dict = {}
        for g, group in enumerate(groups):
            if group[3][8]:
                by_bands.setdefault(group[3][8], []).append(g)
        self.by_bands = list(by_bands.items())
        self.group_book = np.array([g[0] for g in groups], dtype=np.int64)
        self.factors = np.array([self.books[b].variant.initial_factor for b in live])
        self.futures = (self.kinds == FUTURE) & self.stress_legs

    def evaluate(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
        """(maintenance (C, B), initial (C, B), terms {(book, underlying): {term: (C,)}})."""
        p = np.atleast_2d(np.asarray(p, dtype=np.float64))
        maintenance = np.zeros((p.shape[0], len(self.books)))
        initial = np.zeros((p.shape[0], len(self.books)))
        live, terms = self.live, {}
        if not live:
            return maintenance, initial, terms
        q = self.q
        _, delta, notional = _leg_usd(q, self.entries, self.sizes, self.kinds, p)
        if self.by_table:  # bracket method: per-leg bracket maintenance, notional / leverage
            leg_mm = np.zeros_like(notional)
            for table, index in self.by_table:
                inverse = self.sizes[index] > 0
                settle = np.where(inverse, notional[:, index] / np.where(inverse, p[:, index], 1.0), notional[:, index])
                mm = margin.maintenance_margin_array(settle, table)
                leg_mm[:, index] = np.where(inverse, mm * p[:, index], mm)
            leg_initial = np.where(self.leg_bracket, notional / np.where(self.leg_bracket, self.leverages, 1.0), 0.0)
            maintenance[:, live] += _sum_by(leg_mm, self.leg_book, len(live))
            initial[:, live] += _sum_by(leg_initial, self.leg_book, len(live))
        if not self.groups:
            return maintenance, initial, terms
        count, leg_group, params, stress = len(self.groups), self.leg_group, self.params, self.stress_legs
        d = _sum_by(np.where(stress, delta, 0.0), leg_group, count)
        derivative = self.positions & stress
        gross = _sum_by(np.where(derivative, notional, 0.0), leg_group, count)
        longs = _sum_by(np.where(derivative & (q > 0), notional, 0.0), leg_group, count)
        shorts = _sum_by(np.where(derivative & (q < 0), notional, 0.0), leg_group, count)
        mr4 = _sum_by(np.where(self.futures, notional * self.years * params[leg_group, 5], 0.0), leg_group, count)
        mr1 = np.maximum(np.maximum(-d * params[:, 0], -d * params[:, 1]), 0.0)
        mr6 = params[:, 4] * np.maximum(np.maximum(-d * params[:, 2], -d * params[:, 3]), 0.0)
        contingency = params[:, 6] * np.minimum(longs, shorts)
        mr7 = params[:, 7] * gross
        for bands, index in self.by_bands:
            mr7[:, index] = scaled_minimum_charge(mr7[:, index], bands)
        requirement = stress_maintenance(mr1, mr6, mr4, contingency, mr7)
        stress_total = _sum_by(requirement, self.group_book, len(live))
        maintenance[:, live] += np.where(self.bracket, 0.0, stress_total)
        initial[:, live] += np.where(self.bracket, 0.0, stress_total * self.factors)
        for g, (_, b, asset, _) in enumerate(self.groups):
            terms[(b, asset)] = {"MR1": mr1[:, g], "MR6": mr6[:, g], "MR4": mr4[:, g],
                                 "contingency": contingency[:, g], "MR7": mr7[:, g], "maintenance": requirement[:, g],
                                 "delta": d[:, g]}
        return maintenance, initial, terms


def evaluate_books(books, prices_list) -> tuple[np.ndarray, np.ndarray, dict]:
    """Maintenance and initial margin of many books at once: `prices_list[b]` holds book b's leg
    prices, (C, L_b) with the same C for every book (see `BookBatch`)."""
    batch = BookBatch(books)
    if not batch.live:
        return batch.evaluate(np.zeros((1, 0)))
    return batch.evaluate(np.concatenate([np.atleast_2d(np.asarray(prices_list[b], dtype=np.float64))
                                          for b in batch.live], axis=1))


def valuate_book(book: PortfolioBook, prices: np.ndarray) -> BookValuation:
    """Equity, maintenance and initial margin of the book at `prices` ((L,) one case or (C, L)),
    with the per-underlying terms of a stress method."""
    p = np.atleast_2d(np.asarray(prices, dtype=np.float64))
    value, _, _ = leg_usd(book, p)
    maintenance, initial, terms = evaluate_books([book], [p])
    return BookValuation(book.base + value.sum(axis=1), maintenance[:, 0], initial[:, 0],
                         {asset: values for (_, asset), values in terms.items()})
