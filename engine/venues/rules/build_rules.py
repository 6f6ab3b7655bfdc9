"""Regenerate the built-in rule files in engine/venues/rules/data/ (run from the repo root).

    python -m xmargin.venues.rules.build_rules            # or: python engine/venues/rules/build_rules.py
    python -m xmargin.venues.rules.build_rules --shared /work/shared

binance-usdm.json is converted from shared/exchange-rules/ (all symbols of
binance_usdm_leverage_brackets.json: cum -> maintenance_amount, initial_leverage -> max_leverage;
fees and funding-interval overrides from fees_and_funding.json; collateral ratios from
binance_multi_assets_collateral_2021.json). The other four rule sets (binance-coinm, hyperliquid,
bybit-linear, okx-swap) are written from the documented numbers below, each with its sources and
what was not public. Maintenance amounts of
every table built here follow the bracket recurrence
    amount_0 = 0,  amount_n = floor_n * (rate_n - rate_{n-1}) + amount_{n-1}
so maintenance margin is continuous in notional.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DATA_DIR = Path(__file__).parent / "data"
DEFAULT_SHARED = Path("shared")  # repo-relative; the workspace keeps it at /work/shared


def _find_shared(explicit: str | None) -> Path:
    candidates = [Path(explicit)] if explicit else [DEFAULT_SHARED, Path("/work/shared"), Path("../shared")]
    for c in candidates:
        if (c / "exchange-rules" / "binance_usdm_leverage_brackets.json").is_file():
            return c
    sys.exit(f"build_rules: cannot find exchange-rules under {[str(c) for c in candidates]}; pass --shared DIR")


def tiered(tiers) -> list[dict]:
    """Brackets from [(notional_floor, max_leverage, maintenance_margin_rate), ...] (floors ascending, first 0).

    Caps are the next floor (the last is open: null); maintenance amounts follow the recurrence.
    """
    out, amount, prev_rate = [], 0.0, None
    for n, (floor, lev, rate) in enumerate(tiers):
        if prev_rate is not None:
            amount = floor * (rate - prev_rate) + amount
        cap = tiers[n + 1][0] if n + 1 < len(tiers) else None
        out.append({"notional_floor": float(floor), "notional_cap": None if cap is None else float(cap),
                    "max_leverage": float(lev), "maintenance_margin_rate": rate,
                    "maintenance_amount": round(amount, 6)})
        prev_rate = rate
    return out


# Spot fees of the lowest (regular) tier, kept apart from the derivatives fees: a spot fill is charged
# these (read 2026-11-29; the pages are live tables, so record the date you re-read them).
SPOT_FEES = {
    "binance": ({"maker": 0.001, "taker": 0.001}, [
        "https://www.binance.com/en/fee/schedule (spot fee schedule, live table; not read directly)",
        "https://bbapi.viigoo.eu.org/en/square/post/25291916660562 (Binance Square mirror, read 2026-11-29: spot "
        "regular users 0.1 % maker/taker, 0.075 % paying with BNB; USD-M futures 0.02 %/0.04-0.05 %)"]),
    "bybit": ({"maker": 0.001, "taker": 0.001}, [
        "https://www.bybitgum.org/en-US/help-center/bybitHC_Article?id=000001634 (mirror of Bybit help 'Trading "
        "Fee Structure', read 2026-11-29: VIP 0 spot taker 0.1000 % / maker 0.1000 %, perpetual 0.0550 % / "
        "0.0200 %)"]),
    "okx": ({"maker": 0.0008, "taker": 0.001}, [
        "https://www.okx.com/fees (read 2026-11-29: spot USDT pairs, regular users Lv1 maker 0.080 % / taker "
        "0.100 %)"]),
    "hyperliquid": ({"maker": 0.0004, "taker": 0.0007}, [
        "https://hypernode-docs.polynode.dev/research/fees (third-party, read 2026-11-29: base tier spot taker "
        "0.070 % / maker 0.040 %, perps 0.045 % / 0.015 %; official page "
        "https://hyperliquid.gitbook.io/hyperliquid-docs/trading/fees)"]),
}


def with_spot(fees: dict, exchange: str) -> dict:
    """The derivatives `fees` plus the exchange's spot rates under `spot`."""
    return {**fees, "spot": dict(SPOT_FEES[exchange][0])}


def hyperliquid_tiers(tiers) -> list[dict]:
    """Hyperliquid margin tiers [(lower_bound, max_leverage)]: MMR = (1 / max_leverage) / 2 (docs, margin-tiers)."""
    return tiered([(lb, lev, 0.5 / lev) for lb, lev in tiers])


# ---------------------------------------------------------------- dated futures: settlement rules
BINANCE_DELIVERY = {
    "settlement_windows": [
        {"effective_from": "2019-01-01T00:00:00Z", "minutes": 60,
         "source": "binance.com FAQ a3401595e1734084959c61491bc0dbe3 'Delivery & Settlement of Quarterly "
                   "Futures' (2020-09-09): average of the per-second index over the last hour before 08:00 UTC"},
        {"effective_from": "2024-11-11T08:00:00Z", "minutes": 30,
         "source": "ChainCatcher 2024-11-04 relaying Binance's announcement (third-party; Binance's page was not "
                   "found): last 30 minutes (07:30-08:00 UTC) from 2024-11-11 08:00 UTC"},
    ],
    "fee": "taker",
    "sources": ["binance.com FAQ a3401595e1734084959c61491bc0dbe3 (French copy bbapi.viigoo.eu.org: settlement "
                "fees are charged as taker fees); quarterlies expire on the last Friday of Mar/Jun/Sep/Dec, "
                "08:00 UTC"],
}
BYBIT_DELIVERY = {
    "settlement_windows": [
        {"effective_from": "2019-01-01T00:00:00Z", "minutes": 30,
         "source": "bybit.nl article 000001076 'Index Price (Inverse Futures Contract)' (2022-06-02, mirror): "
                   "average of the per-second index 07:30-08:00 UTC; testnet.bybit.com contract rules"}],
    "fee": "taker",
    "sources": ["testnet.bybit.com/data/contract-rules?type=usdt (settlement 08:00 UTC, average index of the last "
                "half hour). The settlement fee rate was not found: the taker rate is assumed."],
}
OKX_DELIVERY = {
    "settlement_windows": [
        {"effective_from": "2019-01-01T00:00:00Z", "minutes": 60,
         "source": "OKX pre-market futures rule (GRASS, 2024-10-25, mirror): arithmetic average index over the "
                   "hour before delivery"},
        {"effective_from": "2026-03-18T00:00:00Z", "minutes": 30,
         "source": "OKX announcement relayed by gdgz.link 2026-03-06 (third-party): last 30 minutes, sampled "
                   "every 200 ms"},
    ],
    "fee": "taker",
    "sources": ["hk.okx.com/help/i-future-contracts (updated 2024-05-31): settlement 08:00 UTC on the Friday of "
                "delivery. The settlement fee rate was not found: the taker rate is assumed."],
}


