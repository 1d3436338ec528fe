"""Pure frontier policy: what is claimable now, politeness slots, retry schedule.

No database here: the SQL frontier calls these functions inside its claim
transaction, and unit tests call them directly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = [
    "HostState",
    "assign_slots",
    "host_claimable",
    "host_quota",
    "retry_at",
    "url_claimable",
]


@dataclass(frozen=True, slots=True)
class HostState:
    """The politeness state of one host, as stored in the ``hosts`` table."""

    min_delay_ms: int
    next_fetch_at: int
    paused_until: int


def host_claimable(host: HostState, now: int, horizon_ms: int) -> bool:
    """A host may be claimed from when it is not paused and its next slot is within the horizon."""
    return host.paused_until <= now and host.next_fetch_at <= now + horizon_ms


def url_claimable(status: str, next_attempt_at: int, now: int) -> bool:
    """A URL may be claimed when it is pending and its retry time has come."""
    return status == "pending" and next_attempt_at <= now


def host_quota(per_host: int, leased: int, delay_ms: int, horizon_ms: int, wanted: int) -> int:
    """How many URLs of one host a claim may take.

    Bounded by the per-host concurrency (minus what is leased already) and, when
    the host has a minimum interval, by the slots that fit in the claim horizon
    (at least one), so a claim never reserves slots far into the future.
    """
    n = min(per_host - leased, wanted)
    if delay_ms > 0:
        n = min(n, max(1, horizon_ms // delay_ms))
    return max(0, n)


def assign_slots(
    now: int,
    next_fetch_at: int,
    delay_ms: int,
    jitter: float,
    n: int,
    rng: random.Random | None = None,
) -> tuple[list[int], int]:
    """Politeness slots for ``n`` requests to one host and the host's next free slot.

    The first slot is the later of now and the host's next free slot; each next
    one is at least ``delay_ms`` later, plus up to ``jitter * delay_ms`` at random.
    With no delay every slot is ``now`` and the host stays free.
    """
    if delay_ms <= 0:
        return [now] * n, next_fetch_at
    r = rng or random
    t = max(now, next_fetch_at)
    slots = []
    for _ in range(n):
        slots.append(t)
        t += delay_ms + int(r.random() * jitter * delay_ms)
    return slots, t


def retry_at(
    now: int,
    attempt: int,
    base_s: float,
    max_s: float,
    retry_after_s: float | None = None,
    max_retry_after_s: float = 3600.0,
    rng: random.Random | None = None,
) -> int:
    """When a URL that failed its ``attempt``-th try (1-based) may be tried again (ms).

    Exponential backoff ``base * 2**(attempt-1)`` capped at ``max_s``, times a
    random factor in [1, 1.5) so retries of many URLs spread out. A server's
    Retry-After wins when given (capped at ``max_retry_after_s``).
    """
    if retry_after_s is not None and retry_after_s >= 0:
        return now + int(min(retry_after_s, max_retry_after_s) * 1000)
    r = rng or random
    delay = min(max_s, base_s * (2 ** max(0, attempt - 1)))
    return now + int(delay * (1.0 + 0.5 * r.random()) * 1000)
