"""Careless and hostile inputs to the newer commands (sweep, capital, report, rules import, any --out):
each is refused with a message naming the option, file or key, exit 2 (1 when the command ran and found
no answer), no traceback, and nothing written that looks like a result."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from click.testing import CliRunner

from xmargin.cli.main import main
from test_stress import ROOT
from test_sweep import config_path  # noqa: F401  (the module's 5-day hold config, a fixture)

FIXTURES = ROOT / "tests" / "fixtures" / "venues"


def invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


@pytest.fixture(scope="module")
def run_folder(config_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    result = invoke("run", config_path, "--out", out, "--run-id", "pair", "--quiet", "--no-validate")
    assert result.exit_code == 0, result.output
    return out / "pair"


def test_an_out_folder_that_cannot_be_made_is_named_exit_2(config_path, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for command in (["run", config_path, "--quiet", "--no-validate"],
                    ["capital", config_path, "--quiet", "--no-validate"]):
        result = invoke(*command, "--out", blocker / "inside")
        assert result.exit_code == 2, result.output
        assert str(blocker / "inside") in result.output and "Traceback" not in result.output
    result = invoke("sweep", config_path, "--grid", "exchanges.binance.leverage=5", "--out", blocker / "inside")
    assert result.exit_code == 2 and f"--out {blocker / 'inside'}: cannot create" in result.output
    assert blocker.read_text() == "" and sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_sweep_refuses_a_key_given_twice_and_a_folder_of_other_files(config_path, run_folder, tmp_path):
    result = invoke("sweep", config_path, "--grid", "exchanges.binance.leverage=5",
                    "--grid", "exchanges.binance.leverage=10", "--out", tmp_path / "a")
    assert result.exit_code == 2 and "--grid exchanges.binance.leverage: given twice" in result.output
    result = invoke("sweep", config_path, "--grid", "exchanges.binance.collateral.USDT=3000",
                    "--collateral", "binance.USDT=5000", "--out", tmp_path / "b")
    assert result.exit_code == 2 and "--collateral binance.USDT: also given as --grid" in result.output
    before = sorted(p.name for p in run_folder.iterdir())
    result = invoke("sweep", config_path, "--grid", "exchanges.binance.leverage=5", "--out", run_folder)
    assert result.exit_code == 2 and f"--out {run_folder}: the folder holds other files" in result.output
    assert sorted(p.name for p in run_folder.iterdir()) == before  # no sweep.json / sweep.parquet mixed in
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def _damaged(run_folder, tmp_path, name):
    copy = tmp_path / name
    shutil.copytree(run_folder, copy)
    return copy


def test_report_on_damaged_folders_names_the_file_and_writes_nothing(run_folder, tmp_path):
    cases = []
    cut = _damaged(run_folder, tmp_path, "cut")
    data = (cut / "equity.arrow").read_bytes()
    (cut / "equity.arrow").write_bytes(data[: len(data) // 2])
    cases.append((cut, "equity.arrow: not a readable Arrow file"))
    no_summary = _damaged(run_folder, tmp_path, "no-summary")
    (no_summary / "summary.json").unlink()
    cases.append((no_summary, "summary.json: unreadable"))
    bad_manifest = _damaged(run_folder, tmp_path, "bad-manifest")
    (bad_manifest / "manifest.json").write_text("{")
    cases.append((bad_manifest, "manifest.json: unreadable"))
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "results.parquet").write_text("not parquet")
    cases.append((sweep, "a file of this sweep folder cannot be read"))
    capital = tmp_path / "capital"
    capital.mkdir()
    (capital / "capital.json").write_text("")
    cases.append((capital, "a file of this capital folder cannot be read"))
    comparison = tmp_path / "comparison"
    comparison.mkdir()
    (comparison / "comparison.json").write_text(json.dumps({"rows": 5}))
    cases.append((comparison, "comparison.json: no set-up rows"))
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "sweep.json").write_text(json.dumps({"parameters": [], "variants": []}))
    cases.append((unfinished, "an unfinished sweep"))
    for folder, message in cases:
        out = tmp_path / f"{folder.name}.html"
        result = invoke("report", folder, "--out", out)
        assert result.exit_code == 2, (folder, result.output)
        assert message in result.output and "Traceback" not in result.output, result.output
        assert not out.exists() and not list(tmp_path.glob("*.partial"))


def test_capital_with_no_amount_that_works_exits_1(config_path, tmp_path):
    # 5 billion USDT of ETH: rejected for margin even with 100x the configured collateral
    result = invoke("capital", config_path, "--quiet", "--no-validate", "--out", tmp_path,
                    "--set", 'strategy.params.positions={"binance:ETH/USDT:USDT"=5000000000}')
    assert result.exit_code == 1, result.output
    assert "fails even with 100x the configured collateral" in result.output
    assert "no collateral amount found for binance USDT" in result.output
    # an amount configured at 0 is scaled like the others: it stays 0 in every trial, and the note says so
    hedge = tmp_path / "hedge.toml"
    hedge.write_text((ROOT / "examples" / "capital_hedge.toml").read_text()
                     .replace('"datasets/sample"', f'"{ROOT / "datasets" / "sample"}"'))
    result = invoke("capital", hedge, "--quiet", "--no-validate", "--out", tmp_path, "--end", "2024-11-03",
                    "--set", "exchanges.binance.collateral.USDT=0")
    assert result.exit_code == 1, result.output
    assert "(binance USDT configured at 0 stay 0 in every trial: give the amount you would start with)" in result.output


def test_rules_import_refused_by_its_dataset_writes_no_rule_file(tmp_path):
    dump = FIXTURES / "ccxt_fetch_leverage_tiers_binance.json"
    not_a_dataset = tmp_path / "empty"
    not_a_dataset.mkdir()
    out = tmp_path / "rules.json"
    result = invoke("rules", "import", dump, "--exchange", "binance", "--as-of", "2024-01-01", "--out", out,
                    "--dataset", not_a_dataset)
    assert result.exit_code == 2 and "dataset.toml: missing" in result.output
    assert not out.exists()
    result = invoke("rules", "import", dump, "--exchange", "binance", "--as-of", "2024-01-01", "--out", out,
                    "--name", " ")
    assert result.exit_code == 2 and "--name" in result.output and not out.exists()


@pytest.mark.parametrize("line, message", [
    ("grid = 5", "[sweep] grid = 5: expected e.g. grid = {"),
    ("modes = 5", "[sweep] modes = 5: expected e.g. modes = ["),
    ("stress = 5", "[sweep] stress = 5: expected e.g."),
    ("modes = [1, 2]", "[sweep] modes = [1, 2]: every entry is a text"),
    ("collateral = true", "[sweep] collateral = True: expected e.g."),
])
def test_a_sweep_table_of_the_wrong_shape_is_named(config_path, tmp_path, line, message):
    config = tmp_path / "swept.toml"
    config.write_text(config_path.read_text() + f"\n[sweep]\n{line}\n")
    result = invoke("sweep", config, "--out", tmp_path / "out", "--workers", "1")
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_rules_import_of_a_wrong_shape_names_the_file_and_the_response(tmp_path):
    dump = tmp_path / "brackets.json"
    dump.write_text(json.dumps([{"symbol": "BTCUSDT", "brackets": "nope"}]))
    result = invoke("rules", "import", dump, "--exchange", "binance", "--as-of", "2024-01-01",
                    "--out", tmp_path / "rules.json")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"{dump}: looks like a binance leverageBracket response but lacks the expected shape" in result.output
    assert not (tmp_path / "rules.json").exists()


def test_an_id_with_a_path_is_refused_and_nothing_is_written_outside_out(config_path, tmp_path):
    out = tmp_path / "out"
    for command in (["capital"], ["compare", "--modes", "cross"]):
        result = invoke(*command, config_path, "--id", "../escape", "--out", out, "--quiet", "--no-validate")
        assert result.exit_code == 2 and "--id '../escape': an id is one folder name" in result.output
    assert not (tmp_path / "escape").exists() and not (out.exists() and any(out.iterdir()))


def test_a_set_up_naming_an_exchange_twice_is_refused(config_path, tmp_path):
    for command in (["compare"], ["sweep", "--workers", "1"]):
        result = invoke(*command, config_path, "--modes", "binance=cross,binance=isolated", "--out", tmp_path / "o")
        assert result.exit_code == 2 and "exchange 'binance' given twice in one set-up" in result.output
    assert not (tmp_path / "o").exists()


def test_a_sweep_with_failed_variants_exits_1_with_its_table(config_path, tmp_path):
    result = invoke("sweep", config_path, "--grid", "run.start=2030-01-01,2030-02-01", "--set", "run.end=2030-06-01",
                    "--out", tmp_path / "s", "--workers", "1")
    assert result.exit_code == 1, result.output
    assert "2 variants, 0 ok, 2 failed" in result.output and "2 of 2 variant(s) failed" in result.output
    assert (tmp_path / "s" / "sweep.parquet").is_file()  # every variant's row, status failed, with its error
    result = invoke("report", tmp_path / "s", "--out", tmp_path / "s.html")
    assert result.exit_code == 2 and "every variant failed (2), nothing to plot; the first error: DatasetError" \
        in result.output and not (tmp_path / "s.html").exists()


def test_a_scheduler_that_is_no_address_is_named(config_path, tmp_path):
    pytest.importorskip("distributed", reason="the Dask executor is the optional extra xmargin[dask]")
    result = invoke("sweep", config_path, "--executor", "dask", "--scheduler", "garbage", "--out", tmp_path / "s")
    assert result.exit_code == 2 and "--scheduler 'garbage': not a scheduler address" in result.output
    assert not (tmp_path / "s").exists()


def damaged_sample(tmp_path, name: str, damage: str):
    """A copy of the sample dataset whose table file `name` (replaced if it exists) is a link to
    nothing, a folder, or bytes that are not Parquet (`damage`)."""
    dataset = tmp_path / "data"
    shutil.copytree(ROOT / "datasets" / "sample", dataset)
    bad = dataset / name
    bad.unlink(missing_ok=True)
    if damage == "dangling link":
        bad.symlink_to(tmp_path / "nowhere.parquet")
    elif damage == "folder":
        bad.mkdir()
    else:
        bad.write_bytes(b"not parquet at all" * 10)
    return dataset


@pytest.mark.parametrize("damage", ["dangling link", "folder", "garbage bytes"])
def test_an_unreadable_parquet_file_is_named_with_or_without_validation(tmp_path, damage):
    """A dataset with one bars file that cannot be read: a link to nothing, a folder named like a
    Parquet file, or bytes that are not Parquet. `xmargin run` (validating) lists the file with a fix
    and exits 1; with --no-validate the load names the dataset and the file and exits 2. Never a
    traceback, never a run folder."""
    dataset = damaged_sample(tmp_path, "bars/binance/perp/ZZZ_USDT_USDT-1h.parquet", damage)
    text = (ROOT / "examples" / "hold.toml").read_text().replace('"datasets/sample"', f'"{dataset}"')
    text = text.replace('end = "2025-01-01"', 'end = "2024-10-05"')
    config = tmp_path / "hold.toml"
    config.write_text(text)
    out = tmp_path / "runs"

    checked = invoke("run", config, "--out", out, "--quiet")
    assert checked.exit_code == 1, checked.output
    assert "bars/binance/perp/ZZZ_USDT_USDT-1h.parquet" in checked.output and "Fix:" in checked.output
    expected = {"dangling link": "a link to a file that does not exist", "folder": "is a folder",
                "garbage bytes": "cannot read Parquet"}[damage]
    assert expected in checked.output

    unchecked = invoke("run", config, "--out", out, "--quiet", "--no-validate")
    assert unchecked.exit_code == 2, unchecked.output
    assert "Traceback" not in unchecked.output
    assert f"{dataset}: cannot read the dataset" in unchecked.output
    assert "xmargin data validate" in unchecked.output
    assert "bars/binance/perp/ZZZ_USDT_USDT-1h.parquet cannot be read" in unchecked.output
    assert not out.exists() or not any(out.iterdir())


def test_a_damaged_index_file_is_named_when_a_future_settles(tmp_path):
    """The settlement price of a dated future reads the dataset's index table when the run starts;
    with --no-validate a damaged index file is named there (exit 2), not a reader's traceback."""
    dataset = tmp_path / "data"
    shutil.copytree(ROOT / "datasets" / "sample-futures", dataset)
    (dataset / "index" / "data.parquet").write_bytes(b"garbage" * 20)
    config = tmp_path / "portfolio_basis.toml"
    config.write_text((ROOT / "examples" / "portfolio_basis.toml").read_text()
                      .replace('"datasets/sample-futures"', f'"{dataset}"'))
    result = invoke("run", config, "--out", tmp_path / "runs", "--quiet", "--no-validate")
    assert result.exit_code == 2, result.output
    assert f"{dataset}: cannot read the dataset (index/data.parquet cannot be read" in result.output
    runs = tmp_path / "runs"
    assert "Traceback" not in result.output and (not runs.exists() or not any(runs.iterdir()))


