"""`xmargin run` refuses a bad strategy (reference or params) before it reads the dataset: a config
error fails fast, without waiting for a first validation of a large dataset."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from xmargin.cli.main import main
from xmargin.dataset import checked

ROOT = Path(__file__).resolve().parents[1]
CONFIG = """
[run]
dataset = "{dataset}"
strategy = "{strategy}"

[strategy.params]
positions = {positions}

[exchanges.binance]
rules = "binance-usdm"
collateral = {{ USDT = 10000 }}
"""


@pytest.mark.parametrize(("strategy", "positions", "message"), [
    ("no-such-strategy", '{ "binance:BTC/USDT:USDT" = -1000 }', "not `module:Class` and not a registered strategy"),
    ("nowhere:Nothing", '{ "binance:BTC/USDT:USDT" = -1000 }', "cannot import module 'nowhere'"),
    ("hold", "3", "strategy.params for hold"),
])
def test_a_bad_strategy_is_refused_before_the_dataset_is_validated(tmp_path, monkeypatch, strategy, positions,
                                                                   message):
    checks = []
    monkeypatch.setattr(checked, "validate_dataset_cached", lambda *a, **k: checks.append(a))
    config = tmp_path / "c.toml"
    config.write_text(CONFIG.format(dataset=ROOT / "datasets" / "sample", strategy=strategy, positions=positions))
    out = tmp_path / "runs"
    result = CliRunner().invoke(main, ["run", str(config), "--out", str(out), "--quiet"])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert checks == []  # the dataset was never read
    assert not out.exists()