# ---------------------------------------------------------------- portfolio margin (dated variants)
DERIBIT_GRID = {
    "name": "deribit-grid", "effective_from": None, "method": "stress",
    "source": "Deribit PME private/pme/simulate example (2024-06-17): price_range 0.16, buckets_count 4 -> moves "
              "-16 % .. +16 % in 4 % steps, mm_factor 0.8 (IM = MM / 0.8); offsetting-futures contingency 1 % "
              "(deribit.com/pages/docs/portfoliomargin, legacy PM). A Deribit-style grid applied to this exchange's "
              "products for comparison; used only when a config names it.",
    "price_moves": [0.04, 0.08, 0.12, 0.16],
    "futures_contingency": 0.01,
    "initial_factor": 1.25,
}


def binance_portfolio(shared: Path) -> dict:
    levels = json.loads((shared / "exchange-rules" / "binance_portfolio_margin_unimmr_levels.json").read_text())
    actions = {"trade freely": "none", "margin call reminder": "margin call",
               "new orders refused except reduce-only": "reduce only", "liquidation": "liquidation",
               "liquidation; Binance may claim loss": "liquidation"}
    return {
        "sources": [levels["source"]["url"], levels["source"]["also"],
                    "https://developers.binance.com/docs/zh-CN/derivatives/portfolio-margin-pro/account (uniMMR = "
                    "accountEquity / accountMaintMargin; example account)"],
        "not_public": [
            "The original 2022 PM bands (> 200 % free, 150-200 % and 120-150 % reminders) are printed only up to "
            "the reminders: without its reduce-only and liquidation lines it is not a variant here.",
            "Margin loans (Classic PM MarginMM) are not modelled: the engine has no borrowing.",
            "COIN-M maintenance is read in coin (MMR x contracts x size / mark) and valued at the mark: Binance's "
            "page leaves the unit ambiguous.",
        ],
        "variants": [{
            "name": "binance-pm-pro-2022-04-18", "effective_from": "2022-04-18T00:00:00Z", "method": "bracket",
            "source": levels["source"]["url"],
            "levels": [{"above": b["uniMMR_gt"], "at_or_below": b["uniMMR_le"], "action": actions[b["status"]]}
                       for b in levels["bands"]],
            "liquidation_level": 1.05, "reduce_only_level": 1.2,
        }, DERIBIT_GRID],
    }


OKX_BANDS_BEFORE = [{"upto": 10_000, "multiplier": 1}, {"upto": 70_000, "multiplier": 2},
                    {"upto": 170_000, "multiplier": 4}, {"upto": 300_000, "multiplier": 6},
                    {"upto": 470_000, "multiplier": 8}, {"upto": 700_000, "multiplier": 10},
                    {"upto": None, "multiplier": 12}]
OKX_BANDS_AFTER = [{"upto": 250_000, "multiplier": 1}, {"upto": 500_000, "multiplier": 2},
                   {"upto": 1_000_000, "multiplier": 4}, {"upto": 2_000_000, "multiplier": 6},
                   {"upto": 3_000_000, "multiplier": 8}, {"upto": 4_000_000, "multiplier": 10},
                   {"upto": None, "multiplier": 12}]


def okx_portfolio(shared: Path) -> dict:
    params = json.loads((shared / "exchange-rules" / "okx_portfolio_margin_params_2025-01.json").read_text())
    mr1, mr6, mr4 = params["MR1_spot_shock"], params["MR6_extreme_move"], params["MR4_basis_annualized_move_risk"]

    def moves(table):  # the published grids list 0 and each move; the engine adds both signs
        return {group: [m for m in values if m] for group, values in table.items()}

    common = {"method": "stress", "extreme_weight": 1.0, "minimum_charge_rate": "taker", "initial_factor": 1.3}
    return {
        "sources": [params["source"]["url"],
                    "https://www.okx.com/support/hc/en-us/articles/4417291853837 (MR7 scaling: only the increment "
                    "of the raw charge above each tier is multiplied; worked example 30,000 raw -> 50,000)",
                    "https://aws.okx.com/it/help/okx-to-enhance-new-features-in-portfolio-margin-mode (2024-05-31: "
                    "MMR = max[max(MR1, MR2, MR6) + MR3 + MR4 + MR5, MR7] worked example)",
                    "okx.com help via mirror (product doc updated 2025-07-09): IMR = 1.3 x MMR; MR9 stablecoin depeg",
                    "https://scallope.com/6757.html (third-party copy of the 2025-01-02 announcement: the MR7 tiers "
                    "after 2025-01-15, 250K/500K/1M/2M/3M/4M)"],
        "not_public": [
            "MR6 weighting: OKX prints the extreme moves but not how the extreme scenario is weighted; it is "
            "taken at full weight (extreme_weight 1), so for delta-one books MR6 >= MR1.",
            "MR4 formula: OKX prints only the annualised move risk. The engine's reading: annualised move x years "
            "to expiry x |notional| of each dated future (perpetuals carry none here; OKX's 2024-05-31 example "
            "charges a spot/perp hedge 8,053.32 USDT of MR4, which this reading does not reproduce).",
            "MR7 raw minimum charge: OKX calls MR7 'the liquidation cost module'; the raw charge is taken as the "
            "taker fee x gross derivatives notional (the cost of closing it all). The tier multipliers are "
            "published for BTC and ETH; other underlyings get no multiplier.",
            "MR9 (stablecoin depeg) is 0: no rate was found; MR2, MR3, MR5 are options/interest terms (0 here).",
            "Before-2025 parameters are dated from the day the announcement printed them (they were in force "
            "then); when they started is not published, so they also stand for earlier runs.",
        ],
        "variants": [
            {"name": "okx-pm-before-2025-01-06", "effective_from": "2020-01-01T00:00:00Z", **common,
             "source": params["source"]["url"] + " ('before adjustments' tables)",
             "price_moves": moves(mr1["before"]), "extreme_moves": mr6["before"],
             "basis_annualised_move": mr4["before"],
             "minimum_charge_bands": {"BTC,ETH": OKX_BANDS_BEFORE, "others": []}},
            {"name": "okx-pm-2025-01-06", "effective_from": "2025-01-06T08:00:00Z", **common,
             "source": params["source"]["url"] + " (MR1, MR6 from 2025-01-06; MR4 immediately)",
             "price_moves": moves(mr1["after"]), "extreme_moves": mr6["after"],
             "basis_annualised_move": mr4["after"],
             "minimum_charge_bands": {"BTC,ETH": OKX_BANDS_BEFORE, "others": []}},
            {"name": "okx-pm-2025-01-15", "effective_from": "2025-01-15T08:00:00Z", **common,
             "source": "MR7 tiers after 2025-01-15 from scallope.com (third-party copy); the rest as 2025-01-06",
             "price_moves": moves(mr1["after"]), "extreme_moves": mr6["after"],
             "basis_annualised_move": mr4["after"],
             "minimum_charge_bands": {"BTC,ETH": OKX_BANDS_AFTER, "others": []}},
            DERIBIT_GRID,
        ],
    }