@pytest.mark.parametrize("build, message", [
    (lambda c: c.PlaceOrder.market(123, 0.01), "PlaceOrder.instrument must be text, got 123"),
    (lambda c: c.PlaceOrder.market("binance:BTC/USDT:USDT", 0.01, reduce_only="no"),
     "PlaceOrder.reduce_only must be True or False, got 'no'"),
    (lambda c: c.PlaceOrder.market("binance:BTC/USDT:USDT", 0.01, tag=5), "PlaceOrder.tag must be text, got 5"),
    (lambda c: c.PlaceOrder.market("binance:BTC/USDT:USDT", 0.01, leverage="ten"),
     "PlaceOrder.leverage must be a number, got 'ten' \\(str\\)"),
    (lambda c: c.PlaceOrder.market("binance:BTC/USDT:USDT", "0.1"),
     "PlaceOrder.quantity must be a number, got '0.1' \\(str\\); e.g. float\\('0.1'\\)"),
    (lambda c: c.PlaceOrder.market("binance:BTC/USDT:USDT", True), "PlaceOrder.quantity must be a number, got True"),
    (lambda c: c.PlaceOrder("binance:BTC/USDT:USDT", 0.01, limit_price=float("nan")),
     "a market order has no limit price \\(got nan\\)"),
    (lambda c: c.PlaceOrder.market("binance:BTC/USDT:USDT", 0.01, limit_price=60_000),
     "a market order has no limit price \\(got 60000.0\\)"),
    (lambda c: c.Transfer("USDT", "10", "binance", "okx"), "Transfer.amount must be a number, got '10'"),
    (lambda c: c.SetLeverage("binance:BTC/USDT:USDT", None), "SetLeverage.leverage must be a number, got None"),
    (lambda c: c.AdjustIsolatedMargin("binance:BTC/USDT:USDT", False),
     "AdjustIsolatedMargin.amount must be a number, got False"),
    (lambda c: c.CancelOrder("binance", 3.7), "CancelOrder.order_id must be a whole number"),
    (lambda c: c.CancelOrder("binance", True), "CancelOrder.order_id must be a whole number"),
    (lambda c: c.Transfer("USDT", 10, "binance", None), "Transfer.destination must be text, got None"),
    (lambda c: c.SetLeverage(None, 5), "SetLeverage.instrument must be text"),
])
def test_a_command_of_the_wrong_kind_is_refused_where_the_strategy_builds_it(build, message):
    """A value of the wrong kind in a command is refused when the strategy builds it, naming the
    command and the field: the string "no" is not read as reduce_only=True (it was, and the order was
    rejected for another reason), an order id 3.7 is not written to the log as 3, a tag 5 does not
    stop the event log's writing after the run."""
    from xmargin.ledger import commands

    with pytest.raises((TypeError, ValueError), match=message):
        build(commands)


