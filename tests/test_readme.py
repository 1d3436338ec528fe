"""The README's TOML examples and the demo spec are valid specs: documentation that does not validate fails CI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shoal.parse import parse_config
from shoal.spec import Spec, parse_spec

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DEMO_DIR = ROOT / "src" / "shoal" / "demo"


def toml_blocks(markdown: str) -> list[tuple[int, str]]:
    """Every fenced ```toml block of ``markdown`` with the line it starts on."""
    out = []
    for m in re.finditer(r"^```toml[ \t]*\n(.*?)^```[ \t]*$", markdown, re.M | re.S):
        out.append((markdown.count("\n", 0, m.start()) + 1, m.group(1)))
    return out


BLOCKS = toml_blocks(README.read_text(encoding="utf-8"))


def _full_spec() -> str:
    """The README's complete spec example (the first block with a [crawl] table)."""
    return next(text for _, text in BLOCKS if re.search(r"^\[crawl\]", text, re.M))


def _as_spec(block: str) -> str:
    """A block as a whole spec: a fragment gets the full example's [crawl] and, without rules of its own, its rules."""
    if re.search(r"^\[crawl\]", block, re.M):
        return block
    full = _full_spec()
    crawl = full[: full.index("\n[", full.index("[crawl]") + 1)]
    rules = ""
    if not re.search(r"^\[\[rules\]\]", block, re.M):
        rules = "".join(re.findall(r"^\[\[rules\]\]\n(?:(?!\[)[^\n]*\n)*", full, re.M))
    return crawl + "\n" + rules + "\n" + block


def _validate(text: str, source: str) -> Spec:
    spec = parse_spec(text, source)
    if spec.parse:
        parse_config(spec, source=source, import_functions=False)
    return spec


def test_the_readme_has_toml_examples() -> None:
    """The README holds a full spec example and the fragments around it (the test below checks each)."""
    assert len(BLOCKS) >= 3
    assert re.search(r"^\[crawl\]", _full_spec(), re.M)


@pytest.mark.parametrize(("line", "block"), BLOCKS, ids=[f"README.md:{n}" for n, _ in BLOCKS])
def test_every_readme_toml_block_validates(line: int, block: str) -> None:
    """Each ```toml block of the README validates as a spec (fragments completed with the full example's [crawl])."""
    spec = _validate(_as_spec(block), f"README.md:{line}")
    assert spec.name


def test_the_readme_spec_example_shows_real_defaults() -> None:
    """Every key the full example sets (not commented out) has its default value, so readers can trust it."""
    spec = parse_spec(_full_spec())
    defaults = Spec.model_validate({"crawl": {"name": "x", "seeds": ["https://x.example/"]}})
    for section in ("politeness", "limits", "storage", "worker"):
        for key, value in getattr(spec, section).model_dump().items():
            assert value == getattr(getattr(defaults, section), key), f"[{section}] {key}"
    assert spec.scope.strip_query_params == defaults.scope.strip_query_params


@pytest.mark.parametrize("path", sorted(DEMO_DIR.glob("*.toml")), ids=lambda p: p.name)
def test_the_demo_specs_validate(path: Path, tmp_path: Path) -> None:
    """The bundled demo spec validates once its server address and data folder are filled in, [parse] included."""
    text = path.read_text(encoding="utf-8")
    text = text.replace("{base_url}", "http://127.0.0.1:8611").replace(
        "{data}", tmp_path.as_posix()
    )
    spec = _validate(text, path.name)
    assert spec.rules and spec.parse
