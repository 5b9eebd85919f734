"""`weightgate tui --serve` in a real headless browser: the server starts on a free port, chromium
loads the page, the page's xterm.js connects over the websocket, textual-serve starts the app on
the workspace, and the overview the app renders reaches the page and is drawn on its canvas.
Then the browser closes and the server stops on SIGTERM.

Chromium is driven over the DevTools protocol (aiohttp's websocket client, a textual-serve
dependency): xterm.js paints text on a canvas, so --dump-dom only shows the HTML shell. A script
installed before the page's own records what the page's websocket receives (the app's terminal
output) and the test reads it back, along with how many colours its text canvas shows.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import phase1_ready

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[@-Z\\-_])")

# Runs in the page before textual.js: keeps the text of every frame the page's sockets receive.
RECORD_FRAMES = """
window.__received = [];
const NativeWebSocket = window.WebSocket;
window.WebSocket = function (...args) {
  const socket = new NativeWebSocket(...args);
  socket.addEventListener("message", (event) => {
    window.__received.push(typeof event.data === "string" ? event.data : new TextDecoder().decode(event.data));
  });
  return socket;
};
window.WebSocket.prototype = NativeWebSocket.prototype;
Object.assign(window.WebSocket, NativeWebSocket);
"""
# Distinct colours on xterm's text canvas: a blank or single-colour canvas has one or two, drawn
# (anti-aliased) text in several colours has hundreds.
CANVAS_COLOURS = """
(() => {
  const canvas = document.querySelector("canvas.xterm-text-layer");
  if (!canvas) return 0;
  const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  const colours = new Set();
  for (let i = 0; i < pixels.length; i += 4) colours.add((pixels[i] << 16) | (pixels[i + 1] << 8) | pixels[i + 2]);
  return colours.size;
})()
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def answers_http(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


class DevTools:
    """The few DevTools protocol calls the test needs, on one page target."""

    def __init__(self, socket) -> None:
        self.socket = socket
        self.ids = itertools.count(1)

    async def call(self, method: str, **params):
        call_id = next(self.ids)
        await self.socket.send_json({"id": call_id, "method": method, "params": params})
        while True:
            message = json.loads((await self.socket.receive(timeout=30)).data)
            if message.get("id") == call_id:
                assert "error" not in message, f"{method}: {message['error']}"
                return message["result"]

    async def evaluate(self, expression: str):
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")


async def load_in_chromium(url: str, profile: Path, timeout: float = 40.0) -> tuple[str, int]:
    """The app's terminal output as the page received it (escape sequences removed), and how many
    distinct colours xterm's text canvas holds, once the overview has arrived."""
    import aiohttp

    browser = subprocess.Popen([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                "--remote-debugging-port=0", f"--user-data-dir={profile}",
                                "--window-size=1400,900", "about:blank"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        active_port = profile / "DevToolsActivePort"
        wait_until(lambda: active_port.exists() and active_port.read_text().strip(), 20, "chromium's DevTools port")
        port = active_port.read_text().split()[0]
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
                page = next(target for target in await response.json() if target["type"] == "page")
            async with session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as cdp_socket:
                cdp = DevTools(cdp_socket)
                await cdp.call("Page.enable")
                await cdp.call("Page.addScriptToEvaluateOnNewDocument", source=RECORD_FRAMES)
                await cdp.call("Page.navigate", url=url)
                deadline = time.monotonic() + timeout
                text = ""
                while time.monotonic() < deadline:
                    frames = await cdp.evaluate("window.__received ? window.__received.join('') : ''") or ""
                    text = ANSI.sub("", frames)
                    if "Overview" in text and "locked" in text:
                        break
                    await asyncio.sleep(0.3)
                await asyncio.sleep(0.5)  # xterm paints on its next animation frame
                colours = await cdp.evaluate(CANVAS_COLOURS) or 0
                await cdp.call("Browser.close")
        return text, colours
    finally:
        try:
            browser.wait(timeout=10)
        except subprocess.TimeoutExpired:
            browser.kill()
            browser.wait()


@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (apt-get install chromium) for a headless browser")
async def test_served_tui_renders_the_overview_in_a_headless_browser(tmp_path: Path) -> None:
    ws = phase1_ready(tmp_path / "ws")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    server = subprocess.Popen([sys.executable, "-m", "weightgate", "-w", str(ws.root), "tui", "--serve",
                               "--host", "127.0.0.1", "--port", str(port)],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until(lambda: answers_http(url) or server.poll() is not None, 30, "the server")
        assert server.poll() is None, server.stdout.read().decode()
        text, colours = await load_in_chromium(url, tmp_path / "chromium")
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            raise
        log = server.stdout.read().decode(errors="replace")
    assert code == 0, log
    assert f"serving {ws.root} on http://127.0.0.1:{port}" in log
    # The overview, as the app drew it: its sidebar, the phases and their states, the workspace.
    for words in ("Overview", "Selection", "Verification", "Deployment", "locked", "weightgate"):
        assert words in text, f"{words!r} not in what the page received:\n{text[:2000]}"
    assert colours > 20, f"xterm's text canvas shows no text ({colours} distinct colours)"
