"""Starting and stopping workers: local processes, or EC2 instances through boto3.

A fleet is the set of ``shoal work`` processes of one crawl. Its providers
(:mod:`shoal.fleet.local`, :mod:`shoal.fleet.ec2`) only start, list and end
them; the workers need nothing but the database URL (and, for an S3 archive,
the bucket's credentials), so a provider never touches the crawl loop.
:mod:`shoal.fleet.control` holds what the ``shoal fleet`` commands do.
"""

from __future__ import annotations

from shoal.fleet.base import FleetRow, Instance, Provider, join_fleet

__all__ = ["FleetRow", "Instance", "Provider", "join_fleet"]
