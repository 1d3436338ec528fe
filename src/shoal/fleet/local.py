"""The local provider: N ``shoal work`` processes on this machine, each with an address of its own.

As root (and with iproute2's ``ip``), every worker runs in a network namespace
of its own, joined to a bridge ``shoal0`` (198.18.0.1/15, the block reserved for
benchmarking, never a real network's): a target server listening on the bridge
address sees N client addresses, as it would from N machines. Namespaces, veth
pairs and the bridge are created by ``up`` and removed by ``down``. Without root
the workers are plain processes.

The database URL reaches a worker through its environment (``SHOAL_DB``), never
its command line, so ``ps`` does not show a password. The fleet's state (pids,
namespaces, addresses, log files) is a JSON file in the fleet folder; a worker
is ended with SIGTERM (a clean stop: leases given back), then SIGKILL.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from shoal.errors import FleetError
from shoal.fleet.base import Instance

__all__ = ["BRIDGE", "BRIDGE_NET", "LocalProvider", "netns_available"]

BRIDGE = "shoal0"
BRIDGE_NET = ipaddress.ip_network("198.18.0.0/15")
BRIDGE_IP = "198.18.0.1"
NS_PREFIX = "shoal-"


def netns_available() -> bool:
    """Root and iproute2's ``ip``: workers can get namespaces of their own."""
    return os.geteuid() == 0 and shutil.which("ip") is not None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise FleetError(f"`ip {' '.join(args)}` failed: {proc.stderr.strip()}")
    return proc


def _namespaces() -> list[str]:
    out = _ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours is not alive
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@dataclass(slots=True)
class _Proc:
    id: str
    pid: int
    log: str
    started_at: float
    netns: str | None = None
    address: str | None = None


