"""Running a crawl in this process: seeds in, one worker, a live progress display.

``shoal crawl`` (embedded, SQLite: :func:`crawl_here`) and ``shoal work`` (a
fleet member: :func:`work_on`, or :func:`work_in_processes` for several on one
machine) both come here; they differ only in where the spec comes from and
whether seeds are added. ``shoal submit`` stores a crawl for them
(:func:`submit_crawl`). A run ends with the crawl's summary
(:func:`run_worker`); a worker that cannot go on raises
:class:`~shoal.errors.CriticalStop` (the command exits 3).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console
from rich.markup import escape

from shoal.archive.sink import ArchiveSink
from shoal.errors import CriticalStop, DatabaseUnavailable, SpecError, URLError
from shoal.exchange import FetchRequest
from shoal.fetch.address import AddressPolicy
from shoal.fetch.base import Fetcher
from shoal.fetch.http import HttpFetcher
from shoal.fetch.robots import RobotsCache
from shoal.frontier.contract import CrawlInfo, Frontier, NewURL
from shoal.frontier.sql import SqlFrontier
from shoal.notify import Notifier
from shoal.resubmit import compare
from shoal.spec import Spec, parse_spec
from shoal.status.collect import crawl_summary
from shoal.status.live import crawl_progress
from shoal.urls import canonicalize
from shoal.worker import Worker, WorkerStats, make_worker_id
from shoal.worker.links import Router
from shoal.worker.revisits import RevisitPlan, source_urls

__all__ = [
    "build_fetchers",
    "crawl_here",
    "http_fetcher",
    "open_frontier",
    "robots_getter",
    "run_async",
    "run_loop",
    "run_worker",
    "say_changes",
    "seed_urls",
    "start_crawl",
    "stays_open",
    "submit_crawl",
    "work_in_processes",
    "work_on",
]

log = logging.getLogger(__name__)


_REFUSED_LOGIN = (
    "password authentication failed",
    "access denied for user",
    "no password supplied",
)
"""Messages of a login the server refused (PostgreSQL, MySQL/MariaDB): not retried at start."""


def open_frontier(url: str, *, create: bool, grace: float) -> SqlFrontier:
    """Open the frontier, waiting up to ``grace`` seconds while its database is down or starting up.

    A worker started before its database (a fleet booting, a server
    restarting) waits as a running worker does, instead of failing at once;
    past the grace it stops with :class:`~shoal.errors.CriticalStop` (exit 3).
    A refused login is raised at once (a wrong password does not heal).
    """
    start = time.monotonic()
    delay = 0.5
    while True:
        try:
            return SqlFrontier(url, create=create)
        except DatabaseUnavailable as exc:
            if any(words in str(exc).lower() for words in _REFUSED_LOGIN):
                raise  # waiting does not fix a wrong user or password: exit 2 with the message
            waited = time.monotonic() - start
            if waited >= grace:
                raise CriticalStop(
                    f"the frontier database was unreachable for {waited:.0f}s at start: {exc} "
                    "(start the database, or raise [worker] db_grace_seconds / --db-grace)"
                ) from None
            pause = min(delay, grace - waited)
            log.warning("frontier database unreachable (%s); retrying in %.1fs", exc, pause)
            time.sleep(pause)
            delay = min(delay * 2, 10.0)


def seed_urls(spec: Spec) -> list[NewURL]:
    """The spec's seeds as frontier rows; a seed no rule matches is a list page."""
    router = Router(spec.rules)
    out = []
    for s in spec.crawl.seeds:
        try:
            c = canonicalize(s)
        except URLError as exc:
            raise SpecError(f"crawl.seeds: {exc} (got {s!r})") from None
        t = router.match(c.url)
        rule, kind, prio = (t.rule, t.kind, t.priority) if t is not None else (-1, "list", 0)
        out.append(NewURL(c.url, c.url_key, c.host, c.host_key, rule, kind, 0, prio))
    return out


def start_crawl(frontier: Frontier, spec: Spec, spec_text: str) -> CrawlInfo:
    """Store the crawl, its spec and its page budget, add the seeds (existing ones untouched)."""
    crawl = frontier.open_crawl(spec.name, spec_text, spec.limits.max_pages)
    delay_ms = int(spec.politeness.delay * 1000)
    frontier.update_host_delays(crawl.id, delay_ms)
    frontier.add_urls(crawl.id, seed_urls(spec) + source_urls(spec), delay_ms)
    return crawl


