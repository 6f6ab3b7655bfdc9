"""One conformance suite that every built-in rule set passes, plus malformed user rule files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from xmargin.margin import formulas as margin
from xmargin.errors import RulesError
from xmargin.venues.rules import builtin_rule_names, load_rules
from xmargin.venues.rules.ruleset import FILLS, POLICIES

NAMES = builtin_rule_names()
VENUES = Path(__file__).resolve().parent / "fixtures" / "venues"
# rule files written by `xmargin rules import` from the fixtures (tests/fixtures/venues/README.md) pass too
IMPORTED = {
    "imported-ccxt-binance": (["ccxt_fetch_leverage_tiers_binance.json"], "binance", "2024-10-24", {}),
    "imported-bybit-risk-limit": (["HANDWRITTEN_bybit_v5_risk_limit_BTCUSDT.json",
                                   "bybit_v5_instruments_info_linear.json"], "bybit", "2025-01-01", {}),
    "imported-okx-tiers": (["HANDWRITTEN_okx_v5_position_tiers_BTC-USDT_SWAP.json", "okx_public_instruments_swap.json"],
                           "okx", "2025-01-01", {"BTC": 60_000.0}),
    # the same OKX tiers kept in contracts (`rules import --contracts`)
    "imported-okx-tiers-contracts": (["HANDWRITTEN_okx_v5_position_tiers_BTC-USDT_SWAP.json",
                                      "okx_public_instruments_swap.json"], "okx", "2025-01-01", {}),
    "imported-hyperliquid-meta": (["hyperliquid_info_meta.json"], "hyperliquid", "2023-07-17", {}),
    "imported-hyperliquid-tables": (["HANDWRITTEN_hyperliquid_meta_marginTables.json"], "hyperliquid", "2026-11-10", {}),
}


def test_expected_builtins_present():
    assert {"binance-usdm", "hyperliquid", "bybit-linear", "okx-swap"} <= set(NAMES)


def _tables(rules):
    """The notional bracket tables (contract-counted tiers: `_contract_tables`)."""
    yield "default_brackets", rules.default_brackets
    yield from ((sym, t) for sym, t in rules.symbol_brackets.items() if t.unit == "notional")


def _contract_tables(rules):
    return [(sym, t) for sym, t in rules.symbol_brackets.items() if t.unit == "contracts"]


@pytest.fixture(scope="module")
def imported_files(tmp_path_factory):
    from xmargin.venues.metadata import read_metadata
    from xmargin.venues.rules.imported import rule_file_from, write_rule_file

    folder = tmp_path_factory.mktemp("imported-rules")
    out = {}
    for name, (files, exchange, as_of, prices) in IMPORTED.items():
        paths = [VENUES / f for f in files]
        imported = rule_file_from(read_metadata(paths, exchange), paths, exchange=exchange, name=name, as_of=as_of,
                                  reference_prices=prices, contracts=name.endswith("-contracts"))
        out[name] = str(write_rule_file(imported, folder / f"{name}.json"))
    return out


@pytest.fixture(params=NAMES + list(IMPORTED))
def rules(request, imported_files):
    return load_rules(imported_files.get(request.param, request.param))


def test_metadata(rules):
    assert rules.as_of and isinstance(rules.as_of, str)
    assert rules.sources and all(isinstance(s, str) and s for s in rules.sources)
    assert isinstance(rules.not_public, tuple)
    assert rules.name in NAMES + list(IMPORTED) and rules.exchange


def test_fees_sane(rules):
    assert 0 <= rules.maker_fee <= rules.taker_fee < 0.01


def test_spot_fees_sane(rules):
    if rules.spot_taker_fee is not None:
        assert 0 <= rules.spot_maker_fee <= rules.spot_taker_fee < 0.01


def test_malformed_spot_fees_named(tmp_path):
    data = _good()
    data["fees"]["spot"] = {"maker": 0.001}
    path = _write(tmp_path, data, "spot.json")
    with pytest.raises(RulesError) as exc:
        load_rules(path)
    assert path in str(exc.value) and "fees.spot" in str(exc.value)


def test_funding_interval(rules):
    assert rules.funding_interval_hours > 0
    assert all(float(h) > 0 for h in rules.funding_interval_overrides.values())


def test_liquidation_settings(rules):
    liq = rules.liquidation
    assert liq.policy in POLICIES and liq.fill in FILLS
    assert 0 <= liq.fee_rate < 0.1


def test_brackets_structure(rules):
    for sym, t in _tables(rules):
        b = t.brackets
        assert b[0].notional_floor == 0, sym
        for n in range(1, len(b)):
            assert b[n].notional_floor == b[n - 1].notional_cap, (sym, n)
            assert b[n].maintenance_margin_rate > b[n - 1].maintenance_margin_rate, (sym, n)
            assert b[n].max_leverage <= b[n - 1].max_leverage, (sym, n)
        for n, br in enumerate(b):
            assert br.max_leverage > 0, (sym, n)
            # initial margin at the cap is above maintenance: 1/max_leverage > MMR
            assert 1.0 / br.max_leverage > br.maintenance_margin_rate, (sym, n)
            assert br.notional_cap > br.notional_floor, (sym, n)


def test_contract_tiers_structure(rules):
    """Tiers counted in contracts (OKX): contiguous from 0 contracts, rates strictly rising, leverage never
    rising, 1 / max_leverage > rate, only the last tier open-ended, a positive contract value."""
    for sym, t in _contract_tables(rules):
        assert t.contract_value > 0, sym
        tiers = t.tiers
        assert tiers[0].contracts_floor == 0, sym
        for n in range(1, len(tiers)):
            assert tiers[n].contracts_floor == tiers[n - 1].contracts_cap, (sym, n)
            assert tiers[n].maintenance_margin_rate > tiers[n - 1].maintenance_margin_rate, (sym, n)
            assert tiers[n].max_leverage <= tiers[n - 1].max_leverage, (sym, n)
        for n, tier in enumerate(tiers):
            assert tier.contracts_cap > tier.contracts_floor and tier.max_leverage > 0, (sym, n)
            assert 1.0 / tier.max_leverage > tier.maintenance_margin_rate, (sym, n)
            assert math.isfinite(tier.contracts_cap) or n == len(tiers) - 1, (sym, n)
        # the tier a position falls in does not move with price: a one-bracket table at that tier's rate
        for n, tier in enumerate(tiers):
            inside = tier.contracts_floor + 1 if math.isinf(tier.contracts_cap) else tier.contracts_cap
            held = t.for_quantity(inside * t.contract_value)
            assert len(held.brackets) == 1 and held.rate_list[0] == tier.maintenance_margin_rate, (sym, n)
            assert held.amount_list[0] == 0 and held.brackets[0].max_leverage == tier.max_leverage, (sym, n)


def test_imported_okx_tiers_stay_in_contracts(rules):
    if rules.name == "imported-okx-tiers-contracts":
        (table,) = [t for sym, t in _contract_tables(rules) if sym == "BTCUSDT"]
        assert table.contract_value == 0.01  # BTC-USDT-SWAP ctVal in the instruments dump
        assert [(t.contracts_cap, t.max_leverage, t.maintenance_margin_rate) for t in table.tiers] == [
            (20_000.0, 100.0, 0.005), (22_000.0, 66.66, 0.01)]


def test_builtin_contract_tiers_are_dated_and_sourced():
    """Every built-in contract-counted table names its source and date (OKX's published tiers)."""
    from xmargin.venues.rules.ruleset import DATA_DIR

    found = 0
    for path in DATA_DIR.glob("*.json"):
        for sym, entry in json.loads(path.read_text()).get("brackets", {}).items():
            if isinstance(entry, dict):
                found += 1
                assert entry["source"] and entry["as_of"][:2] == "20", (path.name, sym)
    assert found >= 2


def test_maintenance_amount_recurrence(rules):
    for sym, t in _tables(rules):
        b = t.brackets
        assert b[0].maintenance_amount == pytest.approx(0.0, abs=1e-9), sym
        for n in range(1, len(b)):
            expected = margin.next_maintenance_amount(b[n].notional_floor, b[n].maintenance_margin_rate,
                                                      b[n - 1].maintenance_margin_rate, b[n - 1].maintenance_amount)
            assert b[n].maintenance_amount == pytest.approx(expected, rel=1e-6, abs=1e-6), (sym, n)


def test_maintenance_margin_continuous_at_boundaries(rules):
    for sym, t in _tables(rules):
        for br in t.brackets[1:]:
            x = br.notional_floor
            prev = t.brackets[t.index(x) - 1]
            left = x * prev.maintenance_margin_rate - prev.maintenance_amount
            right = margin.maintenance_margin(x, t)
            assert right == pytest.approx(left, rel=1e-6, abs=1e-6), (sym, x)
            # and just below the boundary the scalar function agrees with the left formula
            below = np.nextafter(x, 0)
            assert margin.maintenance_margin(below, t) == pytest.approx(left, rel=1e-6, abs=1e-6), (sym, x)


def test_vectorised_matches_scalar(rules):
    for sym, t in list(_tables(rules))[:40]:
        caps = [b.notional_cap for b in t.brackets if math.isfinite(b.notional_cap)]
        xs = np.array([0.0, 1.0] + [c * f for c in caps for f in (0.5, 0.999999, 1.0, 1.000001)] + [2 * max(caps or [1e6])])
        got = margin.maintenance_margin_array(xs, t)
        want = np.array([margin.maintenance_margin(x, t) for x in xs])
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-9)


