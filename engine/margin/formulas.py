"""Margin arithmetic over any rule set's bracket table: pure functions, no state.

Tables are `xmargin.margin.brackets.BracketTable`s (built by `xmargin.venues.rules` from rule files).

Conventions
-----------
* Linear (USDⓈ-margined) contracts: `quantity` is signed base units (+ long, - short), prices are
  quote per base unit, and every money amount (notional, margins, PnL, wallet balance) is in quote
  units (USDT / USDC). Notional = |quantity| x price.
* Inverse (coin-margined) contracts: `quantity` is signed contracts, `contract_size` is the quote
  value of one contract (e.g. 100 USD for Binance BTCUSD), money is in coin units (BTC).
  Notional = |quantity| x contract_size / price (coin units); the bracket table is then in coin.
* Maintenance margin (MM) of a notional N: N x rate - amount of the bracket holding N
  (floor <= N < cap; above the last cap the last bracket applies).
* Liquidation prices follow Binance's one-way-mode formula (USDⓈ-M and COIN-M FAQs), which solves
  margin balance == maintenance margin *at the liquidation price*, recomputed with the bracket of
  the liquidation notional. Because margin balance minus MM is strictly monotone in price
  (maintenance rates are < 1), the solution is unique when it exists.
* "Cannot be liquidated": a linear long whose margin covers the whole loss down to price 0 returns
  0.0 (the mark can never fall below it); an inverse short that can never be liquidated returns
  math.inf (the mark can never rise above it). A zero quantity returns nan (no position).
  Degenerate accounts already below maintenance at every price get the opposite extreme (linear
  short 0.0, inverse long inf), so the trigger test long: mark <= LP / short: mark >= LP is always
  right.
"""

from __future__ import annotations

import math

import numpy as np

from xmargin.margin.brackets import BracketTable


_REL_TOL = 1e-12


# ------------------------------------------------------------------------------------------ brackets
def maintenance_margin(notional: float, table: BracketTable) -> float:
    """Maintenance margin (same units as `notional`) = |notional| x rate - amount of its bracket.

    `notional` is |quantity| x mark price in quote units (linear) or coin units (inverse); its sign is
    ignored. Continuous in notional when the table's amounts follow the bracket recurrence.
    """
    n = abs(float(notional))
    i = table.index(n)
    return n * table.rate_list[i] - table.amount_list[i]


def maintenance_margin_array(notional: np.ndarray, table: BracketTable) -> np.ndarray:
    """Vectorised `maintenance_margin` for an array of notionals (quote units; sign ignored).

    One `np.searchsorted` over `table.floors`; no Python loop. Returns float64 of the same shape.
    """
    n = np.abs(np.asarray(notional, dtype=np.float64))
    idx = np.searchsorted(table.floors, n, side="right") - 1
    np.maximum(idx, 0, out=idx)  # floors start at 0, so only a negative index needs clipping
    return n * table.rates[idx] - table.amounts[idx]


def maintenance_rate(notional: float, table: BracketTable) -> float:
    """Maintenance margin rate of the bracket holding |notional| (a fraction, 0.005 = 0.5 %)."""
    return float(table.rates[table.index(notional)])


def next_maintenance_amount(floor: float, rate: float, previous_rate: float, previous_amount: float) -> float:
    """The bracket recurrence: amount_n = floor_n x (rate_n - rate_{n-1}) + amount_{n-1} (quote units)."""
    return floor * (rate - previous_rate) + previous_amount


def maintenance_amounts(floors, rates) -> list[float]:
    """Maintenance amounts of a whole table from its floors and rates (first amount 0)."""
    out: list[float] = []
    for n, (floor, rate) in enumerate(zip(floors, rates)):
        out.append(0.0 if n == 0 else next_maintenance_amount(floor, rate, rates[n - 1], out[-1]))
    return out


def initial_margin(notional: float, leverage: float) -> float:
    """Initial margin = |notional| / leverage (units of notional). `leverage` must be > 0."""
    if not leverage > 0:
        raise ValueError(f"leverage must be > 0, got {leverage!r}")
    return abs(float(notional)) / float(leverage)


def max_leverage(notional: float, table: BracketTable) -> float:
    """Largest leverage the bracket holding |notional| allows (a multiple, e.g. 125.0)."""
    return float(table.brackets[table.index(notional)].max_leverage)


