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


def run_page(path: Path) -> str:
    from xmargin.output.charts import performance, run_figures
    from xmargin.output.results import open_run

    run = open_run(path)
    figures, book = run_figures(run)
    total = run.summary.get("total", {})
    if "statistics" in total:  # the run summary has its own performance statistics: show those only
        note, statistics = "From summary.json.", {}
    else:
        note = ("From summary.json; the <code>book.*</code> rows are computed here from the whole book's equity at "
                "the sample times (risk-free rate 0, annualised).")
        statistics = {f"book.{k}": (None if v is None else float(v))
                      for k, v in performance(book, total.get("deposits", 0.0)).items()}
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
    rows, notes = data.get("rows", []), data.get("notes", [])
    if not rows:
        raise ReportError(f"{folder / 'comparison.json'}: no set-up rows; run `xmargin compare` again.")
    setups = [r["setup"] for r in rows]
    keys = [k for k in rows[0] if k not in ("setup", "path", "divergence")]
    side = table(keys, setups, {(k, r["setup"]): r.get(k) for r in rows for k in keys})
    merged: dict = {}
    for index, row in enumerate(rows):
        run = open_run(_run_path(folder, row["path"]))
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
    raise ReportError(f"{path}: no manifest.json (run), comparison.json (compare), capital.json/capital.arrow "
                      "(capital) or results Parquet table (sweep); nothing to report.")


def report(path, out=None) -> Path:
    """Write the HTML report of a run, comparison, sweep or capital folder; returns its path
    (default `<folder>/report.html`)."""
    from xmargin.output.report_grids import capital_page, sweep_page

    path = Path(path)
    kind = kind_of(path)
    build = {"run": run_page, "compare": compare_page, "sweep": sweep_page, "capital": capital_page}[kind]
    text = build(path)
    return write(text, Path(out) if out else path / "report.html")