def test_binance_has_all_349_symbols():
    rules = load_rules("binance-usdm")
    assert len(rules.symbol_brackets) == 349
    assert rules.has_symbol("BTCUSDT") and rules.has_symbol("ETHUSDT_250328")
    assert rules.funding_interval("LPTUSDT") == 4 and rules.funding_interval("BTCUSDT") == 8
    assert (rules.maker_fee, rules.taker_fee) == (0.0002, 0.0005)


def test_binance_matches_shared_source():
    from pathlib import Path

    src = None
    for p in (Path(__file__).resolve().parents[2] / "shared", Path("shared")):  # beside the repository (CI)
        f = p / "exchange-rules" / "binance_usdm_leverage_brackets.json"
        if f.is_file():
            src = json.loads(f.read_text())["symbols"]
            break
    if src is None:
        pytest.skip("shared/exchange-rules not available")
    rules = load_rules("binance-usdm")
    assert set(src) == set(rules.symbol_brackets)
    for sym, rows in src.items():
        t = rules.brackets_for(sym)
        assert [b.maintenance_amount for b in t.brackets] == [r["cum"] for r in rows], sym
        assert [b.max_leverage for b in t.brackets] == [r["initial_leverage"] for r in rows], sym


# ------------------------------------------------------------------- malformed user rule files
def _good() -> dict:
    return {
        "name": "my-rules", "exchange": "x", "as_of": "2025-01-01", "sources": ["me"],
        "fees": {"maker": 0.0002, "taker": 0.0005},
        "funding": {"interval_hours": 8},
        "liquidation": {"policy": "full", "fill": "bankruptcy", "fee_rate": 0.0},
        "default_brackets": [
            {"notional_floor": 0, "notional_cap": 1000, "max_leverage": 20, "maintenance_margin_rate": 0.01,
             "maintenance_amount": 0},
            {"notional_floor": 1000, "notional_cap": None, "max_leverage": 10, "maintenance_margin_rate": 0.02,
             "maintenance_amount": 10},
        ],
    }


