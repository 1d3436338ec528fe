"""Where the third-party test vectors live: ``tests/data/`` (see its README for sources and licences)."""

from __future__ import annotations

from pathlib import Path

TESTDATA = Path(__file__).resolve().parent / "data"

__all__ = ["TESTDATA"]
