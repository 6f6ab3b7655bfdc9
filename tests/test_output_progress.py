"""The output phase of a long `xmargin run` says what it is writing (the run's own progress line
stops at the end of the loop; a four-year book then wrote for 3-4 s in silence), once it has lasted
a second, at most once a second, and clears its line at the end. A short phase prints nothing."""

from __future__ import annotations

from xmargin.output import writer


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_the_line_appears_after_a_second_at_most_once_a_second_and_is_cleared(monkeypatch, capsys):
    clock = Clock()
    monkeypatch.setattr(writer.time, "monotonic", clock)
    shown = writer._Progress(True)
    shown.say("valuation 0% of 10 snapshots")  # at once: nothing
    clock.now += 1.5
    shown.say("valuation 40% of 10 snapshots")
    clock.now += 0.5
    shown.say("valuation 80% of 10 snapshots")  # half a second later: not shown
    clock.now += 1.0
    shown.say("summary")
    shown.done()
    err = capsys.readouterr().err
    assert [part.strip() for part in err.split("\r") if part.strip()] == [
        "writing outputs: valuation 40% of 10 snapshots", "writing outputs: summary"]
    assert err.endswith("\r" + " " * 70 + "\r")


def test_no_line_without_progress_or_for_a_short_phase(monkeypatch, capsys):
    clock = Clock()
    monkeypatch.setattr(writer.time, "monotonic", clock)
    quiet, short = writer._Progress(False), writer._Progress(True)
    clock.now += 5.0
    quiet.say("summary")
    quiet.done()
    short.started = clock.now - 0.5  # a phase of half a second so far
    short.say("summary")
    short.done()
    assert capsys.readouterr().err == ""
