"""Alembic migrations of the frontier schema (run through :mod:`shoal.frontier.schema`)."""