BYBIT_PORTFOLIO = {
    "sources": ["https://bybitglobal.com/en/help-center/article/Introduction-to-Portfolio-Margin (2024-09-04): MM = "
                "maximum loss + contingency, one risk unit per underlying (spot with spot hedging)",
                "https://main.d34szcsfxnagyb.amplifyapp.com/zh-tw/trading/bybit-portfolio-margin-risk-parameter-"
                "adjustment (mirror of Bybit Learn): BTC/ETH price range +-15 %, +-10 % from 2025-01-10"],
    "not_public": [
        "Contingency rates and the IM factor (IM = MM x factor) were not found: contingency 0 and factor 1.0 here "
        "(initial margin equals maintenance margin), which understates Bybit's initial margin.",
        "Price ranges are published for BTC and ETH only: other underlyings are refused in this mode.",
    ],
    "variants": [
        {"name": "bybit-uta-pm-2024-09-04", "effective_from": "2024-09-04T00:00:00Z", "method": "stress",
         "source": "Bybit Introduction to Portfolio Margin (2024-09-04): +-15 % for BTC, ETH",
         "price_moves": {"BTC,ETH": [0.15]}, "initial_factor": 1.0},
        {"name": "bybit-uta-pm-2025-01-10", "effective_from": "2025-01-10T00:00:00Z", "method": "stress",
         "source": "Bybit Learn (mirror): BTC/ETH price stress range narrowed to +-10 % on 2025-01-10",
         "price_moves": {"BTC,ETH": [0.10]}, "initial_factor": 1.0},
        DERIBIT_GRID,
    ],
}


# Binance Multi-Assets mode as it stands (venue-facts-2026-11): BTC, ETH, BNB 0.95; FDUSD 0.989; BUSD gone;
# auto-exchange at -5,000 for Regular and VIP1 accounts (-10,000 for the others).
BINANCE_MULTI_ASSETS_2026_11 = {
    "name": "binance-multi-assets-2026-11",
    "effective_from": "2026-11-01T00:00:00Z",
    "source": "binance.com FAQ 29b45c485d664028b9ca1cdf90b24f6f (current: 'BTC, ETH and BNB ... receive a 5 % value "
              "haircut'); Multi-Assets Info page (mirror bbapi.viigoo.eu.org, crawl undated, after BUSD's removal): "
              "BNB $1,000 -> $950, FDUSD $1,000 -> $989; auto-exchange below -5,000 USDT/USDC (Regular, VIP1), "
              "-10,000 otherwise, or LTV >= 0.995 with no positions",
    "notes": "Dated at the month the pages were read: when these ratios took over from the 2021 table is not "
             "published, so earlier runs keep the 2021 table unless a config names this variant. USDT and USDC "
             "keep the 2021 0.9999 (not contradicted); XRP, ADA, DOT and SOL ratios were not found and are not "
             "listed (they count 0 in this variant). The threshold is the Regular/VIP1 one (an account's VIP "
             "level is not modelled); the LTV >= 0.995 trigger (no positions) is not modelled.",
    "collateral_ratios": {"BTC": 0.95, "ETH": 0.95, "BNB": 0.95, "FDUSD": 0.989, "USDT": 0.9999, "USDC": 0.9999},
    "auto_exchange": {"threshold_usd": -5_000.0, "cover_ratio": 0.975, "fee_rate": 0.0},
}


