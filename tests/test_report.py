"""`xmargin report`: the HTML is self-contained, its charts plot exactly the run's table rows (thinned
only by keeping extremes), comparisons show the divergence, sweeps and capital folders are read;
and in a real headless Chromium the pages load without console errors or network requests, every
chart draws (non-blank screenshot) and the data Plotly holds equal the tables."""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as parquet
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("plotly", reason="the report needs the optional extra xmargin[report] (pip install plotly)")

import xmargin  # noqa: E402
from xmargin.analysis.compare import compare  # noqa: E402
from xmargin.analysis.stress import PriceGap, to_ns  # noqa: E402
from xmargin.analysis.summary import account_equity  # noqa: E402
from xmargin.cli.main import main  # noqa: E402
from xmargin.config import load_config  # noqa: E402
from xmargin.errors import ReportError  # noqa: E402
from xmargin.output.charts import run_figures  # noqa: E402
from xmargin.output.downsample import keep_extremes  # noqa: E402
from xmargin.output.report import kind_of, report  # noqa: E402
from xmargin.output.report_grids import read_sweep  # noqa: E402
from test_stress import AT, ETH, write_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A two-exchange funding arbitrage with a transfer (the demo, 2024-09-05..09-20), and an
    isolated-vs-cross comparison where a 12 % ETH gap liquidates the isolated leg."""
    root = tmp_path_factory.mktemp("report")
    config = load_config(ROOT / "examples/demo.toml", start="2024-09-05", end="2024-09-20", out=str(root / "runs"))
    demo = xmargin.run(config, run_id="demo").path
    table, _ = compare(write_config(root, "cross", collateral=20_000), ["isolated", "cross"], out=root / "runs",
                       compare_id="gap", shocks=(PriceGap(to_ns(AT), (ETH,), -0.12),))
    return {"root": root, "demo": demo, "compare": root / "runs/gap", "isolated": Path(table["path"][0])}


def figures_of(html_text: str) -> dict:
    block = re.search(r'<script type="application/json" id="xmargin-figures">(.*?)</script>', html_text, re.S)
    return json.loads(block.group(1).replace("<\\/", "</"))


def decoded(values):
    """A trace array as numpy: Plotly's JSON encodes numpy arrays as {dtype, bdata} (base64)."""
    if isinstance(values, dict) and "bdata" in values:
        import base64

        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=np.dtype(values["dtype"]))
    return np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)


def ms(frame: pl.DataFrame) -> np.ndarray:
    return frame["ts"].dt.epoch("ms").cast(pl.Float64).to_numpy()


def pairs(x, y) -> set:
    return {(float(a), None if np.isnan(b) else float(b)) for a, b in zip(x, y)}


def assert_run_traces_match_tables(path: Path, traces: list):
    """Every plotted point of the run's equity, margin-ratio, distance and marker traces is a row of
    the run's tables, each table's lowest and highest value is plotted, and the end points agree
    with summary.json."""
    run = xmargin.open_run(path)
    equity = account_equity(run.collateral.collect(), run.positions.collect())
    pools = run.equity.collect()
    distance = run.distance.filter(pl.col("underlying") == "all").collect()
    events = run.events.collect()
    checked = set()
    for trace in traces:
        meta, x, y = trace["meta"], decoded(trace["x"]), decoded(trace["y"])
        if meta["table"] == "equity" and "column" not in meta:
            rows = equity.filter(pl.col("exchange") == meta["exchange"])
            assert pairs(x, y) <= pairs(ms(rows), rows["equity"].to_numpy())
            assert y.max() == rows["equity"].max() and y.min() == rows["equity"].min()
            assert y[-1] == pytest.approx(run.summary["exchanges"][meta["exchange"]]["final_equity"], rel=1e-12)
        elif meta["table"] == "equity":
            rows = pools.filter((pl.col("exchange") == meta["exchange"]) & (pl.col("asset") == meta["asset"]))
            assert pairs(x, y) <= pairs(ms(rows), rows["margin_ratio"].to_numpy())
            assert np.nanmax(y) == rows["margin_ratio"].max()
        elif meta["table"] == "book":
            assert y[-1] == pytest.approx(run.summary["total"]["final_equity"], rel=1e-12)
        elif meta["table"] == "distance":
            rows = distance.filter((pl.col("exchange") == meta["exchange"]) & (pl.col("unit") == meta["unit"]))
            values = rows[meta["column"]].to_numpy().copy()
            values[~np.isfinite(values)] = np.nan
            assert pairs(x, y) <= pairs(ms(rows), values)
            assert np.nanmin(y) == np.nanmin(values)
        elif meta["table"] == "events" and "seq" in meta:
            rows = events.filter(pl.col("seq").is_in(meta["seq"])).sort("seq")
            assert sorted(x.tolist()) == sorted(ms(rows).tolist()) and rows.height == len(meta["seq"])
        elif meta["table"] == "events" and meta["kind"] in ("funding", "fees"):
            figure = {"funding": "funding", "fees": "fees"}[meta["kind"]]
            assert y[-1] == pytest.approx(run.summary["exchanges"][meta["exchange"]][figure], rel=1e-9) \
                or meta["asset"] not in ("USDT", "USDC")  # one asset per exchange in these runs
        checked.add((meta["table"], meta.get("kind")))
    return checked