def test_commands_keep_the_values_of_the_right_kind():
    import numpy as np

    from xmargin.ledger import commands

    order = commands.PlaceOrder.market("binance:BTC/USDT:USDT", 0.01, reduce_only=np.bool_(True), tag=None,
                                       leverage=5)
    assert order.reduce_only is True and order.tag == "" and order.leverage == 5.0
    assert commands.CancelOrder("binance", np.int64(7)).order_id == 7
    assert commands.CancelOrder("binance", 7.0).order_id == 7
    # amounts: any real number (numpy's, Decimal, Fraction) as a float
    from decimal import Decimal
    from fractions import Fraction

    order = commands.PlaceOrder.limit("binance:BTC/USDT:USDT", Decimal("0.015"), np.float32(60_000.5))
    assert (order.quantity, order.limit_price) == (0.015, 60_000.5) and type(order.quantity) is float
    assert commands.PlaceOrder.market("binance:BTC/USDT:USDT", np.int64(-2)).quantity == -2.0
    assert commands.Transfer("USDT", Fraction(1, 4), "binance", "okx").amount == 0.25


class CancelsAFloat:
    """Asks to cancel the order 3.7 on its second wake."""

    def __init__(self, params):
        self.wakes_seen = 0

    def wakes(self):
        from xmargin.sim.strategy import Wakes

        return Wakes(every="1d")

    def on_wake(self, view, wake):
        from xmargin.ledger.commands import CancelOrder

        self.wakes_seen += 1
        return [CancelOrder("binance", 3.7)] if self.wakes_seen == 2 else []


