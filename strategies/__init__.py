"""Built-in strategy plugins (`xmargin.strategies`). Each is a starting point for your own: see docs/strategies.md."""

if __name__ != "xmargin.strategies":  # pragma: no cover - the repo folder is never importable as `strategies`
    raise ImportError(
        "the folder strategies/ is the package `xmargin.strategies`: install xmargin and import "
        "`xmargin.strategies`; a top-level `strategies` package is the user's own."
    )
