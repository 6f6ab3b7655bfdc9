"""A real headless Chromium for the report tests, driven over the DevTools protocol without any
Python dependency: `--remote-debugging-pipe` speaks the protocol's JSON messages, each ended by a
NUL byte, on the browser's file descriptors 3 (commands in) and 4 (replies and events out).

`chromium_binary()` finds Debian's `chromium`, installs it with apt-get when missing and allowed
(root, apt-get present), else returns the reason it cannot. `png_pixels` decodes the browser's
PNG screenshots (8-bit RGB/RGBA, the only kind Chromium writes) with zlib and numpy.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import struct
import subprocess
import time
import zlib
from pathlib import Path

import numpy as np

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1280,900", "--remote-debugging-pipe"]


def chromium_binary() -> tuple[str | None, str]:
    """(path, "") or (None, why not)."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found, ""
    if os.environ.get("XMARGIN_NO_BROWSER_INSTALL"):
        return None, "chromium is not installed and XMARGIN_NO_BROWSER_INSTALL is set"
    if not shutil.which("apt-get") or os.geteuid() != 0:
        return None, "chromium is not installed and apt-get cannot install it here (not root or no apt-get)"
    for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]):
        done = subprocess.run(command, capture_output=True, text=True, timeout=900,
                              env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        if done.returncode:
            return None, f"`{' '.join(command)}` failed: {done.stderr.strip()[-300:]}"
    found = shutil.which("chromium")
    return (found, "") if found else (None, "apt-get install chromium gave no chromium binary")


class Browser:
    """One headless Chromium with a fresh profile; `open(url)` gives a Page."""

    def __init__(self, binary: str, profile: Path):
        commands_read, self._commands = os.pipe()
        self._replies, replies_write = os.pipe()

        def as_fds_3_and_4():
            high_in = fcntl.fcntl(commands_read, fcntl.F_DUPFD, 10)
            high_out = fcntl.fcntl(replies_write, fcntl.F_DUPFD, 10)
            os.dup2(high_in, 3)
            os.dup2(high_out, 4)

        self.process = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, pass_fds=(3, 4), preexec_fn=as_fds_3_and_4)
        os.close(commands_read)
        os.close(replies_write)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._replies], [], [], left)[0]:
                raise TimeoutError("no message from chromium in time")
            chunk = os.read(self._replies, 1 << 20)
            if not chunk:
                raise ConnectionError("chromium closed its DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30.0):
        """Send one command and return its result; events received meanwhile go to `events`."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event.get("method") == method:
                    self.events.remove(event)
                    return event
            self.events.append(self._read_message(deadline))

    def open(self, url: str) -> "Page":
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            self.send(f"{domain}.enable", session=session)
        self.events.clear()
        self.send("Page.navigate", {"url": url}, session=session)
        self.wait_for("Page.loadEventFired")
        return Page(self, session)

    def close(self):
        try:
            self.send("Browser.close", timeout=5)
        except (OSError, RuntimeError, TimeoutError, ConnectionError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._commands)
        os.close(self._replies)


class Page:
    def __init__(self, browser: Browser, session: str):
        self.browser, self.session = browser, session

    def evaluate(self, expression: str, timeout: float = 30.0):
        """The value of a JS expression (promises awaited); an exception in the page raises here."""
        result = self.browser.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                        "awaitPromise": True}, session=self.session,
                                   timeout=timeout)
        if "exceptionDetails" in result:
            raise RuntimeError(f"in the page: {result['exceptionDetails']}")
        return result["result"].get("value")

    def problems(self) -> list[str]:
        """Console errors and warnings, uncaught exceptions and log errors seen so far."""
        out = []
        for event in self.browser.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "warning", "assert"):
                values = [a.get("value", a.get("description")) for a in params["args"]]
                out.append(f"console.{params['type']}: {values}")
            elif method == "Runtime.exceptionThrown":
                out.append(f"exception: {params['exceptionDetails']}")
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                out.append(f"log: {params['entry']['text']}")
        return out

    def requests(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.browser.events
                if e.get("method") == "Network.requestWillBeSent"]

    def screenshot(self, clip: dict, scale: float = 0.5) -> np.ndarray:
        """Pixels (height x width x channels, uint8) of the page region `clip` (x, y, width, height)."""
        options = {"format": "png", "optimizeForSpeed": True, "captureBeyondViewport": True,
                   "clip": {**clip, "scale": scale}}
        shot = self.browser.send("Page.captureScreenshot", options, session=self.session)
        return png_pixels(base64.b64decode(shot["data"]))


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def png_pixels(data: bytes) -> np.ndarray:
    """Decode an 8-bit, non-interlaced RGB or RGBA PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    position, chunks = 8, []
    width = height = channels = None
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        body = data[position + 8:position + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            chunks.append(body)
        position += 12 + length
    raw = np.frombuffer(zlib.decompress(b"".join(chunks)), dtype=np.uint8).reshape(height, 1 + width * channels)
    out = np.zeros((height, width * channels), dtype=np.int64)
    previous = np.zeros(width * channels, dtype=np.int64)
    for y in range(height):
        kind, row = raw[y, 0], raw[y, 1:].astype(np.int64)
        if kind == 1:  # Sub: per channel, a running sum along the row
            row = np.cumsum(row.reshape(width, channels), axis=0).reshape(-1) % 256
        elif kind == 2:  # Up
            row = (row + previous) % 256
        elif kind in (3, 4):  # Average, Paeth: each byte needs the one decoded before it
            row = row.copy()
            for x in range(row.size):
                left = row[x - channels] if x >= channels else 0
                up, up_left = previous[x], (previous[x - channels] if x >= channels else 0)
                row[x] = (row[x] + ((left + up) // 2 if kind == 3 else _paeth(left, up, up_left))) % 256
        out[y] = row
        previous = row
    return out.reshape(height, width, channels).astype(np.uint8)
