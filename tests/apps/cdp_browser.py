"""A minimal Chrome DevTools Protocol driver for the browser test (headless Debian Chromium)."""

from __future__ import annotations

import base64
import json
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1400,1000",
]


class HeadlessChromium:
    """Starts Chromium with a DevTools port, opens one page and drives it over the websocket."""

    def __init__(self, executable: str, port: int) -> None:
        self.profile = tempfile.TemporaryDirectory(prefix="chromium-profile-")
        self.process = subprocess.Popen(
            [executable, *CHROMIUM_FLAGS, f"--remote-debugging-port={port}", f"--user-data-dir={self.profile.name}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.port = port
        self.message_id = 0
        self.last_render_seconds = float("nan")
        deadline = time.monotonic() + 60
        while True:
            try:
                targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2).read())
                pages = [t for t in targets if t.get("type") == "page"]
                if pages:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.close()
                raise RuntimeError("Chromium did not open its DevTools port within 60 s")
            time.sleep(0.3)
        self.socket = connect(pages[0]["webSocketDebuggerUrl"], max_size=64 * 2**20, legacy=True)
        self.call("Page.enable")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one DevTools command and wait for its result (events in between are ignored)."""
        self.message_id += 1
        self.socket.send(json.dumps({"id": self.message_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=60))
            if message.get("id") == self.message_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str) -> Any:
        """Value of a JavaScript expression in the page."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def open_and_wait(self, url: str, timeout: float = 90.0) -> str:
        """Navigate, wait until Streamlit has finished the script run and the text is stable; return the text."""
        self.call("Page.navigate", url=url)
        return self.wait_until_rendered(timeout)

    def wait_until_rendered(self, timeout: float = 90.0) -> str:
        """Wait until Streamlit's script run is over and the page text has not changed for 1.5 s.

        Sets :attr:`last_render_seconds`: from the call until the text first reached its final state
        (the 1.5 s of checking that it stays so not counted).
        """
        started = time.monotonic()
        deadline = started + timeout
        previous, stable_since = None, None
        state_js = "document.querySelector('[data-testid=\"stApp\"]')?.getAttribute('data-test-script-state')"
        while time.monotonic() < deadline:
            time.sleep(0.5)
            state = self.evaluate(state_js)
            text = self.evaluate("document.body ? document.body.innerText : ''") or ""
            if state == "notRunning" and text == previous and text.strip():
                if stable_since and time.monotonic() - stable_since > 1.5:
                    self.last_render_seconds = stable_since - started
                    return text
                stable_since = stable_since or time.monotonic()
            else:
                stable_since = None
            previous = text
        raise TimeoutError(f"the page did not finish rendering within {timeout:.0f} s")

    def _first_map_point(self, chart_index: int) -> dict[str, Any]:
        """Screen position and sample id of the first point of a page's plotly map (window made tall first).

        The position comes from plotly's own axes (data → pixels), the id from the point's custom data.
        """
        self.call("Emulation.setDeviceMetricsOverride", width=1400, height=3000, deviceScaleFactor=1, mobile=False)
        time.sleep(1.5)
        point = self.evaluate(
            f"""(() => {{
              const gd = document.querySelectorAll('.js-plotly-plot')[{chart_index}];
              if (!gd || !gd._fullLayout) return null;
              const layout = gd._fullLayout, trace = gd._fullData[0];
              const box = gd.getBoundingClientRect();
              return {{x: box.left + layout._size.l + layout.xaxis.l2p(trace.x[0]),
                       y: box.top + layout._size.t + layout.yaxis.l2p(trace.y[0]),
                       id: String(trace.customdata[0][0]), dragmode: layout.dragmode}};
            }})()"""
        )
        if not point:
            raise RuntimeError("no plotly map on the page")
        return point

    def _mouse(self, kind: str, x: float, y: float, pressed: bool) -> None:
        self.call(
            "Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left" if pressed or kind != "mouseMoved" else "none",
            buttons=1 if pressed else 0, clickCount=0 if kind == "mouseMoved" else 1,
        )  # fmt: skip
        time.sleep(0.3)

    def click_first_map_point(self, chart_index: int = 0) -> tuple[str, str]:
        """Pick the map's pan tool, then click (real mouse press and release) its first point.

        Returns:
            The clicked sample id and the drag mode the map started in.
        """
        point = self._first_map_point(chart_index)
        tool = self.evaluate(
            f"""(() => {{
              const gd = document.querySelectorAll('.js-plotly-plot')[{chart_index}];
              const button = gd.querySelector('.modebar-btn[data-val="pan"]');
              if (button) button.dispatchEvent(new MouseEvent('click', {{bubbles: true}}));
              return gd._fullLayout.dragmode;
            }})()"""
        )
        if tool != "pan":
            raise RuntimeError(f"the map's pan tool could not be picked (drag mode {tool})")
        time.sleep(1.0)
        self._mouse("mouseMoved", point["x"], point["y"], pressed=False)
        self._mouse("mousePressed", point["x"], point["y"], pressed=True)
        self._mouse("mouseReleased", point["x"], point["y"], pressed=False)
        return point["id"], point["dragmode"]

    def box_select_first_map_point(self, chart_index: int = 0, half_width_px: float = 5.0) -> str:
        """Drag a small box around the map's first point (the map's default box-select tool); returns its id."""
        point = self._first_map_point(chart_index)
        x, y, d = point["x"], point["y"], half_width_px
        self._mouse("mouseMoved", x - d, y - d, pressed=False)
        self._mouse("mousePressed", x - d, y - d, pressed=True)
        self._mouse("mouseMoved", x, y, pressed=True)
        self._mouse("mouseMoved", x + d, y + d, pressed=True)
        self._mouse("mouseReleased", x + d, y + d, pressed=False)
        return point["id"]

    def has_exception(self) -> bool:
        """True when Streamlit shows an exception box on the page."""
        return bool(self.evaluate("document.querySelectorAll('[data-testid=\"stException\"]').length"))

    def screenshot(self, path: Path, full_page: bool = True, max_height_px: int = 5000) -> None:
        """Save a PNG of the page; ``full_page`` grows the window to the app's whole height first.

        Streamlit scrolls inside its own main container, so Chromium's beyond-viewport capture would still
        stop at the window's edge: the window itself is made as tall as the content (at most
        ``max_height_px``), then restored.
        """
        if full_page:
            height_js = (
                "Math.max(document.querySelector('[data-testid=\"stMain\"]')?.scrollHeight || 0, "
                "document.body.scrollHeight)"
            )
            height = min(int(self.evaluate(height_js) or 1000), max_height_px)
            self.call(
                "Emulation.setDeviceMetricsOverride", width=1400, height=height, deviceScaleFactor=1, mobile=False
            )
            time.sleep(1.5)  # let charts re-layout at the new size
        try:
            data = self.call("Page.captureScreenshot", format="png")["data"]
        finally:
            if full_page:
                self.call("Emulation.clearDeviceMetricsOverride")
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        """Stop the browser and remove its profile."""
        if getattr(self, "socket", None) is not None:
            self.socket.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.profile.cleanup()