def _write(tmp_path, data, name="rules.json") -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def test_good_user_file_loads(tmp_path):
    rules = load_rules(_write(tmp_path, _good()))
    assert rules.name == "my-rules" and len(rules.default_brackets.brackets) == 2


@pytest.mark.parametrize("drop,key", [(("fees",), "fees"), (("fees", "taker"), "fees.taker"),
                                      (("liquidation", "fill"), "liquidation.fill"), (("as_of",), "as_of"),
                                      (("funding", "interval_hours"), "funding.interval_hours")])
def test_missing_key_named(tmp_path, drop, key):
    data = _good()
    target = data
    for k in drop[:-1]:
        target = target[k]
    del target[drop[-1]]
    path = _write(tmp_path, data, f"missing-{key}.json")
    with pytest.raises(RulesError) as exc:
        load_rules(path)
    assert path in str(exc.value) and f"'{key}'" in str(exc.value)


def test_non_contiguous_bracket(tmp_path):
    data = _good()
    data["default_brackets"][1]["notional_floor"] = 1500
    path = _write(tmp_path, data, "gap.json")
    with pytest.raises(RulesError) as exc:
        load_rules(path)
    msg = str(exc.value)
    assert path in msg and "default_brackets[1]" in msg and "contiguous" in msg


def test_bad_policy(tmp_path):
    data = _good()
    data["liquidation"]["policy"] = "sometimes"
    path = _write(tmp_path, data, "policy.json")
    with pytest.raises(RulesError) as exc:
        load_rules(path)
    assert path in str(exc.value) and "policy" in str(exc.value)


