"""Render a local HTML file in headless Chromium through WebDriver, and report what happened.

Test tooling, not part of the package. Drives Debian's ``chromium`` with
``chromium-driver`` through Debian's ``python3-selenium`` (importable from the
venv, made with ``--system-site-packages``); ``scripts/bootstrap.sh --test``
installs all three. What WebDriver does not offer is asked of the browser
through ``driver.execute_cdp_cmd`` (device metrics, layout metrics, the
full-page screenshot); console messages, uncaught exceptions and failed loads
come from ChromeDriver's ``browser`` log, every network request from its
``performance`` log (DevTools ``Network.*`` events).

Networking is off for the whole browser (``--proxy-server`` pointing at a
closed loopback port, no background services), so a request for anything but
the page's own file fails and is listed in :attr:`PageResult.requests`.

As a command, for the README's picture (see ``docs/report.md``)::

    python tests/browser.py bkg_data_binned.html --screenshot docs/report.png
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
CHROMEDRIVER_NAMES = ("chromedriver",)

_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
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

_LEVELS = {"SEVERE": "error", "WARNING": "warning", "INFO": "log", "DEBUG": "debug"}


def _first_on_path(names: Sequence[str]) -> str | None:
    """Path of the first of ``names`` found on PATH, or None."""
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return None


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome executable on PATH, or None."""
    return _first_on_path(CHROMIUM_NAMES)


def find_chromedriver() -> str | None:
    """Path of ChromeDriver on PATH, or None."""
    return _first_on_path(CHROMEDRIVER_NAMES)


def missing_tools() -> list[str]:
    """What of chromium, chromedriver and selenium is not installed (empty: all there)."""
    missing = []
    if find_chromium() is None:
        missing.append("chromium")
    if find_chromedriver() is None:
        missing.append("chromedriver (chromium-driver)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (python3-selenium)")
    return missing


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
        out = [f"console.{m['type']}: {m['text']}" for m in self.console if m["type"] == "error"]
        out += [f"exception: {e}" for e in self.exceptions]
        out += [
            f"log {e.get('source')}: {e.get('message')}"
            for e in self.log_entries
            if e.get("level") == "SEVERE"
        ]
        out += [f"failed request: {r}" for r in self.failed_requests]
        return out


def _console_text(message: str) -> str:
    """``console.error("boom")`` is logged as ``<url> <line>:<col> "boom"``: keep ``boom``."""
    text = re.sub(r"^\S+ \d+:\d+ ", "", message, count=1)
    if text.startswith('"') and text.endswith('"'):
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


def _start(chromium: str | None, width: int, height: int):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    exe = chromium or find_chromium()
    driver_exe = find_chromedriver()
    if exe is None or driver_exe is None:
        raise FileNotFoundError(f"not on PATH: {', '.join(missing_tools())}")
    options = webdriver.ChromeOptions()
    options.binary_location = exe
    for flag in _FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    options.add_experimental_option(
        "perfLoggingPrefs", {"enableNetwork": True, "enablePage": False}
    )
    driver = webdriver.Chrome(service=Service(driver_exe), options=options)
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )
    return driver


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
        chromium: the browser executable (default: :func:`find_chromium`).

    Returns:
        A :class:`PageResult`; ``status`` is None when the page never finished.
    """
    t0 = time.monotonic()
    driver = _start(chromium, width, height)
    try:
        driver.set_page_load_timeout(timeout)
        driver.get(Path(path).resolve().as_uri())
        status = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = driver.execute_script(
                "return document.readyState === 'complete' ? "
                "document.documentElement.getAttribute('data-report-status') : null;"
            )
            if value not in (None, "loading"):
                status = value
                break
            time.sleep(0.2)
        time.sleep(0.3)  # late console messages and requests
        attributes = driver.execute_script(
            "var o={},a=document.documentElement.attributes;"
            "for(var i=0;i<a.length;i++)"
            "if(a[i].name.indexOf('data-')===0)o[a[i].name]=a[i].value;"
            "return o;"
        )
        rects = {eid: _rect(driver, eid) for eid in elements}
        hovers = [_hover(driver, *h) for h in hover]
        driver.execute_script("window.scrollTo(0, 0);")
        metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        shot = driver.execute_cdp_cmd(
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
        )
        result = PageResult(
            status=status,
            screenshot=base64.b64decode(shot["data"]),
            elements=rects,
            hovers=hovers,
            attributes=attributes or {},
        )
        _collect_logs(driver, result)
    finally:
        driver.quit()
    result.seconds = time.monotonic() - t0
    return result


def _collect_logs(driver, result: PageResult) -> None:
    """Console, exceptions and log entries (``browser`` log); requests (``performance`` log)."""
    for entry in driver.get_log("browser"):
        source = entry.get("source")
        if source == "console-api":
            level = _LEVELS.get(entry.get("level"), str(entry.get("level")).lower())
            result.console.append({"type": level, "text": _console_text(entry["message"])})
        elif source == "javascript":
            result.exceptions.append(re.sub(r"^\S+ \d+:\d+ ", "", entry["message"], count=1))
        else:
            result.log_entries.append(entry)
    urls: dict[str, str] = {}
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        method, p = message.get("method"), message.get("params", {})
        if method == "Network.requestWillBeSent":
            urls[p["requestId"]] = p["request"]["url"]
            result.requests.append(p["request"]["url"])
        elif method == "Network.loadingFailed":
            url = urls.get(p["requestId"], "?")
            result.failed_requests.append(f"{url[:200]}: {p.get('errorText')}")


def _rect(driver, eid: str, viewport: bool = False) -> dict | None:
    """Bounding box of element ``eid`` in page (or viewport) CSS pixels."""
    origin = 0 if viewport else 1
    return driver.execute_script(
        "var e=document.getElementById(arguments[0]);"
        "if(!e)return null;var r=e.getBoundingClientRect();"
        "return {x:r.left+arguments[1]*scrollX,y:r.top+arguments[1]*scrollY,"
        "width:r.width,height:r.height};",
        eid,
        origin,
    )


def _hover(driver, eid: str, fx: float, fy: float) -> str:
    """Text of plotly's hover label after moving the mouse onto element ``eid``."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    element = driver.find_element(By.ID, eid)
    driver.execute_script("arguments[0].scrollIntoView({block:'center'});", element)
    box = _rect(driver, eid, viewport=True)
    if not box:
        return ""
    # WebDriver offsets are from the element's centre.
    dx = int(round((fx - 0.5) * box["width"]))
    dy = int(round((fy - 0.5) * box["height"]))
    script = (
        "var l=document.getElementById(arguments[0]).querySelectorAll('.hoverlayer .hovertext');"
        "return Array.prototype.map.call(l,function(t){return t.textContent;}).join(' | ');"
    )
    for step in (-1, 0, -1, 0):
        ActionChains(driver).move_to_element_with_offset(element, dx + step, dy).perform()
        time.sleep(0.15)
        text = driver.execute_script(script, eid)
        if text:
            return text
    return ""


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

    ``python tests/browser.py report.html --screenshot shot.png``; exits
    non-zero on a JavaScript error, a failed load, a request for anything
    outside the file, or a page that never finishes.
    """
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python tests/browser.py", description=main.__doc__)
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
