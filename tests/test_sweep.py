"""`xmargin sweep` on the shipped sample: per-variant figures equal a run of that config alone, the
Dask executor gives the local executor's table, a killed worker loses no variant, an interrupted
sweep resumes without redoing work, the [sweep] table, errors, and the CLI."""

from __future__ import annotations

import json
import os
import pickle

import polars as pl
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from xmargin import load_config, open_sweep
from xmargin.analysis.executors import LocalPool
from xmargin.analysis.sweep import JOURNAL, _numbers, plan_variants, sweep
from xmargin.analysis.variants import SerialExecutor, run_variant
from xmargin.cli.main import main
from xmargin.errors import ConfigError, RunError
from xmargin.sim.runner import execute
from test_stress import BTC, ETH, ROOT

CONFIG = f"""
[run]
dataset = "{ROOT / 'datasets/sample'}"
strategy = "hold"
name = "pair"
start = "2024-10-04"
end = "2024-10-09"

[strategy.params]
positions = {{ "{ETH}" = 20000, "{BTC}" = -20000 }}

[exchanges.binance]
rules = "binance-usdm"
margin_mode = "cross"
collateral = {{ USDT = 4000 }}
leverage = 10
"""
# 2 leverages x 2 margin modes x 2 collateral amounts: 8 variants; with 3,000 USDT the isolated legs
# at leverage 5 (4,000 margin each) cannot both open, so the figures differ across variants
DIMENSIONS = dict(grid=["exchanges.binance.leverage=5,10"], modes="cross,isolated", collateral=["3000,20000"])
VOLATILE = ["seconds", "path", "attempts"]


@pytest.fixture(scope="module")
def config_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("sweep") / "pair.toml"
    path.write_text(CONFIG)
    return path


@pytest.fixture(scope="module")
def local(config_path, tmp_path_factory):
    """The 8-variant sweep on a local pool of 2 processes, every run folder kept."""
    out = tmp_path_factory.mktemp("local") / "sweep"
    return sweep(load_config(config_path), **DIMENSIONS, out=out, keep="all", executor=LocalPool(2))


def test_a_local_sweep_gives_each_variant_the_figures_of_its_config_run_alone(local, config_path, tmp_path):
    table = pl.scan_parquet(local.path / "sweep.parquet").collect()
    assert table.height == 8 and table["status"].to_list() == ["ok"] * 8
    assert table["variant_id"].n_unique() == 8
    assert table.select("exchanges.binance.leverage", "margin_modes", "collateral").rows()[:3] == [
        (5, "cross", 3000), (5, "cross", 20000), (5, "isolated", 3000)]
    assert table["pnl"].n_unique() > 2  # the dimensions change the outcome
    assert {"sharpe", "max_drawdown", "collateral_consumed_amount", "pnl_binance"} <= set(table.columns)
    declared = json.loads(pq.read_schema(local.path / "sweep.parquet").metadata[b"xmargin"])
    assert declared["parameters"] == ["exchanges.binance.leverage", "margin_modes", "collateral"]
    for row in table.iter_rows(named=True):
        alone = execute(load_config(config_path, margin_modes=[f"binance={row['margin_modes']}"],
                                    sets=[f"exchanges.binance.leverage={row['exchanges.binance.leverage']}",
                                          f"exchanges.binance.collateral.USDT={row['collateral']}"]),
                        out=tmp_path, run_id=row["variant_id"])
        expected = _numbers(alone.summary["total"])
        expected.update({f"{k}_binance": v for k, v in _numbers(alone.summary["exchanges"]["binance"]).items()})
        assert {k: row[k] for k in expected} == expected
        alone_manifest = json.loads((alone.path / "manifest.json").read_text())
        assert local.run(row["variant_id"]).manifest["events_sha256"] == alone_manifest["events_sha256"]


def test_variant_ids_come_from_the_config_and_tasks_carry_no_price_data(config_path):
    first, again = (plan_variants(load_config(config_path), **DIMENSIONS) for _ in range(2))
    assert [v.name for v in first] == [v.name for v in again]
    moved = plan_variants(load_config(config_path, out="/elsewhere"), **DIMENSIONS)
    assert [v.name for v in moved] == [v.name for v in first]  # run.out is not part of a variant
    task = pickle.dumps((run_variant, first[0], "/tmp/x", "none"))
    assert len(task) < 20_000 and b"numpy" not in task  # the worker loads the dataset by its path


