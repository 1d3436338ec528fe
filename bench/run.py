"""Benchmark shoal against Scrapy on a generated 21,001-page board site served by nginx.

Steps: generate the site (cached per page count), serve it with a private nginx
on a free 127.0.0.1 port (or, without nginx, a small asyncio fallback server
that may itself be the bottleneck), run ``shoal crawl`` and then Scrapy against
it, each with a fresh nginx and access log, and print one row per tool:

    tool, pages, seconds, pages/s, CPU s, CPU ms/page, peak RSS MB, exactly-once

*pages* are the site's pages that the tool requested (from the access log);
*seconds* is the wall time of the tool's process; CPU is user + system time of
that process and every process it waited for (``os.wait4``); peak RSS is the
larger of ``ru_maxrss`` and the peak summed RSS of its process tree (sampled
with psutil when available). *exactly-once* checks the access log: every page
requested exactly once (robots.txt aside), nothing outside the site's pages.

Usage (from the repository root)::

    .venv/bin/python bench/run.py [--pages 20000] [--no-scrapy] [--concurrency 64] [--keep] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

import gen_site  # noqa: E402

NGINX = "/usr/sbin/nginx"
SCRAPY_VENV = BENCH / ".venv-scrapy"
REQUIREMENTS = BENCH / "requirements-scrapy.txt"
BAR_PAGES_PER_S = 700.0


# ---------------------------------------------------------------------------
# The site and the servers.
# ---------------------------------------------------------------------------


def ensure_site(workdir: Path, n_posts: int) -> Path:
    """The generated site for ``n_posts``, generating it unless a complete copy is cached."""
    site = workdir / f"site-{n_posts}"
    marker = site / ".complete"
    if marker.exists() and marker.read_text() == gen_site.FORMAT_VERSION:
        return site
    if site.exists():
        shutil.rmtree(site)
    t0 = time.monotonic()
    pages = gen_site.generate(site, n_posts)
    marker.write_text(gen_site.FORMAT_VERSION)
    log(f"generated {pages} pages in {site} ({time.monotonic() - t0:.1f} s)")
    return site


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(
    port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 10.0
) -> None:
    """Wait until something accepts connections on ``port``, or fail if ``proc`` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout} s")


NGINX_CONF = """\
worker_processes 1;
daemon off;
master_process on;
pid {run}/nginx.pid;
error_log {run}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    log_format bench '$request_uri $status $body_bytes_sent';
    access_log {log} bench buffer=256k flush=1s;
    client_body_temp_path {run}/tmp-body;
    proxy_temp_path {run}/tmp-proxy;
    fastcgi_temp_path {run}/tmp-fastcgi;
    uwsgi_temp_path {run}/tmp-uwsgi;
    scgi_temp_path {run}/tmp-scgi;
    types {{ text/html html; text/plain txt; }}
    default_type application/octet-stream;
    charset utf-8;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 65;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        server_name localhost;
        root {site};
        index index.html;
    }}
}}
"""


