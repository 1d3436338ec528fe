"""Local sites to crawl in tests: an asyncio loop on a daemon thread, aiohttp servers on it.

The demo site (:class:`shoal.demo.site.DemoServer`) and the project's test
sites are built on it, and so can a user's tests of their own specs. A site
subclasses :class:`ThreadedSite` and opens its servers in ``_open``
(a coroutine run on the site's loop), usually with :meth:`ThreadedSite._runner`
and :meth:`ThreadedSite._listen`. :meth:`~ThreadedSite.start` returns once
``_open`` is over, that is once every socket listens, or raises what stopped it
(the loop and thread are then gone). :meth:`~ThreadedSite.stop` cleans up the
runners (each with its own ``shutdown_timeout``), cancels the handlers still
running (a slow page a client gave up on) so the loop closes clean, and ends the
thread; stopping a site that is not running does nothing. A site is also a
context manager (``with Site() as s:`` starts it unless it runs already).

:func:`wait_until` waits for a state a site records from its own thread;
:func:`free_port` names a port to start a server on, :func:`refusing_port`
holds one that refuses connections for as long as it is open.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, Self

from aiohttp import web

__all__ = ["ThreadedSite", "free_port", "refusing_port", "wait_until"]

START_TIMEOUT = 30.0
"""Seconds :meth:`ThreadedSite.start` waits for the sockets (a broken machine, not a slow one)."""


class ThreadedSite:
    """Servers on an event loop of their own, in a daemon thread."""

    thread_name: ClassVar[str] = "shoal-site"
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _runners: list[web.AppRunner] | None = None

    async def _open(self) -> None:
        """Open the servers (on the site's loop); the site is started when this returns."""
        raise NotImplementedError

    async def _close(self) -> None:
        """Close the servers and end every task left on the loop."""
        for runner in self._runners or []:
            await runner.cleanup()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _runner(self, app: web.Application, **options: Any) -> web.AppRunner:
        """A set-up runner of ``app`` (no access log), cleaned up by :meth:`stop`."""
        runner = web.AppRunner(app, access_log=None, **options)
        await runner.setup()
        assert self._runners is not None
        self._runners.append(runner)
        return runner

    @staticmethod
    async def _listen(
        runner: web.AppRunner, host: str, port: int = 0, ssl_context: ssl.SSLContext | None = None
    ) -> int:
        """Serve ``runner`` on ``host:port`` too (0: a free port); returns the port."""
        await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
        return int(runner.addresses[-1][1])

    def start(self) -> Self:
        """Start serving; returns self once every socket listens."""
        loop = asyncio.new_event_loop()
        self._loop, self._runners = loop, []
        self._thread = threading.Thread(target=loop.run_forever, name=self.thread_name, daemon=True)
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._open(), loop).result(START_TIMEOUT)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop serving (requests in flight are cut) and end the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._loop = self._thread = None
        try:
            asyncio.run_coroutine_threadsafe(self._close(), loop).result(START_TIMEOUT)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(START_TIMEOUT)
            if not thread.is_alive():
                loop.close()

    def __enter__(self) -> Self:
        return self if self._thread is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_until(what: str, predicate: Callable[[], object], timeout: float = 30.0) -> None:
    """Return once ``predicate()`` is true; fail naming ``what`` if it is not within ``timeout`` s.

    The timeout only ends a test that would otherwise hang; it is never the thing tested.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now, for a server about to start there."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def refusing_port() -> Iterator[int]:
    """A port on 127.0.0.1 bound and never listening: connections are refused, and no server
    (another test's, in parallel) can take it until the block ends."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])