# ------------------------------------------------------------------------------------------ no browser
def test_run_report_is_one_self_contained_file(folders, tmp_path):
    out = report(folders["demo"], tmp_path / "demo.html")
    text = out.read_text()
    assert not list(tmp_path.glob("*.partial"))
    # nothing fetched: no element with a src or href, no CSS import or url(), no script from elsewhere
    assert not re.search(r"<(script|link|img|iframe|source|embed)\b[^>]*\b(src|href)\s*=", text, re.I)
    assert not re.search(r"@import|url\(\s*['\"]?https?:", text, re.I)
    assert text.count("<script") == 3  # plotly.js inline, the figures' JSON, the drawing code
    assert "Plotly.newPlot" in text and len(text) < 8_000_000
    figures = figures_of(text)
    assert list(figures) == ["equity", "margin-ratio", "distance", "positions", "exposure", "funding-fees"]
    checked = assert_run_traces_match_tables(folders["demo"], [t for f in figures.values() for t in f["data"]])
    assert {("equity", None), ("book", None), ("distance", None), ("events", "transfer"),
            ("events", "funding"), ("events", "fees")} <= checked
    # net exposure at the end: the final snapshot's signed notional (no coin balances in this run)
    final = xmargin.open_run(folders["demo"]).positions.filter(pl.col("reason") == "final").collect()
    net = {t["meta"]["underlying"]: decoded(t["y"]) for t in figures["exposure"]["data"]}
    assert set(net) == {"BTC"} and final.height == 2
    assert net["BTC"][-1] == pytest.approx((final["quantity"].sign() * final["notional"]).sum(), abs=1e-9)
    # the summary table: every exchange, and the book's statistics (the summary's own, where it has them)
    assert "<th>binance</th><th>hyperliquid</th><th>total</th>" in text
    assert ("statistics.sharpe" in text) == ("book.sharpe" not in text)


def test_every_figure_is_valid_for_plotly(folders, tmp_path):
    """plotly's own schema check (property names and values) over every chart of each kind of page."""
    import plotly.graph_objects as go

    _sweep(tmp_path / "sweep", "metadata")
    for folder in (folders["isolated"], folders["compare"], tmp_path / "sweep"):
        for name, figure in figures_of(report(folder, tmp_path / "check.html").read_text()).items():
            go.Figure(figure)  # raises ValueError naming a bad property