# ---------------------------------------------------------------- Binance USD(S)-M
def build_binance(shared: Path) -> dict:
    rules_dir = shared / "exchange-rules"
    src = json.loads((rules_dir / "binance_usdm_leverage_brackets.json").read_text())
    ff = json.loads((rules_dir / "fees_and_funding.json").read_text())["exchanges"]["binance_usdm"]
    coll = json.loads((rules_dir / "binance_multi_assets_collateral_2021.json").read_text())
    brackets = {}
    for sym in sorted(src["symbols"]):
        rows = sorted(src["symbols"][sym], key=lambda r: r["notional_floor"])
        brackets[sym] = [{"notional_floor": float(r["notional_floor"]),
                          "notional_cap": None if r["notional_cap"] is None else float(r["notional_cap"]),
                          "max_leverage": float(r["initial_leverage"]),
                          "maintenance_margin_rate": float(r["maint_margin_ratio"]),
                          "maintenance_amount": float(r["cum"])} for r in rows]
    s = src["source"]
    overrides = {e["symbol"]: float(e["fundingIntervalHours"]) for e in ff["funding"]["override_examples"]}
    return {
        "name": "binance-usdm",
        "exchange": "binance",
        "description": ("Binance USDⓈ-M futures: leverage brackets of all symbols in the shared snapshot "
                        f"({len(brackets)} symbols incl. dated quarterlies with a _YYMMDD suffix), regular-tier fees, "
                        "8h funding with known per-symbol overrides, Smart Liquidation modelled as partial "
                        "liquidation filled at the bankruptcy price."),
        "as_of": s.get("file_last_changed", "2024-10-24"),
        "sources": [
            f"repo {s['repo']} commit {s['commit']} path {s['path']} (via shared/exchange-rules/"
            "binance_usdm_leverage_brackets.json; Binance GET /fapi/v1/leverageBracket values)",
            *ff["fee_sources"],
            *SPOT_FEES["binance"][1],
            *ff["funding"]["sources"],
            "https://www.binance.com/en/support/faq/b3c689c1f50a44cabb3a84e663b81d93 (liquidation price formula, "
            "maintenance amount recurrence, recompute with the bracket at the liquidation notional)",
            "https://docs.traderwagon.com/faq/futures-trading-introduction/liquidation-protocol (quotes Binance "
            "Liquidation Protocol: 'Binance avoids full liquidation of a user's position whenever possible'; one "
            "large IOC order reduces the position; if still margin deficient the position is closed at the "
            "bankruptcy price and the Insurance Fund takes over; remaining collateral goes to the Insurance Fund)",
            "https://www.binance.com/en/support/articles/360033525371-Insurance-Fund",
            f"{coll['source']['url']} (Multi-Assets collateral value ratios, page dated {coll['source']['page_date']})",
        ],
        "not_public": [
            "Liquidation clearance fee rate for USDⓈ-M futures: no rate found in the sources read. fee_rate is 0.0 "
            "because fill=bankruptcy already takes the whole remaining margin of the liquidated part (Binance "
            "sends what is left above the bankruptcy price to the Insurance Fund).",
            "Brackets are a 2024-10-24 snapshot; Binance changes them often. The last bracket's notional_cap is "
            "the maximum position: an order taking the position past it is refused (Binance -2027; see "
            "docs/rules.md, 'The largest position').",
            "Funding interval overrides: only the four examples in shared fees_and_funding.json (GET "
            "/fapi/v1/fundingInfo gives the live list); every other symbol uses 8h.",
            "Collateral ratios are the 2021 Multi-Assets table (historical); today's ratios differ by asset and tier.",
            "Binance publishes no table for unlisted symbols. default_brackets is a copy of the BLZUSDT table "
            "from the same snapshot (20x / 2.5% MMR first bracket, up to 1x / 50% above 1.5M USDT): a "
            "conservative small-cap schedule, chosen by us.",
        ],
        "fees": with_spot({"maker": ff["maker"], "taker": ff["taker"]}, "binance"),
        "funding": {"interval_hours": float(ff["funding"]["default_interval_hours"]),
                    "settlement_times_utc": ff["funding"]["settlement_times_utc"],
                    "interval_overrides": overrides},
        "margin_modes": ["isolated", "cross", "multi-asset", "portfolio"],
        "liquidation": {"policy": "partial", "fill": "bankruptcy", "fee_rate": 0.0,
                        "notes": "Smart Liquidation: IOC orders reduce the position first; what is liquidated "
                                 "closes at the bankruptcy price for the trader (margin above it goes to the "
                                 "Insurance Fund)."},
        "default_brackets": brackets["BLZUSDT"],
        "default_brackets_from": "BLZUSDT",
        "brackets": brackets,
        "collateral_ratios": {a["asset"]: a["collateral_value_ratio"] for a in coll["assets"]},
        "delivery": BINANCE_DELIVERY,
        "portfolio_margin": binance_portfolio(shared),
        "dated_variants": [BINANCE_MULTI_ASSETS_2026_11],
        "auto_exchange": {
            "threshold_usd": float(coll["auto_exchange"]["threshold_usd"]),
            "cover_ratio": 0.975,
            "fee_rate": 0.0,
            "source": coll["auto_exchange"]["source"],
            "notes": ("Multi-Assets Mode: a negative balance beyond the threshold is covered by converting other "
                      "assets; the FAQ example converts 20,000/97.5% worth for a 20,000 deficit (cover_ratio). "
                      "The conversion fee is not published: 0.0 is assumed."),
        },
    }


# ---------------------------------------------------------------- Hyperliquid
HL_TIERS = {
    "BTC": [(0, 40), (150_000_000, 20)],
    "ETH": [(0, 25), (100_000_000, 15)],
    "SOL": [(0, 20), (70_000_000, 10)],
    "XRP": [(0, 20), (40_000_000, 10)],
}
HL_10X_20M = ("DOGE kPEPE SUI WLD TRUMP LTC ENA POPCAT WIF AAVE kBONK LINK CRV AVAX ADA UNI NEAR TIA APT BCH "
              "HYPE FARTCOIN").split()
HL_10X_3M = "OP ARB LDO TON MKR ONDO JUP INJ kSHIB SEI TRX BNB DOT".split()


