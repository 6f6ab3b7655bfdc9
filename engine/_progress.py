"""The progress line of a long command on stderr, rewritten in place.

Shown at most once a second and only once the work has lasted a second (a short run prints
nothing); `done` clears it so that what follows starts on a clean line."""

from __future__ import annotations

import sys
import time

_WIDTH = 70  # characters a line may take (what `done` blanks)


class ProgressLine:
    def __init__(self, enabled: bool):
        self.enabled, self.started, self.last, self.shown = enabled, time.monotonic(), 0.0, False

    def due(self) -> bool:
        """Whether `say` would print now (so that a caller in a loop formats its text only then)."""
        if not self.enabled:
            return False
        now = time.monotonic()
        return now - self.started > 1.0 and now - self.last > 1.0

    def say(self, text: str) -> None:
        if self.due():
            self.last, self.shown = time.monotonic(), True
            print(f"\r  {text:<{_WIDTH - 2}}"[:_WIDTH + 1], end="", file=sys.stderr, flush=True)

    def done(self) -> None:
        if self.shown:
            print("\r" + " " * _WIDTH + "\r", end="", file=sys.stderr, flush=True)