def effective_leverage(requested: float, notional: float, table: BracketTable) -> float:
    """The leverage actually applied: `requested` capped by the bracket's max leverage at |notional|."""
    if not requested > 0:
        raise ValueError(f"requested leverage must be > 0, got {requested!r}")
    return min(float(requested), max_leverage(notional, table))


# ------------------------------------------------------------------------------------------ PnL, ratios
def unrealized_pnl(quantity, entry_price, mark_price):
    """Linear PnL in quote units: quantity x (mark - entry). Works on floats or numpy arrays."""
    return quantity * (mark_price - entry_price)


def margin_ratio(maintenance_margin: float, margin_balance: float) -> float:
    """Maintenance margin / margin balance (a fraction; liquidation at >= 1). inf when balance <= 0."""
    if margin_balance <= 0:
        return math.inf
    return maintenance_margin / margin_balance


def bankruptcy_price(quantity: float, entry_price: float, margin: float) -> float:
    """Price (quote per base) where margin + unrealised PnL = 0: entry - side x margin / |quantity|.

    `margin` in quote units (isolated margin, or the wallet balance available to the position).
    A long whose margin covers the whole notional has no positive bankruptcy price: returns 0.0.
    nan for a zero quantity.
    """
    if quantity == 0:
        return math.nan
    side = 1.0 if quantity > 0 else -1.0
    price = entry_price - side * margin / abs(quantity)
    return max(price, 0.0)


# ------------------------------------------------------------------------------------------ liquidation
def liquidation_price_in_bracket(quantity: float, entry_price: float, wallet_balance: float,
                                 maintenance_rate: float, maintenance_amount: float,
                                 other_maintenance_margin: float = 0.0, other_unrealized_pnl: float = 0.0) -> float:
    """Binance's formula for one bracket, without the bracket check (may return <= 0).

    LP = (WB - TMM1 + UPNL1 + cumB - side x |Q| x EP) / (|Q| x MMR - side x |Q|)

    WB wallet balance (cross) or isolated margin (quote units); TMM1, UPNL1 maintenance margin and
    unrealised PnL of the account's other positions (0 in isolated mode); cumB, MMR the bracket's
    maintenance amount and rate; Q signed quantity (base units); EP entry price.
    """
    q = abs(quantity)
    side = 1.0 if quantity > 0 else -1.0
    numerator = wallet_balance - other_maintenance_margin + other_unrealized_pnl + maintenance_amount - side * q * entry_price
    return numerator / (q * maintenance_rate - side * q)


def _solve_with_brackets(candidate, notional_at, table: BracketTable, start: int) -> float | None:
    """Iterate bracket -> candidate price -> bracket of the candidate's notional until consistent.

    `candidate(i)` is the price from bracket i; `notional_at(price)` the notional there. Returns the
    consistent price, or None when no bracket gives a positive consistent price.
    """
    n_brackets = len(table.brackets)
    seen = set()
    i = start
    while i not in seen:
        seen.add(i)
        price = candidate(i)
        if not (price > 0 and math.isfinite(price)):
            break
        j = table.index(notional_at(price))
        if j == i:
            return price
        i = j
    # Fallback (boundary rounding or a non-positive step): scan every bracket, least violation wins.
    best, best_violation = None, math.inf
    for i in range(n_brackets):
        price = candidate(i)
        if not (price > 0 and math.isfinite(price)):
            continue
        n = notional_at(price)
        floor = float(table.floors[i])
        cap = math.inf if i == n_brackets - 1 else float(table.floors[i + 1])
        violation = max(floor - n, n - cap, 0.0) / max(n, 1.0)
        if violation < best_violation:
            best, best_violation = price, violation
    if best is not None and best_violation <= 1e-9:
        return best
    return None


