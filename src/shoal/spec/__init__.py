"""The crawl spec: a TOML file validated once, at the edge, with pydantic.

A bad spec raises :class:`~shoal.errors.SpecError` whose message lists every
problem as ``key: what was expected (got value)``, rules named by their ``name``
(``rules["posts"].regex``); nothing starts on a bad spec. Guarantees of a valid spec:

- every rule ``regex`` compiles in RE2, so matching a URL takes time linear in its
  length (no pattern can hang a worker);
- every selector compiles in the engine that runs it (:func:`check_link_css`,
  :func:`check_browser_css`), and browser-only keys appear only on browser rules;
- durations are finite and bounded, header names, values and the User-Agent hold no
  control character, and the crawl name cannot leave the data folder;
- relative storage paths resolve against the spec file's folder (:func:`load_spec`);
- ``[scope.headers]`` values may be ``{ env = "VAR" }``, read when a worker starts
  (:meth:`ScopeSpec.resolved_headers`), so the stored spec need not hold the secret.

Where each part lives:

- :mod:`~shoal.spec.models`: the pydantic models, one per TOML section (:class:`Spec`);
- :mod:`~shoal.spec.patterns`: URL regexes (RE2) and CSS selectors, checked by the
  engine that runs them;
- :mod:`~shoal.spec.load`: reading TOML into a :class:`Spec`, and the error
  messages that name the key path and the value.
"""

from __future__ import annotations

from shoal.spec import models
from shoal.spec.load import format_validation_error, load_spec, parse_spec, refused_seeds
from shoal.spec.models import *  # noqa: F403 (every model is public here: models.__all__)
from shoal.spec.patterns import (
    UrlPattern,
    check_browser_css,
    check_link_css,
    compile_regex,
    lexbor_css,
)

__all__ = [
    "UrlPattern",
    "check_browser_css",
    "check_link_css",
    "compile_regex",
    "format_validation_error",
    "lexbor_css",
    "load_spec",
    "parse_spec",
    "refused_seeds",
]
__all__ += models.__all__
