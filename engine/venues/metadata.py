"""Venue metadata from the dumps traders already have: leverage tiers and market filters.

One small named constructor per foreign shape turns a parsed JSON response into a `VenueMetadata`
(brackets by exchange symbol id, market filters by the same id); `read_metadata` detects the shape of
each file and merges them. Shapes understood:

* ccxt `fetch_leverage_tiers()` (`from_ccxt_leverage_tiers`) and `load_markets()` (`from_ccxt_markets`)
* Binance `GET /fapi|dapi/v1/exchangeInfo`, `GET /api/v3/exchangeInfo` (`from_binance_exchange_info`)
  and `GET /fapi|dapi/v1/leverageBracket` (`from_binance_leverage_brackets`)
* Bybit v5 `instruments-info` (`from_bybit_instruments`) and `risk-limit` (`from_bybit_risk_limits`)
* OKX v5 `public/instruments` (`from_okx_instruments`) and `public/position-tiers` (`from_okx_position_tiers`)
* Hyperliquid `info {"type": "meta"}` with or without `marginTables` (`from_hyperliquid_meta`)

Units: bracket notionals are in the settle currency (quote for linear, coin for inverse, as the
built-in rule files); rates are fractions. OKX tiers are in contracts: they are kept as contracts
here and turned into notional by `VenueMetadata.resolve` with the contract value (`ctVal`) from an
instruments dump and a reference price the user gives. Exchange responses send numbers as strings or
numbers; both are read. Symbol ids are the engine's (`Instrument.native_id`): BASE+QUOTE, with
`_YYMMDD` for dated futures (`BTCUSDT`, `BTCUSDT_241227`, `BTCUSD` for the inverse perp).
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timezone
from pathlib import Path

import attrs

from xmargin.errors import RulesError


@attrs.frozen
class Tier:
    """One leverage tier as published: [floor, cap) in `unit` ("notional" or "contracts"), the
    maintenance margin rate, max leverage and, where the venue gives it, the maintenance amount
    (Binance `cum`, Bybit `mmDeduction`); None means: derive it by the bracket recurrence."""

    floor: float
    cap: float
    max_leverage: float
    maintenance_margin_rate: float
    maintenance_amount: float | None = None
    unit: str = "notional"


@attrs.frozen
class MarketSpec:
    """One market's trading filters. `lot_size` is the quantity step in the engine's units (base for
    linear and spot, contracts for inverse), `tick_size` the price step, `min_notional` the smallest
    order value in the quote currency; None: the dump does not say. `contract_value` is base units per
    contract for venues that size linear swaps in contracts (OKX `ctVal x ctMult`)."""

    native_id: str
    symbol: str
    market: str
    base: str
    quote: str
    settle: str
    contract: str = "linear"
    contract_size: float | None = None
    lot_size: float | None = None
    tick_size: float | None = None
    min_notional: float | None = None
    funding_interval_hours: float | None = None
    contract_value: float | None = None


@attrs.frozen
class VenueMetadata:
    """What one or more dumps say: tiers and markets by symbol id, the shapes read, the date of the
    data when the dump carries one (ISO date), and warnings naming the symbol concerned."""

    tiers: dict = attrs.field(factory=dict)
    markets: dict = attrs.field(factory=dict)
    shapes: tuple[str, ...] = ()
    as_of: str | None = None
    warnings: tuple[str, ...] = ()

    def merge(self, other: "VenueMetadata") -> "VenueMetadata":
        """Both dumps' contents; dated only when every dump is (the older date), else None."""
        dates = [m.as_of for m in (self, other) if m.shapes]
        return VenueMetadata(tiers={**self.tiers, **other.tiers}, markets={**self.markets, **other.markets},
                             shapes=self.shapes + other.shapes, as_of=None if None in dates else min(dates),
                             warnings=self.warnings + other.warnings)

    def contract_values(self) -> dict:
        """{symbol id: the venue's contract value} of the symbols whose tiers are in contracts: base units
        per contract (linear, OKX ctVal x ctMult) or USD per contract (inverse); RulesError when no
        instruments dump gives it."""
        out = {}
        for native_id, tiers in sorted(self.tiers.items()):
            if all(t.unit == "notional" for t in tiers):
                continue
            market = self.markets.get(native_id)
            value = None if market is None else (market.contract_value if market.contract == "linear"
                                                 else market.contract_size)
            if not value:
                raise RulesError(f"{native_id}: its tiers are in contracts and no instruments dump gives the "
                                 "contract value. Fix: pass the venue's instruments response as well (OKX "
                                 "GET /api/v5/public/instruments?instType=SWAP).")
            out[native_id] = value
        return out

    def resolve(self, reference_prices: dict | None = None) -> tuple[dict, list[str]]:
        """Tiers as notional brackets: {symbol id: [Tier in notional]} and notes on conversions.
        Contract tiers need the market's contract value and a reference price for its base asset."""
        out, notes = {}, []
        for native_id, tiers in sorted(self.tiers.items()):
            if all(t.unit == "notional" for t in tiers):
                out[native_id] = list(tiers)
                continue
            market = self.markets.get(native_id)
            if market is None or (market.contract_value or market.contract_size) is None:
                raise RulesError(f"{native_id}: its tiers are in contracts and no instruments dump gives the "
                                 "contract value. Fix: pass the venue's instruments response as well (OKX "
                                 "GET /api/v5/public/instruments?instType=SWAP).")
            price = (reference_prices or {}).get(market.base)
            if price is None:
                raise RulesError(f"{native_id}: its tiers are in contracts; turning them into notional needs a "
                                 f"{market.base} price. Fix: pass --reference-price {market.base}=<price in "
                                 f"{market.quote}> (the boundaries then hold at that price only).")
            # linear: contracts x base per contract x price (quote); inverse: contracts x USD per contract / price (coin)
            scale = (market.contract_value * price if market.contract == "linear" else market.contract_size / price)
            out[native_id] = [attrs.evolve(t, floor=t.floor * scale, cap=t.cap * scale, unit="notional")
                              for t in tiers]
            notes.append(f"{native_id}: tiers in contracts turned into {market.settle} notional at "
                         f"{market.base} = {price:g} {market.quote} x contract value {market.contract_value:g}")
        return out, notes


