"""Live status: `--watch` in place on a terminal, lines without one, progress lines and JSON logs."""

from __future__ import annotations

import json
import logging
import os
import pty
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal.status.live import JsonLogFormatter, Progress, format_eta
from tests.parse_helpers import crawl, demo_spec


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_progress_rate_and_eta_follow_the_counts() -> None:
    """Rate is finished URLs per second over the window; ETA is pending over rate; unknown while idle."""
    clock = Clock()
    p = Progress(window_s=60, clock=clock)
    first = p.sample(done=0, pending=100, failed=0, skipped=0)
    assert first.rate == 0 and first.eta_s is None
    clock.t += 10
    s = p.sample(done=18, pending=80, failed=2, skipped=0)
    assert s.rate == pytest.approx(2.0)
    assert s.eta_s == pytest.approx(40.0)
    assert s.line() == ("done 18/100 (20%), pending 80, failed 2, skipped 0, 2.0 pages/s, ETA 40s")
    clock.t += 120  # the window moves on: an idle crawl's rate falls to 0
    idle = p.sample(done=18, pending=80, failed=2, skipped=0)
    assert idle.rate == 0 and idle.eta_s is None
    assert p.sample(done=98, pending=0, failed=2, skipped=0).eta_s == 0.0


def test_format_eta_is_whole_and_readable() -> None:
    """Durations print as seconds, minutes or hours, never cut."""
    assert [format_eta(x) for x in (None, 0, 42.4, 185, 7440, 360000)] == [
        "-",
        "0s",
        "42s",
        "3m05s",
        "2h04m",
        "100h00m",
    ]


def test_json_log_formatter_writes_one_object_with_fields() -> None:
    """A log record becomes one JSON line with its level, logger, message and structured fields."""
    rec = logging.LogRecord("shoal.progress", logging.INFO, __file__, 1, "crawl %s", ("x",), None)
    rec.fields = {"done": 3, "eta_s": None}
    line = JsonLogFormatter().format(rec)
    assert "\n" not in line
    d = json.loads(line)
    assert (d["level"], d["logger"], d["message"], d["done"], d["eta_s"]) == (
        "info",
        "shoal.progress",
        "crawl x",
        3,
        None,
    )
    assert d["ts"].endswith("+00:00")


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A finished demo crawl; yields its spec file."""
    from shoal.demo.site import start_in_thread

    data = tmp_path_factory.mktemp("status")
    server = start_in_thread()
    try:
        text = demo_spec(server.base_url, data)
        crawl(text)
    finally:
        server.stop()
    path = data / "demo.toml"
    path.write_text(text, encoding="utf-8")
    yield path


def _env() -> dict[str, str]:
    return {**os.environ, "COLUMNS": "160", "SHOAL_DEBUG": ""}


def _watch(finished: Path, *args: str, **popen: Any) -> subprocess.Popen[str]:
    """``shoal status FINISHED --watch 0.2 ARGS`` started so that SIGINT stops it as Ctrl-C would.

    A job started in the background by a non-interactive shell (CI, say) inherits
    SIGINT ignored; Python then never raises KeyboardInterrupt, so the child
    gets the default disposition back.
    """
    return subprocess.Popen(
        [sys.executable, "-m", "shoal", "status", str(finished), "--watch", "0.2", *args],
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        **{"env": _env(), "stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **popen},
    )


@pytest.mark.slow
def test_watch_without_a_terminal_prints_one_json_line_per_frame(finished: Path) -> None:
    """`status --watch N --json` in a pipe writes one JSON object per line, each a whole snapshot."""
    proc = _watch(finished, "--json")
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    frames = [json.loads(x) for x in lines]
    for f in frames:
        assert f["state"] == "finished" and f["counts"]["done"] > 0
        assert f["total"] == sum(f["counts"].values())
    assert frames[0]["counts"] == frames[-1]["counts"]
    assert proc.returncode == 0


@pytest.mark.slow
def test_watch_without_a_terminal_prints_summary_lines(finished: Path) -> None:
    """`status --watch N` in a pipe writes one summary line per frame (no tables, no control codes)."""
    proc = _watch(finished)
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(2)]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    once = subprocess.run(
        [sys.executable, "-m", "shoal", "status", str(finished), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
    )
    st = json.loads(once.stdout)
    c = st["counts"]
    want = (
        f"crawl demo (finished): done {c['done']}/{st['total']}, pending 0, "
        f"failed {c['failed']}, skipped {c['skipped']}, "
    )
    for line in lines:
        assert line.startswith(want), line
        assert "\x1b" not in line


def _read_pty(fd: int, until: float, want: int) -> bytes:
    out = b""
    while time.monotonic() < until and out.count(b"crawl demo (finished)") < want:
        r, _, _ = select.select([fd], [], [], 0.5)
        if r:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    return out


@pytest.mark.slow
def test_watch_on_a_terminal_redraws_in_place(finished: Path) -> None:
    """On a terminal, `status --watch` moves the cursor back over the last frame instead of scrolling."""
    master, slave = pty.openpty()
    env = {**_env(), "TERM": "xterm-256color", "COLUMNS": "160", "LINES": "60"}
    proc = _watch(finished, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    try:
        out = _read_pty(master, time.monotonic() + 60, want=3)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        os.close(master)
    assert out.count(b"crawl demo (finished)") >= 3
    assert b"\x1b[1A" in out or b"\x1b[2K" in out  # cursor up / erase line: the frame is redrawn
    assert proc.returncode == 0


@pytest.mark.slow
def test_crawl_without_a_terminal_logs_progress_lines_as_json(tmp_path: Path) -> None:
    """`shoal --log-format json crawl` in a pipe logs progress objects: done, pending, failed, rate, ETA."""
    from shoal.demo.site import start_in_thread

    server = start_in_thread()
    try:
        spec = tmp_path / "demo.toml"
        spec.write_text(demo_spec(server.base_url, tmp_path), encoding="utf-8")
        res = subprocess.run(
            [
                sys.executable,
                "-m",
                "shoal",
                "--log-format",
                "json",
                "crawl",
                str(spec),
                "--progress-every",
                "0.5",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            env=_env(),
            cwd=tmp_path,
        )
    finally:
        server.stop()
    assert res.returncode == 0, res.stderr
    records: list[dict[str, Any]] = [
        json.loads(line) for line in res.stderr.splitlines() if line.startswith("{")
    ]
    progress = [r for r in records if r["logger"] == "shoal.progress"]
    assert progress, res.stderr
    for r in progress:
        assert {
            "done",
            "pending",
            "failed",
            "skipped",
            "total",
            "pages_per_second",
            "eta_s",
        } <= set(r)
        assert r["total"] == r["done"] + r["pending"] + r["failed"] + r["skipped"]
        assert r["crawl"] == "demo"
    dones = [r["done"] for r in progress]
    assert dones == sorted(dones)
    assert not [line for line in res.stderr.splitlines() if line and not line.startswith("{")]