def cross_liquidation_price(quantity: float, entry_price: float, wallet_balance: float, table: BracketTable,
                            other_maintenance_margin: float = 0.0, other_unrealized_pnl: float = 0.0) -> float:
    """Liquidation price (quote per base) of one linear position in a cross account, Binance's formula.

    LP = (WB - TMM1 + UPNL1 + cumB - side x |Q| x EP) / (|Q| x MMR - side x |Q|), with MMR, cumB of the
    bracket holding |Q| x LP (start at the entry notional's bracket, recompute until consistent).
    `wallet_balance` is the cross wallet balance (quote units); `other_*` are the other positions'
    maintenance margin and unrealised PnL, held fixed. Returns 0.0 for a long that cannot be
    liquidated (margin balance stays above maintenance down to price 0), nan for quantity 0 (see the
    module docstring for the degenerate short case).
    """
    if quantity == 0:
        return math.nan
    q = abs(quantity)
    if quantity > 0 and wallet_balance - other_maintenance_margin + other_unrealized_pnl - q * entry_price >= 0:
        # equity - maintenance rises with the price for a long and is >= 0 at price 0 (where the
        # maintenance margin is 0): the position cannot be liquidated at any positive price.
        return 0.0
    rates, amounts = table.rate_list, table.amount_list

    def candidate(i: int) -> float:
        return liquidation_price_in_bracket(quantity, entry_price, wallet_balance, rates[i], amounts[i],
                                            other_maintenance_margin, other_unrealized_pnl)

    price = _solve_with_brackets(candidate, lambda p: q * p, table, table.index(q * entry_price))
    if price is None:
        # long: never liquidated at a positive price; short: already below maintenance at every price.
        # Either way 0.0 makes the trigger test (long: mark <= LP, short: mark >= LP) give the right answer.
        return 0.0
    return price


def isolated_liquidation_price(quantity: float, entry_price: float, isolated_margin: float,
                               table: BracketTable) -> float:
    """Liquidation price (quote per base) of an isolated linear position, Binance's formula.

    LP = (WB + cumB - side x |Q| x EP) / (|Q| x MMR - side x |Q|) with WB = `isolated_margin` (quote
    units: initial margin plus margin added, minus margin removed) and the bracket at the liquidation
    notional (iterated until consistent). Equals `cross_liquidation_price` with wallet = isolated
    margin and no other positions. 0.0: a long that cannot be liquidated; nan: quantity 0.
    """
    return cross_liquidation_price(quantity, entry_price, isolated_margin, table)


def isolated_liquidation_price_entry_mm(quantity: float, entry_price: float, isolated_margin: float,
                                        table: BracketTable) -> float:
    """Bybit's documented isolated formula: maintenance margin taken at the *entry* position value.

    LP = EP - side x (isolated_margin - MM(|Q| x EP)) / |Q|   (quote per base; Bybit help
    "Liquidation Price (USDT Contract)": LP = Entry - (IM - MM) / size - extra margin / size).
    0.0 for a long whose LP would be <= 0; nan for quantity 0.
    """
    if quantity == 0:
        return math.nan
    side = 1.0 if quantity > 0 else -1.0
    mm = maintenance_margin(abs(quantity) * entry_price, table)
    return max(entry_price - side * (isolated_margin - mm) / abs(quantity), 0.0)


def entry_value_liquidation_price(quantity: float, entry_price: float, wallet_balance: float, maintenance: float,
                                  inverse: bool = False, contract_size: float = 1.0,
                                  other_maintenance_margin: float = 0.0, other_unrealized_pnl: float = 0.0) -> float:
    """Liquidation price of a position whose maintenance margin is the constant `maintenance` (taken
    on its entry value, Bybit classic): where WB + UPNL1 + PnL = maintenance + TMM1 (settle units).

    Linear: EP - (WB + UPNL1 - MM - TMM1) / Q. Inverse: Q x cs / (Q x cs / EP + WB + UPNL1 - MM - TMM1),
    Bybit's inverse formula Q x (1/EP - 1/LP) = -(balance - (Q / EP) x MMR) (help.bybit.com
    360039261334, without its close-fee term). 0.0: a linear long with no positive price; inf: an
    inverse short never liquidated, or an inverse long below maintenance at every price; nan: Q = 0.
    """
    if quantity == 0:
        return math.nan
    room = wallet_balance + other_unrealized_pnl - maintenance - other_maintenance_margin
    if not inverse:
        return max(entry_price - room / quantity, 0.0)
    value = quantity * contract_size
    denominator = value / entry_price + room
    if denominator == 0 or (denominator > 0) != (quantity > 0):
        return math.inf
    return value / denominator


def entry_value_maintenance(quantity: float, entry_price: float, table: BracketTable, inverse: bool = False,
                            contract_size: float = 1.0) -> float:
    """Maintenance margin on the position's value at entry (settle units): |Q| x EP (linear) or
    |Q| x cs / EP (inverse, coin) in `table`."""
    return maintenance_margin(contract_notional(quantity, entry_price, inverse, contract_size), table)


# ------------------------------------------------------------------------------------------ inverse
def inverse_notional(quantity: float, contract_size: float, price: float) -> float:
    """Coin-unit notional of an inverse position: |quantity| x contract_size / price."""
    return abs(quantity) * contract_size / price