def test_not_json(tmp_path):
    path = _write(tmp_path, "{not json", "broken.json")
    with pytest.raises(RulesError) as exc:
        load_rules(path)
    assert path in str(exc.value) and "not valid JSON" in str(exc.value)


def test_missing_bracket_field(tmp_path):
    data = _good()
    del data["default_brackets"][0]["maintenance_amount"]
    path = _write(tmp_path, data, "field.json")
    with pytest.raises(RulesError) as exc:
        load_rules(path)
    assert path in str(exc.value) and "maintenance_amount" in str(exc.value)


def test_every_key_of_the_rule_files_is_documented(imported_files):
    """docs/rules.md is the format's reference: every key a built-in or imported file uses is in it."""
    from xmargin.venues.rules.ruleset import DATA_DIR

    docs = (Path(__file__).resolve().parents[1] / "docs" / "rules.md").read_text()
    keys = set()
    for path in [*DATA_DIR.glob("*.json"), *map(Path, imported_files.values())]:
        data = json.loads(path.read_text())
        keys |= set(data)
        for table in ("fees", "funding", "liquidation", "auto_exchange"):
            keys |= set(data.get(table, {}))
        keys |= {f"spot.{k}" for k in data["fees"].get("spot", {})}
        keys |= {k for bracket in data["default_brackets"] for k in bracket}
    assert len(keys) > 30
    assert sorted(k for k in keys if f"`{k}`" not in docs) == []


def _set(path: str, value):
    """A change to `_good()`: `path` is dotted (`default_brackets.1.max_leverage`); value DROP removes it."""
    def change(data):
        *parents, last = path.split(".")
        target = data
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if value is DROP:
            del target[last]
        elif isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
    return change