def test_a_dask_local_cluster_gives_the_local_table_even_when_a_worker_dies(local, config_path, tmp_path):
    distributed = pytest.importorskip("distributed", reason="the Dask executor needs xmargin[dask] "
                                                            "(make test installs it)")
    import dask

    from xmargin.analysis.executors import DaskExecutor

    with dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"}), \
            distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) \
            as cluster, distributed.Client(cluster) as client:
        done = sweep(load_config(_killing(config_path, tmp_path)), **DIMENSIONS, out=tmp_path / "dask",
                     executor=DaskExecutor(client=client))
    assert (tmp_path / "killed").exists()  # a Dask worker did die; the nanny restarted it
    dask_table, here = done.results.collect(), local.results.collect()
    assert dask_table["status"].to_list() == ["ok"] * 8
    # the same figures; the variant ids differ only because the killing config has two more params
    assert dask_table.drop(VOLATILE, "variant_id").equals(here.drop(VOLATILE, "variant_id"))
    assert dask_table["path"].null_count() == 8  # keep "failed": no run folder of an ok variant stays


def _killing(config_path, tmp_path, strategy="sweep_strategies:KillOnce"):
    """The test config with the strategy that kills its worker once (tests/sweep_strategies.py)."""
    text = config_path.read_text().replace(
        "[strategy.params]", f'[strategy.params]\nkill_marker = "{tmp_path / "killed"}"\nspare_pid = {os.getpid()}')
    path = tmp_path / "kill.toml"
    path.write_text(text.replace('strategy = "hold"', f'strategy = "{strategy}"'))
    return path


def test_a_worker_killed_mid_sweep_loses_no_variant(config_path, tmp_path):
    path = _killing(config_path, tmp_path)
    done = sweep(load_config(path), **DIMENSIONS, out=tmp_path / "killed-sweep", executor=LocalPool(2))
    table = done.results.collect()
    assert (tmp_path / "killed").exists()  # a worker did die
    assert table["status"].to_list() == ["ok"] * 8 and table["attempts"].max() == 2
    serial = sweep(load_config(path), **DIMENSIONS, out=tmp_path / "serial", executor=SerialExecutor())
    assert table.drop(VOLATILE, "variant_id").equals(serial.results.collect().drop(VOLATILE, "variant_id"))


def test_a_variant_that_always_kills_its_worker_becomes_a_failed_row(config_path, tmp_path):
    done = sweep(load_config(_killing(config_path, tmp_path)), grid=["strategy.params.kill_always=true,false"], out=tmp_path / "s",
                 executor=LocalPool(2, attempts=2))
    rows = {r["strategy.params.kill_always"]: r for r in done.results.collect().iter_rows(named=True)}
    assert rows[True]["status"] == "failed" and "died 2 times while running this variant alone" in rows[True]["error"]
    assert rows[False]["status"] == "ok" and rows[False]["pnl"] is not None


def test_a_failing_variant_becomes_its_row_and_keeps_its_error(config_path, tmp_path):
    path = tmp_path / "fail.toml"
    path.write_text(config_path.read_text().replace('strategy = "hold"', 'strategy = "sweep_strategies:FailIf"'))
    done = sweep(load_config(path), grid=["strategy.params.fail=true,false"], out=tmp_path / "s",
                 executor=SerialExecutor())
    failed, ok = done.results.collect().sort("strategy.params.fail", descending=True).iter_rows(named=True)
    assert failed["status"] == "failed" and failed["pnl"] is None
    assert failed["error"] == "RuntimeError: the strategy broke on purpose"
    trace = (tmp_path / "s/runs" / f"{failed['variant_id']}.failed" / "error.txt").read_text()
    assert "the strategy broke on purpose" in trace
    assert failed["path"].endswith(".failed") and ok["path"] is None  # keep "failed": only the failure stays
    assert ok["status"] == "ok" and ok["pnl"] is not None and ok["fills"] >= 1
    assert sorted(p.name for p in (tmp_path / "s/runs").iterdir()) == [f"{failed['variant_id']}.failed"]


class _StopAfter:
    """A progress object that interrupts the sweep (as Ctrl-C would) after `n` finished variants."""

    def __init__(self, n=None):
        self.n, self.started, self.advanced = n, None, 0

    def start(self, total, done):
        self.started = (total, done)

    def advance(self, outcome):
        self.advanced += 1
        if self.advanced == self.n:
            raise KeyboardInterrupt


