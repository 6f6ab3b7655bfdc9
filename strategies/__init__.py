"""Built-in strategy plugins. Each is a starting point for your own: see docs/strategies.md."""