def build_hyperliquid(ff: dict) -> dict:
    tables = dict(HL_TIERS)
    tables.update({c: [(0, 10), (20_000_000, 5)] for c in HL_10X_20M})
    tables.update({c: [(0, 10), (3_000_000, 5)] for c in HL_10X_3M})
    return {
        "name": "hyperliquid",
        "exchange": "hyperliquid",
        "description": ("Hyperliquid perpetuals (USDC collateral): mainnet margin tiers as documented, "
                        "MMR = half the initial margin rate at the tier's max leverage, maintenance deduction by the "
                        "tier recurrence; hourly funding; base-tier fees; liquidation by market orders (partial "
                        "for large positions), backstop liquidation below 2/3 of maintenance."),
        "as_of": "2025",
        "sources": [
            "https://hyperliquid.gitbook.io/hyperliquid-docs/trading/margin-tiers (formula, mainnet tiers)",
            "https://hyperliquid.gitbook.io/hyperliquid-docs/trading/liquidations (market-order liquidation, "
            "backstop below 2/3 of maintenance margin, liq_price formula)",
            "https://hyperliquid.gitbook.io/hyperliquid-docs/trading/fees (fee tiers; base tier 0.045% taker / "
            "0.015% maker, also tabulated at https://hypernode-docs.polynode.dev/research/fees)",
            *SPOT_FEES["hyperliquid"][1],
            "https://hyperliquid.gitbook.io/hyperliquid-docs/trading/funding (8h rate paid hourly at 1/8; read "
            "via https://docs.hyena.trade/trading/funding-rates and https://www.cortex-vigil.com/wiki/funding-rates, "
            "which replicate/quote it)",
            "https://www.cortex-vigil.com/wiki/liquidations (third-party summary of the docs: positions > 100k "
            "USDC liquidated 20% at a time, 30 s cooldown)",
        ],
        "not_public": [
            "Partial-liquidation cooldown (30 s after a partial order, during which liquidation orders are for "
            "the full position) is read from docs.tings.xyz, which quotes Hyperliquid's docs, and "
            "tginsight.xyz/channel/hyperliquid_announcements/post/307; the first-party page was not reachable. "
            "Intrabar path points are nominal (bar fractions), so 'within 30 s' is judged on those stamps.",
            "The docs page is undated; as_of gives only the year the tiers were read (2025). Tiers change.",
            "Assets without a documented tier table use default_brackets: one tier at 3x (MMR 16.7%), the lowest "
            "max leverage the liquidations page mentions (3-50x) - an assumption on the safe side. The live "
            "per-asset maxLeverage is in the `meta` info response.",
            "Symbol keys are BASE+USDC (e.g. BTCUSDC) to match Instrument.native_id for BTC/USDC:USDC; "
            "Hyperliquid itself names the asset BTC.",
            "No liquidation clearance fee is documented (liquidations are market orders; the trader keeps any "
            "remaining collateral), so fee_rate is 0.0; the liquidation trade's own taker fee is not included. "
            "Backstop liquidation (equity < 2/3 maintenance: the position and its margin go to the liquidator "
            "vault) is recorded in liquidation.backstop_maintenance_fraction but not encoded in policy/fill.",
        ],
        "fees": with_spot({"maker": 0.00015, "taker": 0.00045}, "hyperliquid"),
        "funding": {"interval_hours": 1.0, "interval_overrides": {}},
        "margin_modes": ["isolated", "cross"],
        "liquidation": {"policy": "partial", "fill": "trigger", "fee_rate": 0.0,
                        "backstop_maintenance_fraction": 2 / 3,
                        "partial_above_notional": 100_000.0, "partial_fraction": 0.2, "cooldown_seconds": 30.0},
        "default_brackets": hyperliquid_tiers([(0, 3)]),
        "brackets": {f"{coin}USDC": hyperliquid_tiers(t) for coin, t in sorted(tables.items())},
        "collateral_ratios": {"USDC": 1.0},
    }


# ---------------------------------------------------------------- Bybit linear (USDT perpetuals)
# Bybit BTCUSDT risk-limit tiers: (risk limit = the tier's notional cap in USDT, max leverage, MMR, deduction).
BYBIT_BTCUSDT_TIERS = [
    (2_000_000, 100, 0.005, 0), (2_600_000, 90, 0.0056, 1_200), (3_200_000, 80, 0.0063, 3_020),
    (3_800_000, 75, 0.0067, 4_300), (4_400_000, 70, 0.0071, 5_820), (5_000_000, 65, 0.0077, 8_460),
    (5_600_000, 55, 0.0091, 15_460), (8_500_000, 50, 0.01, 20_500), (10_000_000, 45, 0.013, 46_000),
    (14_000_000, 40, 0.015, 66_000), (20_000_000, 35, 0.016, 80_000), (28_000_000, 30, 0.02, 160_000),
    (38_000_000, 25, 0.025, 300_000), (50_000_000, 20, 0.029, 452_000), (55_000_000, 19, 0.03, 502_000),
    (60_000_000, 18, 0.035, 777_000), (65_000_000, 17, 0.036, 837_000), (70_000_000, 16, 0.038, 967_000),
    (75_000_000, 15, 0.04, 1_107_000), (80_000_000, 14, 0.045, 1_482_000),
]
BYBIT_BTCUSDT_SOURCE = ("Bybit 'Margin Parameters' page, Portuguese mirror https://bybitx.global/pt-PT/announcement-info/"
                        "margin-parameters (undated, about 2024-25; 20 tiers, the deduction recurrence holds on every "
                        "row); formula https://bybitglobal.com/en/announcement-info/margin-parameters")


def bybit_tiers(rows) -> list[dict]:
    """Brackets from Bybit risk-limit rows (risk limit, max leverage, MMR, deduction): each tier runs from
    the previous risk limit to its own; the last risk limit is the largest position, and above it the
    last tier applies (open cap). The printed deductions must follow the recurrence (checked here)."""
    floors = [0] + [row[0] for row in rows[:-1]]
    out = tiered([(floor, lev, rate) for floor, (_, lev, rate, _) in zip(floors, rows)])
    for bracket, (_, _, _, deduction) in zip(out, rows):
        if abs(bracket["maintenance_amount"] - deduction) > 1e-6:
            raise SystemExit(f"build_rules: Bybit deduction {deduction} does not follow the recurrence "
                             f"({bracket['maintenance_amount']})")
    return out


