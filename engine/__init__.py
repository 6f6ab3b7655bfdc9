"""xmargin: event-sourced backtesting of crypto-derivatives hedges across exchange silos."""

__version__ = "0.1.0"
