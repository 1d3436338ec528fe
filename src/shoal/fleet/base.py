"""What every fleet provider offers, and the join of its view with the frontier's.

A provider starts, lists and ends the machines (or processes) that run
``shoal work``; it knows nothing of the crawl loop. ``fleet status`` joins what
the provider sees (instance id, state, addresses, type, launch time) with what
the workers wrote into the frontier (heartbeat, pages done), and flags the two
ways they can disagree: an instance with no live worker (booting, or broken),
and a live worker no instance of this fleet accounts for (started by hand, or
an instance already gone).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # annotations only: `shoal --help` must not import SQLAlchemy
    from shoal.frontier.reads import WorkerRow

__all__ = ["FleetRow", "Instance", "Provider", "join_fleet"]

LIVE_STATES = frozenset({"pending", "running", "starting"})


@dataclass(frozen=True, slots=True)
class Instance:
    """One machine or process of a fleet, as its provider sees it."""

    id: str
    state: str
    """``pending``, ``running``, ``stopping``, ``stopped``, ``shutting-down``, ``terminated``, ``exited``."""
    provider: str
    private_ip: str | None = None
    public_ip: str | None = None
    type: str | None = None
    launched_at: float | None = None
    """Seconds since the epoch."""
    pid: int | None = None
    """The worker's process id (local provider only)."""

    @property
    def live(self) -> bool:
        """Whether the provider says it is (or is about to be) running."""
        return self.state in LIVE_STATES


@dataclass(frozen=True, slots=True)
class FleetRow:
    """One line of ``fleet status``: an instance, its worker, or both."""

    instance: Instance | None
    workers: list[WorkerRow] = field(default_factory=list)
    flag: str | None = None
    """Why this row needs a look (``no live worker``, ``no instance``), else None."""


class Provider(Protocol):
    """Starts, lists and ends the workers of one crawl."""

    name: str

    def up(self, count: int) -> list[Instance]:
        """Start ``count`` more workers; returns what was started."""
        ...

    def instances(self) -> list[Instance]:
        """Every instance of this crawl's fleet the provider still knows of (ended ones included)."""
        ...

    def down(self) -> list[Instance]:
        """End every instance of this crawl's fleet and wait until they are gone."""
        ...

    def logs(self, instance_id: str | None, lines: int) -> dict[str, str]:
        """The last ``lines`` lines of each instance's worker log (where the provider can get them)."""
        ...


def _is_alive(w: WorkerRow, now_ms: int, stale_ms: int) -> bool:
    return w.state == "running" and now_ms - w.heartbeat_at <= stale_ms


def join_fleet(
    instances: Sequence[Instance], workers: Sequence[WorkerRow], now_ms: int, stale_ms: int
) -> list[FleetRow]:
    """Pair instances with the workers they run (by pid locally, by private IP on EC2).

    A live instance without a live worker is flagged ``no live worker``; a live
    worker matched by no instance is flagged ``no instance``. Workers that
    stopped long ago and match nothing are left out.
    """
    rows: list[FleetRow] = []
    used: set[str] = set()
    for inst in instances:
        mine = [
            w
            for w in workers
            if w.id not in used
            and (
                (inst.pid is not None and w.pid == inst.pid)
                or (inst.pid is None and inst.private_ip is not None and w.ip == inst.private_ip)
            )
        ]
        used.update(w.id for w in mine)
        alive = any(_is_alive(w, now_ms, stale_ms) for w in mine)
        flag = "no live worker" if inst.live and not alive else None
        rows.append(FleetRow(inst, mine, flag))
    for w in workers:
        if w.id not in used and _is_alive(w, now_ms, stale_ms):
            rows.append(FleetRow(None, [w], "no instance"))
    return rows
