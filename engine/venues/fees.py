"""Trading fees per market: the rule set's rates, overridden by the run config.

A rule set carries the derivatives rates (`fees.maker` / `fees.taker`, charged on perps and dated
futures) and, where published, the spot rates (`fees.spot`). A config overrides either per market:

    [exchanges.binance]
    fees = { perp = { maker = 0.00018, taker = 0.00045 }, spot = { maker = 0.00075, taker = 0.00075 } }

Rates are fractions of the filled notional (0.001 = 0.1 %); a VIP tier or a BNB discount is simply
the resulting number. A negative maker rate is a rebate.
"""

from __future__ import annotations

import attrs

from xmargin.errors import ConfigError

FEE_MARKETS = ("perp", "future", "spot")
MAX_FEE = 0.01  # 1 % per fill: anything larger is almost surely a percent typed as a fraction
MIN_MAKER_FEE = -0.001  # rebates exist (market-maker programmes), never larger than 0.1 %


@attrs.frozen
class FeeRates:
    """Maker and taker fee of one market, as fractions of the filled notional."""

    maker: float
    taker: float


def _rate(value, key: str, low: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value < MAX_FEE:
        raise ConfigError(f"{key} = {value!r}: a fee is a fraction of the notional (0.001 = 0.1 %) in "
                          f"[{low:g}, {MAX_FEE:g}); give 0.0005 for 0.05 %, not 0.05.")
    return float(value)


def market_fees(rules, overrides, prefix: str) -> dict:
    """{market: FeeRates or None} for `perp`, `future` and `spot` from the rule set and the config's
    `fees` table (`prefix` names it in errors, e.g. `exchanges.binance.fees`). A dated future takes the
    perp rates unless `future` is given; spot is None when neither the rule set nor the config gives it."""
    if not isinstance(overrides, dict):
        raise ConfigError(f"{prefix} = {overrides!r}: a table such as "
                          "{ perp = { maker = 0.0002, taker = 0.0005 }, spot = { maker = 0.001, taker = 0.001 } }.")
    unknown = sorted(set(overrides) - set(FEE_MARKETS))
    if unknown:
        raise ConfigError(f"{prefix}: unknown markets {unknown}; allowed: {list(FEE_MARKETS)}.")
    spot = (None if rules.spot_maker_fee is None
            else FeeRates(maker=rules.spot_maker_fee, taker=rules.spot_taker_fee))
    base = {"perp": FeeRates(maker=rules.maker_fee, taker=rules.taker_fee), "spot": spot}
    out = {}
    for market in ("perp", "future", "spot"):
        given = overrides.get(market)
        default = out["perp"] if market == "future" else base[market]
        if given is None:
            out[market] = default
            continue
        key = f"{prefix}.{market}"
        if not isinstance(given, dict) or not given or set(given) - {"maker", "taker"}:
            raise ConfigError(f"{key} = {given!r}: give {{ maker = <fraction>, taker = <fraction> }} (either or both).")
        if default is None and set(given) != {"maker", "taker"}:
            raise ConfigError(f"{key}: rule set {rules.name} has no {market} fees to fill in the missing one; give "
                              "both maker and taker.")
        maker = _rate(given["maker"], f"{key}.maker", MIN_MAKER_FEE) if "maker" in given else default.maker
        taker = _rate(given["taker"], f"{key}.taker", 0.0) if "taker" in given else default.taker
        out[market] = FeeRates(maker=maker, taker=taker)
    return out
