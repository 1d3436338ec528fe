"""The initial frontier schema: crawls, hosts, urls, workers, events.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "crawls",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("spec_hash", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False, server_default="running"),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("finished_at", sa.BigInteger, nullable=True),
        sa.Column("fetched", sa.BigInteger, nullable=False, server_default="0"),
        sa.UniqueConstraint("name", name="uq_crawls_name"),
    )
    op.create_table(
        "hosts",
        sa.Column("crawl_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("host_key", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("min_delay_ms", sa.Integer, nullable=False),
        sa.Column("next_fetch_at", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("paused_until", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("pause_reason", sa.String(32), nullable=True),
        sa.Column("robots_delay_ms", sa.Integer, nullable=True),
        sa.Column("fetches", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("errors", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.create_index("ix_hosts_due", "hosts", ["crawl_id", "next_fetch_at"])
    op.create_table(
        "urls",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("crawl_id", sa.Integer, nullable=False),
        sa.Column("url_key", sa.BigInteger, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("host_key", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("rule", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("depth", sa.Integer, nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("parent_id", sa.BigInteger, nullable=True),
        sa.Column("redirects", sa.Integer, nullable=False, server_default="0"),
        sa.Column("discovered_at", sa.BigInteger, nullable=False),
        sa.Column("next_attempt_at", sa.BigInteger, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("lease_owner", sa.String(96), nullable=True),
        sa.Column("lease_token", sa.BigInteger, nullable=True),
        sa.Column("lease_expires_at", sa.BigInteger, nullable=True),
        sa.Column("lease_lost", sa.Integer, nullable=False, server_default="0"),
        sa.Column("error_class", sa.String(16), nullable=True),
        sa.Column("error_detail", sa.Text, nullable=True),
        sa.Column("skip_reason", sa.String(32), nullable=True),
        sa.Column("http_status", sa.Integer, nullable=True),
        sa.Column("final_url", sa.Text, nullable=True),
        sa.Column("content_type", sa.String(128), nullable=True),
        sa.Column("body_bytes", sa.BigInteger, nullable=True),
        sa.Column("fetched_at", sa.BigInteger, nullable=True),
        sa.Column("fetch_ms", sa.Integer, nullable=True),
        sa.Column("fetched_by", sa.String(96), nullable=True),
        sa.Column("warc_file", sa.String(255), nullable=True),
        sa.Column("warc_offset", sa.BigInteger, nullable=True),
        sa.Column("warc_length", sa.BigInteger, nullable=True),
        sa.Column("warc_record_id", sa.String(64), nullable=True),
        sa.UniqueConstraint("crawl_id", "url_key", name="uq_urls_crawl_key"),
    )
    op.create_index("ix_urls_claim", "urls", ["crawl_id", "host_key", "status", "priority", "id"])
    op.create_index("ix_urls_status", "urls", ["crawl_id", "status", "lease_expires_at"])
    op.create_index("ix_urls_fetched", "urls", ["crawl_id", "fetched_at"])
    op.create_table(
        "workers",
        sa.Column("id", sa.String(96), primary_key=True),
        sa.Column("crawl_id", sa.Integer, nullable=False),
        sa.Column("hostname", sa.String(255), nullable=False),
        sa.Column("ip", sa.String(64), nullable=True),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("started_at", sa.BigInteger, nullable=False),
        sa.Column("heartbeat_at", sa.BigInteger, nullable=False),
        sa.Column("stopped_at", sa.BigInteger, nullable=True),
        sa.Column("concurrency", sa.Integer, nullable=False),
        sa.Column("pages_done", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("pages_failed", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("bytes_archived", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("detail", sa.Text, nullable=True),
    )
    op.create_index("ix_workers_crawl", "workers", ["crawl_id", "heartbeat_at"])
    op.create_table(
        "events",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("crawl_id", sa.Integer, nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("severity", sa.String(8), nullable=False),
        sa.Column("worker_id", sa.String(96), nullable=True),
        sa.Column("url", sa.Text, nullable=True),
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("error_class", sa.String(16), nullable=True),
        sa.Column("signature", sa.String(64), nullable=True),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("notified", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_index("ix_events_crawl", "events", ["crawl_id", "kind", "signature"])
    op.create_index("ix_events_at", "events", ["crawl_id", "at"])


def downgrade() -> None:
    for table in ("events", "workers", "urls", "hosts", "crawls"):
        op.drop_table(table)