def test_resume_after_an_interrupt_finishes_without_redoing_work(config_path, tmp_path):
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        sweep(load_config(config_path), **DIMENSIONS, out=out, executor=SerialExecutor(), progress=_StopAfter(3))
    with pytest.raises(RunError, match="has not finished .3 of 8 variants done"):
        open_sweep(out)
    before = {r["variant_id"]: r for r in map(json.loads, (out / JOURNAL).read_text().splitlines())}
    with pytest.raises(ConfigError, match="already holds a sweep; pass --resume"):
        sweep(load_config(config_path), **DIMENSIONS, out=out, executor=SerialExecutor())
    progress = _StopAfter()
    done = sweep(load_config(config_path), **DIMENSIONS, out=out, executor=SerialExecutor(), resume=True,
                 progress=progress)
    assert progress.started == (5, 3) and progress.advanced == 5  # only the 5 unfinished variants ran
    table = done.results.collect()
    assert table.height == 8 and set(before) < set(table["variant_id"])
    for row in table.filter(pl.col("variant_id").is_in(list(before))).iter_rows(named=True):
        assert row["seconds"] == before[row["variant_id"]]["seconds"]  # the recorded row, not a rerun
    with pytest.raises(ConfigError, match="holds another sweep"):
        sweep(load_config(config_path), grid=["exchanges.binance.leverage=5,10"], out=out, resume=True)


def test_the_sweep_table_of_a_config_and_bad_dimensions(config_path, tmp_path):
    path = tmp_path / "table.toml"
    path.write_text(config_path.read_text() + '\n[sweep]\ngrid = { "exchanges.binance.leverage" = [5, 10] }\n'
                    'modes = "cross,isolated"\nkeep = "none"\n')
    variants = plan_variants(load_config(path))
    assert [v.parameters for v in variants][:2] == [{"exchanges.binance.leverage": 5, "margin_modes": "cross"},
                                                    {"exchanges.binance.leverage": 5, "margin_modes": "isolated"}]
    assert len(plan_variants(load_config(path), modes="cross")) == 2  # the command line replaces [sweep].modes
    for kwargs, message in [
        (dict(grid=["strategy.params.colour=1,2"]), "sweep variant .* strategy.params"),
        (dict(grid=["exchanges.okx.leverage=1"]), "no exchange 'okx'"),
        (dict(grid=["leverage=1,2"]), "must start with run., strategy. or exchanges."),
        (dict(grid=["exchanges.binance.leverage=5,5"]), "repeat"),
        (dict(modes="cross,portfolio-ish"), "portfolio-ish"),  # portfolio itself is a mode now
        (dict(stress=["gap:binance:-20%"]), "expected KIND:TARGET"),
    ]:
        with pytest.raises(ConfigError, match=message):
            plan_variants(load_config(path), **kwargs)
    assert not (tmp_path / "runs").exists()  # a refused sweep writes nothing


def test_sweep_cli(config_path, tmp_path):
    out = tmp_path / "cli"
    args = ["sweep", str(config_path), "--grid", "exchanges.binance.leverage=5,10", "--modes", "cross,isolated",
            "--stress", "baseline", "--stress", f"gap:{ETH}:-30%@2024-10-06", "--workers", "1", "--keep", "failed",
            "--out", str(out), "--no-validate"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "8 variants, 8 ok, 0 failed" in result.output
    table = pl.read_parquet(out / "sweep.parquet")
    assert table.height == 8 and "pnl" in table.columns and set(table["stress"]) == {"baseline",
                                                                                     f"gap:{ETH}:-30%@2024-10-06"}
    shocked = table.filter(pl.col("stress") != "baseline")
    assert (shocked["liquidations"] > 0).any()  # a 30 % gap on the long leg liquidates something
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 2 and "--resume" in again.output
    resumed = CliRunner().invoke(main, args + ["--resume"])
    assert resumed.exit_code == 0 and "8 variants, 8 ok" in resumed.output
    no_scheduler = CliRunner().invoke(main, args[:-3] + ["--out", str(tmp_path / "d"), "--executor", "dask"],
                                      env={"DASK_SCHEDULER_ADDRESS": ""})
    assert no_scheduler.exit_code == 2 and "DASK_SCHEDULER_ADDRESS" in no_scheduler.output
