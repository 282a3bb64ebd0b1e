"""Render a local HTML file in headless Chromium and report what happened.

Drives Debian's ``chromium`` through the DevTools protocol over a pipe
(``--remote-debugging-pipe``: JSON messages separated by NUL bytes on file
descriptors 3 and 4), so no port is opened and no extra package is needed.
It records every console message, uncaught exception, log entry and network
request of the page, waits for the page to set ``<html data-report-status>``
to something other than ``loading``, and takes a PNG screenshot.

Networking is off for the whole browser (``--proxy-server`` pointing at a
closed loopback port, no background services), so a request for anything
but the page's own file would fail and be listed in
:attr:`PageResult.requests`.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")

_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-features=Translate,MediaRouter,OptimizationHints",
    "--metrics-recording-only",
    "--mute-audio",
    "--hide-scrollbars",
    # Any request that leaves the page's own file goes to a closed port and fails.
    "--proxy-server=127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",
)


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome executable on PATH, or None."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageResult:
    """What the browser saw while loading one page."""

    status: str | None
    console: list[dict] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    log_entries: list[dict] = field(default_factory=list)
    screenshot: bytes = b""
    elements: dict[str, dict] = field(default_factory=dict)
    hovers: list[str] = field(default_factory=list)
    attributes: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def external_requests(self, page: Path) -> list[str]:
        """Requests for anything but ``page`` itself and inline data/blob URLs."""
        own = Path(page).resolve().as_uri()
        return [
            u for u in self.requests if u != own and not u.startswith(("data:", "blob:", "about:"))
        ]

    @property
    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions, error log entries and failed loads."""
        out = [
            f"console.{m['type']}: {m['text']}"
            for m in self.console
            if m["type"] in ("error", "assert")
        ]
        out += [f"exception: {e}" for e in self.exceptions]
        out += [
            f"log {e.get('source')}: {e.get('text')}"
            for e in self.log_entries
            if e.get("level") == "error"
        ]
        out += [f"failed request: {r}" for r in self.failed_requests]
        return out


class _Pipe:
    """DevTools protocol over --remote-debugging-pipe (fd 3: to Chrome, fd 4: from it)."""

    def __init__(self, proc: subprocess.Popen, to_chrome: int, from_chrome: int):
        self.proc, self.w, self.r = proc, to_chrome, from_chrome
        self.buf = b""
        self.next_id = 0
        self.events: list[dict] = []

    def _read_message(self, deadline: float) -> dict:
        import select

        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from chromium")
            ready, _, _ = select.select([self.r], [], [], left)
            if ready:
                chunk = os.read(self.r, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"chromium closed the pipe (exit {self.proc.poll()})")
                self.buf += chunk
        raw, self.buf = self.buf.split(b"\0", 1)
        return json.loads(raw)

    def send(
        self,
        method: str,
        params: dict | None = None,
        session: str | None = None,
        timeout: float = 30.0,
    ) -> dict:
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def pump(self, seconds: float) -> None:
        """Collect events for up to ``seconds``."""
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline:
                self.events.append(self._read_message(deadline))
        except TimeoutError:
            pass


