"""Rejections are loud: the one-legged hedge of issue 11 (datasets/sample, real prices).

Long 30,000 of ETH on Binance at 3x on 5,000 USDT needs 10,000 of initial margin: rejected. The
Hyperliquid short of 30,000 opens alone and the hedge runs one-legged. The printed summary names the
rejection (reason, count, first time) and warns of the one-legged ETH exposure; `--strict` (or
run.strict = true) turns both into exit 1. A config with collateral an exchange does not accept is
refused before any run.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from xmargin.cli.main import main
from xmargin.config import parse_config
from xmargin.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]

CONFIG = f"""
[run]
dataset = "{ROOT / 'datasets/sample'}"
strategy = "hold"
start = "2025-01-15"
end = "2025-01-29"
{{strict}}
[strategy.params]
positions = {{{{ "binance:ETH/USDT:USDT" = 30000, "hyperliquid:ETH/USDC:USDC" = -30000 }}}}
[exchanges.binance]
rules = "binance-usdm"
collateral = {{{{ USDT = {{binance}} }}}}
leverage = 3
[exchanges.hyperliquid]
rules = "hyperliquid"
collateral = {{{{ USDC = 5000 }}}}
leverage = 10
"""


def write(tmp_path, binance=5000, strict="") -> Path:
    path = tmp_path / "one_legged.toml"
    path.write_text(CONFIG.format(strict=strict, binance=binance))
    return path


def invoke(*args):
    return CliRunner().invoke(main, ["run", *map(str, args), "--quiet", "--no-validate"])


def test_the_one_legged_hedge_is_named_and_strict_exits_1(tmp_path):
    config = write(tmp_path)
    result = invoke(config, "--out", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    assert ("REJECTED: 1 order(s) on binance: insufficient margin (first 2025-01-15 01:00:00+00:00 "
            "binance:ETH/USDT:USDT") in result.output
    assert "WARNING: one-legged hedge: ETH net exposure was above 50% of gross" in result.output
    strict = invoke(config, "--out", tmp_path / "runs", "--strict")
    assert strict.exit_code == 1
    assert "strict: 1 order(s) rejected on binance: insufficient margin" in strict.output
    assert "strict: one-legged hedge: ETH" in strict.output
    # run.strict = true in the config does the same
    assert invoke(write(tmp_path, strict="strict = true"), "--out", tmp_path / "runs").exit_code == 1


def test_with_enough_collateral_the_hedge_is_two_legged_and_strict_passes(tmp_path):
    result = invoke(write(tmp_path, binance=20000, strict="strict = true"), "--out", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    assert "REJECTED" not in result.output and "WARNING" not in result.output
    assert "exposure ETH: peak gross" in result.output


def test_collateral_an_exchange_does_not_accept_is_refused():
    data = {"run": {"dataset": str(ROOT / "datasets/sample"), "strategy": "hold"},
            "strategy": {"params": {"positions": {}}},
            "exchanges": {"hyperliquid": {"rules": "hyperliquid", "collateral": {"USDT": 5000}}}}
    with pytest.raises(ConfigError, match=r"exchanges.hyperliquid.collateral.USDT: hyperliquid \(hyperliquid\) "
                                          r"does not accept USDT as collateral; it accepts \['USDC'\]"):
        parse_config(data)


def test_one_legged_thresholds_are_checked():
    data = {"run": {"dataset": str(ROOT / "datasets/sample"), "strategy": "hold", "one_legged_ratio": 1.5},
            "strategy": {"params": {"positions": {}}},
            "exchanges": {"binance": {"rules": "binance-usdm", "collateral": {"USDT": 5000}}}}
    with pytest.raises(ConfigError, match="run.one_legged_ratio"):
        parse_config(data)
    data["run"].update(one_legged_ratio=0.3, one_legged_after="1d", strict=True)
    config = parse_config(data)
    assert (config.one_legged_ratio, config.one_legged_after_ns, config.strict) == (0.3, 86_400_000_000_000, True)
