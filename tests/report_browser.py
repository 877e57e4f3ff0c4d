"""Headless Chromium driven over the DevTools protocol, for checking Snakemake reports.

Chromium speaks the Chrome DevTools Protocol (CDP) over a pair of pipes
when started with ``--remote-debugging-pipe``: it reads commands on file
descriptor 3 and writes replies and events on descriptor 4, each message a
JSON object ended by a NUL byte (the transport Playwright and Puppeteer
use). That needs nothing beyond the standard library, so the report tests
and ``docs/figures/make_screenshots.py`` run wherever Chromium is installed.

:class:`Chromium` is the browser with one page; :class:`SnakemakeReport`
opens a ``snakemake --report`` HTML file in it and shows each result the
way the report's own "eye" buttons do (``app.setView`` with the result's
``data_uri``: an ``<img>`` for a figure, an ``<iframe>`` for an HTML page),
then reads every ``<img>`` of the report and of the page shown in its
iframe.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["CdpError", "Chromium", "ImageState", "SnakemakeReport"]

#: Arguments of a headless Chromium that runs as root in a container.
_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--hide-scrollbars",
    "--no-first-run",
    "--no-default-browser-check",
    "--mute-audio",
    "--remote-debugging-pipe",
)
#: JavaScript: every <img> of the document once all of them have settled
#: (loaded or failed), as {src, alt, width, height}; data: URIs shortened.
_IMAGES_JS = """
new Promise((resolve) => {
  const done = () => resolve(Array.from(document.images).map((img) => ({
    src: img.src.startsWith("data:") ? img.src.slice(0, 40) + "..." : img.src,
    alt: img.alt,
    width: img.naturalWidth,
    height: img.naturalHeight,
  })));
  const wait = (left) => {
    const pending = Array.from(document.images).filter((img) => !img.complete);
    if (document.readyState === "complete" && (pending.length === 0 || left <= 0)) { done(); }
    else { setTimeout(() => wait(left - 1), 50); }
  };
  wait(400);
})
"""


class CdpError(RuntimeError):
    """Chromium answered a DevTools command with an error, or did not answer in time."""


@dataclass(frozen=True)
class ImageState:
    """One ``<img>`` as the browser drew it: natural size 0 is a broken image."""

    result: str
    frame: str
    src: str
    alt: str
    width: int
    height: int

    @property
    def broken(self) -> bool:
        return self.width == 0 or self.height == 0


def _high_fd(fd: int) -> int:
    """``fd`` duplicated above 9 (close-on-exec), the original closed."""
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


class Chromium:
    """A headless Chromium with one page, driven over CDP on pipes.

    Parameters
    ----------
    executable : str
        The Chromium binary.
    profile : path-like
        An empty directory for the browser profile.
    width, height : int
        Viewport in CSS pixels (device scale factor 1).
    timeout : float
        Seconds to wait for any one answer.
    """

    def __init__(
        self,
        executable: str,
        profile: str | os.PathLike[str],
        *,
        width: int = 1400,
        height: int = 1800,
        timeout: float = 60.0,
    ) -> None:
        self.timeout = timeout
        commands_read, commands_write = (_high_fd(fd) for fd in os.pipe())
        replies_read, replies_write = (_high_fd(fd) for fd in os.pipe())
        actions = [
            (os.POSIX_SPAWN_DUP2, commands_read, 3),
            (os.POSIX_SPAWN_DUP2, replies_write, 4),
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
            (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
        ]
        argv = [executable, *_FLAGS, f"--user-data-dir={profile}"]
        argv += [f"--window-size={width},{height}", "about:blank"]
        self.pid = os.posix_spawn(executable, argv, os.environ, file_actions=actions)
        os.close(commands_read)
        os.close(replies_write)
        self._write, self._read = commands_write, replies_read
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        try:
            targets = self.send("Target.getTargets")["targetInfos"]
            page = next(t for t in targets if t["type"] == "page")
            self.session = self.send(
                "Target.attachToTarget", {"targetId": page["targetId"], "flatten": True}
            )["sessionId"]
            self.send("Page.enable", session=self.session)
            self.send("Runtime.enable", session=self.session)
            self.send(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
                session=self.session,
            )
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Ask the browser to quit, then end it (this process only) and reap it."""
        if self.pid is None:
            return
        with contextlib.suppress(OSError):
            self._send_only("Browser.close")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if os.waitpid(self.pid, os.WNOHANG) != (0, 0):
                break
            time.sleep(0.1)
        else:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        for fd in (self._write, self._read):
            os.close(fd)
        self.pid = None

    def _send_only(
        self, method: str, params: dict | None = None, session: str | None = None
    ) -> int:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._write, data) :]
        return self._next_id

    def _message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._read], [], [], left)[0]:
                raise CdpError("Chromium did not answer in time")
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise CdpError("Chromium closed its DevTools pipe (it exited)")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, params: dict | None = None, *, session: str | None = None) -> Any:
        """Send one command and return its ``result`` (events meanwhile go to :attr:`events`)."""
        ident = self._send_only(method, params, session)
        deadline = time.monotonic() + self.timeout
        while True:
            message = self._message(deadline)
            if message.get("id") == ident:
                if "error" in message:
                    raise CdpError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def evaluate(self, expression: str, *, context: int | None = None) -> Any:
        """The value of a JavaScript expression (promises awaited) in the page or ``context``."""
        params: dict[str, Any] = {
            "expression": expression,
            "awaitPromise": True,
            "returnByValue": True,
        }
        if context is not None:
            params["contextId"] = context
        result = self.send("Runtime.evaluate", params, session=self.session)
        if "exceptionDetails" in result:
            raise CdpError(f"JavaScript failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, *, timeout: float | None = None) -> Any:
        """Poll ``expression`` until it is truthy; return its value."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise CdpError(f"timed out waiting for {expression!r}")
            time.sleep(0.1)

    def navigate(self, url: str) -> None:
        """Open ``url`` and wait until its document has loaded."""
        self.send("Page.navigate", {"url": url}, session=self.session)
        self.wait_for(f"location.href === {json.dumps(url)} && document.readyState === 'complete'")

    def frames(self) -> list[dict[str, Any]]:
        """Every frame of the page (the main frame first), from the frame tree."""
        tree = self.send("Page.getFrameTree", session=self.session)["frameTree"]
        out, todo = [], [tree]
        while todo:
            node = todo.pop(0)
            out.append(node["frame"])
            todo.extend(node.get("childFrames", []))
        return out

    def frame_context(self, frame_id: str) -> int:
        """An execution context in frame ``frame_id`` (an isolated world: any origin)."""
        return self.send(
            "Page.createIsolatedWorld",
            {"frameId": frame_id, "worldName": "report-check"},
            session=self.session,
        )["executionContextId"]

    def screenshot(self, path: str | os.PathLike[str]) -> Path:
        """The viewport as a PNG file at ``path``."""
        data = self.send("Page.captureScreenshot", {"format": "png"}, session=self.session)
        path = Path(path)
        path.write_bytes(base64.b64decode(data["data"]))
        return path


class SnakemakeReport:
    """A ``snakemake --report`` HTML file open in :class:`Chromium`."""

    def __init__(self, browser: Chromium, report: str | os.PathLike[str]) -> None:
        self.browser = browser
        browser.navigate(Path(report).resolve().as_uri())
        browser.wait_for("typeof app !== 'undefined' && typeof results !== 'undefined'")
        #: result path -> {"mime_type", "labels", "category", "subcategory"}
        self.results: dict[str, dict[str, Any]] = browser.evaluate(
            """(() => {
              const out = {};
              for (const [path, r] of Object.entries(results)) {
                out[path] = {mime_type: r.mime_type, labels: r.labels || {}};
              }
              for (const [cat, subs] of Object.entries(categories)) {
                for (const [sub, paths] of Object.entries(subs)) {
                  for (const path of paths) {
                    out[path].category = cat;
                    out[path].subcategory = sub;
                  }
                }
              }
              return out;
            })()"""
        )

    def pages(self) -> list[str]:
        """Results the report shows inside itself: HTML pages and images."""
        return [
            path
            for path, info in self.results.items()
            if info["mime_type"] == "text/html" or info["mime_type"].startswith("image/")
        ]

    def show(self, path: str) -> str | None:
        """Show result ``path`` as its eye button does, its category open in the menu.

        Returns the id of the iframe's frame for an HTML result (None for an
        image), once the frame holds the result.
        """
        info = self.results[path]
        content = "html" if info["mime_type"] == "text/html" else "img"
        key = json.dumps(path)
        # the URL the browser resolves the result to (a relative path in a .zip report)
        url = self.browser.evaluate(f"new URL(results[{key}].data_uri, document.baseURI).href")
        # through the menu first, as a reader goes: the result list is built when it mounts
        self.browser.evaluate('app.setView({navbarMode: "menu"}); true')
        self.browser.evaluate("new Promise((r) => requestAnimationFrame(() => r(true)))")
        self.browser.evaluate(
            f"""app.setView({{
              navbarMode: "subcategory",
              category: {json.dumps(info["category"])},
              subcategory: {json.dumps(info["subcategory"])},
              content: {json.dumps(content)},
              contentPath: results[{key}].data_uri,
              resultPath: {key},
            }}); true"""
        )
        if content == "img":
            self.browser.wait_for(
                "Array.from(document.images).some("
                f"(i) => i.src === {json.dumps(url)} && i.complete)"
            )
            return None
        deadline = time.monotonic() + self.browser.timeout
        while time.monotonic() < deadline:
            for frame in self.browser.frames():
                if frame.get("parentId") is not None and frame.get("url") == url:
                    context = self.browser.frame_context(frame["id"])
                    if self.browser.evaluate(
                        "document.readyState === 'complete' && document.body !== null",
                        context=context,
                    ):
                        return frame["id"]
            time.sleep(0.1)
        raise CdpError(f"the report did not show {path} in its iframe")

    def images(self, path: str) -> list[ImageState]:
        """Show ``path``; every ``<img>`` of the report and of the page in its iframe."""
        frame = self.show(path)
        states = [("report", state) for state in self.browser.evaluate(_IMAGES_JS)]
        if frame is not None:
            context = self.browser.frame_context(frame)
            states += [
                ("page", state) for state in self.browser.evaluate(_IMAGES_JS, context=context)
            ]
        return [
            ImageState(path, where, s["src"], s["alt"], int(s["width"]), int(s["height"]))
            for where, s in states
        ]