def http_fetcher(spec: Spec, policy: AddressPolicy) -> HttpFetcher:
    """The HTTP fetcher of a crawl: the spec's User-Agent, caps, timeouts and concurrency."""
    return HttpFetcher(
        policy,
        user_agent=spec.politeness.user_agent,
        max_body_bytes=spec.limits.max_body_bytes,
        connect_timeout=spec.limits.connect_timeout,
        concurrency=spec.worker.concurrency,
    )


def build_fetchers(
    spec: Spec, policy: AddressPolicy, http: HttpFetcher | None = None
) -> dict[str, Fetcher]:
    """The HTTP fetcher (``http``, or one made for the spec), plus the browser fetcher when a rule renders with a browser."""
    fetchers: dict[str, Fetcher] = {"http": http or http_fetcher(spec, policy)}
    if any(r.render == "browser" for r in spec.rules):
        try:
            from shoal.fetch.browser.fetcher import BrowserFetcher
        except ImportError as exc:
            raise SpecError(
                f'a rule has render = "browser" but the browser fetcher cannot load ({exc}): '
                "install shoal[browser] and Debian's chromium + chromium-driver, then run `shoal doctor`"
            ) from None
        fetchers["browser"] = BrowserFetcher(
            policy,
            scope_hosts=[*spec.scope.allowed_hosts, *spec.crawl.seeds],
            pool_size=max(1, spec.worker.browsers),
            recycle_pages=spec.worker.browser_recycle_pages,
            user_agent=spec.politeness.user_agent,
            chromium=spec.worker.chromium,
            chromedriver=spec.worker.chromedriver,
            page_load_timeout=spec.limits.fetch_timeout,
            max_body_bytes=spec.limits.max_body_bytes,
        )
    return fetchers


def robots_getter(
    http: HttpFetcher, timeout: float, before: Callable[[str], Awaitable[None]]
) -> Callable[[str], Awaitable[tuple[int, bytes, str | None]]]:
    """The fetch a :class:`~shoal.fetch.robots.RobotsCache` reads ``robots.txt`` with: ``(status, body, Location)``.

    It awaits ``before(url)`` first (the host's interval), fetches through
    ``http`` within ``timeout`` seconds and undoes a Content-Encoding (a
    mislabelled one leaves the bytes as they came).
    """

    async def get(url: str) -> tuple[int, bytes, str | None]:
        await before(url)  # robots.txt requests keep the host's interval too
        res = await http.fetch(FetchRequest(url, None, time.monotonic() + timeout))
        body = res.body
        enc = res.header("content-encoding")
        if enc and enc.strip().lower() not in ("", "identity"):
            from shoal.content.codings import content_decode
            from shoal.errors import ContentCodingError

            with contextlib.suppress(
                ContentCodingError
            ):  # mislabelled coding: parse the bytes as they came
                body, _ = content_decode(body, enc, 512 * 1024)
        return res.status, body, res.header("location")

    return get


