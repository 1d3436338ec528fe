"""shoal: collect web pages into a durable archive through a SQL frontier, then into tables.

For notebooks: ``shoal.read_table(spec_or_path, table)`` returns a parsed table as a
pandas DataFrame; ``shoal.run_parse(spec)`` (re)builds the tables.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "read_table", "run_parse"]


def __getattr__(name: str) -> Any:
    # The parse stage needs pandas; load it only when asked for (and after
    # shoal.spec, which imports __version__ from here).
    if name in ("read_table", "run_parse"):
        from shoal import parse

        return getattr(parse, name)
    raise AttributeError(f"module 'shoal' has no attribute {name!r}")