def test_liquidations_and_isolated_positions_are_charted(folders):
    figures, book = run_figures(xmargin.open_run(folders["isolated"]))
    names = [t["name"] for t in figures["margin-ratio"]["data"]]
    assert any(n.endswith("isolated") for n in names) and "liquidations (1)" in names
    checked = assert_run_traces_match_tables(folders["isolated"], [t for f in figures.values() for t in f["data"]])
    assert ("events", "liquidation") in checked
    thresholds = [s["y0"] for s in figures["margin-ratio"]["layout"]["shapes"]]
    assert thresholds == [1.0, 0.7, 0.9]
    # positions: the ETH leg goes to 0 when liquidated, the BTC short stays
    exposure = {t["meta"]["instrument"]: decoded(t["y"]) for t in figures["positions"]["data"]}
    assert exposure[ETH].max() > 0 and exposure[ETH][-1] == 0 and exposure["binance:BTC/USDT:USDT"][-1] < 0


def test_thinned_series_keep_table_rows_and_extremes(folders, monkeypatch):
    import xmargin.output.downsample as downsample

    run = xmargin.open_run(folders["demo"])
    full, _ = run_figures(run)
    monkeypatch.setattr(downsample, "MAX_POINTS", 60)
    thin, _ = run_figures(run)
    long = [(f, n) for f in full for n, t in enumerate(full[f]["data"]) if len(t["x"]) > 60]
    assert len(long) >= 8  # equity, book, margin ratio, distance, positions, funding ...
    for figure, n in long:
        before, after = full[figure]["data"][n], thin[figure]["data"][n]
        assert len(after["x"]) <= 2 * 30 + 2 < len(before["x"])
        kept = pairs(after["x"], after["y"])
        assert kept <= pairs(before["x"], before["y"])
        assert np.nanmax(after["y"]) == np.nanmax(before["y"]) and np.nanmin(after["y"]) == np.nanmin(before["y"])
        assert (after["x"][0], after["x"][-1]) == (before["x"][0], before["x"][-1])
    assert_run_traces_match_tables(folders["demo"], [t for f in thin.values() for t in f["data"]])


def test_a_run_without_the_optional_distance_table_reports_without_that_chart(folders, tmp_path):
    import shutil

    copy = tmp_path / "old-run"
    shutil.copytree(folders["isolated"], copy)
    run = xmargin.open_run(copy)
    run.tables.pop("distance")  # as open_run gives a run written before the table existed
    figures, _ = run_figures(run)
    assert "distance" not in figures and "margin-ratio" in figures
    run.tables.pop("collateral")
    with pytest.raises(ReportError, match="no collateral table"):
        run_figures(run)


def test_compare_report_shows_setups_side_by_side_and_the_divergence(folders, tmp_path):
    text = report(folders["compare"], tmp_path / "compare.html").read_text()
    notes = json.loads((folders["compare"] / "comparison.json").read_text())["notes"]
    assert "<th>isolated</th><th>cross</th>" in text and "liquidated" in notes[0]["text"]
    assert html.escape(notes[0]["text"]) in text
    figures = figures_of(text)
    setups = {t["meta"]["setup"] for t in figures["equity"]["data"]}
    assert setups == {"isolated", "cross"}
    divergence = pl.Series([notes[0]["ts"]]).str.to_datetime(time_zone="UTC").dt.epoch("ms")[0]
    assert any(s.get("x0") == divergence for s in figures["margin-ratio"]["layout"]["shapes"])
    for setup in ("isolated", "cross"):
        traces = [t for f in figures.values() for t in f["data"] if t["meta"]["setup"] == setup]
        assert_run_traces_match_tables(folders["compare"] / setup, traces)


def _sweep(folder: Path, how: str) -> pl.DataFrame:
    frame = pl.DataFrame({"variant_id": [f"v{i}" for i in range(5)],
                          "strategy.params.notional": [20000, 20000, 30000, 30000, 40000],
                          "setup": ["cross", "isolated", "cross", "isolated", "cross"],
                          "status": ["ok", "ok", "ok", "ok", "failed"],
                          "error": [None, None, None, None, "margin rejected"],
                          "pnl": [120.5, -40.25, 180.75, -60.0, None], "liquidations": [0, 1, 0, 2, None],
                          "binance.fees": [10.0, 11.0, 15.0, 16.5, None]})
    folder.mkdir(parents=True)
    table = frame.to_arrow()
    if how == "metadata":
        table = table.replace_schema_metadata({b"xmargin": json.dumps({"parameters": ["strategy.params.notional",
                                                                                      "setup"]}).encode()})
    elif how == "sidecar":
        (folder / "sweep.json").write_text(json.dumps({"parameters": [{"name": "strategy.params.notional"},
                                                                      {"name": "setup"}]}))
    parquet.write_table(table, folder / "results.parquet")
    return frame