def test_a_strategy_building_a_bad_command_stops_the_run_naming_it(config_path, tmp_path):
    result = invoke("run", config_path, "--out", tmp_path / "runs", "--quiet", "--no-validate",
                    "--set", "run.strategy=tests.test_hostile_inputs:CancelsAFloat")
    assert result.exit_code == 1, result.output
    assert "CancelOrder.order_id must be a whole number" in result.output and "No run folder was written" in result.output
    runs = tmp_path / "runs"
    assert not runs.exists() or not any(runs.iterdir())


class NotANumber:
    """Opens an isolated BTC long on its first wake, then sends the command of `params["case"]` with a
    nan (an order's leverage, an isolated margin adjustment)."""

    def __init__(self, params):
        self.case, self.wakes_seen = params["case"], 0

    def wakes(self):
        from xmargin.sim.strategy import Wakes

        return Wakes(every="1d")

    def on_wake(self, view, wake):
        from xmargin.ledger.commands import AdjustIsolatedMargin, PlaceOrder

        self.wakes_seen += 1
        btc = "binance:BTC/USDT:USDT"
        if self.wakes_seen == 1:
            return [PlaceOrder.market(btc, 0.01, margin_mode="isolated")]
        if self.wakes_seen == 3:
            if self.case == "leverage":
                return [PlaceOrder.market("binance:ETH/USDT:USDT", 0.1, leverage=float("nan"))]
            return [AdjustIsolatedMargin(btc, float("nan"))]
        return []


