"""The seams: one margin-mode registry that config, rule files, commands and the engine read (a mode
is a module plus a registry entry plus rule data, and no engine module tests account-mode strings);
liquidation policies as a registry with typed parameters checked when a rule file is read (errors
name the file and the key); no untyped `raw` escape hatch in the rule set."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import attrs
import polars as pl
import pytest

from xmargin import config as config_module
from xmargin.config import parse_config
from xmargin.errors import RulesError
from xmargin.ledger import commands
from xmargin.margin import policies
from xmargin.margin.modes import MODE_NAMES, MODES, POSITION_MODES, MarginMode, cross
from xmargin.output.snapshots import equity_base_table, positions_table
from xmargin.sim.loop import run_backtest
from xmargin.venues.rules import AutoExchange, load_rules
from xmargin.venues.rules import ruleset
from xmargin.venues.rules.ruleset import DATA_DIR

ROOT = Path(__file__).resolve().parents[1]
ENGINE = ROOT / "engine"


def test_config_rules_and_commands_read_one_registry():
    assert config_module.MARGIN_MODES == MODE_NAMES == tuple(MODES) == ruleset.MODES
    assert commands.MARGIN_MODES == POSITION_MODES == ("cross", "isolated")
    for mode in MODES.values():
        if mode.module is None:
            assert mode.unavailable  # a reserved name says why it is refused
            continue
        for name in ("risk_units", "pool_of", "pool_order_margin", "wallet_value", "counted_collateral"):
            assert callable(getattr(mode.module, name)), (mode.name, name)
        assert mode.default_position_mode in mode.position_modes and set(mode.position_modes) <= set(POSITION_MODES)
    with pytest.raises(ValueError, match="margin_mode"):
        commands.PlaceOrder("binance:BTC/USDT:USDT", 1.0, margin_mode="portfolio")  # an account mode, not a position's


def test_no_engine_module_tests_account_mode_strings():
    """Account-only mode names (not also position modes) appear in the registry and rule data only."""
    account_only = set(MODE_NAMES) - set(POSITION_MODES)
    offenders = []
    for path in ENGINE.rglob("*.py"):
        if "modes" in path.parts or path.name == "build_rules.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                for operand in [node.left, *node.comparators]:
                    if isinstance(operand, ast.Constant) and operand.value in account_only:
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {operand.value!r}")
    assert not offenders, offenders


def _rules_file(tmp_path, edit, name="rules.json") -> str:
    data = json.loads((DATA_DIR / "binance-usdm.json").read_text())
    edit(data)
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


def _config(rules: str, mode: str):
    return parse_config({
        "run": {"dataset": str(ROOT / "datasets" / "sample"), "strategy": "hold", "start": "2025-01-01",
                "end": "2025-01-20"},
        "strategy": {"params": {"positions": {"binance:ETH/USDT:USDT": 20000, "binance:BTC/USDT:USDT": -20000}}},
        "exchanges": {"binance": {"rules": rules, "margin_mode": mode, "collateral": {"USDT": 5000},
                                  "leverage": 10}}})


def test_a_new_mode_is_its_module_a_registry_entry_and_rule_data(tmp_path, monkeypatch):
    """A mode registered under a new name, with the cross module, listed by a rule file: the config
    accepts it and the run (scan, tables) values it through its module exactly as cross."""
    monkeypatch.setitem(MODES, "pooled", MarginMode("pooled", cross, "cross under another name"))
    rules = _rules_file(tmp_path, lambda d: d.update(margin_modes=["cross", "pooled"]))
    pooled, plain = run_backtest(_config(rules, "pooled")), run_backtest(_config(rules, "cross"))
    assert pooled.events == plain.events and len(pooled.events) > 4
    for table in (equity_base_table, positions_table):
        assert pl.from_arrow(table(pooled)).equals(pl.from_arrow(table(plain)))
    without = _rules_file(tmp_path, lambda d: d.update(margin_modes=["cross"]), "without.json")
    with pytest.raises(Exception, match="pooled"):  # rule data must list it
        _config(without, "pooled")


def test_a_rule_file_naming_an_unregistered_mode_is_refused(tmp_path):
    path = _rules_file(tmp_path, lambda d: d.update(margin_modes=["cross", "hedge-mode"]))
    with pytest.raises(RulesError, match=r"rules\.json: margin_modes \['hedge-mode'\] unknown; registered"):
        load_rules(path)


def test_liquidation_parameters_are_typed_and_read_from_the_rule_file():
    hyperliquid = load_rules("hyperliquid").liquidation
    assert hyperliquid.parameters == policies.PartialParameters(0.2, 100_000.0, 2 / 3, cooldown_seconds=30.0)
    assert hyperliquid.backstop_fraction == pytest.approx(2 / 3)  # rule-file key backstop_maintenance_fraction
    assert load_rules("binance-usdm").liquidation.parameters == policies.PartialParameters()
    assert set(policies.POLICIES) == set(ruleset.POLICIES) == {"full", "partial"}
    for policy in policies.POLICIES.values():
        assert attrs.has(policy.parameters) and callable(policy.plan)
    with pytest.raises(AttributeError, match="no parameter 'cover_ratio'"):
        _ = hyperliquid.cover_ratio


@pytest.mark.parametrize("edit,message", [
    (lambda d: d["liquidation"].update(policy="sometimes"), r"liquidation\.policy = 'sometimes': registered"),
    (lambda d: d["liquidation"].update(policy="full", partial_fraction=0.5),
     r"liquidation\.partial_fraction is a parameter of another policy; policy 'full' takes no parameters"),
    (lambda d: d["liquidation"].update(partial_fraction="a fifth"), r"liquidation\.partial_fraction = 'a fifth': must be a number"),
    (lambda d: d["liquidation"].update(partial_fraction=1.5), r"partial_fraction = 1\.5: must be in \(0, 1\]"),
    (lambda d: d["liquidation"].update(backstop_maintenance_fraction=1.0), r"backstop_fraction = 1\.0: must be in \[0, 1\)"),
    (lambda d: d["auto_exchange"].update(cover_ratio=0), r"auto_exchange: cover_ratio = 0\.0: must be in \(0, 1\]"),
    (lambda d: d["auto_exchange"].pop("threshold_usd"), r"auto_exchange: expected a table with threshold_usd"),
])
def test_bad_policy_data_names_the_file_and_the_key(tmp_path, edit, message):
    path = _rules_file(tmp_path, edit, "bad-policy.json")
    with pytest.raises(RulesError, match=message) as caught:
        load_rules(path)
    assert path in str(caught.value)


def test_the_rule_set_has_no_untyped_escape_hatch():
    binance = load_rules("binance-usdm")
    assert not hasattr(binance, "raw")
    assert binance.auto_exchange == AutoExchange(threshold_usd=-10_000.0, cover_ratio=0.975, fee_rate=0.0)
    assert load_rules("hyperliquid").auto_exchange is None
    for path in ENGINE.rglob("*.py"):  # nothing reads a rule set's raw mapping
        assert "rules.raw" not in path.read_text(), path
