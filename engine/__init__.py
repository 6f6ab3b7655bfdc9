"""xmargin: event-sourced backtesting of crypto-derivatives hedges across exchange collateral silos.

The public API (everything else is internal and may change):

    import xmargin
    config = xmargin.load_config("examples/demo.toml")
    done = xmargin.run(config)                 # writes runs/<run-id>/, returns path and summary
    need = xmargin.capital(config)             # least collateral per exchange, proven by re-runs
    run = xmargin.open_run(done.path)          # every table as a polars LazyFrame
    run.equity.collect()
    xmargin.report(done.path)                  # runs/<run-id>/report.html (needs xmargin[report])

Strategies implement `wakes(view) -> Wakes` and `on_wake(view, wake) -> commands`; see
docs/strategies.md. `xmargin.testing.FakeView` unit-tests a strategy without the engine.
"""

if __name__ != "xmargin":  # pragma: no cover - guard against importing the repo folder by its own name
    raise ImportError(
        "the folder engine/ is the package `xmargin`: install it (`pip install -e .` or `make test`) "
        "and `import xmargin`, not `import engine`."
    )

from typing import TYPE_CHECKING

from xmargin._version import __version__

# The public names are imported when first used (PEP 562): `xmargin run` and `import xmargin.x`
# then load only the modules they need, not every command's (capital, sweep, report, ...).
_LAZY = {
    "capital": "xmargin.analysis.capital", "compare": "xmargin.analysis.compare", "stress": "xmargin.analysis.stress",
    "Sweep": "xmargin.analysis.sweep", "open_sweep": "xmargin.analysis.sweep", "sweep": "xmargin.analysis.sweep",
    "RunConfig": "xmargin.config", "load_config": "xmargin.config", "validate_dataset": "xmargin.dataset.validate",
    "ConfigError": "xmargin.errors", "DatasetError": "xmargin.errors", "RulesError": "xmargin.errors",
    "RunError": "xmargin.errors", "XmarginError": "xmargin.errors",
    **dict.fromkeys(("AdjustIsolatedMargin", "CancelOrder", "PlaceOrder", "SetLeverage", "SetMarginMode", "Transfer"),
                    "xmargin.ledger.commands"),
    "report": "xmargin.output.report", "Run": "xmargin.output.results", "list_runs": "xmargin.output.results",
    "open_run": "xmargin.output.results", "verify_run": "xmargin.output.verify", "Completed": "xmargin.sim.runner",
    "run": "xmargin.sim.runner", "View": "xmargin.sim.strategy", "Wake": "xmargin.sim.strategy",
    "Wakes": "xmargin.sim.strategy",
}
_RENAMED = {"run": "execute"}  # public name -> the name in its module

if TYPE_CHECKING:  # the same names, for type checkers and readers
    from xmargin.analysis.capital import capital
    from xmargin.analysis.compare import compare
    from xmargin.analysis.stress import stress
    from xmargin.analysis.sweep import Sweep, open_sweep, sweep
    from xmargin.config import RunConfig, load_config
    from xmargin.dataset.validate import validate_dataset
    from xmargin.errors import ConfigError, DatasetError, RulesError, RunError, XmarginError
    from xmargin.ledger.commands import AdjustIsolatedMargin, CancelOrder, PlaceOrder, SetLeverage, SetMarginMode, Transfer
    from xmargin.output.report import report
    from xmargin.output.results import Run, list_runs, open_run
    from xmargin.output.verify import verify_run
    from xmargin.sim.runner import Completed, execute as run
    from xmargin.sim.strategy import View, Wake, Wakes


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'xmargin' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), _RENAMED.get(name, name))
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "AdjustIsolatedMargin", "CancelOrder", "Completed", "ConfigError", "DatasetError", "PlaceOrder", "RulesError",
    "Run", "RunConfig", "RunError", "SetLeverage", "SetMarginMode", "Sweep", "Transfer", "View", "Wake", "Wakes",
    "XmarginError", "__version__", "capital", "compare", "list_runs", "load_config", "open_run", "open_sweep",
    "report", "run", "stress", "sweep", "validate_dataset", "verify_run",
]