@pytest.mark.parametrize("case, reason", [("leverage", "leverage nan must be a positive number"),
                                          ("adjust", "adjust margin: amount nan must be a non-zero finite number")])
def test_a_nan_in_a_command_is_rejected_not_booked(tmp_path, case, reason):
    """An order with leverage nan used to be accepted (LeverageChanged(nan), a position whose initial
    margin is nan) and an isolated margin adjustment of nan booked into the balance: both are now
    rejected with the reason, and no event of the log carries a nan."""
    import polars as pl

    from xmargin.config import parse_config
    from xmargin.sim.runner import execute

    config = parse_config({
        "run": {"dataset": str(ROOT / "datasets" / "sample"), "strategy": "tests.test_hostile_inputs:NotANumber",
                "start": "2024-10-01", "end": "2024-10-06"},
        "strategy": {"params": {"case": case}},
        "exchanges": {"binance": {"rules": "binance-usdm", "collateral": {"USDT": 10_000}}}})
    done = execute(config, out=tmp_path)
    events = pl.read_ipc(done.path / "events.arrow")
    assert events.filter(pl.col("type") == "OrderRejected")["reason"].to_list() == [reason]
    assert events.filter(pl.col("type") == "OrderFilled").height == 1  # the isolated long, and nothing else
    floats = [name for name, dtype in events.schema.items() if dtype == pl.Float64]
    assert not events.select(pl.any_horizontal([pl.col(name).is_nan() for name in floats]).any()).item()


@pytest.mark.parametrize("damage", ["dangling link", "folder", "garbage bytes"])
def test_data_info_names_an_unreadable_parquet_file(tmp_path, damage):
    """`xmargin data info` reads every table file without the validation: a file that cannot be read
    is named with the check that lists them all (exit 2), not a reader's traceback; a folder named
    like a Parquet file is not silently left out of the counts."""
    dataset = damaged_sample(tmp_path, "funding/binance/perp/BTC_USDT_USDT.parquet", damage)
    result = invoke("data", "info", dataset)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert f"{dataset}: cannot read the dataset (funding/binance/perp/BTC_USDT_USDT.parquet" in result.output
    assert "xmargin data validate" in result.output