def render_page(
    path: Path,
    *,
    width: int = 1280,
    height: int = 2000,
    timeout: float = 60.0,
    elements: tuple[str, ...] = (),
    hover: tuple[tuple[str, float, float], ...] = (),
    chromium: str | None = None,
) -> PageResult:
    """Load ``path`` in headless Chromium, wait for the page to finish, screenshot it.

    Args:
        path: the HTML file.
        width, height: the viewport (the screenshot is of the whole page).
        timeout: seconds to wait for ``data-report-status`` to leave ``loading``.
        elements: element ids whose page rectangles (CSS px) to return.
        hover: (element id, fx, fy): move the mouse to that fraction of the
            element's box and record the text plotly's hover label shows.
        chromium: the executable (default: :func:`find_chromium`).

    Returns:
        A :class:`PageResult`; ``status`` is None when the page never finished.
    """
    exe = chromium or find_chromium()
    if exe is None:
        raise FileNotFoundError("no chromium on PATH")
    url = Path(path).resolve().as_uri()
    with tempfile.TemporaryDirectory(prefix="mdxbg-chromium-") as profile:
        to_r, to_w = os.pipe()
        from_r, from_w = os.pipe()

        def child_fds() -> None:
            # Chromium talks on fds 3 and 4; move ours out of the way first.
            import fcntl

            a = fcntl.fcntl(to_r, fcntl.F_DUPFD, 10)
            b = fcntl.fcntl(from_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        t0 = time.monotonic()
        proc = subprocess.Popen(
            [
                exe,
                *_FLAGS,
                f"--user-data-dir={profile}",
                "--remote-debugging-pipe",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            pass_fds=(to_r, from_w, 3, 4),  # 3, 4: kept after preexec_fn
            preexec_fn=child_fds,
        )
        os.close(to_r)
        os.close(from_w)
        cdp = _Pipe(proc, to_w, from_r)
        try:
            return _drive(cdp, url, width, height, timeout, elements, hover, t0)
        finally:
            try:
                cdp.send("Browser.close", timeout=5)
            except Exception:
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.stderr.close()
            os.close(to_w)
            os.close(from_r)


def _drive(
    cdp: _Pipe,
    url: str,
    width: int,
    height: int,
    timeout: float,
    elements: tuple[str, ...],
    hover: tuple,
    t0: float,
) -> PageResult:
    target = cdp.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = cdp.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Page", "Runtime", "Network", "Log"):
        cdp.send(f"{domain}.enable", session=session)
    cdp.send(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        session=session,
    )
    cdp.send("Page.navigate", {"url": url}, session=session)
    status = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cdp.send(
            "Runtime.evaluate",
            {
                "expression": "document.documentElement.getAttribute('data-report-status')",
                "returnByValue": True,
            },
            session=session,
        )
        value = got.get("result", {}).get("value")
        if value not in (None, "loading") and _loaded(cdp.events, session):
            status = value
            break
        cdp.pump(0.2)
    cdp.pump(0.3)  # late console messages and requests
    got = cdp.send(
        "Runtime.evaluate",
        {
            "expression": (
                "(function(){var o={},a=document.documentElement.attributes;"
                "for(var i=0;i<a.length;i++)"
                "if(a[i].name.indexOf('data-')===0)o[a[i].name]=a[i].value;"
                "return o;})()"
            ),
            "returnByValue": True,
        },
        session=session,
    )
    attributes = got.get("result", {}).get("value") or {}
    rects = {eid: _rect(cdp, session, eid) for eid in elements}
    hovers = [_hover(cdp, session, *h) for h in hover]
    metrics = cdp.send("Page.getLayoutMetrics", session=session)
    size = metrics.get("cssContentSize") or metrics["contentSize"]
    shot = cdp.send(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {
                "x": 0,
                "y": 0,
                "width": width,
                "height": min(size["height"], 16000),
                "scale": 1,
            },
        },
        session=session,
        timeout=60,
    )
    result = PageResult(
        status=status,
        screenshot=base64.b64decode(shot["data"]),
        elements=rects,
        hovers=hovers,
        attributes=attributes,
        seconds=time.monotonic() - t0,
    )
    urls: dict[str, str] = {}
    for ev in cdp.events:
        if ev.get("sessionId") != session:
            continue
        method, p = ev.get("method"), ev.get("params", {})
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in p["args"])
            result.console.append({"type": p["type"], "text": text})
        elif method == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            result.exceptions.append(d.get("exception", {}).get("description") or d["text"])
        elif method == "Log.entryAdded":
            result.log_entries.append(p["entry"])
        elif method == "Network.requestWillBeSent":
            urls[p["requestId"]] = p["request"]["url"]
            result.requests.append(p["request"]["url"])
        elif method == "Network.loadingFailed":
            url = urls.get(p["requestId"], "?")
            result.failed_requests.append(f"{url[:200]}: {p.get('errorText')}")
    return result