DROP = object()
NAN = float("nan")
# (change, what the message must say besides the file); each was accepted before, or crashed
REFUSED = {
    "maintenance rate at 1 / max leverage": (_set("default_brackets.0.max_leverage", 100),
                                             ["default_brackets[0]", "not below the initial margin rate"]),
    "max leverage below 1": (_set("default_brackets.1.max_leverage", 0.5),
                             ["default_brackets[1]", "max_leverage 0.5 must be at least 1"]),
    "nan max leverage": (_set("default_brackets.1.max_leverage", NAN), ["default_brackets[1].max_leverage = nan"]),
    "nan maintenance amount": (_set("default_brackets.1.maintenance_amount", NAN),
                               ["default_brackets[1].maintenance_amount = nan", "finite number"]),
    "nan last cap": (_set("default_brackets.1.notional_cap", NAN), ["default_brackets[1].notional_cap = nan"]),
    "rate written as text": (_set("default_brackets.1.maintenance_margin_rate", "0.02"),
                             ["default_brackets[1].maintenance_margin_rate = '0.02'", "without quotes"]),
    "rate in percent text": (_set("default_brackets.1.maintenance_margin_rate", "0.5%"),
                             ["maintenance_margin_rate = '0.5%'", "0.005 for 0.5 %"]),
    "leverage true": (_set("default_brackets.1.max_leverage", True), ["default_brackets[1].max_leverage = True"]),
    "typo in a bracket": (_set("default_brackets.1.maintenence_rate", 0.5),
                          ["default_brackets[1]: unknown keys ['maintenence_rate']",
                           "did you mean 'maintenance_margin_rate'?"]),
    "typo at the top": (_set("colateral_ratios", {"BTC": 0.9}), ["unknown top-level keys ['colateral_ratios']",
                                                                  "did you mean 'collateral_ratios'?"]),
    "typo in fees": (_set("fees.spott", {"maker": 0.001, "taker": 0.001}), ["fees: unknown keys ['spott']"]),
    "typo in liquidation": (_set("liquidation.partial_fracton", 0.5),
                            ["liquidation: unknown keys ['partial_fracton']", "'partial_fraction'"]),
    "typo in funding": (_set("funding.interval_overide", {"X": 4}), ["funding: unknown keys ['interval_overide']"]),
    "typo in a collateral tier": (_set("collateral_ratios", {"BTC": {"tiers": [{"from": 0, "too": 10, "ratio": 0.9}]}}),
                                  ["collateral_ratios.BTC.tiers[0]: unknown keys ['too']", "did you mean 'to'?"]),
    "collateral tier without ratio": (_set("collateral_ratios", {"BTC": {"tiers": [{"from": 0, "to": None}]}}),
                                      ["collateral_ratios.BTC.tiers[0]", "finite numbers"]),
    "collateral tiers not a list": (_set("collateral_ratios", {"BTC": {"tiers": 5}}),
                                    ["collateral_ratios.BTC.tiers = 5"]),
    "typo in contract tiers": (_set("brackets", {"ADAUSDT": {"unit": "contracts", "contract_value": 100, "tiers": [
        {"max_contracts": None, "max_leverage": 10, "maintenance_margin_rate": 0.01, "maintenence": 1}]}}),
        ["brackets.ADAUSDT.tiers[0]: unknown keys ['maintenence']"]),
    "typo in delivery": (_set("delivery", {"settlement_windows": [{"effective_from": "2020-01-01", "minutes": 30}],
                                           "fe": 0.001}), ["delivery: unknown keys ['fe']", "'fee'"]),
    "bracket that is not an object": (_set("default_brackets.0", 5), ["default_brackets[0]: expected a bracket object"]),
    "brackets in decreasing order": (lambda data: data["default_brackets"].reverse(),
                                     ["default_brackets[0]: the first bracket must start", "smallest notional up"]),
    "sources as one string": (_set("sources", "https://example.com"), ["sources = 'https://example.com'",
                                                                      "list of strings"]),
    "no source": (_set("sources", []), ["sources = []", "at least one"]),
    "as_of not a date": (_set("as_of", "last tuesday"), ["as_of = 'last tuesday'", "YYYY-MM-DD"]),
    "as_of a number": (_set("as_of", 20250101), ["as_of = 20250101"]),
    "margin_modes as one string": (_set("margin_modes", "cross"), ["margin_modes = 'cross'", "a list"]),
    "funding override negative": (_set("funding.interval_overrides", {"XUSDT": -4}),
                                  ["funding.interval_overrides.XUSDT = -4", "hours"]),
    "dated variant haircut above 1": (_set("dated_variants", [{"name": "v2", "effective_from": "2025-01-01T00:00:00",
                                                               "collateral_ratios": {"BTC": 1.5}}]),
                                      ["dated_variants[0]: collateral_ratios.BTC = 1.5"]),
    "brackets keyed by a ccxt symbol": (_set("brackets", {"BTC/USDT:USDT": _good()["default_brackets"]}),
                                        ["brackets: ['BTC/USDT:USDT'] are not exchange symbol ids", "BTCUSDT"]),
    "portfolio move that is nan": (_set("portfolio_margin", {"variants": [{
        "name": "pm", "method": "stress", "effective_from": None, "price_moves": [0.04, NAN]}]}),
        ["portfolio_margin.variants[0].price_moves[1] = nan"]),
    "portfolio level as text (was a traceback)": (_set("portfolio_margin", {"variants": [{
        "name": "pm", "method": "stress", "effective_from": None, "price_moves": [0.04], "reduce_only_level": "x"}]}),
        ["portfolio_margin.variants[0].reduce_only_level = 'x'"]),
    "funding hours as text": (_set("funding.interval_hours", "8h"), ["funding.interval_hours = '8h'", "hours",
                                                                     "not text"]),
}