def test_sizing_an_order_without_a_price_names_the_instrument(tmp_path):
    """The hold strategy sizes its orders with `view.quantity_for` at the first bar close; an
    instrument with no bar yet (binance SOL perp trades from 2025-02-01 in the sample) has no price.
    The run stops naming the instrument, the time and what to do, not numpy's "cannot convert float
    NaN to integer" (an instrument with a lot size) or an order of nan contracts (one without)."""
    text = (ROOT / "examples" / "hold.toml").read_text().replace('"datasets/sample"', f'"{ROOT / "datasets" / "sample"}"')
    config = tmp_path / "hold.toml"
    config.write_text(text.replace('"binance:ETH/USDT:USDT" = 20000', '"binance:SOL/USDT:USDT" = 20000')
                      .replace('start = "2024-10-01"', 'start = "2025-01-15"'))
    result = invoke("run", config, "--out", tmp_path / "runs", "--quiet", "--no-validate", "--end", "2025-01-20")
    assert result.exit_code == 1, result.output
    assert "cannot convert float NaN" not in result.output
    assert "binance:SOL/USDT:USDT has no price at 2025-01-15 01:00" in result.output
    assert "No run folder was written" in result.output


@pytest.mark.parametrize("lot", [0.001, 0.0])
def test_rounding_a_quantity_that_is_not_a_number_is_refused(lot):
    """`round_quantity` of nan or inf (a strategy's arithmetic on a missing price) is a ValueError
    naming the instrument, whether or not the instrument has a lot size (without one, nan was
    returned as it was), in the run's View as in FakeView."""
    from xmargin.testing import FakeView

    view = FakeView({"x:BTC/USDT:USDT": {"lot": lot}})
    assert view.round_quantity("x:BTC/USDT:USDT", 0.0125) == (0.012 if lot else 0.0125)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"round_quantity\('x:BTC/USDT:USDT', (nan|inf)\): not a finite"):
            view.round_quantity("x:BTC/USDT:USDT", bad)


@pytest.mark.parametrize("command", [["stress", "--shock", "gap:binance:ETH/USDT:USDT:-20%@2024-10-02T00:00:00Z"],
                                     ["compare", "--modes", "cross,isolated"]])
