"""The guard: a tiny process that owns one chromedriver and every Chromium process below it.

Run by path as ``python -I -S guard.py WORKDIR GRACE DRIVER ARGS...`` (see
:func:`shoal.fetch.browser.launch.launch_driver`). It imports the standard
library only, so it starts in ~20 ms and needs nothing from the worker's
environment; it never imports shoal.

Guarantees:

- It is a child subreaper (``PR_SET_CHILD_SUBREAPER``): every Chromium process
  orphaned below it is re-parented to it, never to init.
- chromedriver gets ``PR_SET_PDEATHSIG`` (SIGKILL) from the guard's main
  thread, which lives as long as the guard, so it dies with the guard.
- It watches its stdin, whose write end the worker holds: EOF means the worker
  exited in any way (``SIGKILL`` included) or asked for a stop. Then, or on
  ``SIGTERM``/``SIGHUP``, it sends ``SIGTERM`` to every descendant,
  ``SIGKILL`` after ``GRACE`` seconds, reaps them and deletes ``WORKDIR`` (the
  throwaway profile). ``SIGUSR1`` skips the grace period (a wedged renderer
  never handles ``SIGTERM``). ``SIGINT`` is ignored: a Ctrl-C to the worker's
  terminal is the worker's to handle.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from types import FrameType

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return False
    return data[data.rfind(b")") + 2 :].split()[0] != b"Z"


def _descendants(me: int) -> set[int]:
    """Every live process below ``me`` (by parent link, session or process group)."""
    parent: dict[int, int] = {}
    alive: set[int] = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        fields = data[data.rfind(b")") + 2 :].split()
        pid = int(name)
        parent[pid] = int(fields[1])
        if fields[0] != b"Z" and (int(fields[2]) == me or int(fields[1]) == me):
            alive.add(pid)
    found: set[int] = set()
    todo = [me]
    while todo:
        p = todo.pop()
        for child, ppid in parent.items():
            if ppid == p and child not in found:
                found.add(child)
                todo.append(child)
    return {p for p in found | alive if p != me and _running(p)}


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _signal_all(me: int, sig: int) -> None:
    for pid in _descendants(me):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def main(argv: list[str]) -> int:
    """Run ``argv[2:]`` (chromedriver and its arguments) under the guard; returns the exit status."""
    workdir, grace, cmd = argv[0], float(argv[1]), argv[2:]
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    me = os.getpid()
    # A plain flag, not a threading.Event: a signal handler that takes a lock the
    # interrupted main thread already holds (Event.wait does) deadlocks.
    stop = [False]
    wait = [grace]

    def on_signal(_sig: int, _frame: FrameType | None) -> None:
        stop[0] = True

    def on_hard(_sig: int, _frame: FrameType | None) -> None:
        wait[0] = 0.0
        stop[0] = True

    signal.signal(signal.SIGUSR1, on_hard)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def die_with_guard() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    def watch_owner() -> None:
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        stop[0] = True

    try:
        driver = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, preexec_fn=die_with_guard)
    except OSError as exc:
        print(f"shoal guard: cannot start {cmd[0]}: {exc}", file=sys.stderr, flush=True)
        shutil.rmtree(workdir, ignore_errors=True)
        return 127
    threading.Thread(target=watch_owner, daemon=True).start()
    while not stop[0] and driver.poll() is None:
        time.sleep(0.05)

    _signal_all(me, signal.SIGTERM)
    end = time.monotonic() + wait[0]
    while time.monotonic() < end:
        _reap()
        if not _descendants(me):
            break
        time.sleep(0.05)
    _signal_all(me, signal.SIGKILL)
    end = time.monotonic() + 5
    while time.monotonic() < end:
        _reap()
        if not _descendants(me):
            break
        time.sleep(0.02)
    _reap()
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