def build_bybit(ff: dict, tier_examples: dict) -> dict:
    e = ff["bybit_linear"]
    bybit_btc_tiers = tier_examples["bybit_uta_example"]["BTC"]
    return {
        "name": "bybit-linear",
        "exchange": "bybit",
        "description": ("Bybit USDT perpetuals: BTCUSDT's 20 risk-limit tiers as published (0.5 % / 100x up to "
                        "2,000,000 USDT ... 4.5 % / 14x up to 80,000,000); everything else uses a 1% MMR / 50x "
                        "default. Positions are settled at the bankruptcy price; laddered (partial) liquidation."),
        "as_of": "2025-11-25",
        "sources": [
            "https://www.bytick.com/fil-PH/help-center/search-result?page=34&pageSize=10&query=Bybit (excerpt of "
            "Bybit help 'Maintenance Margin (USDT Contract)': BTCUSDT position value <= 2,000,000 USDT -> MMR "
            "0.5%; tier-based (marginal) MMR with an XYZUSDT illustration)",
            "https://www.bybit.com/ar-SA/help-center/article/Risk-Limit-Inverse-Contract (updated 2025-11-25: "
            "maintenance margin base rate 0.5% for BTC and 1% for ETH, EOS, XRP; laddered liquidation)",
            "repo carpenstar/bybitapi-sdk-derivatives path src/Derivatives/MarketData/RiskLimit/README.md "
            "(testnet GET risk-limit sample: BTCUSDT limit 2000000, maintain margin 0.005, initial margin 0.01, "
            "maxLeverage 100)",
            "https://testnet.bybit.com/en-US/help-center/s/article/Liquidation-Price-USDT-Contract (isolated "
            "liquidation price; position closed at the bankruptcy price)",
            "https://testnet.bybit.com/ar-SA/help-center/article/Liquidation-Price-Calculation-under-Isolated-Mode-"
            "Unified-Trading-Account",
            *e["fee_sources"],
            *SPOT_FEES["bybit"][1],
            *e["funding"]["sources"],
        ],
        "not_public": [
            "Bybit risk-limit tiers: BTCUSDT's 20 tiers come from a mirror of Bybit's Margin Parameters page "
            "(undated, about 2024-25). Later generations seen only in third-party code (a 7-tier table 'verified "
            "2026-02-27'; a 300,000 USDT / 0.33 % / 150x lowest tier from 2026-09) are not used. ETHUSDT/SOLUSDT "
            "are not tabulated: unlisted symbols use default_brackets = 1% MMR / 50x (the 1% 'base rate for ETH, "
            "EOS, XRP' of the inverse Risk Limit article, used as a proxy for USDT contracts).",
            "No separate liquidation fee is modelled: Bybit settles at the bankruptcy price (which includes the "
            "estimated fee to close), so fee_rate is 0.0.",
            "Bybit's documented isolated liquidation price evaluates maintenance margin at the entry position "
            "value (see xmargin.margin.formulas.isolated_liquidation_price_entry_mm); the rule file does not switch this.",
            "maintenance_basis 'entry' also covers inverse contracts, isolated and cross (single-asset pool): Bybit's "
            "classic inverse formula takes (Q / entry) x MMR (help.bybit.com/hc/en-us/articles/360039261334, legacy, "
            "a cross example), and linear cross positions too (help.bybit.com/hc/en-us/articles/900000181046, "
            "'Liquidation Price (USDT Contract)', cross Example 1: MM = 2 x 10,000 x 0.5 % on the entry value at a "
            "mark of 10,500, LP 8,950; read 2026-11-29). A multi-asset pool's positions stay at the mark. "
            "Bybit's UTA inverse isolated formula (kbybit.com, 2026-05-27) takes the maintenance at the liquidation "
            "price instead (Q x MMR / LP): a UTA rule set would use maintenance_basis 'mark'.",
            "Collateral (multi-asset mode, Unified Trading Account): USDT at 1 and BTC with the tiered ratios of "
            "Bybit's published UTA example (shared collateral_tier_examples.json, page updated 2025-09-18); it is "
            "an example table, not a live parameter; other assets are not listed and count at 0.",
        ],
        "fees": with_spot({"maker": e["maker"], "taker": e["taker"]}, "bybit"),
        "funding": {"interval_hours": float(e["funding"]["default_interval_hours"]), "interval_overrides": {}},
        "margin_modes": ["isolated", "cross", "multi-asset", "portfolio"],
        "liquidation": {"policy": "partial", "fill": "bankruptcy", "fee_rate": 0.0, "maintenance_basis": "entry",
                        "notes": "Isolated positions: Bybit's documented liquidation price takes the maintenance "
                                 "margin at the entry position value (LP = entry - side x (IM - MM) / size) and "
                                 "liquidates when the mark reaches it (help 'Liquidation Price (USDT Contract)')."},
        "default_brackets": tiered([(0, 50, 0.01)]),
        "brackets": {"BTCUSDT": bybit_tiers(BYBIT_BTCUSDT_TIERS)},
        "brackets_sources": {"BTCUSDT": BYBIT_BTCUSDT_SOURCE},
        "collateral_ratios": {"USDT": 1.0, "BTC": {"unit": "coin", "tiers": bybit_btc_tiers}},
        "delivery": BYBIT_DELIVERY,
        "portfolio_margin": BYBIT_PORTFOLIO,
    }


# ---------------------------------------------------------------- OKX swaps
OKX_TIERS_SOURCE = ("OKX announcement 'OKX to adjust position tiers of perpetual swaps' 2023-05-15, effective "
                    "2023-05-19 (mirror https://www.okx.vote/pl/help/okx-to-adjust-position-tiers-of-perpetual-swaps-"
                    "2023-05-15; shared/exchange-rules/venue-facts-2026-11.md)")
# symbol: (contract value (base units, OKX ctVal), first three tiers (max contracts, MMR, IMR), tier >= 4 step
# (contracts, MMR, IMR)); tiers 4.. follow the announcement's rule "+step contracts, +0.5 % MMR, +0.5 % IMR".
OKX_SWAP_TIERS = {
    "ADAUSDT": (100.0, [(1_500, 0.005, 1 / 75), (3_000, 0.0075, 0.02), (6_000, 0.01, 0.025)], (6_000, 0.005, 0.005)),
    "AAVEUSDT": (0.1, [(1_000, 0.0065, 0.02), (3_000, 0.01, 0.025), (8_000, 0.015, 0.05)], (8_000, 0.005, 0.005)),
}
OKX_TIER_COUNT = 10  # tiers written per symbol; the last one is open-ended (see not_public)


def okx_contract_tiers(contract_value: float, first, step) -> dict:
    """A rule file's contract-counted table from OKX's published tier shape (leverage = 1 / IMR)."""
    rows = list(first)
    while len(rows) < OKX_TIER_COUNT:
        cap, mmr, imr = rows[-1]
        rows.append((cap + step[0], round(mmr + step[1], 6), round(imr + step[2], 6)))
    return {"unit": "contracts", "contract_value": contract_value, "as_of": "2023-05-19", "source": OKX_TIERS_SOURCE,
            "tiers": [{"max_contracts": None if n == len(rows) - 1 else cap,
                       "max_leverage": round(1 / imr, 2), "maintenance_margin_rate": mmr}
                      for n, (cap, mmr, imr) in enumerate(rows)]}