def test_a_stress_or_compare_that_fails_leaves_no_folder(tmp_path, command):
    """A stress or compare whose runs cannot read the dataset (--no-validate, a damaged bars file)
    stops naming the file (exit 2) and leaves no `<id>` folder behind, neither empty nor holding the
    runs finished before the failure; an `--id` folder that already existed is left as it was."""
    dataset = damaged_sample(tmp_path, "bars/binance/perp/ZZZ_USDT_USDT-1h.parquet", "garbage bytes")
    text = (ROOT / "examples" / "hold.toml").read_text().replace('"datasets/sample"', f'"{dataset}"')
    config = tmp_path / "hold.toml"
    config.write_text(text.replace('end = "2025-01-01"', 'end = "2024-10-05"'))
    out = tmp_path / "out"
    result = invoke(command[0], config, *command[1:], "--out", out, "--quiet", "--no-validate", "--id", "fresh")
    assert result.exit_code == 2, result.output
    assert "cannot read the dataset" in result.output and "ZZZ_USDT_USDT-1h.parquet" in result.output
    assert not out.exists() or not any(out.iterdir()), sorted(p.name for p in out.rglob("*"))
    kept = out / "mine"
    kept.mkdir(parents=True)
    (kept / "notes.txt").write_text("keep me")
    result = invoke(command[0], config, *command[1:], "--out", out, "--quiet", "--no-validate", "--id", "mine")
    assert result.exit_code == 2, result.output
    assert (kept / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("setting, message", [
    ("exchanges.binance.leverage=0.5", "exchanges.binance.leverage = 0.5: must be a finite number >= 1"),
    ("strategy.params=5", "strategy.params = 5: must be a table"),
    ("run.name='a/b'", "run.name = 'a/b': the name starts the run folder's name"),
    ("run.instruments=['binance:ETH/USDT:USDT','binance:BTC/USDT:USDT','binance:ETH/USDT:USDT']",
     "run.instruments lists ['binance:ETH/USDT:USDT'] more than once"),
    ("run.warning_thresholds=[0.7,0.7]", "run.warning_thresholds = [0.7, 0.7]: an increasing list"),
    ("run.instruments=[]", "run.instruments = []: must be a list of 'exchange:symbol' keys"),  # was: every one
    ("strategy.params.leverge={}", "hold: unknown params ['leverge'] (did you mean 'leverage'?)"),  # was a bare TypeError
    ("run.intrabr='close'", "unknown keys run.['intrabr'] (did you mean 'intrabar'?)"),
    # a misspelt asset left the default fee in force
    ("exchanges.binance.withdrawal_fees={USCD=5}", "exchanges.binance.withdrawal_fees.USCD: binance (binance-usdm) "
                                                   "holds no such asset"),
    # snapshots come at bar closes: 90m on 1h bars was every 3 h, so hours above a warning were off 2x
    ("run.sample_interval='90m'", "run.sample_interval = '90m' (1h unless set): not a whole multiple of the "
                                  "dataset's 1h bars"),
])
def test_a_config_value_that_would_mislead_is_refused_naming_the_key(config_path, tmp_path, setting, message):
    out = tmp_path / "runs"
    result = invoke("run", config_path, "--set", setting, "--out", out, "--quiet", "--no-validate")
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output and (not out.exists() or not any(out.iterdir()))


def test_doubtful_rules_and_a_window_beyond_the_data_are_repeated_in_the_summary(config_path, tmp_path):
    """A rule file whose leverage rises with size runs, but the summary says so; so does a default
    leverage above what the rule set allows (capped) and a run.start before the dataset's first bar
    (the run starts later than the config says)."""
    data = json.loads((ROOT / "engine/venues/rules/data/binance-usdm.json").read_text())
    data["brackets"]["ETHUSDT"][1]["max_leverage"] = 150.0  # above the first bracket's 125
    rules = tmp_path / "mine.json"
    rules.write_text(json.dumps(data))
    result = invoke("run", config_path, "--set", f"exchanges.binance.rules='{rules}'", "--start", "2024-09-01",
                    "--end", "2024-09-07", "--set", "exchanges.binance.leverage=200", "--out", tmp_path, "--run-id",
                    "doubt", "--no-validate")
    assert result.exit_code == 0, result.output
    expected = [f"exchanges.binance.rules: {rules}: brackets.ETHUSDT[1]: max_leverage 150 rises above the previous "
                "bracket's 125; exchanges lower it with size (check the row order and the values)",
                "exchanges.binance.leverage = 200 is above binance:ETH/USDT:USDT's highest max leverage (150x in its "
                "rule set): its orders that give no leverage of their own use at most 150x",
                "run.start = 2024-09-01 00:00 is before the dataset's first bar (2024-09-05 00:00): the run starts there"]
    summary = json.loads((tmp_path / "doubt" / "summary.json").read_text())
    assert [w for w in summary["warnings"] if w in expected] == expected
    assert all(f"input warning: {w}" in result.output for w in expected), result.output


def test_a_config_built_in_code_is_checked_like_a_toml_one(config_path, tmp_path):
    """`xmargin.RunConfig` / `attrs.evolve` skip the TOML parser: a nan slippage ran and wrote a run whose
    PnL was nan, a zero sample interval divided by zero, an unknown intrabar or margin mode raised KeyError."""
    import attrs

    import xmargin
    from xmargin.errors import ConfigError

    config = xmargin.load_config(config_path)
    exchange = config.exchanges["binance"]
    cases = [(lambda: attrs.evolve(config, slippage_bps=float("nan")), "run.slippage_bps = nan"),
             (lambda: attrs.evolve(config, slippage_bps=-50.0), "run.slippage_bps = -50.0"),
             (lambda: attrs.evolve(config, sample_interval_ns=0), "run.sample_interval = 0 ns"),
             (lambda: attrs.evolve(config, intrabar="bogus"), "run.intrabar = 'bogus': allowed"),
             (lambda: attrs.evolve(config, warning_thresholds=(1.5,)), "run.warning_thresholds = [1.5]"),
             (lambda: attrs.evolve(config, end=config.start), "run.end"),
             (lambda: attrs.evolve(exchange, leverage=0.0), "exchanges.binance.leverage = 0.0"),
             (lambda: attrs.evolve(exchange, collateral={"USDT": -100.0}), "exchanges.binance.collateral.USDT = -100.0"),
             (lambda: attrs.evolve(exchange, margin_mode="bogus"), "exchanges.binance.margin_mode = 'bogus'")]
    for build, message in cases:
        with pytest.raises(ConfigError, match=re.escape(message)):
            build()
    hyperliquid = attrs.evolve(exchange, name="hyperliquid", rules="hyperliquid", collateral={"USDC": 1000.0})
    offered = attrs.evolve(config, exchanges={"binance": exchange, "hyperliquid": hyperliquid})
    with pytest.raises(ConfigError, match=r"exchanges\.hyperliquid\.margin_mode = 'portfolio': rule set hyperliquid"):
        xmargin.run(attrs.evolve(offered, exchanges={**offered.exchanges,
                                                     "hyperliquid": attrs.evolve(hyperliquid, margin_mode="portfolio")}),
                    out=tmp_path / "runs")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_rule_file_next_to_the_config_is_found_like_its_dataset(config_path, tmp_path):
    """`rules = "mine.json"` beside the config was looked up in the working directory only."""
    folder = tmp_path / "mine"
    folder.mkdir()
    data = json.loads((ROOT / "engine/venues/rules/data/binance-usdm.json").read_text())
    (folder / "mine.json").write_text(json.dumps({**data, "name": "mine"}))
    config = folder / "pair.toml"
    config.write_text(config_path.read_text().replace('rules = "binance-usdm"', 'rules = "mine.json"'))
    result = invoke("run", config, "--out", tmp_path / "runs", "--run-id", "mine", "--quiet", "--no-validate",
                    "--end", "2024-10-05")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "runs" / "mine" / "manifest.json").read_text())
    assert manifest["resolved"]["rules"]["binance"]["name"] == "mine"


