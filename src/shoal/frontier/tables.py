"""The frontier schema as SQLAlchemy Core tables: the canonical definition.

Migrations in ``migrations/versions`` must produce exactly this schema (a test
compares them). Times are integer milliseconds since the epoch on the
database's clock, which every dialect compares cheaply and without time zones.
Every row carries its crawl and (for URLs and hosts) its host key, so crawls
and host ranges can later be partitioned across databases.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

__all__ = ["crawls", "events", "hosts", "metadata", "urls", "warc_files", "workers"]

metadata = MetaData()

# SQLite only auto-increments an INTEGER PRIMARY KEY (the rowid); elsewhere 64 bits.
BigId = BigInteger().with_variant(Integer(), "sqlite")

crawls = Table(
    "crawls",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False),
    Column("spec", Text, nullable=False),
    Column("spec_hash", String(64), nullable=False),
    Column("state", String(16), nullable=False, server_default="running"),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("finished_at", BigInteger, nullable=True),
    # The crawl-wide page budget (None: no limit), enforced by the claim.
    Column("max_pages", BigInteger, nullable=True),
    # Leases returned from dead workers (written only when the reaper returns some).
    Column("leases_reaped", BigInteger, nullable=False, server_default="0"),
    UniqueConstraint("name", name="uq_crawls_name"),
)

hosts = Table(
    "hosts",
    metadata,
    Column("crawl_id", Integer, primary_key=True, autoincrement=False),
    Column("host_key", BigInteger, primary_key=True, autoincrement=False),
    Column("host", String(255), nullable=False),
    Column("min_delay_ms", Integer, nullable=False),
    Column("next_fetch_at", BigInteger, nullable=False, server_default="0"),
    Column("paused_until", BigInteger, nullable=False, server_default="0"),
    Column("pause_reason", String(32), nullable=True),
    Column("robots_delay_ms", Integer, nullable=True),
    Index("ix_hosts_due", "crawl_id", "next_fetch_at"),
)

urls = Table(
    "urls",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("crawl_id", Integer, nullable=False),
    Column("url_key", BigInteger, nullable=False),
    Column("url", Text, nullable=False),
    Column("host_key", BigInteger, nullable=False),
    Column("status", String(8), nullable=False),
    Column("rule", Integer, nullable=False),
    Column("kind", String(8), nullable=False),
    Column("depth", Integer, nullable=False),
    Column("priority", Integer, nullable=False),
    Column("parent_id", BigInteger, nullable=True),
    Column("redirects", Integer, nullable=False, server_default="0"),
    Column("discovered_at", BigInteger, nullable=False),
    Column("next_attempt_at", BigInteger, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("lease_owner", String(96), nullable=True),
    Column("lease_token", BigInteger, nullable=True),
    Column("lease_expires_at", BigInteger, nullable=True),
    Column("lease_lost", Integer, nullable=False, server_default="0"),
    Column("error_class", String(16), nullable=True),
    Column("error_detail", Text, nullable=True),
    Column("skip_reason", String(32), nullable=True),
    Column("http_status", Integer, nullable=True),
    Column("final_url", Text, nullable=True),
    Column("content_type", String(128), nullable=True),
    Column("body_bytes", BigInteger, nullable=True),
    Column("fetched_at", BigInteger, nullable=True),
    Column("fetch_ms", Integer, nullable=True),
    Column("fetched_by", String(96), nullable=True),
    Column("warc_file", String(255), nullable=True),
    Column("warc_offset", BigInteger, nullable=True),
    Column("warc_length", BigInteger, nullable=True),
    Column("warc_record_id", String(64), nullable=True),
    # Revisits (0004): when a done page is due again, its validators and its last full payload.
    Column("revisit_at", BigInteger, nullable=True),
    Column("first_fetched_at", BigInteger, nullable=True),
    Column("etag", String(255), nullable=True),
    Column("last_modified", String(64), nullable=True),
    Column("payload_digest", String(64), nullable=True),
    Column("payload_file", String(255), nullable=True),
    Column("payload_offset", BigInteger, nullable=True),
    Column("payload_length", BigInteger, nullable=True),
    Column("payload_record_id", String(64), nullable=True),
    Column("payload_at", BigInteger, nullable=True),
    Column("revisits", Integer, nullable=False, server_default="0"),
    Column("found_new", Integer, nullable=True),
    UniqueConstraint("crawl_id", "url_key", name="uq_urls_crawl_key"),
    # The claim: equality on (crawl, host, status), ORDER BY (priority, id).
    Index("ix_urls_claim", "crawl_id", "host_key", "status", "priority", "id"),
    # The lease reaper, "is anything left?", and the status counts by status, error class,
    # skip reason, HTTP status and due time from the index alone. One index for all of them:
    # every URL row is written twice (claim, outcome), and on PostgreSQL each write adds an
    # entry to every index of the table.
    Index(
        "ix_urls_status",
        "crawl_id",
        "status",
        "error_class",
        "skip_reason",
        "http_status",
        "next_attempt_at",
        "lease_expires_at",
    ),
    # Throughput over time and "latest capture" for the parse stage.
    Index("ix_urls_fetched", "crawl_id", "fetched_at", "status", "error_class"),
    # Revisits coming due: promoted back to pending by the claim transaction.
    Index("ix_urls_revisit", "crawl_id", "revisit_at"),
)

workers = Table(
    "workers",
    metadata,
    Column("id", String(96), primary_key=True),
    Column("crawl_id", Integer, nullable=False),
    Column("hostname", String(255), nullable=False),
    Column("ip", String(64), nullable=True),
    Column("pid", Integer, nullable=False),
    Column("version", String(32), nullable=False),
    Column("state", String(16), nullable=False),
    Column("started_at", BigInteger, nullable=False),
    Column("heartbeat_at", BigInteger, nullable=False),
    Column("stopped_at", BigInteger, nullable=True),
    Column("concurrency", Integer, nullable=False),
    # Counters of the outcomes this worker's syncs applied (the crawl's are their sums):
    # each worker writes only its own row, so no sync waits on a shared one.
    Column("pages_done", BigInteger, nullable=False, server_default="0"),
    Column("pages_failed", BigInteger, nullable=False, server_default="0"),
    Column("bytes_archived", BigInteger, nullable=False, server_default="0"),
    Column("detail", Text, nullable=True),
    Column("pages_new", BigInteger, nullable=False, server_default="0"),
    Column("retries", BigInteger, nullable=False, server_default="0"),
    # Revisits (0004): the refetches this worker's syncs applied and the new URLs they found.
    Column("revisits", BigInteger, nullable=False, server_default="0"),
    Column("found_new", BigInteger, nullable=False, server_default="0"),
    Index("ix_workers_crawl", "crawl_id", "heartbeat_at"),
)

events = Table(
    "events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("crawl_id", Integer, nullable=False),
    Column("at", BigInteger, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("severity", String(8), nullable=False),
    Column("worker_id", String(96), nullable=True),
    Column("url", Text, nullable=True),
    Column("host", String(255), nullable=True),
    Column("error_class", String(16), nullable=True),
    Column("signature", String(64), nullable=True),
    Column("message", Text, nullable=False),
    Column("notified", Integer, nullable=False, server_default="0"),
    Index("ix_events_crawl", "crawl_id", "kind", "signature"),
    Index("ix_events_at", "crawl_id", "at"),
)

warc_files = Table(
    "warc_files",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("crawl_id", Integer, nullable=False),
    # The final ``.warc.gz`` name, as URL rows carry it in ``warc_file``.
    Column("name", String(255), nullable=False),
    Column("worker_id", String(96), nullable=False),
    Column("hostname", String(255), nullable=False),
    # open (being written), closed (complete, only on its worker's disk), uploaded (safe), lost.
    Column("state", String(16), nullable=False),
    Column("size", BigInteger, nullable=True),
    Column("sha256", String(64), nullable=True),
    # Where the complete file is: a local path, or s3://bucket/key once uploaded.
    Column("location", Text, nullable=True),
    Column("opened_at", BigInteger, nullable=False),
    Column("closed_at", BigInteger, nullable=True),
    Column("uploaded_at", BigInteger, nullable=True),
    UniqueConstraint("crawl_id", "name", name="uq_warc_files_name"),
    # Unsafe files by worker: restart uploads, lost-file release, "anything left?".
    Index("ix_warc_files_state", "crawl_id", "state", "worker_id"),
)
