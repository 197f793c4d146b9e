"""Debian's Chromium, headless with software WebGL2 and no network, under chromedriver: what the
viewer's tests and its benchmark drive (one definition of the flags and the start-up)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

CHROMIUM = os.environ.get("VEMCELL_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = (
    os.environ.get("VEMCELL_CHROMEDRIVER")
    or shutil.which("chromedriver")
    or "/usr/bin/chromedriver"
)
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--host-resolver-rules=MAP * ~NOTFOUND",  # offline: no host name resolves
]
# Only the loopback address resolves (for pages and data served by the test itself).
LOOPBACK_ONLY = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"


def missing() -> list[str]:
    """What is missing to start the browser (empty when it can start)."""
    gone = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).is_file()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        gone.append("the selenium package")
    return gone


def start(
    window: tuple[int, int],
    script_timeout_s: float,
    console_log: bool = False,
    extra_flags: Sequence[str] = (),
):
    """A selenium driver of a fresh headless Chromium (its own empty profile).

    ``extra_flags`` come after :data:`FLAGS`; Chromium takes the last of a repeated switch.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="vemcell-chromium-")
    for flag in [
        *FLAGS,
        *extra_flags,
        f"--window-size={window[0]},{window[1]}",
        f"--user-data-dir={profile}",
    ]:
        options.add_argument(flag)
    if console_log:
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_script_timeout(script_timeout_s)
    return driver
