"""`xmargin rules import`: rule files and instrument filters from venue metadata dumps.

Fixtures: tests/fixtures/venues/ (README.md cites repository, path and commit of each real response;
`HANDWRITTEN_*` files are labelled as written from documented numbers).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from xmargin.cli.main import main
from xmargin.dataset.filters import apply_market_filters
from xmargin.dataset.manifest import read_manifest
from xmargin.errors import RulesError
from xmargin.venues.metadata import read_metadata
from xmargin.venues.rules import load_rules
from xmargin.venues.rules.imported import rule_file_from

ROOT = Path(__file__).resolve().parents[1]
VENUES = ROOT / "tests" / "fixtures" / "venues"
CCXT_TIERS = VENUES / "ccxt_fetch_leverage_tiers_binance.json"


def _import(tmp_path, *args) -> tuple[object, Path]:
    out = tmp_path / "imported.json"
    result = CliRunner().invoke(main, ["rules", "import", *map(str, args), "--out", str(out)])
    return result, out


def _native(symbol: str) -> str:
    """`BTC/USDT:USDT-241227` -> `BTCUSDT_241227` (the engine's symbol id)."""
    base, rest = symbol.split("/")
    expiry = rest.partition("-")[2]
    return f"{base}{rest.split(':')[0]}" + (f"_{expiry}" if expiry else "")


def test_ccxt_leverage_tiers_brackets_equal_the_dump(tmp_path):
    result, out = _import(tmp_path, CCXT_TIERS, "--exchange", "binance", "--as-of", "2024-10-24", "--source",
                          "freqtrade/freqtrade@c9ae5e1e9ff2:freqtrade/exchange/binance_leverage_tiers.json")
    assert result.exit_code == 0, result.output
    dump = json.loads(CCXT_TIERS.read_text())
    written = json.loads(out.read_text())
    assert sorted(written["brackets"]) == sorted(_native(s) for s in dump)
    compared = 0
    for symbol, tiers in dump.items():
        brackets = written["brackets"][_native(symbol)]
        assert len(brackets) == len(tiers), symbol
        for tier, bracket in zip(tiers, brackets):
            assert bracket == {"notional_floor": tier["minNotional"], "notional_cap": tier["maxNotional"],
                               "max_leverage": tier["maxLeverage"],
                               "maintenance_margin_rate": tier["maintenanceMarginRate"],
                               "maintenance_amount": float(tier["info"]["cum"])}, (symbol, tier["tier"])
            # and the raw Binance bracket ccxt kept agrees with its unified fields
            info = tier["info"]
            assert (float(info["notionalFloor"]), float(info["notionalCap"]), float(info["initialLeverage"]),
                    float(info["maintMarginRatio"])) == (bracket["notional_floor"], bracket["notional_cap"],
                                                         bracket["max_leverage"], bracket["maintenance_margin_rate"])
            compared += 5
    assert compared == 5 * sum(len(t) for t in dump.values()) == 5 * 62
    # dated, names its source, loads, and keeps the base rule set's fees, funding and liquidation
    assert written["as_of"] == "2024-10-24"
    assert "ccxt_fetch_leverage_tiers_binance.json (sha256 " in written["sources"][0]
    assert "freqtrade/freqtrade@c9ae5e1e9ff2" in written["sources"][0]
    rules = load_rules(str(out))
    base = load_rules("binance-usdm")
    assert (rules.maker_fee, rules.taker_fee, rules.spot_taker_fee) == (base.maker_fee, base.taker_fee,
                                                                      base.spot_taker_fee)
    assert rules.liquidation == base.liquidation and rules.funding_interval("LPTUSDT") == 4
    # the same freqtrade snapshot built the built-in binance-usdm: the brackets agree symbol for symbol
    for native_id, table in rules.symbol_brackets.items():
        assert table.brackets == base.brackets_for(native_id).brackets, native_id


def test_binance_leverage_bracket_response(tmp_path):
    """A leverageBracket response rebuilt from the real `info` objects of the ccxt dump (each is one
    element of `brackets`, numbers kept as ccxt's strings) gives the same brackets as the ccxt path."""
    dump = json.loads(CCXT_TIERS.read_text())
    response = [{"symbol": _native(s), "notionalCoef": "1.0", "brackets": [t["info"] for t in tiers]}
                for s, tiers in dump.items()]
    path = tmp_path / "leverageBracket.json"
    path.write_text(json.dumps(response))
    via_ccxt = rule_file_from(read_metadata([CCXT_TIERS], "binance"), [CCXT_TIERS], exchange="binance", name="a",
                              as_of="2024-10-24")
    raw = rule_file_from(read_metadata([path], "binance"), [path], exchange="binance", name="b", as_of="2024-10-24")
    assert raw.data["brackets"] == via_ccxt.data["brackets"]


def test_bybit_risk_limit_tiers(tmp_path):
    path = VENUES / "HANDWRITTEN_bybit_v5_risk_limit_BTCUSDT.json"
    imported = rule_file_from(read_metadata([path], "bybit"), [path], exchange="bybit", name="bybit-2025",
                              as_of="2025-06-01")
    rows = json.loads(path.read_text())["result"]["list"]
    brackets = imported.data["brackets"]["BTCUSDT"]
    assert len(brackets) == 20
    floor = 0.0
    for row, bracket in zip(rows, brackets):
        assert bracket == {"notional_floor": floor, "notional_cap": float(row["riskLimitValue"]),
                           "max_leverage": float(row["maxLeverage"]),
                           "maintenance_margin_rate": float(row["maintenanceMargin"]),
                           "maintenance_amount": float(row["mmDeduction"])}
        floor = float(row["riskLimitValue"])
    # by hand, tier 2: 2,000,000 x (0.56 % - 0.50 %) = 1,200 = Bybit's deduction
    assert brackets[1]["maintenance_amount"] == pytest.approx(2_000_000 * (0.0056 - 0.005))
    assert imported.data["fees"]["taker"] == 0.00055  # from the base bybit-linear


def test_bybit_percent_units_are_recognised(tmp_path):
    """The v5 docs' inverse example gives maintenanceMargin "0.5", initialMargin "1" for 100x: percent."""
    path = tmp_path / "risk.json"
    path.write_text(json.dumps({"retCode": 0, "result": {"list": [
        {"symbol": "BTCUSD", "riskLimitValue": "150", "maintenanceMargin": "0.5", "initialMargin": "1",
         "maxLeverage": "100"}]}}))
    metadata = read_metadata([path], "bybit")
    (tier,) = metadata.tiers["BTCUSD"]
    assert (tier.maintenance_margin_rate, tier.cap, tier.max_leverage) == (0.005, 150.0, 100.0)
    assert any("percent" in w for w in metadata.warnings)


def test_okx_tiers_in_contracts_need_contract_value_and_price(tmp_path):
    tiers = VENUES / "HANDWRITTEN_okx_v5_position_tiers_BTC-USDT_SWAP.json"
    instruments = VENUES / "okx_public_instruments_swap.json"
    with pytest.raises(RulesError, match="BTCUSDT: its tiers are in contracts and no instruments dump"):
        rule_file_from(read_metadata([tiers], "okx"), [tiers], exchange="okx", name="x", as_of="2025-01-01")
    both = read_metadata([tiers, instruments], "okx")
    with pytest.raises(RulesError, match=r"--reference-price BTC=<price in USDT>"):
        rule_file_from(both, [tiers, instruments], exchange="okx", name="x", as_of="2025-01-01")
    result, out = _import(tmp_path, tiers, instruments, "--exchange", "okx", "--as-of", "2025-01-01",
                          "--reference-price", "BTC=60000")
    assert result.exit_code == 0, result.output
    brackets = json.loads(out.read_text())["brackets"]["BTCUSDT"]
    # contracts x ctVal 0.01 BTC x 60,000 USDT: 20,000 -> 12,000,000; 22,000 -> 13,200,000
    assert [(b["notional_floor"], b["notional_cap"], b["max_leverage"], b["maintenance_margin_rate"])
            for b in brackets] == [(0.0, 12_000_000.0, 100.0, 0.005), (12_000_000.0, 13_200_000.0, 66.66, 0.01)]
    assert brackets[1]["maintenance_amount"] == pytest.approx(12_000_000 * (0.01 - 0.005))
    assert "at BTC = 60000 USDT" in result.output
    # --contracts keeps them counted in contracts, with the instrument's contract value: no price needed
    result, out = _import(tmp_path / "c", tiers, instruments, "--exchange", "okx", "--as-of", "2025-01-01",
                          "--contracts")
    assert result.exit_code == 0, result.output
    table = json.loads(out.read_text())["brackets"]["BTCUSDT"]
    assert (table["unit"], table["contract_value"], table["as_of"]) == ("contracts", 0.01, "2025-01-01")
    assert table["tiers"] == [{"max_contracts": 20_000.0, "max_leverage": 100.0, "maintenance_margin_rate": 0.005},
                              {"max_contracts": 22_000.0, "max_leverage": 66.66, "maintenance_margin_rate": 0.01}]
    assert tiers.name in table["source"]
    # a MARGIN (spot-margin loan) tier file is refused, naming it
    margin = VENUES / "okx_public_position_tiers_MARGIN.json"
    result, out = _import(tmp_path / "m", margin, "--exchange", "okx", "--as-of", "2025-01-01")
    assert result.exit_code == 2 and "MARGIN (spot margin loan) tiers" in result.output
    assert str(margin) in result.output


def test_hyperliquid_meta_tiers():
    real = VENUES / "hyperliquid_info_meta.json"  # 2023: no margin tables, one flat tier per coin
    imported = rule_file_from(read_metadata([real], "hyperliquid"), [real], exchange="hyperliquid", name="hl",
                              as_of="2023-07-17")
    assert sorted(imported.data["brackets"]) == ["ATOMUSDC", "BTCUSDC", "DYDXUSDC", "ETHUSDC", "MATICUSDC",
                                                 "SOLUSDC"]
    assert imported.data["brackets"]["BTCUSDC"] == [{"notional_floor": 0.0, "notional_cap": None, "max_leverage": 50.0,
                                                     "maintenance_margin_rate": 0.01, "maintenance_amount": 0.0}]
    tables = VENUES / "HANDWRITTEN_hyperliquid_meta_marginTables.json"
    imported = rule_file_from(read_metadata([tables], "hyperliquid"), [tables], exchange="hyperliquid", name="hl",
                              as_of="2026-11-10")
    # docs: 40x to 150M (MMR 1.25 %), 20x above (2.5 %, deduction 150M x 1.25 % = 1,875,000)
    assert imported.data["brackets"]["BTCUSDC"] == [
        {"notional_floor": 0.0, "notional_cap": 150_000_000.0, "max_leverage": 40.0,
         "maintenance_margin_rate": 0.0125, "maintenance_amount": 0.0},
        {"notional_floor": 150_000_000.0, "notional_cap": None, "max_leverage": 20.0,
         "maintenance_margin_rate": 0.025, "maintenance_amount": 1_875_000.0}]
    builtin = load_rules("hyperliquid").brackets_for("BTCUSDC").brackets
    assert [(b.notional_floor, b.max_leverage, b.maintenance_margin_rate, b.maintenance_amount) for b in builtin] == [
        (b["notional_floor"], b["max_leverage"], b["maintenance_margin_rate"], b["maintenance_amount"])
        for b in imported.data["brackets"]["BTCUSDC"]]


def test_dates_come_from_the_dump_or_must_be_given(tmp_path):
    info = VENUES / "binance_fapi_v1_exchangeInfo.json"
    assert read_metadata([info], "binance").as_of == "2022-02-19"  # serverTime 1645233611962
    later = tmp_path / "later.json"
    later.write_text(json.dumps({**json.loads(info.read_text()), "serverTime": 1694668718723}))  # 2023-09-14
    assert read_metadata([later, info], "binance").as_of == "2022-02-19"  # the older of two dated dumps
    assert read_metadata([info, CCXT_TIERS], "binance").as_of is None  # one undated dump: ask for --as-of
    result, out = _import(tmp_path, CCXT_TIERS, "--exchange", "binance")
    assert result.exit_code == 2 and "--as-of" in result.output and not out.exists()
    result, out = _import(tmp_path, info, "--exchange", "binance")
    assert result.exit_code == 2 and "no leverage tiers" in result.output and not out.exists()


def test_unknown_shape_names_the_file(tmp_path):
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"prices": [1, 2]}))
    result, out = _import(tmp_path, path, "--exchange", "binance", "--as-of", "2024-01-01")
    assert result.exit_code == 2 and str(path) in result.output and "not a response xmargin can read" in result.output
    result = CliRunner().invoke(main, ["rules", "import", str(CCXT_TIERS), "--exchange", "binance"])
    assert result.exit_code == 2 and "--out" in result.output
    bybit = VENUES / "bybit_v5_instruments_info_linear.json"
    result, out = _import(tmp_path, bybit, "--exchange", "binance", "--as-of", "2024-01-01")
    assert result.exit_code == 2 and "a bybit instruments-info response, but --exchange is 'binance'" in result.output


