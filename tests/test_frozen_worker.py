"""A worker frozen (SIGSTOP) inside a frontier transaction does not stall the fleet (PostgreSQL, MariaDB).

The frozen process holds row locks on the URLs it was completing. The other
workers' lease reaper skips those rows, so they keep claiming and completing
everything else while it is stopped; after SIGCONT its transaction ends and
every URL is done exactly once. (SQLite has one writer by design: a frozen
writer holds the whole database, so this is a server-database guarantee.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest
from sqlalchemy import func, select, text

from shoal.frontier import Outcome, SqlFrontier
from shoal.frontier.tables import urls
from tests.conftest import make_db
from tests.test_frontier import done, new, sync

FREEZER = textwrap.dedent(
    """
    import os, signal, sys
    from shoal.frontier import SqlFrontier, complete as completion
    from tests.test_frontier import done, sync

    complete = completion.complete

    def freezing(conn, writer, lock, adder, crawl_id, owner, given, *args):
        out = complete(conn, writer, lock, adder, crawl_id, owner, given, *args)
        if given:  # outcomes: their rows are locked and written, not yet committed
            print("frozen", flush=True)
            os.kill(os.getpid(), signal.SIGSTOP)
        return out

    completion.complete = freezing
    f = SqlFrontier(sys.argv[1], create=False)
    cid = int(sys.argv[2])
    f.register_worker(cid, "frozen", hostname="h", ip=None, pid=os.getpid(), version="t", concurrency=1)
    claimed = sync(f, cid, "frozen", claim=20, lease_ms=2000).claimed
    print("claimed", len(claimed), flush=True)
    try:
        sync(f, cid, "frozen", [done(c) for c in claimed], claim=0, lease_ms=2000)
        print("committed", flush=True)
    except Exception as exc:  # the server may have ended the frozen session
        print("rolled back", type(exc).__name__, flush=True)
    f.close()
    """
)


def open_transactions(f: SqlFrontier) -> int:
    """Transactions other than ours open on the frontier's database."""
    with f.engine.connect() as conn:
        if f.dialect == "postgresql":
            q = (
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()"
            )
        else:
            q = "SELECT count(*) FROM information_schema.innodb_trx"
        return int(conn.execute(text(q)).scalar_one())


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
def test_a_frozen_worker_inside_a_transaction_does_not_stall_the_others(
    backend: str, tmp_path: Path
) -> None:
    """While one worker is SIGSTOPped holding row locks, the others complete every other URL; after SIGCONT all are done once."""
    url, drop = make_db(backend, tmp_path)
    f = SqlFrontier(url)
    proc: subprocess.Popen[str] | None = None
    try:
        cid = f.open_crawl("c", "s").id
        total = 300
        f.add_urls(cid, [new(f"http://h{i % 10}.test/{i}") for i in range(total)], 0)
        script = tmp_path / "freezer.py"
        script.write_text(FREEZER)
        root = Path(__file__).resolve().parent.parent
        proc = subprocess.Popen(
            [sys.executable, str(script), url, str(cid)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=root,
            env={**os.environ, "PYTHONPATH": str(root)},
        )
        assert proc.stdout is not None
        lines = [proc.stdout.readline().strip(), proc.stdout.readline().strip()]
        assert lines == ["claimed 20", "frozen"], lines
        ps = psutil.Process(proc.pid)
        deadline = time.monotonic() + 60
        while ps.status() != psutil.STATUS_STOPPED and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ps.status() == psutil.STATUS_STOPPED
        # Its leases expire and its heartbeat goes stale: every reaper now wants those rows.
        expires = f.query(
            select(func.max(urls.c.lease_expires_at)).where(urls.c.lease_owner == "frozen")
        )[0][0]
        assert expires is not None
        while f.now_ms() <= expires + 100:
            time.sleep(0.05)

        completed: list[int] = []
        errors: list[BaseException] = []
        stop = threading.Event()

        def work(owner: str) -> None:
            w = SqlFrontier(url, create=False)
            try:
                w.register_worker(
                    cid, owner, hostname="h", ip=None, pid=0, version="t", concurrency=1
                )
                held: list[Outcome] = []
                while not stop.is_set():
                    res = sync(w, cid, owner, held, claim=10, lease_ms=2000, reap=True)
                    completed.extend(
                        o.url_id for o, ok in zip(held, res.accepted, strict=True) if ok
                    )
                    held = [done(c) for c in res.claimed]
                    if not res.claimed:
                        w.heartbeat(cid, owner, 2000)
                        time.sleep(0.05)
            except BaseException as exc:  # reported by the test thread
                errors.append(exc)
            finally:
                w.close()

        threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(3)]
        for t in threads:
            t.start()
        # The others finish everything the frozen worker does not hold a lock on...
        deadline = time.monotonic() + 240
        while len(completed) < total - 20 and time.monotonic() < deadline and not errors:
            time.sleep(0.1)
        assert not errors, errors
        assert len(completed) == total - 20, len(completed)
        # ... while it is still stopped inside its transaction.
        assert ps.status() == psutil.STATUS_STOPPED
        assert open_transactions(f) >= 1
        assert f.status_counts(cid)["done"] == total - 20

        ps.send_signal(signal.SIGCONT)
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out
        deadline = time.monotonic() + 120
        while f.status_counts(cid)["done"] < total and time.monotonic() < deadline:
            time.sleep(0.1)
        stop.set()
        for t in threads:
            t.join(60)
        assert not errors, errors
        counts = f.status_counts(cid)
        assert counts["done"] == total and counts["pending"] == counts["leased"] == 0
        if "committed" in out:
            assert len(completed) == total - 20, "the frozen worker's outcomes were its own"
        else:
            assert len(set(completed)) == total
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
            proc.wait(30)
        f.close()
        drop()  # type: ignore[operator]
