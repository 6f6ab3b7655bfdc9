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

from xmargin._version import __version__
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

__all__ = [
    "AdjustIsolatedMargin", "CancelOrder", "Completed", "ConfigError", "DatasetError", "PlaceOrder", "RulesError",
    "Run", "RunConfig", "RunError", "SetLeverage", "SetMarginMode", "Sweep", "Transfer", "View", "Wake", "Wakes",
    "XmarginError", "__version__", "capital", "compare", "list_runs", "load_config", "open_run", "open_sweep",
    "report", "run", "stress", "sweep", "validate_dataset", "verify_run",
]