def test_a_symbol_breaking_the_format_is_left_out_and_named(tmp_path):
    dump = json.loads(CCXT_TIERS.read_text())
    dump["XRP/USDT:USDT"][3]["info"]["cum"] = "999.0"  # off the recurrence
    path = tmp_path / "tiers.json"
    path.write_text(json.dumps(dump))
    imported = rule_file_from(read_metadata([path], "binance"), [path], exchange="binance", name="x",
                              as_of="2024-10-24")
    assert "XRPUSDT" not in imported.data["brackets"] and len(imported.data["brackets"]) == 5
    assert any(n.startswith("XRPUSDT: left out (XRPUSDT tier 4: published maintenance amount 999")
               for n in imported.notes)
    assert any(n.startswith("XRPUSDT: left out") for n in imported.data["not_public"])


# ------------------------------------------------------------------------------ dataset instruments
def _dataset(tmp_path) -> Path:
    folder = tmp_path / "dataset"
    folder.mkdir()
    shutil.copy(ROOT / "datasets/sample/dataset.toml", folder / "dataset.toml")
    return folder


def test_filters_from_binance_exchange_info(tmp_path):
    folder = _dataset(tmp_path)
    info = VENUES / "binance_fapi_v1_exchangeInfo.json"
    result = CliRunner().invoke(main, ["rules", "import", str(info), "--exchange", "binance", "--dataset", str(folder)])
    assert result.exit_code == 0, result.output
    instruments = {i.key: i for i in read_manifest(folder).instruments}
    # BTCUSDT 2022: LOT_SIZE 0.001, PRICE_FILTER 0.10, MIN_NOTIONAL 10; ETHUSDT: 0.001, 0.01, 10
    btc, eth = instruments["binance:BTC/USDT:USDT"], instruments["binance:ETH/USDT:USDT"]
    assert (btc.lot_size, btc.tick_size, btc.min_notional) == (0.001, 0.1, 10.0)
    assert (eth.lot_size, eth.tick_size, eth.min_notional) == (0.001, 0.01, 10.0)
    assert "binance:BTC/USDT:USDT: min_notional 100 -> 10" in result.output
    # not in this dump: named, left as declared; other exchanges untouched
    assert "warning: binance:SOL/USDT:USDT: not in the metadata" in result.output
    assert "warning: binance:BTC/USDT: not in the metadata" in result.output
    assert instruments["binance:SOL/USDT:USDT"].lot_size == 1.0
    assert "hyperliquid" not in result.output