async def run_async(
    spec: Spec,
    frontier: Frontier,
    crawl: CrawlInfo,
    *,
    worker_id: str | None = None,
    console: Console | None = None,
    progress: bool = True,
    install_signals: bool = True,
    progress_every: float = 10.0,
    stop: asyncio.Event | None = None,
) -> tuple[WorkerStats, bool]:
    """Run one worker on ``crawl`` until it is finished or stopped; returns its stats and whether it finished.

    With ``progress`` the crawl's progress is shown: in place when ``console``
    is a terminal, else as one ``shoal.progress`` log line every ``progress_every`` seconds.
    """
    wid = worker_id or make_worker_id()
    # Orphaned WARC files of this machine are closed (and uploaded) before anything is fetched.
    sink = ArchiveSink(spec, frontier, crawl.id, wid)
    sink.start()
    released = frontier.release_dead_local(crawl.id, socket.gethostname(), psutil.pid_exists)
    if released:
        log.info("%d URL(s) leased by a dead worker on this machine are pending again", released)
    policy = AddressPolicy(spec.scope.allow_private, spec.scope.allow_cidrs)
    http = http_fetcher(spec, policy)
    fetchers = build_fetchers(spec, policy, http)
    holder: list[Worker] = []

    async def before_robots(url: str) -> None:
        if holder:
            await holder[0].wait_host_slot(url)

    robots = (
        RobotsCache(
            robots_getter(http, min(30.0, spec.limits.fetch_timeout), before_robots),
            spec.politeness.user_agent,
        )
        if spec.politeness.robots
        else None
    )
    worker = Worker(
        spec=spec,
        frontier=frontier,
        crawl_id=crawl.id,
        fetchers=fetchers,
        archive=sink.writer,
        robots=robots,
        address_check=http.check_address,
        worker_id=wid,
        notifier=Notifier(spec.notify),
    )
    holder.append(worker)
    loop = asyncio.get_running_loop()
    stops = {"n": 0}

    def on_signal(sig: signal.Signals) -> None:
        # SIGTERM (systemd, GNU timeout, which may send its own too) only ever asks for a clean
        # stop, hurried from the second one on. Ctrl-C: the second hurries, the third quits at once.
        stops["n"] += 1
        if stops["n"] == 1:
            (console or Console(stderr=True)).print(
                "[yellow]stopping: finishing fetches in flight and giving back leases "
                "(Ctrl-C again to stop sooner)[/]"
            )
            worker.stop()
        elif sig is signal.SIGINT and stops["n"] > 2:
            os._exit(130)
        else:
            worker.hurry()

    if install_signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, on_signal, sig)
    display = (
        asyncio.create_task(crawl_progress(worker, spec.name, console, every=progress_every))
        if progress and console is not None
        else None
    )
    # Setting ``stop`` stops the worker cleanly, as SIGTERM does (callers running it as a task).
    stopper = asyncio.create_task(_stop_on(stop, worker)) if stop is not None else None
    try:
        try:
            stats = await worker.run()
        finally:
            # The last file is closed by the worker; wait here until every file is shipped
            # (not when the database is gone past its grace: the next worker here ships them).
            if worker.sync.db_gave_up:
                sink.grace = 0.0
            await loop.run_in_executor(None, sink.close)
    finally:
        if stopper is not None:
            stopper.cancel()
        if display is not None:
            display.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await display
        for f in fetchers.values():
            with contextlib.suppress(Exception):
                await f.close()
        if install_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)
    return stats, worker.finished


async def _stop_on(event: asyncio.Event, worker: Worker) -> None:
    await event.wait()
    worker.stop()