class Server:
    """nginx (or the fallback server) serving the site, with its own access log."""

    def __init__(self, site: Path, run: Path, name: str, use_nginx: bool) -> None:
        self.site = site
        self.run = run
        self.port = free_port()
        self.access_log = run / f"access-{name}.log"
        self.kind = "nginx" if use_nginx else "fallback"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start serving and wait until the port accepts connections."""
        if self.kind == "nginx":
            conf = self.run / f"nginx-{self.port}.conf"
            conf.write_text(
                NGINX_CONF.format(run=self.run, log=self.access_log, port=self.port, site=self.site)
            )
            cmd = [
                NGINX,
                "-p",
                str(self.run),
                "-c",
                str(conf),
                "-e",
                str(self.run / "nginx-error.log"),
            ]
        else:
            cmd = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--serve-fallback",
                str(self.site),
                str(self.port),
                str(self.access_log),
            ]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, start_new_session=True)
        wait_listening(self.port, self.proc, self.kind)

    def stop(self) -> None:
        """Stop gracefully (so the access log is flushed), then by force if it hangs."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGQUIT if self.kind == "nginx" else signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_fallback(site: Path, port: int, access_log: Path) -> None:
    """A minimal HTTP/1.1 keep-alive static file server on asyncio (uvloop when installed).

    Pages are read once and kept in memory; each request is logged as
    ``URI STATUS BYTES`` like the nginx log format above. It is cheap, but on a
    small machine it shares the CPUs with the crawler and may be the bottleneck.
    """
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    cache: dict[str, bytes | None] = {}
    out = open(access_log, "w", buffering=1 << 16)  # noqa: SIM115 - closed at exit below
    root = site.resolve()

    def lookup(uri: str) -> bytes | None:
        if uri in cache:
            return cache[uri]
        path = uri.split("?", 1)[0]
        if path.endswith("/"):
            path += "index.html"
        target = (root / path.lstrip("/")).resolve()
        body = None
        if target.is_relative_to(root) and target.is_file():
            body = target.read_bytes()
        cache[uri] = body
        return body

    class Http(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: asyncio.Transport = transport  # type: ignore[assignment]
            self.buf = b""

        def data_received(self, data: bytes) -> None:
            self.buf += data
            while b"\r\n\r\n" in self.buf:
                head, self.buf = self.buf.split(b"\r\n\r\n", 1)
                parts = head.split(b"\r\n", 1)[0].split()
                uri = parts[1].decode("latin-1") if len(parts) >= 2 else "/"
                body = lookup(uri)
                if body is None:
                    status, body = 404, b"not found\n"
                else:
                    status = 200
                ctype = b"text/plain" if uri.endswith(".txt") else b"text/html; charset=utf-8"
                self.transport.write(
                    b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
                    % (status, b"OK" if status == 200 else b"Not Found", ctype, len(body))
                    + body
                )
                out.write(f"{uri} {status} {len(body)}\n")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = loop.create_future()
        loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
        server = await loop.create_server(Http, "127.0.0.1", port, backlog=4096)
        await stop
        server.close()

    try:
        asyncio.run(main())
    finally:
        out.close()


# ---------------------------------------------------------------------------
# Measuring one tool.
# ---------------------------------------------------------------------------


@dataclass
class Row:
    """One measured run of one tool."""

    tool: str
    pages: int = 0
    seconds: float = 0.0
    pages_per_s: float = 0.0
    cpu_s: float = 0.0
    cpu_ms_per_page: float = 0.0
    peak_rss_mb: float = 0.0
    exactly_once: str = ""
    exit_code: int = 0
    requests: int = 0
    duplicates: int = 0
    missing: int = 0
    unexpected: int = 0
    errors: int = 0
    server: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Measured:
    """What one process cost."""

    exit_code: int
    wall: float
    cpu: float
    peak_rss: int


class TreeRss:
    """Samples the summed RSS of a process and its descendants in a background thread."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        try:
            import psutil
        except ImportError:
            return
        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self._stop.is_set():
            total = 0
            try:
                for p in [root, *root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        total += p.memory_info().rss
            except psutil.Error:
                return
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def measure(
    cmd: list[str], cwd: Path, output: Path, timeout: float, env: dict[str, str] | None = None
) -> Measured:
    """Run ``cmd`` to its end; wall time, CPU (user+sys) and peak RSS of it and its waited-for children."""
    with open(output, "wb") as out:
        t0 = time.monotonic()
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        killer = threading.Timer(timeout, lambda: os.killpg(proc.pid, signal.SIGKILL))
        killer.start()
        try:
            with TreeRss(proc.pid) as rss:
                _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # interrupted: do not leave the crawler running
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        finally:
            killer.cancel()
        wall = time.monotonic() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    # Anything the tool left running in its session is not ours to keep.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    return Measured(
        proc.returncode,
        wall,
        usage.ru_utime + usage.ru_stime,
        max(usage.ru_maxrss * 1024, rss.peak),
    )


def check_log(access_log: Path, expected: list[str]) -> dict[str, int]:
    """Counts from an access log of ``URI STATUS BYTES`` lines (robots.txt aside).

    ``pages``: site pages answered 200 at least once; ``requests``: all requests;
    ``duplicates``: requests for a site page beyond its first; ``missing``: site
    pages never answered 200; ``unexpected``: requests for anything else;
    ``errors``: answers other than 200 (the server, not the crawler, failed).
    """
    counts: Counter[str] = Counter()
    ok: set[str] = set()
    errors = 0
    with open(access_log, encoding="latin-1") as f:
        for line in f:
            uri, _, rest = line.partition(" ")
            if uri == "/robots.txt":
                continue
            counts[uri] += 1
            if rest.startswith("200 "):
                ok.add(uri)
            else:
                errors += 1
    want = set(expected)
    pages = len(ok & want)
    return {
        "pages": pages,
        "requests": sum(counts.values()),
        "duplicates": sum(c - 1 for u, c in counts.items() if u in want and c > 1),
        "missing": len(want) - pages,
        "unexpected": sum(c for u, c in counts.items() if u not in want),
        "errors": errors,
    }


def verdict(c: dict[str, int]) -> str:
    """'yes', or what went wrong (``N duplicates, N missing, ...``)."""
    bad = [f"{c[k]} {k}" for k in ("duplicates", "missing", "unexpected", "errors") if c[k]]
    return "yes" if not bad else ", ".join(bad)


def run_tool(
    name: str,
    cmd: list[str],
    server: Server,
    run: Path,
    expected: list[str],
    timeout: float,
    env: dict[str, str] | None = None,
) -> Row:
    """Serve the site, run one crawler against it, and measure it."""
    output = run / f"{name}.out"
    with server:
        log(f"{name}: {' '.join(cmd)}")
        m = measure(cmd, run, output, timeout, env)
    c = check_log(server.access_log, expected)
    pages = c["pages"]
    row = Row(
        tool=name,
        pages=pages,
        seconds=round(m.wall, 2),
        pages_per_s=round(pages / m.wall, 1) if m.wall else 0.0,
        cpu_s=round(m.cpu, 2),
        cpu_ms_per_page=round(1000 * m.cpu / pages, 2) if pages else 0.0,
        peak_rss_mb=round(m.peak_rss / 2**20, 1),
        exactly_once=verdict(c),
        exit_code=m.exit_code,
        requests=c["requests"],
        duplicates=c["duplicates"],
        missing=c["missing"],
        unexpected=c["unexpected"],
        errors=c["errors"],
        server=server.kind,
    )
    errlog = server.run / "nginx-error.log"
    if c["errors"] and errlog.exists():
        log(f"the server answered {c['errors']} requests with errors; see {errlog}")
    if m.exit_code != 0:
        row.exactly_once = f"exit {m.exit_code}; " + row.exactly_once
        tail = output.read_text(errors="replace").splitlines()[-15:]
        log(f"{name} exited with {m.exit_code}; last lines of {output}:\n  " + "\n  ".join(tail))
    return row


# ---------------------------------------------------------------------------
# shoal and Scrapy.
# ---------------------------------------------------------------------------

SHOAL_SPEC = """\
# Written by bench/run.py: crawl the generated benchmark site as fast as it allows.
[crawl]
name = "bench"
seeds = ["{base_url}/"]

[[rules]]
name = "home"
glob = "/"
kind = "list"

[[rules]]
name = "list"
glob = "/list/*"
kind = "list"

[[rules]]
name = "post"
glob = "/posts/*"
kind = "detail"

[scope]
allow_private = true

[politeness]
delay = 0
jitter = 0
concurrency_per_host = {concurrency}
robots = true

[limits]
max_depth = 100000
fetch_timeout = 30

[storage]
frontier = "sqlite:///{run}/frontier.sqlite"
archive = "{run}/warc"

[worker]
concurrency = {concurrency}
"""


def shoal_command(override: str | None) -> list[str]:
    """How to call shoal: ``--shoal-cmd``, else the venv's console script, else ``python -m shoal``."""
    if override:
        return override.split()
    script = Path(sys.executable).parent / "shoal"
    if script.exists():
        return [str(script)]
    found = shutil.which("shoal")
    return [found] if found else [sys.executable, "-m", "shoal"]


def run_shoal(
    args: argparse.Namespace, site: Path, run: Path, expected: list[str], use_nginx: bool
) -> Row:
    """Crawl the site with ``shoal crawl`` and read its summary."""
    server = Server(site, run, "shoal", use_nginx)
    spec = run / "bench.toml"
    spec.write_text(
        SHOAL_SPEC.format(base_url=server.base_url, concurrency=args.concurrency, run=run)
    )
    summary = run / "shoal-summary.json"
    cmd = [
        *shoal_command(args.shoal_cmd),
        "crawl",
        str(spec),
        "--no-progress",
        "--summary-json",
        str(summary),
    ]
    row = run_tool("shoal", cmd, server, run, expected, args.timeout)
    if summary.exists():
        with contextlib.suppress(ValueError):
            row.extra["summary"] = json.loads(summary.read_text())
    return row


def scrapy_venv() -> Path:
    """``bench/.venv-scrapy`` with the pinned Scrapy, created or updated when the requirements changed."""
    want = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    marker = SCRAPY_VENV / ".requirements.sha256"
    scrapy = SCRAPY_VENV / "bin" / "scrapy"
    if scrapy.exists() and marker.exists() and marker.read_text() == want:
        return scrapy
    log(f"creating {SCRAPY_VENV} (pip install -r {REQUIREMENTS.name})")
    subprocess.run([sys.executable, "-m", "venv", str(SCRAPY_VENV)], check=True)
    pip = [
        str(SCRAPY_VENV / "bin" / "python"),
        "-m",
        "pip",
        "install",
        "-q",
        "--disable-pip-version-check",
    ]
    subprocess.run([*pip, "-r", str(REQUIREMENTS)], check=True)
    marker.write_text(want)
    return scrapy


def run_scrapy(
    args: argparse.Namespace, site: Path, run: Path, expected: list[str], use_nginx: bool
) -> Row:
    """Crawl the site with the plain Scrapy spider of ``scrapy_spider.py``."""
    scrapy = scrapy_venv()
    server = Server(site, run, "scrapy", use_nginx)
    stats = run / "scrapy-stats.json"
    cmd = [
        str(scrapy),
        "runspider",
        str(BENCH / "scrapy_spider.py"),
        "-a",
        f"start_url={server.base_url}/",
        "-a",
        f"stats_out={stats}",
        "-s",
        f"CONCURRENT_REQUESTS={args.concurrency}",
        "-s",
        f"CONCURRENT_REQUESTS_PER_DOMAIN={args.concurrency}",
    ]
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("VIRTUAL_ENV", "PYTHONPATH", "SCRAPY_SETTINGS_MODULE")
    }
    row = run_tool("scrapy", cmd, server, run, expected, args.timeout, env)
    if stats.exists():
        with contextlib.suppress(ValueError):
            row.extra["stats"] = json.loads(stats.read_text())
    return row


