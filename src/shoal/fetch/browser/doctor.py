"""``shoal doctor`` for the browser: is Chromium usable on this machine?

:func:`check_browser` finds Chromium and chromedriver, reads their versions,
checks that they belong together and renders one ``data:`` page headless
through the same guarded start-up the crawler uses. Each finding is a
:class:`Check`; a failed one carries a hint saying what to do. Nothing here
needs selenium to import, so the doctor can report that it is missing.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

from shoal.fetch.browser.launch import (
    APT_HINT,
    CHROMEDRIVER_PATHS,
    CHROMIUM_PATHS,
    find_chromedriver,
    find_chromium,
)

__all__ = ["Check", "check_browser"]


@dataclass(slots=True, frozen=True)
class Check:
    """One finding of the doctor: ``ok`` or not, what was seen, and what to do when not ok."""

    name: str
    ok: bool
    detail: str
    hint: str = ""


def _version(path: str) -> tuple[str | None, str]:
    """(major version, the program's own version line) from ``path --version``."""
    try:
        done = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"{path} --version failed: {exc}"
    line = (done.stdout.strip() or done.stderr.strip()).splitlines()
    text = line[0] if line else ""
    match = re.search(r"\b(\d+)\.\d+\.\d+", text)
    return (match.group(1) if match else None), text or f"{path} --version printed nothing"


def check_browser(chromium: str | None = None, chromedriver: str | None = None) -> list[Check]:
    """Find Chromium and chromedriver, compare their versions and render one headless page.

    ``chromium`` and ``chromedriver`` are the paths from ``[worker]`` when set.
    """
    checks: list[Check] = []
    try:
        import selenium

        checks.append(Check("selenium", True, f"selenium {selenium.__version__}"))
        have_selenium = True
    except ImportError:
        checks.append(
            Check("selenium", False, "selenium is not installed", "pip install 'shoal[browser]'")
        )
        have_selenium = False

    found_chromium = find_chromium(chromium)
    found_driver = find_chromedriver(chromedriver)
    majors: dict[str, str | None] = {}
    for name, wanted, found, hint in (
        ("chromium", chromium, found_chromium, f"{APT_HINT}, or set [worker] chromium to its path"),
        (
            "chromedriver",
            chromedriver,
            found_driver,
            f"{APT_HINT}, or set [worker] chromedriver to its path",
        ),
    ):
        if found is None:
            where = wanted or "PATH, " + ", ".join(
                CHROMIUM_PATHS if name == "chromium" else CHROMEDRIVER_PATHS
            )
            checks.append(Check(name, False, f"{name} not found (looked at {where})", hint))
            continue
        major, text = _version(found)
        majors[name] = major
        checks.append(Check(name, major is not None, f"{found}: {text}", "" if major else hint))

    if majors.get("chromium") and majors.get("chromedriver"):
        same = majors["chromium"] == majors["chromedriver"]
        checks.append(
            Check(
                "versions match",
                same,
                f"Chromium {majors['chromium']}, chromedriver {majors['chromedriver']}",
                ""
                if same
                else f"install Chromium and chromedriver of the same release: {APT_HINT}",
            )
        )

    if have_selenium and found_chromium and found_driver:
        from shoal.errors import ShoalError
        from shoal.fetch.browser.session import probe_browser

        try:
            product, took = probe_browser(found_chromium, found_driver)
        except ShoalError as exc:
            checks.append(Check("headless page", False, str(exc), APT_HINT))
        else:
            checks.append(
                Check(
                    "headless page",
                    True,
                    f"{product} rendered a data: page headless in {took:.1f}s",
                )
            )
    else:
        checks.append(
            Check(
                "headless page",
                False,
                "not tried: selenium, Chromium or chromedriver is missing",
                APT_HINT,
            )
        )
    return checks
