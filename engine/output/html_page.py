"""The HTML page of a report: the document around Plotly figures, and its tables.

One self-contained file: plotly.js is inlined from the `plotly` package (the optional extra
`xmargin[report]`), the figures' data sit in one JSON block (`<script id="xmargin-figures">`) and
each chart's `div` has its figure's id. Nothing is loaded from the network.
"""

from __future__ import annotations

import html
import math
from datetime import datetime
from pathlib import Path

from xmargin.errors import ReportError

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 24px auto; max-width: 1200px;
       color: #222; padding: 0 16px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; }
h3 { font-size: 14px; margin: 14px 0 4px; }
p.meta, p.note { color: #555; font-size: 13px; margin: 4px 0; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
th, td { border-bottom: 1px solid #eee; padding: 3px 10px; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; } thead th { border-bottom: 2px solid #ccc; }
div.chart { width: 100%; min-height: 380px; margin: 6px 0 18px; }
div.scroll { overflow-x: auto; }
"""

PERCENT_KEYS = ("headroom", "distance", "return", "cagr", "volatility", "fraction", "share", "time_under_water")


def _plotly():
    try:
        import plotly
        from plotly.io.json import to_json_plotly
        from plotly.offline import get_plotlyjs
    except ImportError as exc:
        raise ReportError("xmargin report needs Plotly: pip install 'xmargin[report]' (or pip install plotly).") \
            from exc
    return plotly.__version__, get_plotlyjs, to_json_plotly


# ------------------------------------------------------------------------------------------ formatting
def number(value, key: str = "") -> str:
    """A table cell: percentages for fractions (headroom, distances, returns), thousands separators."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if math.isinf(value):
            return "never" if "distance" in key else str(value)
        if any(part in key.rsplit(".", 1)[-1] for part in PERCENT_KEYS):
            return f"{value * 100:,.2f}%"
        return f"{value:,.2f}" if abs(value) >= 1 or value == 0 else f"{value:.4g}"
    return html.escape(str(value))


def flatten(values: dict, prefix: str = "") -> dict:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists are shown as text."""
    out = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, list):
            out[name] = ", ".join(str(v) for v in value)
        else:
            out[name] = value
    return out


def table(rows: list[str], columns: list[str], cells: dict) -> str:
    """An HTML table: `cells[(row, column)]` holds the raw value (formatted by `number`)."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["", *columns])
    body = []
    for row in rows:
        values = "".join(f"<td>{number(cells.get((row, c)), row)}</td>" for c in columns)
        body.append(f"<tr><td>{html.escape(row)}</td>{values}</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def summary_table(summary: dict, extra: dict | None = None) -> str:
    """Every figure of summary.json, one row per figure, one column per exchange and the total;
    `extra` adds rows to the total column (e.g. the book's performance statistics)."""
    columns = [*summary.get("exchanges", {}), "total"]
    cells, rows = {}, []
    sources = {**{e: flatten(v) for e, v in summary.get("exchanges", {}).items()},
               "total": {**flatten(summary.get("total", {})), **(extra or {})}}
    for column, values in sources.items():
        for key, value in values.items():
            if key not in rows:
                rows.append(key)
            cells[(key, column)] = value
    return table(rows, columns, cells)


def records_table(records: list[dict], label: str) -> str:
    """A list of flat records (e.g. summary.json's rejections), one table row each."""
    columns = []
    for record in records:
        columns += [k for k in record if k not in columns]
    rows = [f"{label} {n + 1}" for n in range(len(records))]
    return table(rows, columns, {(r, k): v for r, record in zip(rows, records) for k, v in record.items()})


def notices(summary: dict) -> str:
    """What a run summary says beyond its numbers: warnings (e.g. a one-legged hedge), rejected
    orders by reason, exposure per underlying; empty where the summary has none."""
    parts = []
    if summary.get("warnings"):
        items = "".join(f"<li>{html.escape(str(w))}</li>" for w in summary["warnings"])
        parts.append(f"<h3>Warnings</h3><ul>{items}</ul>")
    if summary.get("rejections"):
        parts.append("<h3>Rejected orders</h3>" + records_table(list(summary["rejections"]), "rejection"))
    exposure = summary.get("exposure")
    if isinstance(exposure, dict) and exposure:
        values = {name: flatten(row) if isinstance(row, dict) else {"value": row} for name, row in exposure.items()}
        keys = [k for row in values.values() for k in row]
        rows = list(dict.fromkeys(keys))
        parts.append("<h3>Exposure per underlying</h3>"
                     + table(rows, list(values), {(k, n): row.get(k) for n, row in values.items() for k in rows}))
    return "".join(parts)


# ------------------------------------------------------------------------------------------ page
def page(title: str, subtitle: list[str], sections: list[tuple[str, str, list[str]]], figures: dict) -> str:
    """The whole HTML document: header, then per section its title, HTML and chart divs."""
    version, get_plotlyjs, to_json = _plotly()
    body = [f"<h1>{html.escape(title)}</h1>"] + [f'<p class="meta">{line}</p>' for line in subtitle]
    for heading, text, ids in sections:
        body.append(f"<h2>{html.escape(heading)}</h2>{text}")
        body.extend(f'<div class="chart" id="{html.escape(i)}"></div>' for i in ids)
    payload = to_json(figures).replace("</", "<\\/")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<meta name="generator" content="xmargin report, plotly.js from plotly {version}">
<style>{STYLE}</style>
<script>{get_plotlyjs()}</script>
</head><body>
{''.join(body)}
<p class="note">Made by xmargin report on {datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}.
Charts: Plotly; long series keep the first, last, lowest and highest point of every bucket.</p>
<script type="application/json" id="xmargin-figures">{payload}</script>
<script>
(function () {{
  var figures = JSON.parse(document.getElementById("xmargin-figures").textContent);
  var drawn = Object.keys(figures).map(function (id) {{
    var figure = figures[id];
    return Plotly.newPlot(id, figure.data, figure.layout, {{responsive: true, displaylogo: false}});
  }});
  Promise.all(drawn).then(function () {{ window.xmarginReady = true; }},
                          function (error) {{ console.error("xmargin report: " + error); }});
}})();
</script>
</body></html>
"""


def write(text: str, out: Path) -> Path:
    """Write atomically: `<out>.partial`, then rename."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    try:
        partial.write_text(text, encoding="utf-8")
        partial.replace(out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return out
