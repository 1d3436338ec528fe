"""Pure frontier policy: politeness slots, quotas and the retry schedule (no database)."""

from __future__ import annotations

import itertools
import random

from shoal.frontier.policy import (
    HostState,
    assign_slots,
    host_claimable,
    host_quota,
    retry_at,
    url_claimable,
)


def test_slots_are_at_least_the_delay_apart_and_start_at_the_hosts_next_slot() -> None:
    """Each slot follows the previous by delay plus up to jitter*delay; the first is not before the host's next slot."""
    rng = random.Random(1)
    slots, nxt = assign_slots(now=1000, next_fetch_at=5000, delay_ms=2000, jitter=0.5, n=4, rng=rng)
    assert slots[0] == 5000
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    assert all(2000 <= g <= 3000 for g in gaps)
    assert 2000 <= nxt - slots[-1] <= 3000


def test_zero_delay_gives_every_slot_now_and_keeps_the_host_free() -> None:
    """Without a delay all slots are now and the host's next slot does not move."""
    assert assign_slots(now=10, next_fetch_at=0, delay_ms=0, jitter=0.3, n=3) == ([10, 10, 10], 0)


def test_quota_respects_concurrency_and_horizon() -> None:
    """A host gives at most concurrency minus leased URLs, and with a delay only what fits the horizon (at least one)."""
    assert host_quota(per_host=4, leased=1, delay_ms=0, horizon_ms=1000, wanted=10) == 3
    assert host_quota(per_host=64, leased=0, delay_ms=20_000, horizon_ms=2000, wanted=10) == 1
    assert host_quota(per_host=64, leased=0, delay_ms=500, horizon_ms=2000, wanted=10) == 4
    assert host_quota(per_host=2, leased=2, delay_ms=0, horizon_ms=2000, wanted=10) == 0


def test_claimable_predicates() -> None:
    """Paused hosts and not-yet-due URLs are not claimable."""
    assert host_claimable(HostState(0, 100, 0), now=50, horizon_ms=60)
    assert not host_claimable(HostState(0, 100, 0), now=10, horizon_ms=60)
    assert not host_claimable(HostState(0, 0, 500), now=100, horizon_ms=0)
    assert url_claimable("pending", 100, now=100)
    assert not url_claimable("pending", 101, now=100)
    assert not url_claimable("leased", 0, now=100)


def test_retry_backoff_grows_exponentially_with_jitter_and_retry_after_wins() -> None:
    """Retries wait base*2^(n-1) times [1, 1.5), capped; a Retry-After replaces the backoff (capped too)."""
    rng = random.Random(7)
    waits = [retry_at(0, n, base_s=1.0, max_s=60.0, rng=rng) for n in (1, 2, 3, 4)]
    for n, w in zip((1, 2, 3, 4), waits, strict=True):
        assert 1000 * 2 ** (n - 1) <= w < 1500 * 2 ** (n - 1)
    assert retry_at(0, 20, base_s=1.0, max_s=60.0, rng=rng) < 90_000
    assert retry_at(0, 1, 1.0, 60.0, retry_after_s=7) == 7000
    assert retry_at(0, 1, 1.0, 60.0, retry_after_s=10**6, max_retry_after_s=120) == 120_000