@pytest.mark.parametrize("case", REFUSED)
def test_a_doubtful_rule_file_is_refused_naming_file_row_and_key(tmp_path, case):
    change, fragments = REFUSED[case]
    data = _good()
    change(data)
    path = _write(tmp_path, data, "mine.json")
    with pytest.raises(RulesError) as exc:
        load_rules(path)
    message = str(exc.value)
    assert message.startswith(f"{path}: "), message
    assert all(f in message for f in fragments), message


def test_notes_are_allowed_in_every_table_and_dated_years_are_kept(tmp_path):
    data = _good()
    data["as_of"] = "2025"  # hyperliquid.json's own: the year is all that is known
    for table in (data, data["fees"], data["funding"], data["liquidation"], data["default_brackets"][0]):
        table["notes"] = "for people"
    rules = load_rules(_write(tmp_path, data, "notes.json"))
    assert rules.as_of == "2025" and rules.warnings == ()


def test_tiers_that_do_not_grow_stricter_with_size_are_a_warning(tmp_path):
    data = _good()
    data["default_brackets"][1]["max_leverage"] = 25  # more leverage for a larger position
    data["brackets"] = {"XUSDT": [dict(b) for b in _good()["default_brackets"]]}
    data["brackets"]["XUSDT"][1].update(maintenance_margin_rate=0.01, maintenance_amount=0)  # the rate does not rise
    path = _write(tmp_path, data, "flat.json")
    rules = load_rules(path)
    assert rules.warnings == (
        ("XUSDT", f"{path}: brackets.XUSDT[1]: maintenance_margin_rate 0.01 does not rise above the previous bracket's "
                  "0.01; exchanges raise it with size (check the row order and the values)"),
        (None, f"{path}: default_brackets[1]: max_leverage 25 rises above the previous bracket's 20; exchanges lower "
               "it with size (check the row order and the values)"))
    assert all(load_rules(name).warnings == () for name in NAMES)


def test_an_edited_rule_file_is_read_again(tmp_path):
    """A notebook user fixing their file and loading it again got the first version from memory."""
    data = _good()
    path = _write(tmp_path, data, "edited.json")
    assert load_rules(path).taker_fee == 0.0005
    data["fees"]["taker"] = 0.0007
    Path(path).write_text(json.dumps(data) + "\n")  # another size, another mtime
    assert load_rules(path).taker_fee == 0.0007
    assert load_rules(path) is load_rules(path)  # unchanged: the same record


def test_rules_check_prints_the_warnings_or_names_the_refused_key(tmp_path):
    from click.testing import CliRunner

    from xmargin.cli.main import main

    data = _good()
    data["default_brackets"][1]["max_leverage"] = 25
    doubtful = _write(tmp_path, data, "doubtful.json")
    result = CliRunner().invoke(main, ["rules", "check", "hyperliquid", doubtful])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1:] == [
        f"{doubtful}: my-rules (x), as of 2025-01-01, 0 symbols with brackets, margin modes isolated, cross, 1 source(s)",
        f"warning: {doubtful}: default_brackets[1]: max_leverage 25 rises above the previous bracket's 20; exchanges "
        "lower it with size (check the row order and the values)"]
    data["fees"]["makr"] = 0.0001
    refused = _write(tmp_path, data, "typo.json")
    result = CliRunner().invoke(main, ["rules", "check", refused])
    assert result.exit_code == 2 and f"{refused}: fees: unknown keys ['makr'] (did you mean 'maker'?)" in result.output
