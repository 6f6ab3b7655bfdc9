"""Strategies for the sweep tests: `KillOnce` holds a book like `hold` but kills the worker process
it runs in (SIGKILL, as the out-of-memory killer would) the first time any variant of the sweep
reaches its first wake, and never in the test's own process."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from xmargin.strategies.hold import Hold


class KillOnce:
    def __init__(self, params: dict):
        params = dict(params)
        self.marker = Path(params.pop("kill_marker"))
        self.spare_pid = int(params.pop("spare_pid"))
        self.always = bool(params.pop("kill_always", False))
        self.hold = Hold(params)

    def wakes(self):
        return self.hold.wakes()

    def on_wake(self, view, wake):
        if os.getpid() != self.spare_pid and (self.always or not self.marker.exists()):
            self.marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return self.hold.on_wake(view, wake)


class FailIf:
    """`hold`, except that with `fail = true` it raises at its first wake (a strategy bug)."""

    def __init__(self, params: dict):
        params = dict(params)
        self.fail = bool(params.pop("fail"))
        self.hold = Hold(params)

    def wakes(self):
        return self.hold.wakes()

    def on_wake(self, view, wake):
        if self.fail:
            raise RuntimeError("the strategy broke on purpose")
        return self.hold.on_wake(view, wake)
