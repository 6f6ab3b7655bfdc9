"""Errors raised at the edges (data, config, rules, CLI).

Every message names where the problem is (file, row or column, key), what is wrong and how to
fix it. Inside a run, a broken command is never an exception: it becomes a rejection event.
"""


class XmarginError(Exception):
    """Base class: a user-facing error whose message is meant to be printed as is."""


class DatasetError(XmarginError):
    """A dataset folder, its `dataset.toml` or one of its tables is unusable."""


class ConfigError(XmarginError):
    """A run config (TOML or command-line override) names a bad key or value."""


class RulesError(XmarginError):
    """An exchange rule file is malformed or incomplete."""


class RunError(XmarginError):
    """A run folder is missing, incomplete or inconsistent."""


class StrategyError(XmarginError):
    """A strategy raised, or returned something that is not a command, during a run. The message
    names the strategy, the wake time and the offending value; the user's exception is chained."""


def mark_strategy_failure(exc: BaseException, message: str) -> str:
    """Record on a strategy's own exception where it came from (the CLI prints its traceback and
    `message`, exit 1); returns `message` for `add_note`."""
    exc.xmargin_strategy_failure = message
    return f"xmargin: {message}"


def strategy_failure(exc: BaseException) -> str | None:
    """The message `mark_strategy_failure` recorded on `exc`, or None for any other exception."""
    return getattr(exc, "xmargin_strategy_failure", None)


class ReportError(XmarginError):
    """A report cannot be made: the folder is not a run, comparison, sweep or capital result, or
    the plotting extra is missing."""