@pytest.mark.parametrize("how", ["metadata", "sidecar"])
def test_sweep_report_plots_each_figure_against_each_parameter(tmp_path, how):
    frame = _sweep(tmp_path / "sweep", how)
    assert kind_of(tmp_path / "sweep") == "sweep"
    text = report(tmp_path / "sweep").read_text()
    figures = figures_of(text)
    assert set(figures) == {"sweep-strategy.params.notional", "sweep-setup", "sweep-heatmap"}
    ok = frame.filter(pl.col("status") == "ok")
    # one line per value of the other parameter; status, error and ids are not figures
    lines = {(t["meta"]["figure"], t["meta"]["group"]["strategy.params.notional"]): t
             for t in figures["sweep-setup"]["data"]}
    assert {f for f, _ in lines} == {"pnl", "liquidations", "binance.fees"} and len(lines) == 6
    for notional in (20000, 30000):
        rows = ok.filter(pl.col("strategy.params.notional") == notional).sort("setup")
        assert lines[("pnl", notional)]["x"] == rows["setup"].to_list()
        assert decoded(lines[("pnl", notional)]["y"]).tolist() == rows["pnl"].to_list()
    assert [t["visible"] for t in figures["sweep-setup"]["data"]] == [True, True] + [False] * 4
    heat = {t["meta"]["figure"]: t for t in figures["sweep-heatmap"]["data"]}["pnl"]
    z = np.array([decoded(row) if isinstance(row, dict) else row for row in heat["z"]], dtype=float)
    assert decoded(heat["x"]).tolist() == [20000, 30000] and heat["y"] == ["cross", "isolated"]
    assert z.tolist() == [[120.5, 180.75], [-40.25, -60.0]]
    assert "margin rejected" in text and "4 variants plotted, 1 failed" in text


def test_sweep_parameters_by_column_names_and_refusals(tmp_path):
    frame = _sweep(tmp_path / "plain", "names")
    ok, parameters, figures, failed, _ = read_sweep(tmp_path / "plain")
    # config keys (run., strategy., exchanges.) and the grid's set-up/scenario/collateral are parameters
    assert parameters == ["strategy.params.notional", "setup"] and failed.height == 1
    assert figures == ["pnl", "liquidations", "binance.fees"]
    assert ok.height == frame.height - 1
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportError, match="nothing to report"):
        report(tmp_path / "empty")


def test_capital_report_draws_amounts_and_proof_runs(folders, tmp_path):
    folder = tmp_path / "capital"
    folder.mkdir()
    rows = pl.DataFrame({"exchange": ["binance", "hyperliquid"], "asset": ["USDT", "USDC"],
                         "required_collateral": [7057.25, 15124.5], "level": ["liquidation", "liquidation"],
                         "proof_run_id": [str(folders["demo"]), str(folders["demo"])]})
    rows.write_ipc(folder / "capital.arrow")
    (folder / "capital.json").write_text(json.dumps({"level": "liquidation", "tolerance": 0.01}))
    text = report(folder).read_text()
    figures = figures_of(text)
    bars = {t["meta"]["asset"]: t for t in figures["capital"]["data"]}
    assert bars["USDT"]["x"] == ["binance"] and decoded(bars["USDT"]["y"]).tolist() == [7057.25]
    assert decoded(bars["USDC"]["y"]).tolist() == [15124.5]
    proof = figures["proof-margin-ratio"]["data"]
    assert {(t["meta"]["role"], t["meta"]["run"]) for t in proof} == {("proof", "demo")}
    assert_run_traces_match_tables(folders["demo"], proof)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "capital.json").write_text(json.dumps({"rows": [{"exchange": "binance"}]}))
    with pytest.raises(ReportError, match="lacks columns"):
        report(bad)


