"""shoal: collect web pages into a durable archive through a SQL frontier, then into tables."""

__version__ = "0.1.0"

__all__ = ["__version__"]
