"""Real browsers for the HTML report's tests and benchmark, headless and with networking off.

- Chromium: Debian's ``chromium`` driven through Selenium and Debian's ``chromium-driver``
  (:func:`chromium`).
- Firefox: Debian's ``firefox-esr`` driven through the WebDriver BiDi server built into Firefox
  (``--remote-debugging-port``), over a WebSocket (:class:`Firefox`). Why not Selenium:
  Selenium needs geckodriver for Firefox, which Debian does not package, and nothing may be
  downloaded at run time; BiDi is the W3C protocol geckodriver itself speaks to Firefox.

No network in either: every request goes to a proxy on a closed port (127.0.0.1:9), so a page
that needed anything but itself would show it (a console error, a resource entry).

Also the page scripts the tests and the benchmark run in the report (:data:`DRAW_ALL_CHARTS`).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from .tools import free_port, stop_process, wait_port

__all__ = ["CHROMIUM_ARGS", "DRAW_ALL_CHARTS", "DRAW_ALL_CHARTS_EXPR", "Firefox", "chromium"]

#: A closed port on the loopback: the proxy every request of the browsers is sent to.
_NO_PROXY = ("127.0.0.1", 9)

#: Headless Chromium, no GPU (WebGL falls back to software), no network.
CHROMIUM_ARGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--no-first-run", "--disable-extensions",
                 f"--proxy-server={_NO_PROXY[0]}:{_NO_PROXY[1]}",
                 "--proxy-bypass-list=<-loopback>")

#: An asynchronous page script (Selenium's ``execute_async_script``; :meth:`Firefox.evaluate`
#: with ``DRAW_ALL_CHARTS_EXPR``) that scrolls through the report one screen at a time, lets
#: the charts that come into view be drawn (charts.js), and reports when each chart was drawn
#: (ms since navigation start), the charts left undrawn and how long the scrolling took.
DRAW_ALL_CHARTS_EXPR = """(async () => {
  const frame = () => new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
  const start = performance.now();
  for (;;) {
    await frame(); await frame(); await Charts.idle();
    if (innerHeight + scrollY >= document.documentElement.scrollHeight - 1) break;
    scrollBy(0, innerHeight);
  }
  await frame(); await Charts.idle();
  scrollTo(0, 0);
  return JSON.stringify({start, end: performance.now(), times: Charts.times,
                         pending: Charts.pending(),
                         plots: document.querySelectorAll(".js-plotly-plot").length});
})()"""
DRAW_ALL_CHARTS = ("const done = arguments[arguments.length - 1];"
                   f"{DRAW_ALL_CHARTS_EXPR}.then(done);")


def chromium(binary: str, driver: str, *, width: int = 1280, height: int = 1600,
             console: bool = True) -> Any:
    """A Selenium driver of headless ``binary`` through ``driver`` (Debian's chromedriver;
    Selenium Manager is told never to download one), its console kept when ``console``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in (*CHROMIUM_ARGS, f"--window-size={width},{height}"):
        options.add_argument(arg)
    if console:
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    old = os.environ.get("SE_OFFLINE")
    os.environ["SE_OFFLINE"] = "true"
    try:
        return webdriver.Chrome(service=Service(driver), options=options)
    finally:
        if old is None:
            del os.environ["SE_OFFLINE"]
        else:
            os.environ["SE_OFFLINE"] = old


#: Firefox preferences of the throwaway profile: no network (a proxy on a closed port, for
#: the loopback too), and none of the background requests a first start makes.
_FIREFOX_PREFS: dict[str, object] = {
    "network.proxy.type": 1,
    "network.proxy.http": _NO_PROXY[0], "network.proxy.http_port": _NO_PROXY[1],
    "network.proxy.ssl": _NO_PROXY[0], "network.proxy.ssl_port": _NO_PROXY[1],
    "network.proxy.socks": _NO_PROXY[0], "network.proxy.socks_port": _NO_PROXY[1],
    "network.proxy.allow_hijacking_localhost": True,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "app.update.disabledForTesting": True,
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "datareporting.policy.dataSubmissionEnabled": False,
    "toolkit.telemetry.reportingpolicy.firstRun": False,
    "services.settings.server": f"http://{_NO_PROXY[0]}:{_NO_PROXY[1]}/",
}


