"""`xmargin report`: one self-contained HTML file for a run, a comparison, a sweep or a capital search.

The charts are Plotly figures (plotly.js inlined from the `plotly` package, the optional extra
`xmargin[report]`), drawn from the folder's tables by `xmargin.output.charts`; the page loads
nothing from the network. The figures' data sit in one JSON block (`<script id="xmargin-figures">`)
and every chart's `div` has the figure's id, so a reader can check each plotted point against the
tables. The file is written next to the input (`<folder>/report.html`) unless `out` says where,
through a `.partial` file renamed when complete.
"""

from __future__ import annotations

import html
import json
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pyarrow as pa

from xmargin.errors import ReportError
from xmargin.output.html_page import notices, page, summary_table, table, write


# ------------------------------------------------------------------------------------------ run
def _run_header(run) -> list[str]:
    summary, resolved = run.summary, run.manifest.get("resolved", {})
    modes = ", ".join(f"{e}: {m}" for e, m in resolved.get("margin_modes", {}).items())
    rules = ", ".join(f"{e}: {r['name']} (as of {r['as_of']})" for e, r in resolved.get("rules", {}).items())
    return [html.escape(f"strategy {summary.get('strategy')}, {summary.get('start')} -> {summary.get('end')}, "
                        f"{summary.get('bars', 0):,} bars, {summary.get('events', 0):,} events, dataset "
                        f"{resolved.get('dataset')}"),
            html.escape(f"margin modes {modes}; rules {rules}; warning thresholds "
                        f"{resolved.get('warning_thresholds')}; intrabar {resolved.get('intrabar')}"),
            html.escape(summary.get("money_note", ""))]


REPORT_FILE = "report.html"  # the report's default name, in the folder it describes (not one of a run's results)

SECTIONS = [
    ("Equity", "Account equity per exchange in USD (balances at their price, isolated margin and unrealised "
     "PnL) at every snapshot, and the whole book (every exchange plus money in flight) at the sample times. "
     "Markers: liquidations, margin warnings, rejected orders and transfers.", ["equity"]),
    ("Margin ratio", "Maintenance margin / margin balance per exchange and collateral pool (and per isolated "
     "position); dashed lines: the warning thresholds and liquidation at 1.", ["margin-ratio"]),
    ("Distance to liquidation", "The smallest adverse move of every underlying together (as a fraction of "
     "price) that would liquidate the unit (solid) or reach the first warning (dotted); gaps: no position.",
     ["distance"]),
    ("Positions and net exposure", "Signed USD notional per derivative position (long > 0), and the net exposure "
     "per underlying over every exchange, coin balances included: a hedged book stays near 0.",
     ["positions", "exposure"]),
    ("Funding and fees", "Cumulative funding received (> 0) or paid (< 0), trading and liquidation fees and "
     "withdrawal fees, per exchange in the flow's asset.", ["funding-fees"]),
]


def book_statistics(run) -> dict:
    """The whole book's flow-adjusted figures of a run whose summary.json predates them (written
    before the summary had `statistics`), by the summary's own definitions
    (xmargin.analysis.performance), as `book.<figure>` rows."""
    from xmargin.analysis.performance import book, figures
    from xmargin.analysis.summary import account_equity, flow_adjusted_equity

    collateral = run.collateral.collect()
    equity = account_equity(collateral, run.positions.collect())
    whole = figures(book(flow_adjusted_equity(run.events.collect(), collateral, equity)),
                    run.summary.get("total", {}).get("deposits", 0.0))
    out = {"book.max_drawdown": whole["max_drawdown"],
           "book.collateral_consumed": whole["collateral_consumed"]["amount"],
           "book.hours_under_water": whole["drawdown"]["hours_under_water"],
           "book.longest_under_water_hours": whole["drawdown"]["longest_under_water_hours"]}
    out.update({f"book.{k}": v for k, v in whole["statistics"].items()})
    return out


def run_page(path: Path) -> str:
    from xmargin.output.charts import run_figures
    from xmargin.output.results import open_run

    run = open_run(path, whole=True)
    figures, _ = run_figures(run)
    total = run.summary.get("total", {})
    if "statistics" in total:  # the run summary has its own performance statistics: show those only
        note, statistics = "From summary.json.", {}
    else:
        note = ("From summary.json; the <code>book.*</code> rows (the summary's flow-adjusted figures, which this "
                "older summary lacks) are computed here from the run's tables as <code>xmargin run</code> does now.")
        statistics = book_statistics(run)
    summary = f'<p class="note">{note}</p>' + summary_table(run.summary, statistics) + notices(run.summary)
    sections = [("Summary", summary, []), *[(title, f'<p class="note">{note}</p>', ids)
                                            for title, note, ids in SECTIONS if set(ids) <= set(figures)]]
    return page(f"xmargin run {run.summary.get('run_id', path.name)}", _run_header(run), sections, figures)


# ------------------------------------------------------------------------------------------ compare
def _ms(text: str) -> float:
    """A time as written in comparison.json, as UTC milliseconds (a time without offset is UTC)."""
    moment = datetime.fromisoformat(str(text).replace(" ", "T"))
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp() * 1000.0


