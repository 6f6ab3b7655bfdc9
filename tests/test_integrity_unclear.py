"""Issue 12, unclear messages: one problem gives one message naming it; a failing strategy is
named with the wake time and the offending value and its own traceback; the output folder is
checked before the run; keys are named; docs/strategies.md's walk-through works from the CLI."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import polars as pl
import pytest

from helpers_integrity import assert_override_refused, cli, config, dataset, finished_runs
from xmargin.dataset.validate import validate_dataset

ROOT = Path(__file__).resolve().parents[1]

STRATEGIES = '''from xmargin.ledger.commands import PlaceOrder
from xmargin.sim.strategy import Wakes


class Base:
    def __init__(self, params):
        self.count = 0

    def wakes(self):
        return Wakes(every="1h")


class Raises(Base):
    def on_wake(self, view, wake):
        self.count += 1
        if self.count == 3:
            return compute_the_hedge(view)
        return []


def compute_the_hedge(view):
    raise ZeroDivisionError("hedge ratio of a flat market")


class Garbage(Base):
    def on_wake(self, view, wake):
        return [PlaceOrder.market("BINANCE_KEY", 1.0), "buy 1 BTC"]


class NotIterable(Base):
    def on_wake(self, view, wake):
        return 42


class BadWakes:
    def __init__(self, params):
        pass

    def wakes(self):
        return {"every": "1h"}

    def on_wake(self, view, wake):
        return []


class Counts(Base):
    woken = 0

    def on_wake(self, view, wake):
        Counts.woken += 1
        return []
'''


def test_one_schema_error_is_one_error(tmp_path):
    root = dataset(tmp_path / "d")
    file = root / "bars" / "20240101.parquet"
    pl.read_parquet(file).with_columns(pl.col("close").cast(pl.Float32)).write_parquet(file)
    report = validate_dataset(root)
    assert [(p.check, p.column) for p in report.errors] == [("schema", "close")]


@pytest.fixture
def strategies(tmp_path, monkeypatch):
    (tmp_path / "user_strategies.py").write_text(STRATEGIES)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("user_strategies", None)
    yield dataset(tmp_path / "d")
    sys.modules.pop("user_strategies", None)


@pytest.mark.parametrize("name, texts", [
    ("Raises", ["strategy user_strategies:Raises: on_wake at 2024-01-01 03:00:00 (reasons timer) raised "
                "ZeroDivisionError: hedge ratio of a flat market", "in compute_the_hedge"]),
    ("Garbage", ["strategy user_strategies:Garbage: on_wake at 2024-01-01 01:00:00 (reasons start) returned "
                 "'buy 1 BTC' (str), not a command"]),
    ("NotIterable", ["strategy user_strategies:NotIterable: on_wake at 2024-01-01 01:00:00 (reasons start) raised "
                     "TypeError: 'int' object is not iterable"]),
    ("BadWakes", ["strategy user_strategies:BadWakes: wakes() returned {'every': '1h'} (dict), not a Wakes(...)"]),
])
def test_a_failing_strategy_is_named_with_the_moment_and_the_value(tmp_path, strategies, name, texts):
    path = config(tmp_path / "c.toml", strategies, strategy=f"user_strategies:{name}", params="")
    result = cli("run", path, "--out", tmp_path / "runs", "--run-id", "r", "--quiet")
    assert result.exit_code == 1, result.output
    for text in texts:
        assert text in result.output, result.output
    assert "No run folder was written." in result.output
    assert finished_runs(tmp_path / "runs") == [] and not (tmp_path / "runs" / "r.partial").exists()
    if name == "Raises":
        assert "Traceback" in result.output and "user_strategies.py" in result.output  # the user's own traceback


def test_an_existing_run_id_is_refused_before_the_strategy_runs(tmp_path, strategies):
    path = config(tmp_path / "c.toml", strategies, strategy="user_strategies:Counts", params="")
    assert cli("run", path, "--out", tmp_path / "runs", "--run-id", "r", "--quiet").exit_code == 0
    import user_strategies

    woken = user_strategies.Counts.woken
    assert woken == 72
    result = cli("run", path, "--out", tmp_path / "runs", "--run-id", "r", "--quiet")
    assert result.exit_code == 2 and "already exists" in result.output
    assert user_strategies.Counts.woken == woken  # refused before a single wake


@pytest.mark.parametrize("override, text", [
    ('run.instruments="binance:BTC/USDT:USDT"', "run.instruments = 'binance:BTC/USDT:USDT': must be a list"),
    ('run.instruments=["binance:DOGE/USDT:USDT"]', "run.instruments: ['binance:DOGE/USDT:USDT'] not declared"),
    ("run.name=3", "run.name = 3: must be a string"),
    ("exchanges.binance.withdrawal_fees=5", "exchanges.binance.withdrawal_fees = 5: must be a table"),
])
def test_config_messages_name_the_key(tmp_path, override, text):
    assert_override_refused(tmp_path, override, text)


def test_dataset_toml_messages_name_the_key(tmp_path):
    root = dataset(tmp_path / "d")
    path = root / "dataset.toml"
    path.write_text(path.read_text().replace("contract_size = 1.0", 'contract_size = "one"', 1))
    result = cli("data", "validate", root)
    assert result.exit_code == 1 and "contract_size must be a finite number > 0, got 'one'" in result.output


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", (ROOT / "docs" / "strategies.md").read_text(), flags=re.S)


def test_the_docs_walkthrough_runs_from_the_cli_with_the_strategy_next_to_the_config(tmp_path, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    (project / "my_strategies.py").write_text(_blocks("python")[0])
    (project / "datasets").symlink_to(ROOT / "datasets")  # the doc's relative dataset path, next to the config
    (project / "my_config.toml").write_text(_blocks("toml")[0])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # neither the config's folder nor the repository is the working directory
    sys.modules.pop("my_strategies", None)
    try:
        result = cli("run", project / "my_config.toml", "--out", tmp_path / "runs", "--run-id", "doc", "--quiet")
    finally:
        sys.modules.pop("my_strategies", None)
    assert result.exit_code == 0, result.output
    assert str(project) not in sys.path  # looked up there for this run only
    import json

    summary = json.loads((tmp_path / "runs" / "doc" / "summary.json").read_text())
    assert summary["exchanges"]["binance"]["fills"] > 2 and summary["exchanges"]["binance"]["rejected_orders"] == 0