class Firefox:
    """Headless Firefox with a throwaway profile, driven through its WebDriver BiDi server on a
    free port of 127.0.0.1 (a context manager: the browser is stopped and the profile removed
    on exit).

    ``open(url)`` loads a page; ``evaluate(expr)`` runs JavaScript in it (promises awaited)
    and returns a string, number, boolean or None; ``errors()`` the console and JavaScript
    errors since the last ``open``; ``screenshot(path)`` a PNG of the viewport.
    """

    def __init__(self, binary: str, *, width: int = 1280, height: int = 1600,
                 timeout: float = 60.0) -> None:
        self.binary, self.width, self.height, self.timeout = binary, width, height, timeout
        self._profile = tempfile.TemporaryDirectory(prefix="qosinspect-firefox-")
        self._proc: subprocess.Popen[bytes] | None = None
        self._ws: Any = None
        self._id = 0
        self._log: list[dict[str, Any]] = []
        self._context = ""

    def __enter__(self) -> Firefox:
        import websocket

        profile = Path(self._profile.name)
        (profile / "user.js").write_text("".join(
            f"user_pref({json.dumps(k)}, {json.dumps(v)});\n"
            for k, v in _FIREFOX_PREFS.items()))
        port = free_port()
        try:
            self._proc = subprocess.Popen(
                [self.binary, "--headless", "--no-remote", "--profile", str(profile),
                 "--remote-debugging-port", str(port), "about:blank"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True)
            wait_port(port, self.timeout, proc=self._proc)
            self._ws = websocket.create_connection(f"ws://127.0.0.1:{port}/session",
                                                   timeout=self.timeout, suppress_origin=True)
            self._command("session.new", {"capabilities": {}})
            self._command("session.subscribe", {"events": ["log.entryAdded"]})
            tree = self._command("browsingContext.getTree", {})
            self._context = tree["contexts"][0]["context"]
            self._command("browsingContext.setViewport", {
                "context": self._context,
                "viewport": {"width": self.width, "height": self.height}})
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._ws is not None:
            with contextlib.suppress(Exception):
                self._command("session.end", {})
            with contextlib.suppress(Exception):
                self._ws.close()
            self._ws = None
        if self._proc is not None:
            stop_process(self._proc)
            self._proc = None
        self._profile.cleanup()

    def _command(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Send one BiDi command and wait for its answer; events that come first are kept."""
        self._id += 1
        self._ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            message: dict[str, Any] = json.loads(self._ws.recv())
            if message.get("id") == self._id:
                if message.get("type") == "error":
                    raise RuntimeError(f"{method}: {message.get('error')}: "
                                       f"{message.get('message')}")
                result: dict[str, Any] = message["result"]
                return result
            if message.get("method") == "log.entryAdded":
                self._log.append(message["params"])
        raise TimeoutError(f"{method}: no answer from Firefox in {self.timeout} s")

    def open(self, url: str) -> None:
        """Load ``url`` and wait for its ``load`` event; forget the console so far."""
        self._log.clear()
        self._command("browsingContext.navigate",
                      {"context": self._context, "url": url, "wait": "complete"})

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (a promise is awaited): a string,
        number, boolean or None; ``RuntimeError`` when it throws or is another type."""
        res = self._command("script.evaluate", {
            "expression": expression, "target": {"context": self._context},
            "awaitPromise": True})
        if res.get("type") == "exception":
            raise RuntimeError(f"{expression[:80]}: {res['exceptionDetails'].get('text')}")
        value = res["result"]
        if value["type"] in ("undefined", "null"):
            return None
        if value["type"] in ("string", "number", "boolean"):
            return value["value"]
        raise RuntimeError(f"{expression[:80]}: a {value['type']} (JSON.stringify it)")

    def wait_for(self, expression: str, timeout: float | None = None) -> None:
        """Wait until ``expression`` is true in the page."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.evaluate(expression):
            if time.monotonic() > deadline:
                raise TimeoutError(f"not true after {timeout} s: {expression}")
            time.sleep(0.05)

    def errors(self) -> list[dict[str, Any]]:
        """The console errors and uncaught JavaScript errors since the last :meth:`open`."""
        self.evaluate("0")                    # let the events already sent arrive
        return [e for e in self._log if e.get("level") == "error"]

    def screenshot(self, path: Path) -> None:
        shot = self._command("browsingContext.captureScreenshot", {"context": self._context})
        path.write_bytes(base64.b64decode(shot["data"]))