def inverse_unrealized_pnl(quantity, entry_price, mark_price, contract_size: float = 1.0):
    """Inverse PnL in coin units: quantity x contract_size x (1/entry - 1/mark). Floats or arrays."""
    return quantity * contract_size * (1.0 / entry_price - 1.0 / mark_price)


def inverse_liquidation_price(quantity: float, entry_price: float, wallet_balance: float, table: BracketTable,
                              contract_size: float = 1.0, other_maintenance_margin: float = 0.0,
                              other_unrealized_pnl: float = 0.0) -> float:
    """Liquidation price of an inverse (coin-margined) position, Binance COIN-M formula.

    LP = |Q| x cs x (MMR + side) / (WB - TMM1 + UPNL1 + cumB + side x |Q| x cs / EP)
    (solves margin balance == MM at LP; WB, TMM1, UPNL1, cumB in coin units; the table is in coin
    notional and the bracket is the one holding |Q| x cs / LP). Returns math.inf for a short that can
    never be liquidated (margin >= coin notional), nan for quantity 0.
    """
    if quantity == 0:
        return math.nan
    q = abs(quantity) * contract_size
    side = 1.0 if quantity > 0 else -1.0
    rates, amounts = table.rates, table.amounts
    base = wallet_balance - other_maintenance_margin + other_unrealized_pnl + side * q / entry_price

    def candidate(i: int) -> float:
        denominator = base + float(amounts[i])
        if denominator == 0:
            return math.inf
        return q * (float(rates[i]) + side) / denominator

    price = _solve_with_brackets(candidate, lambda p: q / p, table, table.index(q / entry_price))
    if price is None:
        # short: never liquidated; long: already below maintenance at every price. inf makes the
        # trigger test (long: mark <= LP, short: mark >= LP) right in both cases.
        return math.inf
    return price


def inverse_isolated_liquidation_price(quantity: float, entry_price: float, isolated_margin: float,
                                       table: BracketTable, contract_size: float = 1.0) -> float:
    """Isolated inverse liquidation price: `inverse_liquidation_price` with WB = isolated margin (coin)."""
    return inverse_liquidation_price(quantity, entry_price, isolated_margin, table, contract_size)


# ------------------------------------------------------------------------------------------ any contract
def contract_pnl(quantity, entry_price, mark_price, inverse: bool = False, contract_size: float = 1.0):
    """Unrealised PnL in the settle asset: linear quantity x (mark - entry) (quote units, quantity
    in base units); inverse quantity x contract_size x (1/entry - 1/mark) (coin units, quantity in
    contracts). Floats or numpy arrays."""
    if inverse:
        return inverse_unrealized_pnl(quantity, entry_price, mark_price, contract_size)
    return quantity * (mark_price - entry_price)


def contract_notional(quantity, price, inverse: bool = False, contract_size: float = 1.0):
    """Position value in the settle asset: |quantity| x price (linear), |quantity| x contract_size /
    price (inverse, coin units). Floats or numpy arrays."""
    if inverse:
        return abs(quantity) * contract_size / price
    return abs(quantity) * price


def contract_liquidation_price(quantity: float, entry_price: float, wallet_balance: float, table: BracketTable,
                               inverse: bool = False, contract_size: float = 1.0,
                               other_maintenance_margin: float = 0.0, other_unrealized_pnl: float = 0.0) -> float:
    """`cross_liquidation_price` or `inverse_liquidation_price`, by contract type."""
    if inverse:
        return inverse_liquidation_price(quantity, entry_price, wallet_balance, table, contract_size,
                                         other_maintenance_margin, other_unrealized_pnl)
    return cross_liquidation_price(quantity, entry_price, wallet_balance, table, other_maintenance_margin,
                                   other_unrealized_pnl)


def isolated_liquidation_price_by_rule(quantity: float, entry_price: float, isolated_margin: float,
                                      table: BracketTable, inverse: bool = False, contract_size: float = 1.0,
                                      maintenance_basis: str = "mark") -> float:
    """An isolated position's liquidation price by the rule set's maintenance basis: at the mark
    (Binance's formula, bracket at the liquidation notional) or at entry (Bybit's formulas, linear
    and inverse)."""
    if maintenance_basis == "entry" and not inverse:
        return isolated_liquidation_price_entry_mm(quantity, entry_price, isolated_margin, table)
    if maintenance_basis == "entry":
        return entry_value_liquidation_price(quantity, entry_price, isolated_margin,
                                             entry_value_maintenance(quantity, entry_price, table, True, contract_size),
                                             True, contract_size)
    return contract_liquidation_price(quantity, entry_price, isolated_margin, table, inverse, contract_size)