def _run_path(folder: Path, recorded: str) -> Path:
    """A set-up's run folder: as recorded, else by its name inside the comparison folder."""
    path = Path(recorded)
    return path if (path / "manifest.json").is_file() else folder / path.name


def compare_page(folder: Path) -> str:
    from xmargin.output.charts import run_figures
    from xmargin.output.results import open_run

    data = json.loads((folder / "comparison.json").read_text())
    rows, notes = (data.get("rows"), data.get("notes", [])) if isinstance(data, dict) else (None, None)
    if not rows or not isinstance(rows, list) or not isinstance(notes, list) or not all(
            isinstance(r, dict) and {"setup", "path"} <= set(r) for r in rows):
        raise ReportError(f"{folder / 'comparison.json'}: no set-up rows (a list of objects with setup and path "
                          "under \"rows\"); run `xmargin compare` again.")
    setups = [r["setup"] for r in rows]
    keys = [k for k in rows[0] if k not in ("setup", "path", "divergence")]
    side = table(keys, setups, {(k, r["setup"]): r.get(k) for r in rows for k in keys})
    merged: dict = {}
    for index, row in enumerate(rows):
        run = open_run(_run_path(folder, row["path"]), whole=True)
        figures, _ = run_figures(run)
        dash = ["solid", "dash", "dot", "dashdot", "longdash"][index % 5]
        for key, figure in figures.items():
            target = merged.setdefault(key, {"data": [], "layout": figure["layout"]})
            for trace in figure["data"]:
                trace = {**trace, "name": f"{row['setup']}: {trace['name']}", "legendgroup": row["setup"],
                         "meta": {**trace["meta"], "setup": row["setup"]}}
                if trace.get("mode") == "lines":
                    trace["line"] = {**trace.get("line", {}), "dash": dash}
                target["data"].append(trace)
    moments = [n for n in notes if n.get("ts")]
    for figure in merged.values():
        shapes = list(figure["layout"].get("shapes", []))
        annotations = list(figure["layout"].get("annotations", []))
        for note in moments:
            x = _ms(note["ts"])
            shapes.append({"type": "line", "xref": "x", "x0": x, "x1": x, "yref": "paper", "y0": 0, "y1": 1,
                           "line": {"color": "#d62728", "width": 1}})
            annotations.append({"xref": "x", "x": x, "yref": "paper", "y": 1, "yanchor": "bottom",
                                "text": f"{note['b']} diverges", "showarrow": False,
                                "font": {"size": 10, "color": "#d62728"}})
        figure["layout"] = {**figure["layout"], "shapes": shapes, "annotations": annotations,
                            "title": {**figure["layout"]["title"],
                                      "text": figure["layout"]["title"]["text"] + " (per set-up)"}}
    divergence = "".join(f"<li>{html.escape(n.get('text', ''))}</li>" for n in notes)
    sections = [("Set-ups side by side", side, []),
                ("First divergence", f"<p class=\"note\">Where each set-up's event log first differs from "
                                     f"{html.escape(setups[0])}'s, and why (red line on the charts).</p>"
                                     f"<ul>{divergence}</ul>", []),
                *[(title, f'<p class="note">{note} One line style per set-up.</p>', ids)
                  for title, note, ids in SECTIONS if set(ids) <= set(merged)]]
    return page(f"xmargin comparison {data.get('id', folder.name)}",
                [html.escape(f"{len(rows)} set-ups: {', '.join(setups)}")], sections, merged)


# ------------------------------------------------------------------------------------------ API
UNREADABLE = (json.JSONDecodeError, UnicodeDecodeError, pl.exceptions.PolarsError, pa.ArrowException)


def kind_of(path: Path) -> str:
    """run | compare | capital | sweep, from the files in the folder."""
    if not path.is_dir():
        raise ReportError(f"{path}: not a folder; give a run, comparison, sweep or capital folder.")
    if (path / "comparison.json").is_file():
        return "compare"
    if (path / "capital.json").is_file() or (path / "capital.arrow").is_file():
        return "capital"
    if (path / "manifest.json").is_file():
        return "run"
    if any(path.glob("*.parquet")):
        return "sweep"
    if (path / "sweep.json").is_file():  # planned, interrupted before its table was written
        raise ReportError(f"{path}: an unfinished sweep (sweep.json, no sweep.parquet yet); finish it with the same "
                          "`xmargin sweep ... --out DIR --resume`, then report it.")
    raise ReportError(f"{path}: no manifest.json (run), comparison.json (compare), capital.json/capital.arrow "
                      "(capital) or results Parquet table (sweep); nothing to report.")


def report(path, out=None) -> Path:
    """Write the HTML report of a run, comparison, sweep or capital folder; returns its path
    (default `<folder>/report.html`)."""
    from xmargin.output.report_grids import capital_page, sweep_page

    path = Path(path)
    kind = kind_of(path)
    build = {"run": run_page, "compare": compare_page, "sweep": sweep_page, "capital": capital_page}[kind]
    try:
        text = build(path)
    except UNREADABLE as exc:  # a file cut short or not what its name says: name the folder, no traceback
        raise ReportError(f"{path}: a file of this {kind} folder cannot be read ({type(exc).__name__}: {exc}); "
                          "it is damaged or was not written by xmargin: run the command that made it again.") from None
    return write(text, Path(out) if out else path / REPORT_FILE)