class LocalProvider:
    """Worker processes on this machine (in network namespaces of their own when root)."""

    name = "local"

    def __init__(
        self,
        crawl: str,
        state_dir: Path,
        *,
        db_url: str | None = None,
        netns: bool | None = None,
        concurrency: int | None = None,
        python: str = sys.executable,
    ) -> None:
        self.crawl = crawl
        self.state_dir = state_dir
        self.db_url = db_url
        self.netns = netns_available() if netns is None else netns
        if self.netns and not netns_available():
            raise FleetError(
                "network namespaces need root and iproute2 (`apt-get install iproute2`); "
                "run as root or pass --no-netns for plain processes"
            )
        self.concurrency = concurrency
        self.python = python
        self._state = state_dir / "local.json"

    # -- state -------------------------------------------------------------------------------
    def _load(self) -> list[_Proc]:
        try:
            raw = json.loads(self._state.read_text("utf-8"))
        except FileNotFoundError:
            return []
        return [_Proc(**p) for p in raw.get("processes", [])]

    def _save(self, procs: list[_Proc]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self._state.with_suffix(".tmp")
        tmp.write_text(
            json.dumps({"crawl": self.crawl, "processes": [asdict(p) for p in procs]}, indent=1),
            "utf-8",
        )
        tmp.replace(self._state)

    # -- namespaces --------------------------------------------------------------------------
    def ensure_bridge(self) -> None:
        """Create the bridge ``shoal0`` (198.18.0.1) if it is not there; a test server can listen on it."""
        if _ip("link", "show", BRIDGE, check=False).returncode != 0:
            _ip("link", "add", BRIDGE, "type", "bridge")
            _ip("addr", "add", f"{BRIDGE_IP}/{BRIDGE_NET.prefixlen}", "dev", BRIDGE)
        _ip("link", "set", BRIDGE, "up")

    def _used_addresses(self) -> set[str]:
        used = {BRIDGE_IP}
        for ns in _namespaces():
            if ns.startswith(NS_PREFIX):
                out = _ip("-n", ns, "-o", "-4", "addr", "show", check=False).stdout
                for line in out.split():
                    if "/" in line and line.startswith("198."):
                        used.add(line.split("/")[0])
        return used

    def _make_namespace(self, index: int) -> tuple[str, str]:
        used = self._used_addresses()
        address = next(
            str(a)
            for a in BRIDGE_NET.hosts()
            if int(a) >= int(BRIDGE_NET[10]) and str(a) not in used
        )
        tag = f"{os.getpid() % 10000:04d}{index:03d}{int(time.time() * 1000) % 1000:03d}"
        ns, host_if, ns_if = f"{NS_PREFIX}{tag}", f"vh{tag}", f"vn{tag}"
        _ip("netns", "add", ns)
        try:
            _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
            _ip("link", "set", ns_if, "netns", ns)
            _ip("link", "set", host_if, "master", BRIDGE, "up")
            _ip("-n", ns, "addr", "add", f"{address}/{BRIDGE_NET.prefixlen}", "dev", ns_if)
            _ip("-n", ns, "link", "set", ns_if, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "route", "add", "default", "via", BRIDGE_IP)
        except FleetError:
            _ip("netns", "del", ns, check=False)
            raise
        return ns, address

    def _remove_bridge_if_unused(self) -> None:
        if not any(ns.startswith(NS_PREFIX) for ns in _namespaces()):
            _ip("link", "del", BRIDGE, check=False)

    # -- the provider ------------------------------------------------------------------------
    def up(self, count: int) -> list[Instance]:
        """Start ``count`` worker processes (``shoal work``) for the crawl."""
        if not self.db_url:
            raise FleetError("the local provider needs the database URL (--db) to start workers")
        procs = self._load()
        logs = self.state_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        if self.netns:
            self.ensure_bridge()
        started: list[_Proc] = []
        env = {**os.environ, "SHOAL_DB": self.db_url}
        for i in range(count):
            wid = f"local-{len(procs) + i + 1}"
            ns = address = None
            cmd = [self.python, "-m", "shoal", "work", "--crawl", self.crawl]
            if self.concurrency:
                cmd += ["--concurrency", str(self.concurrency)]
            if self.netns:
                ns, address = self._make_namespace(len(procs) + i)
                cmd = ["ip", "netns", "exec", ns, *cmd]
            log_path = logs / f"{wid}.log"
            with open(log_path, "ab") as log:
                proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )
            started.append(_Proc(wid, proc.pid, str(log_path), time.time(), ns, address))
        self._save(procs + started)
        return [self._instance(p) for p in started]

    def _instance(self, p: _Proc) -> Instance:
        return Instance(
            id=p.id,
            state="running" if _alive(p.pid) else "exited",
            provider=self.name,
            private_ip=p.address,
            type="netns" if p.netns else "process",
            launched_at=p.started_at,
            pid=p.pid,
        )

    def instances(self) -> list[Instance]:
        """Every process this fleet started (running or exited)."""
        return [self._instance(p) for p in self._load()]

    def down(self, timeout: float = 60.0) -> list[Instance]:
        """SIGTERM every worker (a clean stop), SIGKILL what is left after ``timeout``, remove namespaces."""
        procs = self._load()
        for p in procs:
            if _alive(p.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGTERM)
        end = time.monotonic() + timeout
        while time.monotonic() < end and any(_alive(p.pid) for p in procs):
            time.sleep(0.1)
        for p in procs:
            if _alive(p.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
        gone = [self._instance(p) for p in procs]
        for p in procs:
            if p.netns:
                _ip("netns", "del", p.netns, check=False)
        if self.netns or any(p.netns for p in procs):
            self._remove_bridge_if_unused()
        self._save([])
        return gone

    def logs(self, instance_id: str | None, lines: int) -> dict[str, str]:
        """The tail of each worker's log file."""
        out: dict[str, str] = {}
        for p in self._load():
            if instance_id in (None, p.id):
                try:
                    text = Path(p.log).read_text("utf-8", errors="replace")
                except FileNotFoundError:
                    text = ""
                out[p.id] = "\n".join(text.splitlines()[-lines:])
        return out

    def wait(self, timeout: float) -> dict[str, Any]:
        """Wait until every worker has exited (or ``timeout``); returns the exit state per worker."""
        end = time.monotonic() + timeout
        procs = self._load()
        while time.monotonic() < end and any(_alive(p.pid) for p in procs):
            time.sleep(0.2)
        return {p.id: _alive(p.pid) for p in procs}
