"""Reading a crawl spec: TOML text or a file into a validated :class:`~shoal.spec.models.Spec`.

A bad spec raises :class:`~shoal.errors.SpecError` listing every problem as
``key.path: what was expected (got value)``, with array items named as the user
wrote them (``rules["posts"].regex``); :func:`format_validation_error` is shared
with the ``[parse]`` section. Seeds must be URLs a crawl can fetch;
:func:`refused_seeds` warns about those the address policy will refuse.
"""

from __future__ import annotations

import ipaddress
import json
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from shoal.errors import SpecError
from shoal.spec.models import Spec

if TYPE_CHECKING:
    from shoal.fetch.address import AddressPolicy

__all__ = ["format_validation_error", "key_path", "load_spec", "parse_spec", "refused_seeds"]


def _item_label(item: object, index: int) -> str:
    """``["name"]`` for a named table of an array (a rule, a field), else ``[#n pattern]``."""
    if isinstance(item, dict):
        name = item.get("name")
        if isinstance(name, str) and name:
            return f"[{json.dumps(name, ensure_ascii=False)}]"
        for key in ("glob", "regex", "css", "xpath"):
            if isinstance(item.get(key), str):
                return f"[#{index + 1} {key} {item[key]!r}]"
    return f"[#{index + 1}]"


def key_path(loc: tuple[int | str, ...], data: object = None, prefix: tuple[str, ...] = ()) -> str:
    """A pydantic error location as the user wrote it: ``rules["posts"].regex``, not ``rules.1.regex``.

    ``data`` is the validated input: an index into an array of tables is shown by
    the item's ``name`` (or, when it has none, its 1-based position and pattern).
    """
    out = ".".join(prefix)
    node = data
    for part in loc:
        p = str(part)
        if p.startswith(("function-after", "function-before")):
            continue
        if isinstance(part, int) and isinstance(node, list):
            item = node[part] if 0 <= part < len(node) else None
            out += _item_label(item, part)
            node = item
            continue
        out += f".{p}" if out else p
        node = node.get(p) if isinstance(node, dict) else None
    return out or "(top level)"


def format_validation_error(
    exc: ValidationError,
    source: str,
    *,
    what: str = "crawl spec",
    prefix: tuple[str, ...] = (),
    data: object = None,
) -> str:
    """One line per problem: ``key.path: what was expected (got value)``; shared by every spec section.

    Give ``data`` (the input that failed) so that array items are named as in :func:`key_path`.
    """
    lines = [f"{source}: the {what} is invalid ({exc.error_count()} problem(s)):"]
    for err in exc.errors():
        key = key_path(err["loc"], data, prefix)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling; see the README's spec reference)"
        elif err["type"] == "missing":
            msg = "required key is missing"
        value = err.get("input")
        shown = "" if err["type"] == "missing" or isinstance(value, dict) else f" (got {value!r})"
        lines.append(f"  - {key}: {msg}{shown}")
    return "\n".join(lines)


def parse_spec(text: str, source: str = "<spec>", *, base: str | Path | None = None) -> Spec:
    """Parse and validate TOML text into a :class:`Spec`, or raise :class:`SpecError`.

    ``base`` is the folder relative storage paths resolve against (``load_spec``
    gives the spec file's); without it they stay relative to the working directory.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{source}: not valid TOML: {exc}") from None
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(format_validation_error(exc, source, data=data)) from None
    _check_seeds(spec, source)
    return spec.with_base(base)


def _check_seeds(spec: Spec, source: str) -> None:
    from shoal.errors import URLError
    from shoal.urls import canonicalize

    bad = []
    for i, seed in enumerate(spec.crawl.seeds):
        try:
            canonicalize(seed)
        except URLError as exc:
            bad.append(f"  - crawl.seeds.{i}: {exc} (got {seed!r})")
    for src in spec.crawl.sources:
        try:
            canonicalize(src.url)
        except URLError as exc:
            bad.append(f"  - crawl.seeds {src.kind}: {exc} (got {src.url!r})")
    if bad:
        raise SpecError(f"{source}: the crawl spec is invalid:\n" + "\n".join(bad))


def refused_seeds(spec: Spec, policy: AddressPolicy) -> list[str]:
    """One line per seed ``policy`` (the spec's address policy) will refuse, naming the setting that allows it.

    Only what is known without DNS is checked: IP-literal hosts and ``localhost``
    (RFC 6761). Such a seed ends ``skipped (address_policy)`` at crawl time. The
    policy is passed in, so the spec does not depend on the fetch stage.
    """
    from shoal.urls import resolve

    out = []
    for seed in spec.crawl.seeds:
        try:
            host = resolve(seed.strip()).hostname
        except ValueError:
            continue
        literal = host.strip("[]")
        if literal == "localhost" or literal.endswith(".localhost"):
            literal = "127.0.0.1"
        try:
            ip = ipaddress.ip_address(literal)
        except ValueError:
            continue
        if not policy.allows(ip):
            net = f"{ip}/32" if ip.version == 4 else f"{ip}/128"
            out.append(
                f"seed {seed!r}: {ip} is not a public address, so the address policy refuses it;"
                f' to crawl it set [scope] allow_cidrs = ["{net}"] (or allow_private = true)'
            )
    return out


def load_spec(path: str | Path) -> Spec:
    """Read and validate a spec file, or raise :class:`SpecError` naming the problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{p}: no such spec file (give the path of a .toml crawl spec)") from None
    except UnicodeDecodeError:
        raise SpecError(f"{p}: the spec file is not UTF-8 text") from None
    return parse_spec(text, str(p), base=p.parent)