def build_okx(ff: dict, shared: Path) -> dict:
    e = ff["okx_swap"]
    return {
        "name": "okx-swap",
        "exchange": "okx",
        "description": ("OKX USDT-margined perpetual swaps. Position tiers in contracts for ADAUSDT and AAVEUSDT "
                        "(OKX announcement, effective 2023-05-19); other symbols use one assumed default tier (1% "
                        "MMR, 50x). Fees LV1 0.02%/0.05% (third-party, unverified); 8h funding."),
        "as_of": "2025-01-02",
        "sources": [
            *e["fee_sources"],
            *SPOT_FEES["okx"][1],
            "https://www.okx.com/help-center/6997123251341 (OKX isolated margin mode: margin ratio includes a "
            "taker-fee term; spot-margin formulas)",
            "https://open-lib.com/11556.html (third-party summary of OKX liquidation: partial liquidation by "
            "tiers, full liquidation taken over at the bankruptcy price)",
            OKX_TIERS_SOURCE,
            "https://wuyelx.com/7028.html (third-party: OKX tiered maintenance margin rates; BTC perpetual tier "
            "example in contracts, tier 1 0.5% MMR / 100x)",
            "shared/exchange-rules/okx_portfolio_margin_params_2025-01.json (PM parameters; dated 2025-01-02)",
        ],
        "not_public": [
            "OKX position tiers (GET /api/v5/public/position-tiers) were not found as data. ADAUSDT and AAVEUSDT "
            "carry the tiers of OKX's 2023-05-15 announcement (effective 2023-05-19), in contracts: tiers 1-3 as "
            "printed, tiers 4-9 by its rule '+6,000 (ADA) / +8,000 (AAVE) contracts, +0.5 % MMR, +0.5 % IMR per "
            "tier'; the announcement does not say how many tiers there are, so tier 10 is ASSUMED open-ended. Max "
            "leverage = 1 / IMR. No older table of these symbols was found, so there is no dated variant.",
            "Contract values (ctVal) ADA-USDT-SWAP 100 ADA, AAVE-USDT-SWAP 0.1 AAVE: OKX's instrument listing as "
            "known to the author, NOT checked against a GET /api/v5/public/instruments response this session; "
            "`xmargin rules import --contracts` with a real response writes the venue's own.",
            "OKX holds the tier's MMR on the whole position (isolated margin ratio = (margin + UPL) / (|Q| x mark x "
            "(tier MMR + fee))): no deduction, so maintenance margin jumps where a position crosses a tier "
            "boundary, unlike notional brackets.",
            "default_brackets is an ASSUMPTION: one tier, MMR 1%, max leverage 50 - not an OKX number. "
            "BTC/ETH/SOL-USDT-SWAP have no own table (the only BTC example found is third-party and undated).",
            "Fees are from third-party summaries (LV1 maker 0.02% / taker 0.05%), not checked against okx.com.",
            "Funding: 8h default; OKX publishes per-instrument funding times that were not verified.",
            "OKX's maintenance margin ratio adds the taker fee to the requirement: maintenance.fee_to_close = "
            "taker folds it into every tier's rate (MM = notional x (MMR + taker) - amount), so the liquidation "
            "price is (entry - margin/Q) / (1 - MMR - fee) for a long; with fill=bankruptcy it is not charged "
            "again as a liquidation fee (fee_rate 0.0).",
        ],
        "fees": with_spot({"maker": e["maker"], "taker": e["taker"]}, "okx"),
        "funding": {"interval_hours": float(e["funding"]["default_interval_hours"]), "interval_overrides": {}},
        "margin_modes": ["isolated", "cross", "multi-asset", "portfolio"],
        "liquidation": {"policy": "partial", "fill": "bankruptcy", "fee_rate": 0.0},
        "default_brackets": tiered([(0, 50, 0.01)]),
        "brackets": {sym: okx_contract_tiers(value, first, step)
                     for sym, (value, first, step) in sorted(OKX_SWAP_TIERS.items())},
        "brackets_sources": {sym: OKX_TIERS_SOURCE for sym in sorted(OKX_SWAP_TIERS)},
        "collateral_ratios": {"USDT": 1.0},
        "delivery": OKX_DELIVERY,
        "maintenance": {"fee_to_close": "taker",
                        "source": "OKX 'Tiered maintenance margin ratio rules' (updated 2025-05-16, mirror "
                                  "okx.huicker.com): liquidation when equity <= maintenance margin + liquidation fees; "
                                  "isolated margin ratio = (margin + UPL) / (|Q| x mark x (tier MMR + fee rate)) "
                                  "(open-lib.com/11556.html, third-party summary of OKX's help page)"},
        "portfolio_margin": okx_portfolio(shared),
    }


# ---------------------------------------------------------------- Binance COIN-M (inverse perpetuals)
# Binance's usual maintenance-rate ladder by max leverage: half the initial margin rate 1/(2 x leverage),
# except 3x, where Binance uses 15 % (as in the USD-M brackets of shared/exchange-rules) rather than 16.7 %.
COINM_MMR = {125: 0.004, 100: 0.005, 75: 0.5 / 75, 50: 0.01, 20: 0.025, 10: 0.05, 5: 0.10, 4: 0.125, 3: 0.15,
             2: 0.25}
# (notional floor in COIN, max leverage): FAQ 'Leverage and Margin in Coin-Margined Futures Contracts'.
COINM_TIERS = {
    "BTCUSD": [(0, 125), (10, 100), (20, 50), (30, 20), (50, 10), (100, 5), (200, 4), (400, 3), (1_000, 2)],
    "ETHUSD": [(0, 100), (100, 75), (500, 50), (1_000, 20), (2_000, 10), (4_000, 5), (6_000, 4), (8_000, 3),
               (10_000, 2)],
}