def contract_bankruptcy_price(quantity: float, entry_price: float, margin: float, inverse: bool = False,
                              contract_size: float = 1.0, fee_to_close: float = 0.0) -> float:
    """Price where margin + unrealised PnL = the fee to close there (`fee_to_close` x notional at
    that price; 0: equity zero), by contract type. Linear: (entry - margin / quantity) / (1 - side x
    fee); inverse: quantity x size x (1 + side x fee) / (margin + quantity x size / entry) (Bybit's
    inverse formula: 1.00075 x Q / (Q / entry + balance)); inf for an inverse short whose margin covers
    everything, 0.0 for a long with no positive price; nan for quantity 0."""
    if quantity == 0:
        return math.nan
    side = 1.0 if quantity > 0 else -1.0
    if not inverse:
        if fee_to_close == 0:
            return bankruptcy_price(quantity, entry_price, margin)
        return max((entry_price - margin / quantity) / (1.0 - side * fee_to_close), 0.0)
    denominator = margin + quantity * contract_size / entry_price
    if denominator == 0 or (denominator < 0) == (quantity > 0):
        return math.inf if quantity < 0 else 0.0
    return quantity * contract_size * (1.0 + side * fee_to_close) / denominator


def close_fee_at_bankruptcy(quantity: float, entry_price: float, leverage: float, taker_fee: float) -> float:
    """Bybit's estimated fee to close (quote units): |quantity| x the bankruptcy price at `leverage`
    (entry x (1 - 1/leverage) long, x (1 + 1/leverage) short) x the taker rate (help 'Initial Margin
    Calculation (USDC Contract)'; the initial margin there is size x mark / leverage plus this fee)."""
    side = 1.0 if quantity > 0 else -1.0
    return abs(quantity) * entry_price * (1.0 - side / leverage) * taker_fee


def average_entry(held: float, entry_price: float, quantity: float, price: float, inverse: bool = False) -> float:
    """Entry price after adding `quantity` at `price` to `held` at `entry_price` (same side):
    quantity-weighted for linear contracts, harmonic for inverse ones (equal contract value)."""
    total = held + quantity
    if inverse:
        return total / (held / entry_price + quantity / price)
    return (entry_price * held + price * quantity) / total


# ------------------------------------------------------------------------------------------ vectorised
def cross_liquidation_price_array(quantity: np.ndarray, entry_price: np.ndarray, wallet_balance: np.ndarray,
                                  table: BracketTable, other_maintenance_margin: np.ndarray | float = 0.0,
                                  other_unrealized_pnl: np.ndarray | float = 0.0) -> np.ndarray:
    """`cross_liquidation_price` for arrays of positions on one bracket table (used to project the
    positions table). Every bracket's candidate price is computed at once and the one whose
    notional lies in that bracket is kept (relative tolerance 1e-9 at the boundaries, as the
    scalar version's fallback); none: 0.0; quantity 0: nan. `isolated_liquidation_price` is this
    with wallet = isolated margin and no other positions."""
    quantity = np.asarray(quantity, dtype=np.float64)
    q = np.abs(quantity)
    side = np.sign(quantity)
    base = (np.asarray(wallet_balance, dtype=np.float64) - other_maintenance_margin + other_unrealized_pnl
            - side * q * np.asarray(entry_price, dtype=np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        candidates = (base[:, None] + table.amounts[None, :]) / (q[:, None] * table.rates[None, :] - (side * q)[:, None])
        notional = q[:, None] * candidates
    caps = np.append(table.floors[1:], np.inf)
    valid = ((candidates > 0) & np.isfinite(candidates)
             & (notional >= table.floors[None, :] * (1 - 1e-9)) & (notional < caps[None, :] * (1 + 1e-9)))
    first = np.argmax(valid, axis=1)
    out = np.where(valid.any(axis=1), candidates[np.arange(len(q)), first], 0.0)
    out[quantity == 0] = np.nan
    return out


def bankruptcy_price_array(quantity: np.ndarray, entry_price: np.ndarray, margin: np.ndarray) -> np.ndarray:
    """Vectorised `bankruptcy_price` (0.0 where no positive price exists; nan for quantity 0)."""
    quantity = np.asarray(quantity, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.maximum(entry_price - np.sign(quantity) * margin / np.abs(quantity), 0.0)
    out[quantity == 0] = np.nan
    return out