def run_loop(coro: Awaitable[Any]) -> Any:
    """Run a coroutine on uvloop when available (faster sockets), else asyncio."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(coro)  # type: ignore[arg-type]
    return uvloop.run(coro)  # type: ignore[arg-type]


def run_worker(
    spec: Spec,
    frontier: Frontier,
    crawl: CrawlInfo,
    *,
    console: Console,
    progress: bool,
    every: float = 10.0,
) -> dict[str, Any]:
    """One worker in this process until the crawl ends or is stopped; returns the crawl's summary.

    A critical stop is raised again as :class:`~shoal.errors.CriticalStop`
    saying that the worker stopped on it.
    """
    try:
        stats, finished = run_loop(
            run_async(
                spec, frontier, crawl, console=console, progress=progress, progress_every=every
            )
        )
    except CriticalStop as exc:
        raise CriticalStop(f"the worker stopped on a critical error: {exc.message}") from exc
    return crawl_summary(frontier, crawl, stats.summary(), finished)


def _print_changes(console: Console, heading: str, changes: list[str]) -> None:
    console.print(escape(heading))
    for line in changes:
        console.print("  " + escape(line))


def say_changes(frontier: Frontier, spec: Spec, spec_text: str, console: Console) -> None:
    """Before a crawl resumes with an edited spec, say what changed (it is stored and used)."""
    changes = compare(frontier, spec, spec_text).changes
    if changes:
        _print_changes(
            console, f"the spec of crawl {spec.name!r} changed since its last run:", changes
        )


def crawl_here(
    spec: Spec,
    spec_text: str,
    *,
    console: Console,
    db: str | None = None,
    progress: bool = True,
    summary_json: Path | None = None,
    every: float = 10.0,
) -> dict[str, Any]:
    """Run ``spec`` here (``shoal crawl``): its frontier (``db`` or the spec's, created if new), its seeds, one worker.

    Resumes where an earlier run stopped, saying first what changed in an
    edited spec. Returns the crawl's summary, also written as JSON to
    ``summary_json`` when given.
    """
    frontier = open_frontier(
        db or spec.frontier_url(), create=True, grace=spec.worker.db_grace_seconds
    )
    try:
        say_changes(frontier, spec, spec_text, console)
        crawl = start_crawl(frontier, spec, spec_text)
        summary = run_worker(spec, frontier, crawl, console=console, progress=progress, every=every)
    finally:
        frontier.close()
    if summary_json is not None:
        summary_json.write_text(json.dumps(summary, indent=2))
    return summary


def work_on(
    db: str,
    crawl: str | None,
    *,
    console: Console,
    concurrency: int | None = None,
    grace: float = 120.0,
    progress: bool = False,
) -> tuple[Spec, dict[str, Any]]:
    """Work on a submitted crawl (``shoal work``): ``crawl`` (default: the latest) in the database ``db``.

    The spec is the one stored with the crawl, with ``concurrency`` in place
    of its own when given. Returns that spec and the crawl's summary.
    """
    frontier = open_frontier(db, create=False, grace=grace)
    try:
        info = frontier.get_crawl(crawl)
        spec = parse_spec(info.spec, f"crawl {info.name!r} in the database")
        if concurrency:
            spec = spec.model_copy(
                update={"worker": spec.worker.model_copy(update={"concurrency": concurrency})}
            )
        summary = run_worker(spec, frontier, info, console=console, progress=progress)
    finally:
        frontier.close()
    return spec, summary


def submit_crawl(db: str, spec: Spec, spec_text: str, *, replace: bool, out: Console) -> None:
    """Store the crawl, its spec and its seeds in the shared database ``db`` for workers (``shoal submit``).

    A crawl of that name with another spec is listed key by key and refused
    (:class:`~shoal.errors.SpecError`) unless ``replace``; the identical spec
    of a finished crawl that revisits nothing is left alone.
    """
    frontier = SqlFrontier(db, create=True)
    try:
        again = compare(frontier, spec, spec_text)
        if again.changes:
            heading = f"the spec of crawl {spec.name!r} differs from the stored one:"
            _print_changes(out, heading, again.changes)
            if not replace:
                raise SpecError(
                    f"crawl {spec.name!r} already exists with another spec: rerun with --replace "
                    "to store this one (its URLs and archive are kept), or give the crawl a new name"
                )
        elif again.nothing_to_do:
            out.print(
                escape(
                    f"crawl {spec.name!r} is finished and its spec is unchanged: nothing to do "
                    '(a rule with revisit = "..." keeps a crawl fresh; a new name starts over)'
                )
            )
            return
        c = start_crawl(frontier, spec, spec_text)
        out.print(
            "[green]submitted[/] "
            + escape(
                f"crawl {c.name!r} (id {c.id}) to {frontier.safe_url}; "
                f"start workers with: shoal work --db URL --crawl {c.name}"
            )
        )
    finally:
        frontier.close()


def work_in_processes(
    db: str, processes: int, *, crawl: str | None, concurrency: int | None, grace: float
) -> list[int]:
    """``shoal work`` in ``processes`` processes of this machine: waits for them, returns their exit codes.

    The URL (and its password) goes through the environment (``SHOAL_DB``),
    never a command line that ``ps`` shows.
    """
    args = [sys.executable, "-m", "shoal", "work"]
    if crawl:
        args += ["--crawl", crawl]
    if concurrency:
        args += ["--concurrency", str(concurrency)]
    args += ["--db-grace", str(grace)]
    procs = [subprocess.Popen(args, env={**os.environ, "SHOAL_DB": db}) for _ in range(processes)]
    return [p.wait() for p in procs]


def stays_open(spec: Spec) -> bool:
    """A crawl with revisit rules never finishes: a clean stop is its normal end."""
    return RevisitPlan.of(spec).keeps_open