def test_cli_writes_the_report_and_prints_its_path(folders, tmp_path):
    result = CliRunner().invoke(main, ["report", str(folders["isolated"]), "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    assert str(tmp_path / "r.html") in result.output and (tmp_path / "r.html").stat().st_size > 1_000_000
    (tmp_path / "nothing").mkdir()
    result = CliRunner().invoke(main, ["report", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "nothing to report" in result.output


def test_without_plotly_the_error_names_the_extra(folders, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "plotly", None)
    with pytest.raises(ReportError, match=r"xmargin\[report\]"):
        report(folders["isolated"], tmp_path / "no.html")
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_book_statistics_by_hand():
    """The summary's statistics (xmargin.analysis.performance, which the report shows) on a hand-made
    book: deposits 100, equity 100, 110, 99, 104.5, 121 at midnight of five UTC days."""
    from datetime import datetime, timedelta, timezone

    from xmargin.analysis.performance import figures

    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    equity = [100.0, 110.0, 99.0, 104.5, 121.0]
    book = pl.DataFrame({"ts": [start + timedelta(days=d) for d in range(5)], "equity": equity,
                         "net_flows": [100.0] * 5, "pnl": [e - 100.0 for e in equity]})
    out = figures(book, 100.0)
    stats = out["statistics"]
    # daily returns: change of PnL over each UTC day / capital; day 0 has only the start: 0
    returns = [0.0, 0.10, -0.11, 0.055, 0.165]
    mean = sum(returns) / 5
    spread = (sum((r - mean) ** 2 for r in returns) / 4) ** 0.5
    downside = (sum(min(r, 0) ** 2 for r in returns) / 5) ** 0.5
    assert stats["return_on_capital"] == pytest.approx(0.21) and stats["days"] == 4.0
    assert stats["cagr"] == pytest.approx(1.21 ** (365 / 4) - 1)
    assert stats["volatility"] == pytest.approx(spread * 365 ** 0.5)
    assert stats["sharpe"] == pytest.approx(mean / spread * 365 ** 0.5)
    assert stats["sortino"] == pytest.approx(mean * 365 / (downside * 365 ** 0.5))
    # drawdown 110 -> 99; under water from day 2 to day 4 (104.5 is still below the peak)
    assert out["max_drawdown"] == pytest.approx(11.0)
    assert out["drawdown"]["hours_under_water"] == 48.0 and out["drawdown"]["longest_under_water_hours"] == 48.0
    assert out["collateral_consumed"]["amount"] == pytest.approx(1.0)


def test_statistics_need_two_days_not_two_dates():
    """Two hours across midnight touch two UTC dates (two daily returns) but are no basis for an
    annualised volatility: n/a, as the README says ("n/a under two days")."""
    from datetime import datetime, timedelta, timezone

    from xmargin.analysis.performance import statistics

    start = datetime(2024, 1, 1, 23, tzinfo=timezone.utc)
    book = pl.DataFrame({"ts": [start + timedelta(hours=h) for h in range(3)], "pnl": [0.0, 5.0, -3.0]})
    stats = statistics(book, 100.0)
    assert stats["return_on_capital"] == pytest.approx(-0.03) and stats["days"] == pytest.approx(2 / 24)
    assert stats["volatility"] is None and stats["sharpe"] is None and stats["sortino"] is None


def test_an_older_summary_gets_the_summarys_own_book_statistics(folders, tmp_path):
    """A run whose summary.json predates the statistics: the report computes them as the summary does."""
    from xmargin.output.report import book_statistics

    copy = tmp_path / "older"
    shutil.copytree(folders["demo"], copy)
    summary = json.loads((copy / "summary.json").read_text())
    total = summary["total"]
    stats, drawdown, dd = total.pop("statistics"), total.pop("drawdown"), total["max_drawdown"]
    (copy / "summary.json").write_text(json.dumps(summary))
    shown = book_statistics(xmargin.open_run(copy))
    assert shown["book.max_drawdown"] == dd and shown["book.hours_under_water"] == drawdown["hours_under_water"]
    assert {k: shown[f"book.{k}"] for k in stats} == stats
    text = report(copy, tmp_path / "older.html").read_text()
    assert "book.sharpe" in text


def test_summary_notices_list_warnings_rejections_and_exposure():
    from xmargin.output.html_page import notices

    text = notices({"warnings": ["one-legged hedge: ETH <net> above 50% of gross"],
                    "rejections": [{"exchange": "binance", "kind": "insufficient margin", "count": 3}],
                    "exposure": {"ETH": {"peak_gross": 60000.0, "peak_net_share": 0.5}}})
    assert "one-legged hedge: ETH &lt;net&gt; above 50% of gross" in text
    assert "<td>rejection 1</td><td>binance</td><td>insufficient margin</td><td>3</td>" in text
    assert "<td>peak_gross</td><td>60,000.00</td>" in text and "<td>peak_net_share</td><td>50.00%</td>" in text
    assert notices({"exchanges": {}, "total": {}}) == ""


def test_table_cells_say_what_the_figure_is():
    from xmargin.output.html_page import number

    assert number(0.9946, "lowest_margin_headroom.headroom") == "99.46%"
    assert number(0.005351, "lowest_margin_headroom.margin_ratio") == "0.005351"
    assert number(float("inf"), "tightest_liquidation_distance") == "never"
    assert number(1234567.891, "pnl") == "1,234,567.89" and number(None, "pnl") == "n/a" and number(3, "fills") == "3"


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=400), st.integers(4, 60))
def test_keep_extremes_keeps_ends_and_every_buckets_min_and_max(values, limit):
    frame = pl.DataFrame({"v": values, "i": list(range(len(values)))})
    kept = keep_extremes(frame, ["v"], max_points=limit)
    assert kept["i"].to_list() == sorted(kept["i"].to_list())  # rows in order, unchanged
    assert kept.join(frame, on=["i", "v"], how="anti").height == 0
    if len(values) <= limit:
        assert kept.height == len(values)
    else:
        assert kept.height <= 2 * max(1, limit // 2) + 2
        assert kept["i"][0] == 0 and kept["i"][-1] == len(values) - 1
        assert kept["v"].min() == min(values) and kept["v"].max() == max(values)


# ------------------------------------------------------------------------------------------ browser
@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from browser import Browser, chromium_binary

    binary, why = chromium_binary()
    if binary is None:
        pytest.skip(f"no headless browser for the report tests: {why}")
    session = Browser(binary, tmp_path_factory.mktemp("chromium-profile"))
    yield session
    session.close()


READ_BACK = """Array.from(document.querySelectorAll('div.chart')).map(function (div) {
  var box = div.getBoundingClientRect();
  return {id: div.id, x: box.left + window.scrollX, y: box.top + window.scrollY, width: box.width, height: box.height,
          drawn: div.querySelectorAll('.scatterlayer .trace path.js-line, .scatterlayer .trace path.point,'
                                      + ' .heatmaplayer image, .barlayer .point path').length,
          shapes: (div.layout.shapes || []).map(function (s) { return s.x0; }),
          data: div.data.map(function (t) {
            var z = t.z ? Array.from(t.z, function (r) { return Array.from(r); }) : null;
            return {name: t.name, meta: t.meta, visible: t.visible === undefined ? true : t.visible,
                    x: Array.from(t.x || []), y: Array.from(t.y || []), z: z};
          })};
})"""
READY = ("new Promise(function (done) { (function wait() { window.xmarginReady ? done(true) : setTimeout(wait, 25); })();"
         " })")


def open_report(browser, path: Path):
    page = browser.open(path.resolve().as_uri())
    assert page.evaluate(READY, timeout=60) is True
    charts = page.evaluate(READ_BACK)
    assert page.problems() == []
    # the file itself and inline data: URLs (a heatmap's image), nothing else
    assert [u for u in page.requests() if not u.startswith("data:")] == [path.resolve().as_uri()]
    for chart in charts:
        visible = [t for t in chart["data"] if t["visible"] is True and (len(t["x"]) or t["z"])]
        assert chart["drawn"] >= 1 and chart["height"] > 300, chart["id"]
        pixels = page.screenshot({"x": chart["x"], "y": chart["y"], "width": chart["width"],
                                  "height": chart["height"]}, scale=0.3)[..., :3].reshape(-1, 3)
        inked = (pixels.min(axis=1) < 200).mean()  # not near-white: lines, text, grid
        colours = len(np.unique(pixels[::5], axis=0))
        assert inked > 0.01 and colours > 20, (chart["id"], inked, colours, len(visible))
    return charts


def _nan(values):
    return [np.nan if v is None else v for v in values]


def read_back(charts) -> list:
    return [{**t, "x": _nan(t["x"]), "y": _nan(t["y"])} for c in charts for t in c["data"]]


def test_demo_report_from_the_cli_renders_in_chromium_and_plots_the_tables(browser, folders, tmp_path):
    # the "done when": `xmargin report RUN --out report.html` on the demo's run
    result = CliRunner().invoke(main, ["report", str(folders["demo"]), "--out", str(tmp_path / "report.html")])
    assert result.exit_code == 0, result.output
    charts = open_report(browser, tmp_path / "report.html")
    assert [c["id"] for c in charts] == ["equity", "margin-ratio", "distance", "positions", "exposure",
                                        "funding-fees"]
    checked = assert_run_traces_match_tables(folders["demo"], read_back(charts))
    assert {("equity", None), ("book", None), ("events", "transfer"), ("distance", None)} <= checked


def test_compare_report_renders_in_chromium_with_the_divergence(browser, folders, tmp_path):
    charts = open_report(browser, report(folders["compare"], tmp_path / "compare.html"))
    note = json.loads((folders["compare"] / "comparison.json").read_text())["notes"][0]
    divergence = pl.Series([note["ts"]]).str.to_datetime(time_zone="UTC").dt.epoch("ms")[0]
    assert all(divergence in c["shapes"] for c in charts)
    for setup in ("isolated", "cross"):
        traces = [t for t in read_back(charts) if t["meta"]["setup"] == setup]
        checked = assert_run_traces_match_tables(folders["compare"] / setup, traces)
        assert (("events", "liquidation") in checked) == (setup == "isolated")


def test_sweep_report_renders_in_chromium(browser, tmp_path):
    frame = _sweep(tmp_path / "sweep", "metadata").filter(pl.col("status") == "ok")
    charts = {c["id"]: c for c in open_report(browser, report(tmp_path / "sweep"))}
    heat = {t["meta"]["figure"]: t for t in charts["sweep-heatmap"]["data"]}["liquidations"]
    assert heat["z"] == [[0, 0], [1, 2]] and heat["visible"] is False
    pnl = {t["meta"]["group"]["setup"]: t for t in charts["sweep-strategy.params.notional"]["data"]
           if t["meta"]["figure"] == "pnl"}
    for setup, line in pnl.items():
        rows = frame.filter(pl.col("setup") == setup).sort("strategy.params.notional")
        assert line["x"] == rows["strategy.params.notional"].to_list() and line["y"] == rows["pnl"].to_list()


def test_a_run_still_verifies_after_its_report_is_written_into_it(tmp_path):
    """`xmargin report RUN` writes RUN/report.html by default (README); `xmargin verify RUN` afterwards
    checks the run's own files and passes (it said 'report.html was not written by the run' and exited
    1). Any other file that the run did not write is still a mismatch."""
    config = load_config(ROOT / "examples/demo.toml", start="2024-09-05", end="2024-09-08", out=str(tmp_path))
    run = xmargin.run(config, run_id="demo").path
    assert CliRunner().invoke(main, ["report", str(run)]).exit_code == 0
    assert (run / "report.html").is_file()
    verified = CliRunner().invoke(main, ["verify", str(run)])
    assert verified.exit_code == 0, verified.output
    (run / "notes.txt").write_text("mine")
    verified = CliRunner().invoke(main, ["verify", str(run)])
    assert verified.exit_code == 1 and "notes.txt was not written by the run" in verified.output