def build_binance_coinm() -> dict:
    brackets = {sym: tiered([(floor, lev, COINM_MMR[lev]) for floor, lev in tiers])
                for sym, tiers in sorted(COINM_TIERS.items())}
    btc = brackets["BTCUSD"]
    # the FAQ's worked numbers: level 4 amount 0.56 BTC, level 5 = 50 x (5% - 2.5%) + 0.56 = 1.81 BTC;
    # 100 BTCUSD contracts (100 USD each) at 25,000 = 0.4 BTC notional -> MM 0.0016 BTC at 0.4 %
    assert abs(btc[3]["maintenance_amount"] - 0.56) < 1e-9, btc[3]
    assert abs(btc[4]["maintenance_amount"] - 1.81) < 1e-9, btc[4]
    assert abs(100 * 100 / 25_000 * btc[0]["maintenance_margin_rate"] - 0.0016) < 1e-12, btc[0]
    return {
        "name": "binance-coinm",
        "exchange": "binance",
        "description": ("Binance COIN-M inverse perpetuals (BTCUSD, ETHUSD): margin, PnL, fees and maintenance "
                        "amounts in the base coin; bracket notional in COIN units (contracts x contract size / "
                        "price). Historical leverage tiers of 2020-06-11, maintenance rates derived (half the "
                        "initial margin rate, 15 % at 3x), regular-tier fees, 8h funding, partial liquidation "
                        "at the bankruptcy price."),
        "as_of": "2020-06-11",
        "sources": [
            "https://www.binance.com/en/support/faq/be2c7d9d95b04a7e8044ed02dd7dfe5c (Binance FAQ 'Leverage and "
            "Margin in Coin-Margined Futures Contracts', 2020-06-11: BTCUSD and ETHUSD leverage tiers, notional "
            "in BTC / ETH)",
            "https://www.binance.com/en/support/faq/ceccfcfb4e3a45e3b48b0b1bb1a8ae46 (Binance COIN-M FAQ: level 1 "
            "maintenance rate 0.4 %, 100 BTCUSD contracts at 25,000 -> MM 0.0016 BTC; 'BTCUSD Level 5 = 50 BTC x "
            "(5% - 2.5%) + 0.56 BTC = 1.81 BTC')",
            *SPOT_FEES["binance"][1],
            "https://www.binance.com/en/support/faq/360033544231 (Binance Futures fee structure: coin-margined "
            "commission = notional in coin x fee rate, BTCUSD contract size 100 USD; worked example with a "
            "regular user's maker 0.02 % / taker 0.05 %)",
            "https://developers.binance.com/docs/zh-CN/derivatives/coin-margined-futures/market-data/rest-api/"
            "Get-Funding-Info (COIN-M funding info; 8h default, settlements 00:00/08:00/16:00 UTC)",
            "https://www.binance.com/en/support/faq/b3c689c1f50a44cabb3a84e663b81d93 (liquidation price formula, "
            "maintenance amount recurrence; as used for binance-usdm)",
            "https://docs.traderwagon.com/faq/futures-trading-introduction/liquidation-protocol (quotes Binance "
            "Liquidation Protocol: partial reduction first, then close at the bankruptcy price)",
        ],
        "not_public": [
            "These are HISTORICAL tiers (FAQ of 2020-06-11); Binance has changed COIN-M brackets since (GET "
            "/dapi/v1/leverageBracket gives the live ones, with qtyFloor/qtyCap in coin).",
            "Maintenance margin rates are not tabulated on the cited pages. MMR = half the initial margin rate at "
            "the tier's max leverage (125x 0.4 %, 100x 0.5 %, 75x 0.667 %, 50x 1 %, 20x 2.5 %, 10x 5 %, 5x 10 %, "
            "4x 12.5 %), except 3x at 15 % (Binance's usual ladder value, as in the USD-M brackets; half would "
            "be 16.7 %); 2x 25 %. With floors 0/10/20/30/50 BTC this reproduces the FAQ's level-1 rate 0.4 %, "
            "level-4 amount 0.56 BTC and level-5 amount 1.81 BTC (checked by an assert in build_rules.py). "
            "The ETHUSD rates are derived the same way and are not confirmed by any Binance example.",
            "Brackets are keyed BASE+QUOTE (BTCUSD, ETHUSD) to match Instrument.native_id of BTC/USD:BTC; Binance "
            "names the perpetual BTCUSD_PERP. Quarterly COIN-M contracts are not listed separately.",
            "default_brackets is a copy of the ETHUSD table, chosen by us: Binance publishes no table for other "
            "COIN-M coins. ETHUSD starts at 100x (not 125x) and its coin-unit floors are 10x those of BTCUSD, "
            "so for coins cheaper than BTC it is the less arbitrary of the two; floors in coin units do not carry "
            "over between coins, so treat it as a rough stand-in.",
            "Fees: regular-tier maker 0.02 % / taker 0.05 % come from the worked example in Binance's fee FAQ "
            "(current version); an earlier version of the same FAQ used maker 0.015 % / taker 0.040 % for the "
            "coin-margined example, and the 2020 COIN-M fee table itself was not read. Treat as assumed equal to "
            "USD-M.",
            "Liquidation: modelled like binance-usdm (partial, filled at the bankruptcy price, fee_rate 0.0); no "
            "COIN-M-specific liquidation clearance fee rate was found in the sources read.",
            "Collateral: COIN-M margin is the coin itself (BTC for BTCUSD, ETH for ETHUSD), so each counts at "
            "1.0 in its own unit; there is no cross-coin collateral in COIN-M.",
        ],
        "fees": with_spot({"maker": 0.0002, "taker": 0.0005}, "binance"),
        "funding": {"interval_hours": 8.0, "settlement_times_utc": ["00:00", "08:00", "16:00"],
                    "interval_overrides": {}},
        "margin_modes": ["isolated", "cross"],
        "liquidation": {"policy": "partial", "fill": "bankruptcy", "fee_rate": 0.0,
                        "notes": "As binance-usdm: what is liquidated closes at the bankruptcy price (margin above "
                                 "it goes to the Insurance Fund); amounts in the margin coin."},
        "default_brackets": brackets["ETHUSD"],
        "default_brackets_from": "ETHUSD",
        "brackets": brackets,
        "collateral_ratios": {"BTC": 1.0, "ETH": 1.0},
        "delivery": BINANCE_DELIVERY,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", help="the shared/ folder holding exchange-rules/ (default: ./shared or /work/shared)")
    ap.add_argument("--out", default=str(DATA_DIR), help="output folder (default: engine/venues/rules/data)")
    args = ap.parse_args(argv)
    shared = _find_shared(args.shared)
    ff = json.loads((shared / "exchange-rules" / "fees_and_funding.json").read_text())["exchanges"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tier_examples = json.loads((shared / "exchange-rules" / "collateral_tier_examples.json").read_text())
    for rules in (build_binance(shared), build_binance_coinm(), build_hyperliquid(ff),
                  build_bybit(ff, tier_examples), build_okx(ff, shared)):
        path = out / f"{rules['name']}.json"
        path.write_text(json.dumps(rules, indent=1, ensure_ascii=False) + "\n")
        print(f"wrote {path} ({len(rules['brackets'])} symbols)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