def test_filters_from_ccxt_markets_okx_bybit_and_hyperliquid(tmp_path):
    metadata = read_metadata([VENUES / "ccxt_load_markets_binance.json"], "binance")
    xrp, inverse = metadata.markets["XRPUSDT"], metadata.markets["BTCUSD"]
    # from the raw filters ccxt keeps in info: LOT_SIZE 0.1, PRICE_FILTER 0.0001, MIN_NOTIONAL 5
    assert (xrp.lot_size, xrp.tick_size, xrp.min_notional, xrp.symbol) == (0.1, 0.0001, 5.0, "XRP/USDT:USDT")
    assert (inverse.contract, inverse.contract_size, inverse.lot_size, inverse.min_notional) == ("inverse", 100.0, 1.0,
                                                                                                  None)
    okx = read_metadata([VENUES / "okx_public_instruments_swap.json"], "okx").markets
    # BTC-USDT-SWAP: lotSz 0.01 contracts of ctVal 0.01 BTC = 0.0001 BTC; BTC-USD-SWAP: contracts of 100 USD
    assert (okx["BTCUSDT"].lot_size, okx["BTCUSDT"].tick_size, okx["BTCUSDT"].contract_value) == (0.01 * 0.01, 0.1, 0.01)
    assert (okx["BTCUSD"].contract, okx["BTCUSD"].contract_size, okx["BTCUSD"].lot_size) == ("inverse", 100.0, 1.0)
    bybit = read_metadata([VENUES / "bybit_v5_instruments_info_linear.json"], "bybit")
    assert bybit.as_of == "2023-09-14"
    eth = bybit.markets["ETHUSDT"]
    assert (eth.lot_size, eth.tick_size, eth.min_notional, eth.funding_interval_hours) == (0.01, 0.01, 5.0, 8.0)
    hl = read_metadata([VENUES / "hyperliquid_info_meta.json"], "hyperliquid").markets
    assert (hl["BTCUSDC"].lot_size, hl["SOLUSDC"].lot_size, hl["SOLUSDC"].tick_size) == (1e-05, 0.01, None)
    folder = _dataset(tmp_path)
    update = apply_market_filters(folder, read_metadata([VENUES / "hyperliquid_info_meta.json"], "hyperliquid"),
                                  "hyperliquid")
    sol = read_manifest(folder).instrument("hyperliquid:SOL/USDC:USDC")
    assert sol.lot_size == 0.01
    assert "hyperliquid:SOL/USDC:USDC: the metadata gives no tick_size; it stays 0 (0 = not enforced)" in update.warnings
