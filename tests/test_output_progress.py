"""The progress line of a long `xmargin run` (`xmargin._progress.ProgressLine`: the loop's, then the
output phase's, which says what it is writing: a four-year book wrote for 3-4 s in silence after
the loop) shows once the work has lasted a second, at most once a second, and is cleared at the
end. A short phase prints nothing."""

from __future__ import annotations

from xmargin import _progress


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_the_line_appears_after_a_second_at_most_once_a_second_and_is_cleared(monkeypatch, capsys):
    clock = Clock()
    monkeypatch.setattr(_progress.time, "monotonic", clock)
    shown = _progress.ProgressLine(True)
    shown.say("writing outputs: valuation 0% of 10 snapshots")  # at once: nothing
    clock.now += 1.5
    shown.say("writing outputs: valuation 40% of 10 snapshots")
    clock.now += 0.5
    shown.say("writing outputs: valuation 80% of 10 snapshots")  # half a second later: not shown
    clock.now += 1.0
    shown.say("writing outputs: summary")
    shown.done()
    err = capsys.readouterr().err
    assert [part.strip() for part in err.split("\r") if part.strip()] == [
        "writing outputs: valuation 40% of 10 snapshots", "writing outputs: summary"]
    assert err.endswith("\r" + " " * 70 + "\r")


def test_no_line_without_progress_or_for_a_short_phase(monkeypatch, capsys):
    clock = Clock()
    monkeypatch.setattr(_progress.time, "monotonic", clock)
    quiet, short = _progress.ProgressLine(False), _progress.ProgressLine(True)
    clock.now += 5.0
    quiet.say("summary")
    quiet.done()
    short.started = clock.now - 0.5  # a phase of half a second so far
    short.say("summary")
    short.done()
    assert capsys.readouterr().err == ""
