"""Variants of one config: run each as a normal run folder, on an executor, and collect one outcome
per variant. `compare`, `stress` and `sweep` all run on `run_variants`.

A variant is a validated config plus shocks (xmargin.analysis.stress) and the name of its run
folder. The worker side (`run_variant`) reads the dataset from `config.dataset` by path; only the
config and the variant's small values travel to a worker, never price arrays. A variant's error
becomes its outcome (status "failed" and the message) unless the caller asks for errors to raise.

Executors (`map_unordered(function, tasks)` yields `(index, result, attempts)` as tasks finish):
  SerialExecutor  in this process, in order (compare, stress, `--workers 1`)
  LocalPool       a process pool (xmargin.analysis.executors)
  DaskExecutor    a Dask distributed cluster (xmargin.analysis.executors, extra `xmargin[dask]`)
An executor yields a `WorkerLost` instead of a result when the process running a task died more
often than it retries; the task becomes a failed outcome.

Keep policy for run folders: "all" keeps every run folder, "failed" only those of failed
variants (a run that crashed leaves `<name>.failed/` with its error and config), "none" none.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
import traceback
from pathlib import Path
from typing import Callable

import attrs

from xmargin.config import RunConfig
from xmargin.errors import ConfigError, RunError

KEEP = ("none", "failed", "all")


@attrs.frozen
class Variant:
    """One config of a family: `name` is its run folder under the variants' folder; `parameters`
    what sets it apart (columns of a results table); `shocks` are injected into its feed."""

    name: str
    config: RunConfig
    shocks: tuple = ()
    parameters: dict = attrs.field(factory=dict)
    extra_manifest: dict = attrs.field(factory=dict)


@attrs.frozen
class Outcome:
    """What running one variant gave: status "ok" or "failed"; `path` is the kept run folder (or
    `<name>.failed/` of a run that crashed; None when not kept); `summary` the run summary; `figures` what the caller's `measure` returned;
    `seconds` the wall time in the worker; `attempts` how many times a worker started it."""

    name: str
    status: str
    error: str = ""
    path: Path | None = None
    summary: dict | None = attrs.field(default=None, repr=False)
    figures: dict = attrs.field(factory=dict, repr=False)
    seconds: float = 0.0
    attempts: int = 1


@attrs.frozen
class WorkerLost:
    """An executor's report that the process running a task died as often as it retries."""

    message: str


@contextlib.contextmanager
def results_folder(folder: Path):
    """`folder` made for one command's results (a stress or compare id); when the command fails, it
    goes again with whatever it holds (the runs finished before the failure): nothing half-written
    is left looking like a result. An existing folder (an id given again, or another command's) is
    refused before anything runs: results are never mixed into it, and it is left as it is."""
    if folder.exists():
        raise RunError(f"--id {folder.name}: {folder} already exists; choose another --id or remove it.")
    folder.mkdir(parents=True)
    try:
        yield folder
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def run_variant(variant: Variant, folder: Path, keep: str = "all", measure: Callable | None = None,
                progress: bool = False, catch: bool = True) -> Outcome:
    """Run one variant into `<folder>/<name>/` (worker side). `measure(completed) -> dict` runs
    while the run folder exists (with the folder and the summary: the in-memory run is dropped once
    written, `execute(keep_result=False)`). With `catch` an exception becomes a failed outcome."""
    from xmargin.sim.runner import execute

    started = time.perf_counter()
    folder = Path(folder)
    failed = folder / f"{variant.name}.failed"
    completed, kept = None, None
    try:
        completed = execute(variant.config, out=folder, run_id=variant.name, progress=progress,
                            shocks=tuple(variant.shocks), extra_manifest=variant.extra_manifest or None,
                            keep_result=False)
        figures = measure(completed) if measure is not None else {}
        status, error = "ok", ""
    except Exception as exc:
        if not catch:
            raise
        status, error, figures = "failed", f"{type(exc).__name__}: {exc}", {}
        if keep != "none" and completed is None:
            _record_failure(failed, variant, traceback.format_exc())
            kept = failed
    if completed is not None:
        if keep == "all" or (keep == "failed" and status == "failed"):
            kept = completed.path
        else:
            shutil.rmtree(completed.path, ignore_errors=True)
    return Outcome(name=variant.name, status=status, error=error, path=kept,
                   summary=completed.summary if completed is not None else None, figures=figures,
                   seconds=time.perf_counter() - started)


def _record_failure(path: Path, variant: Variant, trace: str) -> None:
    """`<name>.failed/`: the traceback and the config that failed, to reproduce it alone."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "error.txt").write_text(trace)
    (path / "config.json").write_text(json.dumps({"config": variant.config.raw, "parameters": variant.parameters,
                                                  "shocks": [s.describe() for s in variant.shocks]},
                                                 indent=2, default=str) + "\n")


class SerialExecutor:
    """Runs the tasks one after the other in this process."""

    workers = 1

    def map_unordered(self, function, tasks):
        for index, task in enumerate(tasks):
            yield index, function(*task), 1


def run_variants(variants, folder, executor=None, keep: str = "all", measure: Callable | None = None,
                 errors: str = "record", progress: bool = False, on_outcome: Callable | None = None) -> list[Outcome]:
    """Run every variant (run folders under `folder`) and return their outcomes in variant order.

    `executor`: SerialExecutor (default), LocalPool or DaskExecutor. `errors="raise"` re-raises a
    variant's exception (serial only: compare and stress keep their behaviour). `on_outcome(index,
    outcome)` is called as each finishes (journals, progress bars); `progress` shows each run's own
    progress line (serial only)."""
    if keep not in KEEP:
        raise ConfigError(f"keep = {keep!r}: allowed {list(KEEP)}.")
    if errors not in ("record", "raise"):
        raise ValueError(f"errors = {errors!r}: 'record' or 'raise'")
    executor = executor or SerialExecutor()
    serial = isinstance(executor, SerialExecutor)
    if errors == "raise" and not serial:
        raise ValueError("errors='raise' needs the serial executor")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    variants = list(variants)
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ConfigError(f"variants: run folder names repeat ({sorted(n for n in set(names) if names.count(n) > 1)}).")
    tasks = [(v, folder, keep, measure, progress and serial, errors == "record") for v in variants]
    outcomes: list[Outcome | None] = [None] * len(variants)
    results = executor.map_unordered(run_variant, tasks)
    try:
        for index, result, attempts in results:
            if isinstance(result, WorkerLost):
                result = Outcome(name=variants[index].name, status="failed", error=result.message, attempts=attempts)
            elif attempts != result.attempts:
                result = attrs.evolve(result, attempts=attempts)
            outcomes[index] = result
            if on_outcome is not None:
                on_outcome(index, result)
    finally:
        results.close()  # stops the executor's workers at once on an interrupt or error
    return outcomes
