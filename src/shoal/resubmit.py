"""Submitting a spec again: what changed against the stored one, and whether there is anything to do.

``shoal submit`` stores a crawl's spec in the shared database. Submitting a
different spec under the same name would silently change a running fleet's
crawl, so :func:`compare` lists every key that changed (values of
``[scope.headers]`` and ``[notify] urls`` are never shown: they hold secrets)
and the command asks for ``--replace``. Submitting the identical spec of a
finished crawl has nothing to do, unless a rule revisits pages: that crawl is
never finished, and resubmitting it reopens it for its workers.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from typing import Any

from shoal.errors import FrontierError
from shoal.frontier.contract import Frontier
from shoal.spec import Spec

__all__ = ["Resubmission", "compare", "spec_changes"]

_SECRET_KEYS = ("scope.headers", "notify.urls")


@dataclass(frozen=True)
class Resubmission:
    """How a submitted spec relates to the crawl of that name in the database.

    ``stored_state`` is None when no crawl of that name exists; ``changes``
    lists the changed keys (``key: old -> new``), empty when the specs are equal.
    """

    stored_state: str | None
    changes: list[str] = field(default_factory=list)
    revisits: bool = False

    @property
    def nothing_to_do(self) -> bool:
        """An identical spec of a finished crawl without revisit rules."""
        return self.stored_state == "finished" and not self.changes and not self.revisits


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k in sorted(value):
            _flatten(value[k], f"{prefix}.{k}" if prefix else str(k), out)
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for i, v in enumerate(value):
            name = v.get("name") if isinstance(v.get("name"), str) and v.get("name") else None
            _flatten(v, f'{prefix}["{name}"]' if name else f"{prefix}[{i + 1}]", out)
    else:
        out[prefix] = value


def _show(key: str, value: Any) -> str:
    if value is None:
        return "(unset)"
    if key.startswith(_SECRET_KEYS):
        return "(hidden)"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def spec_changes(old_text: str, new_text: str) -> list[str]:
    """Every key whose value differs between two spec texts, as ``key: old -> new`` lines.

    Formatting and comments do not count; arrays of tables (rules) are keyed by
    their ``name`` where they have one. A stored text that is not TOML any more
    counts as one change of the whole spec.
    """
    try:
        old = tomllib.loads(old_text)
    except tomllib.TOMLDecodeError:
        return ["(the stored spec could not be read: it is replaced as a whole)"]
    new = tomllib.loads(new_text)
    a: dict[str, Any] = {}
    b: dict[str, Any] = {}
    _flatten(old, "", a)
    _flatten(new, "", b)
    out = []
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            shown = (
                "changed (value hidden)"
                if key.startswith(_SECRET_KEYS)
                else f"{_show(key, a.get(key))} -> {_show(key, b.get(key))}"
            )
            out.append(f"{key}: {shown}")
    return out


def compare(frontier: Frontier, spec: Spec, spec_text: str) -> Resubmission:
    """The submitted spec against the stored crawl of the same name (see :class:`Resubmission`)."""
    revisits = any(r.revisit is not None for r in spec.rules)
    try:
        stored = frontier.get_crawl(spec.name)
    except FrontierError:
        return Resubmission(None, [], revisits)
    return Resubmission(stored.state, spec_changes(stored.spec, spec_text), revisits)
