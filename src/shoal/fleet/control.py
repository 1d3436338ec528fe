"""What the ``shoal fleet`` commands do: up, status, down, logs.

``up`` submits the crawl when the database does not have it yet, then asks the
provider for N workers, and records which provider (and its options, never a
secret) ran the fleet in ``<fleet folder>/fleet.json`` so that ``status``,
``down`` and ``logs`` need only the crawl's name.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from shoal.errors import FleetError
from shoal.fleet.base import FleetRow, Instance, Provider, join_fleet
from shoal.fleet.ec2 import Ec2Options, Ec2Provider, build_wheel
from shoal.fleet.local import LocalProvider
from shoal.frontier.contract import Frontier
from shoal.frontier.reads import read_status
from shoal.spec import Spec

__all__ = [
    "FleetConfig",
    "fleet_dir",
    "fleet_status",
    "load_config",
    "make_provider",
    "save_config",
]


@dataclass(slots=True)
class FleetConfig:
    """What ``fleet up`` used, kept for the later commands (no secret in it)."""

    crawl: str
    provider: str
    ec2: dict[str, Any] | None = None
    netns: bool | None = None


def fleet_dir(crawl: str, base: Path | None = None) -> Path:
    """``shoal-data/<crawl>/fleet`` under ``base`` (default: the current folder)."""
    return (base or Path.cwd()) / "shoal-data" / crawl / "fleet"


def save_config(folder: Path, config: FleetConfig) -> None:
    """Write ``fleet.json`` atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "fleet.json.tmp"
    tmp.write_text(json.dumps(asdict(config), indent=1), "utf-8")
    tmp.replace(folder / "fleet.json")


def load_config(folder: Path, crawl: str) -> FleetConfig | None:
    """The fleet's ``fleet.json``, or None when no fleet was started from here."""
    try:
        raw = json.loads((folder / "fleet.json").read_text("utf-8"))
    except FileNotFoundError:
        return None
    if raw.get("crawl") != crawl:
        raise FleetError(
            f"{folder / 'fleet.json'} belongs to crawl {raw.get('crawl')!r}, not {crawl!r}"
        )
    return FleetConfig(**raw)


def ec2_options(spec: Spec | None, overrides: dict[str, Any]) -> Ec2Options:
    """``[fleet.ec2]`` of the spec, with the command's flags on top; the bucket from an s3:// archive."""
    base: dict[str, Any] = {}
    if spec is not None:
        e = spec.fleet.ec2
        base = {
            "region": e.region,
            "instance_type": e.instance_type,
            "ami": e.ami,
            "arch": e.arch,
            "subnet_id": e.subnet,
            "security_group_ids": list(e.security_groups),
            "key_name": e.key_name,
            "spot": e.spot,
            "bucket": e.bucket,
            "endpoint_url": e.endpoint_url,
            "extra_tags": dict(e.tags),
        }
        archive = spec.archive_dir()
        if archive.startswith("s3://"):
            bucket, _, prefix = archive[5:].partition("/")
            base.setdefault("bucket", None)
            if not base["bucket"]:
                base["bucket"], base["prefix"] = bucket, prefix
    base.update({k: v for k, v in overrides.items() if v not in (None, [], {})})
    return Ec2Options(**base)


def make_provider(
    config: FleetConfig, folder: Path, *, db_url: str | None = None, concurrency: int | None = None
) -> Provider:
    """The provider a fleet config names."""
    if config.provider == "local":
        return LocalProvider(
            config.crawl, folder, db_url=db_url, netns=config.netns, concurrency=concurrency
        )
    if config.provider == "ec2":
        return Ec2Provider(config.crawl, Ec2Options(**(config.ec2 or {})))
    raise FleetError(f"unknown fleet provider {config.provider!r}: use local or ec2")


def fleet_up(provider: Provider, count: int, *, db_url: str) -> list[Instance]:
    """Start ``count`` workers (for EC2: with a wheel of this shoal when its source is here)."""
    if isinstance(provider, Ec2Provider):
        with tempfile.TemporaryDirectory(prefix="shoal-wheel-") as tmp:
            wheel = build_wheel(Path(tmp))
            return provider.up(count, db_url=db_url, wheel=wheel)
    return provider.up(count)


def fleet_status(
    provider: Provider, frontier: Frontier | None, crawl_id: int | None, stale_seconds: float
) -> list[FleetRow]:
    """The provider's instances joined with the frontier's workers."""
    instances = provider.instances()
    if frontier is None or crawl_id is None:
        return [FleetRow(i, [], None) for i in instances]
    snap = read_status(frontier, crawl_id)
    return join_fleet(instances, snap.workers, snap.now_ms, int(stale_seconds * 1000))