# ---------------------------------------------------------------------------------------- helpers
def _number(value, where: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise RulesError(f"{where}: {value!r} is not a number.") from None
    if not math.isfinite(out):
        raise RulesError(f"{where}: {value!r} is not finite.")
    return out


def _optional(value) -> float | None:
    """A positive number, or None for '', null, 0 and anything unreadable."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) and out > 0 else None


def _native(base: str, quote: str, expiry: str = "") -> str:
    return f"{base}{quote}" + (f"_{expiry}" if expiry else "")


def _date_of_ms(ms) -> str | None:
    value = _optional(ms)
    return datetime.fromtimestamp(value / 1000, tz=timezone.utc).date().isoformat() if value else None


UNIFIED = re.compile(r"^(?P<base>[^/]+)/(?P<quote>[^:]+)(?::(?P<settle>[^-]+)(?:-(?P<expiry>\d{6}))?)?$")


def _from_unified(symbol: str) -> tuple[str, str, str, str]:
    """`BTC/USDT:USDT-241227` -> (BTC, USDT, USDT, 241227)."""
    match = UNIFIED.match(symbol)
    if not match:
        raise RulesError(f"{symbol!r}: not a ccxt unified symbol (BASE/QUOTE:SETTLE).")
    return match["base"], match["quote"], match["settle"] or match["quote"], match["expiry"] or ""


def _tiers_sorted(rows: list[Tier], where: str) -> list[Tier]:
    rows = sorted(rows, key=lambda t: t.floor)
    if not rows:
        raise RulesError(f"{where}: no tiers.")
    return rows


# ---------------------------------------------------------------------------------------- ccxt
def from_ccxt_leverage_tiers(data: dict, exchange: str) -> VenueMetadata:
    """ccxt `fetch_leverage_tiers()`: {unified symbol: [{minNotional, maxNotional, maintenanceMarginRate,
    maxLeverage, info}]}. The maintenance amount is Binance's `info.cum` when present. OKX tiers copy
    contracts into min/maxNotional (`info.minSz`/`maxSz`): they are kept as contracts."""
    tiers = {}
    for symbol, rows in data.items():
        base, quote, _, expiry = _from_unified(symbol)
        where = f"{symbol}"
        parsed = []
        for n, row in enumerate(rows):
            info = row.get("info") or {}
            in_contracts = exchange == "okx" or "maxSz" in info
            cum = info.get("cum")
            parsed.append(Tier(floor=_number(row.get("minNotional") or 0, f"{where}[{n}].minNotional"),
                               cap=_number(row["maxNotional"], f"{where}[{n}].maxNotional")
                               if row.get("maxNotional") is not None else math.inf,
                               max_leverage=_number(row["maxLeverage"], f"{where}[{n}].maxLeverage"),
                               maintenance_margin_rate=_number(row["maintenanceMarginRate"],
                                                               f"{where}[{n}].maintenanceMarginRate"),
                               maintenance_amount=None if cum is None else _number(cum, f"{where}[{n}].info.cum"),
                               unit="contracts" if in_contracts else "notional"))
        tiers[_native(base, quote, expiry)] = _tiers_sorted(parsed, where)
    return VenueMetadata(tiers=tiers, shapes=("ccxt fetch_leverage_tiers",))


def _precision_step(value, mode: str) -> float | None:
    if value is None:
        return None
    value = float(value)
    return 10.0 ** -value if mode == "decimals" else (value or None)


def from_ccxt_markets(data, exchange: str) -> VenueMetadata:
    """ccxt `load_markets()`: {unified symbol: market} (or a list of markets). Lot and tick come from
    the raw exchange filters in `info` when ccxt keeps Binance's, else from `precision`: decimal places
    when every precision in the dump is a whole number (ccxt's old DECIMAL_PLACES mode), tick sizes
    otherwise (TICK_SIZE mode); the minimum notional is `limits.cost.min`."""
    markets_in = list(data.values()) if isinstance(data, dict) else list(data)
    values = [v for m in markets_in for v in (m.get("precision") or {}).values() if v is not None]
    mode = "decimals" if values and all(float(v).is_integer() for v in values) else "ticks"
    warnings = [f"ccxt precision read as {'decimal places' if mode == 'decimals' else 'tick sizes'} "
                f"(every precision in the dump is {'a whole number' if mode == 'decimals' else 'not'})"]
    markets = {}
    for m in markets_in:
        if m.get("option"):
            continue
        base, quote, settle = m["base"], m["quote"], m.get("settle") or m["quote"]
        expiry = ""
        if m.get("future") or m.get("type") in ("future", "delivery"):
            expiry = _from_unified(m["symbol"])[3]
        market = "spot" if m.get("spot") or m.get("type") == "spot" else ("future" if expiry else "perp")
        info = m.get("info") or {}
        filters = _binance_filters(info) if isinstance(info.get("filters"), list) else {}
        precision = m.get("precision") or {}
        limits = m.get("limits") or {}
        inverse = bool(m.get("inverse"))
        markets[_native(base, quote, expiry)] = MarketSpec(
            native_id=_native(base, quote, expiry), symbol=m["symbol"], market=market, base=base, quote=quote,
            settle=settle, contract="inverse" if inverse else "linear",
            contract_size=_optional(m.get("contractSize")) if market != "spot" else None,
            lot_size=filters.get("lot_size") or _precision_step(precision.get("amount"), mode),
            tick_size=filters.get("tick_size") or _precision_step(precision.get("price"), mode),
            min_notional=filters.get("min_notional") or _optional((limits.get("cost") or {}).get("min")))
    return VenueMetadata(markets=markets, shapes=("ccxt load_markets",), warnings=tuple(warnings))


# ---------------------------------------------------------------------------------------- Binance
def _binance_filters(entry: dict) -> dict:
    """LOT_SIZE stepSize, PRICE_FILTER tickSize, MIN_NOTIONAL notional (futures) / minNotional (spot),
    NOTIONAL minNotional (newer spot)."""
    out = {}
    for f in entry.get("filters") or ():
        kind = f.get("filterType")
        if kind == "LOT_SIZE":
            out["lot_size"] = _optional(f.get("stepSize"))
        elif kind == "PRICE_FILTER":
            out["tick_size"] = _optional(f.get("tickSize"))
        elif kind in ("MIN_NOTIONAL", "NOTIONAL"):
            out["min_notional"] = _optional(f.get("notional", f.get("minNotional")))
    return out


def from_binance_exchange_info(data: dict, exchange: str) -> VenueMetadata:
    """Binance `exchangeInfo` (USD-M, COIN-M or spot): one market per `symbols[]` entry."""
    markets = {}
    for entry in data["symbols"]:
        base, quote = entry["baseAsset"], entry["quoteAsset"]
        contract_type = entry.get("contractType")
        if contract_type is None:  # spot
            market, settle, inverse, expiry = "spot", quote, False, ""
        else:
            settle = entry.get("marginAsset") or quote
            inverse = "contractSize" in entry or settle == base
            market = "perp" if contract_type == "PERPETUAL" else "future"
            expiry = entry["symbol"].rsplit("_", 1)[1] if market == "future" and "_" in entry["symbol"] else ""
        symbol = f"{base}/{quote}" if market == "spot" else f"{base}/{quote}:{settle}" + (f"-{expiry}" if expiry else "")
        filters = _binance_filters(entry)
        native_id = _native(base, quote, expiry)
        markets[native_id] = MarketSpec(native_id=native_id, symbol=symbol, market=market, base=base, quote=quote,
                                        settle=settle, contract="inverse" if inverse else "linear",
                                        contract_size=_optional(entry.get("contractSize")) if inverse else None,
                                        **filters)
    return VenueMetadata(markets=markets, shapes=("binance exchangeInfo",), as_of=_date_of_ms(data.get("serverTime")))


def from_binance_leverage_brackets(data, exchange: str) -> VenueMetadata:
    """Binance `leverageBracket`: [{symbol | pair, brackets: [{initialLeverage, notionalFloor|qtyFloor,
    notionalCap|qtyCap, maintMarginRatio, cum}]}] (one object when asked for one symbol). COIN-M
    brackets are in coin (`qty*`), as the built-in binance-coinm rule set."""
    entries = data if isinstance(data, list) else [data]
    tiers = {}
    for entry in entries:
        name = entry.get("symbol") or entry.get("pair")
        native_id = name.removesuffix("_PERP")
        where = f"leverageBracket {name}"
        rows = []
        for n, b in enumerate(entry["brackets"]):
            floor = b.get("notionalFloor", b.get("qtyFloor"))
            cap = b.get("notionalCap", b.get("qtyCap"))
            rows.append(Tier(floor=_number(floor, f"{where}[{n}].notionalFloor"),
                             cap=_number(cap, f"{where}[{n}].notionalCap"),
                             max_leverage=_number(b["initialLeverage"], f"{where}[{n}].initialLeverage"),
                             maintenance_margin_rate=_number(b["maintMarginRatio"], f"{where}[{n}].maintMarginRatio"),
                             maintenance_amount=_number(b.get("cum", 0), f"{where}[{n}].cum")))
        tiers[native_id] = _tiers_sorted(rows, where)
    return VenueMetadata(tiers=tiers, shapes=("binance leverageBracket",))


# ---------------------------------------------------------------------------------------- Bybit
BYBIT_MARKETS = {"LinearPerpetual": ("perp", "linear"), "InversePerpetual": ("perp", "inverse"),
                 "LinearFutures": ("future", "linear"), "InverseFutures": ("future", "inverse")}


def from_bybit_instruments(data: dict, exchange: str) -> VenueMetadata:
    """Bybit v5 `market/instruments-info` (linear, inverse or spot): qtyStep (spot: basePrecision),
    tickSize, minNotionalValue (spot: minOrderAmt), fundingInterval in minutes."""
    markets = {}
    for entry in data["result"]["list"]:
        base, quote = entry["baseCoin"], entry["quoteCoin"]
        lot = entry.get("lotSizeFilter") or {}
        contract_type = entry.get("contractType")
        if contract_type is None:
            market, contract, settle, expiry = "spot", "linear", quote, ""
        else:
            market, contract = BYBIT_MARKETS.get(contract_type, ("perp", "linear"))
            settle = entry.get("settleCoin") or (base if contract == "inverse" else quote)
            delivery = _optional(entry.get("deliveryTime"))
            expiry = datetime.fromtimestamp(delivery / 1000, tz=timezone.utc).strftime("%y%m%d") \
                if market == "future" and delivery else ""
        native_id = _native(base, quote, expiry)
        symbol = f"{base}/{quote}" if market == "spot" else f"{base}/{quote}:{settle}" + (f"-{expiry}" if expiry else "")
        funding = _optional(entry.get("fundingInterval"))
        markets[native_id] = MarketSpec(
            native_id=native_id, symbol=symbol, market=market, base=base, quote=quote, settle=settle,
            contract=contract, lot_size=_optional(lot.get("qtyStep", lot.get("basePrecision"))),
            tick_size=_optional((entry.get("priceFilter") or {}).get("tickSize")),
            min_notional=_optional(lot.get("minNotionalValue", lot.get("minOrderAmt"))),
            funding_interval_hours=funding / 60.0 if funding else None)
    return VenueMetadata(markets=markets, shapes=("bybit instruments-info",), as_of=_date_of_ms(data.get("time")))


def from_bybit_risk_limits(data: dict, exchange: str) -> VenueMetadata:
    """Bybit v5 `market/risk-limit`: per symbol, tiers up to `riskLimitValue` with `maintenanceMargin`,
    `initialMargin`, `maxLeverage` and `mmDeduction`. Some responses give the margins in percent (the
    inverse example of the v5 docs): a tier whose initialMargin is ~100 / maxLeverage is divided by 100."""
    by_symbol: dict[str, list] = {}
    for row in data["result"]["list"]:
        by_symbol.setdefault(row["symbol"], []).append(row)
    tiers, warnings = {}, []
    for symbol, rows in by_symbol.items():
        rows = sorted(rows, key=lambda r: _number(r["riskLimitValue"], f"risk-limit {symbol}.riskLimitValue"))
        out, floor = [], 0.0
        for n, row in enumerate(rows):
            where = f"risk-limit {symbol}[{n}]"
            leverage = _number(row["maxLeverage"], f"{where}.maxLeverage")
            rate = _number(row["maintenanceMargin"], f"{where}.maintenanceMargin")
            initial = _number(row.get("initialMargin", 1 / leverage), f"{where}.initialMargin")
            if abs(initial * leverage - 100) < abs(initial * leverage - 1):
                rate, initial = rate / 100, initial / 100
                warnings.append(f"{symbol}: risk-limit margins given in percent (initialMargin x maxLeverage ~ "
                                "100); divided by 100")
            if abs(initial * leverage - 1) > 0.05:
                raise RulesError(f"{where}: initialMargin {row.get('initialMargin')} does not match 1/maxLeverage "
                                 f"({1 / leverage:.6g}); check the units of this response.")
            deduction = row.get("mmDeduction")
            cap = _number(row["riskLimitValue"], f"{where}.riskLimitValue")
            out.append(Tier(floor=floor, cap=cap, max_leverage=leverage, maintenance_margin_rate=rate,
                            maintenance_amount=None if deduction in (None, "") else _number(deduction,
                                                                                             f"{where}.mmDeduction")))
            floor = cap
        tiers[symbol[:-4] + "USDC" if symbol.endswith("PERP") else symbol] = out  # BTCPERP: the USDC perp
    return VenueMetadata(tiers=tiers, shapes=("bybit risk-limit",), as_of=_date_of_ms(data.get("time")),
                         warnings=tuple(dict.fromkeys(warnings)))


# ---------------------------------------------------------------------------------------- OKX
def _okx_parts(entry: dict) -> tuple[str, str]:
    family = entry.get("instFamily") or entry.get("uly") or entry["instId"]
    base, quote = family.split("-")[:2]
    return base, quote


def from_okx_instruments(data: dict, exchange: str) -> VenueMetadata:
    """OKX `public/instruments` (SWAP, FUTURES or SPOT). Swaps are sized in contracts of `ctVal x ctMult`:
    a linear swap's lot in base units is lotSz x ctVal x ctMult; an inverse swap keeps contracts (its
    contract_size is ctVal, in USD). OKX has a minimum size (minSz), not a minimum notional."""
    markets, warnings = {}, []
    for entry in data["data"]:
        kind = entry.get("instType", "SWAP")
        lot, tick = _optional(entry.get("lotSz")), _optional(entry.get("tickSz"))
        if kind == "SPOT":
            base, quote = entry["baseCcy"], entry["quoteCcy"]
            native_id = _native(base, quote)
            markets[native_id] = MarketSpec(native_id=native_id, symbol=f"{base}/{quote}", market="spot", base=base,
                                            quote=quote, settle=quote, lot_size=lot, tick_size=tick)
            continue
        base, quote = _okx_parts(entry)
        inverse = entry.get("ctType") == "inverse"
        settle = entry.get("settleCcy") or (base if inverse else quote)
        value = (_optional(entry.get("ctVal")) or 0.0) * (_optional(entry.get("ctMult")) or 1.0)
        expiry = ""
        if kind == "FUTURES":
            expiry = entry["instId"].rsplit("-", 1)[1]
        native_id = _native(base, quote, expiry)
        markets[native_id] = MarketSpec(
            native_id=native_id, symbol=f"{base}/{quote}:{settle}" + (f"-{expiry}" if expiry else ""),
            market="future" if expiry else "perp", base=base, quote=quote, settle=settle,
            contract="inverse" if inverse else "linear", contract_size=value if inverse else None,
            lot_size=lot if inverse or lot is None else lot * value, tick_size=tick,
            contract_value=None if inverse else value)
    return VenueMetadata(markets=markets, shapes=("okx instruments",), warnings=tuple(warnings))


def from_okx_position_tiers(data: dict, exchange: str) -> VenueMetadata:
    """OKX `public/position-tiers`: per instrument family, tiers [minSz, maxSz] in contracts (swaps and
    futures) with `mmr`, `imr`, `maxLever`. Kept in contracts until `resolve` has a contract value and a
    price. MARGIN tiers (spot margin loans, `baseMaxLoan`) are not position tiers and are refused."""
    by_family: dict[str, list] = {}
    for row in data["data"]:
        if "baseMaxLoan" in row or "quoteMaxLoan" in row:
            raise RulesError(f"position-tiers {row.get('instId')}: these are MARGIN (spot margin loan) tiers, not "
                             "swap tiers. Fix: download GET /api/v5/public/position-tiers?instType=SWAP&tdMode=cross.")
        by_family.setdefault(row.get("instFamily") or row.get("uly") or row["instId"], []).append(row)
    tiers = {}
    for family, rows in by_family.items():
        rows = sorted(rows, key=lambda r: _number(r["tier"], f"position-tiers {family}.tier"))
        out, floor = [], 0.0
        for row in rows:
            where = f"position-tiers {family} tier {row['tier']}"
            cap = _number(row["maxSz"], f"{where}.maxSz")
            out.append(Tier(floor=floor, cap=cap, max_leverage=_number(row["maxLever"], f"{where}.maxLever"),
                            maintenance_margin_rate=_number(row["mmr"], f"{where}.mmr"), unit="contracts"))
            floor = cap
        base, quote = family.split("-")[:2]
        tiers[_native(base, quote)] = out
    return VenueMetadata(tiers=tiers, shapes=("okx position-tiers",))


# ---------------------------------------------------------------------------------------- Hyperliquid
def from_hyperliquid_meta(data: dict, exchange: str) -> VenueMetadata:
    """Hyperliquid `info {"type": "meta"}`: `universe[]` (name, szDecimals, maxLeverage, marginTableId)
    and, in newer responses, `marginTables` [[id, {marginTiers: [{lowerBound, maxLeverage}]}]]. Each
    tier's maintenance rate is half the initial margin rate at its max leverage (Hyperliquid docs,
    margin tiers); a coin without a table (or an id below 50) is one flat tier at its maxLeverage. The
    lot is 10^-szDecimals; prices have 5 significant figures, not a fixed tick."""
    tables = {int(entry[0]): entry[1] for entry in data.get("marginTables") or []}
    tiers, markets, warnings = {}, {}, []
    for coin in data["universe"]:
        name = coin["name"]
        native_id = _native(name, "USDC")
        table = tables.get(coin.get("marginTableId"))
        if coin.get("marginTableId") is not None and table is None and int(coin["marginTableId"]) >= 50:
            raise RulesError(f"meta {name}: marginTableId {coin['marginTableId']} is not in marginTables. "
                             "Fix: pass a meta response that includes marginTables.")
        steps = ([(_number(t["lowerBound"], f"meta {name}.lowerBound"), _number(t["maxLeverage"], f"meta {name}"))
                  for t in table["marginTiers"]] if table else [(0.0, _number(coin["maxLeverage"], f"meta {name}"))])
        steps.sort()
        tiers[native_id] = [Tier(floor=floor, cap=steps[n + 1][0] if n + 1 < len(steps) else math.inf,
                                 max_leverage=leverage, maintenance_margin_rate=0.5 / leverage)
                            for n, (floor, leverage) in enumerate(steps)]
        decimals = coin.get("szDecimals")
        markets[native_id] = MarketSpec(native_id=native_id, symbol=f"{name}/USDC:USDC", market="perp", base=name,
                                        quote="USDC", settle="USDC",
                                        lot_size=10.0 ** -int(decimals) if decimals is not None else None,
                                        funding_interval_hours=1.0)
    return VenueMetadata(tiers=tiers, markets=markets, shapes=("hyperliquid meta",), warnings=tuple(warnings))


# ---------------------------------------------------------------------------------------- detection
def _bybit_list(data) -> list:
    return ((data.get("result") or {}).get("list") or []) if isinstance(data, dict) else []


SHAPES = (
    ("ccxt fetch_leverage_tiers", lambda d: isinstance(d, dict) and d and all(
        isinstance(v, list) and v and isinstance(v[0], dict) and "maintenanceMarginRate" in v[0] for v in d.values()),
     from_ccxt_leverage_tiers),
    ("ccxt load_markets", lambda d: (isinstance(d, dict) and d and all(
        isinstance(v, dict) and "precision" in v and "symbol" in v for v in d.values())) or (
        isinstance(d, list) and d and all(isinstance(v, dict) and "precision" in v and "symbol" in v for v in d)),
     from_ccxt_markets),
    ("binance exchangeInfo", lambda d: isinstance(d, dict) and isinstance(d.get("symbols"), list)
     and all("filters" in s for s in d["symbols"]), from_binance_exchange_info),
    ("binance leverageBracket", lambda d: (isinstance(d, list) and d and all(
        isinstance(e, dict) and "brackets" in e for e in d)) or (isinstance(d, dict) and "brackets" in d),
     from_binance_leverage_brackets),
    ("bybit instruments-info", lambda d: bool(_bybit_list(d)) and "lotSizeFilter" in _bybit_list(d)[0],
     from_bybit_instruments),
    ("bybit risk-limit", lambda d: bool(_bybit_list(d)) and "riskLimitValue" in _bybit_list(d)[0],
     from_bybit_risk_limits),
    ("okx instruments", lambda d: isinstance(d, dict) and isinstance(d.get("data"), list) and d["data"]
     and "tickSz" in d["data"][0], from_okx_instruments),
    ("okx position-tiers", lambda d: isinstance(d, dict) and isinstance(d.get("data"), list) and d["data"]
     and "mmr" in d["data"][0] and "tier" in d["data"][0], from_okx_position_tiers),
    ("hyperliquid meta", lambda d: isinstance(d, dict) and isinstance(d.get("universe"), list), from_hyperliquid_meta),
)


def read_metadata(paths, exchange: str) -> VenueMetadata:
    """Parse and merge the dumps at `paths`; RulesError names a file whose shape is not recognised."""
    merged = VenueMetadata()
    for path in paths:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RulesError(f"{path}: not readable JSON ({exc}).") from exc
        if isinstance(data, list) and len(data) == 2 and isinstance(data[0], dict) and "universe" in data[0]:
            data = data[0]  # Hyperliquid metaAndAssetCtxs: [meta, asset contexts]
        for name, matches, construct in SHAPES:
            if matches(data):
                vendor = name.split()[0]
                if vendor != "ccxt" and vendor != exchange:
                    raise RulesError(f"{path}: a {name} response, but --exchange is {exchange!r}. Fix: pass "
                                     f"--exchange {vendor}, or the {exchange} dump.")
                try:
                    merged = merged.merge(construct(data, exchange))
                except (KeyError, TypeError, AttributeError, IndexError) as exc:
                    what = f"the field {exc}" if isinstance(exc, KeyError) else f"the expected shape ({exc})"
                    raise RulesError(f"{path}: looks like a {name} response but lacks {what}; give the response "
                                     "as the venue (or ccxt) returned it, unedited.") from exc
                except RulesError as exc:
                    raise RulesError(f"{path}: {exc}") from exc
                break
        else:
            raise RulesError(f"{path}: not a response xmargin can read. Fix: give one of: "
                             + ", ".join(name for name, _, _ in SHAPES) + " (see `xmargin rules import --help`).")
    return merged