def _rect(cdp: _Pipe, session: str, eid: str, viewport: bool = False) -> dict | None:
    """Bounding box of element ``eid`` in page (or viewport) CSS pixels."""
    origin = "0" if viewport else "1"
    got = cdp.send(
        "Runtime.evaluate",
        {
            "expression": (
                f"(function(){{var e=document.getElementById({json.dumps(eid)});"
                "if(!e)return null;var r=e.getBoundingClientRect();"
                f"return {{x:r.left+{origin}*scrollX,y:r.top+{origin}*scrollY,"
                "width:r.width,height:r.height};})()"
            ),
            "returnByValue": True,
        },
        session=session,
    )
    return got.get("result", {}).get("value")


def _hover(cdp: _Pipe, session: str, eid: str, fx: float, fy: float) -> str:
    """Text of plotly's hover label after moving the mouse onto element ``eid``."""
    cdp.send(
        "Runtime.evaluate",
        {
            "expression": (
                f"document.getElementById({json.dumps(eid)}).scrollIntoView({{block:'center'}})"
            )
        },
        session=session,
    )
    box = _rect(cdp, session, eid, viewport=True)
    if not box:
        return ""
    x, y = box["x"] + fx * box["width"], box["y"] + fy * box["height"]
    for dx in (-1, 0):
        cdp.send(
            "Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x + dx, "y": y}, session=session
        )
        cdp.pump(0.15)
    got = cdp.send(
        "Runtime.evaluate",
        {
            "expression": (
                f"(function(){{var l=document.getElementById({json.dumps(eid)})"
                ".querySelectorAll('.hoverlayer .hovertext');"
                "return Array.prototype.map.call(l,function(t){return t.textContent;})"
                ".join(' | ');})()"
            ),
            "returnByValue": True,
        },
        session=session,
    )
    return got.get("result", {}).get("value") or ""


def _loaded(events: list[dict], session: str) -> bool:
    return any(
        e.get("method") == "Page.loadEventFired" and e.get("sessionId") == session for e in events
    )


def distinct_colours(png: bytes, box: dict | None = None) -> int:
    """Distinct RGB colours of a PNG, inside ``box`` (x, y, width, height in px) if given."""
    import io

    import numpy as np
    from PIL import Image

    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    if box:
        x0, y0 = int(box["x"]), int(box["y"])
        image = image[y0 : y0 + int(box["height"]), x0 : x0 + int(box["width"])]
    flat = image.reshape(-1, 3).astype(np.uint32)
    return int(np.unique((flat[:, 0] << 16) | (flat[:, 1] << 8) | flat[:, 2]).size)


def main(argv: list[str] | None = None) -> None:
    """Render a report, print what the browser saw, optionally save the screenshot.

    ``python -m dials_mdxbg.testing.browser report.html --screenshot shot.png``;
    exits non-zero on a JavaScript error, a failed load, a request for
    anything outside the file, or a page that never finishes.
    """
    import argparse
    import sys

    p = argparse.ArgumentParser(
        prog="python -m dials_mdxbg.testing.browser", description=main.__doc__
    )
    p.add_argument("page", type=Path)
    p.add_argument("--screenshot", type=Path, help="write the page's PNG here")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=2000, help="viewport height (CSS px)")
    p.add_argument("--clip", type=int, help="keep only the top CLIP pixels of the screenshot")
    args = p.parse_args(argv)
    result = render_page(args.page, width=args.width, height=args.height)
    external = result.external_requests(args.page)
    print(
        f"status {result.status}; {result.attributes.get('data-report-ms', '?')} ms in the page, "
        f"{result.seconds:.1f} s with the browser's start"
    )
    for line in result.errors + [f"external request: {u}" for u in external]:
        print(line)
    if args.screenshot:
        png = result.screenshot
        if args.clip:
            import io

            from PIL import Image

            image = Image.open(io.BytesIO(png))
            out = io.BytesIO()
            image.crop((0, 0, image.width, min(args.clip, image.height))).save(
                out, "PNG", optimize=True
            )
            png = out.getvalue()
        args.screenshot.write_bytes(png)
        print(f"screenshot: {args.screenshot} ({len(png) / 1e3:.0f} kB)")
    if result.status != "ok" or result.errors or external:
        sys.exit(1)


if __name__ == "__main__":
    main()