# ---------------------------------------------------------------------------
# Output.
# ---------------------------------------------------------------------------

COLUMNS = (
    ("tool", "tool", "{}"),
    ("pages", "pages", "{}"),
    ("seconds", "seconds", "{:.1f}"),
    ("pages_per_s", "pages/s", "{:.1f}"),
    ("cpu_s", "CPU s", "{:.1f}"),
    ("cpu_ms_per_page", "CPU ms/page", "{:.2f}"),
    ("peak_rss_mb", "peak RSS MB", "{:.0f}"),
    ("exactly_once", "exactly-once", "{}"),
)


def table(rows: list[Row]) -> str:
    """The rows as an aligned text table, with the shoal/scrapy ratio under it."""
    cells = [[head for _, head, _ in COLUMNS]]
    cells += [[fmt.format(getattr(r, key)) for key, _, fmt in COLUMNS] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(
            c.ljust(w) if i in (0, 7) else c.rjust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    by = {r.tool: r for r in rows}
    if "shoal" in by and "scrapy" in by and by["scrapy"].pages_per_s:
        lines.append(
            f"\nshoal/scrapy pages/s: {by['shoal'].pages_per_s / by['scrapy'].pages_per_s:.2f}x"
        )
    if "shoal" in by:
        ok = by["shoal"].pages_per_s >= BAR_PAGES_PER_S
        lines.append(f"shoal bar ({BAR_PAGES_PER_S:.0f} pages/s): {'met' if ok else 'NOT met'}")
    return "\n".join(lines)


def log(msg: str) -> None:
    """Progress on stderr, so that ``--json`` output stays clean."""
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def run_folder(workdir: Path, keep: bool) -> Iterator[Path]:
    """A fresh folder for one benchmark run (spec, frontier, WARCs, logs), removed unless kept."""
    run = Path(tempfile.mkdtemp(prefix="run-", dir=workdir))
    run.chmod(0o755)
    try:
        yield run
    finally:
        if keep:
            log(f"kept {run}")
        else:
            shutil.rmtree(run, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve-fallback"]:
        serve_fallback(Path(argv[1]), int(argv[2]), Path(argv[3]))
        return 0
    ap = argparse.ArgumentParser(
        description="Benchmark shoal against Scrapy on a generated board site."
    )
    ap.add_argument(
        "--pages",
        type=int,
        default=20_000,
        help="detail pages of the site (default 20000: 21,001 pages)",
    )
    ap.add_argument(
        "--concurrency",
        type=int,
        default=64,
        help="requests in flight, for both tools (default 64)",
    )
    ap.add_argument("--no-scrapy", action="store_true", help="measure shoal only")
    ap.add_argument("--no-shoal", action="store_true", help="measure Scrapy only")
    ap.add_argument(
        "--keep", action="store_true", help="keep the run folder (spec, frontier, WARCs, logs)"
    )
    ap.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    ap.add_argument(
        "--workdir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "shoal-bench",
        help="where the site is cached and runs happen",
    )
    ap.add_argument(
        "--fallback-server",
        action="store_true",
        help="serve with the asyncio fallback even if nginx exists",
    )
    ap.add_argument(
        "--shoal-cmd", help="command to run instead of the venv's 'shoal' (to test the harness)"
    )
    ap.add_argument(
        "--timeout", type=float, default=3600.0, help="seconds after which a crawl is killed"
    )
    ap.add_argument(
        "--min-rate", type=float, default=0.0, help="exit 1 when shoal is below this many pages/s"
    )
    args = ap.parse_args(argv)

    args.workdir.mkdir(parents=True, exist_ok=True)
    args.workdir.chmod(0o755)
    site = ensure_site(args.workdir, args.pages)
    expected = gen_site.page_uris(args.pages)
    use_nginx = os.path.exists(NGINX) and not args.fallback_server
    if not use_nginx:
        log(
            "nginx not found: serving with the asyncio fallback server, which may be the bottleneck"
        )
    log(
        f"{len(expected)} pages, concurrency {args.concurrency}, {os.cpu_count()} CPUs, server {'nginx' if use_nginx else 'fallback'}"
    )

    rows: list[Row] = []
    with run_folder(args.workdir, args.keep) as run:
        if not args.no_shoal:
            rows.append(run_shoal(args, site, run, expected, use_nginx))
        if not args.no_scrapy:
            rows.append(run_scrapy(args, site, run, expected, use_nginx))

    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2, default=str))
    else:
        print(table(rows))
    failed = any(r.exit_code != 0 or r.exactly_once != "yes" for r in rows if r.tool == "shoal")
    slow = any(r.tool == "shoal" and r.pages_per_s < args.min_rate for r in rows)
    return 1 if failed or slow else 0


if __name__ == "__main__":
    sys.exit(main())
