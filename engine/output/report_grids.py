"""Report pages for many runs at once: a sweep's results table and a capital search's answer.

Sweep folder (`xmargin sweep`): one Parquet table, one row per variant. Its parameters are the
list under "parameters" in the Parquet schema metadata key `xmargin` (JSON) or in `sweep.json`
beside it; without either, the columns named by a config key (`run.`, `strategy.`, `exchanges.`,
e.g. `strategy.params.notional`) plus `setup`, `margin_modes`, `scenario`, `stress` and
`collateral`. Every other numeric column is a figure. Rows whose `status` is "failed" are
counted and listed, not plotted.

Capital folder (`xmargin capital`): `capital.arrow` (or the "rows" of `capital.json`) with at
least `exchange`, `asset`, `required_collateral`; columns ending in `run_id` name the proof runs,
folders inside the capital folder (or paths), whose margin-ratio paths are drawn.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import polars as pl

from xmargin.errors import ReportError
from xmargin.output.html_page import page, table

NOT_FIGURES = {"status", "error", "variant", "variant_id", "id", "run_id", "path", "seed", "seconds",
               "run_seconds", "attempts"}
GRID_KEYS = ("setup", "margin_modes", "scenario", "stress", "collateral")
CONFIG_SECTIONS = ("run.", "strategy.", "exchanges.")
MAX_TABLE_ROWS = 200


# ------------------------------------------------------------------------------------------ sweep
def _results_file(folder: Path) -> Path:
    files = sorted(folder.glob("*.parquet"))
    named = [f for f in files if f.stem in ("results", "sweep")]
    if named:
        return named[0]
    if len(files) == 1:
        return files[0]
    raise ReportError(f"{folder}: {len(files)} Parquet files ({', '.join(f.name for f in files)}); expected one "
                      "results table (results.parquet).")


def _declared_parameters(file: Path) -> list | None:
    import pyarrow.parquet as parquet

    metadata = parquet.read_schema(file).metadata or {}
    if b"xmargin" in metadata:
        declared = json.loads(metadata[b"xmargin"]).get("parameters")
        if declared is not None:
            return list(declared)
    sidecar = file.parent / "sweep.json"
    if sidecar.is_file():
        declared = json.loads(sidecar.read_text()).get("parameters")
        if declared is not None:
            return [p if isinstance(p, str) else p.get("name") for p in declared]
    return None


def read_sweep(folder: Path) -> tuple[pl.DataFrame, list, list, pl.DataFrame, Path]:
    """(ok rows, parameter columns, figure columns, failed rows, results file) of a sweep folder."""
    file = _results_file(folder)
    frame = pl.read_parquet(file)
    parameters = _declared_parameters(file)
    if parameters is None:
        parameters = [c for c in frame.columns if c.startswith(CONFIG_SECTIONS) or c in GRID_KEYS]
    missing = [p for p in parameters if p not in frame.columns]
    if missing:
        raise ReportError(f"{file}: parameter columns {missing} are declared but not in the table; columns: "
                          f"{frame.columns}.")
    if not parameters:
        raise ReportError(f"{file}: no parameter columns (none declared under 'parameters' in the schema metadata "
                          "or sweep.json, and no column named by a config key such as strategy.params.x, nor "
                          "setup, scenario or collateral).")
    failed = frame.filter(pl.col("status") == "failed") if "status" in frame.columns else frame.clear()
    ok = frame.filter(pl.col("status") != "failed") if "status" in frame.columns else frame
    figures = [c for c, dtype in frame.schema.items()
               if c not in parameters and c not in NOT_FIGURES and (dtype.is_numeric() or dtype == pl.Boolean)]
    return ok, parameters, figures, failed, file


def _values(series: pl.Series):
    """A trace axis: numbers as float64, anything else as text."""
    if series.dtype.is_numeric() or series.dtype == pl.Boolean:
        values = series.cast(pl.Float64).to_numpy().astype(np.float64, copy=True)
        values[~np.isfinite(values)] = np.nan
        return values
    return [str(v) for v in series.to_list()]


def _chooser(figures: list, traces_per_figure: int = 1) -> list:
    """A dropdown that shows one figure's traces at a time."""
    buttons = []
    for n, figure in enumerate(figures):
        visible = [i // traces_per_figure == n for i in range(len(figures) * traces_per_figure)]
        buttons.append({"label": figure, "method": "update", "args": [{"visible": visible}]})
    return [{"buttons": buttons, "direction": "down", "x": 0.0, "xanchor": "left", "y": 1.18, "yanchor": "top",
             "showactive": True}]


def _base_layout(title: str, x_title: str, y_title: str) -> dict:
    return {"title": {"text": title, "x": 0.3, "font": {"size": 15}}, "height": 420,
            "margin": {"l": 70, "r": 20, "t": 70, "b": 50}, "xaxis": {"title": {"text": x_title}},
            "yaxis": {"title": {"text": y_title}}, "hovermode": "closest"}


MAX_GROUPS = 12


def sweep_figures(ok: pl.DataFrame, parameters: list, figures: list) -> dict:
    """Each figure against each parameter (a dropdown picks the figure; one line per combination of
    the other parameters, up to MAX_GROUPS, else markers only), and a heatmap per figure when the
    grid has exactly two parameters (mean where a cell holds several variants)."""
    out = {}
    for parameter in parameters:
        others = [p for p in parameters if p != parameter]
        groups = ok.select(others).unique(maintain_order=True).sort(others).rows() if others else [()]
        grouped = len(groups) <= MAX_GROUPS
        if not grouped:
            groups = [()]
        data = []
        for n, figure in enumerate(figures):
            for group in groups:
                rows = ok.filter(*[pl.col(p) == v for p, v in zip(others, group)]) if grouped and others else ok
                rows = rows.sort(parameter)
                label = ", ".join(f"{p}={v}" for p, v in zip(others, group)) if group else figure
                hover = [", ".join(f"{p}={row[p]}" for p in parameters)
                         for row in rows.select(parameters).iter_rows(named=True)]
                data.append({"type": "scatter", "mode": "lines+markers" if grouped else "markers", "name": label,
                             "x": _values(rows[parameter]), "y": _values(rows[figure]), "text": hover,
                             "visible": n == 0, "marker": {"size": 9},
                             "meta": {"table": "sweep", "parameter": parameter, "figure": figure,
                                      "group": dict(zip(others, group))}})
        layout = _base_layout(f"figure against {parameter}", parameter, "value of the chosen figure")
        layout["updatemenus"] = _chooser(figures, len(groups))
        out[f"sweep-{parameter}"] = {"data": data, "layout": layout}
    if len(parameters) == 2:
        first, second = parameters
        data = []
        for n, figure in enumerate(figures):
            cells = (ok.group_by(first, second).agg(pl.col(figure).cast(pl.Float64).mean(), pl.len().alias("n"))
                     .sort(first, second))
            xs, ys = cells[first].unique(maintain_order=True).sort(), cells[second].unique().sort()
            grid = np.full((ys.len(), xs.len()), np.nan)
            x_index = {v: i for i, v in enumerate(xs.to_list())}
            y_index = {v: i for i, v in enumerate(ys.to_list())}
            for a, b, value in cells.select(first, second, figure).iter_rows():
                grid[y_index[b], x_index[a]] = np.nan if value is None else value
            data.append({"type": "heatmap", "name": figure, "x": _values(xs), "y": _values(ys), "z": grid,
                         "visible": n == 0, "colorscale": "Viridis", "colorbar": {"title": {"text": figure}},
                         "meta": {"table": "sweep", "parameters": [first, second], "figure": figure,
                                  "cells": int(cells.height), "most_variants_in_a_cell": int(cells["n"].max())}})
        layout = _base_layout(f"heatmap: {second} against {first}", first, second)
        layout["xaxis"]["type"] = layout["yaxis"]["type"] = "category"
        layout["updatemenus"] = _chooser(figures)
        out["sweep-heatmap"] = {"data": data, "layout": layout}
    return out


def _frame_table(frame: pl.DataFrame, first: list) -> str:
    columns = [*first, *[c for c in frame.columns if c not in first]]
    rows = [str(i) for i in range(frame.height)]
    cells = {(str(i), c): v for i, record in enumerate(frame.select(columns).iter_rows(named=True))
             for c, v in record.items()}
    return table(rows, columns, cells)


def sweep_page(folder: Path) -> str:
    ok, parameters, figures, failed, file = read_sweep(folder)
    if not ok.height and failed.height:
        first = failed.row(0, named=True).get("error")
        raise ReportError(f"{file}: every variant failed ({failed.height}), nothing to plot; the first error: {first}")
    if not figures:
        raise ReportError(f"{file}: no numeric figure columns besides the parameters {parameters}.")
    shown = ok.head(MAX_TABLE_ROWS)
    notes = (f"{ok.height} variants plotted, {failed.height} failed; parameters: {', '.join(parameters)}; "
             f"{len(figures)} figures (pick one in each chart's menu).")
    sections = [("Variants", f"<p class=\"note\">{html.escape(notes)} Table: the first {shown.height} rows of "
                             f"{html.escape(file.name)}.</p>" + _frame_table(shown, parameters), []),
                ("Figures against parameters", "", [f"sweep-{p}" for p in parameters])]
    if len(parameters) == 2:
        sections.append(("Heatmap", "<p class=\"note\">One cell per pair of values; the menu picks the figure.</p>",
                         ["sweep-heatmap"]))
    if failed.height:
        errors = "".join(f"<li>{html.escape(', '.join(f'{p}={r[p]}' for p in parameters))}: "
                         f"{html.escape(str(r.get('error', '')))}</li>" for r in failed.head(50).iter_rows(named=True))
        sections.append(("Failed variants", f"<ul>{errors}</ul>", []))
    return page(f"xmargin sweep {folder.name}", [html.escape(str(file))], sections,
                sweep_figures(ok, parameters, figures))


# ------------------------------------------------------------------------------------------ capital
def read_capital(folder: Path) -> tuple[pl.DataFrame, dict]:
    """(rows, capital.json's other content) of a capital folder."""
    info = json.loads((folder / "capital.json").read_text()) if (folder / "capital.json").is_file() else {}
    if (folder / "capital.arrow").is_file():
        rows = pl.read_ipc(folder / "capital.arrow")
    else:
        records = info.get("rows") if isinstance(info, dict) else info
        rows = pl.DataFrame(records or [], infer_schema_length=None)
    missing = [c for c in ("exchange", "asset", "required_collateral") if c not in rows.columns]
    if missing:
        raise ReportError(f"{folder}: capital table lacks columns {missing}; it has {rows.columns}.")
    return rows, (info if isinstance(info, dict) else {})


def proof_runs(folder: Path, rows: pl.DataFrame) -> list[tuple[str, Path]]:
    """(role, folder) of the proof runs named in columns ending in `run_id` (role: the column name
    without it, e.g. proof_survives), folders inside `folder` or paths; each folder once."""
    found, seen = [], set()
    for column in [c for c in rows.columns if c.endswith("run_id")]:
        role = column[:-len("run_id")].rstrip("_") or column
        for value in rows[column].drop_nulls().unique(maintain_order=True).to_list():
            for candidate in (folder / str(value), Path(str(value)), folder / "runs" / str(value)):
                if (candidate / "manifest.json").is_file():
                    if candidate.resolve() not in seen:
                        seen.add(candidate.resolve())
                        found.append((role, candidate))
                    break
    return found


def capital_page(folder: Path) -> str:
    from xmargin.output.charts import margin_figure
    from xmargin.output.results import open_run

    rows, info = read_capital(folder)
    bars = [{"type": "bar", "name": asset, "x": part["exchange"].to_list(),
             "y": _values(part["required_collateral"]),
             "meta": {"table": "capital", "asset": asset, "column": "required_collateral"}}
            for (asset,), part in sorted(rows.group_by("asset", maintain_order=True), key=lambda i: i[0])]
    layout = _base_layout("Required collateral per exchange", "exchange", "amount in the collateral asset")
    layout["barmode"] = "group"
    figures = {"capital": {"data": bars, "layout": layout}}
    paths = proof_runs(folder, rows)
    if paths:
        merged = {"data": [], "layout": None}
        for role, path in paths:
            run = open_run(path, whole=True)
            figure = margin_figure(run, run.manifest.get("resolved", {}).get("warning_thresholds", []))
            merged["layout"] = merged["layout"] or figure["layout"]
            merged["data"].extend({**t, "name": f"{path.name}: {t['name']}", "legendgroup": path.name,
                                   "meta": {**t["meta"], "run": path.name, "role": role}} for t in figure["data"])
        merged["layout"] = {**merged["layout"], "title": {**merged["layout"]["title"],
                                                          "text": "Proof runs: margin ratio (1 = liquidation)"}}
        figures["proof-margin-ratio"] = merged
    notes = {k: v for k, v in info.items() if k != "rows" and not isinstance(v, (dict, list))}
    header = [html.escape(f"{k}: {v}") for k, v in notes.items()]
    sections = [("Capital per exchange", _frame_table(rows, ["exchange", "asset", "required_collateral"]),
                 ["capital"])]
    if paths:
        sections.append(("Proof runs", "<p class=\"note\">Margin-ratio path of each proof run: at the reported "
                                       "amounts it stays below 1; below them it reaches 1.</p>",
                         ["proof-margin-ratio"]))
    else:
        sections.append(("Proof runs", "<p class=\"note\">No proof run folder found (columns ending in run_id, "
                                       "folders inside this one).</p>", []))
    return page(f"xmargin capital {folder.name}", header, sections, figures)
