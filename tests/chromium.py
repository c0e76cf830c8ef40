"""Debian's Chromium for the browser tests, through Playwright (never a downloaded browser).

A browser test that cannot find the browser fails and says how to install it; it never skips,
so a machine without Chromium cannot pass the suite by leaving the pages untested.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run",
]  # fmt: skip


def launch(playwright: Any) -> Any:
    """Launch headless Chromium; fail the test (not skip) when it is not installed."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(
            f"the browser tests need Debian's Chromium at {CHROMIUM}: install it with "
            "`apt-get install chromium` (`make chromium` does; `make test` runs it first)",
            pytrace=False,
        )
    return playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
