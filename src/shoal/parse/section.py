"""Reading the ``[parse]`` section of one crawl spec, at the edge: :func:`parse_config`.

:func:`parse_config` validates ``spec.parse`` into a
:class:`~shoal.parse.config.ParseSpec` (the models check each key) and then
checks what only the crawl spec can tell: that every table's ``from`` and every
``[parse.rules]`` entry names a rule of the spec (or a page kind), and that
every ``module:function`` reference imports. It raises one
:class:`~shoal.errors.SpecError` listing every problem by its key's full path.

:func:`load_function` imports a ``module:function`` reference, for that check
and for the extractor that calls it. Function modules are imported from the
spec file's folder first, then from ``sys.path``: a ``fields.py`` beside the
spec works from any directory.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from shoal.errors import SpecError
from shoal.parse.config import PAGE_KINDS, ParseSpec
from shoal.spec import Spec, format_validation_error

__all__ = ["load_function", "parse_config"]


def _format(exc: ValidationError, source: str) -> str:
    return format_validation_error(exc, source, what="[parse] section", prefix=("parse",))


def load_function(
    ref: str, key: str = "function", base: str | Path | None = None
) -> Callable[..., Any]:
    """Import ``module:function``, from the folder ``base`` (the spec's) first; SpecError naming ``key`` when it cannot.

    ``base`` goes to the front of ``sys.path`` for the import and stays there
    (a module imported from it may import its neighbours later).
    """
    module_name, _, attr = ref.partition(":")
    if base is not None:
        folder = str(Path(base).resolve())
        if folder not in sys.path:
            sys.path.insert(0, folder)
            importlib.invalidate_caches()
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except ImportError as exc:
        raise SpecError(
            f"{key}: cannot import module {module_name!r} ({exc}) (got {ref!r})"
        ) from None
    except AttributeError:
        raise SpecError(f"{key}: module {module_name!r} has no {attr!r} (got {ref!r})") from None
    if not callable(obj):
        raise SpecError(f"{key}: {ref!r} is not callable")
    return obj  # type: ignore[no-any-return]


def parse_config(
    spec: Spec,
    *,
    source: str = "spec",
    import_functions: bool = True,
    base: str | Path | None = None,
) -> ParseSpec:
    """Validate ``spec.parse`` into a :class:`ParseSpec`, or raise SpecError naming every bad key.

    Table sources (``from``) and ``[parse.rules]`` must name rules of the spec
    (or page kinds), and ``module:function`` references must import (unless
    ``import_functions`` is false), from ``base`` (the spec file's folder) first.
    """
    try:
        ps = ParseSpec.model_validate(spec.parse)
    except ValidationError as exc:
        raise SpecError(_format(exc, source)) from None
    problems: list[str] = []
    rule_names = {r.name for r in spec.rules if r.name}
    for rname in ps.rules:
        if rname not in rule_names:
            known = ", ".join(sorted(rule_names)) or "none"
            problems.append(f"  - parse.rules.{rname}: not a rule name (rules: {known})")
    for tname, table in ps.tables.items():
        for i, src in enumerate(table.from_):
            if src not in rule_names and src not in PAGE_KINDS:
                known = ", ".join(sorted(rule_names)) or "none"
                problems.append(
                    f"  - parse.tables.{tname}.from.{i}: not a rule name nor a page kind (rules: {known}; "
                    f"kinds: list, detail) (got {src!r})"
                )
        if import_functions:
            refs = [(f"parse.tables.{tname}.function", table.function)]
            refs += [
                (f"parse.tables.{tname}.fields.{n}.function", f.function)
                for n, f in table.fields.items()
            ]
            for key, ref in refs:
                if ref is None:
                    continue
                try:
                    load_function(ref, key, base)
                except SpecError as exc:
                    problems.append(f"  - {exc}")
    if problems:
        raise SpecError(
            f"{source}: the [parse] section is invalid ({len(problems)} problem(s)):\n"
            + "\n".join(problems)
        )
    return ps
