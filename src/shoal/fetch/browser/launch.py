"""Finding Chromium and chromedriver, and starting chromedriver under its guard.

Nothing here imports selenium, so ``shoal doctor`` can use it to report a
missing selenium.

Guarantees of :func:`launch_driver`:

- chromedriver runs under :mod:`shoal.fetch.browser.guard` in a new session,
  so Chromium sits in a process group of its own, a Ctrl-C to the worker's
  terminal does not reach it, and nothing outlives the worker (see the guard).
- chromedriver listens on loopback only (127.0.0.1 and ::1): no
  ``--allowed-ips`` and no ``--allowed-origins`` are given, because either
  switch makes chromedriver 156 listen on every interface, and neither can
  refuse a loopback ``Origin`` (a page served from 127.0.0.1 passes its origin
  check whatever the switches say).
- Its commands live under a random ``--url-base`` (128 bits): a request that
  does not know it, such as a page's ``fetch()`` that somehow got past the
  browser proxy, gets "unhandled request" and starts nothing. The proxy
  refusing shoal's own ports (:mod:`shoal.fetch.proxy.reach`) is the first
  line; this is the second.
- Proxy variables are removed from chromedriver's environment and
  ``SE_OFFLINE`` is set, so Selenium Manager never downloads anything.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

from shoal.errors import BrowserError, ErrorClass
from shoal.fetch.browser import guard

__all__ = [
    "APT_HINT",
    "CHROMEDRIVER_PATHS",
    "CHROMIUM_PATHS",
    "INSTALL_HINT",
    "Driver",
    "chromium_flags",
    "find_chromedriver",
    "find_chromium",
    "launch_driver",
    "real_binary",
    "stop_guard",
]

APT_HINT = "apt-get install chromium chromium-driver (Debian/Ubuntu)"
INSTALL_HINT = (
    f"install hint: {APT_HINT} "
    "or set [worker] chromedriver path (and chromium path) to existing executables"
)
CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/lib/chromium/chromium", "/usr/bin/chromium-browser")
CHROMEDRIVER_PATHS = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")
_CHROMIUM_NAMES = (
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
    "chrome",
)
_DEBIAN_CHROMIUM = "/usr/lib/chromium/chromium"
GUARD_PATH = guard.__file__
"""The guard program, run by path with ``python -I -S`` (standard library only)."""


def _executable(path: str) -> str | None:
    found = shutil.which(path)
    return found if found and os.access(found, os.X_OK) else None


def find_chromium(path: str | None = None) -> str | None:
    """The Chromium executable: ``path`` if given (None when it is not executable), else a search.

    The search tries PATH (``chromium``, ``chromium-browser``, ``google-chrome``)
    and then ``/usr/bin/chromium`` and ``/usr/lib/chromium/chromium``.
    """
    if path:
        return _executable(path)
    for name in _CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return next((p for p in CHROMIUM_PATHS if os.access(p, os.X_OK)), None)


def find_chromedriver(path: str | None = None) -> str | None:
    """The chromedriver executable: ``path`` if given (None when not executable), else PATH or /usr/bin."""
    if path:
        return _executable(path)
    found = shutil.which("chromedriver")
    if found:
        return found
    return next((p for p in CHROMEDRIVER_PATHS if os.access(p, os.X_OK)), None)


def real_binary(path: str) -> str:
    """Skip Debian's ``/usr/bin/chromium`` launcher script when the real binary is next to it.

    The script adds flags of its own from ``/etc/chromium.d`` (remote extensions
    among them) that a crawler does not want.
    """
    try:
        with open(path, "rb") as f:
            is_script = f.read(2) == b"#!"
    except OSError:
        return path
    if is_script and os.access(_DEBIAN_CHROMIUM, os.X_OK):
        return _DEBIAN_CHROMIUM
    return path


def chromium_flags(
    *,
    profile_dir: str,
    proxy: str | None,
    user_agent: str | None,
    ignore_certificate_errors: bool = False,
) -> list[str]:
    """The command-line flags of a crawling Chromium: headless, quiet, no outside connections.

    Everything that would phone home (component and extension updates, sync,
    safe browsing, translate, metrics, domain reliability, field trials) is off,
    QUIC is off so that every request can go through the HTTP proxy, loopback
    is not bypassed (``<-loopback>``: requests to 127.0.0.1 go through the
    proxy too), and WebRTC may not use UDP outside the proxy.
    """
    flags = [
        "--headless=new",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile_dir}",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--disable-client-side-phishing-detection",
        "--disable-domain-reliability",
        "--disable-breakpad",
        "--disable-crash-reporter",
        "--disable-field-trial-config",
        "--disable-background-timer-throttling",
        "--disable-backgrounding-occluded-windows",
        "--disable-renderer-backgrounding",
        "--disable-notifications",
        "--disable-quic",
        "--dns-prefetch-disable",
        "--no-pings",
        "--metrics-recording-only",
        "--password-store=basic",
        "--use-mock-keychain",
        "--mute-audio",
        "--hide-scrollbars",
        "--window-size=1366,900",
        "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
        "--webrtc-ip-handling-policy=disable_non_proxied_udp",
        "--disable-features=Translate,OptimizationHints,OptimizationGuideModelDownloading,"
        "MediaRouter,DialMediaRouteProvider,AutofillServerCommunication,"
        "CertificateTransparencyComponentUpdater,InterestFeedContentSuggestions,"
        "HttpsUpgrades,HttpsFirstBalancedModeAutoEnable,PrivacySandboxSettings4,"
        "SafeBrowsingEnhancedProtection,NetworkTimeServiceQuerying,"
        "AcceptCHFrame,DnsOverHttps,LensOverlay",
    ]
    if os.geteuid() == 0:
        flags.append("--no-sandbox")
    if proxy:
        flags += [f"--proxy-server={proxy}", "--proxy-bypass-list=<-loopback>"]
    if user_agent:
        flags.append(f"--user-agent={user_agent}")
    if ignore_certificate_errors:
        flags.append("--ignore-certificate-errors")
    return flags


@dataclass(slots=True, frozen=True)
class Driver:
    """A running guard + chromedriver: where to send WebDriver commands, and what to kill."""

    guard: subprocess.Popen[bytes]
    port: int
    url_base: str
    """The secret path prefix of every command (``/`` + 32 hex digits)."""
    workdir: str

    @property
    def url(self) -> str:
        """The WebDriver endpoint, secret prefix included."""
        return f"http://127.0.0.1:{self.port}{self.url_base}"


def launch_driver(
    chromedriver: str, *, workdir: str, grace: float, start_timeout: float = 30.0
) -> Driver:
    """Start guard + chromedriver and wait until chromedriver listens (blocking).

    Raises :class:`~shoal.errors.BrowserError` (``CRITICAL``) when it exits or
    does not listen in time; the caller stops the guard on any later failure.
    """
    port = free_port()
    url_base = "/" + secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["SE_OFFLINE"] = "true"
    with open(os.path.join(workdir, "driver.log"), "wb") as log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                "-I",
                "-S",
                GUARD_PATH,
                workdir,
                str(grace),
                chromedriver,
                f"--port={port}",
                f"--url-base={url_base}",
            ],
            stdin=subprocess.PIPE,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            close_fds=True,
        )
    end = time.monotonic() + start_timeout
    try:
        while not port_open(port):
            if process.poll() is not None:
                raise BrowserError(
                    ErrorClass.CRITICAL,
                    f"chromedriver {chromedriver} exited at start: {tail(workdir)}; {INSTALL_HINT}",
                )
            if time.monotonic() > end:
                raise BrowserError(
                    ErrorClass.CRITICAL,
                    f"chromedriver did not listen within {start_timeout:g}s; {INSTALL_HINT}",
                )
            time.sleep(0.02)
    except BaseException:
        stop_guard(process, grace)
        raise
    return Driver(guard=process, port=port, url_base=url_base, workdir=workdir)


def free_port() -> int:
    """A TCP port of 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    """Whether something accepts connections on ``127.0.0.1:port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def tail(workdir: str, limit: int = 600) -> str:
    """The end of chromedriver's log in ``workdir``, on one line."""
    try:
        with open(os.path.join(workdir, "driver.log"), "rb") as f:
            data = f.read()[-limit:]
    except OSError:
        return "(no log)"
    return data.decode("utf-8", "replace").strip().replace("\n", " | ") or "(empty log)"


def stop_guard(process: subprocess.Popen[bytes], grace: float) -> None:
    """Ask the guard to tear everything down and wait for it (blocking)."""
    with contextlib.suppress(OSError, ValueError):
        if process.stdin is not None:
            process.stdin.close()
    with contextlib.suppress(OSError):
        process.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(grace + 8)