@pytest.mark.parametrize("command", [["compare", "--modes", "cross,isolated"],
                                     ["stress", "--shock", "gap:binance:ETH/USDT:USDT:-20%@2024-10-06T00:00"]])
def test_an_id_that_exists_is_refused_before_anything_runs(config_path, tmp_path, command):
    """compare / stress --id of an existing folder wrote their runs and tables into it, next to what it
    held (another command's results): refused up front, as run and capital do."""
    taken = tmp_path / "out" / "taken"
    taken.mkdir(parents=True)
    (taken / "notes.txt").write_text("keep me")
    result = invoke(*command[:1], config_path, *command[1:], "--out", tmp_path / "out", "--id", "taken", "--quiet",
                    "--no-validate")
    assert result.exit_code == 2 and f"--id taken: {taken} already exists" in result.output, result.output
    assert [p.name for p in taken.iterdir()] == ["notes.txt"]


def test_a_caveat_of_the_import_is_repeated_by_a_run_trading_its_instrument(config_path, tmp_path, monkeypatch):
    """What `data import` could only guess (dates without a time zone read as UTC) stays in
    dataset.toml; the summary of a run trading that instrument repeats it, not one about another."""
    monkeypatch.setenv("XMARGIN_CACHE_DIR", str(tmp_path / "cache"))
    dataset = tmp_path / "data"
    shutil.copytree(ROOT / "datasets" / "sample", dataset)
    with (dataset / "dataset.toml").open("a") as manifest:
        for key in ("binance:ETH/USDT:USDT", "binance:SOL/USDT:USDT"):
            manifest.write(f'\n[[caveats]]\ninstrument = "{key}"\nmessage = "{key} dates read as UTC"\n')
    config = tmp_path / "pair.toml"
    config.write_text(config_path.read_text().replace(str(ROOT / "datasets/sample"), str(dataset)))
    result = invoke("run", config, "--out", tmp_path / "runs", "--run-id", "c", "--end", "2024-10-05")
    assert result.exit_code == 0, result.output
    warnings = json.loads((tmp_path / "runs" / "c" / "summary.json").read_text())["warnings"]
    said = [w for w in warnings if "dates read as UTC" in w]
    assert said == ["dataset: warning: dataset.toml, binance:ETH/USDT:USDT: binance:ETH/USDT:USDT dates read as UTC. "
                    "Fix: check the source data; remove the [[caveats]] entry once it is settled"], warnings
